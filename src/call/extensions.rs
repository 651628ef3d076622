//! Typed notes that travel with a request or an answer between layers: what
//! one layer learned for another (the partner call: "this answer showed an
//! offer", read by the thread cap), without a field added to the core types
//! for each. Like `http::Extensions`, keyed by type; unlike it, held inline
//! for the first few, so a note costs no allocation on every call (a
//! zero-sized mark none at all).

use std::any::{Any, TypeId};

use smallvec::SmallVec;

/// A value that can be a note: cloned with the answer it rides on.
trait Note: Any + Send + Sync {
    fn clone_note(&self) -> Box<dyn Note>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Clone + Send + Sync> Note for T {
    fn clone_note(&self) -> Box<dyn Note> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Notes by type, at most one of each.
#[derive(Default)]
pub struct Extensions(SmallVec<[(TypeId, Box<dyn Note>); 2]>);

impl Extensions {
    /// Adds `value`, replacing a note of the same type.
    pub fn insert<T: Any + Clone + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.0.iter_mut().find(|(t, _)| *t == id) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.0.push((id, Box::new(value))),
        }
    }

    /// The note of type `T`, if one was added.
    pub fn get<T: Any>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| (**v).as_any().downcast_ref())
    }
}

impl Clone for Extensions {
    fn clone(&self) -> Self {
        Extensions(
            self.0
                .iter()
                .map(|(t, v)| (*t, (**v).clone_note()))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} notes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Mark;
    #[derive(Clone, Debug, PartialEq)]
    struct Count(u32);

    #[test]
    fn notes_by_type_one_of_each() {
        let mut e = Extensions::default();
        assert_eq!(e.get::<Mark>(), None);
        e.insert(Mark);
        e.insert(Count(1));
        e.insert(Count(2));
        assert_eq!(e.get::<Mark>(), Some(&Mark));
        assert_eq!(e.get::<Count>(), Some(&Count(2)));
        let copy = e.clone();
        assert_eq!(copy.get::<Count>(), Some(&Count(2)));
        assert_eq!(format!("{copy:?}"), "Extensions(2 notes)");
    }
}

//! Typed notes that travel with a request or an answer between layers: what
//! one layer learned for another (the partner call: "this answer showed an
//! offer", read by the thread cap), without a field added to the core types
//! for each. Like `http::Extensions`, keyed by type; unlike it, held inline
//! for the first few, so a note costs no allocation on every call (a
//! zero-sized mark none at all).

use std::any::{Any, TypeId};

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

/// Notes by type, at most one of each. The first inline: 24 bytes in every
/// answer (which each layer moves), and no allocation for a mark.
#[derive(Default)]
pub struct Extensions {
    first: Option<Box<dyn Note>>,
    // Boxed on purpose: 8 bytes here instead of a Vec's 24, as notes past
    // the first are rare.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<Box<dyn Note>>>>,
}

impl Extensions {
    /// Adds `value`, replacing a note of the same type.
    pub fn insert<T: Any + Clone + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let same = |v: &dyn Note| v.as_any().type_id() == id;
        if self.first.as_deref().is_none_or(same) {
            self.first = Some(Box::new(value));
            return;
        }
        let rest = self.rest.get_or_insert_with(Box::default);
        match rest.iter_mut().find(|v| same(&***v)) {
            Some(slot) => *slot = Box::new(value),
            None => rest.push(Box::new(value)),
        }
    }

    /// The note of type `T`, if one was added.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
            .find_map(|v| (**v).as_any().downcast_ref())
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }
}

impl Clone for Extensions {
    fn clone(&self) -> Self {
        Extensions {
            first: self.first.as_ref().map(|v| (**v).clone_note()),
            rest: self
                .rest
                .as_ref()
                .map(|r| Box::new(r.iter().map(|v| (**v).clone_note()).collect())),
        }
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} notes)", self.len())
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
    fn a_note_is_small_in_an_answer() {
        assert!(std::mem::size_of::<Extensions>() <= 24);
    }

    #[test]
    fn notes_by_type_one_of_each() {
        let mut e = Extensions::default();
        assert_eq!(e.get::<Mark>(), None);
        e.insert(Mark);
        e.insert(Count(1));
        e.insert(Count(2));
        assert_eq!(e.get::<Mark>(), Some(&Mark));
        assert_eq!(e.get::<Count>(), Some(&Count(2)));
        #[derive(Clone, Debug, PartialEq)]
        struct Third(&'static str);
        e.insert(Third("x"));
        e.insert(Third("y"));
        let copy = e.clone();
        assert_eq!(copy.get::<Count>(), Some(&Count(2)));
        assert_eq!(copy.get::<Third>(), Some(&Third("y")));
        assert_eq!(format!("{copy:?}"), "Extensions(3 notes)");
    }
}

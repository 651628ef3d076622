//! A thread's offers in this replica's memory: bounded to [`MAX_THREADS`]
//! threads; past that, threads whose offers all left the window go first,
//! then the half least recently offered to.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smallvec::SmallVec;

use super::{Held, Slot, ThreadOffers};
use crate::call::clock::{self, Instant};
use crate::call::request::ThreadId;
use crate::layers::fleet::Unavailable;

/// Threads tracked in memory before the ones with no offer left in the window
/// are dropped.
pub const MAX_THREADS: usize = 100_000;

/// When offers were shown in a thread, oldest first, in milliseconds after
/// the map was made. Held inline up to the default cap of 3: no allocation
/// per thread, and 48 bytes a thread in the map (a `VecDeque<Instant>` took
/// 32 inline plus a 64-byte allocation).
type Offers = SmallVec<[u64; 3]>;

/// Offers per thread. A thread id is already a hash: foldhash is cheap on it.
pub(super) type Threads = HashMap<ThreadId, Offers, foldhash::fast::RandomState>;

/// This replica's count of each thread's offers.
pub struct LocalThreads {
    cap: u32,
    window: Duration,
    /// What the offers' times count from.
    born: Instant,
    threads: Arc<Mutex<Threads>>,
}

impl LocalThreads {
    pub fn new(cap: u32, window: Duration) -> LocalThreads {
        LocalThreads {
            cap,
            window,
            born: clock::now(),
            threads: Arc::default(),
        }
    }

    /// A slot for `thread`, or `None` at the cap.
    pub fn reserve_now(&self, thread: ThreadId) -> Option<Held> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let now = millis_since(self.born);
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let expired = |at: &u64| now.saturating_sub(*at) >= window;
        if threads.len() >= MAX_THREADS {
            evict(&mut threads, expired);
        }
        let offers = threads.entry(thread).or_default();
        let live = offers
            .iter()
            .position(|at| !expired(at))
            .unwrap_or(offers.len());
        offers.drain(..live);
        if offers.len() >= self.cap as usize {
            return None;
        }
        offers.push(now);
        Some(Held(Some(Slot::Local {
            threads: self.threads.clone(),
            thread,
            at: now,
        })))
    }
}

impl ThreadOffers for LocalThreads {
    fn reserve(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Held>, Unavailable>> + Send + '_ {
        std::future::ready(Ok(self.reserve_now(thread)))
    }
}

/// Gives back the slot taken at `at` in `thread`.
pub(super) fn release(threads: &Mutex<Threads>, thread: ThreadId, at: u64) {
    let mut threads = threads.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(offers) = threads.get_mut(&thread) {
        if let Some(i) = offers.iter().position(|t| *t == at) {
            offers.remove(i);
        }
    }
}

/// Makes room: drops the threads whose offers all left the window, and if
/// that is not enough, the half whose newest offer is oldest (their counts
/// start again). Run once per `MAX_THREADS / 2` new threads at most.
fn evict(threads: &mut Threads, expired: impl Fn(&u64) -> bool) {
    threads.retain(|_, offers| !offers.iter().all(&expired));
    if threads.len() < MAX_THREADS / 2 {
        return;
    }
    let mut newest: Vec<u64> = threads.values().filter_map(|o| o.last().copied()).collect();
    let middle = newest.len() / 2;
    let (_, cut, _) = newest.select_nth_unstable(middle);
    let cut = *cut;
    threads.retain(|_, offers| offers.last().is_some_and(|at| *at > cut));
}

/// Milliseconds from `born` to now.
fn millis_since(born: Instant) -> u64 {
    u64::try_from(clock::now().duration_since(born).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_the_most_recent_half() {
        let mut threads = Threads::default();
        for n in 0..MAX_THREADS as u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_le_bytes());
            threads.insert(id, Offers::from_slice(&[n]));
        }
        evict(&mut threads, |_| false);
        assert_eq!(threads.len(), MAX_THREADS / 2 - 1);
        let mut newest = [0u8; 16];
        newest[..8].copy_from_slice(&(MAX_THREADS as u64 - 1).to_le_bytes());
        assert!(threads.contains_key(&newest));
    }
}

//! Threads in this replica's memory: one map under one lock (every change
//! to a thread is a few comparisons), in the order they were last changed,
//! bounded to [`MAX_THREADS`]: a new thread past that drops the one changed
//! longest ago, so making room is one removal, never a sweep of the map
//! while calls wait for its lock. Opt-outs are a set of their own beside
//! the map, never evicted with threads: bounded to [`MAX_OPT_OUTS`], and
//! kept until an opt-in.
//! Each change is handed to the journal, if there is one, which writes it
//! to disk on its own thread.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use super::journal::Journal;
use super::{
    Before, Held, Keep, MessageKey, NoSlot, Offer, Slot as AnySlot, Thread, Threads, RESERVED, SEEN,
};
use crate::call::ahead::Ahead;
use crate::call::clock::Calendar;
use crate::call::thread::ThreadId;
use crate::integrator::rules::Known;
use crate::partners::encore::links::LinkKey;
use crate::state::fleet::Unavailable;

/// Threads kept in memory before the oldest are dropped.
pub const MAX_THREADS: usize = 100_000;

/// Opted-out threads kept at most (about 36 MiB at the bound). A platform
/// with more opted-out users runs a fleet on Redis.
pub const MAX_OPT_OUTS: usize = 1_000_000;

/// Threads by id, least recently changed first. A thread id is already a
/// hash: foldhash is cheap on it.
type Map = hashlink::LinkedHashMap<ThreadId, Thread, foldhash::fast::RandomState>;

/// The threads and, apart, the opted-out ones.
struct Store {
    threads: Map,
    opted_out: HashSet<ThreadId, foldhash::fast::RandomState>,
}

impl Default for Store {
    /// The map's table sized at once for twice [`MAX_THREADS`] (2.3 MiB: a
    /// pointer and a control byte per slot): filling it never stops a call
    /// for a rehash of the whole table, and at under half full a removed
    /// thread's slot is free again rather than a tombstone that would, in
    /// time, make the table rehash in place (a 6 ms pause at the bound).
    fn default() -> Store {
        Store {
            threads: Map::with_capacity_and_hasher(2 * MAX_THREADS, Default::default()),
            opted_out: HashSet::default(),
        }
    }
}

/// [`MAX_OPT_OUTS`] reached: a new opt-out cannot be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptOutsFull;

/// This replica's threads.
pub struct LocalThreads {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    map: Mutex<Store>,
    keep: Keep,
    calendar: Calendar,
    journal: Option<Journal>,
}

impl LocalThreads {
    /// Threads in memory only, or written behind to `journal` (and first
    /// read back from it).
    pub fn new(keep: Keep, journal: Option<Journal>) -> LocalThreads {
        let calendar = Calendar::new();
        let mut map = Store::default();
        if let Some(journal) = &journal {
            let now = calendar.now_ms();
            let (threads, opted_out) = journal.loaded();
            let mut live = Vec::with_capacity(threads.len());
            for (id, thread) in threads {
                if now.saturating_sub(thread.last_active()) < keep.retention_ms() {
                    live.push((id, thread));
                } else {
                    journal.delete(id);
                }
            }
            // In the order of their last activity, as if changed so.
            live.sort_by_key(|(_, t)| t.last_active());
            map.threads.extend(live);
            map.opted_out.extend(opted_out);
        }
        LocalThreads {
            shared: Arc::new(Shared {
                map: Mutex::new(map),
                keep,
                calendar,
                journal,
            }),
        }
    }

    /// Threads held now.
    pub fn len(&self) -> usize {
        self.shared.lock().threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (up to `within`) until every change is on disk.
    pub fn flush(&self, within: std::time::Duration) {
        if let Some(journal) = &self.shared.journal {
            journal.flush(within);
        }
    }

    /// The local half of the trait, callable without a future (the fleet
    /// falls back to these).
    pub fn now(&self) -> i64 {
        self.shared.calendar.now_ms()
    }

    pub fn message_now(&self, thread: ThreadId, message: MessageKey, at: i64) -> Before {
        self.shared.change(thread, |t, _, opted_out| {
            let before = Before {
                last_inbound: t.last_inbound,
                last_any: t.last_any,
                known: t.known(opted_out),
                repeated: t.seen.contains(&message),
            };
            if !before.repeated {
                t.last_inbound = Some(t.last_inbound.map_or(at, |l| l.max(at)));
                t.last_any = Some(t.last_any.map_or(at, |l| l.max(at)));
                if t.seen.len() == SEEN {
                    t.seen.remove(0);
                }
                t.seen.push(message);
            }
            before
        })
    }

    pub fn known_now(&self, thread: ThreadId) -> Known {
        let now = self.now();
        let window = self.shared.keep.window_ms;
        let store = self.shared.lock();
        let opted_out = store.opted_out.contains(&thread);
        store.threads.get(&thread).map_or_else(
            || Known {
                opted_out,
                ..Known::default()
            },
            |t| {
                let mut known = t.known(opted_out);
                known
                    .offers
                    .retain(|(at, _)| now.saturating_sub(*at) < window);
                known
            },
        )
    }

    pub fn reserve_now(&self, thread: ThreadId) -> Result<Held, NoSlot> {
        let cap = self.shared.keep.cap as usize;
        let at = self.shared.change_slots(thread, |t, now, opted_out| {
            if opted_out {
                return Err(NoSlot::OptedOut);
            }
            if cap > 0 && t.offers.len() >= cap {
                return Err(NoSlot::Cap);
            }
            // Two slots taken in one millisecond stay two.
            let at = t
                .offers
                .last()
                .map_or(now, |o| o.at.max(now - 1) + 1)
                .max(now);
            t.offers.push(Offer { at, link: RESERVED });
            Ok(at)
        })?;
        Ok(Held(Some(AnySlot::Local(Slot {
            shared: self.shared.clone(),
            thread,
            at,
        }))))
    }

    pub fn unsent_now(&self, thread: ThreadId, link: LinkKey) -> Option<u64> {
        if link == RESERVED {
            return None;
        }
        self.shared.change(thread, |t, _, _| {
            let i = t.offers.iter().position(|o| o.link == link)?;
            t.offers.remove(i);
            Some(t.offers.iter().filter(|o| o.link != RESERVED).count() as u64)
        })
    }

    /// Opts `thread` out (or back in); a thread with no message yet (a
    /// platform's list of earlier opt-outs) is kept all the same.
    pub fn opt_now(&self, thread: ThreadId, out: bool) -> Result<(), OptOutsFull> {
        let mut store = self.shared.lock();
        if out {
            if store.opted_out.len() >= MAX_OPT_OUTS && !store.opted_out.contains(&thread) {
                return Err(OptOutsFull);
            }
            store.opted_out.insert(thread);
        } else {
            store.opted_out.remove(&thread);
        }
        if let Some(journal) = &self.shared.journal {
            journal.opt(thread, out);
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to `thread` (a new one if unknown) with its offers out of
    /// the window dropped, then journals it. `f` is also told whether the
    /// thread opted out.
    fn change<T>(&self, thread: ThreadId, f: impl FnOnce(&mut Thread, i64, bool) -> T) -> T {
        self.apply(thread, true, f)
    }

    /// [`Shared::change`] for what the file does not keep (a slot taken or
    /// given back while its call is under way): no journal write.
    fn change_slots<T>(&self, thread: ThreadId, f: impl FnOnce(&mut Thread, i64, bool) -> T) -> T {
        self.apply(thread, false, f)
    }

    fn apply<T>(
        &self,
        thread: ThreadId,
        journal: bool,
        f: impl FnOnce(&mut Thread, i64, bool) -> T,
    ) -> T {
        let now = self.calendar.now_ms();
        let mut store = self.lock();
        let Store { threads, opted_out } = &mut *store;
        if !threads.contains_key(&thread) {
            while threads.len() >= MAX_THREADS {
                self.drop_oldest(threads);
            }
        }
        let opted_out = opted_out.contains(&thread);
        // Changed now: to the back of the order.
        let t = match threads.entry(thread) {
            hashlink::linked_hash_map::Entry::Occupied(mut known) => {
                known.to_back();
                known.into_mut()
            }
            hashlink::linked_hash_map::Entry::Vacant(new) => new.insert(Thread::default()),
        };
        let window = self.keep.window_ms;
        let live = t
            .offers
            .iter()
            .position(|o| now.saturating_sub(o.at) < window)
            .unwrap_or(t.offers.len());
        t.offers.drain(..live);
        let out = f(t, now, opted_out);
        match &self.journal {
            Some(j) if journal => j.put(thread, t),
            _ => {}
        }
        out
    }

    /// Makes room: drops the thread changed longest ago (its opt-out, if
    /// any, stays: opt-outs are kept apart).
    fn drop_oldest(&self, threads: &mut Map) {
        if let Some((id, _)) = threads.pop_front() {
            if let Some(journal) = &self.journal {
                journal.delete(id);
            }
        }
    }
}

/// A slot taken in memory.
pub(super) struct Slot {
    shared: Arc<Shared>,
    thread: ThreadId,
    at: i64,
}

impl Slot {
    pub(super) fn keep(self, link: LinkKey) {
        let at = self.at;
        self.shared.change(self.thread, |t, _, _| {
            // The same link shown again (a replay the partner made) is one offer.
            let same = t.offers.iter().any(|o| o.link == link);
            if let Some(i) = t
                .offers
                .iter()
                .position(|o| o.at == at && o.link == RESERVED)
            {
                if same {
                    t.offers.remove(i);
                } else {
                    t.offers[i].link = link;
                }
            }
            t.last_any = Some(t.last_any.map_or(at, |l| l.max(at)));
        });
    }

    pub(super) fn release(self) {
        let at = self.at;
        self.shared.change_slots(self.thread, |t, _, _| {
            if let Some(i) = t
                .offers
                .iter()
                .position(|o| o.at == at && o.link == RESERVED)
            {
                t.offers.remove(i);
            }
        });
    }
}

impl Threads for LocalThreads {
    fn now_ms(&self) -> i64 {
        self.now()
    }

    fn message(
        &self,
        thread: ThreadId,
        message: MessageKey,
        at: i64,
    ) -> impl Future<Output = Result<Before, Unavailable>> + Send + '_ {
        std::future::ready(Ok(self.message_now(thread, message, at)))
    }

    fn known(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Known, Unavailable>> + Send + '_ {
        std::future::ready(Ok(self.known_now(thread)))
    }

    fn reserve<'a>(
        &'a self,
        thread: ThreadId,
        _: &'a mut Ahead,
    ) -> impl Future<Output = Result<Result<Held, NoSlot>, Unavailable>> + Send + 'a {
        std::future::ready(Ok(self.reserve_now(thread)))
    }

    fn unsent(
        &self,
        thread: ThreadId,
        link: LinkKey,
    ) -> impl Future<Output = Result<Option<u64>, Unavailable>> + Send + '_ {
        std::future::ready(Ok(self.unsent_now(thread, link)))
    }

    fn opt(
        &self,
        thread: ThreadId,
        out: bool,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send + '_ {
        std::future::ready(self.opt_now(thread, out).map_err(|OptOutsFull| Unavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep() -> Keep {
        Keep {
            window_ms: 1_000_000,
            idle_gap_ms: 1_000,
            cap: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_links_and_the_cap() {
        let threads = LocalThreads::new(keep(), None);
        let t = [1u8; 16];
        let a = threads.reserve_now(t).unwrap();
        let b = threads.reserve_now(t).unwrap();
        assert!(
            matches!(threads.reserve_now(t), Err(NoSlot::Cap)),
            "at the cap"
        );
        drop(b);
        a.keep(7);
        assert_eq!(threads.known_now(t).offers.len(), 1);
        let c = threads.reserve_now(t).unwrap();
        c.keep(8);
        threads.opt_now(t, true).unwrap();
        assert!(matches!(threads.reserve_now(t), Err(NoSlot::OptedOut)));
        threads.opt_now(t, false).unwrap();
        assert_eq!(threads.unsent_now(t, 7), Some(1));
        assert_eq!(threads.unsent_now(t, 7), None);
        tokio::time::advance(std::time::Duration::from_millis(1_000_001)).await;
        assert!(threads.known_now(t).offers.is_empty(), "out of the window");
    }

    #[test]
    fn a_new_thread_past_the_bound_drops_the_one_changed_longest_ago() {
        let threads = LocalThreads::new(keep(), None);
        let now = threads.now();
        let id = |n: i64| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_le_bytes());
            id
        };
        for n in 0..MAX_THREADS as i64 {
            threads.message_now(id(n), 1, now);
        }
        threads.opt_now(id(0), true).unwrap();
        // Thread 1 changed again: now the most recent.
        threads.message_now(id(1), 2, now);
        threads.message_now([9u8; 16], 1, now);
        assert_eq!(threads.len(), MAX_THREADS, "one out, one in");
        let store = threads.shared.lock();
        assert!(!store.threads.contains_key(&id(0)), "the oldest went");
        assert!(store.threads.contains_key(&id(1)), "changed again, kept");
        assert!(store.threads.contains_key(&id(2)));
        drop(store);
        threads.message_now([8u8; 16], 1, now);
        assert!(
            !threads.shared.lock().threads.contains_key(&id(2)),
            "then the next oldest"
        );
        assert!(
            threads.known_now(id(0)).opted_out,
            "an opt-out outlives its evicted thread"
        );
    }
}

//! The last requests this gateway answered, for the admin console's
//! `/requests`: a fixed ring of fixed-size slots, so its memory is known
//! before the first call (entries × [`Recent::SLOT_BYTES`]) and recording one
//! allocates nothing. Never a body, a key, a header or a secret: the time,
//! the route, the status, the fallback reason, the duration, the request id
//! (at most 128 visible ASCII bytes, `headers::request_id`) and a hash of
//! the caller's id, keyed per process so it cannot be looked up elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::call::clock::{self, Instant};
use crate::call::route::AnyRoute;

/// What the ring keeps of one request.
#[derive(Clone, Copy)]
struct Slot {
    /// When it was answered, in ms after the ring was made; 0: never used.
    at_ms: i64,
    /// Order of recording, to list the ring newest first.
    seq: usize,
    /// `None`: refused before a route was known.
    route: Option<AnyRoute>,
    status: u16,
    fallback: [u8; 32],
    fallback_len: u8,
    duration_us: u64,
    request_id: [u8; 128],
    request_id_len: u8,
    /// The caller's id hashed with this process's key; 0: none.
    caller: u64,
}

// What one entry costs stays under 256 bytes (checked as it compiles).
const _: () = assert!(Recent::SLOT_BYTES < 256);

/// One request as `/requests` lists it.
#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub at_ms: i64,
    pub route: &'static str,
    pub status: u16,
    /// The fallback reason (`x-offergate-fallback`), when one was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub duration_us: u64,
    pub request_id: String,
    /// 16 hex digits, the same for one caller for the life of the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_hash: Option<String>,
}

/// One request, as the edge hands it over.
pub struct Answered<'a> {
    /// When it was answered (the edge has the time already: no clock read).
    pub at: Instant,
    pub route: Option<AnyRoute>,
    pub status: u16,
    pub fallback: Option<&'a [u8]>,
    pub duration_us: u64,
    pub request_id: &'a [u8],
    pub caller: Option<&'a str>,
}

/// The ring. Each slot has its own lock, taken by one writer at a time for
/// a copy of ~200 bytes: callers on different cores do not wait on each other.
pub struct Recent {
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
    key: u64,
    /// When the ring was made, on both clocks: entries keep monotonic
    /// times, listed as Unix ms.
    origin: (Instant, i64),
}

impl Recent {
    /// What one entry costs, whatever it holds.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Mutex<Slot>>();

    /// A ring of `entries` slots (at least 1).
    pub fn new(entries: usize) -> Recent {
        let empty = Slot {
            at_ms: 0,
            seq: 0,
            route: None,
            status: 0,
            fallback: [0; 32],
            fallback_len: 0,
            duration_us: 0,
            request_id: [0; 128],
            request_id_len: 0,
            caller: 0,
        };
        Recent {
            slots: (0..entries.max(1)).map(|_| Mutex::new(empty)).collect(),
            next: AtomicUsize::new(0),
            key: fastrand::u64(..),
            origin: (clock::now(), clock::wall_ms()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Keeps `a`, in place of the oldest entry once the ring is full.
    pub fn record(&self, a: Answered<'_>) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let len = a.request_id.len().min(128);
        let mut request_id = [0u8; 128];
        request_id[..len].copy_from_slice(&a.request_id[..len]);
        let reason = a.fallback.unwrap_or_default();
        let reason_len = reason.len().min(32);
        let mut fallback = [0u8; 32];
        fallback[..reason_len].copy_from_slice(&reason[..reason_len]);
        let caller = a.caller.map_or(0, |c| {
            xxhash_rust::xxh3::xxh3_64_with_seed(c.as_bytes(), self.key).max(1)
        });
        let since = a.at.saturating_duration_since(self.origin.0).as_millis();
        let slot = Slot {
            at_ms: i64::try_from(since).unwrap_or(i64::MAX - 1) + 1,
            seq,
            route: a.route,
            status: a.status,
            fallback,
            fallback_len: reason_len as u8,
            duration_us: a.duration_us,
            request_id,
            request_id_len: len as u8,
            caller,
        };
        let mut held = self.slots[seq % self.slots.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A writer lapped by a later one leaves the newer entry in place.
        if held.at_ms == 0 || held.seq <= seq {
            *held = slot;
        }
    }

    /// Up to `limit` entries, newest first.
    pub fn list(&self, limit: usize) -> Vec<Entry> {
        let mut slots: Vec<Slot> = self
            .slots
            .iter()
            .map(|s| *s.lock().unwrap_or_else(|p| p.into_inner()))
            .filter(|s| s.at_ms != 0)
            .collect();
        slots.sort_by_key(|s| std::cmp::Reverse(s.seq));
        slots
            .into_iter()
            .take(limit)
            .map(|s| Entry {
                at_ms: self.origin.1 + s.at_ms - 1,
                route: s.route.map_or("-", AnyRoute::as_str),
                status: s.status,
                fallback: (s.fallback_len > 0).then(|| {
                    String::from_utf8_lossy(&s.fallback[..usize::from(s.fallback_len)]).into_owned()
                }),
                duration_us: s.duration_us,
                request_id: String::from_utf8_lossy(&s.request_id[..usize::from(s.request_id_len)])
                    .into_owned(),
                caller_hash: (s.caller != 0).then(|| format!("{:016x}", s.caller)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(i: i64, caller: Option<&str>) -> Answered<'_> {
        Answered {
            at: clock::now() + std::time::Duration::from_millis(1_000 + i as u64),
            route: Some(AnyRoute::ALL[0]),
            status: 200,
            fallback: (i % 2 == 0).then_some(b"circuit_open".as_slice()),
            duration_us: 10,
            request_id: b"req",
            caller,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_ring_keeps_the_newest_and_lists_them_first() {
        let ring = Recent::new(4);
        for i in 0..10 {
            ring.record(answered(i, Some("client-1")));
        }
        let listed = ring.list(100);
        let start = ring.origin.1;
        assert_eq!(
            listed.iter().map(|e| e.at_ms - start).collect::<Vec<_>>(),
            [1_009, 1_008, 1_007, 1_006]
        );
        assert_eq!(listed[1].fallback.as_deref(), Some("circuit_open"));
        assert_eq!(listed[0].fallback, None);
        assert_eq!(ring.list(2).len(), 2);
    }

    #[test]
    fn a_caller_is_kept_only_as_a_hash_stable_within_the_process() {
        let ring = Recent::new(8);
        ring.record(answered(1, Some("client-secret-name")));
        ring.record(answered(2, Some("client-secret-name")));
        ring.record(answered(3, None));
        let listed = ring.list(8);
        let hash = listed[1].caller_hash.clone().expect("hashed");
        assert_eq!(listed[2].caller_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(listed[0].caller_hash, None);
        assert!(!hash.contains("client"));
        assert_eq!(hash.len(), 16);
        // Another process (another key) gives another hash.
        let other = Recent::new(1);
        other.record(answered(1, Some("client-secret-name")));
        assert_ne!(other.list(1)[0].caller_hash.as_deref(), Some(hash.as_str()));
    }

    #[test]
    fn a_request_id_is_cut_at_the_slot_size_and_memory_is_fixed() {
        let ring = Recent::new(2);
        let long = [b'x'; 300];
        ring.record(Answered {
            request_id: &long,
            ..answered(1, None)
        });
        assert_eq!(ring.list(1)[0].request_id.len(), 128);
    }
}

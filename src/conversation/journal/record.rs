//! A thread's record in the file: what [`encode`] writes and [`decode`]
//! reads back.

use smallvec::SmallVec;

use super::super::{MessageKey, Offer, Thread, RESERVED, SEEN};

/// Version 1: flags (1 byte: inbound time, any time, and an opt-out that
/// earlier builds kept in the thread: read, never written), the two
/// times (8 bytes each when present), the offers (count, then 16 bytes
/// each: time, link), the message ids (count, then 4 bytes each). Little
/// endian. Slots still under way are not written.
const VERSION: u8 = 1;

pub(super) fn encode(t: &Thread) -> Record {
    let mut out = Record::new();
    out.push(VERSION);
    let flags = u8::from(t.last_inbound.is_some()) | u8::from(t.last_any.is_some()) << 1;
    out.push(flags);
    for at in [t.last_inbound, t.last_any].into_iter().flatten() {
        out.extend_from_slice(&at.to_le_bytes());
    }
    let shown = || t.offers.iter().filter(|o| o.link != RESERVED);
    out.push(shown().count() as u8);
    for o in shown() {
        out.extend_from_slice(&o.at.to_le_bytes());
        out.extend_from_slice(&o.link.to_le_bytes());
    }
    out.push(t.seen.len() as u8);
    for m in &t.seen {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out
}

/// A thread's record as queued: held in place up to three offers and every
/// seen message (92 bytes), so queueing a change allocates nothing and the
/// writer thread frees nothing of the calls' (a free across threads).
pub(super) type Record = SmallVec<[u8; 92]>;

/// A record, and whether it carries an earlier build's opt-out.
pub(super) fn decode(bytes: &[u8]) -> Option<(Thread, bool)> {
    let mut r = Reader(bytes);
    if r.take(1)?[0] != VERSION {
        return None;
    }
    let flags = r.take(1)?[0];
    let mut t = Thread::default();
    if flags & 1 != 0 {
        t.last_inbound = Some(r.i64()?);
    }
    if flags & 2 != 0 {
        t.last_any = Some(r.i64()?);
    }
    for _ in 0..r.take(1)?[0] {
        let at = r.i64()?;
        let link = r.i64()? as u64;
        t.offers.push(Offer { at, link });
    }
    for _ in 0..r.take(1)?[0] {
        let m = MessageKey::from_le_bytes(r.take(4)?.try_into().ok()?);
        if t.seen.len() < SEEN {
            t.seen.push(m);
        }
    }
    r.0.is_empty().then_some((t, flags & 4 != 0))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

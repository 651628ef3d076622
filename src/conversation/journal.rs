//! The threads of a single instance, on disk: an embedded redb file
//! (`[state] thread_file`) that the memory map is read back from at start,
//! so a restart does not make a mid-thread message look like a first one.
//!
//! Written behind, never on the request path: a change replaces the
//! thread's pending record in a map (one lock, no I/O), and a writer thread
//! of its own commits whatever is pending in one transaction, over and over.
//! A burst of changes to one thread is one write. The file reads back as
//! what the map holds (bounded the same way: an evicted thread is written
//! gone, and its record goes with its pack).
//! At shutdown the gateway waits for the writer to catch up.
//!
//! Why redb: pure Rust (no C toolchain in the image), one file, crash-safe
//! commits, and `benches/threads.rs` measured it against SQLite for this
//! load (docs/decisions.md).
//!
//! Threads are kept in the order they were written, their records packed
//! several to a value (`packs.rs`): a commit adds a few packs at the
//! tree's end and removes emptied ones at its start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};
use smallvec::SmallVec;

#[cfg(test)]
use super::packs::PACK_THREADS;
use super::packs::{ById, Packs, PACKS};
use super::{MessageKey, Offer, Thread, RESERVED, SEEN};
use crate::call::problem::Problem;
use crate::call::thread::ThreadId;

/// Earlier builds kept each record under a sequence number of its own (the
/// thread's id, then the record): read once, moved to [`PACKS`], dropped.
const THREADS: TableDefinition<u64, &[u8]> = TableDefinition::new("threads_by_write");
/// Builds before those kept records under the thread's id: read once, moved
/// to [`THREADS`] (then on to [`PACKS`]), dropped.
const BY_ID: TableDefinition<&[u8], &[u8]> = TableDefinition::new("threads");
/// Opted-out threads, apart from the threads: an opt-out outlives its
/// thread's retention and eviction, until the opt-in.
const OPT_OUTS: TableDefinition<&[u8], ()> = TableDefinition::new("opt_outs");

/// What the file held at open: the threads, and the opted-out ids.
type Loaded = (Vec<(ThreadId, Thread)>, Vec<ThreadId>);

/// The writer's handle. Dropping it writes what is pending and stops the
/// writer.
pub struct Journal {
    shared: Arc<Shared>,
    loaded: Mutex<Loaded>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<Pending>,
    /// Something is pending (or the journal is closing).
    wake: Condvar,
    /// The writer has nothing left to write.
    idle: Condvar,
    path: PathBuf,
}

#[derive(Default)]
struct Pending {
    /// The newest record of each changed thread; `None`: delete it.
    changes: ById<Option<Record>>,
    /// Opt-outs (`true`) and opt-ins changed.
    opt_outs: ById<bool>,
    writing: bool,
    closing: bool,
    /// Someone waits in [`Journal::flush`]: commit at once.
    flushing: bool,
    failures: u64,
}

impl Journal {
    /// Opens (or creates) the file at `path` and reads every thread in it.
    pub fn open(path: &Path) -> Result<Journal, Problem> {
        let name = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Problem(format!(
                    "state.thread_file: the directory of {name} does not exist"
                )));
            }
        }
        // Made readable by this user alone (it holds hashes of end users'
        // ids, their opt-outs); an existing file keeps its mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let unreadable = |why: &dyn std::fmt::Display| {
            Problem(format!(
                "state.thread_file: cannot read {name} ({why}): it is not a thread file, or it is damaged; move it aside and offergate starts a new one"
            ))
        };
        let db = match create_quietly(path) {
            Some(Ok(db)) => db,
            Some(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(Problem(format!(
                    "state.thread_file: {name} is in use by another offergate; give each instance its own file (or use [state] backend = \"redis\" for a fleet)"
                )))
            }
            Some(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
                if e.kind() != std::io::ErrorKind::InvalidData
                    && e.kind() != std::io::ErrorKind::UnexpectedEof =>
            {
                return Err(Problem(format!("state.thread_file: cannot open {name}: {e}")))
            }
            Some(Err(e)) => return Err(unreadable(&e)),
            None => return Err(unreadable(&"cut short")),
        };
        let (loaded, written) = move_by_id(&db)
            .and_then(|()| move_to_packs(&db))
            .and_then(|()| read_all(&db))
            .map_err(|e| Problem(format!("state.thread_file: cannot read {name}: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            idle: Condvar::new(),
            path: path.to_path_buf(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("offergate-journal".into())
                .spawn(move || write_behind(&db, &shared, written))
                .map_err(|e| Problem(format!("cannot start the thread-file writer: {e}")))?
        };
        Ok(Journal {
            shared,
            loaded: Mutex::new(loaded),
            writer: Some(writer),
        })
    }

    /// The threads and opt-outs read at open, once.
    pub(super) fn loaded(&self) -> Loaded {
        std::mem::take(&mut *self.loaded.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Queues an opt-out (`out`) or an opt-in of `id`.
    pub fn opt(&self, id: ThreadId, out: bool) {
        let mut state = self.shared.lock();
        let wake = state.wants_work();
        state.opt_outs.insert(id, out);
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Queues `thread`'s new record.
    pub fn put(&self, id: ThreadId, thread: &Thread) {
        self.queue(id, Some(encode(thread)));
    }

    /// Queues `thread`'s removal.
    pub fn delete(&self, id: ThreadId) {
        self.queue(id, None);
    }

    fn queue(&self, id: ThreadId, record: Option<Record>) {
        let mut state = self.shared.lock();
        let wake = state.wants_work();
        state.changes.insert(id, record);
        drop(state);
        // Woken only when it waits for work: a writer at rest between two
        // commits takes the change with the next batch, and a call never
        // pays for waking it (a context switch per change, on a busy core).
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Waits up to `within` for everything queued to be written.
    pub fn flush(&self, within: Duration) {
        let mut state = self.shared.lock();
        state.flushing = true;
        self.shared.wake.notify_one();
        let (mut state, _) = self
            .shared
            .idle
            .wait_timeout_while(state, within, |s| s.has_pending() || s.writing)
            .unwrap_or_else(|p| p.into_inner());
        state.flushing = false;
    }

    /// Commits that failed (each logged).
    pub fn failures(&self) -> u64 {
        self.shared.lock().failures
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Pending {
    fn has_pending(&self) -> bool {
        !self.changes.is_empty() || !self.opt_outs.is_empty()
    }

    /// The writer waits for a first change (not at rest after a commit).
    fn wants_work(&self) -> bool {
        !self.writing && !self.has_pending()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens (or creates) the redb file at `path`; `None` when redb panics on
/// it (a file cut short trips one of its assertions), without the panic's
/// message on stderr: the caller says what is wrong.
fn create_quietly(path: &Path) -> Option<Result<Database, redb::DatabaseError>> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened =
        std::panic::catch_unwind(|| Database::builder().set_cache_size(CACHE_BYTES).create(path));
    std::panic::set_hook(hook);
    opened.ok()
}

/// The writer: takes whatever is pending, commits it, and again, until the
/// journal closes with nothing left.
fn write_behind(db: &Database, shared: &Shared, mut written: Packs) {
    loop {
        let batch = {
            let mut state = shared.lock();
            while !state.has_pending() && !state.closing {
                state.writing = false;
                shared.idle.notify_all();
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if !state.has_pending() {
                state.writing = false;
                shared.idle.notify_all();
                return;
            }
            state.writing = true;
            // The next batch's map as large as this one: a call queueing a
            // change never waits for the map to grow under load.
            let size = state.changes.len();
            (
                std::mem::replace(
                    &mut state.changes,
                    ById::with_capacity_and_hasher(size, Default::default()),
                ),
                std::mem::take(&mut state.opt_outs),
            )
        };
        let committed = clock_now();
        let cpu_before = cpu_time();
        if let Err(e) = commit(db, &batch.0, &batch.1, &mut written) {
            shared.lock().failures += 1;
            // The file is what holds: what the writer knows of it is read again.
            if let Ok((_, known)) = read_all(db) {
                written = known;
            }
            tracing::warn!(
                file = %shared.path.display(),
                error = %e,
                threads = batch.0.len() + batch.1.len(),
                "could not write threads to the thread file; they stay in memory"
            );
        }
        // At most one commit per COMMIT_EVERY, and the writer rests four
        // times as long as it worked: under load a commit carries many
        // threads (their cost, the B-tree's pages and the fsync, shared),
        // and the writer takes at most a fifth of a core from the calls.
        // Worked is the writer's own CPU time: on a core the calls keep
        // busy, the time a commit takes is mostly theirs, and resting five
        // times that made the next batch larger, its commit longer and the
        // rest longer again (a 225,000-thread commit, then 25 s of rest,
        // `benches/README.md`). Never more than MAX_REST: threads reach the
        // file within about a second even when the writer needs more than
        // a fifth of a core. A flush or the close does not wait.
        let worked = match (cpu_before, cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => committed.elapsed(),
        };
        let rest = COMMIT_EVERY.max((worked * 5).min(MAX_REST));
        let mut state = shared.lock();
        while !state.closing && !state.flushing {
            let Some(left) = rest.checked_sub(committed.elapsed()) else {
                break;
            };
            state = shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// redb's page cache. Its default, 1 GiB, grows with the file (about 68 MB
/// at the thread map's bound) and is counted nowhere; the writer touches
/// the tree's two ends and reads the whole file only once, at open.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Threads written between two offers of the writer's core back to the
/// calls (`sched_yield`).
const YIELD_EVERY: usize = 64;

/// The shortest time between two commits.
const COMMIT_EVERY: Duration = Duration::from_millis(50);

/// The longest time between two commits.
const MAX_REST: Duration = Duration::from_secs(1);

/// The CPU time this thread has used, as the kernel counts it; `None`
/// where `/proc` does not say.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The writer's own clock: it paces real disk writes, not a call.
#[allow(clippy::disallowed_methods)]
fn clock_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A redb error, as text (its error types are large, and each says enough).
fn failed(e: impl std::fmt::Display) -> Problem {
    Problem(e.to_string())
}

/// Commits `batch` and `opt_outs`. If the commit fails, `written` no
/// longer says what the file holds (the caller reads it again).
fn commit(
    db: &Database,
    batch: &ById<Option<Record>>,
    opt_outs: &ById<bool>,
    written: &mut Packs,
) -> Result<(), Problem> {
    let txn = db.begin_write().map_err(failed)?;
    if !opt_outs.is_empty() {
        let mut table = txn.open_table(OPT_OUTS).map_err(failed)?;
        for (id, out) in opt_outs {
            if *out {
                table.insert(id.as_slice(), ()).map_err(failed)?;
            } else {
                table.remove(id.as_slice()).map_err(failed)?;
            }
        }
    }
    {
        let mut table = txn.open_table(PACKS).map_err(failed)?;
        // A large batch is CPU the calls' core is waiting for: it is offered
        // back between slices. The scheduler decides: on EEVDF a yield often
        // returns at once while the calls' thread has had more than its share
        // (`benches/README.md`, 2026-12-07, late).
        let changes = batch.iter().map(|(id, record)| (id, record.as_deref()));
        written
            .write(&mut table, changes, YIELD_EVERY, std::thread::yield_now)
            .map_err(failed)?;
    }
    txn.commit().map_err(failed)
}

/// An earlier build's file: its records moved to [`THREADS`] in the order
/// of their last activity, the old table dropped, in one commit.
fn move_by_id(db: &Database) -> Result<(), Problem> {
    let mut rows = Vec::new();
    {
        let read = db.begin_read().map_err(failed)?;
        let table = match read.open_table(BY_ID) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(failed(e)),
        };
        for row in table.iter().map_err(failed)? {
            let (key, value) = row.map_err(failed)?;
            let (key, value) = (key.value(), value.value());
            if key.len() == 16 {
                let active = decode(value).map_or(0, |(t, _)| t.last_active());
                rows.push((active, [key, value].concat()));
            }
        }
    }
    rows.sort_by_key(|(active, _)| *active);
    let txn = db.begin_write().map_err(failed)?;
    {
        let mut table = txn.open_table(THREADS).map_err(failed)?;
        let first = table
            .last()
            .map_err(failed)?
            .map_or(0, |(k, _)| k.value() + 1);
        for (at, (_, value)) in (first..).zip(&rows) {
            table.insert(at, value.as_slice()).map_err(failed)?;
        }
    }
    txn.delete_table(BY_ID).map_err(failed)?;
    txn.commit().map_err(failed)
}

/// An earlier build's records, one under each number of [`THREADS`], moved
/// to [`PACKS`] in their order (a thread's newest record alone), the old
/// table dropped, in one commit.
fn move_to_packs(db: &Database) -> Result<(), Problem> {
    let mut rows: Vec<(ThreadId, Vec<u8>)> = Vec::new();
    {
        let read = db.begin_read().map_err(failed)?;
        let table = match read.open_table(THREADS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(failed(e)),
        };
        for row in table.iter().map_err(failed)? {
            let (_, value) = row.map_err(failed)?;
            if let Some((id, record)) = value.value().split_first_chunk::<16>() {
                rows.push((*id, record.to_vec()));
            }
        }
    }
    // In file order: the last of each id is its newest.
    let mut seen = std::collections::HashSet::new();
    let mut newest: Vec<(ThreadId, &[u8])> = rows
        .iter()
        .rev()
        .filter(|(id, _)| seen.insert(*id))
        .map(|(id, record)| (*id, record.as_slice()))
        .collect();
    newest.reverse();
    let txn = db.begin_write().map_err(failed)?;
    {
        let mut table = txn.open_table(PACKS).map_err(failed)?;
        Packs::append(&mut table, &newest).map_err(failed)?;
    }
    txn.delete_table(THREADS).map_err(failed)?;
    txn.commit().map_err(failed)
}

/// Every thread and opt-out in the file, and what the writer must know of
/// it (packs that hold nothing any more are removed on the way).
fn read_all(db: &Database) -> Result<(Loaded, Packs), Problem> {
    let mut opted_out = Vec::new();
    {
        let txn = db.begin_read().map_err(failed)?;
        match txn.open_table(OPT_OUTS) {
            Ok(table) => {
                for row in table.iter().map_err(failed)? {
                    let (key, _) = row.map_err(failed)?;
                    if let Ok(id) = ThreadId::try_from(key.value()) {
                        opted_out.push(id);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let txn = db.begin_write().map_err(failed)?;
    let (records, packs) = {
        let mut table = txn.open_table(PACKS).map_err(failed)?;
        Packs::read(&mut table).map_err(failed)?
    };
    txn.commit().map_err(failed)?;
    let mut threads = Vec::with_capacity(records.len());
    for (id, record) in records {
        // A record this build cannot read is skipped, not fatal.
        let Some((thread, legacy_opt_out)) = decode(&record) else {
            continue;
        };
        if legacy_opt_out {
            opted_out.push(id);
        }
        threads.push((id, thread));
    }
    Ok(((threads, opted_out), packs))
}

/// Version 1: flags (1 byte: inbound time, any time, and an opt-out that
/// earlier builds kept in the thread: read, never written), the two
/// times (8 bytes each when present), the offers (count, then 16 bytes
/// each: time, link), the message ids (count, then 4 bytes each). Little
/// endian. Slots still under way are not written.
const VERSION: u8 = 1;

fn encode(t: &Thread) -> Record {
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
type Record = SmallVec<[u8; 92]>;

/// A record, and whether it carries an earlier build's opt-out.
fn decode(bytes: &[u8]) -> Option<(Thread, bool)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> Thread {
        Thread {
            last_inbound: Some(1_795_428_900_000),
            last_any: Some(1_795_428_901_000),
            offers: [
                Offer { at: 5, link: 77 },
                Offer {
                    at: 6,
                    link: RESERVED,
                },
            ]
            .into_iter()
            .collect(),
            seen: [1, 2, 3].into_iter().collect(),
        }
    }

    /// The id of the `n`th thread of a test.
    fn numbered(n: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        id
    }

    #[test]
    fn the_writers_own_cpu_time_is_read() {
        let before = cpu_time().expect("Linux says a thread's CPU time");
        let (mut x, started) = (0u64, clock_now());
        while cpu_time().is_some_and(|t| t < before + Duration::from_millis(5))
            && started.elapsed() < Duration::from_secs(10)
        {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_time().unwrap();
        assert!(
            after >= before + Duration::from_millis(5),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn a_record_reads_back_as_written_and_bad_bytes_are_refused() {
        let mut want = thread();
        want.offers.truncate(1);
        assert_eq!(decode(&encode(&thread())), Some((want, false)));
        assert_eq!(
            decode(&encode(&Thread::default())),
            Some((Thread::default(), false))
        );
        // An earlier build's record with its opt-out flag is read as one.
        let mut legacy = encode(&Thread::default());
        legacy[1] |= 4;
        assert_eq!(decode(&legacy), Some((Thread::default(), true)));
        let good = encode(&thread());
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "{cut}");
        }
        assert_eq!(decode(&[9, 0, 0, 0]), None);
    }

    #[test]
    fn what_is_written_is_read_back_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        let journal = Journal::open(&path).unwrap();
        assert!(journal.loaded().0.is_empty());
        journal.put([1; 16], &thread());
        journal.put([2; 16], &Thread::default());
        journal.delete([2; 16]);
        journal.opt([3; 16], true);
        journal.opt([4; 16], true);
        journal.opt([4; 16], false);
        assert!(
            Journal::open(&path).is_err(),
            "a second instance on one file is refused"
        );
        drop(journal);
        let again = Journal::open(&path).unwrap();
        let (loaded, opted_out) = again.loaded();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, [1; 16]);
        assert_eq!(
            opted_out,
            vec![[3; 16]],
            "an opt-out with no thread is kept"
        );
        assert!(Journal::open(&dir.path().join("missing/threads.redb")).is_err());
    }

    #[test]
    fn a_file_cut_short_or_not_a_thread_file_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        let journal = Journal::open(&path).unwrap();
        for n in 0..500 {
            journal.put(numbered(n), &thread());
        }
        drop(journal);
        let whole = std::fs::read(&path).unwrap();
        for cut in [100, 512, 4096, whole.len() / 2] {
            let short = dir.path().join(format!("short-{cut}.redb"));
            std::fs::write(&short, &whole[..cut.min(whole.len())]).unwrap();
            let e = Journal::open(&short).err().expect("refused").0;
            assert!(
                e.contains("not a thread file, or it is damaged"),
                "{cut}: {e}"
            );
        }
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "just some text, not a database\n".repeat(200)).unwrap();
        let e = Journal::open(&text).err().expect("refused").0;
        assert!(e.contains("not a thread file"), "{e}");
    }

    /// The file's entries in order: (pack, thread id, a record or a
    /// tombstone).
    fn entries(path: &Path) -> Vec<(u64, [u8; 16], bool)> {
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(PACKS).unwrap();
        let mut out = Vec::new();
        for row in table.iter().unwrap() {
            let (key, value) = row.unwrap();
            for (id, record) in super::super::packs::entries(value.value()) {
                out.push((key.value(), id, record.is_some()));
            }
        }
        out
    }

    /// The ids of the records (not tombstones) in the file, in order.
    fn records(path: &Path) -> Vec<[u8; 16]> {
        entries(path)
            .into_iter()
            .filter(|(_, _, record)| *record)
            .map(|(_, id, _)| id)
            .collect()
    }

    #[test]
    fn a_changed_or_evicted_thread_leaves_no_live_record_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        let journal = Journal::open(&path).unwrap();
        for id in [[1; 16], [2; 16], [3; 16]] {
            journal.put(id, &thread());
            journal.flush(Duration::from_secs(5));
        }
        journal.put([1; 16], &Thread::default());
        journal.delete([2; 16]);
        drop(journal);
        // The packs of 1 and 2 held nothing more and are gone; 2's
        // tombstone stays (after the pack of 3, which is still in use).
        let written = entries(&path);
        let mut kinds: Vec<_> = written.iter().map(|(_, id, r)| (*id, *r)).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![([1; 16], true), ([2; 16], false), ([3; 16], true)],
            "{written:?}"
        );
        assert_eq!(written[0].1, [3; 16], "{written:?}");
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        let mut ids: Vec<_> = threads.iter().map(|(id, _)| *id).collect();
        ids.sort();
        assert_eq!(ids, vec![[1; 16], [3; 16]]);
        let one = threads.iter().find(|(id, _)| *id == [1; 16]).unwrap();
        assert_eq!(one.1, Thread::default(), "the newer record");
        // Numbers keep growing after a reopen.
        journal.put([4; 16], &thread());
        drop(journal);
        let last = entries(&path).last().copied().unwrap();
        assert_eq!(last.1, [4; 16]);
        assert!(written.iter().all(|(pack, _, _)| *pack < last.0));
    }

    #[test]
    fn under_churn_at_the_bound_the_file_holds_about_the_live_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        let id = numbered;
        let journal = Journal::open(&path).unwrap();
        // A map of 500 threads: each new one evicts the oldest.
        for n in 0..5_000 {
            journal.put(id(n), &thread());
            if n >= 500 {
                journal.delete(id(n - 500));
            }
            if n % 100 == 99 {
                journal.flush(Duration::from_secs(5));
            }
        }
        drop(journal);
        let entries = entries(&path);
        let records = entries.iter().filter(|(_, _, r)| *r).count();
        assert!(
            records <= 500 + 2 * PACK_THREADS && entries.len() <= 2 * records,
            "{records} records, {} entries",
            entries.len()
        );
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        let mut ids: Vec<_> = threads.iter().map(|(id, _)| *id).collect();
        ids.sort_by_key(|id| u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
        let want: Vec<_> = (4_500..5_000).map(id).collect();
        assert!(ids == want, "{} threads read back", ids.len());
    }

    #[test]
    fn an_evicted_thread_in_a_pack_still_in_use_is_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        let id = numbered;
        let journal = Journal::open(&path).unwrap();
        // Three packs' worth in one commit, then a few changed again and a
        // few evicted, some of them twice over, across commits.
        for n in 0..150 {
            journal.put(id(n), &thread());
        }
        journal.flush(Duration::from_secs(5));
        for n in (0..150).step_by(7) {
            journal.delete(id(n));
        }
        for n in (0..150).step_by(5) {
            journal.put(id(n), &Thread::default());
        }
        journal.flush(Duration::from_secs(5));
        for n in (0..150).step_by(10) {
            journal.delete(id(n));
        }
        drop(journal);
        let gone = |n: u32| n.is_multiple_of(10) || (n.is_multiple_of(7) && !n.is_multiple_of(5));
        let want: Vec<_> = (0..150).filter(|n| !gone(*n)).map(id).collect();
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        let mut ids: Vec<_> = threads.iter().map(|(id, _)| *id).collect();
        ids.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(ids, want_sorted);
        for (id, thread) in &threads {
            let n = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let changed = n.is_multiple_of(5);
            assert_eq!(
                *thread == Thread::default(),
                changed,
                "{n}: the newest record"
            );
        }
    }

    #[test]
    fn an_earlier_builds_file_is_read_and_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(BY_ID).unwrap();
                let mut late = thread();
                late.last_any = Some(1_795_428_999_000);
                table
                    .insert([7u8; 16].as_slice(), encode(&late).as_slice())
                    .unwrap();
                table
                    .insert([8u8; 16].as_slice(), encode(&thread()).as_slice())
                    .unwrap();
                let mut legacy = encode(&Thread::default());
                legacy[1] |= 4;
                table
                    .insert([9u8; 16].as_slice(), legacy.as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let journal = Journal::open(&path).unwrap();
        let (threads, opted_out) = journal.loaded();
        assert_eq!(threads.len(), 3);
        assert_eq!(opted_out, vec![[9; 16]]);
        drop(journal);
        // In the order of their last activity; the old table is gone.
        assert_eq!(records(&path), vec![[9; 16], [8; 16], [7; 16]]);
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            db.begin_read().unwrap().open_table(BY_ID),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        // An earlier build run again on the file writes thread 7 its way:
        // the next open moves it over and keeps that record alone.
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(BY_ID).unwrap();
            table
                .insert([7u8; 16].as_slice(), encode(&Thread::default()).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        assert_eq!(threads.len(), 3);
        let seven: Vec<_> = threads.iter().filter(|(id, _)| *id == [7; 16]).collect();
        assert_eq!(seven.len(), 1);
        assert_eq!(seven[0].1, Thread::default(), "the newer record");
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        let seven: Vec<_> = threads.iter().filter(|(id, _)| *id == [7; 16]).collect();
        assert_eq!(seven.len(), 1, "read back once more: the newer record");
        assert_eq!(seven[0].1, Thread::default());
    }

    #[test]
    fn a_file_of_the_build_before_packs_is_read_and_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(THREADS).unwrap();
                for (at, id, t) in [
                    (0u64, [5u8; 16], thread()),
                    (1, [6; 16], thread()),
                    (2, [5; 16], Thread::default()),
                ] {
                    table
                        .insert(at, [id.as_slice(), &encode(&t)].concat().as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let journal = Journal::open(&path).unwrap();
        let (threads, _) = journal.loaded();
        let ids: Vec<_> = threads.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![[6; 16], [5; 16]], "in file order, 5's newest");
        assert_eq!(threads[1].1, Thread::default());
        drop(journal);
        assert_eq!(records(&path), vec![[6; 16], [5; 16]]);
        let db = Database::create(&path).unwrap();
        assert!(matches!(
            db.begin_read().unwrap().open_table(THREADS),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
    }
}

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
//! tree's end and removes emptied ones at its start. A record's bytes are
//! `record.rs`'s; a file an earlier build wrote is moved to this layout
//! when it is opened (`earlier.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};

use self::earlier::{move_by_id, move_to_packs};
use self::packs::{ById, Packs, PACKS};
use self::record::{decode, encode, Record};
use super::Thread;
use crate::call::problem::Problem;
use crate::call::thread::ThreadId;

mod earlier;
mod packs;
mod record;

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
        self.queue_with(|state| {
            state.opt_outs.insert(id, out);
        });
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
        self.queue_with(|state| {
            state.changes.insert(id, record);
        });
    }

    /// Makes `change` to what is pending, and wakes the writer if it
    /// waits for work.
    fn queue_with(&self, change: impl FnOnce(&mut Pending)) {
        let mut state = self.shared.lock();
        let wake = state.wants_work();
        change(&mut state);
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
        // `benches/README.md`). Never more than MAX_REST: the next commit
        // begins within a second even when the writer needs more than a
        // fifth of a core (its own wall time comes on top: up to 2.8 s for
        // a 175,000-thread batch on a core the calls kept busy). A flush or
        // the close does not wait.
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

#[cfg(test)]
mod tests;

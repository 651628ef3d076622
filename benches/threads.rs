//! The thread file's store, measured for the job it does: a writer thread
//! that commits batches of changed threads (records of ~60 bytes, keyed by
//! a 16-byte thread id) behind the request path, and one full read at start.
//! redb (adopted) against SQLite (rusqlite, bundled), both fully durable
//! (fsync per commit: redb's default, SQLite `journal_mode=WAL`,
//! `synchronous=FULL`), and what a request pays to hand a change over.
//! Then the thread map itself: the slowest single change while 300,000 new
//! threads arrive (the map full from the 100,001st on) against a run that
//! never fills it: what a call may wait on the map's lock.
//!
//!   cargo bench --bench threads --features bench-sqlite
//!
//! Figures go to benches/README.md as ratios within one run.

#![allow(clippy::disallowed_methods)] // timing is the point

use std::time::{Duration, Instant};

use offergate::conversation::{Journal, Keep, LocalThreads, Offer, Thread, MAX_THREADS};
use redb::{Database, ReadableTableMetadata, TableDefinition};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("threads");
const THREADS: u32 = 100_000;
const BATCH: u32 = 64;
const PASSES: u32 = 3;

fn id(n: u32) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    id[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
    id
}

fn record(n: u32) -> Vec<u8> {
    // A thread with two offers and four message ids: 1 + 1 + 16 + 1 + 32 + 1 + 16.
    let mut r = vec![1u8, 3];
    r.extend_from_slice(&(1_795_428_900_000i64 + i64::from(n)).to_le_bytes());
    r.extend_from_slice(&(1_795_428_900_000i64 + i64::from(n)).to_le_bytes());
    r.push(2);
    for k in 0..2u64 {
        r.extend_from_slice(&1_795_428_800_000i64.to_le_bytes());
        r.extend_from_slice(&(u64::from(n) * 7 + k).to_le_bytes());
    }
    r.push(4);
    for k in 0..4u32 {
        r.extend_from_slice(&(n ^ k).to_le_bytes());
    }
    r
}

fn per(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

/// This thread's user + system CPU time so far (Linux, clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Per store: µs per commit, ms to read every thread back, the file's bytes
/// after three passes over every thread.
fn redb_run(dir: &std::path::Path) -> (f64, f64, u64) {
    let path = dir.join("threads.redb");
    let db = Database::create(&path).unwrap();
    let started = Instant::now();
    let cpu_before = cpu();
    // Three passes over every thread: the file must stop growing once the
    // set of threads does.
    for pass in 0..PASSES {
        let mut n = 0;
        while n < THREADS {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TABLE).unwrap();
                for k in n..(n + BATCH).min(THREADS) {
                    t.insert(id(k).as_slice(), record(k + pass).as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
            n += BATCH;
        }
    }
    let batch_us = per(started.elapsed(), PASSES * THREADS.div_ceil(BATCH));
    println!(
        "redb:   {:.1} µs of CPU per thread written",
        per(cpu() - cpu_before, PASSES * THREADS)
    );
    drop(db);
    let started = Instant::now();
    let db = Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(TABLE).unwrap();
    let mut read = 0u64;
    for row in redb::ReadableTable::iter(&t).unwrap() {
        let (_, v) = row.unwrap();
        read += v.value().len() as u64;
    }
    assert_eq!(t.len().unwrap(), u64::from(THREADS));
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(read > 0);
    (batch_us, load_ms, std::fs::metadata(&path).unwrap().len())
}

/// CPU per thread written, as the journal writes under load: batches of
/// 500 new threads (a 50 ms commit at 10,000 a second), and once 100,000
/// are in the file the oldest evicted with each, for 400,000 threads; keys
/// the thread's id (a hash: every insert and eviction lands on its own
/// page) against keys in write order (the journal's layout: both at the
/// tree's edges).
fn layouts(dir: &std::path::Path) -> (f64, f64) {
    let table: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");
    let run = |name: &str, key: &dyn Fn(u32) -> Vec<u8>| {
        let db = Database::create(dir.join(name)).unwrap();
        let value = [id(7).as_slice(), record(7).as_slice()].concat();
        let cpu_before = cpu();
        let (total, window, batch) = (400_000u32, 100_000u32, 500u32);
        let mut n = 0;
        while n < total {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(table).unwrap();
                for k in n..n + batch {
                    t.insert(key(k).as_slice(), value.as_slice()).unwrap();
                    if k >= window {
                        t.remove(key(k - window).as_slice()).unwrap();
                    }
                }
            }
            txn.commit().unwrap();
            n += batch;
        }
        per(cpu() - cpu_before, total)
    };
    let hashed = run("by_id.redb", &|k| id(k).to_vec());
    let ordered = run("by_write.redb", &|k| u64::from(k).to_be_bytes().to_vec());
    (hashed, ordered)
}

#[cfg(feature = "bench-sqlite")]
fn sqlite_run(dir: &std::path::Path) -> (f64, f64, u64) {
    let path = dir.join("threads.sqlite");
    let mut db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE threads (id BLOB PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;",
    )
    .unwrap();
    let started = Instant::now();
    let cpu_before = cpu();
    for pass in 0..PASSES {
        let mut n = 0;
        while n < THREADS {
            let txn = db.transaction().unwrap();
            {
                let mut put = txn
                    .prepare_cached("INSERT OR REPLACE INTO threads (id, record) VALUES (?1, ?2)")
                    .unwrap();
                for k in n..(n + BATCH).min(THREADS) {
                    put.execute(rusqlite::params![id(k).as_slice(), record(k + pass)])
                        .unwrap();
                }
            }
            txn.commit().unwrap();
            n += BATCH;
        }
    }
    let batch_us = per(started.elapsed(), PASSES * THREADS.div_ceil(BATCH));
    println!(
        "sqlite: {:.1} µs of CPU per thread written",
        per(cpu() - cpu_before, PASSES * THREADS)
    );
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(db);
    let started = Instant::now();
    let db = rusqlite::Connection::open(&path).unwrap();
    let mut q = db.prepare("SELECT id, record FROM threads").unwrap();
    let mut rows = q.query([]).unwrap();
    let (mut count, mut read) = (0u32, 0u64);
    while let Some(row) = rows.next().unwrap() {
        let v: Vec<u8> = row.get(1).unwrap();
        read += v.len() as u64;
        count += 1;
    }
    assert_eq!(count, THREADS);
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(read > 0);
    (batch_us, load_ms, std::fs::metadata(&path).unwrap().len())
}

/// What a request pays: one change handed to the journal (no I/O), while
/// the writer commits behind it.
fn hand_over(dir: &std::path::Path) -> f64 {
    let journal = Journal::open(&dir.join("handover.redb")).unwrap();
    let thread = Thread {
        last_inbound: Some(1_795_428_900_000),
        last_any: Some(1_795_428_900_000),
        offers: [Offer {
            at: 1_795_428_800_000,
            link: 77,
        }]
        .into_iter()
        .collect(),
        ..Thread::default()
    };
    let n = 200_000;
    let started = Instant::now();
    for k in 0..n {
        journal.put(id(k % THREADS), &thread);
    }
    let put_ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(n);
    journal.flush(Duration::from_secs(60));
    put_ns
}

/// p99 and largest time of one change, in µs, for `n` new threads, at
/// most `per_second` of them (0: as fast as they go).
fn new_threads(n: u32, journal: Option<Journal>, per_second: u32) -> (f64, f64) {
    let keep = Keep {
        window_ms: 86_400_000,
        idle_gap_ms: 86_400_000,
        cap: 3,
    };
    let threads = LocalThreads::new(keep, journal);
    let now = threads.now();
    let mut times: Vec<Duration> = Vec::with_capacity(n as usize);
    let began = Instant::now();
    for k in 0..n {
        if per_second > 0 && k % 100 == 0 {
            let due = Duration::from_secs_f64(f64::from(k) / f64::from(per_second));
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let started = Instant::now();
        threads.message_now(id(k), 1, now);
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        us(times[times.len() * 99 / 100]),
        us(times[times.len() - 1]),
    )
}

fn main() {
    let (p99, max) = new_threads(MAX_THREADS as u32 * 9 / 10, None, 0);
    let (full_p99, full_max) = new_threads(300_000, None, 0);
    println!(
        "thread map, in memory: {} new threads (never full) p99 {p99:.2} µs, slowest {max:.1} µs; \
         300000 (full from the {}th) p99 {full_p99:.2} µs, slowest {full_max:.1} µs ({:.1} × the unfilled p99)",
        MAX_THREADS * 9 / 10,
        MAX_THREADS + 1,
        full_max / p99
    );
    let dir = tempfile::tempdir().unwrap();
    // With the thread file, at a steady 50,000 new threads a second.
    let unfilled = Journal::open(&dir.path().join("unfilled.redb")).unwrap();
    let (up99, umax) = new_threads(MAX_THREADS as u32 * 9 / 10, Some(unfilled), 50_000);
    let filled = Journal::open(&dir.path().join("fill.redb")).unwrap();
    let (jp99, jmax) = new_threads(300_000, Some(filled), 50_000);
    println!(
        "thread map, with the thread file, 50000 new threads a second: {} (never full) p99 {up99:.2} µs, \
         slowest {umax:.1} µs; 300000 p99 {jp99:.2} µs, slowest {jmax:.1} µs",
        MAX_THREADS * 9 / 10
    );
    let (hashed, ordered) = layouts(dir.path());
    println!(
        "thread file layout, 400000 threads written with eviction past 100000: keyed by thread id {hashed:.1} µs of CPU per thread, \
         in write order {ordered:.1} µs ({:.1} × less)",
        hashed / ordered
    );
    let (rb, rl, rs) = redb_run(dir.path());
    println!(
        "redb:   {rb:8.0} µs per commit of {BATCH} threads, load of {THREADS} in {rl:6.1} ms, file {:.1} MiB",
        rs as f64 / 1048576.0
    );
    #[cfg(feature = "bench-sqlite")]
    {
        let (sb, sl, ss) = sqlite_run(dir.path());
        println!(
            "sqlite: {sb:8.0} µs per commit of {BATCH} threads, load of {THREADS} in {sl:6.1} ms, file {:.1} MiB",
            ss as f64 / 1048576.0
        );
        println!(
            "redb / sqlite: commit {:.2} ×, load {:.2} ×, file {:.2} ×",
            rb / sb,
            rl / sl,
            rs as f64 / ss as f64
        );
    }
    println!(
        "a change handed to the journal: {:.0} ns",
        hand_over(dir.path())
    );
}

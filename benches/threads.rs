//! The thread file's store, measured for the job it does: a writer thread
//! that commits batches of changed threads (records of ~60 bytes, keyed by
//! a 16-byte thread id) behind the request path, and one full read at start.
//! redb (adopted) against SQLite (rusqlite, bundled), both fully durable
//! (fsync per commit: redb's default, SQLite `journal_mode=WAL`,
//! `synchronous=FULL`), and what a request pays to hand a change over.
//!
//!   cargo bench --bench threads --features bench-sqlite
//!
//! Figures go to benches/README.md as ratios within one run.

#![allow(clippy::disallowed_methods)] // timing is the point

use std::time::{Duration, Instant};

use offergate::conversation::{Journal, Offer, Thread};
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
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

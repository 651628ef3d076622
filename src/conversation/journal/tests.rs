use super::earlier::{BY_ID, THREADS};
use super::packs::PACK_THREADS;
use super::record::{decode, encode};
use super::*;
use crate::conversation::{Offer, RESERVED};

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
        for (id, record) in super::packs::entries(value.value()) {
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

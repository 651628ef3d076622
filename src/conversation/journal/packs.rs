//! The thread file's layout: threads' records packed up to [`PACK_THREADS`]
//! to a redb value (a pack), each pack under a sequence number, in the
//! order the writer wrote them. A commit adds a few packs and removes the
//! packs that hold nothing any more: one B-tree operation per pack, not two
//! per thread (an insert, and the delete of its older record or of an
//! evicted thread's), which at the thread map's bound was most of the
//! writer's work (`benches/README.md`).
//!
//! A record stays in its pack when its thread changes again or is evicted;
//! the writer counts each pack's records that are still their thread's
//! newest, and removes a pack when that count reaches 0. An eviction
//! writes a tombstone (the thread's id alone) in the new pack, so that a
//! record left in an older pack is not read back as a live thread; a pack
//! holding tombstones is kept until every older pack is gone. Reading the
//! file in order, the newest entry of each thread is the one that counts.

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::call::thread::ThreadId;

/// Maps by thread id: an id is already a hash, so foldhash is cheap on it.
pub(super) type ById<V> = std::collections::HashMap<ThreadId, V, foldhash::fast::RandomState>;

/// The packs, each under its sequence number.
pub(super) const PACKS: TableDefinition<u64, &[u8]> = TableDefinition::new("thread_packs");

/// Threads and their records, as read back.
pub(super) type Records = Vec<(ThreadId, Vec<u8>)>;

/// The most entries (records and tombstones) a pack holds: about 4 KiB of
/// records, a page of redb's.
pub(super) const PACK_THREADS: usize = 64;

/// A tombstone's length field: no record follows the id.
const TOMBSTONE: u16 = u16::MAX;

/// Where each thread's newest record is, and what each pack still holds:
/// the writer's knowledge of the file.
#[derive(Default)]
pub(super) struct Packs {
    at: ById<u64>,
    held: BTreeMap<u64, Held>,
    next: u64,
}

/// What a pack still holds.
#[derive(Clone, Copy, Default)]
struct Held {
    /// Records that are their thread's newest.
    live: u32,
    /// Whether it hides records of older packs.
    tombstones: bool,
}

/// Packs `entries` (a thread and its record, or `None`: a tombstone) in
/// order, and inserts them in `table` under the sequence numbers from
/// `packs.next` on. `packs` learns where each record went.
struct Packer<'t, 'a> {
    table: &'t mut redb::Table<'a, u64, &'static [u8]>,
    bytes: Vec<u8>,
    entries: usize,
    held: Held,
}

impl<'t, 'a> Packer<'t, 'a> {
    fn new(table: &'t mut redb::Table<'a, u64, &'static [u8]>) -> Self {
        Packer {
            table,
            bytes: Vec::with_capacity(PACK_THREADS * 64),
            entries: 0,
            held: Held::default(),
        }
    }

    fn add(
        &mut self,
        packs: &mut Packs,
        id: &ThreadId,
        record: Option<&[u8]>,
    ) -> Result<(), redb::StorageError> {
        self.bytes.extend_from_slice(id);
        match record {
            Some(record) => {
                let len = u16::try_from(record.len()).unwrap_or(TOMBSTONE - 1);
                self.bytes.extend_from_slice(&len.to_le_bytes());
                self.bytes.extend_from_slice(&record[..usize::from(len)]);
                packs.at.insert(*id, packs.next);
                self.held.live += 1;
            }
            None => {
                self.bytes.extend_from_slice(&TOMBSTONE.to_le_bytes());
                self.held.tombstones = true;
            }
        }
        self.entries += 1;
        if self.entries == PACK_THREADS {
            self.finish(packs)?;
        }
        Ok(())
    }

    /// Writes the pack under way, if any.
    fn finish(&mut self, packs: &mut Packs) -> Result<(), redb::StorageError> {
        if self.entries == 0 {
            return Ok(());
        }
        self.table.insert(packs.next, self.bytes.as_slice())?;
        packs.held.insert(packs.next, self.held);
        packs.next += 1;
        self.bytes.clear();
        self.entries = 0;
        self.held = Held::default();
        Ok(())
    }
}

impl Packs {
    /// Writes `changes` (a thread's new record, or `None`: it is gone) to
    /// `table`, within the caller's transaction; `rest` is called every
    /// `rest_every` changes. If the transaction does not commit, `self`
    /// no longer says what the file holds: read it again ([`Packs::read`]).
    pub(super) fn write<'c>(
        &mut self,
        table: &mut redb::Table<'_, u64, &'static [u8]>,
        changes: impl Iterator<Item = (&'c ThreadId, Option<&'c [u8]>)>,
        rest_every: usize,
        mut rest: impl FnMut(),
    ) -> Result<(), redb::StorageError> {
        let mut emptied = Vec::new();
        let mut packer = Packer::new(table);
        for (n, (id, record)) in changes.enumerate() {
            if n % rest_every == rest_every - 1 {
                rest();
            }
            let older = self.at.remove(id);
            if let Some(held) = older.and_then(|key| self.held.get_mut(&key)) {
                held.live = held.live.saturating_sub(1);
                if held.live == 0 {
                    emptied.extend(older);
                }
            }
            match record {
                Some(record) => packer.add(self, id, Some(record))?,
                // A thread never written needs no tombstone.
                None if older.is_some() => packer.add(self, id, None)?,
                None => {}
            }
        }
        packer.finish(self)?;
        self.drop_empty(table, emptied)
    }

    /// Removes what holds nothing among `emptied`, packs whose live records
    /// ran out: a pack that holds nothing goes at once; one whose
    /// tombstones hide older records, once every older pack is gone.
    fn drop_empty(
        &mut self,
        table: &mut redb::Table<'_, u64, &'static [u8]>,
        emptied: impl IntoIterator<Item = u64>,
    ) -> Result<(), redb::StorageError> {
        for key in emptied {
            if self
                .held
                .get(&key)
                .is_some_and(|h| h.live == 0 && !h.tombstones)
            {
                table.remove(key)?;
                self.held.remove(&key);
            }
        }
        while let Some((&key, held)) = self.held.first_key_value() {
            if held.live > 0 {
                break;
            }
            table.remove(key)?;
            self.held.remove(&key);
        }
        Ok(())
    }

    /// Appends `records` (a thread and its record, oldest first) as packs
    /// after those in `table`: how an earlier build's records move in.
    pub(super) fn append(
        table: &mut redb::Table<'_, u64, &'static [u8]>,
        records: &[(ThreadId, &[u8])],
    ) -> Result<(), redb::StorageError> {
        let mut packs = Packs {
            next: table.last()?.map_or(0, |(k, _)| k.value() + 1),
            ..Packs::default()
        };
        let mut packer = Packer::new(table);
        for (id, record) in records {
            packer.add(&mut packs, id, Some(record))?;
        }
        packer.finish(&mut packs)
    }

    /// Every thread's newest record in `table` (oldest first), and what the
    /// writer must know of the file; packs that hold nothing any more are
    /// removed.
    pub(super) fn read(
        table: &mut redb::Table<'_, u64, &'static [u8]>,
    ) -> Result<(Records, Packs), redb::StorageError> {
        let mut packs = Packs::default();
        // Each thread's newest entry: its pack, its place, its record.
        let mut newest: ById<(u64, usize, Option<Vec<u8>>)> = ById::default();
        newest.reserve(table.len()? as usize * PACK_THREADS / 2);
        let mut place = 0;
        for row in table.iter()? {
            let (key, value) = row?;
            let key = key.value();
            packs.next = key + 1;
            let held = packs.held.entry(key).or_default();
            for (id, record) in entries(value.value()) {
                held.tombstones |= record.is_none();
                newest.insert(id, (key, place, record.map(<[u8]>::to_vec)));
                place += 1;
            }
        }
        let mut records = Vec::with_capacity(newest.len());
        for (id, (key, place, record)) in newest {
            if let Some(record) = record {
                packs.at.insert(id, key);
                if let Some(held) = packs.held.get_mut(&key) {
                    held.live += 1;
                }
                records.push((place, id, record));
            }
        }
        records.sort_unstable_by_key(|(place, _, _)| *place);
        let emptied: Vec<u64> = packs.held.keys().copied().collect();
        packs.drop_empty(table, emptied)?;
        Ok((
            records.into_iter().map(|(_, id, r)| (id, r)).collect(),
            packs,
        ))
    }
}

/// A pack's entries in order: a thread and its record, or `None` for a
/// tombstone. Bytes that do not parse end the pack (what came before them
/// is kept).
pub(super) fn entries(pack: &[u8]) -> impl Iterator<Item = (ThreadId, Option<&[u8]>)> {
    let mut rest = pack;
    std::iter::from_fn(move || {
        let (id, after) = rest.split_first_chunk::<16>()?;
        let (len, after) = after.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len);
        if len == TOMBSTONE {
            rest = after;
            return Some((*id, None));
        }
        let (record, after) = after.split_at_checked(usize::from(len))?;
        rest = after;
        Some((*id, Some(record)))
    })
}

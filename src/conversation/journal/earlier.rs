//! Files written by earlier builds: their records are moved, once, to the
//! layout of this one (`packs.rs`) when the file is opened.

use redb::{Database, ReadableTable, TableDefinition};

use super::packs::{Packs, PACKS};
use super::{decode, failed};
use crate::call::problem::Problem;
use crate::call::thread::ThreadId;

/// Earlier builds kept each record under a sequence number of its own (the
/// thread's id, then the record): read once, moved to [`PACKS`], dropped.
pub(super) const THREADS: TableDefinition<u64, &[u8]> = TableDefinition::new("threads_by_write");
/// Builds before those kept records under the thread's id: read once, moved
/// to [`THREADS`] (then on to [`PACKS`]), dropped.
pub(super) const BY_ID: TableDefinition<&[u8], &[u8]> = TableDefinition::new("threads");

/// An earlier build's file: its records moved to [`THREADS`] in the order
/// of their last activity, the old table dropped, in one commit.
pub(super) fn move_by_id(db: &Database) -> Result<(), Problem> {
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
pub(super) fn move_to_packs(db: &Database) -> Result<(), Problem> {
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

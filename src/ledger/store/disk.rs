//! The disk under the store: the two kinds of write a server makes, behind
//! one trait, so that the store's logic (the order of its writes, and its
//! recovery after a crash) runs unchanged on a real disk and on a simulated
//! one.
//!
//! A server writes two kinds of thing:
//! - **files** (`balances.db`, `archive/<hash>.<seconds>`), each replaced
//!   atomically: after a crash a file holds its old bytes or its new ones;
//! - **tables** (blocks, the transaction index, the small records a server
//!   must remember across a restart, and the consensus journal), changed in
//!   transactions that are atomic and durable together.
//!
//! Each call to [`Disk::write_file`], [`Disk::remove_file`] or
//! [`Disk::transact`] is one durable step: a crash falls between two of them,
//! never inside one. That is exactly what [`super::memory::MemoryDisk`]
//! simulates, and what [`FsDisk`] gets from fsync-and-rename and from redb's
//! commits.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rota_peer::{BlockNumber, TxId};

use crate::error::{Error, Result};

/// One change to the tables; a [`Disk::transact`] applies a list of them
/// together or not at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableWrite {
    /// Stores block `number` (its encoded bytes).
    PutBlock(BlockNumber, Vec<u8>),
    /// Drops block `number`.
    RemoveBlock(BlockNumber),
    /// Stores the seal that counts for block `number` (nonce u64 | time
    /// u64): the first a committed round carried.
    PutSeal(BlockNumber, [u8; 16]),
    /// Records that payment `id` is in block `number`.
    PutTx(TxId, BlockNumber),
    /// Forgets where payment `id` is.
    RemoveTx(TxId),
    /// Sets a small named record (the committed state, and whatever else a
    /// server must remember across a restart).
    PutRecord(&'static str, Vec<u8>),
    /// Drops the named record.
    RemoveRecord(&'static str),
    /// Stores entry `seq` of the consensus journal (an encoded record).
    PutJournal(u64, Vec<u8>),
    /// Drops every entry of the consensus journal.
    ClearJournal,
}

/// Where a server's durable state lives. See the module documentation.
///
/// Methods take `&self`: the ledger thread writes the tables and, on a real
/// node, a thread of the store's own writes the database file and the
/// archive (`files`); the real disk needs no exclusive borrow to write.
pub trait Disk: Send + Sync {
    /// The bytes of file `name` (a path relative to the data directory), or
    /// `None` when there is no such file.
    fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces file `name` atomically and durably.
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Removes file `name`; removing a missing file is not an error.
    fn remove_file(&self, name: &str) -> Result<()>;
    /// The names of the files in folder `folder`, in no particular order.
    fn list_files(&self, folder: &str) -> Result<Vec<String>>;

    /// Block `number`, encoded.
    fn block(&self, number: BlockNumber) -> Result<Option<Vec<u8>>>;
    /// The block with the highest number, with its number.
    fn last_block(&self) -> Result<Option<(BlockNumber, Vec<u8>)>>;
    /// The seal stored for block `number`.
    fn seal(&self, number: BlockNumber) -> Result<Option<[u8; 16]>>;
    /// Every block numbered above `number`, lowest first.
    fn blocks_above(&self, number: BlockNumber) -> Result<Vec<(BlockNumber, Vec<u8>)>>;
    /// The block that holds payment `id`.
    fn tx_block(&self, id: &TxId) -> Result<Option<BlockNumber>>;
    /// The record `name`.
    fn record(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// The consensus journal's entries, lowest sequence number first.
    fn journal(&self) -> Result<Vec<(u64, Vec<u8>)>>;
    /// One past the highest sequence number in the journal, 0 when it is
    /// empty: where the next entry goes.
    fn journal_end(&self) -> Result<u64>;
    /// Applies `writes` atomically and durably.
    fn transact(&self, writes: &[TableWrite]) -> Result<()>;
}

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const TX_INDEX: TableDefinition<&[u8; 32], u64> = TableDefinition::new("tx_index");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const SEALS: TableDefinition<u64, [u8; 16]> = TableDefinition::new("seals");

fn store_error(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// The real disk: files in the data directory, tables in `blocks.redb`.
pub struct FsDisk {
    dir: PathBuf,
    db: Database,
}

impl FsDisk {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: &Path) -> Result<FsDisk> {
        fs::create_dir_all(dir.join("archive")).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("blocks.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Store(format!(
                "{} is in use by another process (a server running on this data \
                 directory?): stop it first, or work on a copy",
                path.display()
            )),
            e => Error::Store(format!("{}: {e}", path.display())),
        })?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(BLOCKS).map_err(store_error)?;
        txn.open_table(TX_INDEX).map_err(store_error)?;
        txn.open_table(META).map_err(store_error)?;
        txn.open_table(JOURNAL).map_err(store_error)?;
        txn.open_table(SEALS).map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        Ok(FsDisk {
            dir: dir.to_path_buf(),
            db,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Disk for FsDisk {
    fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(name), bytes)
    }

    fn remove_file(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn list_files(&self, folder: &str) -> Result<Vec<String>> {
        let path = self.path(folder);
        let entries = fs::read_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    fn block(&self, number: BlockNumber) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(BLOCKS).map_err(store_error)?;
        let value = table.get(number).map_err(store_error)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn seal(&self, number: BlockNumber) -> Result<Option<[u8; 16]>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(SEALS).map_err(store_error)?;
        let value = table.get(number).map_err(store_error)?;
        Ok(value.map(|v| v.value()))
    }

    fn last_block(&self) -> Result<Option<(BlockNumber, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(BLOCKS).map_err(store_error)?;
        let last = table.last().map_err(store_error)?;
        Ok(last.map(|(number, bytes)| (number.value(), bytes.value().to_vec())))
    }

    fn blocks_above(&self, number: BlockNumber) -> Result<Vec<(BlockNumber, Vec<u8>)>> {
        let Some(from) = number.checked_add(1) else {
            return Ok(Vec::new());
        };
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(BLOCKS).map_err(store_error)?;
        table
            .range(from..)
            .map_err(store_error)?
            .map(|entry| {
                entry
                    .map(|(n, bytes)| (n.value(), bytes.value().to_vec()))
                    .map_err(store_error)
            })
            .collect()
    }

    fn tx_block(&self, id: &TxId) -> Result<Option<BlockNumber>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(TX_INDEX).map_err(store_error)?;
        Ok(table.get(&id.0).map_err(store_error)?.map(|v| v.value()))
    }

    fn record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(META).map_err(store_error)?;
        Ok(table
            .get(name)
            .map_err(store_error)?
            .map(|v| v.value().to_vec()))
    }

    fn journal(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(JOURNAL).map_err(store_error)?;
        table
            .iter()
            .map_err(store_error)?
            .map(|entry| {
                entry
                    .map(|(seq, bytes)| (seq.value(), bytes.value().to_vec()))
                    .map_err(store_error)
            })
            .collect()
    }

    fn journal_end(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(JOURNAL).map_err(store_error)?;
        let last = table.last().map_err(store_error)?;
        Ok(last.map_or(0, |(seq, _)| seq.value().saturating_add(1)))
    }

    fn transact(&self, writes: &[TableWrite]) -> Result<()> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(store_error)?;
            let mut index = txn.open_table(TX_INDEX).map_err(store_error)?;
            let mut meta = txn.open_table(META).map_err(store_error)?;
            let mut journal = txn.open_table(JOURNAL).map_err(store_error)?;
            let mut seals = txn.open_table(SEALS).map_err(store_error)?;
            for write in writes {
                match write {
                    TableWrite::PutBlock(n, bytes) => {
                        blocks.insert(*n, bytes.as_slice()).map_err(store_error)?;
                    }
                    TableWrite::RemoveBlock(n) => {
                        blocks.remove(*n).map_err(store_error)?;
                    }
                    TableWrite::PutSeal(n, seal) => {
                        seals.insert(*n, *seal).map_err(store_error)?;
                    }
                    TableWrite::PutTx(id, n) => {
                        index.insert(&id.0, *n).map_err(store_error)?;
                    }
                    TableWrite::RemoveTx(id) => {
                        index.remove(&id.0).map_err(store_error)?;
                    }
                    TableWrite::PutRecord(name, bytes) => {
                        meta.insert(*name, bytes.as_slice()).map_err(store_error)?;
                    }
                    TableWrite::RemoveRecord(name) => {
                        meta.remove(*name).map_err(store_error)?;
                    }
                    TableWrite::PutJournal(seq, bytes) => {
                        journal
                            .insert(*seq, bytes.as_slice())
                            .map_err(store_error)?;
                    }
                    TableWrite::ClearJournal => {
                        journal.retain(|_, _| false).map_err(store_error)?;
                    }
                }
            }
        }
        txn.commit().map_err(store_error)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// new one: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

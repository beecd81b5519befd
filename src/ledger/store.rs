//! What a server keeps on disk, and how it comes back after a crash.
//!
//! ```text
//! <data_dir>/blocks.redb          blocks, the transaction index, and meta:
//!                                 the committed slot and balance hash
//! <data_dir>/balances.db          the packed balance database
//! <data_dir>/archive/<hash>.<s>   the database after each round that changed
//!                                 it (s = Unix seconds of the round's slot);
//!                                 the newest `keep` are kept
//! ```
//!
//! A commit writes the block store first (one redb transaction, fsynced), then
//! the database file (temporary file, fsync, rename, fsync of the directory),
//! then the archive copy. The block store is therefore the record of what was
//! committed. A kill between the two writes leaves a database file one round
//! behind; [`Store::load`] finds the committed state in the archive, takes
//! the genesis when no round has changed it, or replays the last block onto
//! the older file, so nothing committed is lost.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rota_peer::balances::Balances;
use rota_peer::block::{Block, BlockHeader, HEADER_LEN};
use rota_peer::{BlockNumber, Hash, Slot, TxId};

use super::core::Committed;
use crate::error::{Error, Result};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const TX_INDEX: TableDefinition<&[u8; 32], u64> = TableDefinition::new("tx_index");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_SLOT: &str = "slot";
const META_HASH: &str = "balance_hash";
const META_PREVIOUS: &str = "previous_balance_hash";

/// The committed state recorded in the block store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub slot: Slot,
    pub hash: Hash,
    /// The balance hash before the last change, for replaying the last block.
    pub previous: Hash,
}

/// The last block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tip {
    pub height: BlockNumber,
    pub hash: Hash,
}

/// How [`Store::load`] found the database.
#[derive(Debug)]
pub enum Loaded {
    /// The database file matches the committed state (or was recovered).
    Intact(Committed),
    /// The committed state could not be rebuilt; the state returned is the
    /// best found (the file if it parses, else the genesis), to be replaced
    /// from the other servers.
    Damaged { best: Committed, reason: String },
}

/// What appending fetched blocks did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// The chain now ends at this tip.
    Tip(Tip),
    /// Block `n` does not follow this server's block `n - 1`: blocks from
    /// `n - 1` down are needed to find where the chains part.
    Fork { from: BlockNumber },
}

fn store_error(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// The block store, database file and archive of one server.
pub struct Store {
    dir: PathBuf,
    db: Database,
    keep: usize,
    /// The slot length, to name archives by the Unix seconds of their round.
    slot_ms: u64,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, keeping `keep` archives.
    pub fn open(dir: &Path, keep: usize, slot_ms: u64) -> Result<Store> {
        fs::create_dir_all(dir.join("archive")).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("blocks.redb");
        let db = Database::create(&path)
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(BLOCKS).map_err(store_error)?;
        txn.open_table(TX_INDEX).map_err(store_error)?;
        txn.open_table(META).map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            db,
            keep: keep.max(1),
            slot_ms,
        })
    }

    fn slot_seconds(&self, slot: Slot) -> u64 {
        slot * self.slot_ms / 1000
    }

    fn balances_path(&self) -> PathBuf {
        self.dir.join("balances.db")
    }

    fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// The committed state recorded in the block store, if any.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(META).map_err(store_error)?;
        let read = |key: &str| -> Result<Option<Vec<u8>>> {
            Ok(table
                .get(key)
                .map_err(store_error)?
                .map(|v| v.value().to_vec()))
        };
        let (Some(slot), Some(hash), Some(previous)) =
            (read(META_SLOT)?, read(META_HASH)?, read(META_PREVIOUS)?)
        else {
            return Ok(None);
        };
        let hash32 = |b: Vec<u8>| {
            b.try_into()
                .map(Hash)
                .map_err(|_| store_error("bad meta hash"))
        };
        Ok(Some(Meta {
            slot: u64::from_be_bytes(slot.try_into().map_err(|_| store_error("bad meta slot"))?),
            hash: hash32(hash)?,
            previous: hash32(previous)?,
        }))
    }

    /// Loads the committed state, starting from `genesis` on a new store.
    pub fn load(&self, genesis: Balances) -> Result<Loaded> {
        let Some(meta) = self.meta()? else {
            let mut genesis = genesis;
            let hash = genesis.hash();
            let committed = Committed {
                slot: 0,
                hash,
                snapshot: Arc::new(genesis),
            };
            self.record(0, hash, hash, None)?;
            self.write_balances(&committed)?;
            log::info!(
                "new store: starting from the genesis, hash {}",
                hash.short()
            );
            return Ok(Loaded::Intact(committed));
        };
        let committed = |snapshot: Balances| Committed {
            slot: meta.slot,
            hash: meta.hash,
            snapshot: Arc::new(snapshot),
        };
        let file = match self.read_balances(&self.balances_path()) {
            Ok((balances, hash)) if hash == meta.hash => {
                return Ok(Loaded::Intact(committed(balances)));
            }
            other => other,
        };
        if let Some(balances) = self.archived(&meta.hash) {
            log::warn!(
                "balances.db does not hold the committed state; restored {} from the archive",
                meta.hash.short()
            );
            let c = committed(balances);
            self.write_balances(&c)?;
            return Ok(Loaded::Intact(c));
        }
        // A kill between recording the genesis and writing its file leaves
        // no file and no archive; no round has changed the genesis since.
        let mut genesis = genesis;
        if genesis.hash() == meta.hash {
            log::warn!("balances.db does not hold the committed state; restored the genesis");
            let c = committed(genesis);
            self.write_balances(&c)?;
            return Ok(Loaded::Intact(c));
        }
        if let Ok((balances, hash)) = &file
            && *hash == meta.previous
            && let Some(mut replayed) = self.replay_last_block(balances.clone(), &meta)?
        {
            log::warn!("balances.db was one round behind; replayed the last block");
            replayed.hash();
            let c = committed(replayed);
            self.write_balances(&c)?;
            return Ok(Loaded::Intact(c));
        }
        let reason = match &file {
            Ok((_, hash)) => format!(
                "balances.db holds {}, the block store says {} was committed, and neither the \
                 archive nor the last block rebuilds it",
                hash.short(),
                meta.hash.short()
            ),
            Err(e) => format!(
                "balances.db is unreadable ({e}) and the archive has no {}",
                meta.hash.short()
            ),
        };
        let mut best = match file {
            Ok((balances, _)) => balances,
            Err(_) => genesis,
        };
        let hash = best.hash();
        Ok(Loaded::Damaged {
            best: Committed {
                slot: meta.slot,
                hash,
                snapshot: Arc::new(best),
            },
            reason,
        })
    }

    fn read_balances(&self, path: &Path) -> Result<(Balances, Hash)> {
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut balances = Balances::from_packed(&bytes)?;
        let hash = balances.hash();
        Ok((balances, hash))
    }

    fn archived(&self, hash: &Hash) -> Option<Balances> {
        let prefix = format!("{hash}.");
        let entries = fs::read_dir(self.archive_dir()).ok()?;
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .find_map(|e| match self.read_balances(&e.path()) {
                Ok((balances, got)) if got == *hash => Some(balances),
                _ => None,
            })
    }

    fn replay_last_block(&self, mut balances: Balances, meta: &Meta) -> Result<Option<Balances>> {
        let tip = self.tip()?;
        let Some(bytes) = self.block(tip.height)? else {
            return Ok(None);
        };
        let block = Block::decode(&bytes)?;
        if block.header.balance_hash != meta.hash {
            return Ok(None);
        }
        for tx in &block.transactions {
            if balances.pay(&tx.payer(), &tx.payee(), tx.amount()).is_err() {
                return Ok(None);
            }
        }
        Ok((balances.hash() == meta.hash).then_some(balances))
    }

    /// Records a committed round: its block if any, then the database file and
    /// its archive copy when the database changed. `installed` archives the
    /// database being replaced first.
    pub fn commit(
        &self,
        slot: Slot,
        committed: &Committed,
        block: Option<&Block>,
        installed: bool,
    ) -> Result<()> {
        let before = self.meta()?;
        let changed = before.is_none_or(|m| m.hash != committed.hash);
        if installed && changed {
            self.archive_current(self.slot_seconds(before.map_or(0, |m| m.slot)));
        }
        let previous = match before {
            Some(m) if changed => m.hash,
            Some(m) => m.previous,
            None => committed.hash,
        };
        self.record(slot, committed.hash, previous, block)?;
        if changed {
            self.write_balances(committed)?;
        }
        Ok(())
    }

    /// One redb transaction: the block and its transaction ids, and the meta.
    fn record(&self, slot: Slot, hash: Hash, previous: Hash, block: Option<&Block>) -> Result<()> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            if let Some(block) = block {
                let mut blocks = txn.open_table(BLOCKS).map_err(store_error)?;
                blocks
                    .insert(block.header.number, block.encode().as_slice())
                    .map_err(store_error)?;
                let mut index = txn.open_table(TX_INDEX).map_err(store_error)?;
                for tx in &block.transactions {
                    index
                        .insert(&tx.id().0, block.header.number)
                        .map_err(store_error)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(store_error)?;
            meta.insert(META_SLOT, slot.to_be_bytes().as_slice())
                .map_err(store_error)?;
            meta.insert(META_HASH, hash.0.as_slice())
                .map_err(store_error)?;
            meta.insert(META_PREVIOUS, previous.0.as_slice())
                .map_err(store_error)?;
        }
        txn.commit().map_err(store_error)
    }

    /// Writes the database file atomically, then its archive copy, then
    /// prunes the archive.
    fn write_balances(&self, committed: &Committed) -> Result<()> {
        let packed = committed
            .snapshot
            .packed()
            .expect("committed snapshots are packed");
        write_atomic(&self.balances_path(), packed)?;
        let name = format!("{}.{}", committed.hash, self.slot_seconds(committed.slot));
        write_atomic(&self.archive_dir().join(name), packed)?;
        self.prune_archive();
        Ok(())
    }

    /// Copies the current database file into the archive before it is
    /// replaced, named by the hash of what it actually holds.
    fn archive_current(&self, slot_seconds: u64) {
        let path = self.balances_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let name = format!("{}.{slot_seconds}", Hash::of(&bytes));
                if let Err(e) = write_atomic(&self.archive_dir().join(name), &bytes) {
                    log::warn!("could not archive the replaced database: {e}");
                }
            }
            Err(e) => log::warn!("could not read {} to archive it: {e}", path.display()),
        }
    }

    /// The archive's entries as (hash, seconds), oldest first.
    pub fn archive(&self) -> Vec<(String, u64)> {
        let mut entries: Vec<(String, u64)> = fs::read_dir(self.archive_dir())
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let (hash, seconds) = name.split_once('.')?;
                        Some((hash.to_string(), seconds.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        entries.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        entries
    }

    fn prune_archive(&self) {
        let entries = self.archive();
        let excess = entries.len().saturating_sub(self.keep);
        for (hash, seconds) in entries.into_iter().take(excess) {
            let path = self.archive_dir().join(format!("{hash}.{seconds}"));
            if let Err(e) = fs::remove_file(&path) {
                log::warn!("could not prune {}: {e}", path.display());
            }
        }
    }

    /// The last block's number and hash.
    pub fn tip(&self) -> Result<Tip> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(BLOCKS).map_err(store_error)?;
        let last = table.last().map_err(store_error)?;
        Ok(match last {
            Some((number, bytes)) => Tip {
                height: number.value(),
                hash: header_hash(bytes.value())?,
            },
            None => Tip::default(),
        })
    }

    /// Block `number`, encoded.
    pub fn block(&self, number: BlockNumber) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(BLOCKS).map_err(store_error)?;
        let value = table.get(number).map_err(store_error)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The hash of block `number`.
    pub fn block_hash(&self, number: BlockNumber) -> Result<Option<Hash>> {
        self.block(number)?.map(|b| header_hash(&b)).transpose()
    }

    /// The block holding transaction `id`.
    pub fn tx_block(&self, id: &TxId) -> Result<Option<BlockNumber>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(TX_INDEX).map_err(store_error)?;
        Ok(table.get(&id.0).map_err(store_error)?.map(|v| v.value()))
    }

    /// Appends blocks fetched from another server, in order. A block this
    /// server already has is skipped; one that differs from this server's
    /// block of the same number drops this server's blocks from there on.
    pub fn append_fetched(&self, blocks: &[Block]) -> Result<Appended> {
        for block in blocks {
            let number = block.header.number;
            let mut tip = self.tip()?;
            if number == 0 {
                return Err(store_error("a fetched block numbered 0"));
            }
            if number <= tip.height {
                if self.block_hash(number)? == Some(block.header.hash()) {
                    continue;
                }
                self.truncate(number - 1)?;
                tip = self.tip()?;
            }
            if number > tip.height + 1 {
                return Ok(Appended::Tip(tip));
            }
            if block.header.previous != tip.hash {
                return Ok(Appended::Fork {
                    from: number.saturating_sub(1).max(1),
                });
            }
            let txn = self.db.begin_write().map_err(store_error)?;
            {
                let mut table = txn.open_table(BLOCKS).map_err(store_error)?;
                table
                    .insert(number, block.encode().as_slice())
                    .map_err(store_error)?;
                let mut index = txn.open_table(TX_INDEX).map_err(store_error)?;
                for tx in &block.transactions {
                    index.insert(&tx.id().0, number).map_err(store_error)?;
                }
            }
            txn.commit().map_err(store_error)?;
        }
        Ok(Appended::Tip(self.tip()?))
    }

    /// Drops every block above `height`, with their index entries.
    fn truncate(&self, height: BlockNumber) -> Result<()> {
        log::warn!("dropping blocks above {height}: they differ from the majority's");
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut table = txn.open_table(BLOCKS).map_err(store_error)?;
            let mut index = txn.open_table(TX_INDEX).map_err(store_error)?;
            let dropped: Vec<Vec<u8>> = table
                .extract_from_if((height + 1).., |_, _| true)
                .map_err(store_error)?
                .map(|entry| entry.map(|(_, v)| v.value().to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(store_error)?;
            for bytes in dropped {
                for tx in Block::decode(&bytes)?.transactions {
                    index.remove(&tx.id().0).map_err(store_error)?;
                }
            }
        }
        txn.commit().map_err(store_error)
    }
}

fn header_hash(bytes: &[u8]) -> Result<Hash> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| store_error("a stored block is shorter than its header"))?;
    Ok(BlockHeader::decode(header).hash())
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

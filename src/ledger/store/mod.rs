//! What a server keeps on disk, and how it comes back after a crash.
//!
//! ```text
//! <data_dir>/blocks.redb          blocks, the transaction index, meta (the
//!                                 committed slot and balance hash, and the
//!                                 commit certificate of that state), and the
//!                                 consensus journal
//! <data_dir>/balances.db          the packed balance database
//! <data_dir>/archive/<hash>.<s>   the database after each round that changed
//!                                 it (s = Unix seconds of the round's slot);
//!                                 the newest `keep` are kept
//! ```
//!
//! A commit that changes the database writes its archive copy first
//! (temporary file, fsync, rename, fsync of the directory), then the block
//! store (one redb transaction, fsynced: the commit point), then the database
//! file. The block store is therefore the record of what was committed, and
//! whatever it names has a copy on disk. A kill before the database file is
//! written leaves it one round behind; [`Store::load`] finds the committed
//! state in the archive, takes the genesis when no round has changed it, or
//! replays the last block onto the older file, so nothing committed is lost.
//! A kill before the commit point can leave an archive copy of a state that
//! was never recorded; it is named by its hash and used only if a record
//! names that hash.
//!
//! The consensus journal (a table in `blocks.redb`, its bytes in the
//! `journal` module) holds what the round protocol must not forget: this
//! server's highest voted and proposed slots, the headers and votes it
//! signed, the rounds whose payments it keeps (those it prevoted and those
//! of its locked chain), its lock, and evidence of an equivocating alpha.
//! A step's records are appended in one transaction ([`Store::journal_append`],
//! fsynced) before any message that follows them is sent. A crash between
//! the append and the send loses nothing: the server has said nothing it
//! did not record, and the machine rebuilt from the journal after a restart
//! knows what it signed (it signs no second vote or header for a slot) and
//! sends the same signed bytes again. A crash during the append leaves
//! neither the records nor the message, so no server has seen what was
//! lost. The journal is rewritten only at a commit point: the transaction
//! that records the committed state also stores the commit certificate
//! that vouches for it and replaces the journal with the machine's records
//! as they stand after the commit. Wherever a crash falls, the committed
//! state, its certificate and the journal on disk are all old or all new;
//! after the commit point the database file is brought up to the record as
//! above, and the journal already belongs to that record.
//!
//! The store's logic lives here; the bytes live on a [`Disk`]: the real one
//! ([`FsDisk`]) or a simulated one ([`MemoryDisk`]), which can crash between
//! any two durable steps. Everything the store does is a sequence of those
//! steps, so the recovery above is tested on both.

use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::block::{Block, BlockHeader, HEADER_LEN};
use rota_peer::wire::consensus::Certified;
use rota_peer::{BlockNumber, Hash, Slot, TxId};

use super::consensus::Record;
use super::core::{Committed, Payments};
use crate::error::{Error, Result};

pub mod disk;
pub mod journal;
pub mod memory;

pub use disk::{Disk, FsDisk, TableWrite, write_atomic};
pub use journal::{decode_record, encode_record};
pub use memory::MemoryDisk;

const META_SLOT: &str = "slot";
const META_HASH: &str = "balance_hash";
const META_PREVIOUS: &str = "previous_balance_hash";

/// The database file, relative to the data directory.
const BALANCES: &str = "balances.db";
/// The archive's folder, relative to the data directory.
const ARCHIVE: &str = "archive";

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

/// The block store, database file and archive of one server, on a [`Disk`].
pub struct Store {
    disk: Box<dyn Disk>,
    keep: usize,
    /// The slot length, to name archives by the Unix seconds of their round.
    slot_ms: u64,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, keeping `keep` archives.
    pub fn open(dir: &std::path::Path, keep: usize, slot_ms: u64) -> Result<Store> {
        Ok(Store::on_disk(Box::new(FsDisk::open(dir)?), keep, slot_ms))
    }

    /// A store on any disk: the real one, or a simulated one.
    pub fn on_disk(disk: Box<dyn Disk>, keep: usize, slot_ms: u64) -> Store {
        Store {
            disk,
            keep: keep.max(1),
            slot_ms,
        }
    }

    fn slot_seconds(&self, slot: Slot) -> u64 {
        slot.saturating_mul(self.slot_ms) / 1000
    }

    fn archive_name(hash: impl std::fmt::Display, seconds: u64) -> String {
        format!("{ARCHIVE}/{hash}.{seconds}")
    }

    /// The committed state recorded in the block store, if any.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let (Some(slot), Some(hash), Some(previous)) = (
            self.disk.record(META_SLOT)?,
            self.disk.record(META_HASH)?,
            self.disk.record(META_PREVIOUS)?,
        ) else {
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

    /// A small record a server keeps across restarts (for what the
    /// consensus must remember), or `None` if it was never saved.
    pub fn recall(&self, name: &'static str) -> Result<Option<Vec<u8>>> {
        self.disk.record(name)
    }

    /// Saves a small record durably before returning.
    pub fn remember(&self, name: &'static str, bytes: &[u8]) -> Result<()> {
        self.disk
            .transact(&[TableWrite::PutRecord(name, bytes.to_vec())])
    }

    /// Loads the committed state, starting from `genesis` on a new store.
    ///
    /// One piece: the recovery steps are tried in order (the file, the
    /// archive, the genesis, the last block replayed) and the order is the
    /// argument that nothing committed is lost, so it reads top to bottom.
    pub fn load(&self, genesis: Balances) -> Result<Loaded> {
        let Some(meta) = self.meta()? else {
            let mut genesis = genesis;
            let hash = genesis.hash();
            let committed = Committed {
                slot: 0,
                hash,
                snapshot: Arc::new(genesis),
            };
            self.record(0, hash, hash, &[], Vec::new())?;
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
        let file = match self.read_balances(BALANCES) {
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

    fn read_balances(&self, name: &str) -> Result<(Balances, Hash)> {
        let bytes = self
            .disk
            .read_file(name)?
            .ok_or_else(|| Error::Store(format!("{name}: no such file")))?;
        let mut balances = Balances::from_packed(&bytes)?;
        let hash = balances.hash();
        Ok((balances, hash))
    }

    fn archived(&self, hash: &Hash) -> Option<Balances> {
        let prefix = format!("{hash}.");
        let names = self.disk.list_files(ARCHIVE).ok()?;
        names
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .find_map(
                |name| match self.read_balances(&format!("{ARCHIVE}/{name}")) {
                    Ok((balances, got)) if got == *hash => Some(balances),
                    _ => None,
                },
            )
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

    /// Records a commit: its blocks (one per round with payments), then the database file and
    /// its archive copy when the database changed. `installed` archives the
    /// database being replaced first.
    ///
    /// The commit point (one transaction) also stores `certified`, the
    /// commit certificate that vouches for `committed` (none: the state has
    /// none), and replaces the consensus journal with `journal`, the
    /// machine's records as they stand after this commit. A certificate
    /// that is not a commit certificate of `committed`'s slot and balance
    /// hash is refused before anything is written.
    pub fn commit(
        &self,
        slot: Slot,
        committed: &Committed,
        blocks: &[Block],
        installed: bool,
        certified: Option<&Certified>,
        journal: &[Record<Payments>],
    ) -> Result<()> {
        if let Some(certified) = certified {
            journal::vouches_for(certified, committed)?;
        }
        let consensus = journal::commit_writes(certified, journal);
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
        // The archive copy goes first: once the record names the new hash,
        // a copy of that state is on disk whatever happens next, even for
        // an installed database, which has no block to replay.
        if changed {
            self.write_archive_copy(committed)?;
        }
        self.record(slot, committed.hash, previous, blocks, consensus)?;
        if changed {
            self.disk.write_file(BALANCES, &packed(committed))?;
            self.prune_archive();
        }
        Ok(())
    }

    /// One transaction: the blocks and their transaction ids, the meta, and
    /// `consensus` (the commit certificate and the new journal, if any).
    fn record(
        &self,
        slot: Slot,
        hash: Hash,
        previous: Hash,
        blocks: &[Block],
        consensus: Vec<TableWrite>,
    ) -> Result<()> {
        let mut writes = Vec::new();
        for block in blocks {
            writes.extend(block_writes(block));
        }
        writes.push(TableWrite::PutRecord(
            META_SLOT,
            slot.to_be_bytes().to_vec(),
        ));
        writes.push(TableWrite::PutRecord(META_HASH, hash.0.to_vec()));
        writes.push(TableWrite::PutRecord(META_PREVIOUS, previous.0.to_vec()));
        writes.extend(consensus);
        self.disk.transact(&writes)
    }

    /// Writes the database file atomically, then its archive copy, then
    /// prunes the archive.
    fn write_balances(&self, committed: &Committed) -> Result<()> {
        self.disk.write_file(BALANCES, &packed(committed))?;
        self.write_archive_copy(committed)?;
        self.prune_archive();
        Ok(())
    }

    /// Writes the archive copy of `committed`, named by its hash and the
    /// Unix seconds of its slot.
    fn write_archive_copy(&self, committed: &Committed) -> Result<()> {
        let name = Store::archive_name(committed.hash, self.slot_seconds(committed.slot));
        self.disk.write_file(&name, &packed(committed))
    }

    /// Copies the current database file into the archive before it is
    /// replaced, named by the hash of what it actually holds.
    fn archive_current(&self, slot_seconds: u64) {
        match self.disk.read_file(BALANCES) {
            Ok(Some(bytes)) => {
                let name = Store::archive_name(Hash::of(&bytes), slot_seconds);
                if let Err(e) = self.disk.write_file(&name, &bytes) {
                    log::warn!("could not archive the replaced database: {e}");
                }
            }
            Ok(None) => log::warn!("no {BALANCES} to archive before replacing it"),
            Err(e) => log::warn!("could not read {BALANCES} to archive it: {e}"),
        }
    }

    /// The archive's entries as (hash, seconds), oldest first.
    pub fn archive(&self) -> Vec<(String, u64)> {
        let mut entries: Vec<(String, u64)> = self
            .disk
            .list_files(ARCHIVE)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| {
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
            let name = Store::archive_name(&hash, seconds);
            if let Err(e) = self.disk.remove_file(&name) {
                log::warn!("could not prune {name}: {e}");
            }
        }
    }

    /// The last block's number and hash.
    pub fn tip(&self) -> Result<Tip> {
        Ok(match self.disk.last_block()? {
            Some((height, bytes)) => Tip {
                height,
                hash: header_hash(&bytes)?,
            },
            None => Tip::default(),
        })
    }

    /// Block `number`, encoded.
    pub fn block(&self, number: BlockNumber) -> Result<Option<Vec<u8>>> {
        self.disk.block(number)
    }

    /// The hash of block `number`.
    pub fn block_hash(&self, number: BlockNumber) -> Result<Option<Hash>> {
        self.block(number)?.map(|b| header_hash(&b)).transpose()
    }

    /// The slot of the round that committed block `number`, from its
    /// header; an error if the block is not stored.
    pub fn block_slot(&self, number: BlockNumber) -> Result<Slot> {
        let bytes = self
            .block(number)?
            .ok_or_else(|| store_error(format!("block {number} is not stored")))?;
        Ok(header(&bytes)?.slot)
    }

    /// The block holding transaction `id`.
    pub fn tx_block(&self, id: &TxId) -> Result<Option<BlockNumber>> {
        self.disk.tx_block(id)
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
            self.disk.transact(&block_writes(block))?;
        }
        Ok(Appended::Tip(self.tip()?))
    }

    /// Drops every block above `height`, with their index entries.
    fn truncate(&self, height: BlockNumber) -> Result<()> {
        log::warn!("dropping blocks above {height}: they differ from the majority's");
        let mut writes = Vec::new();
        for (number, bytes) in self.disk.blocks_above(height)? {
            writes.push(TableWrite::RemoveBlock(number));
            for tx in Block::decode(&bytes)?.transactions {
                writes.push(TableWrite::RemoveTx(tx.id()));
            }
        }
        self.disk.transact(&writes)
    }
}

/// The packed bytes of a committed state.
fn packed(committed: &Committed) -> Vec<u8> {
    committed.snapshot.pack()
}

/// The writes that store `block` and index its payments.
fn block_writes(block: &Block) -> Vec<TableWrite> {
    let number = block.header.number;
    let mut writes = vec![TableWrite::PutBlock(number, block.encode())];
    writes.extend(
        block
            .transactions
            .iter()
            .map(|tx| TableWrite::PutTx(tx.id(), number)),
    );
    writes
}

fn header(bytes: &[u8]) -> Result<BlockHeader> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| store_error("a stored block is shorter than its header"))?;
    Ok(BlockHeader::decode(header))
}

fn header_hash(bytes: &[u8]) -> Result<Hash> {
    Ok(header(bytes)?.hash())
}

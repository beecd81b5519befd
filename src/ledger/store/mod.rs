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
//! A commit writes the block store first (one redb transaction, fsynced:
//! the commit point), then the archive copy and the database file (each a
//! temporary file, fsync, rename, fsync of the directory), on a thread of
//! their own on a real node (the `files` module): a round's commit costs its
//! blocks, not a pass over every account. The block store is therefore the
//! record of what was committed. A kill before the files catch up leaves
//! the database file some rounds behind; [`Store::load`] finds the committed
//! state in the archive, takes the genesis when no round has changed it, or
//! replays the blocks after the file's state onto it, so nothing committed
//! is lost. A state no block leads to (a database installed from another
//! server, or one committed while this server builds no blocks) has its
//! archive copy written before the record instead, so that whatever the
//! record names can be rebuilt. A kill before the commit point can leave an
//! archive copy of a state that was never recorded; it is named by its hash
//! and used only if a record names that hash.
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
use rota_peer::seal::Seal;
use rota_peer::wire::consensus::Certified;
use rota_peer::{BlockNumber, Hash, Slot, TxId};

use super::consensus::Record;
use super::core::{Committed, Payments};
use crate::error::{Error, Result};

pub mod disk;
mod files;
pub mod journal;
pub mod memory;

pub use disk::{Disk, FsDisk, TableWrite, write_atomic};
use files::{BALANCES, Files, Writer};
pub use journal::{decode_record, encode_record};
pub use memory::MemoryDisk;

const META_SLOT: &str = "slot";
const META_HASH: &str = "balance_hash";
const META_PREVIOUS: &str = "previous_balance_hash";
const META_FORMAT: &str = "format";

/// The layout of the data directory this build writes and reads: the
/// tables, the records, the files, the block and journal encodings. A
/// change to any of them that an older build could misread moves it on.
pub const FORMAT: u32 = 3;

/// The most blocks [`Store::load`] replays onto an older database file.
pub const MAX_REPLAY: u64 = 1_024;

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
    disk: Arc<dyn Disk>,
    files: Files,
    writer: Writer,
    /// The genesis's balance hash, once [`Store::load`] has seen it.
    genesis_hash: std::sync::OnceLock<Hash>,
    /// Whether [`Store::load`] found the database file damaged beyond
    /// rebuilding: the next commit writes the files even when its state
    /// has the hash the record already names (a damaged server that
    /// installs the state it had recorded, fetched from the others).
    damaged: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, keeping `keep` archives.
    pub fn open(dir: &std::path::Path, keep: usize, slot_ms: u64) -> Result<Store> {
        Ok(Store::on_disk(Box::new(FsDisk::open(dir)?), keep, slot_ms))
    }

    /// A store on any disk: the real one, or a simulated one.
    /// It writes the database file and the archive on the caller's thread,
    /// right after each commit's record (see [`Store::writing_behind`]).
    pub fn on_disk(disk: Box<dyn Disk>, keep: usize, slot_ms: u64) -> Store {
        let disk: Arc<dyn Disk> = Arc::from(disk);
        Store {
            files: Files::new(disk.clone(), keep, slot_ms),
            disk,
            writer: Writer::Inline,
            genesis_hash: std::sync::OnceLock::new(),
            damaged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This store, writing the database file and the archive on a thread of
    /// its own behind each commit point: a real node's store.
    pub fn writing_behind(mut self) -> Result<Store> {
        self.writer = Writer::behind(self.files.clone())
            .map_err(|e| store_error(format!("cannot start the database file writer: {e}")))?;
        Ok(self)
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

    /// Refuses a data directory of another layout than [`FORMAT`], saying
    /// what to do; with `stamp`, marks one that carries no format yet (new,
    /// or written before the record existed, in today's layout) as
    /// today's.
    pub fn check_format(&self, stamp: bool) -> Result<()> {
        let format = match self.disk.record(META_FORMAT)? {
            Some(bytes) => u32::from_be_bytes(
                bytes
                    .try_into()
                    .map_err(|_| store_error("the data format record is not 4 bytes"))?,
            ),
            None if stamp => {
                return self.remember(META_FORMAT, &FORMAT.to_be_bytes());
            }
            None => return Ok(()),
        };
        let what_to_do = "start this server on an empty data directory: it fetches the \
                          database and the blocks from the others (docs/OPERATIONS.md)";
        match format.cmp(&FORMAT) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => Err(store_error(format!(
                "this data directory was written by a newer rota (data format {format}; this \
                 build reads format {FORMAT}): run that rota, or {what_to_do}"
            ))),
            std::cmp::Ordering::Less => Err(store_error(format!(
                "this data directory was written by an older rota (data format {format}; this \
                 build reads format {FORMAT}): {what_to_do}"
            ))),
        }
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
    /// archive, the genesis, the blocks replayed onto the file) and the
    /// order is the argument that nothing committed is lost, so it reads
    /// top to bottom.
    pub fn load(&self, genesis: Balances) -> Result<Loaded> {
        self.check_format(true)?;
        let mut genesis = genesis;
        let genesis_hash = genesis.hash();
        let _ = self.genesis_hash.set(genesis_hash);
        let Some(meta) = self.meta()? else {
            let committed = Committed {
                slot: 0,
                hash: genesis_hash,
                snapshot: Arc::new(genesis),
            };
            self.record(0, genesis_hash, genesis_hash, &[], Vec::new())?;
            self.files.write(&committed)?;
            log::info!(
                "new store: starting from the genesis, hash {}",
                genesis_hash.short()
            );
            return Ok(Loaded::Intact(committed));
        };
        let committed = |snapshot: Balances| Committed {
            slot: meta.slot,
            hash: meta.hash,
            snapshot: Arc::new(snapshot),
        };
        let file = match self.files.read(BALANCES) {
            Ok((balances, hash)) if hash == meta.hash => {
                return Ok(Loaded::Intact(committed(balances)));
            }
            other => other,
        };
        if let Some(balances) = self.files.archived(&meta.hash) {
            log::warn!(
                "balances.db does not hold the committed state; restored {} from the archive",
                meta.hash.short()
            );
            let c = committed(balances);
            self.files.write(&c)?;
            return Ok(Loaded::Intact(c));
        }
        // A kill between recording the genesis and writing its file leaves
        // no file and no archive; no round has changed the genesis since.
        if genesis_hash == meta.hash {
            log::warn!("balances.db does not hold the committed state; restored the genesis");
            let c = committed(genesis);
            self.files.write(&c)?;
            return Ok(Loaded::Intact(c));
        }
        if let Ok((balances, hash)) = &file
            && let Some((replayed, count)) =
                self.replay_blocks(balances.clone(), *hash, genesis_hash, &meta)?
        {
            log::warn!("balances.db was {count} block(s) behind; replayed them");
            let c = committed(replayed);
            self.files.write(&c)?;
            return Ok(Loaded::Intact(c));
        }
        let reason = match &file {
            Ok((_, hash)) => format!(
                "balances.db holds {}, the block store says {} was committed, and neither the \
                 archive nor the blocks after it rebuild it",
                hash.short(),
                meta.hash.short()
            ),
            Err(e) => format!(
                "balances.db is unreadable ({e}) and the archive has no {}",
                meta.hash.short()
            ),
        };
        self.damaged
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// Rebuilds the committed state from an older one, `balances` (hash
    /// `hash`): the blocks after the newest block that left that state (the
    /// genesis: all of them), at most [`MAX_REPLAY`], applied in order, each
    /// checked against its block's balance hash. Returns the state and the
    /// number of blocks replayed, or `None` when they do not rebuild the
    /// recorded hash.
    fn replay_blocks(
        &self,
        mut balances: Balances,
        hash: Hash,
        genesis_hash: Hash,
        meta: &Meta,
    ) -> Result<Option<(Balances, u64)>> {
        let tip = self.tip()?;
        let floor = tip.height.saturating_sub(MAX_REPLAY);
        let mut from = (hash == genesis_hash && floor == 0).then_some(0);
        for number in (floor + 1..=tip.height).rev() {
            let Some(bytes) = self.block(number)? else {
                break;
            };
            if header(&bytes)?.balance_hash == hash {
                from = Some(number);
                break;
            }
        }
        let Some(from) = from else {
            return Ok(None);
        };
        let mut count = 0;
        for (number, bytes) in self.disk.blocks_above(from)? {
            if number != from + count + 1 {
                return Ok(None);
            }
            let block = Block::decode(&bytes)?;
            for tx in &block.transactions {
                if balances.pay(&tx.payer(), &tx.payee(), tx.amount()).is_err() {
                    return Ok(None);
                }
            }
            if balances.hash() != block.header.balance_hash {
                return Ok(None);
            }
            count += 1;
        }
        Ok((balances.hash() == meta.hash).then_some((balances, count)))
    }

    /// Records a commit: its blocks (one per round with payments), the
    /// committed state's slot and hash, `certified` and `journal` in one
    /// transaction (the commit point), then the database file and its
    /// archive copy when the database changed. `installed` archives the
    /// database being replaced first.
    ///
    /// `certified` is the commit certificate that vouches for `committed`
    /// (none: the state has none), and `journal` the machine's records as
    /// they stand after this commit, which replace the journal on disk.
    /// `seals` are the seals the committed rounds carried, by the block
    /// each seals: the ones that count, stored in the same transaction. A
    /// certificate that is not a commit certificate of `committed`'s slot
    /// and balance hash is refused before anything is written.
    ///
    /// When `blocks` lead to the new state, its files follow the commit
    /// point (on the writer thread, if there is one); otherwise (installed,
    /// or no block built) nothing could replay it, so its archive copy is
    /// written before the commit point and the file right after it.
    pub fn commit(
        &self,
        committed: &Committed,
        blocks: &[Block],
        installed: bool,
        certified: Option<&Certified>,
        journal: &[Record<Payments>],
        seals: &[(BlockNumber, Seal)],
    ) -> Result<()> {
        if let Some(certified) = certified {
            journal::vouches_for(certified, committed)?;
        }
        let consensus = journal::commit_writes(certified, journal);
        let before = self.meta()?;
        let damaged = self.damaged.load(std::sync::atomic::Ordering::Relaxed);
        let moved = before.is_none_or(|m| m.hash != committed.hash);
        let changed = moved || damaged;
        let previous = match before {
            Some(m) if moved => m.hash,
            Some(m) => m.previous,
            None => committed.hash,
        };
        let replayable =
            !installed && blocks.last().map(|b| b.header.balance_hash) == Some(committed.hash);
        let mut packed = None;
        if changed && !replayable {
            // Nothing older may land on the files after this state.
            self.writer.flush();
            // The state an install replaces goes to the archive, unless it
            // is the genesis, which the genesis file holds (a server whose
            // data directory was emptied would archive a copy of it).
            let from_genesis = before.is_none_or(|m| m.slot == 0) && !damaged;
            if installed && !from_genesis {
                self.files
                    .archive_current(self.files.slot_seconds(before.map_or(0, |m| m.slot)));
            }
            let bytes = committed.snapshot.pack();
            self.files.write_archive_copy(committed, &bytes)?;
            packed = Some(bytes);
        }
        let mut consensus = consensus;
        consensus.extend(
            seals
                .iter()
                .map(|(number, seal)| TableWrite::PutSeal(*number, seal.to_bytes())),
        );
        self.record(committed.slot, committed.hash, previous, blocks, consensus)?;
        if changed {
            match packed {
                None => self.writer.write(&self.files, committed)?,
                // Its archive copy is written: the database file alone.
                Some(bytes) => self.files.write_database(&bytes)?,
            }
            self.damaged
                .store(false, std::sync::atomic::Ordering::Relaxed);
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

    /// The database file as it is on disk, and its balance hash.
    pub fn database_file(&self) -> Result<(Balances, Hash)> {
        self.files.read(BALANCES)
    }

    /// The archived database with balance hash `hash`, if the archive
    /// holds it.
    pub fn archived(&self, hash: &Hash) -> Option<Balances> {
        self.files.archived(hash)
    }

    /// The genesis's balance hash, once the store was loaded.
    pub fn genesis_hash(&self) -> Option<Hash> {
        self.genesis_hash.get().copied()
    }

    /// The archive's entries as (hash, seconds), oldest first.
    pub fn archive(&self) -> Vec<(String, u64)> {
        self.files.archive()
    }

    /// Waits until the database file and the archive hold the last
    /// committed state.
    pub fn flush(&self) {
        self.writer.flush();
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
    /// Stores the seal of block `number`, apart from a commit: one served
    /// with a fetched block.
    pub fn put_seal(&self, number: BlockNumber, seal: Seal) -> Result<()> {
        self.disk
            .transact(&[TableWrite::PutSeal(number, seal.to_bytes())])
    }

    /// The seal that counts for block `number`, if it is sealed.
    pub fn seal(&self, number: BlockNumber) -> Result<Option<Seal>> {
        Ok(self
            .disk
            .seal(number)?
            .map(|bytes| Seal::from_bytes(&bytes)))
    }

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

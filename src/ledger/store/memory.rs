//! A disk in memory, for tests and the cluster simulator: the same two kinds
//! of durable step as the real one (see [`super::disk`]), and a way to crash
//! between any two of them.
//!
//! Clones share one disk, as a restarted process finds the disk its
//! predecessor left: the simulator keeps a clone, drops the crashed server's
//! store, and opens a new store on the clone.
//!
//! A crash can also tear the file being written, where the real disk could:
//! the real one writes a file as `<name>.tmp`, syncs it and renames it, so a
//! crash part-way leaves a `.tmp` holding the first bytes and the old file
//! untouched ([`MemoryDisk::crash_after_torn`]). Table transactions cannot
//! tear (redb commits them whole), so they never do here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rota_peer::{BlockNumber, TxId};

use super::disk::{Disk, TableWrite};
use crate::error::{Error, Result};

/// What the disk holds, and how many more writes it takes before it fails.
#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    blocks: BTreeMap<BlockNumber, Vec<u8>>,
    seals: BTreeMap<BlockNumber, [u8; 16]>,
    index: BTreeMap<TxId, BlockNumber>,
    records: BTreeMap<String, Vec<u8>>,
    journal: BTreeMap<u64, Vec<u8>>,
    /// Durable steps taken so far.
    writes: u64,
    /// After this many durable steps every write fails, as if the process
    /// had died there: nothing after it reaches the disk.
    crash_after: Option<u64>,
    /// Whether a file written at the crash point leaves a torn `.tmp`
    /// holding this many of its first bytes.
    torn: Option<usize>,
}

/// A simulated disk. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MemoryDisk {
    state: Arc<Mutex<State>>,
}

impl MemoryDisk {
    pub fn new() -> MemoryDisk {
        MemoryDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still
        // consistent: every change below is made after its last check.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Durable steps taken so far.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// Makes every write after the next `steps` fail, as a crash there would.
    pub fn crash_after(&self, steps: u64) {
        let mut state = self.state();
        state.crash_after = Some(state.writes + steps);
        state.torn = None;
    }

    /// As [`MemoryDisk::crash_after`], and if the write at the crash point
    /// is a file, the crash tears it: `<name>.tmp` is left holding its
    /// first `keep` bytes, as the real disk's temporary file would be.
    pub fn crash_after_torn(&self, steps: u64, keep: usize) {
        let mut state = self.state();
        state.crash_after = Some(state.writes + steps);
        state.torn = Some(keep);
    }

    /// Whether the crash point has been reached: the process is dead.
    pub fn crashed(&self) -> bool {
        let state = self.state();
        state.crash_after.is_some_and(|at| state.writes >= at)
    }

    /// The process is back: writes reach the disk again.
    pub fn restart(&self) {
        let mut state = self.state();
        state.crash_after = None;
        state.torn = None;
    }

    /// Counts one durable step, or refuses it after the crash point.
    fn step(state: &mut State) -> Result<()> {
        if state.crash_after.is_some_and(|at| state.writes >= at) {
            return Err(Error::Store(
                "simulated crash: the disk takes no more writes".into(),
            ));
        }
        state.writes += 1;
        Ok(())
    }
}

/// The folder part of a file name, `""` for the data directory itself.
fn folder_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(folder, _)| folder)
}

impl Disk for MemoryDisk {
    fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.state().files.get(name).cloned())
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut state = self.state();
        if let Err(crash) = MemoryDisk::step(&mut state) {
            // Torn once: the first write refused at the crash point.
            if let Some(keep) = state.torn.take() {
                let partial = bytes[..keep.min(bytes.len())].to_vec();
                state.files.insert(format!("{name}.tmp"), partial);
            }
            return Err(crash);
        }
        state.files.insert(name.to_string(), bytes.to_vec());
        Ok(())
    }

    fn remove_file(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        MemoryDisk::step(&mut state)?;
        state.files.remove(name);
        Ok(())
    }

    fn list_files(&self, folder: &str) -> Result<Vec<String>> {
        Ok(self
            .state()
            .files
            .keys()
            .filter(|name| folder_of(name) == folder)
            .map(|name| name.rsplit('/').next().unwrap_or(name).to_string())
            .collect())
    }

    fn block(&self, number: BlockNumber) -> Result<Option<Vec<u8>>> {
        Ok(self.state().blocks.get(&number).cloned())
    }

    fn seal(&self, number: BlockNumber) -> Result<Option<[u8; 16]>> {
        Ok(self.state().seals.get(&number).copied())
    }

    fn last_block(&self) -> Result<Option<(BlockNumber, Vec<u8>)>> {
        Ok(self
            .state()
            .blocks
            .last_key_value()
            .map(|(n, b)| (*n, b.clone())))
    }

    fn blocks_above(&self, number: BlockNumber) -> Result<Vec<(BlockNumber, Vec<u8>)>> {
        let state = self.state();
        Ok(match number.checked_add(1) {
            Some(from) => state
                .blocks
                .range(from..)
                .map(|(n, b)| (*n, b.clone()))
                .collect(),
            None => Vec::new(),
        })
    }

    fn tx_block(&self, id: &TxId) -> Result<Option<BlockNumber>> {
        Ok(self.state().index.get(id).copied())
    }

    fn record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.state().records.get(name).cloned())
    }

    fn journal(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        Ok(self
            .state()
            .journal
            .iter()
            .map(|(seq, bytes)| (*seq, bytes.clone()))
            .collect())
    }

    fn journal_end(&self) -> Result<u64> {
        Ok(self
            .state()
            .journal
            .last_key_value()
            .map_or(0, |(seq, _)| seq.saturating_add(1)))
    }

    /// One durable step, whatever it holds: a crash falls before it or
    /// after it, so a transaction is kept whole or not at all.
    fn transact(&self, writes: &[TableWrite]) -> Result<()> {
        let mut state = self.state();
        MemoryDisk::step(&mut state)?;
        for write in writes {
            match write {
                TableWrite::PutBlock(n, bytes) => {
                    state.blocks.insert(*n, bytes.clone());
                }
                TableWrite::RemoveBlock(n) => {
                    state.blocks.remove(n);
                }
                TableWrite::PutSeal(n, seal) => {
                    state.seals.insert(*n, *seal);
                }
                TableWrite::PutTx(id, n) => {
                    state.index.insert(*id, *n);
                }
                TableWrite::RemoveTx(id) => {
                    state.index.remove(id);
                }
                TableWrite::PutRecord(name, bytes) => {
                    state.records.insert(name.to_string(), bytes.clone());
                }
                TableWrite::RemoveRecord(name) => {
                    state.records.remove(*name);
                }
                TableWrite::PutJournal(seq, bytes) => {
                    state.journal.insert(*seq, bytes.clone());
                }
                TableWrite::ClearJournal => {
                    state.journal.clear();
                }
            }
        }
        Ok(())
    }
}

//! The database file and the archive: the committed database, packed, in
//! `balances.db` and in `archive/<hash>.<seconds>`, written behind the
//! commit point.
//!
//! Packing and writing a database costs a pass over every account (36 MB at
//! a million accounts, twice), so a commit whose state its blocks lead to
//! does not wait for it: the block store's transaction is the commit point,
//! and the files follow. On a real node ([`Writer::Behind`]) they are
//! written on a thread of their own, which always writes the newest state
//! handed to it and skips any older one still waiting, so a slow disk costs
//! archive entries, never rounds. A crash before the files catch up leaves
//! `balances.db` some commits behind the record; [`super::Store::load`]
//! replays the blocks after it. A state that no block leads to (a database
//! installed from another server, or one committed while this server builds
//! no blocks) cannot be replayed, so its files are written, in order with
//! any still waiting, before the record names it.
//!
//! Tests and the simulator write on the caller's thread ([`Writer::Inline`]),
//! right after the record, so that every crash point between the two is
//! reached deterministically.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use rota_peer::balances::Balances;
use rota_peer::{Hash, Slot};

use super::Disk;
use crate::error::Result;
use crate::ledger::core::Committed;

/// The database file, relative to the data directory.
pub const BALANCES: &str = "balances.db";
/// The archive's folder, relative to the data directory.
pub const ARCHIVE: &str = "archive";

/// States waiting for the writer thread; a full queue makes a commit wait
/// for it (the thread drains it at once, keeping only the newest).
const QUEUE: usize = 16;

/// Writes the database file and the archive of one data directory.
#[derive(Clone)]
pub struct Files {
    disk: Arc<dyn Disk>,
    keep: usize,
    /// The slot length, to name archives by the Unix seconds of their round.
    slot_ms: u64,
}

impl Files {
    pub fn new(disk: Arc<dyn Disk>, keep: usize, slot_ms: u64) -> Files {
        Files {
            disk,
            keep: keep.max(1),
            slot_ms,
        }
    }

    pub fn slot_seconds(&self, slot: Slot) -> u64 {
        slot.saturating_mul(self.slot_ms) / 1000
    }

    pub fn archive_name(hash: impl std::fmt::Display, seconds: u64) -> String {
        format!("{ARCHIVE}/{hash}.{seconds}")
    }

    /// Writes the archive copy of `committed`, then the database file, then
    /// prunes the archive. The archive copy goes first, so that a state the
    /// file holds always has a copy too.
    pub fn write(&self, committed: &Committed) -> Result<()> {
        let packed = committed.snapshot.pack();
        self.write_archive_copy(committed, &packed)?;
        self.disk.write_file(BALANCES, &packed)?;
        self.prune_archive();
        Ok(())
    }

    /// Writes the database file from `packed`, whose archive copy is
    /// written already, then prunes the archive.
    pub fn write_database(&self, packed: &[u8]) -> Result<()> {
        self.disk.write_file(BALANCES, packed)?;
        self.prune_archive();
        Ok(())
    }

    /// Writes the archive copy of `committed` alone, named by its hash and
    /// the Unix seconds of its slot.
    pub fn write_archive_copy(&self, committed: &Committed, packed: &[u8]) -> Result<()> {
        let name = Files::archive_name(committed.hash, self.slot_seconds(committed.slot));
        self.disk.write_file(&name, packed)
    }

    /// Copies the current database file into the archive before it is
    /// replaced, named by the hash of what it actually holds; a file that is
    /// not a database is not archived.
    pub fn archive_current(&self, slot_seconds: u64) {
        match self.disk.read_file(BALANCES) {
            Ok(Some(bytes)) => match Balances::from_packed(&bytes) {
                Ok(mut replaced) => {
                    let name = Files::archive_name(replaced.hash(), slot_seconds);
                    if let Err(e) = self.disk.write_file(&name, &bytes) {
                        log::warn!("could not archive the replaced database: {e}");
                    }
                }
                Err(e) => log::warn!("the replaced {BALANCES} is not a database ({e})"),
            },
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

    /// The archived database named by `hash`, if a copy holds it.
    pub fn archived(&self, hash: &Hash) -> Option<Balances> {
        let prefix = format!("{hash}.");
        let names = self.disk.list_files(ARCHIVE).ok()?;
        names
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .find_map(|name| match self.read(&format!("{ARCHIVE}/{name}")) {
                Ok((balances, got)) if got == *hash => Some(balances),
                _ => None,
            })
    }

    /// The database in file `name`, and its balance hash.
    pub fn read(&self, name: &str) -> Result<(Balances, Hash)> {
        let bytes = self
            .disk
            .read_file(name)?
            .ok_or_else(|| crate::error::Error::Store(format!("{name}: no such file")))?;
        let mut balances = Balances::from_packed(&bytes)?;
        let hash = balances.hash();
        Ok((balances, hash))
    }

    fn prune_archive(&self) {
        let entries = self.archive();
        let excess = entries.len().saturating_sub(self.keep);
        for (hash, seconds) in entries.into_iter().take(excess) {
            let name = Files::archive_name(&hash, seconds);
            if let Err(e) = self.disk.remove_file(&name) {
                log::warn!("could not prune {name}: {e}");
            }
        }
    }
}

pub enum Job {
    Write(Committed),
    /// Answered once everything handed over before it is written.
    Flush(Sender<()>),
}

/// Who writes a commit's files after its record.
pub enum Writer {
    /// The caller, at once.
    Inline,
    /// A thread of its own; see the module documentation.
    Behind {
        jobs: Option<Sender<Job>>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Writer {
    /// A writer thread for `files`.
    pub fn behind(files: Files) -> std::io::Result<Writer> {
        let (jobs, queue) = bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("rota-files".into())
            .spawn(move || write_behind(&files, &queue))?;
        Ok(Writer::Behind {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Writes `committed`'s files: now, or on the writer thread.
    pub fn write(&self, files: &Files, committed: &Committed) -> Result<()> {
        match self {
            Writer::Inline => files.write(committed),
            Writer::Behind { jobs, .. } => {
                if let Some(jobs) = jobs
                    && jobs.send(Job::Write(committed.clone())).is_err()
                {
                    log::error!("the database file writer is gone; writing here");
                    return files.write(committed);
                }
                Ok(())
            }
        }
    }

    /// Waits until every state handed over is written, so that nothing
    /// older lands on the files after what the caller writes next.
    pub fn flush(&self) {
        if let Writer::Behind {
            jobs: Some(jobs), ..
        } = self
        {
            let (done, wait) = bounded(1);
            if jobs.send(Job::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Writer {
    /// Writes what is still waiting before the store closes.
    fn drop(&mut self) {
        if let Writer::Behind { jobs, thread } = self {
            jobs.take();
            if let Some(thread) = thread.take()
                && thread.join().is_err()
            {
                log::error!("the database file writer panicked");
            }
        }
    }
}

/// The writer thread: the newest waiting state each time, until the store
/// closes its end of the queue.
fn write_behind(files: &Files, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut newest = None;
        let mut flushes = Vec::new();
        for job in std::iter::once(first).chain(queue.try_iter()) {
            match job {
                Job::Write(committed) => newest = Some(committed),
                Job::Flush(done) => flushes.push(done),
            }
        }
        if let Some(committed) = newest
            && let Err(e) = files.write(&committed)
        {
            log::error!(
                "could not write the database of slot {} ({}): {e}; a restart replays its blocks",
                committed.slot,
                committed.hash.short()
            );
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

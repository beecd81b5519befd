//! The consensus journal on disk: the bytes of one [`Record`] of the round
//! protocol per entry, the store's journal (appended, read back, replaced
//! at a commit point) and the commit certificate kept with the committed
//! state. Why this is enough across a crash is in the store's essay.
//!
//! ```text
//! tag (1) | fields
//! 1 marks      voted: flag (1) slot (8) | proposed: flag (1) slot (8)
//!              (flag 0 = none, slot all zeros; flag 1 = that slot)
//! 2 proposal   len (8) | signed header | count (8) | count × 140 payment bytes
//! 3 round      as 2
//! 4 prevote    len (8) | PREVOTE(s, header)
//! 5 precommit  len (8) | PRECOMMIT(s, header) with its prevote certificate
//! 6 lock       len (8) | certificate with its header
//! 7 evidence   len (8) | two signed headers of one slot
//! ```
//!
//! Numbers are big-endian. Signed headers, votes, certificates and evidence
//! are in their wire encodings (`rota_peer::wire::consensus`), payments in
//! their 140 bytes. Every length is explicit and checked against the bytes
//! left (nothing is allocated for bytes that are not there), a certificate
//! holds at most one signature a server, and a record with bytes left over
//! is refused: a damaged entry is an error, never half a record.
//!
//! Decoding checks shape only. The journal is this server's own disk, so
//! payments come back as [`VerifiedTx::from_trusted_store`] (they were
//! verified before the round was kept); headers and votes are verified
//! again when the machine replays them (`Machine::restore`).

use std::sync::Arc;

use rota_peer::Slot;
use rota_peer::transaction::{TX_LEN, Transaction, VerifiedTx};
use rota_peer::wire::consensus::{Certified, Evidence, Kind, Precommit, Prevote, SignedHeader};

use super::{Store, TableWrite, store_error};
use crate::error::{Error, Result};
use crate::ledger::consensus::Record;
use crate::ledger::core::{Committed, Payments};

#[cfg(test)]
mod tests;

/// The commit certificate of the committed state, if it has one (a record
/// of the block store's meta).
const META_CERTIFIED: &str = "certified";

const MARKS: u8 = 1;
const PROPOSAL: u8 = 2;
const ROUND: u8 = 3;
const PREVOTE: u8 = 4;
const PRECOMMIT: u8 = 5;
const LOCK: u8 = 6;
const EVIDENCE: u8 = 7;

/// The bytes of `record`.
pub fn encode_record(record: &Record<Payments>) -> Vec<u8> {
    let mut out = Vec::new();
    match record {
        Record::Marks { voted, proposed } => {
            out.push(MARKS);
            put_mark(&mut out, *voted);
            put_mark(&mut out, *proposed);
        }
        Record::Proposal { header, payments } => {
            out.push(PROPOSAL);
            put_round(&mut out, header, payments);
        }
        Record::Round { header, payments } => {
            out.push(ROUND);
            put_round(&mut out, header, payments);
        }
        Record::Prevote(prevote) => put_tagged(&mut out, PREVOTE, &prevote.encode()),
        Record::Precommit(precommit) => put_tagged(&mut out, PRECOMMIT, &precommit.encode()),
        Record::Lock(certified) => put_tagged(&mut out, LOCK, &certified.encode()),
        Record::Evidence(evidence) => put_tagged(&mut out, EVIDENCE, &evidence.encode()),
    }
    out
}

/// Reads one record, whose certificates hold at most `servers` signatures.
pub fn decode_record(bytes: &[u8], servers: usize) -> Result<Record<Payments>> {
    let mut r = Reader { bytes };
    let record = match r.u8("the tag")? {
        MARKS => Record::Marks {
            voted: r.mark("the voted mark")?,
            proposed: r.mark("the proposed mark")?,
        },
        PROPOSAL => {
            let (header, payments) = r.round(servers)?;
            Record::Proposal { header, payments }
        }
        ROUND => {
            let (header, payments) = r.round(servers)?;
            Record::Round { header, payments }
        }
        PREVOTE => Record::Prevote(Prevote::decode(r.sized("the prevote")?, servers)?),
        PRECOMMIT => Record::Precommit(Precommit::decode(r.sized("the precommit")?, servers)?),
        LOCK => Record::Lock(Certified::decode(r.sized("the lock")?, servers)?),
        EVIDENCE => Record::Evidence(Evidence::decode(r.sized("the evidence")?, servers)?),
        other => {
            return Err(journal_error(format!(
                "a record's tag is 1 to 7, got {other}"
            )));
        }
    };
    r.finish()?;
    Ok(record)
}

impl Store {
    /// Appends `records` to the consensus journal after those already
    /// there, all of them durably (one transaction) before returning, or
    /// none of them.
    pub fn journal_append(&self, records: &[Record<Payments>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let end = self.disk.journal_end()?;
        let writes: Vec<TableWrite> = (end..)
            .zip(records)
            .map(|(seq, record)| TableWrite::PutJournal(seq, encode_record(record)))
            .collect();
        self.disk.transact(&writes)
    }

    /// The consensus journal's records, in the order they were appended;
    /// certificates hold at most `servers` signatures. An entry that does
    /// not decode fails the whole read: the machine is rebuilt from all of
    /// its journal or not at all.
    pub fn journal(&self, servers: usize) -> Result<Vec<Record<Payments>>> {
        self.disk
            .journal()?
            .iter()
            .map(|(seq, bytes)| {
                decode_record(bytes, servers)
                    .map_err(|e| store_error(format!("journal entry {seq}: {}", bare(e))))
            })
            .collect()
    }

    /// The commit certificate stored with the committed state, `None` for
    /// a state that has none (the genesis anchor); certificates hold at
    /// most `servers` signatures.
    pub fn certified(&self, servers: usize) -> Result<Option<Certified>> {
        self.disk
            .record(META_CERTIFIED)?
            .map(|bytes| {
                Certified::decode(&bytes, servers)
                    .map_err(|e| store_error(format!("the stored commit certificate: {e}")))
            })
            .transpose()
    }
}

/// Refuses a certificate that does not vouch for `committed`: a commit
/// certificate (precommits) on a header of its slot whose result is its
/// balance hash.
pub(super) fn vouches_for(certified: &Certified, committed: &Committed) -> Result<()> {
    let header = &certified.header;
    if certified.certificate.kind != Kind::Precommit
        || header.slot() != committed.slot
        || header.header.result != committed.hash
    {
        return Err(store_error(format!(
            "a {} certificate of slot {} for balance hash {} does not vouch for the state \
             committed at slot {} with hash {}; only a commit certificate of that round does",
            certified.certificate.kind.name(),
            header.slot(),
            header.header.result.short(),
            committed.slot,
            committed.hash.short()
        )));
    }
    Ok(())
}

/// The writes of a commit point that store its certificate and replace the
/// consensus journal.
pub(super) fn commit_writes(
    certified: Option<&Certified>,
    journal: &[Record<Payments>],
) -> Vec<TableWrite> {
    let mut writes = vec![match certified {
        Some(certified) => TableWrite::PutRecord(META_CERTIFIED, certified.encode()),
        None => TableWrite::RemoveRecord(META_CERTIFIED),
    }];
    writes.push(TableWrite::ClearJournal);
    writes.extend(
        (0..)
            .zip(journal)
            .map(|(seq, record)| TableWrite::PutJournal(seq, encode_record(record))),
    );
    writes
}

/// An error's text without the store's own prefix, to wrap it once.
fn bare(e: Error) -> String {
    match e {
        Error::Store(message) => message,
        other => other.to_string(),
    }
}

fn journal_error(message: String) -> Error {
    Error::Store(format!("consensus journal: {message}"))
}

fn put_mark(out: &mut Vec<u8>, mark: Option<Slot>) {
    match mark {
        None => {
            out.push(0);
            out.extend_from_slice(&[0; 8]);
        }
        Some(slot) => {
            out.push(1);
            out.extend_from_slice(&slot.to_be_bytes());
        }
    }
}

/// A length or a count, in eight bytes: whatever a server keeps fits, so
/// encoding never fails.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_be_bytes());
}

fn put_tagged(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_round(out: &mut Vec<u8>, header: &SignedHeader, payments: &Payments) {
    let header = header.encode();
    put_len(out, header.len());
    out.extend_from_slice(&header);
    put_len(out, payments.len());
    out.reserve(payments.len() * TX_LEN);
    for tx in payments.iter() {
        out.extend_from_slice(tx.bytes());
    }
}

/// Reads fields in order, refusing a short record by name.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(journal_error(format!(
                "{field} needs {n} bytes, {} are left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        let bytes = self.take(8, field)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn mark(&mut self, field: &str) -> Result<Option<Slot>> {
        let flag = self.u8(field)?;
        let slot = self.u64(field)?;
        match (flag, slot) {
            (0, 0) => Ok(None),
            (1, slot) => Ok(Some(slot)),
            (0, _) => Err(journal_error(format!(
                "{field} is none, yet its slot is {slot}, not 0"
            ))),
            (other, _) => Err(journal_error(format!(
                "{field}'s flag is 0 (none) or 1 (a slot), got {other}"
            ))),
        }
    }

    /// A length, then that many bytes.
    fn sized(&mut self, field: &str) -> Result<&'a [u8]> {
        let len = self.u64(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len, field)
    }

    /// A signed header and its payments.
    fn round(&mut self, servers: usize) -> Result<(SignedHeader, Payments)> {
        let header = SignedHeader::decode(self.sized("the round's header")?, servers)?;
        let count = self.u64("the payment count")?;
        // A count the bytes cannot hold is refused before anything is
        // allocated: what is read is bounded by what is there.
        let len = count
            .checked_mul(TX_LEN as u64)
            .and_then(|len| usize::try_from(len).ok())
            .filter(|len| *len <= self.bytes.len())
            .ok_or_else(|| {
                journal_error(format!(
                    "{count} payments need {count} × {TX_LEN} bytes, {} are left",
                    self.bytes.len()
                ))
            })?;
        let bytes = self.take(len, "the payments")?;
        let payments: Arc<[VerifiedTx]> = bytes
            .chunks_exact(TX_LEN)
            .map(|tx| Transaction::decode(tx).map(VerifiedTx::from_trusted_store))
            .collect::<rota_peer::Result<_>>()?;
        Ok((header, payments))
    }

    /// Refuses bytes left over.
    fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(journal_error(format!(
                "{} bytes after the record",
                self.bytes.len()
            )))
        }
    }
}

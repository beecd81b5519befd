//! The consensus vocabulary: round headers, votes and certificates, their
//! bytes, and the one place their signatures are checked.
//!
//! A round is named by its header ([`Header`]): slot, base (the round it
//! builds on, where the chain of blocks stands after it and how far that
//! chain is sealed), the merkle root of its payments, the balance hash
//! they leave, and the seal of a block it may carry. The header's digest
//! is the SHA-256 of its 208 bytes. Three kinds
//! of statement are signed about a header, all over the same bytes
//! ([`statement`]):
//!
//! ```text
//! "rota consensus v1" (17) | len(chain) (1) | chain | kind (1) | slot (8) | digest (32)
//! kind: 1 = header (signed by alpha(slot)), 2 = prevote, 3 = precommit
//! ```
//!
//! The domain words keep these signatures apart from those of envelopes
//! (`rota peer v1`) and payments (`rota payment v1`); the chain keeps one
//! chain's votes off another. A certificate ([`Certificate`]) is at least
//! floor(N/2)+1 signatures of distinct servers of the conf on one identical
//! (kind, slot, digest): a prevote certificate, or a commit certificate made
//! of precommits.
//!
//! What travels ([`Prevote`], [`Precommit`], [`Certified`], [`Evidence`])
//! always carries the signed header it is about, so that every server learns
//! the chain of headers from the votes alone. Every block ends with a
//! [`Proof`] that its round is committed: its signed header, the headers
//! built on it up to the certified round, and that round's commit
//! certificate.
//!
//! Decoding ([`SignedHeader::decode`] and friends) checks shape and bounds
//! only: lengths, a certificate of at most N signatures with strictly
//! increasing signers. Verification (`verify` on each type) checks every
//! signature, that each signer is in the conf, that a header is signed by
//! the alpha of its slot, and that what a message says of itself agrees (a
//! prevote's digest is its header's). Only verification makes a
//! [`Verified`] value, and the consensus machine takes nothing else, so no
//! unchecked signature reaches it. The machine's own votes and headers are
//! made [`Verified`] by signing them ([`Verified::sign_vote`],
//! [`Verified::sign_header`]), and certificates it assembles from verified
//! votes by [`Verified::assemble`].
//!
//! The server commands `round`, `prevote`, `precommit`, `certified` and
//! `evidence` carry them (`server.rs`); docs/PROTOCOL.md §11 gives their
//! bytes, and §9.2 a block's proof.

mod certificate;
mod header;
mod proof;
mod vote;

pub use certificate::{Certificate, Certified, Evidence};
pub use header::{Base, HEADER_LEN, Header, SignedHeader};
pub use proof::{MIN_SIGNED_HEADER_LEN, Proof};
pub use vote::{Precommit, Prevote, VOTE_LEN, Vote};

use crate::error::{Error, Result};
use crate::types::{Hash, Slot};

/// The words that open every consensus statement a server signs.
pub const CONSENSUS_DOMAIN: &[u8] = b"rota consensus v1";

/// The longest chain name a statement carries (its length is one byte).
const MAX_SIGNED_CHAIN: usize = 255;

/// What a signature says about a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The alpha of the slot proposes this header (its round).
    Header,
    /// A server prevotes the header.
    Prevote,
    /// A server precommits the header.
    Precommit,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Header => 1,
            Kind::Prevote => 2,
            Kind::Precommit => 3,
        }
    }

    pub fn from_byte(byte: u8) -> Result<Kind> {
        match byte {
            1 => Ok(Kind::Header),
            2 => Ok(Kind::Prevote),
            3 => Ok(Kind::Precommit),
            other => Err(Error::Invalid(format!(
                "a consensus kind is 1 (header), 2 (prevote) or 3 (precommit), got {other}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Header => "header",
            Kind::Prevote => "prevote",
            Kind::Precommit => "precommit",
        }
    }
}

/// The bytes a server signs to say `kind` about the header `digest` of
/// `slot` on `chain`.
pub fn statement(chain: &str, kind: Kind, slot: Slot, digest: &Hash) -> Vec<u8> {
    let chain = &chain.as_bytes()[..chain.len().min(MAX_SIGNED_CHAIN)];
    let mut out = Vec::with_capacity(CONSENSUS_DOMAIN.len() + 1 + chain.len() + 1 + 8 + 32);
    out.extend_from_slice(CONSENSUS_DOMAIN);
    out.push(chain.len() as u8);
    out.extend_from_slice(chain);
    out.push(kind.byte());
    out.extend_from_slice(&slot.to_be_bytes());
    out.extend_from_slice(&digest.0);
    out
}

/// A value whose signatures have been checked against the conf (or that
/// this server signed itself). Only this crate makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    /// The checked value, no longer marked checked (to send it on).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Reads fields in order from a byte string, refusing a short one by name.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Error::Invalid(format!(
                "{}: {field} needs {n} bytes, {} are left",
                self.what,
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const L: usize>(&mut self, field: &str) -> Result<[u8; L]> {
        let bytes = self.take(L, field)?;
        Ok(bytes.try_into().expect("took L bytes"))
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn hash(&mut self, field: &str) -> Result<Hash> {
        Ok(Hash(self.array(field)?))
    }

    /// Refuses bytes left over.
    fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{}: {} bytes too many",
                self.what,
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests;

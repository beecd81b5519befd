//! The round header and its signed form.
//!
//! ```text
//! header (208 bytes)
//! offset size
//!      0    8  slot
//!      8   32  base: digest of the header of the round this one builds on
//!     40    8  base: its slot
//!     48   32  base: its resulting balance hash
//!     80    8  base: the block height after it
//!     88   32  base: the id of the last block after it (zeros at height 0)
//!    120    8  base: the sealed height after it (blocks 1 to it are sealed)
//!    128   32  merkle root of the payments, as sent
//!    160   32  balance hash after applying them on the base
//!    192    8  seal nonce: 0 for none, else the nonce that seals block
//!              (base sealed height + 1)
//!    200    8  seal time, Unix ms (0 when there is no seal)
//! digest = SHA-256(header)
//!
//! signed header
//!   header (208) | alpha's signature (64) | 0 (1)                   base is the anchor
//!   header (208) | alpha's signature (64) | 1 (1) | certificate     otherwise
//! ```
//!
//! The base names where the chain of blocks stands after it, so a
//! certified header fixes the block its round makes (number, previous id,
//! every other field: [`Header::block`]) and the chain position after it
//! ([`Header::after`]). Voters check each link against the base's own
//! header, down to the committed round.
//!
//! Blocks are sealed in order, each by the first round of the chain that
//! carries its seal: a header may carry the seal of the block after its
//! base's sealed height, which must be in the base's chain. So the
//! certified header chain fixes which seal counts for each block, and
//! every server that commits it keeps the same one ([`Header::sealed_after`]).
//!
//! The base is the highest-slot round the alpha holds a prevote or commit
//! certificate for, and that certificate travels with the header; or the
//! anchor, the committed state every server starts from, whose digest is
//! all zeros and which needs no certificate. The alpha's signature is the
//! statement (header, slot, digest) of [`super::statement`].

use super::certificate::{Certificate, check_signature};
use super::{Kind, Reader, Verified, statement};
use crate::block::{BlockHeader, Position, Shape};
use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::seal::Seal;
use crate::types::{BlockNumber, Hash, ServerId, Slot};
use crate::wire::ServerList;

/// Length of an encoded header.
pub const HEADER_LEN: usize = 208;

/// The round a header builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Base {
    /// The digest of that round's header; all zeros for the anchor.
    pub digest: Hash,
    pub slot: Slot,
    /// The balance hash after that round.
    pub balance: Hash,
    /// The chain of blocks after that round: the block this round's
    /// block follows.
    pub chain: Position,
    /// The sealed height after that round: blocks 1 to it are sealed.
    pub sealed: BlockNumber,
}

impl Base {
    /// Whether this base is the anchor (digest all zeros), which carries no
    /// certificate.
    pub fn is_anchor(&self) -> bool {
        self.digest == Hash::default()
    }
}

/// What the alpha of a slot signs to name its round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub slot: Slot,
    pub base: Base,
    /// The merkle root of the payments' ids, in the order sent.
    pub payments: Hash,
    /// The balance hash after the payments are applied on the base.
    pub result: Hash,
    /// The seal of block `base.sealed + 1`, if this round carries one.
    pub seal: Option<Seal>,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.slot.to_be_bytes());
        out[8..40].copy_from_slice(&self.base.digest.0);
        out[40..48].copy_from_slice(&self.base.slot.to_be_bytes());
        out[48..80].copy_from_slice(&self.base.balance.0);
        out[80..88].copy_from_slice(&self.base.chain.height.to_be_bytes());
        out[88..120].copy_from_slice(&self.base.chain.block.0);
        out[120..128].copy_from_slice(&self.base.sealed.to_be_bytes());
        out[128..160].copy_from_slice(&self.payments.0);
        out[160..192].copy_from_slice(&self.result.0);
        if let Some(seal) = self.seal {
            out[192..200].copy_from_slice(&seal.nonce.to_be_bytes());
            out[200..208].copy_from_slice(&seal.time.to_be_bytes());
        }
        out
    }

    /// The block this round's seal seals, if it carries one.
    pub fn sealing(&self) -> Option<BlockNumber> {
        self.seal.map(|_| self.base.sealed.saturating_add(1))
    }

    /// The sealed height after this round: its base's, and one more when
    /// it carries a seal.
    pub fn sealed_after(&self) -> BlockNumber {
        self.sealing().unwrap_or(self.base.sealed)
    }

    /// Whether the round carries payments, and so makes a block.
    pub fn has_payments(&self) -> bool {
        self.payments != Hash::default()
    }

    /// The block this round makes once committed, if it has payments: a
    /// pure function of the header and the chain's slot length, so every
    /// server builds the same one and a certificate on the header vouches
    /// for it.
    pub fn block(&self, shape: Shape) -> Option<BlockHeader> {
        self.has_payments().then(|| BlockHeader {
            number: self.base.chain.height.saturating_add(1),
            previous: self.base.chain.block,
            slot: self.slot,
            timestamp: self.slot.saturating_mul(shape.slot_ms),
            merkle_root: self.payments,
            balance_hash: self.result,
            difficulty: shape.difficulty,
            nonce: 0,
        })
    }

    /// The chain of blocks after this round: its block's, or its base's
    /// when it has no payments.
    pub fn after(&self, shape: Shape) -> Position {
        match self.block(shape) {
            Some(block) => Position {
                height: block.number,
                block: block.hash(),
            },
            None => self.base.chain,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Header> {
        Ok(Header {
            slot: r.u64("the header's slot")?,
            base: Base {
                digest: r.hash("the base digest")?,
                slot: r.u64("the base slot")?,
                balance: r.hash("the base balance hash")?,
                chain: Position {
                    height: r.u64("the base block height")?,
                    block: r.hash("the base block id")?,
                },
                sealed: r.u64("the base sealed height")?,
            },
            payments: r.hash("the payments' merkle root")?,
            result: r.hash("the resulting balance hash")?,
            seal: match (r.u64("the seal nonce")?, r.u64("the seal time")?) {
                (0, 0) => None,
                (0, _) => {
                    return Err(Error::Invalid(
                        "a header's seal has nonce 0 (no seal) but a seal time".into(),
                    ));
                }
                (nonce, time) => Some(Seal { nonce, time }),
            },
        })
    }

    /// Reads exactly [`HEADER_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        let mut r = Reader::new(bytes, "a header");
        let header = Header::read(&mut r)?;
        r.finish()?;
        Ok(header)
    }

    /// SHA-256 of the encoded header: the name every vote uses.
    pub fn digest(&self) -> Hash {
        Hash::of(&self.encode())
    }
}

/// A header with the alpha's signature and the certificate of its base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeader {
    pub header: Header,
    pub signature: [u8; 64],
    /// The certificate of the base; none when the base is the anchor.
    pub base_certificate: Option<Certificate>,
}

impl SignedHeader {
    pub fn slot(&self) -> Slot {
        self.header.slot
    }

    pub fn digest(&self) -> Hash {
        self.header.digest()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 65);
        self.write(&mut out);
        out
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.signature);
        match &self.base_certificate {
            None => out.push(0),
            Some(certificate) => {
                out.push(1);
                certificate.write(out);
            }
        }
    }

    pub(super) fn read(r: &mut Reader<'_>, servers: usize) -> Result<SignedHeader> {
        let header = Header::read(r)?;
        let signature = r.array::<64>("the alpha's signature")?;
        let base_certificate = match r.u8("the base certificate flag")? {
            0 => None,
            1 => Some(Certificate::read(r, servers)?),
            other => {
                return Err(Error::Invalid(format!(
                    "a signed header's base certificate flag is 0 or 1, got {other}"
                )));
            }
        };
        Ok(SignedHeader {
            header,
            signature,
            base_certificate,
        })
    }

    /// Reads a signed header whose base certificate has at most `servers`
    /// signatures.
    pub fn decode(bytes: &[u8], servers: usize) -> Result<SignedHeader> {
        let mut r = Reader::new(bytes, "a signed header");
        let header = SignedHeader::read(&mut r, servers)?;
        r.finish()?;
        Ok(header)
    }

    /// Checks that the alpha of the header's slot signed it, that it builds
    /// on an earlier slot, and that its base carries a valid prevote or
    /// commit certificate for exactly that base (or is the anchor and
    /// carries none).
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<SignedHeader>> {
        let h = &self.header;
        if servers.is_empty() {
            return Err(Error::Signature("no servers in the conf".into()));
        }
        if h.base.slot >= h.slot {
            return Err(Error::Invalid(format!(
                "the header of slot {} builds on slot {}, which is not earlier",
                h.slot, h.base.slot
            )));
        }
        if h.base.sealed > h.base.chain.height
            || (h.seal.is_some() && h.base.sealed >= h.base.chain.height)
        {
            return Err(Error::Invalid(format!(
                "the header of slot {} seals past its base's blocks (sealed height {}, \
                 height {}, {})",
                h.slot,
                h.base.sealed,
                h.base.chain.height,
                if h.seal.is_some() {
                    "with a seal"
                } else {
                    "no seal"
                }
            )));
        }
        let alpha = ServerId::from_index((h.slot % servers.len() as u64) as usize);
        let signed = statement(chain, Kind::Header, h.slot, &h.digest());
        check_signature(
            servers,
            alpha,
            &signed,
            &self.signature,
            "the header's alpha",
        )?;
        match (&self.base_certificate, h.base.is_anchor()) {
            (None, true) => {}
            (Some(_), true) => {
                return Err(Error::Invalid(
                    "a header built on the anchor carries no base certificate".into(),
                ));
            }
            (None, false) => {
                return Err(Error::Invalid(format!(
                    "the header of slot {} builds on slot {} without its certificate",
                    h.slot, h.base.slot
                )));
            }
            (Some(certificate), false) => {
                if certificate.kind == Kind::Header
                    || certificate.slot != h.base.slot
                    || certificate.digest != h.base.digest
                {
                    return Err(Error::Invalid(format!(
                        "the base certificate ({} of slot {}) does not vouch for the base \
                         (slot {})",
                        certificate.kind.name(),
                        certificate.slot,
                        h.base.slot
                    )));
                }
                certificate.verify(chain, servers)?;
            }
        }
        Ok(Verified(self.clone()))
    }
}

impl Verified<SignedHeader> {
    /// Signs `header` as the alpha of its slot, with the certificate of its
    /// base. For this server's own round.
    pub fn sign_header(
        keypair: &Keypair,
        chain: &str,
        header: Header,
        base_certificate: Option<Verified<Certificate>>,
    ) -> Verified<SignedHeader> {
        let signed = statement(chain, Kind::Header, header.slot, &header.digest());
        Verified(SignedHeader {
            header,
            signature: keypair.sign(&signed),
            base_certificate: base_certificate.map(Verified::into_inner),
        })
    }

    /// The base's certificate, checked with the header.
    pub fn base_certificate(&self) -> Option<Verified<Certificate>> {
        self.0.base_certificate.clone().map(Verified)
    }
}

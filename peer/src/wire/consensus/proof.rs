//! The proof that a round is committed, which every block carries.
//!
//! A round is committed by a commit certificate on it, or on a later round
//! whose header chain contains it. The proof is that chain, from the
//! round up, and the certificate:
//!
//! ```text
//! proof = count u32 (4)
//!       | count signed headers: the round's own, then each one built on the
//!         one before it, up to the certified round (not included)
//!       | the certified round: its signed header, then its commit certificate
//! ```
//!
//! Checking it ([`Proof::verify`]) needs nothing but the conf: every header
//! is signed by the alpha of its slot (with its base's certificate), the
//! certificate is a commit certificate of a majority of the conf's servers
//! on the last header, and each header's base is the digest of the one
//! before it. What it proves is the first header: its slot, the merkle root
//! of its payments, and the balance hash they leave.

use super::{Certified, HEADER_LEN, Kind, Reader, SignedHeader, Verified};
use crate::error::{Error, Result};
use crate::wire::ServerList;

/// The fewest bytes a signed header takes (a header, its signature, and
/// no base certificate): a proof claiming more headers than its bytes
/// could hold is refused before any is read.
pub const MIN_SIGNED_HEADER_LEN: usize = HEADER_LEN + 64 + 1;

/// A round, the headers above it and the commit certificate of the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The round's own signed header first, then the ones built on it, up
    /// to the certified round; empty when the round itself is certified.
    pub headers: Vec<SignedHeader>,
    pub certified: Certified,
}

impl Proof {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for header in &self.headers {
            header.write(&mut out);
        }
        self.certified.header.write(&mut out);
        self.certified.certificate.write(&mut out);
        out
    }

    /// Reads a proof whose certificates have at most `servers` signatures.
    pub fn decode(bytes: &[u8], servers: usize) -> Result<Proof> {
        let mut r = Reader::new(bytes, "a block's proof");
        let count = r.u32("the header count")?;
        if count as usize > bytes.len() / MIN_SIGNED_HEADER_LEN {
            return Err(Error::Invalid(format!(
                "a block's proof of {} bytes cannot hold the {count} headers it claims",
                bytes.len()
            )));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            headers.push(SignedHeader::read(&mut r, servers)?);
        }
        let header = SignedHeader::read(&mut r, servers)?;
        let certificate = super::Certificate::read(&mut r, servers)?;
        r.finish()?;
        Ok(Proof {
            headers,
            certified: Certified {
                header,
                certificate,
            },
        })
    }

    /// Checks every signature, that the certificate is a commit
    /// certificate of the last header, and that the headers chain; returns
    /// the proven round's header.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<SignedHeader>> {
        let certified = self.certified.verify(chain, servers)?;
        if certified.certificate.kind != Kind::Precommit {
            return Err(Error::Invalid(format!(
                "a block's proof ends with a {} certificate, not a commit certificate",
                certified.certificate.kind.name()
            )));
        }
        let mut proven = None;
        let mut above = &certified.header;
        for header in self.headers.iter().rev() {
            if above.header.base.digest != header.digest() {
                return Err(Error::Invalid(format!(
                    "a block's proof does not chain: the header of slot {} does not build on \
                     the one of slot {}",
                    above.slot(),
                    header.slot()
                )));
            }
            above = header;
            proven = Some(header.verify(chain, servers)?);
        }
        Ok(proven.unwrap_or_else(|| certified.header()))
    }
}

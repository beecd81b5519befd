//! Certificates, a certificate with its header, and evidence of an
//! equivocating alpha.
//!
//! ```text
//! certificate
//!   kind (1: 2 prevote, 3 precommit) | slot (8) | digest (32) | count u16 (2)
//!   | count x ( signer's server id u32 (4) | signature (64) )
//!   signers in strictly increasing order; count <= N
//!
//! certified = signed header | certificate        (its slot and digest)
//! evidence  = signed header | signed header      (one slot, two digests)
//! ```
//!
//! A certificate is valid when it holds at least floor(N/2)+1 signatures
//! of distinct servers of the conf on the one statement (kind, slot,
//! digest). Decoding refuses more than N signatures before reading them;
//! verification checks the order (which makes the signers distinct), that
//! every signer is in the conf, and every signature, in one batch whose
//! verdict is that of checking each alone (ZIP 215).

use super::header::SignedHeader;
use super::vote::Vote;
use super::{Kind, Reader, Verified, statement};
use crate::error::{Error, Result};
use crate::signature::{self, Batch};
use crate::types::{Hash, ServerId, Slot};
use crate::wire::ServerList;

/// Checks `signature` by server `id` over `message`; `what` names the
/// signer in a refusal.
pub(super) fn check_signature(
    servers: &ServerList,
    id: ServerId,
    message: &[u8],
    signature: &[u8; 64],
    what: &str,
) -> Result<()> {
    let key = (id.0 >= 1)
        .then(|| servers.key(id))
        .flatten()
        .ok_or_else(|| {
            Error::Signature(format!(
                "{what}: server {id} is not in the conf ({} servers)",
                servers.len()
            ))
        })?;
    if !signature::verify(&key.0, message, signature) {
        return Err(Error::Signature(format!(
            "{what}: the signature of server {id} does not verify"
        )));
    }
    Ok(())
}

/// Signatures of a majority of the servers on one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// Prevote (a prevote certificate) or precommit (a commit certificate).
    pub kind: Kind,
    pub slot: Slot,
    pub digest: Hash,
    /// Signer and signature, signers in increasing order.
    pub signatures: Vec<(ServerId, [u8; 64])>,
}

impl Certificate {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.kind.byte());
        out.extend_from_slice(&self.slot.to_be_bytes());
        out.extend_from_slice(&self.digest.0);
        // At most N signatures, and N is far below 65,535 (the conf's list).
        out.extend_from_slice(&(self.signatures.len() as u16).to_be_bytes());
        for (signer, signature) in &self.signatures {
            out.extend_from_slice(&signer.0.to_be_bytes());
            out.extend_from_slice(signature);
        }
    }

    pub(super) fn read(r: &mut Reader<'_>, servers: usize) -> Result<Certificate> {
        let kind = Kind::from_byte(r.u8("the certificate's kind")?)?;
        if kind == Kind::Header {
            return Err(Error::Invalid(
                "a certificate is of prevotes (2) or precommits (3), not headers (1)".into(),
            ));
        }
        let slot = r.u64("the certificate's slot")?;
        let digest = r.hash("the certificate's digest")?;
        let count = usize::from(r.u16("the certificate's signature count")?);
        if count > servers {
            return Err(Error::Invalid(format!(
                "a certificate holds at most {servers} signatures (one a server), this one says \
                 {count}"
            )));
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            let signer = ServerId(r.u32("a signer's server id")?);
            signatures.push((signer, r.array::<64>("a signature")?));
        }
        Ok(Certificate {
            kind,
            slot,
            digest,
            signatures,
        })
    }

    /// Reads a certificate of at most `servers` signatures.
    pub fn decode(bytes: &[u8], servers: usize) -> Result<Certificate> {
        let mut r = Reader::new(bytes, "a certificate");
        let certificate = Certificate::read(&mut r, servers)?;
        r.finish()?;
        Ok(certificate)
    }

    /// Checks that a majority of distinct servers of the conf signed the
    /// certificate's statement, and that every signature verifies.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Certificate>> {
        let what = format!("the {} certificate of slot {}", self.kind.name(), self.slot);
        if self.kind == Kind::Header {
            return Err(Error::Invalid(format!("{what}: headers are not certified")));
        }
        let count = self.signatures.len();
        if count < servers.majority() || count > servers.len() {
            return Err(Error::Signature(format!(
                "{what} holds {count} signatures; {} to {} are needed",
                servers.majority(),
                servers.len()
            )));
        }
        if let Some(pair) = self.signatures.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(Error::Signature(format!(
                "{what}: signers must be distinct and in increasing order, got server {} then {}",
                pair[0].0, pair[1].0
            )));
        }
        let message = statement(chain, self.kind, self.slot, &self.digest);
        let mut batch = Batch::new();
        for (signer, signature) in &self.signatures {
            let key = (signer.0 >= 1)
                .then(|| servers.key(*signer))
                .flatten()
                .ok_or_else(|| {
                    Error::Signature(format!(
                        "{what}: server {signer} is not in the conf ({} servers)",
                        servers.len()
                    ))
                })?;
            batch.queue(&key.0, &message, signature);
        }
        if !batch.verify() {
            return Err(Error::Signature(format!(
                "{what}: a signature does not verify"
            )));
        }
        Ok(Verified(self.clone()))
    }
}

impl Verified<Certificate> {
    /// The certificate made of `votes`, all verified statements of one
    /// (kind, slot, digest), when they come from at least `majority`
    /// distinct servers. A second vote of one server counts once.
    pub fn assemble<'a>(
        votes: impl IntoIterator<Item = &'a Verified<Vote>>,
        majority: usize,
    ) -> Option<Verified<Certificate>> {
        let mut votes = votes.into_iter().peekable();
        let first = votes.peek()?;
        let (kind, slot, digest) = (first.kind, first.slot, first.digest);
        let mut signatures: Vec<(ServerId, [u8; 64])> = Vec::new();
        for vote in votes {
            if (vote.kind, vote.slot, vote.digest) != (kind, slot, digest) {
                return None;
            }
            signatures.push((vote.signer, vote.signature));
        }
        signatures.sort_by_key(|(signer, _)| *signer);
        signatures.dedup_by_key(|(signer, _)| *signer);
        (kind != Kind::Header && signatures.len() >= majority).then_some(Verified(Certificate {
            kind,
            slot,
            digest,
            signatures,
        }))
    }
}

/// A certificate with the signed header it is about: what a server relays
/// (its lock, a commit) so that the receiver learns the header too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certified {
    pub header: SignedHeader,
    pub certificate: Certificate,
}

impl Certified {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.header.write(&mut out);
        self.certificate.write(&mut out);
        out
    }

    pub fn decode(bytes: &[u8], servers: usize) -> Result<Certified> {
        let mut r = Reader::new(bytes, "a certified header");
        let header = SignedHeader::read(&mut r, servers)?;
        let certificate = Certificate::read(&mut r, servers)?;
        r.finish()?;
        Ok(Certified {
            header,
            certificate,
        })
    }

    /// Checks the header, the certificate, and that the certificate is
    /// about this header.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Certified>> {
        let header = self.header.verify(chain, servers)?;
        let certificate = self.certificate.verify(chain, servers)?;
        Verified::<Certified>::join(header, certificate)
            .ok_or_else(|| Error::Invalid(mismatch(&self.header, &self.certificate)))
    }
}

fn mismatch(header: &SignedHeader, certificate: &Certificate) -> String {
    format!(
        "the {} certificate of slot {} ({}) is not about the header it travels with (slot {}, {})",
        certificate.kind.name(),
        certificate.slot,
        certificate.digest.short(),
        header.slot(),
        header.digest().short()
    )
}

impl Verified<Certified> {
    /// A header with a certificate about it; none if the certificate is
    /// about another header.
    pub fn join(
        header: Verified<SignedHeader>,
        certificate: Verified<Certificate>,
    ) -> Option<Verified<Certified>> {
        (certificate.slot == header.slot() && certificate.digest == header.digest()).then(|| {
            Verified(Certified {
                header: header.into_inner(),
                certificate: certificate.into_inner(),
            })
        })
    }

    pub fn header(&self) -> Verified<SignedHeader> {
        Verified(self.0.header.clone())
    }

    pub fn certificate(&self) -> Verified<Certificate> {
        Verified(self.0.certificate.clone())
    }
}

/// Two different headers for one slot, both signed by its alpha: proof
/// that the alpha equivocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub first: SignedHeader,
    pub second: SignedHeader,
}

impl Evidence {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.first.write(&mut out);
        self.second.write(&mut out);
        out
    }

    pub fn decode(bytes: &[u8], servers: usize) -> Result<Evidence> {
        let mut r = Reader::new(bytes, "evidence");
        let first = SignedHeader::read(&mut r, servers)?;
        let second = SignedHeader::read(&mut r, servers)?;
        r.finish()?;
        Ok(Evidence { first, second })
    }

    pub fn slot(&self) -> Slot {
        self.first.slot()
    }

    /// Checks both headers and that they are two for one slot.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Evidence>> {
        let first = self.first.verify(chain, servers)?;
        let second = self.second.verify(chain, servers)?;
        Verified::<Evidence>::of(&first, &second).ok_or_else(|| {
            Error::Invalid(format!(
                "evidence must be two different headers of one slot, got slots {} and {}",
                first.slot(),
                second.slot()
            ))
        })
    }
}

impl Verified<Evidence> {
    /// The evidence two verified headers make, if they are two different
    /// headers of one slot.
    pub fn of(
        first: &Verified<SignedHeader>,
        second: &Verified<SignedHeader>,
    ) -> Option<Verified<Evidence>> {
        (first.slot() == second.slot() && first.digest() != second.digest()).then(|| {
            Verified(Evidence {
                first: first.0.clone(),
                second: second.0.clone(),
            })
        })
    }

    /// The two headers, checked with the evidence.
    pub fn headers(&self) -> [Verified<SignedHeader>; 2] {
        [
            Verified(self.0.first.clone()),
            Verified(self.0.second.clone()),
        ]
    }
}

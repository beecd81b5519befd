//! Votes, and the two vote messages that carry their header.
//!
//! ```text
//! vote (109 bytes)
//!   kind (1: 2 prevote, 3 precommit) | slot (8) | digest (32)
//!   | signer's server id u32 (4) | signature (64) over the statement
//!
//! prevote   = vote | signed header
//! precommit = vote | signed header | the prevote certificate it rests on
//! ```
//!
//! A prevote carries the header it votes for, so that every server learns
//! every header of a slot, and with two of them, that the alpha
//! equivocated. A precommit carries the prevote certificate it rests on, so
//! that a server that missed the prevotes still learns of the certificate
//! and locks on it before the next round closes.

use super::certificate::{Certificate, check_signature};
use super::header::SignedHeader;
use super::{Kind, Reader, Verified, statement};
use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::types::{Hash, ServerId, Slot};
use crate::wire::ServerList;

/// Length of an encoded vote.
pub const VOTE_LEN: usize = 109;

/// One server's prevote or precommit on a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub kind: Kind,
    pub slot: Slot,
    pub digest: Hash,
    pub signer: ServerId,
    pub signature: [u8; 64],
}

impl Vote {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VOTE_LEN);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.kind.byte());
        out.extend_from_slice(&self.slot.to_be_bytes());
        out.extend_from_slice(&self.digest.0);
        out.extend_from_slice(&self.signer.0.to_be_bytes());
        out.extend_from_slice(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Vote> {
        let kind = Kind::from_byte(r.u8("the vote's kind")?)?;
        if kind == Kind::Header {
            return Err(Error::Invalid(
                "a vote is a prevote (2) or a precommit (3), not a header (1)".into(),
            ));
        }
        Ok(Vote {
            kind,
            slot: r.u64("the vote's slot")?,
            digest: r.hash("the vote's digest")?,
            signer: ServerId(r.u32("the voter's server id")?),
            signature: r.array::<64>("the vote's signature")?,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Vote> {
        let mut r = Reader::new(bytes, "a vote");
        let vote = Vote::read(&mut r)?;
        r.finish()?;
        Ok(vote)
    }

    /// Checks that the signer is in the conf and signed this statement.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Vote>> {
        let signed = statement(chain, self.kind, self.slot, &self.digest);
        let what = format!("a {} of slot {}", self.kind.name(), self.slot);
        check_signature(servers, self.signer, &signed, &self.signature, &what)?;
        Ok(Verified(self.clone()))
    }
}

impl Verified<Vote> {
    /// This server's own vote, signed with its key.
    pub fn sign_vote(
        keypair: &Keypair,
        chain: &str,
        me: ServerId,
        kind: Kind,
        slot: Slot,
        digest: Hash,
    ) -> Verified<Vote> {
        let signature = keypair.sign(&statement(chain, kind, slot, &digest));
        Verified(Vote {
            kind,
            slot,
            digest,
            signer: me,
            signature,
        })
    }
}

/// Refuses a vote that is not of `kind` or not about `header`.
fn check_about(vote: &Vote, kind: Kind, header: &SignedHeader) -> Result<()> {
    if vote.kind != kind || vote.slot != header.slot() || vote.digest != header.digest() {
        return Err(Error::Invalid(format!(
            "a {} of slot {} on {} travels with the header of slot {} ({})",
            vote.kind.name(),
            vote.slot,
            vote.digest.short(),
            header.slot(),
            header.digest().short()
        )));
    }
    Ok(())
}

/// PREVOTE(s, header): a prevote with the header it votes for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prevote {
    pub vote: Vote,
    pub header: SignedHeader,
}

impl Prevote {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.vote.write(&mut out);
        self.header.write(&mut out);
        out
    }

    pub fn decode(bytes: &[u8], servers: usize) -> Result<Prevote> {
        let mut r = Reader::new(bytes, "a prevote");
        let vote = Vote::read(&mut r)?;
        let header = SignedHeader::read(&mut r, servers)?;
        r.finish()?;
        Ok(Prevote { vote, header })
    }

    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Prevote>> {
        check_about(&self.vote, Kind::Prevote, &self.header)?;
        let vote = self.vote.verify(chain, servers)?;
        let header = self.header.verify(chain, servers)?;
        Ok(Verified(Prevote {
            vote: vote.into_inner(),
            header: header.into_inner(),
        }))
    }
}

impl Verified<Prevote> {
    /// A prevote made of a verified vote and the header it is about.
    pub fn join(vote: Verified<Vote>, header: Verified<SignedHeader>) -> Option<Verified<Prevote>> {
        check_about(&vote, Kind::Prevote, &header).ok()?;
        Some(Verified(Prevote {
            vote: vote.into_inner(),
            header: header.into_inner(),
        }))
    }

    pub fn parts(&self) -> (Verified<Vote>, Verified<SignedHeader>) {
        (
            Verified(self.0.vote.clone()),
            Verified(self.0.header.clone()),
        )
    }
}

/// PRECOMMIT(s, header): a precommit with its header and the prevote
/// certificate it rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precommit {
    pub vote: Vote,
    pub header: SignedHeader,
    pub certificate: Certificate,
}

impl Precommit {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.vote.write(&mut out);
        self.header.write(&mut out);
        self.certificate.write(&mut out);
        out
    }

    pub fn decode(bytes: &[u8], servers: usize) -> Result<Precommit> {
        let mut r = Reader::new(bytes, "a precommit");
        let vote = Vote::read(&mut r)?;
        let header = SignedHeader::read(&mut r, servers)?;
        let certificate = Certificate::read(&mut r, servers)?;
        r.finish()?;
        Ok(Precommit {
            vote,
            header,
            certificate,
        })
    }

    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Verified<Precommit>> {
        check_about(&self.vote, Kind::Precommit, &self.header)?;
        let c = &self.certificate;
        if c.kind != Kind::Prevote || c.slot != self.vote.slot || c.digest != self.vote.digest {
            return Err(Error::Invalid(format!(
                "a precommit of slot {} rests on a {} certificate of slot {} ({}), not on the \
                 prevotes of its own header",
                self.vote.slot,
                c.kind.name(),
                c.slot,
                c.digest.short()
            )));
        }
        let vote = self.vote.verify(chain, servers)?;
        let header = self.header.verify(chain, servers)?;
        let certificate = c.verify(chain, servers)?;
        Ok(Verified(Precommit {
            vote: vote.into_inner(),
            header: header.into_inner(),
            certificate: certificate.into_inner(),
        }))
    }
}

impl Verified<Precommit> {
    /// A precommit made of a verified vote, its header and the prevote
    /// certificate on that header.
    pub fn join(
        vote: Verified<Vote>,
        header: Verified<SignedHeader>,
        certificate: Verified<Certificate>,
    ) -> Option<Verified<Precommit>> {
        check_about(&vote, Kind::Precommit, &header).ok()?;
        let c = &certificate;
        (c.kind == Kind::Prevote && c.slot == vote.slot && c.digest == vote.digest).then(|| {
            Verified(Precommit {
                vote: vote.into_inner(),
                header: header.into_inner(),
                certificate: certificate.into_inner(),
            })
        })
    }

    pub fn parts(
        &self,
    ) -> (
        Verified<Vote>,
        Verified<SignedHeader>,
        Verified<Certificate>,
    ) {
        (
            Verified(self.0.vote.clone()),
            Verified(self.0.header.clone()),
            Verified(self.0.certificate.clone()),
        )
    }
}

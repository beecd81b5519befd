//! What this server has seen of one slot: the headers its alpha signed, the
//! prevotes and precommits on each, and the prevote certificates.
//!
//! Only the first two headers of a slot are tracked: two are already proof
//! that the alpha equivocated, and no honest server precommits either, so a
//! third adds nothing but memory. A vote counts once per signer and header.

use std::collections::BTreeMap;

use rota_peer::wire::consensus::{Certificate, Evidence, Kind, Verified, Vote};
use rota_peer::{Hash, ServerId};

/// The most headers of one slot this server tracks.
const MAX_HEADERS: usize = 2;

/// What a header is to its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Already tracked.
    Known,
    /// The slot's first header.
    First,
    /// A second header for the slot: its alpha equivocated.
    Second,
    /// Beyond the two tracked; ignored.
    Beyond,
}

/// The votes of one slot.
#[derive(Debug, Default)]
pub(super) struct SlotVotes {
    /// Header digests, first seen first.
    pub headers: Vec<Hash>,
    prevotes: BTreeMap<Hash, BTreeMap<ServerId, Verified<Vote>>>,
    precommits: BTreeMap<Hash, BTreeMap<ServerId, Verified<Vote>>>,
    /// Prevote certificates held on this slot's headers.
    pub certificates: BTreeMap<Hash, Verified<Certificate>>,
    /// Two headers of this slot by its alpha, kept and published once.
    pub evidence: Option<Verified<Evidence>>,
    /// This server sent its lock because it refused a round of this slot.
    pub lock_sent: bool,
    /// This server relayed the commit certificate it assembled.
    pub commit_relayed: bool,
}

impl SlotVotes {
    /// Notes a header of this slot.
    pub fn see(&mut self, digest: Hash) -> Seen {
        if self.headers.contains(&digest) {
            Seen::Known
        } else if self.headers.len() >= MAX_HEADERS {
            Seen::Beyond
        } else {
            self.headers.push(digest);
            if self.headers.len() == 1 {
                Seen::First
            } else {
                Seen::Second
            }
        }
    }

    /// Whether two headers of this slot are known.
    pub fn equivocated(&self) -> bool {
        self.headers.len() > 1
    }

    /// Adds a vote on a tracked header; returns how many servers have cast
    /// that vote, or `None` if the header is not tracked.
    pub fn add(&mut self, vote: Verified<Vote>) -> Option<usize> {
        if !self.headers.contains(&vote.digest) {
            return None;
        }
        let tally = match vote.kind {
            Kind::Prevote => &mut self.prevotes,
            Kind::Precommit => &mut self.precommits,
            Kind::Header => return None,
        };
        let voters = tally.entry(vote.digest).or_default();
        voters.entry(vote.signer).or_insert(vote);
        Some(voters.len())
    }

    /// The votes of `kind` on `digest`.
    pub fn votes(&self, kind: Kind, digest: &Hash) -> impl Iterator<Item = &Verified<Vote>> {
        let tally = match kind {
            Kind::Prevote => Some(&self.prevotes),
            Kind::Precommit => Some(&self.precommits),
            Kind::Header => None,
        };
        tally
            .and_then(|t| t.get(digest))
            .into_iter()
            .flat_map(|voters| voters.values())
    }
}

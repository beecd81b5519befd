//! The dishonest server's votes that no rule allows: it prevotes every
//! header it sees for a slot, whatever its lock and its earlier votes say,
//! and precommits every header it holds a prevote certificate for, at once
//! and whatever else it saw. With its equivocation it votes for both of
//! its own headers, each to the servers that got that one.
//!
//! Every vote is signed with its own key, so each one is a real vote the
//! honest servers must weigh; the certificates it puts in its precommits
//! are assembled from real prevotes it received. What it cannot do is sign
//! for anyone else.

use std::collections::{BTreeMap, BTreeSet};

use rota_listener::{Consensus, PeerInput};
use rota_peer::keys::Keypair;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::{
    Certificate, Kind, Precommit, Prevote, SignedHeader, Verified, Vote,
};
use rota_peer::wire::{PeerMessage, ServerList};
use rota_peer::{Hash, ServerId, Slot};

/// The most slots voted in at once; older ones are forgotten.
const SLOTS: usize = 8;

/// Who a header of the liar's goes to: every server, or only some (the
/// two halves of an equivocation).
pub type Audience = Option<BTreeSet<ServerId>>;

/// One slot voted in with no regard for the rules.
#[derive(Default)]
struct Loose {
    /// Every header seen for the slot, with the servers its votes go to.
    headers: BTreeMap<Hash, (SignedHeader, Audience)>,
    /// Prevotes received (and its own), by header.
    prevotes: BTreeMap<Hash, BTreeMap<ServerId, Verified<Vote>>>,
    prevoted: BTreeSet<Hash>,
    precommitted: BTreeSet<Hash>,
}

/// The lock-ignoring voter. See the module documentation.
pub struct Voter {
    id: ServerId,
    key: Keypair,
    chain: String,
    servers: ServerList,
    slots: BTreeMap<Slot, Loose>,
}

/// A vote for some servers.
pub struct Cast {
    pub to: Audience,
    pub message: PeerMessage<VerifiedTx>,
}

impl Voter {
    pub fn new(id: ServerId, key: Keypair, chain: &str, servers: ServerList) -> Voter {
        Voter {
            id,
            key,
            chain: chain.into(),
            servers,
            slots: BTreeMap::new(),
        }
    }

    /// Votes in `slot` from now on.
    pub fn vote_in(&mut self, slot: Slot) {
        self.slots.entry(slot).or_default();
        while self.slots.len() > SLOTS {
            self.slots.pop_first();
        }
    }

    /// A header of a slot it votes in, its votes on it going to `to`.
    pub fn header(&mut self, header: &SignedHeader, to: Audience) {
        if let Some(loose) = self.slots.get_mut(&header.slot()) {
            loose
                .headers
                .entry(header.digest())
                .or_insert_with(|| (header.clone(), to));
        }
    }

    /// Its own prevote on `digest` of `slot` is out already (its machine
    /// sent it): counted, and not cast again.
    pub fn prevoted(&mut self, slot: Slot, digest: Hash) {
        if self.slots.contains_key(&slot) {
            let vote = self.sign(Kind::Prevote, slot, digest);
            self.count(vote);
            if let Some(loose) = self.slots.get_mut(&slot) {
                loose.prevoted.insert(digest);
            }
        }
    }

    /// A message it received, its signatures checked: headers and prevotes
    /// are noted.
    pub fn hear(&mut self, input: &PeerInput) {
        let PeerInput::Consensus(message) = input else {
            return;
        };
        match message.as_ref() {
            Consensus::Round { header, .. } => self.header(header, None),
            Consensus::Prevote(prevote) => {
                let (vote, header) = prevote.parts();
                self.header(&header, None);
                self.count(vote);
            }
            Consensus::Precommit(precommit) => self.header(&precommit.header, None),
            Consensus::Certified(certified) => self.header(&certified.header, None),
            Consensus::Evidence(_) | Consensus::Want { .. } => {}
        }
    }

    fn count(&mut self, vote: Verified<Vote>) {
        if let Some(loose) = self.slots.get_mut(&vote.slot) {
            loose
                .prevotes
                .entry(vote.digest)
                .or_default()
                .insert(vote.signer, vote);
        }
    }

    /// Every vote it has not cast yet: a prevote on each header seen, a
    /// precommit on each one it holds q prevotes for.
    pub fn cast(&mut self) -> Vec<Cast> {
        let majority = self.servers.majority();
        let mut casts = Vec::new();
        let slots: Vec<Slot> = self.slots.keys().copied().collect();
        for slot in slots {
            let digests: Vec<Hash> = self.slots[&slot].headers.keys().copied().collect();
            for digest in digests {
                let (header, to) = self.slots[&slot].headers[&digest].clone();
                if !self.slots[&slot].prevoted.contains(&digest) {
                    self.prevoted(slot, digest);
                    let vote = self.sign(Kind::Prevote, slot, digest);
                    casts.push(Cast {
                        to: to.clone(),
                        message: PeerMessage::Prevote(Prevote {
                            vote: vote.into_inner(),
                            header: header.clone(),
                        }),
                    });
                }
                let loose = &self.slots[&slot];
                let certificate = loose
                    .prevotes
                    .get(&digest)
                    .and_then(|votes| Verified::<Certificate>::assemble(votes.values(), majority));
                let Some(certificate) = certificate else {
                    continue;
                };
                if loose.precommitted.contains(&digest) {
                    continue;
                }
                let vote = self.sign(Kind::Precommit, slot, digest);
                casts.push(Cast {
                    to,
                    message: PeerMessage::Precommit(Precommit {
                        vote: vote.into_inner(),
                        header,
                        certificate: certificate.into_inner(),
                    }),
                });
                if let Some(loose) = self.slots.get_mut(&slot) {
                    loose.precommitted.insert(digest);
                }
            }
        }
        casts
    }

    fn sign(&self, kind: Kind, slot: Slot, digest: Hash) -> Verified<Vote> {
        Verified::<Vote>::sign_vote(&self.key, &self.chain, self.id, kind, slot, digest)
    }
}

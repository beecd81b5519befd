//! The rounds this server knows above its committed state, and their
//! header chains.
//!
//! A round is known by its signed header, learned from a ROUND, a vote, a
//! certificate or a fetch; its payments come only with a ROUND (or a
//! fetch). Each header names its base, so the rounds form a tree rooted at
//! the committed state; a round's header chain is the path from it down to
//! that root ([`Rounds::walk`]). Every link below the top one is a
//! certified round, because a header's base always carries a certificate.
//! Each link is checked against the round below it: the base's balance
//! hash is that round's result, and the base's chain of blocks and sealed
//! height are the ones that round leaves (`Header::after`,
//! `Header::sealed_after`), so a header cannot misplace its block in the
//! chain, nor a seal.

use std::collections::BTreeMap;

use rota_peer::block::Shape;
use rota_peer::wire::consensus::{Base, SignedHeader, Verified};
use rota_peer::{Hash, Slot};

/// A round known here.
#[derive(Clone, Debug)]
pub(super) struct Round<P> {
    pub header: Verified<SignedHeader>,
    pub payments: Option<P>,
    /// The ledger keeps the state after it.
    pub applied: bool,
    /// Its payments are in this server's records.
    pub durable: bool,
    /// Applied on its base, its payments do not give its header's result.
    pub invalid: bool,
}

/// Where a header chain leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// Down to the committed state: the digests above it, oldest first,
    /// the walk's start last.
    Chain(Vec<Hash>),
    /// A header of the chain is not known here.
    Missing { slot: Slot, digest: Hash },
    /// The chain does not contain the committed round, or a header names a
    /// base whose balance hash or chain of blocks is not the one that round
    /// leaves.
    Off(String),
}

/// The known rounds above the committed state, by header digest.
#[derive(Debug)]
pub(super) struct Rounds<P> {
    by_digest: BTreeMap<Hash, Round<P>>,
}

impl<P> Default for Rounds<P> {
    fn default() -> Rounds<P> {
        Rounds {
            by_digest: BTreeMap::new(),
        }
    }
}

impl<P> Rounds<P> {
    pub fn get(&self, digest: &Hash) -> Option<&Round<P>> {
        self.by_digest.get(digest)
    }

    pub fn get_mut(&mut self, digest: &Hash) -> Option<&mut Round<P>> {
        self.by_digest.get_mut(digest)
    }

    /// Learns a header; returns whether it was new.
    pub fn learn(&mut self, header: &Verified<SignedHeader>) -> bool {
        let digest = header.digest();
        if self.by_digest.contains_key(&digest) {
            return false;
        }
        self.by_digest.insert(
            digest,
            Round {
                header: header.clone(),
                payments: None,
                applied: false,
                durable: false,
                invalid: false,
            },
        );
        true
    }

    /// The header chain of `top` down to the committed state `committed`,
    /// on a chain of this `shape`.
    pub fn walk(&self, top: &SignedHeader, committed: &Base, shape: Shape) -> Walk {
        let mut chain = vec![top.digest()];
        let mut header = top.header;
        loop {
            let base = header.base;
            if base.slot <= committed.slot || base.is_anchor() {
                if base.digest != committed.digest || base.slot != committed.slot {
                    return Walk::Off(format!(
                        "the chain of slot {} leaves the committed round of slot {} at slot {}",
                        top.slot(),
                        committed.slot,
                        base.slot
                    ));
                }
                if base.balance != committed.balance {
                    return Walk::Off(bad_balance(header.slot, &base));
                }
                if base.chain != committed.chain || base.sealed != committed.sealed {
                    return Walk::Off(bad_chain(header.slot, &base));
                }
                chain.reverse();
                return Walk::Chain(chain);
            }
            let Some(parent) = self.by_digest.get(&base.digest) else {
                return Walk::Missing {
                    slot: base.slot,
                    digest: base.digest,
                };
            };
            if parent.header.header.result != base.balance {
                return Walk::Off(bad_balance(header.slot, &base));
            }
            let parent_header = &parent.header.header;
            if parent_header.after(shape) != base.chain
                || parent_header.sealed_after() != base.sealed
            {
                return Walk::Off(bad_chain(header.slot, &base));
            }
            chain.push(base.digest);
            header = parent.header.header;
        }
    }

    /// The digests of `top` and of its known ancestors above `above`, top
    /// first: as much of its chain as this server holds.
    pub fn ancestry(&self, top: &SignedHeader, above: Slot) -> Vec<Hash> {
        let mut digests = vec![top.digest()];
        let mut base = top.header.base;
        while base.slot > above
            && let Some(parent) = self.by_digest.get(&base.digest)
        {
            digests.push(base.digest);
            base = parent.header.header.base;
        }
        digests
    }

    /// Drops every round of a slot up to `slot`.
    pub fn prune_through(&mut self, slot: Slot) {
        self.by_digest.retain(|_, r| r.header.slot() > slot);
    }

    /// Drops the payments of rounds below `slot` that `keep` does not name,
    /// to bound memory through a long stall.
    pub fn forget_payments_below(&mut self, slot: Slot, keep: &[Hash]) {
        for (digest, round) in self.by_digest.iter_mut() {
            if round.header.slot() < slot && !keep.contains(digest) {
                round.payments = None;
                round.applied = false;
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Round<P>)> {
        self.by_digest.iter()
    }

    /// Gives every round whose header names the root of no payments those
    /// payments: it has none to fetch. (A server that restarted keeps no
    /// committed round to send in answer to a `want`, so an empty round
    /// that a server behind lacks would otherwise stall it.)
    pub fn fill_empty(&mut self, empty: Hash, none: &P)
    where
        P: Clone,
    {
        for round in self.by_digest.values_mut() {
            if round.payments.is_none() && round.header.header.payments == empty {
                round.payments = Some(none.clone());
            }
        }
    }
}

fn bad_balance(slot: Slot, base: &Base) -> String {
    format!(
        "the header of slot {slot} names a base balance {} that is not the result of its base \
         (slot {})",
        base.balance.short(),
        base.slot
    )
}

fn bad_chain(slot: Slot, base: &Base) -> String {
    format!(
        "the header of slot {slot} places its block after height {} (block {}, sealed height \
         {}), which is not where its base (slot {}) leaves the chain",
        base.chain.height,
        base.chain.block.short(),
        base.sealed,
        base.slot
    )
}

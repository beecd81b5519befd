//! The balance states the rounds leave: the ledger under the consensus
//! machine ([`Ledger`]).
//!
//! The machine decides which rounds to prevote and which commit; applying a
//! round's payments is asked of [`States`]. A round applies on its base (the
//! committed state, or a round kept earlier, named by its header digest),
//! and is valid only if every payment is valid there: stamped within the
//! window of the round's slot, not repeated within the round, and payable
//! (the alpha proposes only those; see `consensus::ledger`). Windows of
//! different slots never overlap (the conf requires `blackout_ms > 2 x
//! tolerance_ms`), so a payment can be valid in one slot only, and a chain
//! of rounds can never carry it twice.
//!
//! Each kept state is a clone of its base's [`Balances`], which shares every
//! bucket the round's payments did not touch (see `rota_peer::balances`):
//! a round costs its payments and the buckets they change, not a copy of
//! the database, and its balance hash rehashes only those buckets. Rounds
//! above the committed one are few (the lock's chain and the rounds of the
//! last slots), and are dropped when a commit passes them or when more than
//! [`MAX_KEPT`] wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::block::BlockHeader;
use rota_peer::block::merkle_root;
use rota_peer::schedule::Schedule;
use rota_peer::seal::Seal;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::Base;
use rota_peer::{BlockNumber, Hash, Slot};

use super::Payments;
use super::sealing::Sealing;
use crate::ledger::consensus::Ledger;

/// The most round states kept above the committed one; the oldest go first.
pub const MAX_KEPT: usize = 8;

/// The state after one round.
#[derive(Clone, Debug)]
pub struct Kept {
    pub slot: Slot,
    pub hash: Hash,
    pub balances: Arc<Balances>,
    /// The round's payments that were valid on its base, in order.
    pub valid: Vec<VerifiedTx>,
    /// How many of the round's payments were not.
    pub skipped: usize,
}

/// The committed state and the states of rounds above it.
#[derive(Debug)]
pub struct States {
    schedule: Schedule,
    /// The header digest of the committed round (zeros for the anchor).
    committed_digest: Hash,
    committed: Arc<Balances>,
    kept: HashMap<Hash, Kept>,
    /// The committed blocks waiting for their seals, and seals found.
    pub sealing: Sealing,
}

/// Applies a round's payments in order on `balances`, keeping those valid
/// there: stamped within the slot's window, not repeated, and payable.
pub fn apply_round(
    balances: &mut Balances,
    schedule: &Schedule,
    slot: Slot,
    payments: &[VerifiedTx],
) -> Vec<VerifiedTx> {
    let mut seen = HashSet::with_capacity(payments.len());
    payments
        .iter()
        .filter(|tx| {
            schedule.in_round(tx.timestamp(), slot)
                && seen.insert(tx.id())
                && balances.pay(&tx.payer(), &tx.payee(), tx.amount()).is_ok()
        })
        .copied()
        .collect()
}

impl States {
    pub fn new(schedule: Schedule, committed_digest: Hash, committed: Arc<Balances>) -> States {
        States {
            schedule,
            committed_digest,
            committed,
            kept: HashMap::new(),
            sealing: Sealing::default(),
        }
    }

    /// The state after the round `digest`, if kept here.
    pub fn get(&self, digest: &Hash) -> Option<&Kept> {
        self.kept.get(digest)
    }

    /// The balances after `digest`: a kept round's, or the committed ones.
    pub fn balances(&self, digest: &Hash) -> Option<&Arc<Balances>> {
        if *digest == self.committed_digest {
            Some(&self.committed)
        } else {
            self.kept.get(digest).map(|k| &k.balances)
        }
    }

    /// A commit (or an installed database): `digest` of `slot` is the
    /// committed state now; every state at or below its slot goes.
    pub fn set_committed(&mut self, digest: Hash, slot: Slot, balances: Arc<Balances>) {
        self.committed_digest = digest;
        self.committed = balances;
        self.kept.retain(|_, k| k.slot > slot);
    }

    pub fn kept_count(&self) -> usize {
        self.kept.len()
    }
}

impl Ledger for States {
    type Payments = Payments;
    type State = Kept;

    fn root(&self, payments: &Payments) -> Hash {
        let ids: Vec<_> = payments.iter().map(|tx| tx.id()).collect();
        merkle_root(&ids)
    }

    fn none(&self) -> Payments {
        Payments::from(Vec::new())
    }

    fn apply(&mut self, base: &Base, slot: Slot, payments: &Payments) -> Option<(Hash, Kept)> {
        let mut balances = Balances::clone(self.balances(&base.digest)?);
        let valid = apply_round(&mut balances, &self.schedule, slot, payments);
        let hash = balances.hash();
        let kept = Kept {
            slot,
            hash,
            balances: Arc::new(balances),
            skipped: payments.len() - valid.len(),
            valid,
        };
        Some((hash, kept))
    }

    fn valid_part(&self, state: &Kept) -> Option<Payments> {
        (state.skipped > 0).then(|| Payments::from(state.valid.clone()))
    }

    fn keep(&mut self, digest: Hash, state: Kept) {
        self.kept.insert(digest, state);
        while self.kept.len() > MAX_KEPT {
            let oldest = self
                .kept
                .iter()
                .min_by_key(|(digest, k)| (k.slot, **digest))
                .map(|(digest, _)| *digest)
                .expect("more than MAX_KEPT states");
            self.kept.remove(&oldest);
        }
    }

    fn block(&self, number: BlockNumber) -> Option<BlockHeader> {
        self.sealing.block(number).copied()
    }

    fn seal(&self, block: &BlockHeader) -> Option<Seal> {
        self.sealing.found(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_peer::PublicKey;
    use rota_peer::keys::Keypair;
    use rota_peer::transaction::{Transaction, Verifier};

    const SLOT: u64 = 1_000;

    fn schedule() -> Schedule {
        Schedule {
            slot_ms: SLOT,
            blackout_ms: 300,
            tolerance_ms: 100,
            servers: 3,
            difficulty: 0,
        }
    }

    fn states() -> (States, Hash) {
        let payer = Keypair::from_seed(&[1; 32]);
        let mut genesis = Balances::from_accounts(&[(payer.public(), 100)]).unwrap();
        let hash = genesis.hash();
        (
            States::new(schedule(), Hash::default(), Arc::new(genesis)),
            hash,
        )
    }

    fn pay(amount: u32, slot: Slot) -> VerifiedTx {
        let payer = Keypair::from_seed(&[1; 32]);
        let tx = Transaction::sign("test", &payer, PublicKey([9; 32]), amount, slot * SLOT + 5);
        Verifier::new("test").verify(tx).unwrap()
    }

    fn base(digest: Hash, slot: Slot, balance: Hash) -> Base {
        Base {
            digest,
            slot,
            balance,
            chain: Default::default(),
            sealed: 0,
        }
    }

    #[test]
    fn a_round_applies_on_its_base_and_on_nothing_unknown() {
        let (mut states, genesis) = states();
        let payments: Payments = vec![pay(30, 5), pay(80, 5)].into();
        let (hash, kept) = states
            .apply(&base(Hash::default(), 0, genesis), 5, &payments)
            .unwrap();
        // The second payment no longer pays after the first: skipped.
        assert_eq!(kept.valid.len(), 1);
        assert_ne!(hash, genesis);
        states.keep(Hash([1; 32]), kept);
        let next: Payments = vec![pay(60, 6)].into();
        let (_, on_it) = states
            .apply(&base(Hash([1; 32]), 5, hash), 6, &next)
            .unwrap();
        assert_eq!(on_it.valid.len(), 1, "70 left after the first round");
        assert!(
            states
                .apply(&base(Hash([2; 32]), 5, hash), 6, &next)
                .is_none()
        );
    }

    #[test]
    fn kept_states_are_bounded_and_a_commit_drops_those_it_passes() {
        let (mut states, genesis) = states();
        let empty: Payments = Vec::new().into();
        for slot in 1..=(MAX_KEPT as u64 + 3) {
            let (_, kept) = states
                .apply(&base(Hash::default(), 0, genesis), slot, &empty)
                .unwrap();
            states.keep(Hash([slot as u8; 32]), kept);
        }
        assert_eq!(states.kept_count(), MAX_KEPT);
        assert!(
            states.get(&Hash([1; 32])).is_none(),
            "the oldest went first"
        );
        let newest = MAX_KEPT as u64 + 3;
        let committed = states.balances(&Hash([5; 32])).unwrap().clone();
        states.set_committed(Hash([5; 32]), 5, committed);
        assert_eq!(states.kept_count(), (newest - 5) as usize);
        assert!(
            states.balances(&Hash([5; 32])).is_some(),
            "the committed state"
        );
    }
}

//! What the consensus machine asks of the ledger: the one callback that
//! applies payments.
//!
//! The machine decides which rounds to vote for and which commit; it never
//! looks inside a payment. Whether a round's payments, applied on its base,
//! give the balance hash its header claims is the ledger's answer, through
//! [`Ledger::apply`]. That answer must depend only on the base's state and
//! the slot (never on a clock), so every honest server gives the same one.
//! A round is valid only if every one of its payments applies on its base:
//! stamped within the slot's window, not already in the round's header
//! chain, and affordable ([`Ledger::valid_part`] names those that do when
//! some do not). The alpha proposes only those, so a block holds exactly
//! the payments its certified header names, and a round carrying one that
//! does not apply is refused like one whose result is wrong.
//!
//! The ledger keeps the state after each round the machine tells it to
//! keep ([`Ledger::keep`]), named by the round's header digest, beside the
//! committed state (named by the committed base's digest, all zeros for the
//! anchor). When the machine reports a commit, the ledger makes that state
//! its committed one and may drop every state not built on it.

use std::fmt;

use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;
use rota_peer::wire::consensus::Base;
use rota_peer::{BlockNumber, Hash, Slot};

/// The application under the consensus machine: the ledger core.
pub trait Ledger {
    /// A round's payments, in the order the beta sent them.
    type Payments: Clone + fmt::Debug;
    /// The state after a round, before it is kept under a name.
    type State;

    /// The merkle root of the payments' ids, as a header names them.
    fn root(&self, payments: &Self::Payments) -> Hash;

    /// No payments: a round whose header names their root has none to
    /// fetch.
    fn none(&self) -> Self::Payments;

    /// Applies `payments` as the round of `slot` on the state after `base`
    /// (a round kept earlier, or the committed state), and returns the
    /// resulting balance hash with the state. `None` when that state is not
    /// held here.
    fn apply(
        &mut self,
        base: &Base,
        slot: Slot,
        payments: &Self::Payments,
    ) -> Option<(Hash, Self::State)>;

    /// The payments that applied when `state` was made, in order, when
    /// some of the round's did not; `None` when every one applied.
    fn valid_part(&self, state: &Self::State) -> Option<Self::Payments>;

    /// Keeps `state` as the state after the round whose header is `digest`.
    fn keep(&mut self, digest: Hash, state: Self::State);

    /// The header of committed block `number`, if it is one this server
    /// holds and has not seen sealed (the blocks a round's seal may seal).
    fn block(&self, number: BlockNumber) -> Option<BlockHeader>;

    /// A seal found for `block` that proves it, if this server knows one:
    /// the alpha puts it in its round.
    fn seal(&self, block: &BlockHeader) -> Option<Seal>;
}

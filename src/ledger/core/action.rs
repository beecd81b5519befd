//! What the core hands back to the ledger thread: the [`Action`]s of a step,
//! and the committed state they leave behind.
//!
//! The core decides; the ledger thread carries out. Everything that leaves
//! the core (a message, a commit to persist, an event, a stop) is one of
//! these values, so a test can read a step's effects without a socket or a
//! disk.

use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::PeerMessage;
use rota_peer::{Hash, ServerId, Slot};

use crate::events::Event;

/// The last committed state.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The slot of the last round committed here.
    pub slot: Slot,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Only(Vec<ServerId>),
}

/// A round to persist.
#[derive(Clone, Debug)]
pub struct Commit {
    pub slot: Slot,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
    /// The payments applied in the round, in order.
    pub transactions: Vec<VerifiedTx>,
    /// Whether to append a block (payments and in sync).
    pub block: bool,
    /// Whether this state was installed from another server.
    pub installed: bool,
}

/// What the ledger thread must do after a step.
#[derive(Clone, Debug)]
pub enum Action {
    /// Sign and send a peer message for `slot`.
    Send {
        to: Target,
        slot: Slot,
        message: PeerMessage<VerifiedTx>,
    },
    /// Persist a committed round.
    Commit(Commit),
    /// Publish an event.
    Publish(Event),
    /// This server no longer holds the consensus state; the connector must
    /// find out what the others hold.
    OutOfSync,
    /// Consensus is lost: save state and stop.
    Stop(String),
}

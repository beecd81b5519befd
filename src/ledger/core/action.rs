//! What the core hands back to the ledger thread: the [`Action`]s of a step,
//! and the committed state they leave behind.
//!
//! The core decides; the ledger thread carries out. Everything that leaves
//! the core (a message, something to persist, an event, a stop) is one of
//! these values, so a test can read a step's effects without a socket or a
//! disk. Their order is part of the contract: an [`Action::Persist`] is
//! durable before anything after it leaves the node.

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

/// What must be on disk before the actions that follow it.
#[derive(Clone, Debug)]
pub enum Persist {
    /// A committed round: its block, the database, the archive.
    Commit(Commit),
}

/// What the ledger thread must do after a step, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Sign and send a peer message for `slot`.
    Send {
        to: Target,
        slot: Slot,
        message: PeerMessage<VerifiedTx>,
    },
    /// Make something durable. The edge completes it before it carries out
    /// any action that follows (a message above all), and carries out none
    /// of them if it fails: what a message says has been kept, has been.
    Persist(Persist),
    /// Publish an event.
    Publish(Event),
    /// This server no longer holds the consensus state; the connector must
    /// find out what the others hold.
    OutOfSync,
    /// Consensus is lost: save state and stop.
    Stop(String),
}

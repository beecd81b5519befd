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
use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::PeerMessage;
use rota_peer::wire::consensus::Certified;
use rota_peer::{BlockNumber, Hash, ServerId, Slot};

use super::Payments;
use crate::events::Event;
use crate::ledger::consensus::Record;

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

/// One round of a commit, as its block records it.
#[derive(Clone, Debug)]
pub struct CommittedRound {
    pub slot: Slot,
    /// The balance hash after the round.
    pub hash: Hash,
    /// The header of the block the round makes, if it has payments: its
    /// certified header fixes it, number and previous id included
    /// (`Header::block`).
    pub block: Option<BlockHeader>,
    /// The seal the round carries, with the number of the block it seals:
    /// the one that counts for that block (`consensus::seal`).
    pub seal: Option<(BlockNumber, Seal)>,
    /// The round's payments, in order (every one applied on its base).
    pub transactions: Vec<VerifiedTx>,
    /// The encoded proof that the round is committed (its block carries
    /// it): its header, the headers above it, the commit certificate.
    pub proof: Vec<u8>,
}

/// A commit to persist: the state it leaves, and the rounds that led there.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The slot of the last round committed (the certified one).
    pub slot: Slot,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
    /// The rounds committed, oldest first; empty for an installed database.
    pub rounds: Vec<CommittedRound>,
    /// Whether this state was installed from another server.
    pub installed: bool,
    /// The commit certificate that vouches for the state.
    pub certified: Option<Certified>,
    /// The consensus journal as it stands after the commit, which replaces
    /// the one on disk in the same write.
    pub journal: Vec<Record<Payments>>,
}

/// What must be on disk before the actions that follow it.
#[derive(Clone, Debug)]
pub enum Persist {
    /// A committed round: its block, the database, the archive.
    Commit(Commit),
    /// What the consensus machine must remember before its next message
    /// leaves: a vote, a header, a lock, a round's payments, evidence.
    Consensus(Record<Payments>),
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

//! Events a node publishes on its PUB socket as `[chain][topic][JSON]`, for
//! monitoring scripts, `rota watch` and `rota testnet up`.
//!
//! Topics: `tx` (a payment accepted, forwarded, held, or lost), `round`
//! (a round's result), `block` (a block appended), `peer` (a server alive or
//! failed), `connector` (the connector's state), `role` (this server's role),
//! `stop` (the node is stopping, and why).

use rota_peer::{BlockNumber, Hash, ServerId, Slot, TxId};
use serde::Serialize;

/// One published event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Tx {
        id: TxId,
        /// accepted, forwarded, held or lost
        state: &'static str,
        /// The alpha that has it, will have it, or had its round.
        alpha: ServerId,
    },
    Round {
        slot: Slot,
        /// consensus, no-majority, or out-of-sync (this server disagreed)
        outcome: &'static str,
        hash: Option<Hash>,
        agreeing: u32,
        voters: u32,
        transactions: usize,
        beta: ServerId,
    },
    Block {
        number: BlockNumber,
        hash: Hash,
        slot: Slot,
        transactions: usize,
    },
    Peer {
        peer: ServerId,
        /// alive or failed
        state: &'static str,
    },
    Connector {
        state: &'static str,
    },
    Role {
        role: &'static str,
        slot: Slot,
    },
    Stop {
        reason: String,
    },
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Event::Tx { .. } => "tx",
            Event::Round { .. } => "round",
            Event::Block { .. } => "block",
            Event::Peer { .. } => "peer",
            Event::Connector { .. } => "connector",
            Event::Role { .. } => "role",
            Event::Stop { .. } => "stop",
        }
    }

    /// The JSON body, with the publishing server and the time added.
    pub fn to_json(&self, server: ServerId, time_ms: u64) -> String {
        let mut value = serde_json::to_value(self).expect("events serialize");
        if let Some(map) = value.as_object_mut() {
            map.insert("server".into(), server.0.into());
            map.insert("time_ms".into(), time_ms.into());
        }
        value.to_string()
    }
}

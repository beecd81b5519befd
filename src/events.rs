//! Events a node publishes on its PUB socket as `[chain][topic][JSON]`, for
//! monitoring scripts, `rota watch` and `rota testnet up`.
//!
//! Topics: `tx` (a payment accepted, forwarded, held, or lost), `round`
//! (a round's result), `block` (a block appended), `peer` (a server alive or
//! failed), `connector` (the connector's state), `role` (this server's role),
//! `stop` (the node is stopping, and why).
//!
//! This module is the one list of what each event carries: [`Event`] names
//! its fields, and every word in them (a payment's state, a round's outcome,
//! a peer's state, the connector's state, the [`Role`]) is a closed enum
//! that serializes to the word docs/PROTOCOL.md §12 lists. [`Published`] is
//! the JSON body as it travels, with the publishing server and its clock; the
//! node writes it and `rota watch` and `rota testnet up` read it back.

use std::fmt;

use rota_connector::machine::State;
use rota_peer::wire::Disposition;
use rota_peer::{BlockNumber, Hash, Millis, ServerId, Slot, TxId};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::ledger::core::Role;

/// What became of a payment this server took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxState {
    /// In the alpha's open round.
    Accepted,
    /// Passed on to the alpha.
    Forwarded,
    /// Kept through the blackout for the next alpha.
    Held,
    /// Its round committed without it.
    Lost,
}

impl TxState {
    pub fn name(self) -> &'static str {
        match self {
            TxState::Accepted => "accepted",
            TxState::Forwarded => "forwarded",
            TxState::Held => "held",
            TxState::Lost => "lost",
        }
    }
}

impl From<Disposition> for TxState {
    fn from(disposition: Disposition) -> TxState {
        match disposition {
            Disposition::Accepted(_) => TxState::Accepted,
            Disposition::Forwarded(_) => TxState::Forwarded,
            Disposition::Held(_) => TxState::Held,
        }
    }
}

/// How a round was decided, as this server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A commit certificate committed the round.
    Committed,
    /// A commit of a later slot left the round out of its chain.
    Lost,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Lost => "lost",
        }
    }
}

/// The connector's word on another server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    Alive,
    Failed,
}

impl PeerState {
    pub fn of(alive: bool) -> PeerState {
        if alive {
            PeerState::Alive
        } else {
            PeerState::Failed
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Failed => "failed",
        }
    }
}

/// The connector's state (PROTOCOL.md §11.5), as events and `I` spell it.
/// The connector's own [`State`] stays free to carry data; this is its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorState {
    Connecting,
    HashCompare,
    FetchSnapshot,
    Sampling,
}

impl ConnectorState {
    pub fn name(self) -> &'static str {
        match self {
            ConnectorState::Connecting => "connecting",
            ConnectorState::HashCompare => "hash-compare",
            ConnectorState::FetchSnapshot => "fetch-snapshot",
            ConnectorState::Sampling => "sampling",
        }
    }
}

impl From<State> for ConnectorState {
    fn from(state: State) -> ConnectorState {
        match state {
            State::Connecting => ConnectorState::Connecting,
            State::HashCompare => ConnectorState::HashCompare,
            State::FetchSnapshot => ConnectorState::FetchSnapshot,
            State::Sampling => ConnectorState::Sampling,
        }
    }
}

/// Prints each word as it is published, honouring width and alignment so
/// that `rota testnet up` can line words up in columns.
macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.name())
            }
        }
    )*};
}

display_by_name!(TxState, Outcome, PeerState, ConnectorState);

/// One published event. Its topic says which variant it is; the JSON body
/// holds the variant's fields alone, with no tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Event {
    Tx {
        id: TxId,
        state: TxState,
        /// The alpha that has it, will have it, or had its round.
        #[serde(deserialize_with = "server_id")]
        alpha: ServerId,
    },
    Round {
        slot: Slot,
        outcome: Outcome,
        /// The balance hash after the round; none when it was lost.
        hash: Option<Hash>,
        /// The signatures on the commit certificate that decided it.
        agreeing: u32,
        /// The servers of the chain.
        voters: u32,
        /// Payments in the round as this server applied it; 0 if it did not.
        transactions: usize,
        #[serde(deserialize_with = "server_id")]
        beta: ServerId,
    },
    Block {
        number: BlockNumber,
        hash: Hash,
        slot: Slot,
        transactions: usize,
    },
    Peer {
        #[serde(deserialize_with = "server_id")]
        peer: ServerId,
        state: PeerState,
    },
    Connector {
        state: ConnectorState,
    },
    Role {
        role: Role,
        slot: Slot,
    },
    /// The alpha of `slot` signed two different headers for it; both are
    /// kept, and no server precommits in that slot.
    Evidence {
        slot: Slot,
        #[serde(deserialize_with = "server_id")]
        alpha: ServerId,
    },
    Stop {
        /// `shutdown`, `consensus lost: ...` or `failed: ...`.
        reason: String,
    },
    /// A seal of block `number` (id `block`) found by the search `leader`
    /// coordinates, which this server checked and keeps for its next round
    /// as alpha; a `seal` event follows once a committed round carries a
    /// seal of the block. (Declared before `Seal`, whose fields it holds:
    /// JSON is read as the first variant that fits.)
    Found {
        number: BlockNumber,
        block: Hash,
        nonce: u64,
        seal_time: Millis,
        #[serde(deserialize_with = "server_id")]
        leader: ServerId,
    },
    /// Block `number` (id `block`) is sealed: a committed round carried
    /// this seal, the one that counts.
    Seal {
        number: BlockNumber,
        block: Hash,
        nonce: u64,
        seal_time: Millis,
    },
    /// The server coordinating the search is now `leader`, as this server
    /// sees it.
    Leader {
        #[serde(deserialize_with = "server_id")]
        leader: ServerId,
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
            Event::Evidence { .. } => "evidence",
            Event::Stop { .. } => "stop",
            Event::Found { .. } => "found",
            Event::Seal { .. } => "seal",
            Event::Leader { .. } => "leader",
        }
    }
}

/// An event as it travels: its fields, with the publishing server and the
/// time by that server's clock added beside them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    #[serde(deserialize_with = "server_id")]
    pub server: ServerId,
    pub time_ms: Millis,
    #[serde(flatten)]
    pub event: Event,
}

impl Published {
    /// The JSON body. It goes through a `serde_json::Value`, whose objects
    /// keep their keys sorted: the bytes events have always had.
    pub fn to_json(&self) -> String {
        if let Event::Tx { id, state, alpha } = &self.event {
            // One per payment taken, on the ledger thread: written directly,
            // byte for byte as the general path writes it (a test holds the
            // two together).
            return format!(
                r#"{{"alpha":{},"id":"{id}","server":{},"state":"{}","time_ms":{}}}"#,
                alpha.0,
                self.server.0,
                state.name(),
                self.time_ms
            );
        }
        serde_json::to_value(self)
            .expect("events serialize")
            .to_string()
    }

    /// Reads a body published under `topic`. None when it is not JSON, not
    /// an event of this version, or an event of another topic.
    pub fn decode(topic: &str, body: &[u8]) -> Option<Published> {
        serde_json::from_slice::<Published>(body)
            .ok()
            .filter(|published| published.event.topic() == topic)
    }
}

/// A server identifier as JSON carries it: its number.
pub(crate) fn server_id<'de, D: Deserializer<'de>>(d: D) -> Result<ServerId, D::Error> {
    u32::deserialize(d).map(ServerId)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> Hash {
        Hash([byte; 32])
    }

    /// One event of each topic, as the node publishes them.
    fn every_event() -> Vec<Event> {
        vec![
            Event::Tx {
                id: hash(1),
                state: TxState::Forwarded,
                alpha: ServerId(1),
            },
            Event::Round {
                slot: 897657733,
                outcome: Outcome::Committed,
                hash: Some(hash(2)),
                agreeing: 3,
                voters: 3,
                transactions: 2,
                beta: ServerId(2),
            },
            Event::Round {
                slot: 897657734,
                outcome: Outcome::Lost,
                hash: None,
                agreeing: 1,
                voters: 2,
                transactions: 0,
                beta: ServerId(3),
            },
            Event::Block {
                number: 2,
                hash: hash(3),
                slot: 897657733,
                transactions: 2,
            },
            Event::Peer {
                peer: ServerId(3),
                state: PeerState::Failed,
            },
            Event::Connector {
                state: ConnectorState::FetchSnapshot,
            },
            Event::Role {
                role: Role::AlphaBeta,
                slot: 897657733,
            },
            Event::Evidence {
                slot: 897657733,
                alpha: ServerId(2),
            },
            Event::Stop {
                reason: "shutdown".into(),
            },
        ]
    }

    #[test]
    fn an_event_body_is_its_fields_with_the_server_and_time_in_sorted_order() {
        let published = Published {
            server: ServerId(2),
            time_ms: 1795315467584,
            event: every_event().swap_remove(1),
        };
        let h = hash(2);
        assert_eq!(
            published.to_json(),
            format!(
                "{{\"agreeing\":3,\"beta\":2,\"hash\":\"{h}\",\"outcome\":\"committed\",\
                 \"server\":2,\"slot\":897657733,\"time_ms\":1795315467584,\
                 \"transactions\":2,\"voters\":3}}"
            )
        );
    }

    #[test]
    fn a_tx_body_written_directly_is_the_general_paths_bytes() {
        for state in [
            TxState::Accepted,
            TxState::Forwarded,
            TxState::Held,
            TxState::Lost,
        ] {
            let published = Published {
                server: ServerId(3),
                time_ms: u64::MAX,
                event: Event::Tx {
                    id: hash(0xa7),
                    state,
                    alpha: ServerId(u32::MAX),
                },
            };
            let general = serde_json::to_value(&published).unwrap().to_string();
            assert_eq!(published.to_json(), general);
        }
    }

    #[test]
    fn every_event_reads_back_under_its_own_topic_only() {
        for event in every_event() {
            let published = Published {
                server: ServerId(1),
                time_ms: 5,
                event: event.clone(),
            };
            let body = published.to_json();
            let topic = event.topic();
            assert_eq!(
                Published::decode(topic, body.as_bytes()),
                Some(published),
                "{body}"
            );
            for other in ["tx", "round", "block", "peer", "connector", "role", "stop"] {
                if other != topic {
                    assert_eq!(Published::decode(other, body.as_bytes()), None, "{body}");
                }
            }
        }
    }

    #[test]
    fn the_words_are_those_of_the_protocol() {
        fn word<T: Serialize>(value: T) -> String {
            serde_json::to_value(value)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        }
        let tx = [
            TxState::Accepted,
            TxState::Forwarded,
            TxState::Held,
            TxState::Lost,
        ];
        for state in tx {
            assert_eq!(word(state), state.name());
            assert_eq!(state.to_string(), state.name());
        }
        let outcomes = [Outcome::Committed, Outcome::Lost];
        for outcome in outcomes {
            assert_eq!(word(outcome), outcome.name());
        }
        for peer in [PeerState::Alive, PeerState::Failed] {
            assert_eq!(word(peer), peer.name());
        }
        let states = [
            State::Connecting,
            State::HashCompare,
            State::FetchSnapshot,
            State::Sampling,
        ];
        for state in states {
            assert_eq!(word(ConnectorState::from(state)), state.name());
        }
        let roles = [Role::Alpha, Role::Beta, Role::AlphaBeta, Role::Follower];
        for role in roles {
            assert_eq!(word(role), role.name());
        }
        let words: Vec<String> = tx.into_iter().map(word).collect();
        assert_eq!(words, ["accepted", "forwarded", "held", "lost"]);
        let words: Vec<String> = outcomes.into_iter().map(word).collect();
        assert_eq!(words, ["committed", "lost"]);
        let words: Vec<String> = states
            .into_iter()
            .map(|s| word(ConnectorState::from(s)))
            .collect();
        assert_eq!(
            words,
            ["connecting", "hash-compare", "fetch-snapshot", "sampling"]
        );
        let words: Vec<String> = roles.into_iter().map(word).collect();
        assert_eq!(words, ["alpha", "beta", "alpha+beta", "follower"]);
        assert_eq!(format!("{:<11}|", Outcome::Committed), "committed  |");
    }
}

//! The `I` reply: a server's view of itself, as one JSON object.
//!
//! [`Info`] is the one list of its fields; docs/PROTOCOL.md §4.1 describes
//! each for clients. The ledger thread fills it from the core, the block tip
//! and the listener's counters; clients may read it back with serde.

use std::collections::BTreeMap;

use rota_peer::{BlockNumber, Hash, Millis, PublicKey, ServerId, Slot};
use serde::{Deserialize, Deserializer, Serialize};

use crate::events::{ConnectorState, PeerState, Role, server_id};

/// What `I` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The rota version, e.g. `0.1.0`.
    pub version: String,
    /// The protocol version: the layout of peer messages, round headers
    /// and blocks (docs/PROTOCOL.md §10.5). 0 from a node too old to say.
    #[serde(default)]
    pub protocol: u32,
    pub chain: String,
    pub public_key: PublicKey,
    /// This server's position in the conf's server list.
    #[serde(deserialize_with = "server_id")]
    pub identifier: ServerId,
    /// N, the number of servers in the list.
    pub servers: usize,
    /// The current slot by this server's clock.
    pub slot: Slot,
    /// The schedule's timings: with `slot` they let a client work out the
    /// whole schedule, for example to avoid the blackout.
    pub slot_ms: u64,
    pub blackout_ms: u64,
    pub tolerance_ms: u64,
    /// The alpha of the current slot.
    #[serde(deserialize_with = "server_id")]
    pub alpha: ServerId,
    /// False during the blackout at the end of the slot.
    pub window_open: bool,
    pub role: Role,
    /// The number of the last block; 0 before the first.
    pub height: BlockNumber,
    /// The hash of the last block; all zeros at height 0.
    pub block_hash: Hash,
    /// The balance hash of the committed database (the tree over its
    /// packed records, docs/PROTOCOL.md §8).
    pub balance_hash: Hash,
    /// The slot of the last round committed here.
    pub committed_slot: Slot,
    pub accounts: usize,
    /// The sum of all balances.
    pub supply: u64,
    /// Payments in this server's open round (an alpha's only).
    pub pending: usize,
    /// Payments held through a blackout for the next alpha.
    pub held: usize,
    pub connector: ConnectorState,
    /// Whether this server takes payments and builds blocks.
    pub in_sync: bool,
    /// The connector's view of the other servers; those not yet heard from
    /// are absent. JSON keys are the identifiers as strings.
    #[serde(deserialize_with = "peers")]
    pub peers: BTreeMap<ServerId, PeerState>,
    /// Connections on the client sockets.
    pub connections: Connections,
    /// Requests received on the client sockets since start.
    pub requests: u64,
    /// Requests refused at the door of the client sockets (malformed, bad
    /// signature, a server command, busy).
    pub refused: u64,
    /// The same counts on the peering socket, where the other servers send
    /// their messages. A node of an older version leaves it out.
    #[serde(default)]
    pub peering: PeeringCounts,
    /// Milliseconds since the ledger thread started.
    pub uptime_ms: Millis,
    /// The hash of the chain's parameters this server runs with (server
    /// list, schedule timings, difficulty, genesis, protocol version;
    /// docs/PROTOCOL.md §10.5): equal on every server of a chain.
    #[serde(default)]
    pub params_hash: Hash,
    /// The clocks as this server sees them.
    #[serde(default)]
    pub clock: ClockView,
    /// Sealing, as this server sees it.
    #[serde(default)]
    pub mining: MiningInfo,
}

/// Sealing: the chain's difficulty, how far blocks are sealed, and this
/// server's part in the search.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiningInfo {
    /// Leading zero bits a block's seal needs (0: blocks are not sealed).
    pub difficulty: u32,
    /// Blocks 1 to this one are sealed, by committed rounds.
    pub sealed_height: BlockNumber,
    /// The server coordinating the search (the lowest live one, unless a
    /// block waited too long), by this server's view; absent when the
    /// chain is not sealed.
    pub leader: Option<u32>,
    /// The servers this server counts as live (heard from within the
    /// missed heartbeats), itself included.
    pub live: Vec<u32>,
    /// The block whose seal is being searched for; absent when none is.
    pub searching: Option<BlockNumber>,
    /// This server's hashes a second, as last measured (0: not yet).
    pub hash_rate: u64,
    /// Nonces this server's search threads have tried since it started.
    pub hashes: u64,
    /// The live servers each other server's last hello named (its
    /// heartbeats carry its view), by its identifier.
    pub views: BTreeMap<u32, Vec<u32>>,
}

/// Each other server's clock offset, and this server's skew.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockView {
    /// Each other server's clock minus this one's, in ms, estimated from
    /// its last answer to a heartbeat; servers not heard from are absent.
    /// JSON keys are the identifiers as strings.
    #[serde(deserialize_with = "offsets")]
    pub offsets: BTreeMap<ServerId, i64>,
    /// This server's clock minus the median of the live servers', in ms.
    pub skew_ms: i64,
    /// Whether the skew is past the payment tolerance: this server then
    /// sits out its alpha slots.
    pub sitting_out: bool,
    /// The identifiers of the other servers whose last hello said they sit
    /// theirs out: no payment is forwarded or held for them.
    pub others_sitting_out: Vec<u32>,
}

/// The connections on the client sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Open now.
    pub open: u64,
    /// Accepted since start.
    pub accepted: u64,
}

/// Connections and requests on the peering socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringCounts {
    /// Connections open now: one from each other server that is up.
    pub open: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests received since start.
    pub requests: u64,
    /// Requests refused at the door (malformed, bad signature, a client
    /// command other than `D` and `B`, busy).
    pub refused: u64,
}

impl Info {
    /// The reply body. It goes through a `serde_json::Value`, whose objects
    /// keep their keys sorted: the bytes `I` has always sent.
    pub fn to_json(&self) -> String {
        serde_json::to_value(self)
            .expect("info serializes")
            .to_string()
    }

    /// Reads an `I` reply body; `None` when it is not one (a node of
    /// another version, say).
    pub fn from_json(text: &str) -> Option<Info> {
        serde_json::from_str(text).ok()
    }
}

fn offsets<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ServerId, i64>, D::Error> {
    let by_number = BTreeMap::<u32, i64>::deserialize(d)?;
    Ok(by_number
        .into_iter()
        .map(|(id, offset)| (ServerId(id), offset))
        .collect())
}

fn peers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ServerId, PeerState>, D::Error> {
    let by_number = BTreeMap::<u32, PeerState>::deserialize(d)?;
    Ok(by_number
        .into_iter()
        .map(|(id, state)| (ServerId(id), state))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Info {
        Info {
            version: "0.1.0".into(),
            protocol: 3,
            chain: "local".into(),
            public_key: PublicKey([0x98; 32]),
            identifier: ServerId(1),
            servers: 3,
            slot: 897659580,
            slot_ms: 2000,
            blackout_ms: 500,
            tolerance_ms: 200,
            alpha: ServerId(1),
            window_open: true,
            role: Role::Alpha,
            height: 0,
            block_hash: Hash::default(),
            balance_hash: Hash([0xdf; 32]),
            committed_slot: 897659579,
            accounts: 3,
            supply: 3000000,
            pending: 0,
            held: 0,
            connector: ConnectorState::Sampling,
            in_sync: true,
            peers: [
                (ServerId(2), PeerState::Alive),
                (ServerId(3), PeerState::Failed),
            ]
            .into(),
            connections: Connections {
                open: 3,
                accepted: 3,
            },
            requests: 21,
            refused: 0,
            peering: PeeringCounts {
                open: 2,
                accepted: 2,
                requests: 14,
                refused: 0,
            },
            uptime_ms: 4980,
            params_hash: Hash([0x5a; 32]),
            clock: ClockView {
                offsets: [(ServerId(2), 3), (ServerId(3), -12)].into(),
                skew_ms: 0,
                sitting_out: false,
                others_sitting_out: vec![3],
            },
            mining: MiningInfo {
                difficulty: 16,
                sealed_height: 6,
                leader: Some(1),
                live: vec![1, 2, 3],
                searching: Some(7),
                hash_rate: 2_500_000,
                hashes: 41_000_000,
                views: [(2, vec![1, 2, 3]), (3, vec![1, 2, 3])].into(),
            },
        }
    }

    /// The reply as docs/PROTOCOL.md §4.1 shows it: every field, keys sorted.
    #[test]
    fn info_serializes_as_the_protocol_shows() {
        let (key, zeros, balance) = (PublicKey([0x98; 32]), Hash::default(), Hash([0xdf; 32]));
        let params = Hash([0x5a; 32]);
        let expected = format!(
            "{{\"accounts\":3,\"alpha\":1,\"balance_hash\":\"{balance}\",\
             \"blackout_ms\":500,\"block_hash\":\"{zeros}\",\
             \"chain\":\"local\",\"clock\":{{\"offsets\":{{\"2\":3,\"3\":-12}},\"others_sitting_out\":[3],\"sitting_out\":false,\"skew_ms\":0}},\
             \"committed_slot\":897659579,\"connections\":{{\"accepted\":3,\"open\":3}},\"connector\":\"sampling\",\
             \"height\":0,\"held\":0,\"identifier\":1,\"in_sync\":true,\
             \"mining\":{{\"difficulty\":16,\"hash_rate\":2500000,\"hashes\":41000000,\"leader\":1,\"live\":[1,2,3],\
             \"sealed_height\":6,\"searching\":7,\"views\":{{\"2\":[1,2,3],\"3\":[1,2,3]}}}},\
             \"params_hash\":\"{params}\",\
             \"peering\":{{\"accepted\":2,\"open\":2,\"refused\":0,\"requests\":14}},\
             \"peers\":{{\"2\":\"alive\",\"3\":\"failed\"}},\"pending\":0,\
             \"protocol\":3,\"public_key\":\"{key}\",\"refused\":0,\
             \"requests\":21,\"role\":\"alpha\",\"servers\":3,\"slot\":897659580,\"slot_ms\":2000,\"supply\":3000000,\
             \"tolerance_ms\":200,\"uptime_ms\":4980,\"version\":\"0.1.0\",\"window_open\":true}}"
        );
        assert_eq!(sample().to_json(), expected);
    }

    #[test]
    fn info_reads_back() {
        let info = sample();
        let back: Info = serde_json::from_str(&info.to_json()).unwrap();
        assert_eq!(back, info);
    }
}

//! The simulated network: what travels between servers and clients, and
//! when (and whether) it arrives.
//!
//! Two servers talk over two connections, as the node does: each server's
//! connector sends its requests (its ledger's round, prevote, precommit,
//! certified, evidence, want and forward, and its connector's register,
//! heart, `D` and `B`) to the other's listener, and the answers come back
//! on the same connection. A link is one direction of one connection; like
//! TCP, it delivers in order unless a message is chosen to overtake
//! ([`Profile::reorder_rate`]).
//!
//! A message's sender is the server (or client) that sent it, set by the
//! network and never by the message: envelopes are not signed here, for
//! speed, and a dishonest server can still only speak as itself. Payments
//! inside messages are real signed and verified [`VerifiedTx`]s.
//!
//! Faults: every message gets a delay in `delay-min-ms..=delay-max-ms`,
//! may be late, lost (only between servers), duplicated, or cut by a
//! partition (checked when it is sent and when it arrives). A message to a
//! server that is down when it arrives is lost, as its connection is.
//!
//! The network remembers when each pair of servers last lost a message a
//! connector counts liveness by, or held any late ([`Network::impaired`]),
//! for the stop rule's judge. In a run within the timing bound
//! ([`Network::shield`]) messages between honest servers are never lost or
//! late.

use std::collections::BTreeMap;
use std::fmt;

use rota::ledger::edge::Response;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{PeerMessage, Request};
use rota_peer::{Millis, ServerId, Slot};

use crate::profile::Profile;
use crate::rng::Rng;

/// Who is at either end of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Server(ServerId),
    /// A client, by number.
    Client(usize),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server(id) => write!(f, "s{id}"),
            Endpoint::Client(c) => write!(f, "c{c}"),
        }
    }
}

/// A request, as the listener hands it to the ledger once checked.
#[derive(Clone, Debug)]
pub enum Ask {
    /// A server message, for `slot`, from the packet's sender.
    Peer {
        slot: Slot,
        message: Box<PeerMessage<VerifiedTx>>,
    },
    /// A payment from a client.
    Submit(VerifiedTx),
    /// A query (`S`, `D`, `B`...).
    Query(Request),
}

/// What a packet carries.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A request to the receiver's listener.
    Ask(Ask),
    /// The answer to a request the receiver sent.
    Answer(Response),
}

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    pub from: Endpoint,
    pub to: Endpoint,
    pub payload: Payload,
    /// A number for the trace.
    pub id: u64,
}

impl Packet {
    /// The word the trace and `--drop-only` use for what this carries.
    pub fn kind(&self) -> &'static str {
        match &self.payload {
            Payload::Ask(Ask::Peer { message, .. }) => message.command().name(),
            Payload::Ask(Ask::Submit(_)) => "T",
            Payload::Ask(Ask::Query(_)) => "query",
            Payload::Answer(_) => "reply",
        }
    }

    fn between_servers(&self) -> bool {
        matches!(
            (self.from, self.to),
            (Endpoint::Server(_), Endpoint::Server(_))
        )
    }
}

/// Why a packet did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    Dropped,
    Partitioned,
    ReceiverDown,
}

/// When a sent packet arrives: once, twice, or never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Arrives(Millis),
    Twice(Millis, Millis),
    Lost(Lost),
}

/// The network's state: partitions and each link's order.
#[derive(Debug, Default)]
pub struct Network {
    /// Each server's side while a partition lasts (by index), or none.
    sides: Option<Vec<bool>>,
    /// The last arrival time on each link (sender, receiver, is an answer).
    last: BTreeMap<(Endpoint, Endpoint, bool), Millis>,
    /// The last moment each pair of servers (lower id first) lost a
    /// status request, a fetch or an answer, or had any message held late
    /// (until it arrived: its link stays in order behind it).
    impaired: BTreeMap<(ServerId, ServerId), Millis>,
    /// The dishonest server, in a run that keeps the honest servers within
    /// the timing bound: messages between the others are never lost or
    /// late.
    shielded: Option<ServerId>,
    next_id: u64,
    /// Messages made late, and messages that overtook others, so far.
    pub late: u64,
    pub reordered: u64,
}

impl Network {
    pub fn new() -> Network {
        Network::default()
    }

    /// A fresh packet number.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Splits the servers into two sides; `sides[i]` is server i+1's.
    pub fn partition(&mut self, sides: Vec<bool>) {
        self.sides = Some(sides);
    }

    /// Keeps messages between servers other than `dishonest` from being
    /// lost or late.
    pub fn shield(&mut self, dishonest: Option<ServerId>) {
        self.shielded = dishonest;
    }

    pub fn heal(&mut self) {
        self.sides = None;
    }

    pub fn partitioned(&self) -> bool {
        self.sides.is_some()
    }

    /// The partition, as the trace shows it.
    pub fn describe(&self) -> String {
        match &self.sides {
            None => "whole".into(),
            Some(sides) => {
                let group = |side: bool| {
                    sides
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| **s == side)
                        .map(|(i, _)| format!("s{}", i + 1))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!("{{{}}} | {{{}}}", group(true), group(false))
            }
        }
    }

    /// Whether two endpoints can talk now. Clients reach every server.
    pub fn connected(&self, a: Endpoint, b: Endpoint) -> bool {
        match (a, b, &self.sides) {
            (Endpoint::Server(x), Endpoint::Server(y), Some(sides)) => {
                sides.get(x.index()) == sides.get(y.index())
            }
            (Endpoint::Server(_), Endpoint::Server(_), None)
            | (Endpoint::Client(_), _, _)
            | (_, Endpoint::Client(_), _) => true,
        }
    }

    /// The last moment a message between `a` and `b`, either way, that a
    /// connector counts liveness by was lost, or any was held late, if ever.
    pub fn impaired(&self, a: ServerId, b: ServerId) -> Option<Millis> {
        self.impaired.get(&(a.min(b), a.max(b))).copied()
    }

    fn impair(&mut self, packet: &Packet, until: Millis) {
        if let (Endpoint::Server(a), Endpoint::Server(b)) = (packet.from, packet.to) {
            let last = self.impaired.entry((a.min(b), a.max(b))).or_insert(until);
            *last = (*last).max(until);
        }
    }

    /// Decides when `packet`, sent at `now`, arrives.
    pub fn send(&mut self, packet: &Packet, now: Millis, p: &Profile, rng: &mut Rng) -> Fate {
        if !self.connected(packet.from, packet.to) {
            return Fate::Lost(Lost::Partitioned);
        }
        let faulty = packet.between_servers();
        // Within the bound, messages between honest servers are neither
        // lost nor late; the dishonest server's may be.
        let lossy = faulty
            && self.shielded.is_none_or(|liar| {
                packet.from == Endpoint::Server(liar) || packet.to == Endpoint::Server(liar)
            });
        if lossy && p.may_drop(packet.kind()) && rng.chance(p.drop_rate) {
            // A connector counts a peer alive by the answers to its
            // requests: losing one of those, or an answer, is what can make
            // a live peer look dead. A lost vote or round cannot.
            if matches!(packet.kind(), "register" | "heart" | "query" | "reply") {
                self.impair(packet, now);
            }
            return Fate::Lost(Lost::Dropped);
        }
        let mut at = now + rng.range(p.delay_min_ms, p.delay_max_ms);
        if lossy && rng.chance(p.late_rate) {
            self.late += 1;
            at += rng.range(1, p.late_max_ms);
            self.impair(packet, at);
        }
        let link = (
            packet.from,
            packet.to,
            matches!(packet.payload, Payload::Answer(_)),
        );
        let overtakes = faulty && rng.chance(p.reorder_rate);
        if overtakes {
            self.reordered += 1;
        } else {
            let last = self.last.entry(link).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        if faulty && rng.chance(p.duplicate_rate) {
            let copy = at + rng.range(1, p.duplicate_max_ms.max(1));
            return Fate::Twice(at, copy);
        }
        Fate::Arrives(at)
    }
}

//! The run's trace: the last lines kept for a failure report, every line
//! printed with `--trace`.
//!
//! Lines are built only when they will be kept or printed: routine traffic
//! (heartbeats, registrations, the connector's fetches and the answers to
//! them) is kept only when printing, so a quiet run spends little on it.

use std::collections::VecDeque;

use rota::ledger::edge::Response;
use rota_peer::Millis;
use rota_peer::wire::{PeerMessage, Reply};

use crate::clock::EPOCH;
use crate::network::{Ask, Endpoint, Packet, Payload};

/// How many lines a failure report shows.
pub const TAIL: usize = 40;

/// See the module documentation.
pub struct Trace {
    lines: VecDeque<String>,
    print: bool,
}

impl Trace {
    pub fn new(print: bool) -> Trace {
        Trace {
            lines: VecDeque::with_capacity(TAIL),
            print,
        }
    }

    /// Whether every line is printed.
    pub fn printing(&self) -> bool {
        self.print
    }

    /// A line worth keeping for a failure report.
    pub fn note(&mut self, step: u64, now: Millis, line: impl FnOnce() -> String) {
        let line = format!("{:>7} {} {}", step, stamp(now), line());
        if self.print {
            println!("{line}");
        }
        if self.lines.len() == TAIL {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Routine traffic: printed with `--trace`, not kept otherwise.
    pub fn detail(&mut self, step: u64, now: Millis, line: impl FnOnce() -> String) {
        if self.print {
            self.note(step, now, line);
        }
    }

    /// The last lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// True time as seconds since the run began.
pub fn stamp(now: Millis) -> String {
    let ms = now.saturating_sub(EPOCH);
    format!("{:>4}.{:03}s", ms / 1_000, ms % 1_000)
}

/// Whether a packet is routine traffic, traced only with `--trace`.
pub fn routine(packet: &Packet) -> bool {
    match &packet.payload {
        Payload::Ask(Ask::Peer { message, .. }) => {
            matches!(
                message.as_ref(),
                PeerMessage::Register(_) | PeerMessage::Heart(_)
            )
        }
        Payload::Ask(Ask::Query(_)) => matches!(packet.from, Endpoint::Server(_)),
        Payload::Ask(Ask::Submit(_)) => false,
        Payload::Answer(Response::Sign { .. }) => true,
        Payload::Answer(Response::Reply(reply)) => !matches!(reply, Reply::Error(_)),
    }
}

/// A payload in a few words, for the trace.
pub fn describe(payload: &Payload) -> String {
    match payload {
        Payload::Ask(Ask::Peer { slot, message }) => match message.as_ref() {
            PeerMessage::Register(hello) | PeerMessage::Heart(hello) => format!(
                "{}({slot}) [slot {} {} h{}{}]",
                message.command().name(),
                hello.status.status.slot,
                hello.status.status.balance_hash.short(),
                hello.status.status.height,
                if hello.status.certified.is_some() {
                    ""
                } else {
                    ", no certificate"
                }
            ),
            PeerMessage::Round {
                header,
                transactions,
            } => format!(
                "round({}) {} on slot {} with {} payments, result {}",
                header.slot(),
                header.digest().short(),
                header.header.base.slot,
                transactions.len(),
                header.header.result.short()
            ),
            PeerMessage::Prevote(p) => {
                format!("prevote({}) {}", p.vote.slot, p.vote.digest.short())
            }
            PeerMessage::Mine(mining) => format!("mine({slot}) {}", mining.name()),
            PeerMessage::Precommit(p) => {
                format!("precommit({}) {}", p.vote.slot, p.vote.digest.short())
            }
            PeerMessage::Certified(c) => format!(
                "certified({}) {} {} x{}",
                c.header.slot(),
                c.certificate.kind.name(),
                c.header.digest().short(),
                c.certificate.signatures.len()
            ),
            PeerMessage::Evidence(e) => format!("evidence({})", e.slot()),
            PeerMessage::Want { slot, digest } => format!("want({slot}) {}", digest.short()),
            PeerMessage::Forward { transaction } => {
                format!("forward({slot}) {}", transaction.id().short())
            }
        },
        Payload::Ask(Ask::Submit(tx)) => format!(
            "T {} ({} pays {} to {}, stamped {})",
            tx.id().short(),
            short_key(&tx.payer()),
            tx.amount(),
            short_key(&tx.payee()),
            crate::trace::stamp(tx.timestamp())
        ),
        Payload::Ask(Ask::Query(request)) => format!("{request:?}"),
        Payload::Answer(Response::Sign { slot, message }) => {
            format!("signed {}({slot})", message.command().name())
        }
        Payload::Answer(Response::Reply(reply)) => match reply {
            Reply::Error(text) => format!("E {text:?}"),
            Reply::Block { block, .. } => format!("block ({} bytes)", block.len()),
            Reply::Database { hash, slot, .. } => format!("database {} slot {slot}", hash.short()),
            other => format!("{other:?}"),
        },
    }
}

/// A key's first four bytes in hex, for the trace.
fn short_key(key: &rota_peer::PublicKey) -> String {
    key.0[..4].iter().map(|b| format!("{b:02x}")).collect()
}

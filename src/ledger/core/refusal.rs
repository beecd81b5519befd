//! Why the core refuses what it is given: a payment ([`Refusal`]) or a peer
//! message ([`PeerRefusal`]).
//!
//! Each rule has its own variant, and each variant's text is what the client
//! or the peer reads in its `E` reply. docs/PROTOCOL.md quotes these texts
//! (§7.3 for payments, §11 for peer messages), so they change only with it.

use rota_peer::balances::PaymentRefusal;
use rota_peer::wire::{ALPHA_DOWN, PeerCommand};
use rota_peer::{Hash, Millis, ServerId, Slot};

use crate::ledger::consensus;

use super::{MAX_HELD, MAX_ROUND_TRANSACTIONS};

/// Why a payment was refused. Each rule has its own reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the timestamp is {offset_ms} ms from this server's clock; at most {tolerance_ms} ms \
         either way is allowed (check the client's clock)"
    )]
    Timestamp { offset_ms: i64, tolerance_ms: u64 },
    #[error("this server is not the alpha of slot {slot}; server {alpha} is")]
    NotAlpha { slot: Slot, alpha: ServerId },
    #[error(
        "slot {slot} is in its blackout; the next alpha, server {next}, opens at {opens_ms} ms"
    )]
    Blackout {
        slot: Slot,
        next: ServerId,
        opens_ms: Millis,
    },
    #[error(
        "held through the blackout, the payment's timestamp would be {offset_ms} ms from the \
         start of slot {slot}, when server {alpha} opens; at most {tolerance_ms} ms either way is \
         allowed: send it again once slot {slot} opens"
    )]
    HeldTooLate {
        offset_ms: i64,
        tolerance_ms: u64,
        alpha: ServerId,
        slot: Slot,
    },
    #[error(
        "{ALPHA_DOWN}: server {alpha}, the alpha of slot {slot}, is not answering its peers; \
         no server takes payments until slot {next} opens at {opens_ms} ms: send it again then"
    )]
    AlphaDown {
        slot: Slot,
        alpha: ServerId,
        next: Slot,
        opens_ms: Millis,
    },
    #[error(
        "{ALPHA_DOWN}: server {alpha}, the alpha of slot {slot}, sits its slots out (its clock \
         is off the others'); no server takes payments until slot {next} opens at {opens_ms} \
         ms: send it again then"
    )]
    AlphaSitsOut {
        slot: Slot,
        alpha: ServerId,
        next: Slot,
        opens_ms: Millis,
    },
    #[error("a payment with this id is already in the round")]
    Duplicate,
    #[error("{0}")]
    Payment(#[from] PaymentRefusal),
    #[error(
        "this server is catching up with the others and takes no payments yet; \
         try again shortly or send to another server"
    )]
    CatchingUp,
    #[error(
        "this server's clock is {skew_ms} ms off the median of the live servers' (more than the \
         {tolerance_ms} ms tolerance): it sits out its alpha slots until its clock is fixed; \
         send the payment to another server in the next slot"
    )]
    SittingOut { skew_ms: i64, tolerance_ms: u64 },
    #[error("the round is full ({MAX_ROUND_TRANSACTIONS} payments); try again in the next slot")]
    RoundFull,
    #[error("this server already holds {MAX_HELD} payments for the next alpha; try again later")]
    HoldFull,
}

/// Why a peer message was refused. The text goes back to the sender in an
/// `E` reply and into this server's log.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefusal {
    #[error(
        "{} for slot {slot} is from the future: this server is at slot {current}",
        .command.name()
    )]
    Future {
        command: PeerCommand,
        slot: Slot,
        current: Slot,
    },
    #[error(
        "{} for slot {slot} is stale: this server is at slot {current}",
        .command.name()
    )]
    Stale {
        command: PeerCommand,
        slot: Slot,
        current: Slot,
    },
    /// A registration or heartbeat whose envelope is far from this server's
    /// slot: it is not a round, so only staleness is refused, either way.
    #[error(
        "{} signed for slot {slot} is stale: this server is at slot {current}",
        .command.name()
    )]
    StaleStatus {
        command: PeerCommand,
        slot: Slot,
        current: Slot,
    },
    /// A `register` or `heart` from a server that runs with other chain
    /// parameters.
    #[error(
        "server {from} runs with other chain parameters than this server ({differences}): every \
         server of a chain needs the same server list, schedule, difficulty and genesis"
    )]
    Params { from: ServerId, differences: String },
    /// A message of the round protocol the consensus machine takes no step
    /// on: about a decided slot, too far ahead, or with payments that are
    /// not its header's.
    #[error("{0}")]
    Consensus(consensus::Refusal),
    /// A `want` for a round this server does not hold (any more).
    #[error("round {digest} of slot {slot} is not held here")]
    RoundNotHeld { slot: Slot, digest: Hash },
    /// A `want` this server already answered this slot, or one of too many.
    #[error("want for round {digest} of slot {slot} refused: already answered this slot")]
    WantRepeated { slot: Slot, digest: Hash },
    /// A forwarded payment that this server, as the alpha, refuses.
    #[error("{0}")]
    Payment(#[from] Refusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts PROTOCOL.md §11 quotes, spelled out, so that a change to
    /// one is a change to the protocol's documentation too.
    #[test]
    fn peer_refusals_read_as_the_protocol_quotes_them() {
        let digest = Hash([0xaa; 32]);
        let cases = [
            (
                PeerRefusal::Future {
                    command: PeerCommand::Prevote,
                    slot: 1001,
                    current: 999,
                },
                "prevote for slot 1001 is from the future: this server is at slot 999".to_string(),
            ),
            (
                PeerRefusal::Stale {
                    command: PeerCommand::Forward,
                    slot: 990,
                    current: 999,
                },
                "forward for slot 990 is stale: this server is at slot 999".into(),
            ),
            (
                PeerRefusal::StaleStatus {
                    command: PeerCommand::Heart,
                    slot: 990,
                    current: 999,
                },
                "heart signed for slot 990 is stale: this server is at slot 999".into(),
            ),
            (
                PeerRefusal::Consensus(consensus::Refusal::Decided {
                    slot: 998,
                    committed: 999,
                }),
                "slot 998 is already decided here (committed through slot 999)".into(),
            ),
            (
                PeerRefusal::RoundNotHeld { slot: 999, digest },
                format!("round {digest} of slot 999 is not held here"),
            ),
            (
                PeerRefusal::WantRepeated { slot: 999, digest },
                format!("want for round {digest} of slot 999 refused: already answered this slot"),
            ),
            (
                PeerRefusal::Payment(Refusal::Duplicate),
                "a payment with this id is already in the round".into(),
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(refusal.to_string(), text);
        }
    }
}

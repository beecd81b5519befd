//! Why the core refuses what it is given: a payment ([`Refusal`]) or a peer
//! message ([`PeerRefusal`]).
//!
//! Each rule has its own variant, and each variant's text is what the client
//! or the peer reads in its `E` reply. docs/PROTOCOL.md quotes these texts
//! (§7.3 for payments, §11 for peer messages), so they change only with it.

use rota_peer::balances::PaymentRefusal;
use rota_peer::wire::{ALPHA_DOWN, PeerCommand};
use rota_peer::{Hash, Millis, ServerId, Slot};

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
    #[error("a payment with this id is already in the round")]
    Duplicate,
    #[error("{0}")]
    Payment(#[from] PaymentRefusal),
    #[error(
        "this server is catching up with the others and takes no payments yet; \
         try again shortly or send to another server"
    )]
    CatchingUp,
    #[error("the round is full ({MAX_ROUND_TRANSACTIONS} payments); try again in the next slot")]
    RoundFull,
    #[error("this server already holds {MAX_HELD} payments for the next alpha; try again later")]
    HoldFull,
}

/// Why a peer message was refused. The text goes back to the sender in an
/// `E` reply and into this server's log.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefusal {
    /// Rounds, results and pushes come from the beta of their slot only.
    #[error(
        "{} for slot {slot} must come from server {expected}, not server {from}",
        .command.name()
    )]
    NotFromBeta {
        command: PeerCommand,
        slot: Slot,
        expected: ServerId,
        from: ServerId,
    },
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
    #[error(
        "round {slot} refused: round {highest} was already applied here \
         (a replayed or late round)"
    )]
    RoundReplayed { slot: Slot, highest: Slot },
    #[error("round {slot} claims to come from this server")]
    RoundFromSelf { slot: Slot },
    #[error("no vote is open here for round {slot}")]
    NoVoteOpen { slot: Slot },
    #[error("server {from} already voted in round {slot}")]
    AlreadyVoted { from: ServerId, slot: Slot },
    #[error("result for round {slot} refused: round {decided} was already decided")]
    AlreadyDecided { slot: Slot, decided: Slot },
    #[error("push for round {slot} refused: no result for it here")]
    PushWithoutResult { slot: Slot },
    /// The pushed bytes are not a packed database.
    #[error("push: {0}")]
    PushUnreadable(rota_peer::Error),
    #[error("push for round {slot} refused: its hash {got} is not the consensus {consensus}")]
    PushNotConsensus {
        slot: Slot,
        got: Hash,
        consensus: Hash,
    },
    /// A forwarded payment that this server, as the alpha, refuses.
    #[error("{0}")]
    Payment(#[from] Refusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts PROTOCOL.md §11 quotes, spelled out, so that a change to
    /// one is a change to the protocol's documentation too.
    // One piece: a table of every refusal beside the text the protocol
    // quotes for it.
    #[test]
    fn peer_refusals_read_as_the_protocol_quotes_them() {
        let (a, b) = (Hash([0xaa; 32]), Hash([0xbb; 32]));
        let cases = [
            (
                PeerRefusal::NotFromBeta {
                    command: PeerCommand::Round,
                    slot: 999,
                    expected: ServerId(1),
                    from: ServerId(3),
                },
                "round for slot 999 must come from server 1, not server 3".to_string(),
            ),
            (
                PeerRefusal::Future {
                    command: PeerCommand::Result,
                    slot: 1001,
                    current: 999,
                },
                "result for slot 1001 is from the future: this server is at slot 999".into(),
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
                PeerRefusal::RoundReplayed {
                    slot: 998,
                    highest: 999,
                },
                "round 998 refused: round 999 was already applied here (a replayed or late round)"
                    .into(),
            ),
            (
                PeerRefusal::RoundFromSelf { slot: 999 },
                "round 999 claims to come from this server".into(),
            ),
            (
                PeerRefusal::NoVoteOpen { slot: 999 },
                "no vote is open here for round 999".into(),
            ),
            (
                PeerRefusal::AlreadyVoted {
                    from: ServerId(2),
                    slot: 999,
                },
                "server 2 already voted in round 999".into(),
            ),
            (
                PeerRefusal::AlreadyDecided {
                    slot: 998,
                    decided: 999,
                },
                "result for round 998 refused: round 999 was already decided".into(),
            ),
            (
                PeerRefusal::PushWithoutResult { slot: 999 },
                "push for round 999 refused: no result for it here".into(),
            ),
            (
                PeerRefusal::PushNotConsensus {
                    slot: 999,
                    got: a,
                    consensus: b,
                },
                format!("push for round 999 refused: its hash {a} is not the consensus {b}"),
            ),
            (
                PeerRefusal::Payment(Refusal::Duplicate),
                "a payment with this id is already in the round".into(),
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(refusal.to_string(), text);
        }
        let unreadable = rota_peer::balances::Balances::from_packed(&[0; 5]).unwrap_err();
        let text = unreadable.to_string();
        assert_eq!(
            PeerRefusal::PushUnreadable(unreadable).to_string(),
            format!("push: {text}")
        );
    }
}

//! What the consensus machine hands back, in order: [`Output`]s, the
//! [`Message`]s it sends, the [`Record`]s it makes durable, and the
//! [`Refusal`]s of input it takes no step on.
//!
//! The order of a step's outputs is the contract. An [`Output::Persist`] is
//! durable before any output after it is carried out, a message above all:
//! what a vote says has been kept, has been, even across a crash. This is
//! the core's `Action::Persist` rule: each `Output::Persist(record)`
//! becomes a `Persist::Consensus` of that record, `Output::Send` an
//! `Action::Send` to every server, and `Output::Commit` one
//! `Persist::Commit` with a block per round in it (`core/rounds.rs`).

use std::fmt;

use rota_peer::wire::consensus::{Certified, Evidence, Precommit, Prevote, SignedHeader, Verified};
use rota_peer::{Hash, Slot};

/// A message for every other server. Each one is signed or carries
/// signatures, and each may be relayed at any age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<P> {
    /// ROUND(s): the beta's header and its payments.
    Round { header: SignedHeader, payments: P },
    /// PREVOTE(s, header).
    Prevote(Prevote),
    /// PRECOMMIT(s, header), with the prevote certificate it rests on.
    Precommit(Precommit),
    /// A certificate with its header: a lock sent because of a refusal, or a
    /// commit certificate assembled here.
    Certified(Certified),
    /// Two headers of one slot signed by its alpha.
    Evidence(Evidence),
}

/// What must survive a crash. Replayed in order, a server's records
/// rebuild its machine ([`super::Machine::restore`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<P> {
    /// The highest slots this server voted in and signed a header for, as
    /// they stood when the journal was last compacted.
    Marks {
        voted: Option<Slot>,
        proposed: Option<Slot>,
    },
    /// This server's own round: it never signs a second header for the slot.
    Proposal { header: SignedHeader, payments: P },
    /// A round whose payments this server keeps: one it prevoted, or one of
    /// its locked chain.
    Round { header: SignedHeader, payments: P },
    /// A prevote this server signed; its slot is now voted in.
    Prevote(Prevote),
    /// A precommit this server signed.
    Precommit(Precommit),
    /// The lock moved up to this certificate.
    Lock(Certified),
    /// Two headers of one slot by its alpha: no precommit for that slot.
    Evidence(Evidence),
}

/// A round committed here, with its payments.
#[derive(Clone, Debug)]
pub struct CommittedRound<P> {
    pub header: Verified<SignedHeader>,
    pub payments: P,
}

/// A commit: a commit certificate, and every round of its header chain
/// above the last committed state. It decides every slot from `from` to
/// the certificate's slot: those of `rounds` are committed, all others lost.
#[derive(Clone, Debug)]
pub struct Commit<P> {
    pub certified: Verified<Certified>,
    /// Oldest first; the last is the certified round.
    pub rounds: Vec<CommittedRound<P>>,
    /// The first slot this commit decides (the one after the last commit).
    pub from: Slot,
}

impl<P> Commit<P> {
    /// The slot of the certified round: every slot up to it is decided.
    pub fn slot(&self) -> Slot {
        self.certified.header.slot()
    }

    /// Whether `slot`'s round is committed by this commit (in its chain),
    /// `None` if this commit does not decide `slot`.
    pub fn decides(&self, slot: Slot) -> Option<bool> {
        (self.from..=self.slot())
            .contains(&slot)
            .then(|| self.rounds.iter().any(|r| r.header.slot() == slot))
    }
}

/// What a step asks the ledger thread to do, in order.
#[derive(Clone, Debug)]
pub enum Output<P> {
    /// Make this durable before carrying out anything after it.
    Persist(Record<P>),
    /// Send to every other server.
    Send(Message<P>),
    /// Rounds committed: write them, their blocks and the database.
    Commit(Commit<P>),
    /// A round this server needs, header or payments, to vote or commit:
    /// ask the other servers for it.
    Missing { slot: Slot, digest: Hash },
    /// An alpha signed two headers for one slot; publish it.
    Evidence(Verified<Evidence>),
    /// This server's ledger disagrees with a certified round: it must stop
    /// rather than go on wrong.
    Halt(String),
}

/// Why an input was taken no step on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// About a slot already decided here: a replay or a late copy, which
    /// changes nothing.
    Decided { slot: Slot, committed: Slot },
    /// About a slot too far ahead of this server's clock.
    Future { slot: Slot, current: Slot },
    /// Payments whose merkle root is not the header's.
    PaymentsMismatch { slot: Slot },
    /// A round to propose for a slot this server is not the alpha of.
    NotAlpha { slot: Slot },
    /// A second header for a slot this server already signed one for.
    AlreadyProposed { slot: Slot, proposed: Slot },
    /// The machine halted ([`Output::Halt`]) and takes no further step.
    Halted,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Decided { slot, committed } => write!(
                f,
                "slot {slot} is already decided here (committed through slot {committed})"
            ),
            Refusal::Future { slot, current } => write!(
                f,
                "slot {slot} is too far ahead: this server's clock is in slot {current}"
            ),
            Refusal::PaymentsMismatch { slot } => write!(
                f,
                "the payments of slot {slot} do not have the merkle root its header names"
            ),
            Refusal::NotAlpha { slot } => write!(f, "this server is not the alpha of slot {slot}"),
            Refusal::AlreadyProposed { slot, proposed } => write!(
                f,
                "this server already signed a header for slot {proposed}, so not for slot {slot}"
            ),
            Refusal::Halted => write!(f, "consensus halted here; it takes no further step"),
        }
    }
}

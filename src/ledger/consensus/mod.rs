//! The round protocol as a pure state machine: who prevotes, precommits and
//! commits what, and what must be durable before each message leaves.
//!
//! [`Machine`] holds one server's part of the protocol. It is driven with
//! an input (a ROUND, a PREVOTE, a PRECOMMIT, a certificate, evidence, the
//! server's own round to propose, or a tick) and the current time, and
//! answers with [`Output`]s in order: records to make durable, messages for
//! every server, commits, rounds it lacks, evidence, or a halt. It reads no
//! clock, touches no socket or file and draws no random number; applying
//! payments is the ledger's job, through the [`Ledger`] callback. Every
//! input is [`Verified`] already: signatures are checked once, where a
//! message enters the node (`rota_peer::wire::consensus`).
//!
//! ## The rules (docs/CONSENSUS.md maps each to the published rule it adapts)
//!
//! A round is named by a header signed by the alpha of its slot: slot;
//! base (digest, slot and balance hash of the highest-slot round the beta
//! holds a prevote or commit certificate for, with that certificate, or
//! else the committed state); the merkle root of the payments; the
//! resulting balance hash. q = floor(N/2)+1 votes of distinct servers on
//! one (kind, slot, digest) make a certificate.
//!
//! 1. ROUND(s): the beta builds on its lock (or the committed state),
//!    applies its payments, signs the header, makes it durable, sends it.
//! 2. PREVOTE(s, header) goes to every server, carrying the header, before
//!    V(s) (and not before close(s)), only if this server voted in no slot
//!    at or after s, the round's chain holds the committed round, respects
//!    the lock, and applying it on its base gives the header's result. Its
//!    payments are durable first.
//! 3. A prevote certificate above the lock's slot moves the lock there,
//!    durably. PRECOMMIT(s, header) goes out only if this server voted in
//!    no slot after s and holds the round, and either it holds all N
//!    prevotes before P(s) (the fast path), or at P(s) it holds a
//!    certificate and has seen no second header for s (two are evidence,
//!    kept and published). A certificate that arrives later is a lock only.
//!    q precommits commit the round and every round of its header chain.
//! 4. Locked on round r, a server prevotes only a round whose chain holds
//!    r, or whose base carries a certificate of slot >= r's; refusing one
//!    for its lock, it sends its lock to every server. The lock only moves
//!    up. What it signs, its highest voted slot, its lock and the payments
//!    of its locked chain are durable before the message leaves.
//! 5. Any certificate may be relayed at any age; a commit certificate
//!    assembled here is relayed once.
//! 6. A slot without a commit certificate commits nothing by itself; a
//!    commit decides every slot since the last one: committed if in its
//!    chain, lost otherwise.
//!
//! ## Where each rule lives
//!
//! | rule | file |
//! |---|---|
//! | the deadlines V(s), P(s) and their inequalities ([`Timing`]) | `timing.rs` |
//! | 1, the beta's header ([`Machine::propose`]) | `propose.rs` |
//! | 2 and 4, prevote, lock respect, the lock sent on refusal | `prevote.rs` |
//! | 3, certificates, the lock, the fast path and P(s), evidence | `precommit.rs` |
//! | 3 (commit), 5 (relay), 6 (decided, lost) | `commit.rs` |
//! | 4 (durability), restart ([`Machine::restore`], [`Machine::journal`]) | `journal.rs` |
//! | header chains ([`chain::Rounds::walk`]) | `chain.rs` |
//! | seals in rounds: which block, whether it proves | `seal.rs` |
//! | one slot's headers and votes | `slot.rs` |
//! | the ledger callback ([`Ledger`]) | `ledger.rs` |
//! | outputs, records, refusals ([`Output`], [`Record`], [`Refusal`]) | `output.rs` |
//!
//! ## Caveats
//!
//! The ledger core drives the machine (`core/rounds.rs`) and carries out
//! its outputs. Payments are opaque here (`P`); the ledger core supplies
//! them and their application (`core/states.rs`). A round whose base or
//! payments are unknown here waits, and the machine asks for it
//! ([`Output::Missing`]); the core sends a `want` for it.

// The essay links to the private header chains so that a reader finds them
// from here; the links resolve with --document-private-items.
#![allow(rustdoc::private_intra_doc_links)]

mod chain;
mod commit;
mod journal;
mod ledger;
mod output;
mod precommit;
mod prevote;
mod propose;
mod seal;
mod slot;
mod timing;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rota_peer::block::{Position, Shape};
use rota_peer::keys::Keypair;
use rota_peer::wire::ServerList;
use rota_peer::wire::consensus::{
    Base, Certified, Evidence, Kind, Precommit, Prevote, SignedHeader, Verified,
};
use rota_peer::{Hash, Millis, ServerId, Slot};

use self::chain::Rounds;
pub use self::ledger::Ledger;
pub use self::output::{Commit, CommittedRound, Message, Output, Record, Refusal};
use self::slot::SlotVotes;
pub use self::timing::Timing;

/// Slots of votes and payments kept behind the clock while nothing
/// commits; older ones are dropped (and fetched again if ever needed).
const RETAIN_SLOTS: u64 = 16;

/// The most rounds asked for at once; the set is cleared every slot.
const MAX_ASKED: usize = 64;

/// Who this server is, and the chain's servers and timings.
#[derive(Clone, Debug)]
pub struct Config {
    pub chain: String,
    pub me: ServerId,
    pub keypair: Keypair,
    pub servers: ServerList,
    pub timing: Timing,
}

/// The committed state a machine builds on: the anchor every server
/// starts from (digest all zeros, no certificate), or a committed round
/// with its commit certificate.
#[derive(Clone, Debug)]
pub struct Committed {
    pub base: Base,
    pub certified: Option<Verified<Certified>>,
}

impl Committed {
    /// The anchor: the state every server holds at `slot`, with balance
    /// hash `balance` and no block yet (the genesis; or a server whose
    /// database was found damaged, which vouches for nothing and waits to
    /// install the others' state).
    pub fn anchor(slot: Slot, balance: Hash) -> Committed {
        Committed {
            base: Base {
                digest: Hash::default(),
                slot,
                balance,
                chain: Position::default(),
                sealed: 0,
            },
            certified: None,
        }
    }

    /// A committed round, vouched for by its commit certificate, on a chain
    /// of this `shape` (which fixes the blocks after it).
    pub fn round(certified: Verified<Certified>, shape: Shape) -> Committed {
        let header = &certified.header;
        Committed {
            base: Base {
                digest: header.digest(),
                slot: header.slot(),
                balance: header.header.result,
                chain: header.header.after(shape),
                sealed: header.header.sealed_after(),
            },
            certified: Some(certified),
        }
    }
}

/// One server's part in the round protocol. See the module essay.
#[derive(Debug)]
pub struct Machine<P> {
    config: Config,
    committed: Committed,
    rounds: Rounds<P>,
    slots: BTreeMap<Slot, SlotVotes>,
    /// The highest certificate held (prevote or commit), with its header.
    lock: Option<Verified<Certified>>,
    /// The highest slot this server prevoted or precommitted in.
    voted: Option<Slot>,
    /// The highest slot this server signed a header for.
    proposed: Option<Slot>,
    /// This server's own votes above the committed slot, to send again.
    own: BTreeMap<(Slot, Kind), Message<P>>,
    /// The highest slot whose P(s) moment has been handled.
    p_done: Option<Slot>,
    /// The highest commit certificate whose chain is not all here yet.
    pending_commit: Option<Verified<Certified>>,
    /// Rounds asked for ([`Output::Missing`]) this slot.
    asked: BTreeSet<Hash>,
    /// The slot the last step ran in.
    last_slot: Slot,
    halted: bool,
}

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// A machine that has never voted, starting from `committed`.
    pub fn new(config: Config, committed: Committed) -> Machine<P> {
        Machine {
            config,
            committed,
            rounds: Rounds::default(),
            slots: BTreeMap::new(),
            lock: None,
            voted: None,
            proposed: None,
            own: BTreeMap::new(),
            p_done: None,
            pending_commit: None,
            asked: BTreeSet::new(),
            last_slot: 0,
            halted: false,
        }
    }

    pub fn committed(&self) -> &Committed {
        &self.committed
    }

    pub fn lock(&self) -> Option<&Verified<Certified>> {
        self.lock.as_ref()
    }

    /// The highest slot this server voted in.
    pub fn voted(&self) -> Option<Slot> {
        self.voted
    }

    /// The highest slot this server signed a header for.
    pub fn proposed(&self) -> Option<Slot> {
        self.proposed
    }

    /// A round held here with its payments, to send to a server that asks
    /// for it (`want`).
    pub fn round(&self, digest: &Hash) -> Option<(Verified<SignedHeader>, P)> {
        let round = self.rounds.get(digest)?;
        Some((round.header.clone(), round.payments.clone()?))
    }

    /// Whether the machine halted (see [`Output::Halt`]).
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// The chain whose statements this machine signs and checks.
    pub fn chain(&self) -> &str {
        &self.config.chain
    }

    pub fn timing(&self) -> &Timing {
        &self.config.timing
    }

    fn majority(&self) -> usize {
        self.config.servers.majority()
    }

    /// ROUND(s): a header from its beta with the payments (or a round
    /// fetched for a chain). Kept, and prevoted when the rules allow.
    pub fn on_round(
        &mut self,
        header: Verified<SignedHeader>,
        payments: P,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        let slot = header.slot();
        self.check_slot(slot, now)?;
        if ledger.root(&payments) != header.header.payments {
            return Err(Refusal::PaymentsMismatch { slot });
        }
        let mut out = self.begin(now, ledger);
        self.see_header(&header, &mut out);
        if let Some(round) = self.rounds.get_mut(&header.digest())
            && round.payments.is_none()
        {
            round.payments = Some(payments);
        }
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// PREVOTE(s, header) from any server.
    pub fn on_prevote(
        &mut self,
        prevote: Verified<Prevote>,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        self.check_slot(prevote.vote.slot, now)?;
        let mut out = self.begin(now, ledger);
        let (vote, header) = prevote.parts();
        self.see_header(&header, &mut out);
        self.add_vote(vote, now, ledger, &mut out);
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// PRECOMMIT(s, header) from any server, with its prevote certificate.
    pub fn on_precommit(
        &mut self,
        precommit: Verified<Precommit>,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        self.check_slot(precommit.vote.slot, now)?;
        let mut out = self.begin(now, ledger);
        let (vote, header, certificate) = precommit.parts();
        self.see_header(&header, &mut out);
        self.take_certificate(certificate, &mut out);
        self.add_vote(vote, now, ledger, &mut out);
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// A certificate with its header, relayed by any server at any age: a
    /// lock, or a commit.
    pub fn on_certified(
        &mut self,
        certified: Verified<Certified>,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        let slot = certified.header.slot();
        if self.halted {
            return Err(Refusal::Halted);
        }
        if slot <= self.committed.base.slot {
            return Err(self.decided(slot));
        }
        let mut out = self.begin(now, ledger);
        self.see_header(&certified.header(), &mut out);
        match certified.certificate.kind {
            Kind::Precommit => self.take_commit(certified, false, &mut out),
            Kind::Prevote | Kind::Header => {
                self.take_certificate(certified.certificate(), &mut out)
            }
        }
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// Evidence from another server that an alpha signed two headers.
    pub fn on_evidence(
        &mut self,
        evidence: Verified<Evidence>,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        self.check_slot(evidence.slot(), now)?;
        let mut out = self.begin(now, ledger);
        for header in evidence.headers() {
            self.see_header(&header, &mut out);
        }
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// Advances time: the P(s) moments that have passed, rounds held until
    /// their close.
    pub fn tick(&mut self, now: Millis, ledger: &mut impl Ledger<Payments = P>) -> Vec<Output<P>> {
        let mut out = self.begin(now, ledger);
        self.settle(now, ledger, &mut out);
        out
    }

    /// The next moment the machine needs a tick, if any: a P(s), or the
    /// close of a round held because it came early.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let t = &self.config.timing;
        let current = t.slot_at(now);
        let precommit = (current.saturating_sub(1)..=current.saturating_add(1))
            .filter(|s| self.p_done.is_none_or(|p| *s > p))
            .map(|s| t.precommit_at(s))
            .filter(|at| *at > now);
        let held = self
            .rounds
            .iter()
            .filter(|(_, r)| r.payments.is_some() && self.voted.is_none_or(|v| r.header.slot() > v))
            .map(|(_, r)| t.close(r.header.slot()))
            .filter(|at| *at > now);
        precommit.chain(held).min()
    }

    /// Refuses input about a decided slot or one too far ahead, and any
    /// input once halted.
    fn check_slot(&self, slot: Slot, now: Millis) -> Result<(), Refusal> {
        let current = self.config.timing.slot_at(now);
        if self.halted {
            Err(Refusal::Halted)
        } else if slot <= self.committed.base.slot {
            Err(self.decided(slot))
        } else if slot > current.saturating_add(1) {
            Err(Refusal::Future { slot, current })
        } else {
            Ok(())
        }
    }

    fn decided(&self, slot: Slot) -> Refusal {
        Refusal::Decided {
            slot,
            committed: self.committed.base.slot,
        }
    }

    /// What every step does first: the deadlines that passed before this
    /// input, so that a certificate arriving after P(s) is never taken as
    /// held at P(s).
    fn begin(&mut self, now: Millis, ledger: &mut impl Ledger<Payments = P>) -> Vec<Output<P>> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        let current = self.config.timing.slot_at(now);
        if current != self.last_slot {
            self.last_slot = current;
            self.asked.clear();
            self.forget_old(current);
            self.relay_stalled(current, &mut out);
        }
        self.precommit_deadlines(now, ledger, &mut out);
        out
    }

    /// Relays the commit certificate of the committed round to every
    /// server, once a slot, while no later round commits here (the round
    /// of the slot before last would have, in a network that works): a
    /// server that missed it, or restarted before it, catches up from it
    /// with `want`s. Without this, servers left on different committed
    /// rounds (by crashes inside a commit, or a partition) with no
    /// majority on any one of them never catch up: their connectors find
    /// no majority state to sync to, so no alpha opens a window, and no
    /// round comes to carry the certificates (rule 5).
    fn relay_stalled(&mut self, current: Slot, out: &mut Vec<Output<P>>) {
        let Some(certified) = &self.committed.certified else {
            return;
        };
        if certified.header.slot().saturating_add(2) < current {
            out.push(Output::Send(Message::Certified(
                certified.clone().into_inner(),
            )));
        }
    }

    /// What every step does last: a round whose header names no payments
    /// needs none fetched; then prevote what can be, commit what can be.
    fn settle(
        &mut self,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        if self.halted {
            return;
        }
        let none = ledger.none();
        self.rounds.fill_empty(ledger.root(&none), &none);
        self.try_prevotes(now, ledger, out);
        self.try_commit(ledger, out);
    }

    /// Asks for a round once a slot.
    fn ask(&mut self, slot: Slot, digest: Hash, out: &mut Vec<Output<P>>) {
        if self.asked.len() < MAX_ASKED && self.asked.insert(digest) {
            out.push(Output::Missing { slot, digest });
        }
    }

    /// Stops the machine: its ledger disagrees with the certified rounds.
    fn halt(&mut self, reason: String, out: &mut Vec<Output<P>>) {
        log::error!("consensus halted: {reason}");
        self.halted = true;
        out.push(Output::Halt(reason));
    }

    /// Drops the votes of slots long past and the payments of old rounds
    /// that neither the lock nor a pending commit needs.
    fn forget_old(&mut self, current: Slot) {
        let Some(horizon) = current.checked_sub(RETAIN_SLOTS) else {
            return;
        };
        self.slots = self.slots.split_off(&horizon);
        // The voted mark stays; the votes themselves are not sent again.
        self.own.retain(|(slot, _), _| *slot >= horizon);
        let mut keep = Vec::new();
        for certified in self.lock.iter().chain(self.pending_commit.iter()) {
            keep.extend(
                self.rounds
                    .ancestry(&certified.header, self.committed.base.slot),
            );
        }
        self.rounds.forget_payments_below(horizon, &keep);
    }
}

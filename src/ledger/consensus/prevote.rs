//! Rules 2 and 4: when a server prevotes a round, and what it does when its
//! lock forbids one.
//!
//! A round of slot s is prevoted between close(s) and V(s) on this
//! server's clock: never after V(s), and a round that comes early (its
//! beta's clock runs ahead, or it is dishonest) is held until close(s), so
//! that every precommit of the slots before it has had its time to arrive
//! (timing.rs, inequality 3). Then, in the order its checks are made:
//!
//! - this server voted in no slot >= s;
//! - the round's header chain reaches the committed round;
//! - it respects the lock: the chain holds the locked round, or the base
//!   carries a certificate of a slot >= the lock's (refused for its lock,
//!   the server sends its lock to every server, once a slot);
//! - applying the chain, and the round on its base, gives each header's
//!   result (the ledger's answer, which depends on the base and the slot
//!   only).
//!
//! The round's payments are then made durable, and the signed prevote, and
//! only then does it leave. A round whose base or payments are missing
//! waits, and is asked for.

use rota_peer::wire::consensus::{Kind, Prevote, SignedHeader, Verified};
use rota_peer::{Hash, Millis, Slot};

use super::chain::Walk;
use super::output::{Message, Output, Record};
use super::seal::SealCheck;
use super::{Ledger, Machine};

/// How applying a header chain went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Applied {
    /// Every round of it is applied, each to its header's result.
    Done,
    /// A round's payments, or its base's state, are not here (asked for).
    Missing,
    /// This round's payments do not all apply on its base, or do not give
    /// its header's result.
    Mismatch { slot: Slot, digest: Hash },
}

/// What became of one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Prevoted,
    Waiting,
    Refused,
}

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// Prevotes a round of each slot whose prevote window is open, the
    /// first one seen that the rules allow.
    pub(super) fn try_prevotes(
        &mut self,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        let t = self.config.timing;
        let current = t.slot_at(now);
        for slot in current.saturating_sub(1)..=current {
            let open = t.close(slot) <= now && now < t.prevote_deadline(slot);
            if !open || slot <= self.committed.base.slot || self.voted.is_some_and(|v| v >= slot) {
                continue;
            }
            let headers = self
                .slots
                .get(&slot)
                .map(|v| v.headers.clone())
                .unwrap_or_default();
            for digest in headers {
                if self.try_prevote(digest, now, ledger, out) == Verdict::Prevoted {
                    break;
                }
                if self.halted {
                    return;
                }
            }
        }
    }

    /// Checks one round against rules 2 and 4, and prevotes it if it passes.
    fn try_prevote(
        &mut self,
        digest: Hash,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) -> Verdict {
        let Some(round) = self.rounds.get(&digest) else {
            return Verdict::Waiting;
        };
        if round.invalid {
            return Verdict::Refused;
        }
        if round.payments.is_none() {
            return Verdict::Waiting;
        }
        let header = round.header.clone();
        let slot = header.slot();
        let digests = match self.rounds.walk(
            &header,
            &self.committed.base,
            self.config.timing.schedule.shape(),
        ) {
            Walk::Chain(digests) => digests,
            Walk::Missing { slot, digest } => {
                self.ask(slot, digest, out);
                return Verdict::Waiting;
            }
            Walk::Off(reason) => return self.refuse(digest, reason),
        };
        match self.check_seal(&header.header, ledger) {
            SealCheck::Good => {}
            SealCheck::Unknown => return Verdict::Waiting,
            SealCheck::Bad(reason) => return self.refuse(digest, reason),
        }
        if !self.respects_lock(&header, &digests) {
            self.send_lock(slot, out);
            return Verdict::Refused;
        }
        match self.apply_chain(&digests, ledger, out) {
            Applied::Done => {}
            Applied::Missing => return Verdict::Waiting,
            Applied::Mismatch {
                slot: bad,
                digest: d,
            } if d == digest => {
                let reason = format!(
                    "its payments do not all apply on its base, or do not give its header's \
                     result (slot {bad})"
                );
                return self.refuse(digest, reason);
            }
            Applied::Mismatch { slot: bad, .. } => {
                let reason = format!(
                    "the certified round of slot {bad} gives another result here than its header's"
                );
                self.halt(reason, out);
                return Verdict::Refused;
            }
        }
        self.persist_round(&digest, out);
        let c = &self.config;
        let vote = Verified::sign_vote(&c.keypair, &c.chain, c.me, Kind::Prevote, slot, digest);
        let prevote = Verified::<Prevote>::join(vote.clone(), header)
            .expect("a vote signed here on the header's own digest")
            .into_inner();
        out.push(Output::Persist(Record::Prevote(prevote.clone())));
        self.voted = self.voted.max(Some(slot));
        let message = Message::Prevote(prevote);
        self.own.insert((slot, Kind::Prevote), message.clone());
        log::debug!("slot {slot}: prevote on {}", digest.short());
        out.push(Output::Send(message));
        self.add_vote(vote, now, ledger, out);
        Verdict::Prevoted
    }

    /// Marks a round this server will never prevote.
    fn refuse(&mut self, digest: Hash, reason: String) -> Verdict {
        if let Some(round) = self.rounds.get_mut(&digest) {
            log::info!(
                "slot {}: not prevoting {}: {reason}",
                round.header.slot(),
                digest.short()
            );
            round.invalid = true;
        }
        Verdict::Refused
    }

    /// Rule 4: the round's chain holds the locked round, or its base
    /// carries a certificate of a slot at least the lock's.
    fn respects_lock(&self, header: &SignedHeader, chain: &[Hash]) -> bool {
        let Some(lock) = &self.lock else {
            return true;
        };
        chain.contains(&lock.header.digest())
            || header
                .base_certificate
                .as_ref()
                .is_some_and(|c| c.slot >= lock.header.slot())
    }

    /// Sends this server's lock to every server, once for the slot of the
    /// round it refused.
    fn send_lock(&mut self, slot: Slot, out: &mut Vec<Output<P>>) {
        let Some(lock) = self.lock.clone() else {
            return;
        };
        let votes = self.slots.entry(slot).or_default();
        if votes.lock_sent {
            return;
        }
        votes.lock_sent = true;
        log::info!(
            "slot {slot}: refused for the lock on slot {}; sending it to every server",
            lock.header.slot()
        );
        out.push(Output::Send(Message::Certified(lock.into_inner())));
    }

    /// Applies, oldest first, every round of a chain not applied yet, each
    /// on its base, keeping each state under the round's digest.
    pub(super) fn apply_chain(
        &mut self,
        digests: &[Hash],
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) -> Applied {
        for digest in digests {
            let Some(round) = self.rounds.get(digest) else {
                return Applied::Missing;
            };
            if round.applied {
                continue;
            }
            let header = round.header.header;
            let Some(payments) = &round.payments else {
                self.ask(header.slot, *digest, out);
                return Applied::Missing;
            };
            let Some((result, state)) = ledger.apply(&header.base, header.slot, payments) else {
                // The ledger no longer holds the base's state: apply it again.
                log::warn!(
                    "slot {}: the ledger holds no state for its base {}",
                    header.slot,
                    header.base.digest.short()
                );
                if let Some(parent) = self.rounds.get_mut(&header.base.digest) {
                    parent.applied = false;
                }
                return Applied::Missing;
            };
            if result != header.result || ledger.valid_part(&state).is_some() {
                return Applied::Mismatch {
                    slot: header.slot,
                    digest: *digest,
                };
            }
            ledger.keep(*digest, state);
            if let Some(round) = self.rounds.get_mut(digest) {
                round.applied = true;
            }
        }
        Applied::Done
    }
}

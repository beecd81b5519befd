//! Rule 1: the beta's header.
//!
//! At close(s) the alpha of slot s hands its payments to
//! [`Machine::propose`]. The round builds on the highest-slot round this
//! server holds a certificate for, which is its lock, when it holds the
//! lock's whole chain; otherwise on the committed state (and it asks for
//! what it lacks). It applies the payments there, signs the header with
//! the base's certificate, makes header and payments durable, and sends
//! ROUND(s) to every server. Its own prevote follows through the same
//! rules as any other server's (`prevote.rs`).
//!
//! A server never signs two headers for one slot: the highest slot it
//! signed one for is durable before the header leaves.

use rota_peer::wire::consensus::{Base, Certificate, Header, SignedHeader, Verified};
use rota_peer::{Millis, Slot};

use super::chain::Walk;
use super::output::{Message, Output, Record, Refusal};
use super::prevote::Applied;
use super::{Ledger, Machine};

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// ROUND(s): this server, the alpha of `slot`, closes its round with
    /// `payments`.
    pub fn propose(
        &mut self,
        slot: Slot,
        payments: P,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
    ) -> Result<Vec<Output<P>>, Refusal> {
        if self.halted {
            return Err(Refusal::Halted);
        }
        if self.config.timing.alpha(slot) != self.config.me {
            return Err(Refusal::NotAlpha { slot });
        }
        if let Some(proposed) = self.proposed.filter(|p| *p >= slot) {
            return Err(Refusal::AlreadyProposed { slot, proposed });
        }
        if slot <= self.committed.base.slot {
            return Err(self.decided(slot));
        }
        let mut out = self.begin(now, ledger);
        let (base, certificate) = self.choose_base(ledger, &mut out);
        let Some((result, state)) = ledger.apply(&base, slot, &payments) else {
            let reason = format!(
                "the ledger holds no state for the base of its own round (slot {})",
                base.slot
            );
            self.halt(reason, &mut out);
            return Ok(out);
        };
        // Only the payments that apply on the base go into the round: a
        // round carrying one that does not is invalid.
        let payments = ledger.valid_part(&state).unwrap_or(payments);
        let seal = self.seal_for(&base, ledger);
        let header = Header {
            slot,
            base,
            payments: ledger.root(&payments),
            result,
            seal,
        };
        let c = &self.config;
        let signed =
            Verified::<SignedHeader>::sign_header(&c.keypair, &c.chain, header, certificate);
        let digest = signed.digest();
        ledger.keep(digest, state);
        self.proposed = Some(slot);
        log::info!(
            "slot {slot}: round {} on slot {}",
            digest.short(),
            base.slot
        );
        out.push(Output::Persist(Record::Proposal {
            header: signed.clone().into_inner(),
            payments: payments.clone(),
        }));
        out.push(Output::Send(Message::Round {
            header: signed.clone().into_inner(),
            payments: payments.clone(),
        }));
        self.see_header(&signed, &mut out);
        if let Some(round) = self.rounds.get_mut(&digest) {
            round.payments = Some(payments);
            round.applied = true;
            round.durable = true;
        }
        self.settle(now, ledger, &mut out);
        Ok(out)
    }

    /// The base of this server's next round: its lock if it holds the
    /// lock's chain and the lock is above the committed round, else the
    /// committed state.
    fn choose_base(
        &mut self,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) -> (Base, Option<Verified<Certificate>>) {
        let committed = (
            self.committed.base,
            self.committed.certified.as_ref().map(|c| c.certificate()),
        );
        let Some(lock) = self.lock.clone() else {
            return committed;
        };
        if lock.header.slot() <= self.committed.base.slot {
            return committed;
        }
        let digests = match self.rounds.walk(
            &lock.header,
            &self.committed.base,
            self.config.timing.schedule.shape(),
        ) {
            Walk::Chain(digests) => digests,
            Walk::Missing { slot, digest } => {
                self.ask(slot, digest, out);
                return committed;
            }
            Walk::Off(reason) => {
                log::warn!("the lock is off the committed chain: {reason}");
                return committed;
            }
        };
        if self.apply_chain(&digests, ledger, out) != Applied::Done {
            log::warn!(
                "slot {}: the locked chain cannot be applied here; building on the committed state",
                lock.header.slot()
            );
            return committed;
        }
        let header = lock.header.header;
        let base = Base {
            digest: lock.header.digest(),
            slot: header.slot,
            balance: header.result,
            chain: header.after(self.config.timing.schedule.shape()),
            sealed: header.sealed_after(),
        };
        (base, Some(lock.certificate()))
    }
}

//! Taking payments: the alpha's acceptance rules, forwarding to the alpha,
//! and holding a payment through a blackout for the next alpha.
//!
//! A client may send to any server. The alpha checks a payment against its
//! working database and adds it to its open round. Any other server checks
//! the timestamp, passes the payment to the current alpha, and tells the
//! client so. In a blackout no alpha is open; the payment is held and handed
//! to the next alpha when its slot opens, if its timestamp will still be
//! within tolerance then, and refused with the reason otherwise.

use std::sync::Arc;

use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{Disposition, PeerCommand, PeerMessage};
use rota_peer::{Millis, ServerId, Slot};

use super::{
    Action, Core, Held, MAX_HELD, MAX_ROUND_TRANSACTIONS, PeerRefusal, Refusal, Target, Tracked,
};
use crate::events::{Event, TxState};

/// How far `timestamp` is ahead of `clock` (behind when negative), clamped
/// to what an i64 holds: a timestamp comes from the payer and may be any
/// u64.
fn offset(timestamp: Millis, clock: Millis) -> i64 {
    (i128::from(timestamp) - i128::from(clock)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

impl Core {
    /// A payment from a client: accepted here, forwarded, or held.
    pub fn submit(
        &mut self,
        tx: VerifiedTx,
        now: Millis,
    ) -> (Result<Disposition, Refusal>, Vec<Action>) {
        let slot = self.schedule.slot_at(now);
        if !self.schedule.window_open(now) {
            return (self.hold(tx, now), Vec::new());
        }
        let alpha = self.schedule.alpha(slot);
        // An alpha whose clock is off sits its window out: the payment is
        // held for the next alpha if it will still be timely then.
        if alpha == self.me
            && self.synced
            && let Some(skew_ms) = self.sitting_out
        {
            // Too early to hold: the refusal says why this alpha sits out.
            let result = self.hold(tx, now).map_err(|refusal| match refusal {
                Refusal::HeldTooLate { .. } => Refusal::SittingOut {
                    skew_ms,
                    tolerance_ms: self.schedule.tolerance_ms,
                },
                other => other,
            });
            return (result, Vec::new());
        }
        if alpha == self.me {
            let result = self.accept(tx, now).map(|_| Disposition::Accepted(self.me));
            return (result, Vec::new());
        }
        if !self.schedule.timestamp_ok(tx.timestamp(), now) {
            return (Err(self.timestamp_refusal(tx.timestamp(), now)), Vec::new());
        }
        if let Some(refusal) = self.alpha_unavailable(slot) {
            return (Err(refusal), Vec::new());
        }
        self.tracked.insert(tx.id(), Tracked::Pending { slot });
        let forward = Action::Send {
            to: Target::Only(vec![alpha]),
            slot,
            message: PeerMessage::Forward { transaction: tx },
        };
        (Ok(Disposition::Forwarded(alpha)), vec![forward])
    }

    /// A payment forwarded by another server that believes this one is, or
    /// is about to be, the alpha.
    pub fn on_forward(
        &mut self,
        from: ServerId,
        slot: Slot,
        tx: VerifiedTx,
        now: Millis,
    ) -> Result<Disposition, PeerRefusal> {
        self.check_fresh(PeerCommand::Forward, slot, now, 1)?;
        let current = self.schedule.slot_at(now);
        let result = if self.schedule.window_open(now) {
            self.accept(tx, now).map(|_| Disposition::Accepted(self.me))
        } else if self.schedule.alpha(current + 1) == self.me {
            self.hold(tx, now)
        } else {
            Err(self.not_alpha(now))
        };
        result.map_err(|refusal| {
            log::debug!(
                "payment {} forwarded by server {from} refused: {refusal}",
                tx.id().short()
            );
            PeerRefusal::Payment(refusal)
        })
    }

    fn not_alpha(&self, now: Millis) -> Refusal {
        let slot = self.schedule.slot_at(now);
        if self.schedule.window_open(now) {
            Refusal::NotAlpha {
                slot,
                alpha: self.schedule.alpha(slot),
            }
        } else {
            Refusal::Blackout {
                slot,
                next: self.schedule.alpha(slot + 1),
                opens_ms: self.schedule.start(slot + 1),
            }
        }
    }

    fn timestamp_refusal(&self, timestamp: Millis, clock: Millis) -> Refusal {
        Refusal::Timestamp {
            offset_ms: offset(timestamp, clock),
            tolerance_ms: self.schedule.tolerance_ms,
        }
    }

    /// The alpha's acceptance rules, in order: its window is open, it is in
    /// sync, the timestamp is within tolerance, the id is new to the round,
    /// the round has room, and the payment applies to the working database.
    pub fn accept(&mut self, tx: VerifiedTx, now: Millis) -> Result<(), Refusal> {
        let slot = self.schedule.slot_at(now);
        if self.schedule.alpha(slot) != self.me || !self.schedule.window_open(now) {
            return Err(self.not_alpha(now));
        }
        if !self.synced {
            return Err(Refusal::CatchingUp);
        }
        if let Some(skew_ms) = self.sitting_out {
            return Err(Refusal::SittingOut {
                skew_ms,
                tolerance_ms: self.schedule.tolerance_ms,
            });
        }
        self.open_window(now);
        if !self.schedule.timestamp_ok(tx.timestamp(), now) {
            return Err(self.timestamp_refusal(tx.timestamp(), now));
        }
        let pending = self
            .pending
            .as_mut()
            .filter(|p| p.slot == slot)
            .ok_or(Refusal::CatchingUp)?;
        if pending.ids.contains(&tx.id()) {
            return Err(Refusal::Duplicate);
        }
        if pending.transactions.len() >= MAX_ROUND_TRANSACTIONS {
            return Err(Refusal::RoundFull);
        }
        Arc::make_mut(&mut self.working).pay(&tx.payer(), &tx.payee(), tx.amount())?;
        pending.ids.insert(tx.id());
        pending.transactions.push(tx);
        self.tracked.insert(tx.id(), Tracked::Pending { slot });
        Ok(())
    }

    /// Why no payment can go to the alpha of `slot`, another server: the
    /// connector found it failed, or it says it sits its slots out. A
    /// payment forwarded or held for it then would only be lost.
    fn alpha_unavailable(&self, slot: Slot) -> Option<Refusal> {
        let alpha = self.schedule.alpha(slot);
        let (next, opens_ms) = (slot + 1, self.schedule.start(slot + 1));
        if alpha == self.me {
            None
        } else if self.peers.get(&alpha) == Some(&false) {
            Some(Refusal::AlphaDown {
                slot,
                alpha,
                next,
                opens_ms,
            })
        } else if self.sitting.contains(&alpha) {
            Some(Refusal::AlphaSitsOut {
                slot,
                alpha,
                next,
                opens_ms,
            })
        } else {
            None
        }
    }

    /// Keeps a payment through the blackout for the next alpha.
    fn hold(&mut self, tx: VerifiedTx, now: Millis) -> Result<Disposition, Refusal> {
        let next = self.schedule.slot_at(now) + 1;
        let opens = self.schedule.start(next);
        let alpha = self.schedule.alpha(next);
        if !self.schedule.timestamp_ok(tx.timestamp(), opens) {
            return Err(Refusal::HeldTooLate {
                offset_ms: offset(tx.timestamp(), opens),
                tolerance_ms: self.schedule.tolerance_ms,
                alpha,
                slot: next,
            });
        }
        if let Some(refusal) = self.alpha_unavailable(next) {
            return Err(refusal);
        }
        if self.held.len() >= MAX_HELD {
            return Err(Refusal::HoldFull);
        }
        self.held.push(Held { tx, slot: next });
        self.tracked
            .insert(tx.id(), Tracked::Pending { slot: next });
        Ok(Disposition::Held(alpha))
    }

    /// Hands held payments to the alpha whose slot has opened: accepted here
    /// when that is this server, forwarded otherwise. One that missed its
    /// slot, or that this alpha refuses now, stays pending until a commit
    /// decides its slot: the client may still send the same bytes to the
    /// alpha in its window, so only a commit can say it is lost.
    pub(super) fn release_held(&mut self, now: Millis) -> Vec<Action> {
        let slot = self.schedule.slot_at(now);
        if self.held.is_empty() || !self.schedule.window_open(now) {
            return Vec::new();
        }
        let (due, later): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.slot <= slot);
        self.held = later;
        let alpha = self.schedule.alpha(slot);
        let mut actions = Vec::new();
        let mut forward = Vec::new();
        for held in due.into_iter() {
            let id = held.tx.id();
            if held.slot < slot {
                log::warn!(
                    "held payment {} missed slot {}; dropped",
                    id.short(),
                    held.slot
                );
                continue;
            }
            if alpha != self.me {
                // One that went down or began to sit out since the payment
                // was held would not take it: it stays pending until a
                // commit decides its slot, as one the alpha refused.
                if let Some(refusal) = self.alpha_unavailable(slot) {
                    log::info!(
                        "held payment {} not handed over at slot {slot}: {refusal}",
                        id.short()
                    );
                } else {
                    forward.push(held.tx);
                }
                continue;
            }
            match self.accept(held.tx, now) {
                Ok(()) => actions.push(Action::Publish(Event::Tx {
                    id,
                    state: TxState::Accepted,
                    alpha: self.me,
                })),
                Err(refusal) => {
                    log::info!(
                        "held payment {} refused at slot {slot}: {refusal}",
                        id.short()
                    );
                }
            }
        }
        for tx in forward {
            actions.push(Action::Send {
                to: Target::Only(vec![alpha]),
                slot,
                message: PeerMessage::Forward { transaction: tx },
            });
        }
        actions
    }
}

//! What every server does with the beta's messages: apply a round, take a
//! result, take a push, install a database.
//!
//! A server applies ROUND(s) on top of its last applied round and votes
//! ([`Core::on_round`]). On RESULT(s) ([`Core::on_result`]) it commits the
//! rounds up to `s` when its state matches the consensus, and otherwise
//! drops them and waits, out of sync, for the beta's push
//! ([`Core::on_push`]) or the connector's fetch ([`Core::install`]). The
//! beta commits its own round through the same [`Core::commit_through`].

use std::collections::HashSet;
use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{Decision, PeerCommand, PeerMessage};
use rota_peer::{Hash, Millis, ServerId, Slot, TxId};

use super::{Action, AppliedRound, Commit, Committed, Core, PeerRefusal, Persist, Target, Tracked};
use crate::events::{Event, Outcome, TxState};

/// Applies a round's payments in order, keeping those valid on `balances`:
/// stamped within the round's window, not repeated, and payable.
fn apply_round(
    balances: &mut Balances,
    schedule: &Schedule,
    slot: Slot,
    transactions: &[VerifiedTx],
) -> Vec<VerifiedTx> {
    let mut seen = HashSet::with_capacity(transactions.len());
    transactions
        .iter()
        .filter(|tx| {
            schedule.in_round(tx.timestamp(), slot)
                && seen.insert(tx.id())
                && balances.pay(&tx.payer(), &tx.payee(), tx.amount()).is_ok()
        })
        .copied()
        .collect()
}

impl Core {
    /// ROUND(s) from the beta: apply its payments and vote.
    pub fn on_round(
        &mut self,
        from: ServerId,
        slot: Slot,
        claimed: Hash,
        transactions: Vec<VerifiedTx>,
        now: Millis,
    ) -> Result<Vec<Action>, PeerRefusal> {
        self.check_sender(PeerCommand::Round, slot, from)?;
        self.check_fresh(PeerCommand::Round, slot, now, 1)?;
        if let Some(highest) = self.highest_round
            && slot <= highest
        {
            return Err(PeerRefusal::RoundReplayed { slot, highest });
        }
        if from == self.me {
            return Err(PeerRefusal::RoundFromSelf { slot });
        }
        let base = self
            .applied
            .back()
            .map_or(&self.committed.snapshot, |r| &r.snapshot);
        let mut balances = Balances::clone(base);
        let count = transactions.len();
        let valid = apply_round(&mut balances, &self.schedule, slot, &transactions);
        let hash = balances.hash();
        let snapshot = Arc::new(balances);
        self.applied.push_back(AppliedRound {
            slot,
            transactions: valid,
            hash,
            snapshot: snapshot.clone(),
        });
        self.highest_round = Some(slot);
        self.working = snapshot;
        let mut actions = self.reapply_pending();
        if hash == claimed {
            log::debug!(
                "round {slot}: applied {count} payments, hash {} agrees",
                hash.short()
            );
        } else {
            log::info!(
                "round {slot}: applied {count} payments, hash {} differs from the beta's {}",
                hash.short(),
                claimed.short()
            );
        }
        actions.push(Action::Send {
            to: Target::Only(vec![from]),
            slot,
            message: PeerMessage::Vote { hash },
        });
        Ok(actions)
    }

    /// RESULT(s) from the beta of round `s`.
    pub fn on_result(
        &mut self,
        from: ServerId,
        slot: Slot,
        decision: Decision,
        now: Millis,
    ) -> Result<Vec<Action>, PeerRefusal> {
        self.check_sender(PeerCommand::Result, slot, from)?;
        self.check_fresh(PeerCommand::Result, slot, now, 2)?;
        if let Some((decided, _)) = self.consensus
            && slot <= decided
        {
            return Err(PeerRefusal::AlreadyDecided { slot, decided });
        }
        let transactions = self
            .applied
            .iter()
            .find(|r| r.slot == slot)
            .map_or(0, |r| r.transactions.len());
        let Some(hash) = decision.consensus else {
            let reason = format!(
                "round {slot}: server {from}, its beta, found no majority \
                 ({} of {} votes agreed)",
                decision.agreeing, decision.voters
            );
            return Ok(vec![
                self.round_event(slot, Outcome::NoMajority, decision, transactions),
                self.stop(reason),
            ]);
        };
        self.consensus = Some((slot, hash));
        let ours = self
            .applied
            .iter()
            .rev()
            .find(|r| r.slot <= slot)
            .map_or(self.committed.hash, |r| r.hash);
        if ours == hash {
            log::info!(
                "round {slot}: consensus {}/{} on {}",
                decision.agreeing,
                decision.voters,
                hash.short()
            );
            let mut actions =
                vec![self.round_event(slot, Outcome::Consensus, decision, transactions)];
            actions.extend(self.commit_through(slot));
            Ok(actions)
        } else {
            let mut actions =
                vec![self.round_event(slot, Outcome::OutOfSync, decision, transactions)];
            actions.extend(self.lose_sync(format!(
                "round {slot}: the majority holds {}, this server {}",
                hash.short(),
                ours.short()
            )));
            Ok(actions)
        }
    }

    /// Commits every applied round up to `slot`, and records `slot` as
    /// committed even when it carried no round here (an empty round missed).
    pub(super) fn commit_through(&mut self, slot: Slot) -> Vec<Action> {
        let mut actions = Vec::new();
        while self.applied.front().is_some_and(|r| r.slot <= slot) {
            let round = self.applied.pop_front().expect("checked");
            for tx in &round.transactions {
                self.tracked.remove(&tx.id());
            }
            self.committed = Committed {
                slot: round.slot,
                hash: round.hash,
                snapshot: round.snapshot.clone(),
            };
            actions.push(Action::Persist(Persist::Commit(Commit {
                slot: round.slot,
                hash: round.hash,
                snapshot: round.snapshot,
                block: self.synced && !round.transactions.is_empty(),
                transactions: round.transactions,
                installed: false,
            })));
        }
        if self.committed.slot < slot {
            self.committed.slot = slot;
            actions.push(Action::Persist(Persist::Commit(Commit {
                slot,
                hash: self.committed.hash,
                snapshot: self.committed.snapshot.clone(),
                transactions: Vec::new(),
                block: false,
                installed: false,
            })));
        }
        // In id order, as the tracker is a BTreeMap: the lost events leave
        // in the same order on every run.
        for (id, tracked) in self.tracked.iter_mut() {
            if let Tracked::Pending { slot: expected } = *tracked
                && expected <= slot
            {
                *tracked = Tracked::Lost { slot };
                actions.push(Action::Publish(Event::Tx {
                    id: *id,
                    state: TxState::Lost,
                    alpha: self.schedule.alpha(expected),
                }));
            }
        }
        actions
    }

    /// This server does not hold the consensus state.
    pub(super) fn lose_sync(&mut self, reason: String) -> Vec<Action> {
        log::warn!("{reason}: out of sync, waiting for the database");
        self.applied.clear();
        self.working = self.committed.snapshot.clone();
        self.synced = false;
        let mut actions = self.reapply_pending();
        actions.push(Action::OutOfSync);
        actions
    }

    /// The beta's packed database, for a server that did not match RESULT(s).
    pub fn on_push(
        &mut self,
        from: ServerId,
        slot: Slot,
        packed: &[u8],
        now: Millis,
    ) -> Result<Vec<Action>, PeerRefusal> {
        self.check_sender(PeerCommand::Push, slot, from)?;
        self.check_fresh(PeerCommand::Push, slot, now, 2)?;
        let Some((decided, hash)) = self.consensus.filter(|(s, _)| *s == slot) else {
            return Err(PeerRefusal::PushWithoutResult { slot });
        };
        if self.committed.hash == hash && self.committed.slot >= decided {
            return Ok(Vec::new());
        }
        let mut balances = Balances::from_packed(packed).map_err(PeerRefusal::PushUnreadable)?;
        let got = balances.hash();
        if got != hash {
            return Err(PeerRefusal::PushNotConsensus {
                slot,
                got,
                consensus: hash,
            });
        }
        log::info!("round {slot}: installing the database pushed by server {from}");
        let mut actions = self.install(slot, hash, balances);
        actions.push(Action::OutOfSync);
        Ok(actions)
    }

    /// Installs a database that a majority holds, received from a push or
    /// fetched by the connector. Rounds applied on the old state are dropped.
    pub fn install(&mut self, slot: Slot, hash: Hash, balances: Balances) -> Vec<Action> {
        let snapshot = Arc::new(balances);
        self.committed = Committed {
            slot: slot.max(self.committed.slot),
            hash,
            snapshot: snapshot.clone(),
        };
        self.applied.clear();
        self.working = snapshot.clone();
        // Whether payments expected in the replaced rounds made it is now
        // unknown here until the blocks are fetched; they are not lost.
        let through = self.committed.slot;
        self.tracked
            .retain(|_, t| !matches!(t, Tracked::Pending { slot } if *slot <= through));
        let mut actions = vec![Action::Persist(Persist::Commit(Commit {
            slot: self.committed.slot,
            hash,
            snapshot,
            transactions: Vec::new(),
            block: false,
            installed: true,
        }))];
        actions.extend(self.reapply_pending());
        actions
    }

    /// Checks the open round's payments again after the database under them
    /// changed, dropping those no longer valid.
    pub(super) fn reapply_pending(&mut self) -> Vec<Action> {
        let Some(pending) = self.pending.as_mut() else {
            return Vec::new();
        };
        if pending.transactions.is_empty() {
            return Vec::new();
        }
        let working = Arc::make_mut(&mut self.working);
        let before = std::mem::take(&mut pending.transactions);
        let kept = apply_round(working, &self.schedule, pending.slot, &before);
        let mut actions = Vec::new();
        if kept.len() < before.len() {
            let kept_ids: HashSet<TxId> = kept.iter().map(|t| t.id()).collect();
            for tx in before.iter().filter(|t| !kept_ids.contains(&t.id())) {
                pending.ids.remove(&tx.id());
                self.tracked
                    .insert(tx.id(), Tracked::Lost { slot: pending.slot });
                actions.push(Action::Publish(Event::Tx {
                    id: tx.id(),
                    state: TxState::Lost,
                    alpha: self.me,
                }));
            }
            log::warn!(
                "round {}: {} accepted payments no longer apply and are lost",
                pending.slot,
                before.len() - kept.len()
            );
        }
        pending.transactions = kept;
        actions
    }
}

//! What the beta does: close its round, collect the votes, decide.
//!
//! At its blackout the alpha of slot `s` turns its open window into ROUND(s)
//! and broadcasts it ([`Core::close_round`]). It is then the beta of round
//! `s`: it gathers one VOTE(s) per server ([`Core::on_vote`]) and decides
//! when all have voted or at the vote deadline ([`Core::decide`]): RESULT(s)
//! to every server, its own commit or loss of sync, and a push of its
//! database to the servers that disagreed.
//!
//! The voting here is the simple majority of one round; it is rewritten when
//! the protocol grows its two voting phases.

use std::collections::BTreeMap;
use std::sync::Arc;

use rota_peer::wire::{Decision, PeerMessage};
use rota_peer::{Hash, Millis, ServerId, Slot};

use crate::events::Outcome;

use super::{Action, AppliedRound, Core, PeerRefusal, Target};

/// The round this server is beta of.
#[derive(Debug)]
pub(super) struct BetaRound {
    slot: Slot,
    hash: Hash,
    transactions: usize,
    votes: BTreeMap<ServerId, Hash>,
    /// When the beta decides without waiting for the missing votes.
    pub(super) deadline: Millis,
}

impl Core {
    /// The alpha's blackout: its payments become ROUND(s) and it becomes the
    /// beta of round `s`.
    pub(super) fn close_round(&mut self) -> Vec<Action> {
        let pending = self
            .pending
            .take()
            .expect("close_round with an open window");
        let slot = pending.slot;
        let hash = Arc::make_mut(&mut self.working).hash();
        self.applied.push_back(AppliedRound {
            slot,
            transactions: pending.transactions.clone(),
            hash,
            snapshot: self.working.clone(),
        });
        self.highest_round = Some(slot);
        let mut votes = BTreeMap::new();
        votes.insert(self.me, hash);
        log::info!(
            "round {slot}: closed with {} payments, hash {}",
            pending.transactions.len(),
            hash.short()
        );
        self.beta = Some(BetaRound {
            slot,
            hash,
            transactions: pending.transactions.len(),
            votes,
            deadline: self.schedule.vote_deadline(slot),
        });
        let mut actions = vec![Action::Send {
            to: Target::All,
            slot,
            message: PeerMessage::Round {
                hash,
                transactions: pending.transactions,
            },
        }];
        if self.servers.len() == 1 {
            actions.extend(self.decide());
        }
        actions
    }

    /// VOTE(s) from a server, for the round this server is beta of.
    pub fn on_vote(
        &mut self,
        from: ServerId,
        slot: Slot,
        hash: Hash,
    ) -> Result<Vec<Action>, PeerRefusal> {
        let Some(beta) = self.beta.as_mut().filter(|b| b.slot == slot) else {
            return Err(PeerRefusal::NoVoteOpen { slot });
        };
        if beta.votes.contains_key(&from) {
            return Err(PeerRefusal::AlreadyVoted { from, slot });
        }
        beta.votes.insert(from, hash);
        if beta.votes.len() == self.servers.len() {
            return Ok(self.decide());
        }
        Ok(Vec::new())
    }

    /// The beta's decision on its round.
    pub(super) fn decide(&mut self) -> Vec<Action> {
        let beta = self.beta.take().expect("decide with a round open");
        let slot = beta.slot;
        let mut counts: BTreeMap<Hash, u32> = BTreeMap::new();
        for hash in beta.votes.values() {
            *counts.entry(*hash).or_default() += 1;
        }
        let (best, agreeing) = counts
            .iter()
            .max_by_key(|(hash, count)| (**count, std::cmp::Reverse(**hash)))
            .map(|(h, c)| (*h, *c))
            .expect("the beta always votes");
        let voters = beta.votes.len() as u32;
        let majority = self.servers.majority() as u32;
        let consensus = (agreeing >= majority).then_some(best);
        let decision = Decision {
            consensus,
            agreeing,
            voters,
        };
        let mut actions = vec![Action::Send {
            to: Target::All,
            slot,
            message: PeerMessage::Result(decision),
        }];
        let Some(hash) = consensus else {
            let reason = format!(
                "round {slot}: no majority: the most common hash had {agreeing} of {voters} votes, \
                 {majority} of {} servers are needed",
                self.servers.len()
            );
            actions.push(self.round_event(slot, Outcome::NoMajority, decision, beta.transactions));
            actions.push(self.stop(reason));
            return actions;
        };
        self.consensus = Some((slot, hash));
        if beta.hash == hash {
            log::info!(
                "round {slot}: consensus {agreeing}/{voters} on {}",
                hash.short()
            );
            actions.push(self.round_event(slot, Outcome::Consensus, decision, beta.transactions));
            actions.extend(self.commit_through(slot));
            let behind: Vec<ServerId> = self
                .servers
                .ids()
                .filter(|id| *id != self.me && beta.votes.get(id) != Some(&hash))
                .collect();
            if !behind.is_empty() {
                let packed = self
                    .committed
                    .snapshot
                    .packed()
                    .expect("snapshots are packed");
                log::info!("round {slot}: pushing the database to servers {behind:?}");
                actions.push(Action::Send {
                    to: Target::Only(behind),
                    slot,
                    message: PeerMessage::Push {
                        packed: packed.to_vec(),
                    },
                });
            }
        } else {
            actions.push(self.round_event(slot, Outcome::OutOfSync, decision, beta.transactions));
            actions.extend(self.lose_sync(format!(
                "round {slot}: the majority holds {}, this server {}",
                hash.short(),
                beta.hash.short()
            )));
        }
        actions
    }
}

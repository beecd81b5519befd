//! The core's side of the round protocol: it closes its own round, hands
//! every protocol message to the consensus machine, and carries out what
//! the machine asks.
//!
//! The machine (`ledger/consensus`) decides; the core turns its outputs
//! into [`Action`]s, in order ([`Core::carry_out`]): a record to keep
//! becomes a [`Persist::Consensus`], durable before anything after it; a
//! message goes to every server; a round it lacks becomes a `want`; a
//! commit becomes one [`Persist::Commit`] with a block per round, and
//! decides the payments this server took: committed when their round is in
//! the commit's chain, lost otherwise; a halt stops the node.
//!
//! A database fetched from another server is installed only under a commit
//! certificate that checks and whose result is that database's hash
//! ([`Core::install`]).

use std::collections::HashSet;
use std::sync::Arc;

use rota_listener::Consensus;
use rota_peer::balances::Balances;
use rota_peer::wire::PeerMessage;
use rota_peer::wire::consensus::{Certified, Kind, Proof, SignedHeader, Verified};
use rota_peer::{Hash, Millis, ServerId, Slot, TxId};

use super::{
    Action, Commit, Committed, CommittedRound, Core, Kept, Payments, PeerRefusal, Persist, Target,
    Tracked, apply_round,
};
use crate::events::{Event, Outcome, TxState};
use crate::ledger::consensus::{self, Message, Output};

/// How many committed rounds a server keeps to answer `want`s from servers
/// that missed them.
pub const RECENT_ROUNDS: usize = 16;

/// The most `want`s answered in one slot; more wait for the next slot.
pub const MAX_WANTS_PER_SLOT: usize = 256;

impl Core {
    /// The alpha's close: its payments become ROUND(s), through the machine.
    pub(super) fn close_round(&mut self, now: Millis) -> Vec<Action> {
        let Some(pending) = self.pending.take() else {
            return Vec::new();
        };
        let slot = pending.slot;
        let count = pending.transactions.len();
        let payments: Payments = pending.transactions.into();
        log::info!("round {slot}: closed with {count} payments");
        match self
            .machine
            .propose(slot, payments.clone(), now, &mut self.states)
        {
            Ok(outputs) => self.carry_out(outputs),
            Err(refusal) => {
                log::warn!("round {slot}: not proposed: {refusal}");
                self.lose(payments.iter().map(|tx| tx.id()), slot, slot)
            }
        }
    }

    /// A message of the round protocol from server `from`, every signature
    /// in it checked.
    pub fn on_consensus(
        &mut self,
        from: ServerId,
        message: Consensus,
        now: Millis,
    ) -> Result<Vec<Action>, PeerRefusal> {
        let states = &mut self.states;
        let outputs = match message {
            Consensus::Round { header, payments } => {
                self.machine.on_round(header, payments.into(), now, states)
            }
            Consensus::Prevote(prevote) => self.machine.on_prevote(prevote, now, states),
            Consensus::Precommit(precommit) => self.machine.on_precommit(precommit, now, states),
            Consensus::Certified(certified) => self.machine.on_certified(certified, now, states),
            Consensus::Evidence(evidence) => self.machine.on_evidence(evidence, now, states),
            Consensus::Want { slot, digest } => return self.answer_want(from, slot, digest, now),
        }
        .map_err(PeerRefusal::Consensus)?;
        Ok(self.carry_out(outputs))
    }

    /// A server asks for a round it lacks: sent to it alone, from the
    /// machine's rounds or the last committed ones, at most once a slot.
    fn answer_want(
        &mut self,
        from: ServerId,
        slot: Slot,
        digest: Hash,
        now: Millis,
    ) -> Result<Vec<Action>, PeerRefusal> {
        let current = self.schedule.slot_at(now);
        if self.wants_slot != current {
            self.wants_slot = current;
            self.wants.clear();
        }
        if self.wants.len() >= MAX_WANTS_PER_SLOT || !self.wants.insert((from, digest)) {
            return Err(PeerRefusal::WantRepeated { slot, digest });
        }
        let round = self.machine.round(&digest).or_else(|| {
            self.recent
                .iter()
                .find(|(header, _)| header.digest() == digest)
                .cloned()
        });
        let Some((header, payments)) = round else {
            return Err(PeerRefusal::RoundNotHeld { slot, digest });
        };
        Ok(vec![Action::Send {
            to: Target::Only(vec![from]),
            slot: header.slot(),
            message: PeerMessage::Round {
                header: header.into_inner(),
                transactions: payments.to_vec(),
            },
        }])
    }

    /// Turns the machine's outputs into actions, in their order.
    pub(super) fn carry_out(&mut self, outputs: Vec<Output<Payments>>) -> Vec<Action> {
        let mut actions = Vec::new();
        for output in outputs {
            match output {
                Output::Persist(record) => {
                    actions.push(Action::Persist(Persist::Consensus(record)));
                }
                Output::Send(message) => actions.push(send_all(message)),
                Output::Commit(commit) => actions.extend(self.commit(commit)),
                Output::Missing { slot, digest } => actions.push(Action::Send {
                    to: Target::All,
                    slot,
                    message: PeerMessage::Want { slot, digest },
                }),
                Output::Evidence(evidence) => {
                    let slot = evidence.slot();
                    let alpha = self.schedule.alpha(slot);
                    log::warn!("slot {slot}: server {alpha}, its alpha, signed two headers");
                    actions.push(Action::Publish(Event::Evidence { slot, alpha }));
                }
                Output::Halt(reason) => actions.push(self.stop(reason)),
            }
        }
        actions
    }

    /// A commit: the rounds of its chain become blocks, the state after the
    /// last is the committed one, and every slot it decides is settled for
    /// the payments this server took.
    fn commit(&mut self, commit: consensus::Commit<Payments>) -> Vec<Action> {
        let certified = commit.certified.clone();
        let slot = commit.slot();
        let mut balances = self.committed.snapshot.clone();
        let mut rounds = Vec::with_capacity(commit.rounds.len());
        let mut included: HashSet<TxId> = HashSet::new();
        let mut actions = Vec::new();
        // Each round's proof: its header and those above it, below the
        // certified one (the last round), then the certificate.
        let headers: Vec<SignedHeader> = commit
            .rounds
            .iter()
            .map(|round| round.header.clone().into_inner())
            .collect();
        let below = headers.len().saturating_sub(1);
        for (i, round) in commit.rounds.iter().enumerate() {
            let kept = self.kept_or_apply(&round.header, &round.payments, &balances);
            if kept.hash != round.header.header.result {
                let reason = format!(
                    "the committed round of slot {} gives {} here, not its header's {}",
                    kept.slot,
                    kept.hash.short(),
                    round.header.header.result.short()
                );
                return vec![self.stop(reason)];
            }
            included.extend(kept.valid.iter().map(|tx| tx.id()));
            actions.push(Action::Publish(Event::Round {
                slot: kept.slot,
                outcome: Outcome::Committed,
                hash: Some(kept.hash),
                agreeing: certified.certificate.signatures.len() as u32,
                voters: self.servers.len() as u32,
                transactions: kept.valid.len(),
                beta: self.schedule.alpha(kept.slot),
            }));
            self.remember_recent(round.header.clone(), round.payments.clone());
            balances = kept.balances.clone();
            let proof = Proof {
                headers: headers[i.min(below)..below].to_vec(),
                certified: certified.clone().into_inner(),
            };
            rounds.push(CommittedRound {
                slot: kept.slot,
                hash: kept.hash,
                block: round.header.header.block(self.schedule.shape()),
                seal: round.header.header.sealing().zip(round.header.header.seal),
                transactions: kept.valid,
                proof: proof.encode(),
            });
        }
        let hash = certified.header.header.result;
        self.committed = Committed {
            slot,
            hash,
            snapshot: balances.clone(),
        };
        self.states
            .set_committed(certified.header.digest(), slot, balances.clone());
        let top = &certified.header.header;
        self.states.sealing.committed(
            top.sealed_after(),
            top.after(self.schedule.shape()).height,
            rounds.iter().filter_map(|round| round.block),
        );
        self.certified = Some(certified.clone());
        actions.extend(self.settle_tracked(slot, &included));
        let persist = Action::Persist(Persist::Commit(Commit {
            slot,
            hash,
            snapshot: balances,
            rounds,
            installed: false,
            certified: Some(certified.into_inner()),
            journal: self.machine.journal(),
        }));
        actions.insert(0, persist);
        actions
    }

    /// The state after a committed round: kept since it was applied, or
    /// applied again on the state before it.
    fn kept_or_apply(
        &self,
        header: &Verified<SignedHeader>,
        payments: &Payments,
        before: &Arc<Balances>,
    ) -> Kept {
        if let Some(kept) = self.states.get(&header.digest()) {
            return kept.clone();
        }
        let slot = header.slot();
        let mut balances = Balances::clone(before);
        let valid = apply_round(&mut balances, &self.schedule, slot, payments);
        Kept {
            slot,
            hash: balances.hash(),
            balances: Arc::new(balances),
            skipped: payments.len() - valid.len(),
            valid,
        }
    }

    fn remember_recent(&mut self, header: Verified<SignedHeader>, payments: Payments) {
        if self.recent.len() >= RECENT_ROUNDS {
            self.recent.pop_front();
        }
        self.recent.push_back((header, payments));
    }

    /// Settles the payments this server took for slots up to `decided`:
    /// those in the commit's chain are committed (their block answers `S`
    /// from now on), the others lost.
    fn settle_tracked(&mut self, decided: Slot, included: &HashSet<TxId>) -> Vec<Action> {
        self.tracked.retain(|id, _| !included.contains(id));
        let lost: Vec<(TxId, Slot)> = self
            .tracked
            .iter()
            .filter_map(|(id, tracked)| match tracked {
                Tracked::Pending { slot } if *slot <= decided => Some((*id, *slot)),
                _ => None,
            })
            .collect();
        let mut actions = Vec::new();
        for (id, slot) in lost {
            self.tracked.insert(id, Tracked::Lost { slot, decided });
            actions.push(Action::Publish(Event::Tx {
                id,
                state: TxState::Lost,
                alpha: self.schedule.alpha(slot),
            }));
        }
        actions
    }

    /// Marks payments lost without a commit (their round was never
    /// proposed): `decided` names the slot that settled it.
    fn lose(&mut self, ids: impl Iterator<Item = TxId>, slot: Slot, decided: Slot) -> Vec<Action> {
        let alpha = self.schedule.alpha(slot);
        ids.map(|id| {
            self.tracked.insert(id, Tracked::Lost { slot, decided });
            Action::Publish(Event::Tx {
                id,
                state: TxState::Lost,
                alpha,
            })
        })
        .collect()
    }

    /// Installs a database fetched from another server, vouched for by a
    /// commit certificate: refused unless the certificate checks against
    /// the conf, is a commit certificate, and names this database's hash.
    pub fn install(
        &mut self,
        certified: &Certified,
        mut balances: Balances,
    ) -> Result<Vec<Action>, String> {
        let certified = certified
            .verify(self.machine.chain(), &self.servers)
            .map_err(|e| format!("its certificate does not check: {e}"))?;
        if certified.certificate.kind != Kind::Precommit {
            return Err("its certificate is not a commit certificate".into());
        }
        let hash = balances.hash();
        let slot = certified.header.slot();
        if hash != certified.header.header.result {
            return Err(format!(
                "it hashes to {}, but the commit of slot {slot} vouches for {}",
                hash.short(),
                certified.header.header.result.short()
            ));
        }
        let Some(outputs) = self.machine.install(consensus::Committed::round(
            certified.clone(),
            self.schedule.shape(),
        )) else {
            return Ok(Vec::new());
        };
        log::info!(
            "installing the database of slot {slot}, hash {}",
            hash.short()
        );
        let snapshot = Arc::new(balances);
        self.committed = Committed {
            slot,
            hash,
            snapshot: snapshot.clone(),
        };
        self.states
            .set_committed(certified.header.digest(), slot, snapshot.clone());
        let top = &certified.header.header;
        self.states.sealing.committed(
            top.sealed_after(),
            top.after(self.schedule.shape()).height,
            [],
        );
        self.certified = Some(certified.clone());
        // Whether payments expected up to here made it is unknown until the
        // blocks are fetched; they are not lost.
        self.tracked
            .retain(|_, t| !matches!(t, Tracked::Pending { slot: s } if *s <= slot));
        let mut actions = vec![Action::Persist(Persist::Commit(Commit {
            slot,
            hash,
            snapshot,
            rounds: Vec::new(),
            installed: true,
            certified: Some(certified.into_inner()),
            journal: self.machine.journal(),
        }))];
        actions.extend(self.carry_out(outputs));
        Ok(actions)
    }

    /// The commit certificate that vouches for the committed state, for `D`
    /// replies and heartbeats; none for the anchor.
    pub fn certified(&self) -> Option<&Verified<Certified>> {
        self.certified.as_ref()
    }

    /// What to send again after a restart: this server's own votes above
    /// the committed slot, and its lock, the same signed bytes as before
    /// (ed25519 signatures are deterministic), so that a round it voted in
    /// before the crash can still gather its votes.
    pub fn resend(&mut self) -> Vec<Action> {
        let outputs = self.machine.resend();
        self.carry_out(outputs)
    }

    /// A committed round still kept to answer `want`s, by slot.
    pub fn recent_round(&self, slot: Slot) -> Option<(Verified<SignedHeader>, Payments)> {
        self.recent
            .iter()
            .find(|(header, _)| header.slot() == slot)
            .cloned()
    }

    /// The consensus machine, for `I` and tests.
    pub fn machine(&self) -> &consensus::Machine<Payments> {
        &self.machine
    }
}

/// A message of the machine's, for every other server.
fn send_all(message: Message<Payments>) -> Action {
    let (slot, message) = match message {
        Message::Round { header, payments } => (
            header.slot(),
            PeerMessage::Round {
                header,
                transactions: payments.to_vec(),
            },
        ),
        Message::Prevote(prevote) => (prevote.vote.slot, PeerMessage::Prevote(prevote)),
        Message::Precommit(precommit) => (precommit.vote.slot, PeerMessage::Precommit(precommit)),
        Message::Certified(certified) => {
            (certified.header.slot(), PeerMessage::Certified(certified))
        }
        Message::Evidence(evidence) => (evidence.slot(), PeerMessage::Evidence(evidence)),
    };
    Action::Send {
        to: Target::All,
        slot,
        message,
    }
}

//! The ledger core: payments and consensus rounds as a pure state machine.
//!
//! [`Core`] owns the balance database in memory and everything a round needs.
//! It is driven by the ledger thread with a message or a tick and the current
//! time, and answers with [`Action`]s: messages to send, commits to persist,
//! events to publish, or a stop. It reads no clock, touches no socket or file
//! and draws no random number, so tests drive it deterministically.
//!
//! ## A round
//!
//! The alpha of slot `s` accepts payments into `pending` until `close(s)`.
//! Then it closes the round: the pending payments become an applied round
//! with the hash of the database after them, and it broadcasts ROUND(s).
//! It is now the beta of round `s` and collects votes.
//!
//! Every other server applies ROUND(s) to its own database, skipping any
//! payment that is invalid there (the rules depend only on the database and
//! the round's slot, so every server skips the same ones), and sends VOTE(s)
//! with its hash to the beta.
//!
//! The beta decides when every server has voted or at the vote deadline: a
//! hash reported by a majority of all servers (floor(N/2)+1, the beta
//! included) is the consensus. It broadcasts RESULT(s) and, if it holds the
//! consensus state, commits and pushes its packed database to each server that
//! disagreed or did not vote. Without a majority it broadcasts a failed
//! RESULT(s) and stops; so does every server that receives one.
//!
//! A server whose state after round `s` matches RESULT(s) commits it: the
//! applied rounds up to `s` leave memory for disk, and each with payments
//! becomes a block. A server that does not match is out of sync: it drops its
//! applied rounds, tells its connector, and waits for a push or a fetch.
//!
//! ## Layers of state
//!
//! ```text
//! committed  --(applied rounds, voted, undecided)-->  --(pending)--> working
//! ```
//!
//! `working` is the database every new payment is checked against. Snapshots
//! are shared `Arc`s, so a round's state is copied only when a later payment
//! changes a database that a snapshot still holds.
//!
//! ## Caveats
//!
//! Blocks are built only while the connector reports this server in sync,
//! because a server that just installed a database lacks the blocks before it;
//! its connector fetches them. Refusing to accept payments while out of sync
//! means a lagging alpha's slot carries no payments; they are held or refused
//! with a reason, never silently lost.

pub mod accept;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{Decision, PeerMessage, ServerList};
use rota_peer::{Hash, Millis, ServerId, Slot, TxId};

use crate::events::Event;

/// The most payments one round may carry; a ROUND of this many is 28 MB.
pub const MAX_ROUND_TRANSACTIONS: usize = 200_000;

/// The most transactions a server holds through a blackout.
pub const MAX_HELD: usize = 100_000;

/// How many slots a transaction's status is remembered after its round.
const TRACK_SLOTS: u64 = 1_000;

/// The last committed state.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The slot of the last round committed here.
    pub slot: Slot,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Only(Vec<ServerId>),
}

/// A round to persist.
#[derive(Clone, Debug)]
pub struct Commit {
    pub slot: Slot,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
    /// The payments applied in the round, in order.
    pub transactions: Vec<VerifiedTx>,
    /// Whether to append a block (payments and in sync).
    pub block: bool,
    /// Whether this state was installed from another server.
    pub installed: bool,
}

/// What the ledger thread must do after a step.
#[derive(Clone, Debug)]
pub enum Action {
    /// Sign and send a peer message for `slot`.
    Send {
        to: Target,
        slot: Slot,
        message: PeerMessage<VerifiedTx>,
    },
    /// Persist a committed round.
    Commit(Commit),
    /// Publish an event.
    Publish(Event),
    /// This server no longer holds the consensus state; the connector must
    /// find out what the others hold.
    OutOfSync,
    /// Consensus is lost: save state and stop.
    Stop(String),
}

/// A round applied to the database and voted on, not yet decided.
#[derive(Clone, Debug)]
pub(super) struct AppliedRound {
    pub slot: Slot,
    pub transactions: Vec<VerifiedTx>,
    pub hash: Hash,
    pub snapshot: Arc<Balances>,
}

/// This server's open alpha window.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub slot: Slot,
    pub transactions: Vec<VerifiedTx>,
    pub ids: HashSet<TxId>,
}

/// The round this server is beta of.
#[derive(Debug)]
struct BetaRound {
    slot: Slot,
    hash: Hash,
    transactions: usize,
    votes: BTreeMap<ServerId, Hash>,
    deadline: Millis,
}

/// A transaction kept through a blackout for the alpha of `slot`.
#[derive(Debug)]
pub(super) struct Held {
    pub tx: VerifiedTx,
    pub slot: Slot,
}

/// What this server remembers of a transaction it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Expected in the round of `slot`.
    Pending { slot: Slot },
    /// Its round committed without it.
    Lost { slot: Slot },
}

/// The ledger state machine. See the module documentation.
pub struct Core {
    pub(super) me: ServerId,
    pub(super) servers: ServerList,
    pub(super) schedule: Schedule,
    pub(super) working: Arc<Balances>,
    committed: Committed,
    applied: VecDeque<AppliedRound>,
    pub(super) pending: Option<Pending>,
    /// The last slot whose window this server opened as alpha.
    opened_through: Option<Slot>,
    beta: Option<BetaRound>,
    pub(super) held: Vec<Held>,
    /// The last consensus announced in a RESULT: pushes must match it.
    consensus: Option<(Slot, Hash)>,
    /// The highest slot of a round applied or closed here.
    highest_round: Option<Slot>,
    pub(super) synced: bool,
    /// What the connector last reported of each other server: alive
    /// (true) or failed (false). Payments are not forwarded to a failed one.
    pub(super) peers: BTreeMap<ServerId, bool>,
    pub(super) tracked: HashMap<TxId, Tracked>,
    role: &'static str,
    stopped: bool,
}

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
    /// A core resuming from `committed`. `synced` is whether it may take
    /// payments and build blocks at once (a single server always may).
    pub fn new(
        me: ServerId,
        servers: ServerList,
        schedule: Schedule,
        committed: Committed,
    ) -> Core {
        let synced = servers.len() == 1;
        Core {
            me,
            working: committed.snapshot.clone(),
            servers,
            schedule,
            committed,
            applied: VecDeque::new(),
            pending: None,
            opened_through: None,
            beta: None,
            held: Vec::new(),
            consensus: None,
            highest_round: None,
            synced,
            peers: BTreeMap::new(),
            tracked: HashMap::new(),
            role: "follower",
            stopped: false,
        }
    }

    pub fn committed(&self) -> &Committed {
        &self.committed
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Payments waiting in this server's open round.
    pub fn pending_count(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.transactions.len())
    }

    /// Transactions held through a blackout.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    pub fn tracked(&self, id: &TxId) -> Option<Tracked> {
        self.tracked.get(id).copied()
    }

    /// This server's role at `now`: alpha while its window is open, beta from
    /// its close until the next close, both at once on a one-server chain.
    pub fn role_at(&self, now: Millis) -> &'static str {
        let slot = self.schedule.slot_at(now);
        let open = self.schedule.window_open(now);
        let alpha = self.schedule.alpha(slot) == self.me && open;
        let beta = (self.schedule.alpha(slot) == self.me && !open)
            || (slot > 0 && self.schedule.alpha(slot - 1) == self.me && open);
        match (alpha, beta) {
            (true, true) => "alpha+beta",
            (true, false) => "alpha",
            (false, true) => "beta",
            (false, false) => "follower",
        }
    }

    /// The next moment the core needs a tick: a window opening or closing,
    /// a vote deadline.
    pub fn next_deadline(&self, now: Millis) -> Millis {
        let slot = self.schedule.slot_at(now);
        let mut next = self.schedule.start(slot + 1);
        let close = self.schedule.close(slot);
        if close > now {
            next = next.min(close);
        }
        if let Some(pending) = &self.pending {
            next = next.min(self.schedule.close(pending.slot));
        }
        if let Some(beta) = &self.beta {
            next = next.min(beta.deadline);
        }
        next.max(now + 1)
    }

    /// Advances time: closes this server's round at its blackout, decides a
    /// round at its vote deadline, hands held transactions to the next alpha,
    /// opens this server's window.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.stopped {
            return actions;
        }
        if let Some(pending) = &self.pending
            && now >= self.schedule.close(pending.slot)
        {
            actions.extend(self.close_round());
        }
        if let Some(beta) = &self.beta
            && now >= beta.deadline
        {
            actions.extend(self.decide());
        }
        actions.extend(self.release_held(now));
        self.open_window(now);
        let role = self.role_at(now);
        if role != self.role {
            self.role = role;
            actions.push(Action::Publish(Event::Role {
                role,
                slot: self.schedule.slot_at(now),
            }));
        }
        let current = self.schedule.slot_at(now);
        self.tracked.retain(|_, t| match t {
            Tracked::Pending { slot } | Tracked::Lost { slot } => *slot + TRACK_SLOTS > current,
        });
        actions
    }

    /// Opens this server's alpha window for the slot of `now` if it is the
    /// alpha, the window is open, and it is in sync.
    pub(super) fn open_window(&mut self, now: Millis) {
        let slot = self.schedule.slot_at(now);
        let already = self.opened_through.is_some_and(|s| s >= slot)
            || self.highest_round.is_some_and(|s| s >= slot);
        if self.pending.is_none()
            && !already
            && self.synced
            && self.schedule.alpha(slot) == self.me
            && self.schedule.window_open(now)
        {
            self.pending = Some(Pending {
                slot,
                ..Pending::default()
            });
            self.opened_through = Some(slot);
            // The working database still shares its records with the last
            // snapshot; copy them now rather than in the first payment's path.
            Arc::make_mut(&mut self.working);
        }
    }

    /// The alpha's blackout: its payments become ROUND(s) and it becomes the
    /// beta of round `s`.
    fn close_round(&mut self) -> Vec<Action> {
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

    /// Refuses a message for a slot too far from this server's clock.
    pub(super) fn check_fresh(
        &self,
        what: &str,
        slot: Slot,
        now: Millis,
        late: u64,
    ) -> Result<(), String> {
        let current = self.schedule.slot_at(now);
        if slot > current + 1 {
            Err(format!(
                "{what} for slot {slot} is from the future: this server is at slot {current}"
            ))
        } else if slot + late < current {
            Err(format!(
                "{what} for slot {slot} is stale: this server is at slot {current}"
            ))
        } else {
            Ok(())
        }
    }

    fn check_sender(&self, what: &str, slot: Slot, from: ServerId) -> Result<(), String> {
        let expected = self.schedule.alpha(slot);
        if from == expected {
            Ok(())
        } else {
            Err(format!(
                "{what} for slot {slot} must come from server {expected}, not server {from}"
            ))
        }
    }

    /// ROUND(s) from the beta: apply its payments and vote.
    pub fn on_round(
        &mut self,
        from: ServerId,
        slot: Slot,
        claimed: Hash,
        transactions: Vec<VerifiedTx>,
        now: Millis,
    ) -> Result<Vec<Action>, String> {
        self.check_sender("round", slot, from)?;
        self.check_fresh("round", slot, now, 1)?;
        if let Some(highest) = self.highest_round
            && slot <= highest
        {
            return Err(format!(
                "round {slot} refused: round {highest} was already applied here \
                 (a replayed or late round)"
            ));
        }
        if from == self.me {
            return Err(format!("round {slot} claims to come from this server"));
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

    /// VOTE(s) from a server, for the round this server is beta of.
    pub fn on_vote(
        &mut self,
        from: ServerId,
        slot: Slot,
        hash: Hash,
    ) -> Result<Vec<Action>, String> {
        let Some(beta) = self.beta.as_mut().filter(|b| b.slot == slot) else {
            return Err(format!("no vote is open here for round {slot}"));
        };
        if beta.votes.contains_key(&from) {
            return Err(format!("server {from} already voted in round {slot}"));
        }
        beta.votes.insert(from, hash);
        if beta.votes.len() == self.servers.len() {
            return Ok(self.decide());
        }
        Ok(Vec::new())
    }

    /// The beta's decision on its round.
    fn decide(&mut self) -> Vec<Action> {
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
            actions.push(self.round_event(slot, "no-majority", decision, beta.transactions));
            actions.push(self.stop(reason));
            return actions;
        };
        self.consensus = Some((slot, hash));
        if beta.hash == hash {
            log::info!(
                "round {slot}: consensus {agreeing}/{voters} on {}",
                hash.short()
            );
            actions.push(self.round_event(slot, "consensus", decision, beta.transactions));
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
            actions.push(self.round_event(slot, "out-of-sync", decision, beta.transactions));
            actions.extend(self.lose_sync(format!(
                "round {slot}: the majority holds {}, this server {}",
                hash.short(),
                beta.hash.short()
            )));
        }
        actions
    }

    fn round_event(
        &self,
        slot: Slot,
        outcome: &'static str,
        d: Decision,
        transactions: usize,
    ) -> Action {
        Action::Publish(Event::Round {
            slot,
            outcome,
            hash: d.consensus,
            agreeing: d.agreeing,
            voters: d.voters,
            transactions,
            beta: self.schedule.alpha(slot),
        })
    }

    /// RESULT(s) from the beta of round `s`.
    pub fn on_result(
        &mut self,
        from: ServerId,
        slot: Slot,
        decision: Decision,
        now: Millis,
    ) -> Result<Vec<Action>, String> {
        self.check_sender("result", slot, from)?;
        self.check_fresh("result", slot, now, 2)?;
        if let Some((last, _)) = self.consensus
            && slot <= last
        {
            return Err(format!(
                "result for round {slot} refused: round {last} was already decided"
            ));
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
                self.round_event(slot, "no-majority", decision, transactions),
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
            let mut actions = vec![self.round_event(slot, "consensus", decision, transactions)];
            actions.extend(self.commit_through(slot));
            Ok(actions)
        } else {
            let mut actions = vec![self.round_event(slot, "out-of-sync", decision, transactions)];
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
    fn commit_through(&mut self, slot: Slot) -> Vec<Action> {
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
            actions.push(Action::Commit(Commit {
                slot: round.slot,
                hash: round.hash,
                snapshot: round.snapshot,
                block: self.synced && !round.transactions.is_empty(),
                transactions: round.transactions,
                installed: false,
            }));
        }
        if self.committed.slot < slot {
            self.committed.slot = slot;
            actions.push(Action::Commit(Commit {
                slot,
                hash: self.committed.hash,
                snapshot: self.committed.snapshot.clone(),
                transactions: Vec::new(),
                block: false,
                installed: false,
            }));
        }
        for (id, tracked) in self.tracked.iter_mut() {
            if let Tracked::Pending { slot: expected } = *tracked
                && expected <= slot
            {
                *tracked = Tracked::Lost { slot: expected };
                actions.push(Action::Publish(Event::Tx {
                    id: *id,
                    state: "lost",
                    alpha: self.schedule.alpha(expected),
                }));
            }
        }
        actions
    }

    /// This server does not hold the consensus state.
    fn lose_sync(&mut self, reason: String) -> Vec<Action> {
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
    ) -> Result<Vec<Action>, String> {
        self.check_sender("push", slot, from)?;
        self.check_fresh("push", slot, now, 2)?;
        let Some((decided, hash)) = self.consensus.filter(|(s, _)| *s == slot) else {
            return Err(format!(
                "push for round {slot} refused: no result for it here"
            ));
        };
        if self.committed.hash == hash && self.committed.slot >= decided {
            return Ok(Vec::new());
        }
        let mut balances = Balances::from_packed(packed).map_err(|e| format!("push: {e}"))?;
        let got = balances.hash();
        if got != hash {
            return Err(format!(
                "push for round {slot} refused: its hash {got} is not the consensus {hash}"
            ));
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
        let mut actions = vec![Action::Commit(Commit {
            slot: self.committed.slot,
            hash,
            snapshot,
            transactions: Vec::new(),
            block: false,
            installed: true,
        })];
        actions.extend(self.reapply_pending());
        actions
    }

    /// The connector's word on another server: alive or failed.
    pub fn set_peer_alive(&mut self, id: ServerId, alive: bool) {
        self.peers.insert(id, alive);
    }

    /// The connector's view of the other servers, for `I`.
    pub fn peers(&self) -> &BTreeMap<ServerId, bool> {
        &self.peers
    }

    /// The connector's verdict: in sync (sampling) or not.
    pub fn set_synced(&mut self, synced: bool, now: Millis) {
        self.synced = synced;
        if synced {
            self.open_window(now);
        }
    }

    /// Checks the open round's payments again after the database under them
    /// changed, dropping those no longer valid.
    fn reapply_pending(&mut self) -> Vec<Action> {
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
                    state: "lost",
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

    fn stop(&mut self, reason: String) -> Action {
        self.stopped = true;
        Action::Stop(reason)
    }
}

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
//! The beta decides ([`Core::decide`]) when every server has voted or at the
//! vote deadline: a hash reported by a majority of all servers (floor(N/2)+1,
//! the beta included) is the consensus. It broadcasts RESULT(s) and, if it
//! holds the consensus state, commits and pushes its packed database to each
//! server that disagreed or did not vote. Without a majority it broadcasts a
//! failed RESULT(s) and stops; so does every server that receives one.
//!
//! A server whose state after round `s` matches RESULT(s) commits it
//! ([`Core::on_result`]): the applied rounds up to `s` leave memory for disk,
//! and each with payments becomes a block. A server that does not match is out of sync: it drops its
//! applied rounds, tells its connector, and waits for a push or a fetch.
//!
//! ## Where each step lives
//!
//! | step | file |
//! |---|---|
//! | the struct, [`Core::tick`], deadlines, [`Role`] | `core/mod.rs` |
//! | take a payment, forward it, hold it ([`Core::submit`]) | `core/accept.rs` |
//! | close the round, collect votes, decide ([`Core::on_vote`], [`Core::decide`]) | `core/beta.rs` |
//! | apply a round, take a result, take a push, install ([`Core::on_round`], [`Core::on_result`], [`Core::on_push`], [`Core::install`]) | `core/follower.rs` |
//! | what a step hands back ([`Action`], [`Target`], [`Commit`], [`Committed`]) | `core/action.rs` |
//! | why input is refused ([`Refusal`] for payments, [`PeerRefusal`] for peer messages) | `core/refusal.rs` |
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

// The essay above links to the private steps (decide, commit_through) so that a
// reader finds them from here; the links resolve with --document-private-items.
#![allow(rustdoc::private_intra_doc_links)]

mod accept;
mod action;
mod beta;
mod follower;
mod refusal;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{Decision, PeerCommand, ServerList};
use rota_peer::{Hash, Millis, ServerId, Slot, TxId};
use serde::{Deserialize, Serialize};

pub use self::action::{Action, Commit, Committed, Persist, Target};
use self::beta::BetaRound;
pub use self::refusal::{PeerRefusal, Refusal};
use crate::events::{Event, Outcome};

/// A round's payments as its alpha sent them, every signature checked:
/// what the consensus machine carries and the journal keeps.
pub type Payments = Arc<[VerifiedTx]>;

/// The most payments one round may carry; a ROUND of this many is 28 MB.
pub const MAX_ROUND_TRANSACTIONS: usize = 200_000;

/// The most transactions a server holds through a blackout.
pub const MAX_HELD: usize = 100_000;

/// How many slots a transaction's status is remembered after its round.
const TRACK_SLOTS: u64 = 1_000;

/// This server's part in the schedule at a moment: the words are those of
/// `I` and of the `role` event (PROTOCOL.md §4.1, §6, §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Its alpha window is open: it takes payments into its round.
    #[serde(rename = "alpha")]
    Alpha,
    /// From the close of its window until the next close: it decides the
    /// round it closed.
    #[serde(rename = "beta")]
    Beta,
    /// Both at once: on a one-server chain the alpha of each slot is also the
    /// beta of the last.
    #[serde(rename = "alpha+beta")]
    AlphaBeta,
    /// Neither: it applies the rounds of others and votes.
    #[serde(rename = "follower")]
    Follower,
}

impl Role {
    /// The role's word, as `I` and the `role` event spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Alpha => "alpha",
            Role::Beta => "beta",
            Role::AlphaBeta => "alpha+beta",
            Role::Follower => "follower",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A round applied to the database and voted on, not yet decided.
#[derive(Clone, Debug)]
struct AppliedRound {
    slot: Slot,
    transactions: Vec<VerifiedTx>,
    hash: Hash,
    snapshot: Arc<Balances>,
}

/// This server's open alpha window.
#[derive(Debug, Default)]
struct Pending {
    slot: Slot,
    transactions: Vec<VerifiedTx>,
    ids: HashSet<TxId>,
}

/// A transaction kept through a blackout for the alpha of `slot`.
#[derive(Debug)]
struct Held {
    tx: VerifiedTx,
    slot: Slot,
}

/// What this server remembers of a transaction it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Expected in the round of `slot`.
    Pending { slot: Slot },
    /// The round of `slot` was decided without it (`S` names that slot).
    Lost { slot: Slot },
}

/// The ledger state machine. See the module documentation.
pub struct Core {
    pub(super) me: ServerId,
    pub(super) servers: ServerList,
    pub(super) schedule: Schedule,
    working: Arc<Balances>,
    committed: Committed,
    applied: VecDeque<AppliedRound>,
    pending: Option<Pending>,
    /// The last slot whose window this server opened as alpha.
    opened_through: Option<Slot>,
    beta: Option<BetaRound>,
    held: Vec<Held>,
    /// The last consensus announced in a RESULT: pushes must match it.
    consensus: Option<(Slot, Hash)>,
    /// The highest slot of a round applied or closed here.
    highest_round: Option<Slot>,
    synced: bool,
    /// What the connector last reported of each other server: alive
    /// (true) or failed (false). Payments are not forwarded to a failed one.
    peers: BTreeMap<ServerId, bool>,
    /// The payments this server took, until their fate is known and
    /// TRACK_SLOTS after. Ordered by id, so that the events a commit
    /// publishes for them leave in the same order on every run and every
    /// server (a hash map would hand them out in a random order).
    tracked: BTreeMap<TxId, Tracked>,
    role: Role,
    stopped: bool,
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
            tracked: BTreeMap::new(),
            role: Role::Follower,
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
    pub fn role_at(&self, now: Millis) -> Role {
        let slot = self.schedule.slot_at(now);
        let open = self.schedule.window_open(now);
        let alpha = self.schedule.alpha(slot) == self.me && open;
        let beta = (self.schedule.alpha(slot) == self.me && !open)
            || (slot > 0 && self.schedule.alpha(slot - 1) == self.me && open);
        match (alpha, beta) {
            (true, true) => Role::AlphaBeta,
            (true, false) => Role::Alpha,
            (false, true) => Role::Beta,
            (false, false) => Role::Follower,
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
    fn open_window(&mut self, now: Millis) {
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

    /// Refuses a message for a slot too far from this server's clock.
    fn check_fresh(
        &self,
        command: PeerCommand,
        slot: Slot,
        now: Millis,
        late: u64,
    ) -> Result<(), PeerRefusal> {
        let current = self.schedule.slot_at(now);
        if slot > current + 1 {
            Err(PeerRefusal::Future {
                command,
                slot,
                current,
            })
        } else if slot.saturating_add(late) < current {
            Err(PeerRefusal::Stale {
                command,
                slot,
                current,
            })
        } else {
            Ok(())
        }
    }

    /// Refuses a round, result or push that does not come from the beta of
    /// its slot (the alpha that closed it).
    fn check_sender(
        &self,
        command: PeerCommand,
        slot: Slot,
        from: ServerId,
    ) -> Result<(), PeerRefusal> {
        let expected = self.schedule.alpha(slot);
        if from == expected {
            Ok(())
        } else {
            Err(PeerRefusal::NotFromBeta {
                command,
                slot,
                expected,
                from,
            })
        }
    }

    /// The `round` event for a decided round: published by the beta when it
    /// decides and by every other server when its RESULT arrives.
    fn round_event(
        &self,
        slot: Slot,
        outcome: Outcome,
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

    /// Consensus is gone: the core takes no further step.
    fn stop(&mut self, reason: String) -> Action {
        self.stopped = true;
        Action::Stop(reason)
    }
}

//! The ledger core: payments and consensus rounds as a pure state machine.
//!
//! [`Core`] owns the balance database in memory and everything a round needs.
//! It is driven by the ledger thread with a message or a tick and the current
//! time, and answers with [`Action`]s: messages to send, records and commits
//! to persist, events to publish, or a stop. It reads no clock, touches no
//! socket or file and draws no random number, so tests drive it
//! deterministically.
//!
//! ## A round
//!
//! The alpha of slot `s` accepts payments into `pending` until `close(s)`.
//! Then it closes the round: it hands the payments to the consensus machine
//! (`ledger/consensus`), which builds ROUND(s) on its lock or the committed
//! state, signs its header, and sends it with the payments to every server.
//! From there the machine runs the round protocol of docs/CONSENSUS.md:
//! every server prevotes and precommits what the rules allow, and q =
//! floor(N/2)+1 precommits commit the round and every round of its header
//! chain. The core carries out what the machine asks ([`Core::consensus`]):
//! each record it must remember becomes a [`Persist::Consensus`], durable
//! before the next message leaves; each commit becomes a
//! [`Persist::Commit`] with a block per round; a round it lacks becomes a
//! `want` to every server.
//!
//! Applying payments is the ledger's part of the protocol ([`States`]): a
//! round applies on its base, and is valid only if every payment applies
//! there, the same answer on every server; the alpha puts only those in
//! its round.
//!
//! ## Where each step lives
//!
//! | step | file |
//! |---|---|
//! | the struct, [`Core::tick`], deadlines, [`Role`] | `core/mod.rs` |
//! | take a payment, forward it, hold it ([`Core::submit`]) | `core/accept.rs` |
//! | close a round, take protocol messages, commit, install ([`Core::on_consensus`], [`Core::install`]) | `core/rounds.rs` |
//! | the states rounds leave, the [`Ledger`](crate::ledger::consensus::Ledger) the machine applies through ([`States`]) | `core/states.rs` |
//! | what a step hands back ([`Action`], [`Target`], [`Commit`], [`Committed`]) | `core/action.rs` |
//! | why input is refused ([`Refusal`] for payments, [`PeerRefusal`] for peer messages) | `core/refusal.rs` |
//!
//! ## Caveats
//!
//! Blocks are built only while the connector reports this server in sync,
//! because a server that just installed a database lacks the blocks before it;
//! its connector fetches them. Refusing to accept payments while out of sync
//! means a lagging alpha's slot carries no payments; they are held or refused
//! with a reason, never silently lost.

mod accept;
mod action;
mod refusal;
mod rounds;
pub mod sealing;
mod states;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use rota_peer::balances::Balances;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::{Certified, SignedHeader, Verified};
use rota_peer::wire::{PeerCommand, ServerList};
use rota_peer::{Hash, Millis, ServerId, Slot, TxId};
use serde::{Deserialize, Serialize};

pub use self::action::{Action, Commit, Committed, CommittedRound, Persist, Target};
pub use self::refusal::{PeerRefusal, Refusal};
pub use self::sealing::Sealing;
pub use self::states::{Kept, States, apply_round};
use crate::events::Event;
use crate::ledger::consensus::{self, Machine, Record};

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
    /// From the close of its window until the next close: its round is
    /// being voted on.
    #[serde(rename = "beta")]
    Beta,
    /// Both at once: on a one-server chain the alpha of each slot is also the
    /// beta of the last.
    #[serde(rename = "alpha+beta")]
    AlphaBeta,
    /// Neither: it votes on the rounds of others.
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
    /// Not in the round of `slot`: a commit through slot `decided` left it
    /// out (or it never reached a round); `S` names `decided`.
    Lost { slot: Slot, decided: Slot },
}

/// The ledger state machine. See the module documentation.
pub struct Core {
    pub(super) me: ServerId,
    pub(super) servers: ServerList,
    pub(super) schedule: Schedule,
    /// The round protocol's part of this server.
    machine: Machine<Payments>,
    /// The committed state and the states of the rounds above it.
    states: States,
    /// The committed state, as queries and heartbeats report it.
    committed: Committed,
    /// The commit certificate that vouches for `committed`; none for the
    /// anchor (the genesis, or the state the chain started this protocol
    /// from), which every server holds alike.
    certified: Option<Verified<Certified>>,
    /// The database the open window's payments are checked against: the
    /// state its round will build on, with the payments taken so far.
    working: Arc<Balances>,
    pending: Option<Pending>,
    /// The last slot whose window this server opened as alpha.
    opened_through: Option<Slot>,
    held: Vec<Held>,
    synced: bool,
    /// This server's clock skew against the live servers' median, when it
    /// is past the tolerance: it opens no alpha window then.
    sitting_out: Option<i64>,
    /// What the connector last reported of each other server: alive
    /// (true) or failed (false). Payments are not forwarded to a failed one.
    peers: BTreeMap<ServerId, bool>,
    /// The other servers whose hellos say they sit their alpha slots out:
    /// payments are not forwarded or held for them either.
    sitting: BTreeSet<ServerId>,
    /// The payments this server took, until their fate is known and
    /// TRACK_SLOTS after. Ordered by id, so that the events a commit
    /// publishes for them leave in the same order on every run and every
    /// server (a hash map would hand them out in a random order).
    tracked: BTreeMap<TxId, Tracked>,
    /// The slot `tracked` was last pruned at.
    tracked_pruned: Slot,
    role: Role,
    stopped: bool,
    /// The last committed rounds, to answer `want`s for them.
    recent: VecDeque<(Verified<SignedHeader>, Payments)>,
    /// The `want`s answered this slot (`wants_slot`), each once.
    wants: HashSet<(ServerId, Hash)>,
    wants_slot: Slot,
}

impl Core {
    /// The committed blocks waiting for their seals, and the seals found.
    pub fn sealing(&self) -> &Sealing {
        &self.states.sealing
    }

    pub fn sealing_mut(&mut self) -> &mut Sealing {
        &mut self.states.sealing
    }

    /// A core resuming from `committed`, vouched for by `certified` (none
    /// for the anchor), with the consensus records this server kept
    /// (`records`, replayed into its machine). `synced` is whether it may
    /// take payments and build blocks at once (a single server always may).
    pub fn new(
        config: consensus::Config,
        committed: Committed,
        certified: Option<Verified<Certified>>,
        records: Vec<Record<Payments>>,
    ) -> rota_peer::Result<Core> {
        let schedule = config.timing.schedule;
        let base = match &certified {
            Some(c) => consensus::Committed::round(c.clone(), schedule.shape()),
            None => consensus::Committed::anchor(committed.slot, committed.hash),
        };
        let mut states = States::new(schedule, base.base.digest, committed.snapshot.clone());
        states
            .sealing
            .committed(base.base.sealed, base.base.chain.height, []);
        let (me, servers) = (config.me, config.servers.clone());
        let machine = Machine::restore(config, base, records)?;
        Ok(Core {
            me,
            working: committed.snapshot.clone(),
            synced: servers.len() == 1,
            sitting_out: None,
            servers,
            schedule,
            machine,
            states,
            committed,
            certified,
            pending: None,
            opened_through: None,
            held: Vec::new(),
            peers: BTreeMap::new(),
            sitting: BTreeSet::new(),
            tracked: BTreeMap::new(),
            tracked_pruned: 0,
            role: Role::Follower,
            stopped: false,
            recent: VecDeque::new(),
            wants: HashSet::new(),
            wants_slot: 0,
        })
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
    /// a moment of the round protocol (a P(s), a round held until its close).
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
        if let Some(at) = self.machine.next_deadline(now) {
            next = next.min(at);
        }
        next.max(now + 1)
    }

    /// Advances time: closes this server's round at its blackout, lets the
    /// round protocol act on the moments that passed, hands held
    /// transactions to the next alpha, opens this server's window.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.stopped {
            return actions;
        }
        if let Some(pending) = &self.pending
            && now >= self.schedule.close(pending.slot)
        {
            actions.extend(self.close_round(now));
        }
        let outputs = self.machine.tick(now, &mut self.states);
        actions.extend(self.carry_out(outputs));
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
        // Once a slot: a tick comes after every batch of requests, and a
        // pass over every payment tracked each time made taking N payments
        // cost N squared.
        let current = self.schedule.slot_at(now);
        if current > self.tracked_pruned {
            self.tracked_pruned = current;
            self.tracked.retain(|_, t| match t {
                Tracked::Pending { slot } | Tracked::Lost { slot, .. } => {
                    *slot + TRACK_SLOTS > current
                }
            });
        }
        actions
    }

    /// Opens this server's alpha window for the slot of `now` if it is the
    /// alpha, the window is open, and it is in sync.
    fn open_window(&mut self, now: Millis) {
        let slot = self.schedule.slot_at(now);
        let already = self.opened_through.is_some_and(|s| s >= slot)
            || self.machine.proposed().is_some_and(|s| s >= slot);
        if self.pending.is_none()
            && !already
            && self.synced
            && self.sitting_out.is_none()
            && self.schedule.alpha(slot) == self.me
            && self.schedule.window_open(now)
        {
            self.pending = Some(Pending {
                slot,
                ..Pending::default()
            });
            self.opened_through = Some(slot);
            // Payments are checked against the state the round will most
            // likely build on: the lock's, when its state is here, else the
            // committed one. The round applies them again on its real base
            // at its close, and leaves out any that no longer pay: a round
            // carrying one is invalid.
            let base = self
                .machine
                .lock()
                .filter(|lock| lock.header.slot() > self.committed.slot)
                .and_then(|lock| self.states.balances(&lock.header.digest()))
                .unwrap_or(&self.committed.snapshot);
            self.working = Arc::new(Balances::clone(base));
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

    /// Server `id` (another) says it sits its alpha slots out, or no longer.
    pub fn set_peer_sitting_out(&mut self, id: ServerId, sitting_out: bool) {
        if sitting_out {
            self.sitting.insert(id);
        } else {
            self.sitting.remove(&id);
        }
    }

    /// The other servers that say they sit their alpha slots out.
    pub fn peers_sitting_out(&self) -> &BTreeSet<ServerId> {
        &self.sitting
    }

    /// The connector's clock verdict: this server's skew when it is past
    /// the tolerance (it sits out its alpha windows), `None` otherwise.
    pub fn set_sitting_out(&mut self, skew: Option<i64>) {
        self.sitting_out = skew;
    }

    /// This server's skew, while it sits out its alpha windows.
    pub fn sitting_out(&self) -> Option<i64> {
        self.sitting_out
    }

    /// Consensus is gone: the core takes no further step.
    fn stop(&mut self, reason: String) -> Action {
        self.stopped = true;
        Action::Stop(reason)
    }
}

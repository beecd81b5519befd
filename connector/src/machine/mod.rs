//! The connector's state machine, with no sockets and no clock.
//!
//! ```text
//!   connecting --> hash-compare --> sampling
//!                    ^      |          |
//!                    |      v          | out of consensus
//!                  fetch-snapshot <----+ (via hash-compare)
//! ```
//!
//! Each state is a variant of `Phase` that carries what only that state
//! needs, so a field cannot be read in a state that never filled it; the
//! fieldless [`State`] is what leaves the machine and names the state.
//! Entering a state is one function each (`connect`, `enter_hash_compare`,
//! `enter_fetch`, `enter_sampling`), which sets the state's starting data.
//!
//! - **connecting** `{ backoff }`: send a signed `register` to every other
//!   server, again after `backoff` (doubling, up to eight heartbeats) to
//!   those that do not answer; go on once the servers that answered make a
//!   majority together with this one (at once when N = 1).
//! - **hash-compare** `{ asked_at, retry }`: ask every server for its
//!   committed state (slot, balance hash, height, last block id); only
//!   answers that came at or after `asked_at` count, and the servers that
//!   have not answered are asked again after `retry` (20 ms, doubling)
//!   until the round is due a heartbeat after `asked_at`. If a majority holds this server's balance hash, no
//!   more blocks and no later committed slot, go to sampling; if a majority
//!   holds another hash, more blocks, or the same state at a later slot
//!   (rounds without payments this server missed), go to fetch-snapshot
//!   with that majority's state as the target; without a majority, ask
//!   again.
//! - **fetch-snapshot** `{ target, fetching }`: the `target` is the state a
//!   majority holds and a server of that majority to fetch from; `fetching`
//!   says which step is under way. Fetch the packed database (unless the hash
//!   already matches) with the first few missing blocks, hand it to the
//!   ledger, which checks the hash again and installs it, then the blocks
//!   held meanwhile, then fetch the rest one window at a time, then back to
//!   hash-compare. This state lives in `machine/fetch.rs`.
//! - **sampling** `{ behind }`: heartbeats to every server every
//!   `heartbeat_ms`; a server that misses `missed_heartbeats` in a row is
//!   failed. When the live servers are fewer than a majority, consensus is
//!   impossible and the node stops. Leave for hash-compare when the ledger
//!   says it is out of sync, or when `behind` reaches two: two heartbeat
//!   rounds in a row showed a majority ahead of this server.
//!
//! What outlives a state stays on [`Machine`]: the other servers' liveness
//! and last status, this server's own status, and the next deadline. A
//! majority is always [`rota_peer::wire::majority`] of all servers.
//!
//! [`Machine::step`] takes an [`Input`] and the time and returns [`Output`]s.

pub mod clock;
mod compare;
mod fetch;

pub use clock::Clocks;
use fetch::{Fetching, Target};
use rota_peer::block::Block;
use rota_peer::wire::{Status, majority};
use rota_peer::{BlockNumber, Hash, Millis, ServerId, Slot};

/// The connector's states by name, without their data: what
/// [`Output::State`] reports and [`Machine::state`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    HashCompare,
    FetchSnapshot,
    Sampling,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::HashCompare => "hash-compare",
            State::FetchSnapshot => "fetch-snapshot",
            State::Sampling => "sampling",
        }
    }
}

/// Timings and the size of the network.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub me: ServerId,
    pub servers: usize,
    pub heartbeat_ms: u64,
    pub missed_heartbeats: u32,
    /// The payment timestamp tolerance: a clock further than this from the
    /// live servers' median sits out its alpha slots (`clock.rs`).
    pub tolerance_ms: u64,
}

impl Settings {
    /// The first wait before registrations are sent again: no longer than a
    /// heartbeat, so that short test heartbeats retry as fast.
    fn first_retry(&self) -> u64 {
        FIRST_RETRY_MS.min(self.heartbeat_ms)
    }

    /// How long to wait for an answer before giving a request up.
    fn request_timeout(&self) -> u64 {
        (self.heartbeat_ms * 2).max(2_000)
    }
}

/// A request the connector thread sends for the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Signed `register` carrying this server's status.
    Register(Status),
    /// Signed `heart` carrying this server's status.
    Heart(Status),
    /// `D`: the packed database.
    Database,
    /// `B`: one block.
    Block(BlockNumber),
}

/// An answer from a server, decoded and (for statuses) signature-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A status, with the answering server's clock when it answered and
    /// the echo of this server's clock in the request it answers.
    Status {
        status: Status,
        clock: Millis,
        echo: Millis,
        /// The answering server sits its alpha slots out (its hello's flag).
        sitting_out: bool,
    },
    Database {
        hash: Hash,
        slot: Slot,
        height: BlockNumber,
        /// The commit certificate's bytes (empty for the anchor); the
        /// ledger checks it before it installs anything.
        certified: Vec<u8>,
        packed: Vec<u8>,
    },
    Block(Block),
    /// An acknowledgement, a refusal, or an answer that did not check out.
    Refused(String),
}

/// What drives the machine.
#[derive(Clone, Debug)]
pub enum Input {
    /// Time has passed.
    Tick,
    /// A server answered.
    Answer { from: ServerId, answer: Answer },
    /// The ledger's committed state changed.
    Own(Status),
    /// The ledger no longer holds the consensus state.
    OutOfSync,
    /// Fetched blocks did not link: blocks from `from` on are needed.
    Fork { from: BlockNumber },
}

/// What the machine asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: ServerId,
        request: Request,
    },
    State(State),
    Peer {
        id: ServerId,
        alive: bool,
    },
    /// Another server started or stopped sitting its alpha slots out, as
    /// its hello says: no payment is forwarded or held for it meanwhile.
    SitsOut {
        id: ServerId,
        sitting_out: bool,
    },
    /// A database a majority holds, for the ledger to check and install.
    Install {
        slot: Slot,
        hash: Hash,
        /// The commit certificate's bytes, as the `D` reply carried them.
        certified: Vec<u8>,
        packed: Vec<u8>,
    },
    /// Blocks to append, in order.
    Blocks(Vec<Block>),
    /// The clocks as they stand, after each heartbeat round.
    Clocks(Clocks),
    /// Fewer servers alive than a majority: consensus is impossible.
    LostMajority {
        alive: usize,
        needed: usize,
    },
}

/// What this server knows of another's liveness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Liveness {
    /// Not heard from since this server started.
    #[default]
    Unknown,
    Alive,
    Failed,
}

#[derive(Clone, Debug, Default)]
struct Peer {
    registered: bool,
    liveness: Liveness,
    /// Heartbeats sent since the last answer.
    unanswered: u32,
    /// The last status received, with when.
    status: Option<(Status, Millis)>,
    /// Until when this server is neither fetched from nor believed about its
    /// blocks or its slot: a fetch from it failed. Its commit certificate
    /// vouches for its balance hash, so that still counts towards a
    /// majority.
    distrusted_until: Millis,
    /// How long the next distrust lasts: doubling with each fetch from it
    /// that times out, back to nothing when it delivers.
    distrust_ms: u64,
    /// Whether its last database answer was of another hash than asked.
    moved_on: bool,
    /// Whether its last hello said it sits its alpha slots out.
    sitting_out: bool,
}

/// The state the machine is in, with the data that only that state has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// How long to wait before registering again with the silent servers.
    Connecting { backoff: u64 },
    /// When this round's statuses were asked (older answers do not count),
    /// and how long until the silent servers are asked again.
    HashCompare { asked_at: Millis, retry: u64 },
    /// What a majority holds, and how far fetching it has come.
    FetchSnapshot { target: Target, fetching: Fetching },
    /// Heartbeat rounds in a row that found a majority ahead of this server.
    Sampling { behind: u32 },
}

impl Phase {
    /// The state's name, without its data: what leaves the machine.
    fn state(self) -> State {
        match self {
            Phase::Connecting { .. } => State::Connecting,
            Phase::HashCompare { .. } => State::HashCompare,
            Phase::FetchSnapshot { .. } => State::FetchSnapshot,
            Phase::Sampling { .. } => State::Sampling,
        }
    }
}

/// The first registration retry. A server just started sends its first
/// registrations before its connections are up, so those are lost; the
/// retries then back off, doubling, to eight heartbeats.
pub const FIRST_RETRY_MS: u64 = 20;

/// The connector state machine. See the module documentation.
pub struct Machine {
    settings: Settings,
    phase: Phase,
    peers: Vec<Peer>,
    own: Status,
    clocks: clock::Watch,
    /// When the current wait ends: a retry, a heartbeat, a timeout.
    deadline: Millis,
    started: bool,
    /// Blocks that came while fetch-snapshot fetched or installed the
    /// database (`fetch.rs`), for the ledger once it is installed; empty
    /// otherwise.
    early: Vec<Block>,
}

impl Machine {
    pub fn new(settings: Settings, own: Status) -> Machine {
        Machine {
            peers: vec![Peer::default(); settings.servers],
            phase: Phase::Connecting {
                backoff: settings.first_retry(),
            },
            clocks: clock::Watch::new(
                settings.servers,
                settings.tolerance_ms,
                settings.heartbeat_ms,
            ),
            settings,
            own,
            deadline: 0,
            started: false,
            early: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// When the machine next needs a tick.
    pub fn next_deadline(&self) -> Millis {
        self.deadline
    }

    /// Whether this server sits its alpha slots out, as its hellos say.
    pub fn sitting_out(&self) -> bool {
        self.clocks.sitting_out()
    }

    /// Live servers, this one included.
    pub fn alive(&self) -> usize {
        1 + self
            .others()
            .filter(|id| self.peers[id.index()].liveness == Liveness::Alive)
            .count()
    }

    /// The live servers as this server sees them, this one included,
    /// lowest first: what its hellos carry.
    pub fn live(&self) -> Vec<ServerId> {
        (0..self.settings.servers)
            .map(ServerId::from_index)
            .filter(|id| self.is_alive(*id))
            .collect()
    }

    /// Whether server `id` is alive as far as this server knows.
    pub fn is_alive(&self, id: ServerId) -> bool {
        id == self.settings.me
            || self
                .peers
                .get(id.index())
                .is_some_and(|p| p.liveness == Liveness::Alive)
    }

    fn others(&self) -> impl Iterator<Item = ServerId> + use<> {
        let me = self.settings.me;
        (0..self.settings.servers)
            .map(ServerId::from_index)
            .filter(move |id| *id != me)
    }

    /// Feeds one input at time `now`.
    pub fn step(&mut self, input: Input, now: Millis) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            log::info!("connector: {}", State::Connecting.name());
            out.push(Output::State(State::Connecting));
            self.connect(self.settings.first_retry(), now, &mut out);
        }
        match input {
            // Time: each state acts on its deadline.
            Input::Tick => {
                if now >= self.deadline {
                    self.on_deadline(now, &mut out);
                }
            }
            // An answer marks its sender alive, then means what the state says.
            Input::Answer { from, answer } => {
                if from.0 >= 1 && from != self.settings.me && from.index() < self.peers.len() {
                    self.on_answer(from, answer, now, &mut out);
                }
            }
            // The ledger's state moved on: carry on fetching, or confirm.
            Input::Own(status) => {
                self.own = status;
                match self.phase {
                    Phase::FetchSnapshot { target, fetching } => {
                        self.continue_fetch(target, fetching, now, &mut out);
                    }
                    // The next status sent carries it.
                    Phase::Connecting { .. }
                    | Phase::HashCompare { .. }
                    | Phase::Sampling { .. } => {}
                }
            }
            // The ledger fell out of consensus: find out what the others hold.
            Input::OutOfSync => match self.phase {
                // Hash-compare follows connecting anyway.
                Phase::Connecting { .. } => {}
                // The ledger refused the database the source sent: it did not
                // prove itself under its commit certificate.
                Phase::FetchSnapshot {
                    target,
                    fetching: Fetching::Installing { .. },
                } => {
                    self.distrust(target.source, now);
                    self.enter_hash_compare(now, &mut out);
                }
                Phase::HashCompare { .. }
                | Phase::FetchSnapshot { .. }
                | Phase::Sampling { .. } => {
                    self.enter_hash_compare(now, &mut out);
                }
            },
            // Fetched blocks did not link: fetch from further back.
            Input::Fork { from } => match self.phase {
                Phase::FetchSnapshot {
                    target,
                    fetching: Fetching::Blocks { .. },
                } => {
                    self.request_blocks(target, from, now, &mut out);
                }
                // No blocks went to the ledger since this fetch began (the
                // early ones wait for the install): a late report.
                Phase::FetchSnapshot {
                    fetching: Fetching::Database { .. } | Fetching::Installing { .. },
                    ..
                }
                | Phase::Connecting { .. }
                | Phase::HashCompare { .. }
                | Phase::Sampling { .. } => {}
            },
        }
        out
    }

    /// Reports a move to state `to`, if it is one; the caller then sets the
    /// new phase and does what the state does first.
    fn report(&self, to: State, out: &mut Vec<Output>) {
        let from = self.state();
        if to != from {
            log::info!("connector: {} -> {}", from.name(), to.name());
            out.push(Output::State(to));
        }
    }

    fn on_deadline(&mut self, now: Millis, out: &mut Vec<Output>) {
        match self.phase {
            Phase::Connecting { backoff } => {
                let backoff = (backoff * 2).min(self.settings.heartbeat_ms * 8);
                self.connect(backoff, now, out);
            }
            Phase::HashCompare { asked_at, retry } => {
                if now >= asked_at + self.settings.heartbeat_ms {
                    self.compare(asked_at, now, out);
                } else {
                    self.ask_silent(asked_at, retry, now, out);
                }
            }
            Phase::FetchSnapshot { target, fetching } => {
                // The source answered when the ledger is the one installing.
                if !matches!(fetching, Fetching::Installing { .. }) {
                    self.distrust(target.source, now);
                }
                self.enter_hash_compare(now, out);
            }
            Phase::Sampling { behind } => self.heartbeat(behind, now, out),
        }
    }

    /// Registers with the servers that have not answered yet, to try again
    /// after `backoff`, or goes on to hash-compare once a majority has.
    fn connect(&mut self, backoff: u64, now: Millis, out: &mut Vec<Output>) {
        self.phase = Phase::Connecting { backoff };
        if self.registered() + 1 >= majority(self.settings.servers) {
            self.enter_hash_compare(now, out);
            return;
        }
        for id in self.others() {
            if !self.peers[id.index()].registered {
                out.push(Output::Send {
                    to: id,
                    request: Request::Register(self.own),
                });
            }
        }
        self.deadline = now + backoff;
    }

    fn registered(&self) -> usize {
        self.others()
            .filter(|id| self.peers[id.index()].registered)
            .count()
    }

    fn enter_sampling(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.report(State::Sampling, out);
        self.phase = Phase::Sampling { behind: 0 };
        self.deadline = now + self.settings.heartbeat_ms;
    }

    /// A fetch from `source` failed: it timed out, the database it sent was
    /// refused, or it moved on twice in a row. Whatever its status claims
    /// about its blocks, it did not deliver them. Another holder is chosen
    /// until the distrust ends, so a server that claims blocks it never
    /// sends costs the others a timeout, and then a longer one each time.
    fn distrust(&mut self, source: ServerId, now: Millis) {
        let timeout = self.settings.request_timeout();
        let cap = self.settings.heartbeat_ms * 8;
        let Some(peer) = self.peers.get_mut(source.index()) else {
            return;
        };
        peer.distrust_ms = (peer.distrust_ms * 2).clamp(timeout, cap.max(timeout));
        peer.distrusted_until = now + peer.distrust_ms;
        log::warn!(
            "connector: a fetch from server {source} failed; fetching from another for {} ms",
            peer.distrust_ms
        );
    }

    /// Whether server `id`'s claims about its blocks are believed at `now`.
    fn trusted(&self, id: ServerId, now: Millis) -> bool {
        self.peers
            .get(id.index())
            .is_none_or(|p| now >= p.distrusted_until)
    }

    fn on_answer(&mut self, from: ServerId, answer: Answer, now: Millis, out: &mut Vec<Output>) {
        let peer = &mut self.peers[from.index()];
        let was_alive = peer.liveness == Liveness::Alive;
        peer.liveness = Liveness::Alive;
        peer.unanswered = 0;
        if !was_alive {
            log::info!("connector: server {from} is alive");
            out.push(Output::Peer {
                id: from,
                alive: true,
            });
        }
        match answer {
            Answer::Status {
                status,
                clock,
                echo,
                sitting_out,
            } => {
                let peer = &mut self.peers[from.index()];
                if std::mem::replace(&mut peer.sitting_out, sitting_out) != sitting_out {
                    log::info!(
                        "connector: server {from} {} its alpha slots",
                        if sitting_out {
                            "sits out"
                        } else {
                            "takes part in"
                        }
                    );
                    out.push(Output::SitsOut {
                        id: from,
                        sitting_out,
                    });
                }
                self.clocks.answered(from, clock, echo, now);
                self.review_clocks(now, out);
                self.on_status(from, status, now, out);
            }
            Answer::Database {
                hash,
                slot,
                certified,
                packed,
                ..
            } => self.on_database(from, hash, slot, (certified, packed), now, out),
            Answer::Block(block) => self.on_block(from, block, now, out),
            // Only a sign of life: an `E` reply does not say which request it
            // answers, and a fetch that gets no block times out.
            Answer::Refused(_) => {}
        }
    }

    /// A server's status: it is registered, and the status is kept for the
    /// hash-compare round or the heartbeat round that reads it.
    fn on_status(&mut self, from: ServerId, status: Status, now: Millis, out: &mut Vec<Output>) {
        let peer = &mut self.peers[from.index()];
        peer.registered = true;
        peer.status = Some((status, now));
        match self.phase {
            // Go on as soon as a majority is registered.
            Phase::Connecting { .. } => {
                if self.registered() + 1 >= majority(self.settings.servers) {
                    self.enter_hash_compare(now, out);
                }
            }
            // Decide early once every other server has answered this round.
            Phase::HashCompare { asked_at, .. } => {
                if self.statuses_since(asked_at).len() == self.settings.servers - 1 {
                    self.compare(asked_at, now, out);
                }
            }
            // Kept only: sampling reads it at its next heartbeat round.
            Phase::FetchSnapshot { .. } | Phase::Sampling { .. } => {}
        }
    }

    /// One heartbeat round in sampling: count the unanswered, send anew, and
    /// check that a majority is alive and not ahead.
    fn heartbeat(&mut self, behind: u32, now: Millis, out: &mut Vec<Output>) {
        self.send_heartbeats(now, out);
        self.deadline = now + self.settings.heartbeat_ms;
        let alive = self.alive();
        let needed = majority(self.settings.servers);
        if alive < needed {
            out.push(Output::LostMajority { alive, needed });
            return;
        }
        let behind = if self.majority_ahead(now) {
            behind + 1
        } else {
            0
        };
        self.phase = Phase::Sampling { behind };
        if behind >= 2 {
            log::info!("connector: a majority is ahead of this server");
            self.enter_hash_compare(now, out);
        }
    }

    /// Fails the servers that missed too many heartbeats, then sends every
    /// other server this round's heartbeat.
    fn send_heartbeats(&mut self, now: Millis, out: &mut Vec<Output>) {
        for id in self.others() {
            let peer = &mut self.peers[id.index()];
            // Counted before this round's heartbeat, which has not been missed
            // yet. A server never heard from fails the same way.
            if peer.liveness != Liveness::Failed
                && peer.unanswered >= self.settings.missed_heartbeats
            {
                peer.liveness = Liveness::Failed;
                log::warn!(
                    "connector: server {id} missed {} heartbeats: failed",
                    peer.unanswered
                );
                out.push(Output::Peer { id, alive: false });
            }
            peer.unanswered += 1;
            out.push(Output::Send {
                to: id,
                request: Request::Heart(self.own),
            });
        }
        if self.settings.servers > 1 {
            let clocks = self.clocks_now(now);
            out.push(Output::Clocks(clocks));
        }
    }

    /// Whether the statuses of the last two heartbeats show a majority with
    /// another state than this server's, at this server's slot or later.
    fn majority_ahead(&self, now: Millis) -> bool {
        let recent = now.saturating_sub(2 * self.settings.heartbeat_ms);
        let statuses = self.statuses_since(recent);
        self.majority_state(&statuses, now)
            .is_some_and(|t| !self.matches(&t) && t.status.slot >= self.own.slot)
    }
}

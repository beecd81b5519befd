//! The connector's state machine, with no sockets and no clock.
//!
//! ```text
//!   connecting --> hash-compare --> sampling
//!                    ^      |          |
//!                    |      v          | out of consensus
//!                  fetch-snapshot <----+ (via hash-compare)
//! ```
//!
//! - **connecting**: send a signed `register` to every other server, again
//!   with backoff to those that do not answer; go on once the servers that
//!   answered make a majority together with this one (at once when N = 1).
//! - **hash-compare**: ask every server for its committed state (slot,
//!   balance hash, height). If a majority holds this server's balance hash
//!   and no more blocks, go to sampling; if a majority holds another hash, or
//!   more blocks, go to fetch-snapshot; without a majority, ask again.
//! - **fetch-snapshot**: fetch the packed database from a server of that
//!   majority (unless the hash already matches), hand it to the ledger, which
//!   checks the hash again and installs it, then fetch the missing blocks one
//!   window at a time, then back to hash-compare.
//! - **sampling**: heartbeats to every server every `heartbeat_ms`; a server
//!   that misses `missed_heartbeats` in a row is failed. When the
//!   live servers are fewer than a majority, consensus is impossible and the
//!   node stops. Leave for hash-compare when the ledger says it is out of
//!   sync, or when two heartbeat rounds in a row show a majority ahead of
//!   this server.
//!
//! [`Machine::step`] takes an [`Input`] and the time and returns [`Output`]s.

use rota_peer::block::Block;
use rota_peer::wire::Status;
use rota_peer::{BlockNumber, Hash, Millis, ServerId, Slot};

/// The connector's states.
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
}

impl Settings {
    fn majority(&self) -> usize {
        self.servers / 2 + 1
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
    Status(Status),
    Database {
        hash: Hash,
        slot: Slot,
        height: BlockNumber,
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
    /// A database a majority holds, for the ledger to check and install.
    Install {
        slot: Slot,
        hash: Hash,
        packed: Vec<u8>,
    },
    /// Blocks to append, in order.
    Blocks(Vec<Block>),
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
}

/// What a majority holds, and who to fetch it from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    status: Status,
    source: ServerId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetching {
    /// Waiting for the database.
    Database,
    /// Waiting for the ledger to install it.
    Installing,
    /// Fetching blocks; `through` is the last block requested.
    Blocks { through: BlockNumber },
}

/// The first registration retry. A server just started sends its first
/// registrations before its connections are up, so those are lost; the
/// retries then back off, doubling, to eight heartbeats.
pub const FIRST_RETRY_MS: u64 = 100;

/// Blocks requested at once.
const BLOCK_WINDOW: u64 = 16;

/// The connector state machine. See the module documentation.
pub struct Machine {
    settings: Settings,
    state: State,
    peers: Vec<Peer>,
    own: Status,
    /// When the current wait ends: a retry, a heartbeat, a timeout.
    deadline: Millis,
    /// Backoff for registration retries.
    backoff: u64,
    /// When the current hash-compare round started.
    asked_at: Millis,
    target: Option<Target>,
    fetching: Fetching,
    /// Heartbeat rounds in a row that found this server behind a majority.
    behind: u32,
    started: bool,
}

impl Machine {
    pub fn new(settings: Settings, own: Status) -> Machine {
        Machine {
            peers: vec![Peer::default(); settings.servers],
            settings,
            state: State::Connecting,
            own,
            deadline: 0,
            backoff: FIRST_RETRY_MS.min(settings.heartbeat_ms),
            asked_at: 0,
            target: None,
            fetching: Fetching::Database,
            behind: 0,
            started: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the machine next needs a tick.
    pub fn next_deadline(&self) -> Millis {
        self.deadline
    }

    /// Live servers, this one included.
    pub fn alive(&self) -> usize {
        1 + self
            .others()
            .filter(|id| self.peers[id.index()].liveness == Liveness::Alive)
            .count()
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
            self.register(now, &mut out);
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
                if self.state == State::FetchSnapshot {
                    self.continue_fetch(now, &mut out);
                }
            }
            // The ledger fell out of consensus: find out what the others hold.
            Input::OutOfSync => {
                if self.state != State::Connecting {
                    self.enter(State::HashCompare, now, &mut out);
                }
            }
            // Fetched blocks did not link: fetch from further back.
            Input::Fork { from } => {
                if self.state == State::FetchSnapshot
                    && let Some(target) = self.target
                {
                    self.request_blocks(target.source, from, now, &mut out);
                }
            }
        }
        out
    }

    fn enter(&mut self, state: State, now: Millis, out: &mut Vec<Output>) {
        if state != self.state {
            log::info!("connector: {} -> {}", self.state.name(), state.name());
            out.push(Output::State(state));
        }
        self.state = state;
        match state {
            State::Connecting => self.register(now, out),
            State::HashCompare => self.ask_status(now, out),
            State::FetchSnapshot => self.start_fetch(now, out),
            State::Sampling => {
                self.behind = 0;
                self.deadline = now + self.settings.heartbeat_ms;
            }
        }
    }

    fn on_deadline(&mut self, now: Millis, out: &mut Vec<Output>) {
        match self.state {
            State::Connecting => {
                self.backoff = (self.backoff * 2).min(self.settings.heartbeat_ms * 8);
                self.register(now, out);
            }
            State::HashCompare => self.compare(now, out),
            State::FetchSnapshot => {
                log::warn!("connector: fetch timed out");
                self.enter(State::HashCompare, now, out);
            }
            State::Sampling => self.heartbeat(now, out),
        }
    }

    fn register(&mut self, now: Millis, out: &mut Vec<Output>) {
        if self.registered() + 1 >= self.settings.majority() {
            self.enter(State::HashCompare, now, out);
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
        self.deadline = now + self.backoff;
    }

    fn registered(&self) -> usize {
        self.others()
            .filter(|id| self.peers[id.index()].registered)
            .count()
    }

    fn ask_status(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.asked_at = now;
        for id in self.others() {
            out.push(Output::Send {
                to: id,
                request: Request::Heart(self.own),
            });
        }
        self.deadline = now + self.settings.heartbeat_ms;
        if self.settings.servers == 1 {
            self.compare(now, out);
        }
    }

    /// Statuses received since the current hash-compare round began.
    fn fresh_statuses(&self) -> Vec<(ServerId, Status)> {
        self.others()
            .filter_map(|id| {
                let (status, at) = self.peers[id.index()].status?;
                (at >= self.asked_at).then_some((id, status))
            })
            .collect()
    }

    /// The state a majority holds, if any: the balance hash held by a
    /// majority (this server counted), with the highest height among them and
    /// a server to fetch from.
    fn majority_state(&self, statuses: &[(ServerId, Status)]) -> Option<Target> {
        let mut hashes: Vec<Hash> = statuses.iter().map(|(_, s)| s.balance_hash).collect();
        hashes.push(self.own.balance_hash);
        hashes.sort();
        hashes.dedup();
        let needed = self.settings.majority();
        for hash in hashes {
            let holders: Vec<(ServerId, Status)> = statuses
                .iter()
                .filter(|(_, s)| s.balance_hash == hash)
                .copied()
                .collect();
            let count = holders.len() + usize::from(self.own.balance_hash == hash);
            if count < needed {
                continue;
            }
            let best = holders
                .iter()
                .max_by_key(|(id, s)| (s.height, std::cmp::Reverse(*id)))
                .copied();
            return match best {
                Some((source, status)) => Some(Target { status, source }),
                // Only this server holds it, and it is a majority (N = 1).
                None => Some(Target {
                    status: self.own,
                    source: self.settings.me,
                }),
            };
        }
        None
    }

    /// Decides a hash-compare round.
    fn compare(&mut self, now: Millis, out: &mut Vec<Output>) {
        let statuses = self.fresh_statuses();
        match self.majority_state(&statuses) {
            Some(target) if self.matches(&target) => self.enter(State::Sampling, now, out),
            Some(target) => {
                log::info!(
                    "connector: a majority holds {} at height {}, this server {} at height {}",
                    target.status.balance_hash.short(),
                    target.status.height,
                    self.own.balance_hash.short(),
                    self.own.height
                );
                self.target = Some(target);
                self.enter(State::FetchSnapshot, now, out);
            }
            // Decided early, when every server has answered: ask again only
            // when the round is due, or the servers would be asked as fast as
            // they answer.
            None if now < self.deadline => {}
            None => {
                log::info!(
                    "connector: no majority state among {} answers; asking again",
                    statuses.len()
                );
                self.ask_status(now, out);
            }
        }
    }

    fn matches(&self, target: &Target) -> bool {
        target.status.balance_hash == self.own.balance_hash
            && self.own.height >= target.status.height
    }

    fn start_fetch(&mut self, now: Millis, out: &mut Vec<Output>) {
        let target = self.target.expect("fetch-snapshot with a target");
        if target.status.balance_hash == self.own.balance_hash {
            self.fetching = Fetching::Installing;
            self.continue_fetch(now, out);
        } else {
            self.fetching = Fetching::Database;
            out.push(Output::Send {
                to: target.source,
                request: Request::Database,
            });
            self.deadline = now + self.settings.request_timeout();
        }
    }

    /// Moves the fetch on after the ledger reported its state.
    fn continue_fetch(&mut self, now: Millis, out: &mut Vec<Output>) {
        let Some(target) = self.target else {
            return;
        };
        match self.fetching {
            Fetching::Database => {}
            Fetching::Installing | Fetching::Blocks { .. } => {
                if self.own.balance_hash != target.status.balance_hash {
                    return;
                }
                if self.own.height >= target.status.height {
                    self.enter(State::HashCompare, now, out);
                    return;
                }
                let through = match self.fetching {
                    Fetching::Blocks { through } => through,
                    _ => self.own.height,
                };
                if self.own.height >= through {
                    self.request_blocks(target.source, self.own.height + 1, now, out);
                }
            }
        }
    }

    fn request_blocks(
        &mut self,
        source: ServerId,
        from: BlockNumber,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let Some(target) = self.target else {
            return;
        };
        let through = (from + BLOCK_WINDOW - 1).min(target.status.height.max(from));
        for number in from..=through {
            out.push(Output::Send {
                to: source,
                request: Request::Block(number),
            });
        }
        self.fetching = Fetching::Blocks { through };
        self.deadline = now + self.settings.request_timeout();
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
            Answer::Status(status) => {
                peer.registered = true;
                peer.status = Some((status, now));
                match self.state {
                    State::Connecting => {
                        if self.registered() + 1 >= self.settings.majority() {
                            self.enter(State::HashCompare, now, out);
                        }
                    }
                    State::HashCompare => {
                        if self.fresh_statuses().len() == self.settings.servers - 1 {
                            self.compare(now, out);
                        }
                    }
                    State::FetchSnapshot | State::Sampling => {}
                }
            }
            Answer::Database {
                hash, slot, packed, ..
            } => {
                let expected = self.target.map(|t| (t.source, t.status.balance_hash));
                if self.state != State::FetchSnapshot || self.fetching != Fetching::Database {
                    return;
                }
                if expected == Some((from, hash)) {
                    log::info!(
                        "connector: fetched the database {} from server {from}",
                        hash.short()
                    );
                    self.fetching = Fetching::Installing;
                    self.deadline = now + self.settings.request_timeout();
                    out.push(Output::Install { slot, hash, packed });
                } else {
                    log::info!(
                        "connector: server {from} moved on to {}; comparing again",
                        hash.short()
                    );
                    self.enter(State::HashCompare, now, out);
                }
            }
            Answer::Block(block) => {
                if self.state == State::FetchSnapshot
                    && matches!(self.fetching, Fetching::Blocks { .. })
                {
                    self.deadline = now + self.settings.request_timeout();
                    out.push(Output::Blocks(vec![block]));
                }
            }
            // Only a sign of life: an `E` reply does not say which request it
            // answers, and a fetch that gets no block times out.
            Answer::Refused(_) => {}
        }
    }

    /// One heartbeat round in sampling: count the unanswered, send anew, and
    /// check that a majority is alive and not ahead.
    fn heartbeat(&mut self, now: Millis, out: &mut Vec<Output>) {
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
        self.deadline = now + self.settings.heartbeat_ms;
        let alive = self.alive();
        if alive < self.settings.majority() {
            out.push(Output::LostMajority {
                alive,
                needed: self.settings.majority(),
            });
            return;
        }
        let recent = now.saturating_sub(2 * self.settings.heartbeat_ms);
        let statuses: Vec<(ServerId, Status)> = self
            .others()
            .filter_map(|id| {
                let (status, at) = self.peers[id.index()].status?;
                (at >= recent).then_some((id, status))
            })
            .collect();
        let ahead = self
            .majority_state(&statuses)
            .is_some_and(|t| !self.matches(&t) && t.status.slot >= self.own.slot);
        self.behind = if ahead { self.behind + 1 } else { 0 };
        if self.behind >= 2 {
            log::info!("connector: a majority is ahead of this server");
            self.enter(State::HashCompare, now, out);
        }
    }
}

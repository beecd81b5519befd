//! The ledger thread: the channels and wake-ups around the [`edge::Edge`],
//! which holds the pure [`core::Core`] (whose module essay says which file
//! holds each of its steps) and the [`store::Store`].
//!
//! The edge decides what a request, a connector event or a tick does; this
//! thread reads the requests the listener and the peering thread pass on,
//! server messages first ([`inbox`]), the connector's events and the
//! shutdown channel, ticks the core at its deadlines, signs this server's
//! status for registrations and heartbeats, and hands what the edge
//! produced on (`outbox.rs`): replies to the thread that owns the socket a
//! request came in on, events to the listener, peer messages and this
//! server's state to the connector. The cluster simulator drives the same
//! edge without this thread.
//!
//! A client's `D` and `B` are answered here rather than by the edge: their
//! bodies are sent without a copy and within the large-reply limits
//! ([`large`]), which concern the sockets, not what the ledger decides.
//! So is the crash tests' aid, `ROTA_CRASH_AT` ([`crash`]), which aborts
//! this thread at a named point of carrying out the core's actions.

pub mod consensus;
pub mod core;
pub mod crash;
pub mod edge;
pub mod inbox;
pub mod large;
mod outbox;
mod resume;
pub mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use rota_connector::{ConnectorEvent, ConnectorInput};
use rota_listener::{Budgets, Family, Inbound, Incoming, Lane, Outgoing, Stats, Waker};
use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::wire::{CertifiedStatus, Envelope, Reply, Request};
use rota_peer::{Millis, ServerId};

use self::core::{Action, Core};
use self::crash::{CrashAt, Point};
use self::edge::{Edge, Response};
pub use self::edge::{Exit, build_block};
pub use self::inbox::Inputs;
use self::inbox::{Inbox, Input};
use self::large::{Answer, LargeReplies};
use self::store::Store;
use crate::mining::thread::{MinerInput, MiningView};

/// The most client and bulk requests answered before the core is ticked
/// again. The inbox gives way to a server message after any one of them;
/// this bounds the work between two ticks, so that a round closes on time.
const DUE_STEP: usize = 64;

/// The channels and wakers the ledger thread uses.
pub struct Channels {
    /// What it reads: the three lanes, the connector, the shutdown.
    pub inputs: Inputs,
    /// The lanes' budgets: one is given back for each request answered.
    pub budgets: Budgets,
    /// Replies to the client sockets, and events.
    pub to_listener: Sender<Outgoing>,
    pub listener_waker: Waker,
    /// Replies to the peering socket.
    pub to_peering: Sender<Outgoing>,
    pub peering_waker: Waker,
    pub to_connector: Sender<ConnectorInput>,
    pub connector_waker: Waker,
    /// The miner thread's input, when the chain is sealed.
    pub to_miner: Option<Sender<MinerInput>>,
}

/// The ledger thread's state.
pub struct LedgerThread {
    edge: Edge,
    keypair: Keypair,
    chain: String,
    channels: Channels,
    /// The lanes, put back in arrival order, and the requests due.
    inbox: Inbox,
    /// Whether answers went to the peering thread since it was last woken.
    peering_answered: bool,
    /// What bounds the `D` and `B` replies to clients (see [`large`]).
    large: LargeReplies,
    /// The same for the peering socket's `D` and `B`, with limits of its
    /// own: another server catching up must not wait on clients, and a
    /// peer that asks and never reads must not make this one hold a copy
    /// per request.
    peer_large: LargeReplies,
    /// The crash `ROTA_CRASH_AT` arms, and the server a `result-to-one`
    /// relay goes to (the first other server of the conf).
    crash: Option<CrashAt>,
    crash_one: ServerId,
}

impl LedgerThread {
    pub fn new(
        core: Core,
        store: Store,
        keypair: Keypair,
        chain: String,
        channels: Channels,
        stats: Arc<Stats>,
        peering_stats: Arc<Stats>,
    ) -> crate::Result<Self> {
        let crash = CrashAt::from_env()?;
        if let Some(crash) = &crash {
            log::warn!("{crash}: this server will abort there (a testing aid)");
        }
        let crash_one = core
            .servers
            .ids()
            .find(|id| *id != core.me)
            .unwrap_or(core.me);
        let edge = Edge::new(
            core,
            store,
            keypair.public(),
            chain.clone(),
            stats,
            peering_stats,
            unix_now_ms(),
        )?;
        Ok(LedgerThread {
            edge,
            keypair,
            chain,
            channels,
            inbox: Inbox::default(),
            peering_answered: false,
            large: LargeReplies::new(&crate::config::Limits::default(), unix_now_ms()),
            peer_large: LargeReplies::new(&peering_large_limits(), unix_now_ms()),
            crash,
            crash_one,
        })
    }

    /// Bounds the clients' `D` and `B` replies by the conf's `[limits]`
    /// rather than their defaults.
    pub fn with_limits(mut self, limits: &crate::config::Limits) -> Self {
        self.large = LargeReplies::new(limits, unix_now_ms());
        self
    }

    /// Runs with a miner thread that shows `view`: the chain is sealed.
    pub fn with_mining(mut self, view: Arc<std::sync::Mutex<MiningView>>) -> Self {
        self.edge = self.edge.with_mining(view);
        self
    }

    /// This server's committed state, as heartbeats report it.
    /// The chain's parameters this server runs with.
    pub fn params(&self) -> rota_peer::wire::Params {
        self.edge.params()
    }

    pub fn status(&self) -> CertifiedStatus {
        self.edge.status()
    }

    /// The ledger thread body. Owns the edge (the core and the store); reads the three
    /// lanes of requests, events from the connector and the shutdown channel
    /// ([`Inputs`], in the order [`inbox`] says); sends replies to the
    /// listener and the peering thread, events to the listener and peer
    /// messages to the connector, waking each. Returns why it stopped.
    pub fn run(mut self) -> Exit {
        self.send_own();
        let resend = self.edge.resend();
        if let Some(exit) = self.perform(resend) {
            return self.exit(exit);
        }
        loop {
            let now = unix_now_ms();
            let deadline = self.edge.next_deadline(now);
            let wait = Duration::from_millis(deadline.saturating_sub(now));
            let mut actions = Vec::new();
            match self.inbox.next(&self.channels.inputs, wait) {
                Input::Shutdown => return self.exit(Exit::Shutdown),
                Input::Gone(thread) => {
                    return self.exit(Exit::Failed(format!("the {thread} thread has gone")));
                }
                Input::Connector(event) => actions.extend(self.on_connector(event)),
                Input::Consensus(due) => {
                    for incoming in due {
                        actions.extend(self.answer(Lane::Consensus, incoming));
                    }
                }
                Input::Requests => actions.extend(self.answer_due(deadline)),
                Input::Timeout => {}
            }
            actions.extend(self.edge.tick(unix_now_ms()));
            if let Some(exit) = self.perform(actions) {
                return self.exit(exit);
            }
            self.wake();
        }
    }

    /// Answers due client and bulk requests in order: up to [`DUE_STEP`],
    /// fewer when a server message or a connector event comes (the inbox
    /// then gives none) or the core's `deadline` passes.
    fn answer_due(&mut self, deadline: Millis) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..DUE_STEP {
            let Some((lane, incoming)) = self.inbox.next_due(&self.channels.inputs) else {
                break;
            };
            actions.extend(self.answer(lane, incoming));
            if unix_now_ms() >= deadline {
                break;
            }
        }
        actions
    }

    /// Answers one request of `lane` and gives its room back to the lane.
    fn answer(&mut self, lane: Lane, incoming: Incoming) -> Vec<Action> {
        let actions = self.handle(incoming);
        self.channels.budgets.of(lane).give_back(1);
        actions
    }

    fn exit(&mut self, exit: Exit) -> Exit {
        let exit = self.edge.exit(exit, unix_now_ms());
        self.flush();
        self.wake();
        exit
    }

    /// Answers one request, returning what the core asks for.
    fn handle(&mut self, incoming: Incoming) -> Vec<Action> {
        let Incoming { route, inbound } = incoming;
        if let Inbound::Query(request) = &inbound
            && let Some(answer) = self.large_reply(request, route.family)
        {
            match answer {
                Answer::Large(large) => self.reply_large(route, large),
                Answer::Short(reply) => self.reply(route, reply),
            }
            return Vec::new();
        }
        let (response, actions) = self.edge.handle(inbound, unix_now_ms());
        let reply = match response {
            Response::Reply(reply) => reply,
            Response::Sign { slot, message } => {
                Reply::Signed(Envelope::sign(&self.keypair, &self.chain, slot, &message))
            }
        };
        self.flush();
        self.reply(route, reply);
        actions
    }

    /// A client's `D` or `B`, within the large-reply limits; `None` for any
    /// other request. A `D` shares one body with every other `D` until the
    /// next commit. The texts are the edge's.
    fn large_reply(&mut self, request: &Request, family: Family) -> Option<Answer> {
        let now = unix_now_ms();
        let large = match family {
            Family::Peering => &mut self.peer_large,
            Family::V4 | Family::V6 => &mut self.large,
        };
        let height = self.edge.tip().height;
        Some(match request {
            Request::Database => {
                let committed = self.edge.core().committed();
                let reply = Reply::Database {
                    hash: committed.hash,
                    slot: committed.slot,
                    height,
                    certified: self.edge.certified_bytes(),
                    packed: Vec::new(),
                };
                let snapshot = &committed.snapshot;
                let packed = || snapshot.pack();
                large.database(reply, committed.hash, packed, now)
            }
            Request::Block(n) => {
                let store = self.edge.store();
                let missing =
                    || Reply::error(format!("block {n} not found; the height is {height}"));
                let read = || match store.block(*n)? {
                    Some(block) => Ok(Some((store.seal(*n)?, block))),
                    None => Ok(None),
                };
                large
                    .block(read, missing, now)
                    .unwrap_or_else(|e| Answer::Short(Reply::Error(e.to_string())))
            }
            Request::Info
            | Request::Height
            | Request::BlockHash(_)
            | Request::Account(_)
            | Request::Submit(_)
            | Request::Status(_)
            | Request::Peer(_) => return None,
        })
    }

    fn on_connector(&mut self, event: ConnectorEvent) -> Vec<Action> {
        let actions = self.edge.on_connector(event, unix_now_ms());
        self.flush();
        actions
    }

    fn send_own(&mut self) {
        self.edge.send_own();
        self.flush();
    }

    /// Carries out the core's actions (see [`Edge::perform`]); returns an
    /// exit when one is asked for. An armed crash ([`crash`]) cuts them at
    /// its point and aborts once what comes before it is carried out.
    fn perform(&mut self, mut actions: Vec<Action>) -> Option<Exit> {
        let crash = self
            .crash
            .as_mut()
            .is_some_and(|crash| crash.cut(&mut actions, self.crash_one));
        let exit = self.edge.perform(actions, unix_now_ms());
        self.flush();
        if crash {
            self.abort();
        }
        exit
    }

    /// Ends the process as `kill -9` would, at the armed crash's point. A
    /// `result-to-one` relay must have left first: the connector takes it
    /// from its queue and hands it to libzmq at once, whose I/O thread
    /// writes it out within microseconds; the pause gives that thread room
    /// on a loaded machine (a crash at a point is a testing aid, never a
    /// production path).
    fn abort(&self) -> ! {
        if let Some(crash) = &self.crash {
            if crash.point == Point::ResultToOne {
                let to_connector = &self.channels.to_connector;
                let taken = crate::supervisor::wait_until(
                    Duration::from_secs(2),
                    Duration::from_millis(1),
                    || to_connector.is_empty(),
                );
                if !taken {
                    log::warn!("the connector did not take the relay within 2 s");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            log::error!("{crash}: aborting at {}", crash.point.name());
        }
        std::process::abort()
    }
}

/// The large-reply limits of the peering socket: 1 GiB of bodies held at
/// once and 1 GiB a second. Every `D` between two commits shares one body,
/// so a peer flooding `D` costs one database, not one per request; the
/// bytes bound what blocks a peer that never reads can make this server
/// hold.
fn peering_large_limits() -> crate::config::Limits {
    crate::config::Limits {
        large_reply_bytes: 1 << 30,
        large_reply_bytes_per_s: 1 << 30,
        ..crate::config::Limits::default()
    }
}

//! One run: the servers, the network, the clients and the checker, driven
//! by one discrete-event queue in true simulated time.
//!
//! The queue orders events by (true time, sequence number); nothing else
//! decides what happens next, and every choice comes from the seed's
//! streams, so a seed replays exactly. A step is one event: a packet
//! arriving, a server's timer, a client acting, or a fault (`faults.rs`).
//! After every step the servers it touched are checked ([`Checker`]).
//!
//! The run has two phases. For `--slots` slots the profile's faults are
//! injected; then everything heals (the network is whole, crashed and
//! stopped servers are restarted as an operator would, clock jumps stop,
//! though clocks keep their offsets and the dishonest server keeps lying),
//! and within `--heal-slots` slots every honest server must commit a round
//! again.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use rota::events::{Event as Published, Outcome};
use rota::ledger::edge::Exit;
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::wire::{PeerMessage, ServerList, majority};
use rota_peer::{Millis, ServerId, Slot};

use crate::clients::Clients;
use crate::clock::{Clock, EPOCH};
use crate::invariants::{Checker, Invariant, Violation};
use crate::liar::Liar;
use crate::network::{Ask, Endpoint, Fate, Lost, Network, Packet, Payload};
use crate::profile::Profile;
use crate::rng::{Rng, Stream};
use crate::server::{Out, Setup, SimServer, Step};
use crate::trace::{Trace, describe, routine};

/// The chain every run uses.
pub const CHAIN: &str = "sim";

/// What can happen next.
#[derive(Clone, Debug)]
pub enum Event {
    /// A server's timer, if `generation` is still its latest.
    Wake {
        server: ServerId,
        generation: u64,
    },
    Arrive(Box<Packet>),
    /// A slot begins: faults and client actions for it are drawn.
    Slot(Slot),
    Submit,
    Query,
    Crash(ServerId),
    Restart(ServerId),
    Jump(ServerId),
    EndPartition,
    /// The fault phase ends.
    Heal,
    /// The run ends: liveness is judged.
    Finish,
}

/// How many faults of each kind a run injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub dropped: u64,
    pub late: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub torn: u64,
    pub jumps: u64,
    pub lies: u64,
}

impl Faults {
    pub fn total(&self) -> u64 {
        self.dropped
            + self.late
            + self.reordered
            + self.duplicated
            + self.partitions
            + self.crashes
            + self.torn
            + self.jumps
            + self.lies
    }
}

/// A broken invariant, where and when.
#[derive(Clone, Debug)]
pub struct Failure {
    pub violation: Violation,
    pub step: u64,
    pub time: Millis,
    pub trace: Vec<String>,
}

/// How a run went.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub servers: usize,
    pub dishonest: Option<ServerId>,
    pub steps: u64,
    /// Rounds decided by their beta (any server, any outcome).
    pub rounds: u64,
    pub faults: Faults,
    pub payments: usize,
    /// Payments in the canonical chain at the end.
    pub committed: usize,
    /// What the clients were told, by kind (`accepted`, `forwarded`,
    /// `held`, `refused`; `committed`, `pending`, `lost`, `unknown`).
    pub told: BTreeMap<&'static str, u64>,
    pub failure: Option<Failure>,
}

/// One run's state. See the module documentation.
pub struct World {
    pub(crate) p: Profile,
    pub(crate) seed: u64,
    pub(crate) setup: Setup,
    pub(crate) servers: Vec<SimServer>,
    pub(crate) network: Network,
    pub(crate) clients: Clients,
    pub(crate) liar: Option<Liar>,
    pub(crate) checker: Checker,
    queue: BTreeMap<(Millis, u64), Event>,
    sequence: u64,
    pub(crate) now: Millis,
    pub(crate) step: u64,
    pub(crate) rngs: Rngs,
    pub(crate) trace: Trace,
    pub(crate) faults: Faults,
    rounds: BTreeSet<(ServerId, Slot)>,
    /// The highest slot each server voted in (a beta's ROUND included).
    pub(crate) voted: Vec<Slot>,
    /// Whether a crash point is armed on each server's disk, and whether
    /// it tears the file it falls on.
    pub(crate) armed: Vec<Option<bool>>,
    /// Since when each server has been in a quorum of honest servers that
    /// can talk.
    quorum_since: Vec<Option<Millis>>,
    pub(crate) healed: bool,
    pub(crate) heal_at: Millis,
    /// Each server's clock as the run began: the heal undoes jumps.
    pub(crate) clocks: Vec<Clock>,
    /// Slots whose round an honest beta closed and committed.
    pub(crate) decided: BTreeSet<Slot>,
    failure: Option<Violation>,
}

/// The run's random streams, one per kind of choice.
pub struct Rngs {
    pub network: Rng,
    pub partition: Rng,
    pub crash: Rng,
    pub clock: Rng,
    pub clients: Rng,
}

impl World {
    /// The run of `seed` under profile `p`.
    pub fn new(seed: u64, p: &Profile, print: bool) -> World {
        let mut setup_rng = Rng::new(seed, Stream::Setup);
        let span = (p.servers_max - p.servers_min + 1) as u64;
        let n = p.servers_min + setup_rng.below(span) as usize;
        let mut client_rng = Rng::new(seed, Stream::Clients);
        let clients = Clients::new(CHAIN, p, &mut client_rng);
        let genesis = clients.genesis(p);
        let keys: Vec<Keypair> = (1..=n)
            .map(|i| Keypair::from_seed(&[100 + i as u8; 32]))
            .collect();
        let setup = Setup {
            chain: CHAIN.into(),
            servers: ServerList::new(keys.iter().map(Keypair::public).collect()),
            keys,
            schedule: Schedule {
                slot_ms: p.slot_ms,
                blackout_ms: p.blackout_ms,
                tolerance_ms: p.tolerance_ms,
                servers: n,
            },
            genesis,
            heartbeat_ms: p.heartbeat_ms,
            missed_heartbeats: p.missed_heartbeats,
            keep: 4,
        };
        let dishonest = (p.dishonest && n >= 3).then(|| ServerId::from_index(setup_rng.index(n)));
        let skewed = (p.skew_one_ms > 0).then(|| setup_rng.index(n));
        let servers: Vec<SimServer> = (0..n)
            .map(|i| {
                let mut clock = Clock {
                    offset: setup_rng.signed(p.skew_max_ms),
                    drift_ppm: setup_rng.signed(p.drift_max_ppm),
                };
                if skewed == Some(i) {
                    let sign = if setup_rng.chance(0.5) { 1 } else { -1 };
                    clock.offset = sign * p.skew_one_ms as i64;
                }
                let id = ServerId::from_index(i);
                SimServer::new(id, dishonest != Some(id), clock)
            })
            .collect();
        let supply = u64::from(p.balance) * p.accounts as u64;
        let clocks = servers.iter().map(|s: &SimServer| s.clock).collect();
        World {
            p: p.clone(),
            seed,
            liar: dishonest.map(|id| {
                Liar::new(
                    id,
                    setup.keys[id.index()].clone(),
                    CHAIN,
                    setup.servers.clone(),
                    Rng::new(seed, Stream::Liar),
                )
            }),
            checker: Checker::new(n, supply),
            setup,
            servers,
            network: Network::new(),
            clients,
            queue: BTreeMap::new(),
            sequence: 0,
            now: EPOCH,
            step: 0,
            rngs: Rngs {
                network: Rng::new(seed, Stream::Network),
                partition: Rng::new(seed, Stream::Partition),
                crash: Rng::new(seed, Stream::Crash),
                clock: Rng::new(seed, Stream::Clock),
                clients: client_rng,
            },
            trace: Trace::new(print),
            faults: Faults::default(),
            rounds: BTreeSet::new(),
            voted: vec![0; n],
            armed: vec![None; n],
            quorum_since: vec![None; n],
            healed: false,
            heal_at: EPOCH + p.slots * p.slot_ms,
            clocks,
            decided: BTreeSet::new(),
            failure: None,
        }
    }

    pub(crate) fn at(&mut self, time: Millis, event: Event) {
        self.sequence += 1;
        self.queue
            .insert((time.max(self.now), self.sequence), event);
    }

    pub(crate) fn server(&self, id: ServerId) -> &SimServer {
        &self.servers[id.index()]
    }

    /// Runs to the end, or to the first broken invariant.
    pub fn run(mut self) -> Report {
        let first_slot = EPOCH / self.p.slot_ms;
        let end = self.heal_at + self.p.heal_slots * self.p.slot_ms;
        for i in 0..self.servers.len() {
            let at = EPOCH + self.rngs.crash.range(0, self.p.heartbeat_ms);
            self.at(at, Event::Restart(ServerId::from_index(i)));
        }
        self.at(EPOCH, Event::Slot(first_slot));
        self.at(self.heal_at, Event::Heal);
        self.at(end, Event::Finish);
        while let Some(((time, _), event)) = self.queue.pop_first() {
            self.now = time;
            self.step += 1;
            let finish = matches!(event, Event::Finish);
            let result = catch_unwind(AssertUnwindSafe(|| self.dispatch(event)));
            if let Err(panic) = result {
                self.fail(Invariant::Panic, panic_text(panic.as_ref()));
            }
            if self.failure.is_some() || finish {
                break;
            }
        }
        self.report()
    }

    fn report(self) -> Report {
        let failure = self.failure.map(|violation| Failure {
            violation,
            step: self.step,
            time: self.now,
            trace: self.trace.tail(),
        });
        let mut faults = self.faults;
        faults.lies = self.liar.as_ref().map_or(0, |l| l.lies);
        faults.late = self.network.late;
        faults.reordered = self.network.reordered;
        Report {
            seed: self.seed,
            servers: self.servers.len(),
            dishonest: self.liar.as_ref().map(|l| l.id),
            steps: self.step,
            rounds: self.rounds.len() as u64,
            faults,
            payments: self.clients.payments.len(),
            committed: self.checker.committed_ids().len(),
            told: self.clients.tally.clone(),
            failure,
        }
    }

    /// Records the first broken invariant; the run stops after this step.
    pub(crate) fn fail(&mut self, invariant: Invariant, detail: String) {
        if self.failure.is_none() {
            let (step, now) = (self.step, self.now);
            self.trace
                .note(step, now, || format!("BROKEN {invariant}: {detail}"));
            self.failure = Some(Violation { invariant, detail });
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Wake { server, generation } => {
                if self.server(server).wake == generation {
                    self.step_server(server, Step::Wake);
                }
            }
            Event::Arrive(packet) => self.arrive(*packet),
            Event::Slot(slot) => self.slot(slot),
            Event::Submit => self.submit(),
            Event::Query => self.query(),
            Event::Crash(id) => self.crash(id),
            Event::Restart(id) => self.restart(id),
            Event::Jump(id) => self.jump(id),
            Event::EndPartition => {
                self.network.heal();
                let (step, now) = (self.step, self.now);
                self.trace.note(step, now, || "partition healed".into());
                self.update_quorum();
            }
            Event::Heal => self.heal(),
            Event::Finish => self.finish(),
        }
    }

    /// Sends a packet from `from` now.
    pub(crate) fn send(&mut self, from: Endpoint, to: Endpoint, payload: Payload) {
        let id = self.network.next_id();
        let packet = Packet {
            from,
            to,
            payload,
            id,
        };
        let fate = self
            .network
            .send(&packet, self.now, &self.p, &mut self.rngs.network);
        let routine = routine(&packet);
        let (step, now) = (self.step, self.now);
        let line = |fate: &str| format!("{from}->{to} #{id} {}{fate}", describe(&packet.payload));
        match &fate {
            Fate::Arrives(at) => {
                if routine {
                    self.trace.detail(step, now, || line(""));
                } else {
                    self.trace.note(step, now, || line(""));
                }
                self.at(*at, Event::Arrive(Box::new(packet)));
            }
            Fate::Twice(at, copy) => {
                self.faults.duplicated += 1;
                self.trace.note(step, now, || line(" (duplicated)"));
                self.at(*at, Event::Arrive(Box::new(packet.clone())));
                self.at(*copy, Event::Arrive(Box::new(packet)));
            }
            Fate::Lost(lost) => {
                if *lost == Lost::Dropped {
                    self.faults.dropped += 1;
                }
                self.trace
                    .note(step, now, || line(&format!(" LOST ({lost:?})")));
            }
        }
    }

    fn arrive(&mut self, packet: Packet) {
        let Packet {
            from, to, payload, ..
        } = packet;
        match to {
            Endpoint::Client(n) => self.client_answer(n, from, payload),
            Endpoint::Server(id) => {
                let lost = if !self.network.connected(from, to) {
                    Some(Lost::Partitioned)
                } else if !self.server(id).is_up() {
                    Some(Lost::ReceiverDown)
                } else {
                    None
                };
                if let Some(lost) = lost {
                    let (step, now) = (self.step, self.now);
                    self.trace.detail(step, now, || {
                        format!(
                            "{from}->{to} {} LOST on arrival ({lost:?})",
                            describe(&payload)
                        )
                    });
                    return;
                }
                let step = match (payload, from) {
                    (Payload::Ask(ask), from) => Step::Ask { from, ask },
                    (Payload::Answer(response), Endpoint::Server(from)) => {
                        Step::Answer { from, response }
                    }
                    (Payload::Answer(_), Endpoint::Client(_)) => return,
                };
                self.step_server(id, step);
            }
        }
    }

    /// Runs one step of a server and carries out what comes of it.
    pub(crate) fn step_server(&mut self, id: ServerId, step: Step) {
        let outs = self.servers[id.index()].step(step, self.now, &self.setup);
        self.emit(id, outs);
        self.reschedule(id);
        self.check(id);
    }

    /// Sends, traces and judges what a server step produced.
    pub(crate) fn emit(&mut self, id: ServerId, outs: Vec<Out>) {
        let honest = self.server(id).honest;
        for out in &outs {
            if let Out::Send {
                payload: Payload::Ask(Ask::Peer { slot, message }),
                ..
            } = out
            {
                self.observe(id, *slot, message, honest);
            }
        }
        let outs = match self.liar.as_mut() {
            Some(liar) if liar.id == id => {
                liar.filter(&self.servers[id.index()], outs, self.servers.len(), &self.p)
            }
            Some(_) | None => outs,
        };
        for out in outs {
            match out {
                Out::Send { to, payload } => self.send(Endpoint::Server(id), to, payload),
                Out::Event(event) => {
                    // A beta's own word on its round: it decided it, and
                    // with consensus on its own state it committed it.
                    if let Published::Round {
                        slot,
                        outcome,
                        beta,
                        ..
                    } = &event
                        && *beta == id
                    {
                        self.rounds.insert((id, *slot));
                        if *outcome == Outcome::Committed && self.server(id).honest {
                            self.decided.insert(*slot);
                        }
                    }
                    let (step, now) = (self.step, self.now);
                    self.trace
                        .detail(step, now, || format!("s{id} event {event:?}"));
                }
                Out::Exit(exit) => self.exited(id, exit),
            }
        }
    }

    /// Votes and rounds an honest server sends, for the one-vote check.
    fn observe(
        &mut self,
        id: ServerId,
        slot: Slot,
        message: &PeerMessage<rota_peer::transaction::VerifiedTx>,
        honest: bool,
    ) {
        // An honest server signs one header (as alpha) and votes for one
        // header in a slot: its prevote, its precommit and its own round all
        // name the same digest.
        let hash = match message {
            PeerMessage::Round { header, .. } => header.digest(),
            PeerMessage::Prevote(prevote) => prevote.vote.digest,
            PeerMessage::Precommit(precommit) => precommit.vote.digest,
            PeerMessage::Register(_)
            | PeerMessage::Heart(_)
            | PeerMessage::Certified(_)
            | PeerMessage::Evidence(_)
            | PeerMessage::Want { .. }
            | PeerMessage::Forward { .. } => return,
        };
        // A round resent to a server that asked for it is not a vote.
        if let PeerMessage::Round { header, .. } = message
            && header.slot() != slot
        {
            return;
        }
        let voted = &mut self.voted[id.index()];
        *voted = (*voted).max(slot);
        if honest && let Err(v) = self.checker.vote(id, slot, hash) {
            self.fail(v.invariant, v.detail);
        }
    }

    fn exited(&mut self, id: ServerId, exit: Exit) {
        let (step, now) = (self.step, self.now);
        self.trace
            .note(step, now, || format!("s{id} EXIT {exit:?}"));
        match exit {
            Exit::ConsensusLost(reason) => {
                let grace = u64::from(self.p.missed_heartbeats + 1) * self.p.heartbeat_ms;
                let since = self.quorum_since[id.index()];
                if self.server(id).honest
                    && let Some(since) = since
                    && now.saturating_sub(since) >= grace
                {
                    self.fail(
                        Invariant::NoStop,
                        format!(
                            "s{id} stopped ({reason}) while in a quorum of honest servers \
                             that could talk for {} ms",
                            now - since
                        ),
                    );
                }
            }
            Exit::Failed(_) | Exit::Shutdown => {
                self.faults.crashes += 1;
                if self.armed[id.index()] == Some(true) {
                    self.faults.torn += 1;
                }
                let back = now
                    + self
                        .rngs
                        .crash
                        .range(self.p.restart_min_ms, self.p.restart_max_ms);
                self.at(back, Event::Restart(id));
            }
        }
        self.update_quorum();
    }

    /// Schedules a server's next timer.
    pub(crate) fn reschedule(&mut self, id: ServerId) {
        let Some(at) = self.server(id).next_wake(self.now) else {
            return;
        };
        let server = &mut self.servers[id.index()];
        server.wake += 1;
        let generation = server.wake;
        self.at(
            at,
            Event::Wake {
                server: id,
                generation,
            },
        );
    }

    /// Checks an honest server that is up.
    pub(crate) fn check(&mut self, id: ServerId) {
        let server = &self.servers[id.index()];
        let Some(node) = server.node() else {
            return;
        };
        if !server.honest {
            return;
        }
        if let Err(v) = self.checker.server(id, &node.edge, &self.clients) {
            self.fail(v.invariant, v.detail);
        }
    }

    /// Recomputes who is in a quorum of honest servers that can talk.
    pub(crate) fn update_quorum(&mut self) {
        let needed = majority(self.servers.len());
        for i in 0..self.servers.len() {
            let me = Endpoint::Server(ServerId::from_index(i));
            let talking = self
                .servers
                .iter()
                .filter(|s| {
                    s.honest && s.is_up() && self.network.connected(me, Endpoint::Server(s.id))
                })
                .count();
            let in_quorum = self.servers[i].is_up() && talking >= needed;
            self.quorum_since[i] = match (in_quorum, self.quorum_since[i]) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(self.now),
                (false, _) => None,
            };
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".into()
    }
}

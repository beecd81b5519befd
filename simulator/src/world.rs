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

use rota::ledger::edge::chain_params;
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::wire::ServerList;
use rota_peer::{Millis, ServerId, Slot};

use crate::clients::Clients;
use crate::clock::{Clock, EPOCH};
use crate::invariants::{Checker, Invariant, Violation};
use crate::liar::Liar;
use crate::listener::Listener;
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

/// The slots a run decided, as honest servers committed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rounds {
    /// Slots whose round an honest server committed.
    pub committed: u64,
    /// Slots up to the last committed one whose round no commit holds.
    pub lost: u64,
    /// Evidence of a second header, published by honest servers.
    pub evidence: u64,
    /// Slot checks (`clock-watch`) at which an honest server whose clock
    /// was off said it sat out its alpha slots.
    pub sat_out: u64,
}

impl Rounds {
    /// Slots decided in all.
    pub fn decided(&self) -> u64 {
        self.committed + self.lost
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
    /// Slots decided by a commit on an honest server: committed (their
    /// round is in a committed chain) or lost (left out of it).
    pub rounds: Rounds,
    pub faults: Faults,
    pub payments: usize,
    /// Payments in the canonical chain at the end.
    pub committed: usize,
    /// Lies the dishonest server told, by kind.
    pub lies: BTreeMap<&'static str, u64>,
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
    /// The receivers' signature checks, memoized.
    listener: Listener,
    pub(crate) clients: Clients,
    pub(crate) liar: Option<Liar>,
    /// Whether the run keeps the honest servers within the timing bound
    /// (see [`Profile::bound_share`]): no loss, late message, partition,
    /// clock jump or crash among them.
    pub(crate) bounded: bool,
    pub(crate) checker: Checker,
    queue: BTreeMap<(Millis, u64), Event>,
    sequence: u64,
    pub(crate) now: Millis,
    pub(crate) step: u64,
    pub(crate) rngs: Rngs,
    pub(crate) trace: Trace,
    pub(crate) faults: Faults,
    /// Slots whose round an honest server committed.
    pub(crate) committed_slots: BTreeSet<Slot>,
    /// Evidence events honest servers published.
    pub(crate) evidence: u64,
    /// See [`Rounds::sat_out`].
    pub(crate) sat_out: u64,
    /// The highest slot each server voted in (its own header included).
    pub(crate) voted: Vec<Slot>,
    /// Whether a crash point is armed on each server's disk, and whether
    /// it tears the file it falls on.
    pub(crate) armed: Vec<Option<bool>>,
    /// Since when each pair of servers (by index) has been up and on one
    /// side of any partition.
    pub(crate) together: Vec<Vec<Option<Millis>>>,
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
    /// The run of `seed` under profile `p`. (Long only for the one literal
    /// that sets every field; the draws above it are in the order the
    /// setup stream has always made them, which keeps old seeds' runs.)
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
        let servers = ServerList::new(keys.iter().map(Keypair::public).collect());
        let schedule = Schedule {
            slot_ms: p.slot_ms,
            blackout_ms: p.blackout_ms,
            tolerance_ms: p.tolerance_ms,
            servers: n,
            difficulty: p.difficulty,
        };
        let params = chain_params(&servers, &schedule, &genesis.clone().hash());
        let setup = Setup {
            chain: CHAIN.into(),
            servers,
            keys,
            schedule,
            params,
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
        // With an odd N, safety against equivocation and a voter that
        // ignores its lock rests on the timing bound (docs/CONSENSUS.md
        // §5.3): a share of runs keeps the honest servers within it, and
        // only those, or an even N, see those two lies.
        let mut liar_rng = Rng::new(seed, Stream::Liar);
        let bounded = dishonest.is_some() && n % 2 == 1 && liar_rng.chance(p.bound_share);
        let timing_lies = n % 2 == 0 || bounded || p.lie_beyond_bound;
        let mut network = Network::new();
        if bounded {
            network.shield(dishonest);
        }
        World {
            p: p.clone(),
            seed,
            liar: dishonest.map(|id| {
                Liar::new(
                    id,
                    setup.keys[id.index()].clone(),
                    CHAIN,
                    setup.servers.clone(),
                    liar_rng,
                    timing_lies,
                )
            }),
            bounded,
            checker: Checker::new(CHAIN, setup.servers.clone(), setup.schedule.shape(), supply),
            setup,
            servers,
            network,
            listener: Listener::default(),
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
            committed_slots: BTreeSet::new(),
            evidence: 0,
            sat_out: 0,
            voted: vec![0; n],
            armed: vec![None; n],
            together: vec![vec![None; n]; n],
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
        let lies = self
            .liar
            .as_ref()
            .map(|l| l.lies.clone())
            .unwrap_or_default();
        faults.lies = lies.values().sum();
        faults.late = self.network.late;
        faults.reordered = self.network.reordered;
        let first = EPOCH / self.p.slot_ms;
        let committed = self.committed_slots.len() as u64;
        let last = self.committed_slots.last().copied();
        let rounds = Rounds {
            committed,
            lost: last.map_or(0, |last| (last + 1).saturating_sub(first) - committed),
            evidence: self.evidence,
            sat_out: self.sat_out,
        };
        Report {
            seed: self.seed,
            servers: self.servers.len(),
            dishonest: self.liar.as_ref().map(|l| l.id),
            steps: self.step,
            rounds,
            faults,
            payments: self.clients.payments.len(),
            committed: self.checker.committed_ids().len(),
            lies,
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
                let heard = match (&self.liar, &payload, from) {
                    (
                        Some(liar),
                        Payload::Ask(Ask::Peer { slot, message }),
                        Endpoint::Server(sender),
                    ) if liar.id == id => Some((sender, *slot, message.clone())),
                    _ => None,
                };
                let step = match (payload, from) {
                    (Payload::Ask(ask), from) => Step::Ask { from, ask },
                    (Payload::Answer(response), Endpoint::Server(from)) => {
                        Step::Answer { from, response }
                    }
                    (Payload::Answer(_), Endpoint::Client(_)) => return,
                };
                self.step_server(id, step);
                if let Some((sender, slot, message)) = heard
                    && self.servers[id.index()].is_up()
                    && let Ok(input) = self.listener.check(&self.setup, sender, slot, &message)
                    && let Some(liar) = self.liar.as_mut()
                {
                    for out in liar.hear(&input, &self.p) {
                        if let Out::Send { to, payload } = out {
                            self.send(Endpoint::Server(id), to, payload);
                        }
                    }
                }
            }
        }
    }

    /// Runs one step of a server and carries out what comes of it.
    pub(crate) fn step_server(&mut self, id: ServerId, step: Step) {
        let outs = self.servers[id.index()].step(step, self.now, &self.setup, &mut self.listener);
        self.emit(id, outs);
        self.reschedule(id);
        self.check(id);
    }

    /// Sends, traces and judges what a server step produced.
    pub(crate) fn emit(&mut self, id: ServerId, outs: Vec<Out>) {
        let honest = self.server(id).honest;
        for out in &outs {
            if let Out::Send {
                payload: Payload::Ask(Ask::Peer { message, .. }),
                ..
            } = out
            {
                self.observe(id, message);
            }
        }
        let outs = match self.liar.as_mut() {
            Some(liar) if liar.id == id => liar.filter(&self.servers[id.index()], outs, &self.p),
            Some(_) | None => outs,
        };
        for out in outs {
            match out {
                Out::Send { to, payload } => self.send(Endpoint::Server(id), to, payload),
                Out::Event(event) => self.published(id, honest, event),
                Out::Exit(exit) => self.exited(id, exit),
            }
        }
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

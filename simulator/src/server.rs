//! One simulated server: the real ledger [`Edge`] (core and store) and the
//! real connector [`Machine`], on a [`MemoryDisk`] and a drifting [`Clock`],
//! wired to each other as the node's threads are.
//!
//! A step takes one input (a request from the network, an answer to one of
//! this server's requests, or its timer) and runs it through the node's
//! logic until nothing is left to do: the edge handles the request and
//! ticks the core, as the ledger thread does after every input; what the
//! edge hands to the connector goes to the machine; what the machine hands
//! back goes to the edge; the machine ticks last, as the connector thread
//! does after every poll. What leaves the server comes back as [`Out`]s.
//!
//! Between the edge and the network sits the one piece of the connector
//! thread that is not its machine: turning a ledger message into a packet
//! per server and an answer into what the machine reads ([`answer`]). It
//! mirrors `rota_connector::Connector`'s `handle_ledger` and `answer`,
//! with the status checks that need no signature.
//!
//! A server crashes ([`SimServer::crash`]) by losing everything but its
//! disk, and restarts ([`SimServer::boot`]) from what the disk kept, through
//! the node's own [`resume`]. A server whose ledger stops (consensus lost)
//! stays stopped until the operator, the simulator, restarts it.

use std::collections::VecDeque;
use std::sync::Arc;

use rota::ledger::edge::{Edge, Effect, Exit, Response, resume};
use rota::ledger::store::{Loaded, MemoryDisk, Store};
use rota_connector::machine::{
    Answer, Input, Machine, Output, Request as MachineRequest, Settings,
};
use rota_connector::{ConnectorEvent, ConnectorInput, Target, check_block};
use rota_listener::{Inbound, Stats};
use rota_peer::balances::Balances;
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::wire::consensus::Certified;
use rota_peer::wire::{CertifiedStatus, Hello, Params, PeerMessage, Reply, Request, ServerList};
use rota_peer::{Millis, PublicKey, ServerId};

use crate::clock::Clock;
use crate::listener::Listener;
use crate::mining::SimMiner;
use crate::network::{Ask, Endpoint, Payload};

/// What every server of a run shares: the chain and its timings.
#[derive(Clone, Debug)]
pub struct Setup {
    pub chain: String,
    pub servers: ServerList,
    /// Each server's key, by index: the consensus signs with real keys.
    pub keys: Vec<Keypair>,
    pub schedule: Schedule,
    /// The chain's parameters, which every `register` and `heart` carries.
    pub params: Params,
    pub genesis: Balances,
    pub heartbeat_ms: u64,
    pub missed_heartbeats: u32,
    /// Archived databases kept.
    pub keep: usize,
}

/// A running server's state.
pub struct Node {
    pub edge: Edge,
    pub machine: Machine,
    /// Its part in sealing, on a sealed chain.
    pub miner: Option<SimMiner>,
    /// The commit certificate of the machine's own status, sent with it
    /// as the real connector sends it.
    pub own_certified: Option<Certified>,
}

/// Whether a server is running.
pub enum Life {
    Up(Box<Node>),
    /// Crashed, or could not start; the simulator restarts it.
    Down,
    /// Its ledger stopped (exit code 3): consensus lost, by its own word.
    Stopped(String),
}

/// What a step sends out or reports.
#[derive(Debug)]
pub enum Out {
    /// A message from this server.
    Send { to: Endpoint, payload: Payload },
    /// An event the ledger published.
    Event(rota::events::Event),
    /// The ledger ended.
    Exit(Exit),
}

/// One input to a server.
#[derive(Debug)]
pub enum Step {
    /// A request arrived at its listener.
    Ask { from: Endpoint, ask: Ask },
    /// An answer to one of its connector's requests arrived.
    Answer { from: ServerId, response: Response },
    /// Its timer went off.
    Wake,
}

/// A simulated server. See the module documentation.
pub struct SimServer {
    pub id: ServerId,
    pub honest: bool,
    pub disk: MemoryDisk,
    pub clock: Clock,
    pub life: Life,
    /// The generation of its pending wake-up; older ones are stale.
    pub wake: u64,
    /// Whether its consensus machine halted when it last stopped: its
    /// ledger disagreed with a commit certificate.
    pub halted: bool,
}

/// Work inside one step, in the order it arose.
enum Work {
    FromEdge(ConnectorInput),
    ToMachine(Input),
    FromMachine(ConnectorEvent),
}

impl SimServer {
    pub fn new(id: ServerId, honest: bool, clock: Clock) -> SimServer {
        SimServer {
            id,
            honest,
            disk: MemoryDisk::new(),
            clock,
            life: Life::Down,
            wake: 0,
            halted: false,
        }
    }

    pub fn node(&self) -> Option<&Node> {
        match &self.life {
            Life::Up(node) => Some(node),
            Life::Down | Life::Stopped(_) => None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.node().is_some()
    }

    /// Starts the server from its disk at true time `now`, as `rota run`
    /// does: load the store, resume the core, start both threads.
    pub fn boot(&mut self, setup: &Setup, now: Millis) -> Result<Vec<Out>, String> {
        self.disk.restart();
        let local = self.clock.local(now);
        let store = Store::on_disk(
            Box::new(self.disk.clone()),
            setup.keep,
            setup.schedule.slot_ms,
        );
        let consensus = rota::ledger::consensus::Config {
            chain: setup.chain.clone(),
            me: self.id,
            keypair: setup.keys[self.id.index()].clone(),
            servers: setup.servers.clone(),
            timing: rota::ledger::consensus::Timing::new(setup.schedule),
        };
        let core = resume(&store, setup.genesis.clone(), consensus).map_err(|e| e.to_string())?;
        let edge = Edge::new(
            core,
            store,
            setup.servers.key(self.id).unwrap_or(PublicKey([0; 32])),
            setup.chain.clone(),
            Arc::new(Stats::default()),
            Arc::new(Stats::default()),
            local,
        )
        .map_err(|e| e.to_string())?;
        let settings = Settings {
            me: self.id,
            servers: setup.servers.len(),
            heartbeat_ms: setup.heartbeat_ms,
            missed_heartbeats: setup.missed_heartbeats,
            tolerance_ms: setup.schedule.tolerance_ms,
        };
        let own = edge.status();
        let machine = Machine::new(settings, own.status);
        let miner = SimMiner::new(self.id, setup, !self.honest);
        let edge = match &miner {
            Some(miner) => edge.with_mining(miner.view.clone()),
            None => edge,
        };
        self.life = Life::Up(Box::new(Node {
            edge,
            machine,
            own_certified: own.certified,
            miner,
        }));
        let mut work = VecDeque::new();
        if let Life::Up(node) = &mut self.life {
            node.edge.send_own();
            // Its own votes and lock, sent again as the node does at start.
            let resend = node.edge.resend();
            if let Some(exit) = node.edge.perform(resend, local) {
                return Ok(self.end(exit, Vec::new(), local, setup));
            }
        }
        work.push_back(Work::ToMachine(Input::Tick));
        Ok(self.run(work, Vec::new(), local, setup))
    }

    /// Why the store on this server's disk would load damaged, if it would:
    /// the store promises it never does after a crash.
    pub fn damaged(&self, setup: &Setup) -> Option<String> {
        self.disk.restart();
        let store = Store::on_disk(
            Box::new(self.disk.clone()),
            setup.keep,
            setup.schedule.slot_ms,
        );
        match store.load(setup.genesis.clone()) {
            Ok(Loaded::Intact(_)) => None,
            Ok(Loaded::Damaged { reason, .. }) => Some(reason),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Loses everything but the disk.
    pub fn crash(&mut self) {
        self.life = Life::Down;
    }

    /// The server's next wake-up in true time, if it is up.
    pub fn next_wake(&self, now: Millis) -> Option<Millis> {
        let node = self.node()?;
        let local = self.clock.local(now);
        let mut deadline = node
            .edge
            .next_deadline(local)
            .min(node.machine.next_deadline().max(local + 1));
        if let Some(miner) = &node.miner {
            deadline = deadline.min(miner.next_wake(local));
        }
        Some(self.clock.true_time(deadline, now).max(now + 1))
    }

    /// Takes one input at true time `now`, server messages checked by
    /// `listener`. See the module documentation.
    pub fn step(
        &mut self,
        step: Step,
        now: Millis,
        setup: &Setup,
        listener: &mut Listener,
    ) -> Vec<Out> {
        let local = self.clock.local(now);
        let Life::Up(node) = &mut self.life else {
            return Vec::new();
        };
        let mut outs = Vec::new();
        let mut work = VecDeque::new();
        let mut actions = Vec::new();
        match step {
            Step::Ask { from, ask } => {
                let inbound = match (ask, from) {
                    (Ask::Peer { slot, message }, Endpoint::Server(id)) => {
                        match listener.check(setup, id, slot, &message) {
                            Ok(message) => Inbound::Peer {
                                from: id,
                                slot,
                                message,
                            },
                            Err(refusal) => Inbound::Refused(refusal),
                        }
                    }
                    (Ask::Peer { .. }, Endpoint::Client(_)) => {
                        Inbound::Refused("a server message from a client".into())
                    }
                    (Ask::Submit(tx), _) => Inbound::Submit(tx),
                    (Ask::Query(request), _) => Inbound::Query(request),
                };
                let (response, asked) = node.edge.handle(inbound, local);
                outs.push(Out::Send {
                    to: from,
                    payload: Payload::Answer(response),
                });
                actions = asked;
            }
            Step::Answer { from, response } => {
                // The seal served with a fetched block goes to the edge
                // first, as the connector passes it on as it checks the
                // block.
                if let Some(event) = fetched_seal(&response, setup) {
                    work.push_back(Work::FromMachine(event));
                }
                let answer = answer(response, local, setup, listener);
                work.push_back(Work::ToMachine(Input::Answer { from, answer }));
            }
            Step::Wake => {}
        }
        if let Some(miner) = &mut node.miner {
            let due = miner.due(local);
            miner.carry_out(due, self.id, local, setup, &mut outs);
        }
        actions.extend(node.edge.tick(local));
        if let Some(exit) = node.edge.perform(actions, local) {
            return self.end(exit, outs, local, setup);
        }
        work.push_back(Work::ToMachine(Input::Tick));
        self.run(work, outs, local, setup)
    }

    /// Runs the work of a step until none is left.
    fn run(
        &mut self,
        mut work: VecDeque<Work>,
        mut outs: Vec<Out>,
        local: Millis,
        setup: &Setup,
    ) -> Vec<Out> {
        loop {
            let Life::Up(node) = &mut self.life else {
                return outs;
            };
            for effect in node.edge.take_effects() {
                match effect {
                    Effect::Publish(published) => outs.push(Out::Event(published.event)),
                    Effect::Connector(input) => work.push_back(Work::FromEdge(input)),
                    Effect::Miner(input) => {
                        if let Some(miner) = &mut node.miner {
                            let mined = miner.input(input, local);
                            miner.carry_out(mined, self.id, local, setup, &mut outs);
                        }
                    }
                }
            }
            let Some(next) = work.pop_front() else {
                return outs;
            };
            match next {
                Work::FromEdge(ConnectorInput::Send { to, slot, message }) => {
                    peer_sends(self.id, to, slot, *message, setup, &mut outs);
                }
                Work::FromEdge(ConnectorInput::Own(own)) => {
                    node.own_certified = own.certified;
                    work.push_back(Work::ToMachine(Input::Own(own.status)));
                }
                Work::FromEdge(ConnectorInput::OutOfSync) => {
                    work.push_back(Work::ToMachine(Input::OutOfSync));
                }
                Work::FromEdge(ConnectorInput::Fork { from }) => {
                    work.push_back(Work::ToMachine(Input::Fork { from }));
                }
                Work::ToMachine(input) => {
                    for output in node.machine.step(input, local) {
                        let own = (
                            &node.own_certified,
                            node.machine.sitting_out(),
                            node.machine.live(),
                        );
                        match machine_output(output, own, local, setup) {
                            Ok((to, payload)) => outs.push(Out::Send { to, payload }),
                            Err(event) => work.push_back(Work::FromMachine(event)),
                        }
                    }
                }
                Work::FromMachine(event) => {
                    let mut actions = node.edge.on_connector(event, local);
                    actions.extend(node.edge.tick(local));
                    if let Some(exit) = node.edge.perform(actions, local) {
                        return self.end(exit, outs, local, setup);
                    }
                }
            }
        }
    }

    /// The ledger ended: what it said last leaves, then the server is
    /// stopped (consensus lost) or down (a failed write: the crash point).
    fn end(&mut self, exit: Exit, mut outs: Vec<Out>, local: Millis, setup: &Setup) -> Vec<Out> {
        let Life::Up(node) = &mut self.life else {
            return outs;
        };
        self.halted = node.edge.core().machine().halted();
        let exit = node.edge.exit(exit, local);
        for effect in node.edge.take_effects() {
            match effect {
                Effect::Publish(published) => outs.push(Out::Event(published.event)),
                // The connector sends the ledger's last messages before it
                // stops; nothing else reaches it.
                Effect::Connector(ConnectorInput::Send { to, slot, message }) => {
                    peer_sends(self.id, to, slot, *message, setup, &mut outs);
                }
                Effect::Connector(_) | Effect::Miner(_) => {}
            }
        }
        self.life = match &exit {
            Exit::ConsensusLost(reason) => Life::Stopped(reason.clone()),
            Exit::Shutdown | Exit::Failed(_) => Life::Down,
        };
        outs.push(Out::Exit(exit));
        outs
    }
}

/// A ledger message as the connector sends it: one packet per server.
pub(crate) fn peer_sends(
    me: ServerId,
    to: Target,
    slot: rota_peer::Slot,
    message: PeerMessage<rota_peer::transaction::VerifiedTx>,
    setup: &Setup,
    outs: &mut Vec<Out>,
) {
    let targets: Vec<ServerId> = match to {
        Target::All => setup.servers.ids().filter(|id| *id != me).collect(),
        Target::Only(ids) => ids,
    };
    for id in targets {
        let ask = Ask::Peer {
            slot,
            message: Box::new(message.clone()),
        };
        outs.push(Out::Send {
            to: Endpoint::Server(id),
            payload: Payload::Ask(ask),
        });
    }
}

/// A machine output: a request for the network, or an event for the edge.
fn machine_output(
    output: Output,
    (own_certified, sitting_out, live): (&Option<Certified>, bool, Vec<ServerId>),
    local: Millis,
    setup: &Setup,
) -> Result<(Endpoint, Payload), ConnectorEvent> {
    let slot = local / setup.schedule.slot_ms;
    let certified = |status| Hello {
        params: setup.params,
        clock: local,
        echo: 0,
        sitting_out,
        live: live.clone(),
        status: CertifiedStatus {
            status,
            certified: own_certified.clone(),
        },
    };
    let (to, ask) = match output {
        Output::Send { to, request } => match request {
            MachineRequest::Register(status) => (
                to,
                Ask::Peer {
                    slot,
                    message: Box::new(PeerMessage::Register(certified(status))),
                },
            ),
            MachineRequest::Heart(status) => (
                to,
                Ask::Peer {
                    slot,
                    message: Box::new(PeerMessage::Heart(certified(status))),
                },
            ),
            MachineRequest::Database => (to, Ask::Query(Request::Database)),
            MachineRequest::Block(n) => (to, Ask::Query(Request::Block(n))),
        },
        Output::State(state) => return Err(ConnectorEvent::State(state)),
        Output::Clocks(clocks) => return Err(ConnectorEvent::Clocks(clocks)),
        Output::Peer { id, alive } => return Err(ConnectorEvent::Peer { id, alive }),
        Output::SitsOut { id, sitting_out } => {
            return Err(ConnectorEvent::SitsOut { id, sitting_out });
        }
        Output::Install {
            slot,
            hash,
            certified,
            packed,
        } => {
            return Err(ConnectorEvent::Install {
                slot,
                hash,
                certified,
                packed,
            });
        }
        Output::Blocks(blocks) => return Err(ConnectorEvent::Blocks(blocks)),
        Output::LostMajority { alive, needed } => {
            return Err(ConnectorEvent::LostMajority { alive, needed });
        }
    };
    Ok((Endpoint::Server(to), Payload::Ask(ask)))
}

/// What the connector makes of an answer, read at its clock's `local`
/// time: a status must be for a slot near this server's clock, be a status
/// and carry the commit certificate that vouches for it (checked through
/// the listener's memo, as the real connector checks it; the sender is the
/// network's word, so the envelope's signature check has nothing to add
/// here); a block must prove itself, as the real connector checks it.
/// The seal a `B` answer serves, if it proves the block it comes with, as
/// the connector passes it to the ledger (`Connector::answer`).
fn fetched_seal(response: &Response, setup: &Setup) -> Option<ConnectorEvent> {
    let Response::Reply(Reply::Block {
        seal: Some(seal),
        block,
    }) = response
    else {
        return None;
    };
    let block = check_block(&setup.chain, &setup.servers, setup.schedule.shape(), block).ok()?;
    seal.proves(&block.header).then(|| ConnectorEvent::Seal {
        number: block.header.number,
        block: block.header.hash(),
        seal: *seal,
    })
}

pub fn answer(response: Response, local: Millis, setup: &Setup, listener: &mut Listener) -> Answer {
    let slot_ms = setup.schedule.slot_ms;
    match response {
        Response::Sign { slot, message } => {
            let current = local / slot_ms;
            match *message {
                PeerMessage::Register(hello) | PeerMessage::Heart(hello) => {
                    // The parameters first, then the slot, as the connector.
                    let differences = setup.params.differences(&hello.params);
                    if !differences.is_empty() {
                        return Answer::Refused(differences.join(", "));
                    }
                    if slot.abs_diff(current) > 2 {
                        return Answer::Refused(format!(
                            "a status for slot {slot}, this server is at slot {current}"
                        ));
                    }
                    match listener.status(setup, &hello) {
                        Ok(greeting) => Answer::Status {
                            status: greeting.status,
                            clock: greeting.clock,
                            echo: greeting.echo,
                            sitting_out: greeting.sitting_out,
                        },
                        Err(e) => Answer::Refused(e),
                    }
                }
                other => Answer::Refused(format!("{} is not a status", other.command().name())),
            }
        }
        Response::Reply(Reply::Database {
            hash,
            slot,
            height,
            certified,
            packed,
        }) => Answer::Database {
            hash,
            slot,
            height,
            certified,
            packed,
        },
        Response::Reply(Reply::Block { block: bytes, .. }) => {
            match check_block(&setup.chain, &setup.servers, setup.schedule.shape(), &bytes) {
                Ok(block) => Answer::Block(block),
                Err(e) => Answer::Refused(e.to_string()),
            }
        }
        Response::Reply(Reply::Error(message)) => Answer::Refused(message),
        Response::Reply(_) => Answer::Refused(String::new()),
    }
}

//! rota-connector: the connector thread, which talks to the other servers.
//!
//! It owns one DEALER socket per other server in the conf, connected to that
//! server's peering socket (its `[[servers]] peering` address), apart from
//! the clients (reconnecting on its own, with backoff; built by
//! `rota-sockets`, which limits a reply to `peering.max_message_bytes`), and
//! the PULL end of its inproc signal pair. It carries two kinds of traffic:
//!
//! - the [`machine::Machine`]'s requests: registrations, heartbeats, and the
//!   database and blocks fetched when this server is out of sync (`D` and
//!   `B`, which the peering socket answers);
//! - the ledger thread's peer messages (ROUND, VOTE, RESULT, push, forward),
//!   which it signs and sends.
//!
//! Answers are checked here: a signed status must be signed by the server it
//! was asked of, for the chain, and for a slot near this server's clock; a
//! fetched block must prove itself and carry well-signed payments.

mod check;
mod error;
pub mod machine;

pub use check::check_block;

use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender};
pub use machine::Clocks;
use machine::{Answer, Input, Machine, Output, Settings, State};
use rota_peer::block::Block;
use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::seal::Seal;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::Certified;
use rota_peer::wire::{
    CertifiedStatus, Envelope, Greeting, Hello, Params, PeerMessage, Reply, Request, ServerList,
};
use rota_peer::{BlockNumber, Hash, Millis, ServerId, Slot};
use rota_sockets::{Signal, SignalReceiver};

pub use error::{Error, Refusal};

/// The inproc endpoint of the connector's signal pair.
pub const SIGNAL: &str = "inproc://rota-connector-signal";

/// Where a ledger message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Only(Vec<ServerId>),
}

/// What the ledger thread tells the connector.
#[derive(Clone, Debug)]
pub enum ConnectorInput {
    /// The ledger's committed state changed: its status, with the commit
    /// certificate sent along with it in `register` and `heart` (boxed: the
    /// certificate is many times the other inputs).
    Own(Box<CertifiedStatus>),
    /// The ledger no longer holds the consensus state.
    OutOfSync,
    /// Fetched blocks did not link; blocks from `from` on are needed.
    Fork { from: BlockNumber },
    /// Sign `message` for `slot` and send it. Boxed: a round protocol
    /// message carries a signed header and is many times the other inputs.
    Send {
        to: Target,
        slot: Slot,
        message: Box<PeerMessage<VerifiedTx>>,
    },
}

/// What the connector tells the ledger thread.
#[derive(Clone, Debug)]
pub enum ConnectorEvent {
    State(State),
    Peer {
        id: ServerId,
        alive: bool,
    },
    /// Another server started or stopped sitting its alpha slots out.
    SitsOut {
        id: ServerId,
        sitting_out: bool,
    },
    /// A database a majority holds: check its hash, then install it.
    Install {
        slot: Slot,
        hash: Hash,
        certified: Vec<u8>,
        packed: Vec<u8>,
    },
    Blocks(Vec<Block>),
    /// The seal a server served with a fetched block; it proves the block.
    Seal {
        number: BlockNumber,
        block: Hash,
        seal: Seal,
    },
    /// The clocks after a heartbeat round: offsets to every server, and
    /// whether this one sits out its alpha slots.
    Clocks(Clocks),
    LostMajority {
        alive: usize,
        needed: usize,
    },
}

/// The most unanswered `register`s and `heart`s remembered per server.
const ASKED: usize = 8;

/// Who this server is and whom it talks to.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    pub chain: String,
    pub keypair: Keypair,
    pub me: ServerId,
    pub servers: ServerList,
    /// The peering address of each server, in list order; this server's own
    /// is not used, and may be absent on a chain of one.
    pub addresses: Vec<Option<SocketAddr>>,
    /// The largest reply taken from another server (`D` holds a database).
    pub max_message_bytes: i64,
    pub slot_ms: u64,
    pub heartbeat_ms: u64,
    pub missed_heartbeats: u32,
    pub tolerance_ms: u64,
    /// The chain's parameters: sent with every `register` and `heart`, and
    /// an answer with others is refused.
    pub params: Params,
}

/// The connector thread's state. Build with [`Connector::new`], then call
/// [`Connector::run`] on its own thread.
pub struct Connector {
    config: ConnectorConfig,
    sockets: Vec<Option<zmq::Socket>>,
    signal: SignalReceiver,
    machine: Machine,
    /// The commit certificate of the machine's own status, sent with it.
    own_certified: Option<Certified>,
    /// The clocks of the `register`s and `heart`s sent to each server and
    /// not yet answered (at most [`ASKED`]): an answer's echo must be one
    /// of them to give a clock sample, so that an answer replayed or
    /// redirected from another request says nothing of the clocks.
    asked: Vec<std::collections::VecDeque<Millis>>,
    from_ledger: Receiver<ConnectorInput>,
    to_ledger: Sender<ConnectorEvent>,
}

impl Connector {
    /// Connects a DEALER to every other server's peering socket and binds
    /// the signal pair.
    pub fn new(
        ctx: &zmq::Context,
        config: ConnectorConfig,
        own: CertifiedStatus,
        from_ledger: Receiver<ConnectorInput>,
        to_ledger: Sender<ConnectorEvent>,
    ) -> Result<Connector, Error> {
        let mut sockets = Vec::with_capacity(config.addresses.len());
        for (i, address) in config.addresses.iter().enumerate() {
            let id = ServerId::from_index(i);
            if id == config.me {
                sockets.push(None);
                continue;
            }
            let address = address.ok_or(Error::NoPeering { id })?;
            let socket = rota_sockets::dealer(ctx, &address, config.max_message_bytes).map_err(
                |source| Error::Connect {
                    id,
                    address,
                    source,
                },
            )?;
            sockets.push(Some(socket));
        }
        let signal = SignalReceiver::bind(ctx, SIGNAL)?;
        let settings = Settings {
            me: config.me,
            servers: config.servers.len(),
            heartbeat_ms: config.heartbeat_ms,
            missed_heartbeats: config.missed_heartbeats,
            tolerance_ms: config.tolerance_ms,
        };
        Ok(Connector {
            machine: Machine::new(settings, own.status),
            own_certified: own.certified,
            asked: vec![std::collections::VecDeque::new(); config.servers.len()],
            config,
            sockets,
            signal,
            from_ledger,
            to_ledger,
        })
    }

    /// The connector thread body. Owns the DEALER sockets and the signal
    /// receiver; takes [`ConnectorInput`] from `from_ledger` when woken, and
    /// sends [`ConnectorEvent`] on `to_ledger`. Returns on a `stop` signal or
    /// when the ledger has gone.
    pub fn run(mut self) {
        let mut outputs = self.machine.step(Input::Tick, unix_now_ms());
        loop {
            if !self.perform(outputs) {
                log::debug!("the ledger has gone; connector stopping");
                return;
            }
            let timeout = self
                .machine
                .next_deadline()
                .saturating_sub(unix_now_ms())
                .clamp(1, 1_000);
            let ready = match self.poll(timeout as i64) {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("connector poll failed: {e}");
                    return;
                }
            };
            if ready.signal && self.signal.drain() == Some(Signal::Stop) {
                // The ledger's last messages (a failed RESULT that stops the
                // other servers, say) go out first; the DEALERs linger briefly
                // to deliver them.
                while let Ok(input) = self.from_ledger.try_recv() {
                    if let ConnectorInput::Send { .. } = input {
                        self.handle_ledger(input);
                    }
                }
                log::debug!("connector stopping");
                return;
            }
            outputs = Vec::new();
            while let Ok(input) = self.from_ledger.try_recv() {
                outputs.extend(self.handle_ledger(input));
            }
            for id in ready.peers {
                outputs.extend(self.receive(id));
            }
            outputs.extend(self.machine.step(Input::Tick, unix_now_ms()));
        }
    }

    fn handle_ledger(&mut self, input: ConnectorInput) -> Vec<Output> {
        let now = unix_now_ms();
        match input {
            ConnectorInput::Own(own) => {
                self.own_certified = own.certified;
                self.machine.step(Input::Own(own.status), now)
            }
            ConnectorInput::OutOfSync => self.machine.step(Input::OutOfSync, now),
            ConnectorInput::Fork { from } => self.machine.step(Input::Fork { from }, now),
            ConnectorInput::Send { to, slot, message } => {
                let envelope = Envelope::sign_payload(
                    &self.config.keypair,
                    &self.config.chain,
                    slot,
                    message.command(),
                    message.payload(),
                );
                let frames = Request::Peer(envelope).encode(&self.config.chain);
                let ids: Vec<ServerId> = match to {
                    Target::All => self
                        .config
                        .servers
                        .ids()
                        .filter(|id| *id != self.config.me)
                        .collect(),
                    Target::Only(ids) => ids,
                };
                for id in ids {
                    self.send(id, &frames, message.command().name());
                }
                Vec::new()
            }
        }
    }

    fn poll(&self, timeout: i64) -> zmq::Result<Ready> {
        let mut items = vec![self.signal.socket().as_poll_item(zmq::POLLIN)];
        let mut ids = Vec::new();
        for (i, socket) in self.sockets.iter().enumerate() {
            if let Some(socket) = socket {
                items.push(socket.as_poll_item(zmq::POLLIN));
                ids.push(ServerId::from_index(i));
            }
        }
        zmq::poll(&mut items, timeout)?;
        Ok(Ready {
            signal: items[0].is_readable(),
            peers: ids
                .into_iter()
                .zip(&items[1..])
                .filter(|(_, item)| item.is_readable())
                .map(|(id, _)| id)
                .collect(),
        })
    }

    fn send(&self, to: ServerId, frames: &[Vec<u8>], what: &str) {
        let Some(Some(socket)) = self.sockets.get(to.index()) else {
            return;
        };
        if let Err(e) = socket.send_multipart(frames, zmq::DONTWAIT) {
            log::debug!("{what} to server {to} not sent ({e}): not connected");
        }
    }

    /// Carries out the machine's outputs; false when the ledger has gone.
    fn perform(&mut self, outputs: Vec<Output>) -> bool {
        for output in outputs {
            let event = match output {
                Output::Send { to, request } => {
                    let (frames, what) = self.request_frames(to, request);
                    self.send(to, &frames, what);
                    continue;
                }
                Output::State(state) => ConnectorEvent::State(state),
                Output::Peer { id, alive } => ConnectorEvent::Peer { id, alive },
                Output::SitsOut { id, sitting_out } => ConnectorEvent::SitsOut { id, sitting_out },
                Output::Install {
                    slot,
                    hash,
                    certified,
                    packed,
                } => ConnectorEvent::Install {
                    slot,
                    hash,
                    certified,
                    packed,
                },
                Output::Blocks(blocks) => ConnectorEvent::Blocks(blocks),
                Output::Clocks(clocks) => ConnectorEvent::Clocks(clocks),
                Output::LostMajority { alive, needed } => {
                    ConnectorEvent::LostMajority { alive, needed }
                }
            };
            // Never block on the ledger: it may itself be waiting to hand
            // this thread a message. A full queue drops the event, which
            // the state machine's next round of asking makes up for.
            match self.to_ledger.try_send(event) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(event)) => {
                    log::warn!("the ledger's queue is full: dropped {}", event_name(&event));
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
            }
        }
        true
    }

    fn request_frames(
        &mut self,
        to: ServerId,
        request: machine::Request,
    ) -> (Vec<Vec<u8>>, &'static str) {
        let chain = &self.config.chain;
        let now = unix_now_ms();
        let slot = now / self.config.slot_ms;
        if matches!(
            request,
            machine::Request::Register(_) | machine::Request::Heart(_)
        ) && let Some(asked) = self.asked.get_mut(to.index())
        {
            if asked.len() == ASKED {
                asked.pop_front();
            }
            asked.push_back(now);
        }
        let sign = |message: PeerMessage| {
            let envelope = Envelope::sign(&self.config.keypair, chain, slot, &message);
            Request::Peer(envelope).encode(chain)
        };
        let sitting_out = self.machine.sitting_out();
        let live = self.machine.live();
        let certified = |status| Hello {
            params: self.config.params,
            clock: now,
            echo: 0,
            sitting_out,
            live: live.clone(),
            status: CertifiedStatus {
                status,
                certified: self.own_certified.clone(),
            },
        };
        match request {
            machine::Request::Register(status) => {
                (sign(PeerMessage::Register(certified(status))), "register")
            }
            machine::Request::Heart(status) => {
                (sign(PeerMessage::Heart(certified(status))), "heart")
            }
            machine::Request::Database => (Request::Database.encode(chain), "D"),
            machine::Request::Block(n) => (Request::Block(n).encode(chain), "B"),
        }
    }

    /// Reads every answer waiting from server `id`.
    fn receive(&mut self, id: ServerId) -> Vec<Output> {
        let mut outputs = Vec::new();
        while let Some(Some(socket)) = self.sockets.get(id.index()) {
            let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) else {
                break;
            };
            let parts: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            let answer = match Reply::decode(&parts) {
                Ok(reply) => self.answer(id, reply),
                Err(e) => {
                    log::warn!("server {id} sent an unreadable reply: {e}");
                    continue;
                }
            };
            outputs.extend(
                self.machine
                    .step(Input::Answer { from: id, answer }, unix_now_ms()),
            );
        }
        outputs
    }

    /// Turns a reply into what the machine understands, checking signatures.
    fn answer(&mut self, from: ServerId, reply: Reply) -> Answer {
        match reply {
            Reply::Signed(envelope) => match self.check_status(from, &envelope) {
                Ok(greeting) => Answer::Status {
                    status: greeting.status,
                    clock: greeting.clock,
                    echo: self.answered(from, greeting.echo),
                    sitting_out: greeting.sitting_out,
                },
                Err(refusal) => {
                    log::warn!("server {from}: {refusal}");
                    Answer::Refused(refusal.to_string())
                }
            },
            Reply::Database {
                hash,
                slot,
                height,
                certified,
                packed,
            } => Answer::Database {
                hash,
                slot,
                height,
                certified,
                packed,
            },
            Reply::Block { seal, block: bytes } => {
                // Checked only if it is one the fetch waits for: its
                // number is the header's first 8 bytes.
                let number = bytes
                    .get(..8)
                    .map(|n| u64::from_be_bytes(n.try_into().expect("8 bytes")));
                if number.is_some_and(|n| !self.machine.wants_block(n)) {
                    log::debug!("server {from}: block {number:?} unasked or late; not checked");
                    return Answer::Refused("a block not asked for".into());
                }
                let started = std::time::Instant::now();
                match check_block(
                    &self.config.chain,
                    &self.config.servers,
                    self.config.params.shape(),
                    &bytes,
                ) {
                    Ok(block) => {
                        log::debug!(
                            "connector: block {} ({} payments) from server {from} checked in {} ms",
                            block.header.number,
                            block.transactions.len(),
                            started.elapsed().as_millis()
                        );
                        // A seal that proves the block goes to the ledger,
                        // which keeps it for a block its certificate says
                        // is sealed and that it holds no seal for.
                        if let Some(seal) = seal.filter(|seal| seal.proves(&block.header)) {
                            let event = ConnectorEvent::Seal {
                                number: block.header.number,
                                block: block.header.hash(),
                                seal,
                            };
                            if self.to_ledger.try_send(event).is_err() {
                                log::debug!("a fetched seal not passed on: the queue is full");
                            }
                        }
                        Answer::Block(block)
                    }
                    Err(e) => {
                        log::warn!("server {from}: {e}");
                        Answer::Refused(Refusal::Block(e).to_string())
                    }
                }
            }
            Reply::Error(message) => {
                // A vote or certificate that reached a server after its slot
                // was decided there is a late copy, not a fault: every
                // commit makes a few.
                if message.contains("is already decided here") {
                    log::debug!("server {from} refused a message: {message}");
                } else if message.contains("runs with other chain parameters") {
                    // This server's conf (or the other's) must be fixed.
                    log::warn!("server {from} refused a message: {message}");
                } else {
                    log::info!("server {from} refused a message: {message}");
                }
                Answer::Refused(message)
            }
            other => {
                log::debug!("server {from}: {other:?}");
                Answer::Refused(String::new())
            }
        }
    }

    /// The echo of an answer from `from` if it is the clock of a request
    /// still unanswered (that one and the older ones are then answered);
    /// else 0, which gives no clock sample.
    fn answered(&mut self, from: ServerId, echo: Millis) -> Millis {
        let Some(asked) = self.asked.get_mut(from.index()) else {
            return 0;
        };
        match asked.iter().position(|clock| *clock == echo) {
            Some(at) => {
                asked.drain(..=at);
                echo
            }
            None => 0,
        }
    }

    fn check_status(&self, from: ServerId, envelope: &Envelope) -> Result<Greeting, Refusal> {
        let signer = self
            .config
            .servers
            .verify(&self.config.chain, envelope)
            .map_err(Refusal::Signature)?;
        if signer != from {
            return Err(Refusal::WrongSigner { from, signer });
        }
        match envelope
            .message(self.config.servers.len())
            .map_err(Refusal::Payload)?
        {
            PeerMessage::Register(hello) | PeerMessage::Heart(hello) => {
                // The parameters first: a server with another slot length
                // is named for it, not for a stale slot.
                let differences = self.config.params.differences(&hello.params);
                if !differences.is_empty() {
                    return Err(Refusal::Params {
                        from,
                        differences: differences.join(", "),
                    });
                }
                let current = unix_now_ms() / self.config.slot_ms;
                if envelope.slot.abs_diff(current) > 2 {
                    return Err(Refusal::Stale {
                        slot: envelope.slot,
                        current,
                    });
                }
                hello
                    .verify(&self.config.chain, &self.config.servers)
                    .map_err(Refusal::Uncertified)
            }
            other => Err(Refusal::NotAStatus(other.command())),
        }
    }
}

struct Ready {
    signal: bool,
    peers: Vec<ServerId>,
}

/// What an event is, for a log line.
fn event_name(event: &ConnectorEvent) -> &'static str {
    match event {
        ConnectorEvent::State(_) => "a state change",
        ConnectorEvent::Peer { .. } => "a peer's liveness",
        ConnectorEvent::SitsOut { .. } => "a peer sitting out",
        ConnectorEvent::Install { .. } => "a database to install",
        ConnectorEvent::Blocks(_) => "fetched blocks",
        ConnectorEvent::Clocks(_) => "the clocks",
        ConnectorEvent::Seal { .. } => "a fetched seal",
        ConnectorEvent::LostMajority { .. } => "a lost majority",
    }
}

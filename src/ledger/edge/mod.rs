//! What the ledger thread does with its input, without its channels: the
//! [`Edge`] around the pure [`Core`] and the [`Store`].
//!
//! The ledger thread (`mod.rs`) owns the queues and their order (`inbox.rs`,
//! `outbox.rs`), the wake-ups, the clock and the signing key; everything it decides lives here, so that the
//! cluster simulator runs the very same steps with a simulated clock, a
//! simulated disk and simulated queues. The edge:
//!
//! - answers a request ([`Edge::handle`]): a query from the committed state
//!   and the block store, a payment through the core, a peer message through
//!   the core (registrations and heartbeats with this server's status, for
//!   the caller to sign);
//! - takes the connector's events ([`Edge::on_connector`]): its state, a
//!   peer's liveness, a database or blocks fetched from the others;
//! - carries out the core's actions in order ([`Edge::perform`]), persisting
//!   through the store before anything after it leaves.
//!
//! A server starts, and restarts, from what its store kept ([`resume`]).
//!
//! What leaves the edge other than a reply (events to publish, input for
//! the connector) is kept as [`Effect`]s, in order, until the caller takes
//! them ([`Edge::take_effects`]). The edge reads no clock: every step takes
//! the time from its caller.

use std::sync::Arc;

use rota_connector::machine::State;
use rota_connector::{Clocks, ConnectorEvent, ConnectorInput};
use rota_listener::{Inbound, PeerInput, Stats};
use rota_peer::balances::Balances;
use rota_peer::schedule::Schedule;
use rota_peer::wire::consensus::Certified;
use rota_peer::wire::{
    CertifiedStatus, Hello, Params, PeerMessage, Reply, Request, ServerList, Status, TxStatus,
};
use rota_peer::{Hash, Millis, PublicKey, ServerId, Slot};

mod commit;
mod info;
mod sealing;

use sealing::Sealed;

use super::consensus;
use super::core::{Action, Core, PeerRefusal, Persist, Target, Tracked};
pub use super::resume::resume;
use super::store::{Appended, Store, Tip};
use crate::events::{Event, PeerState, Published};
use crate::mining::thread::MinerInput;
pub use commit::build_block;

/// Why the ledger ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGINT or SIGTERM).
    Shutdown,
    /// No majority is possible; the servers must be restarted by hand.
    ConsensusLost(String),
    /// A local failure (the disk, a thread gone).
    Failed(String),
}

/// Something the edge hands on besides a reply, in the order it happened.
#[derive(Clone, Debug)]
pub enum Effect {
    /// An event for the publisher.
    Publish(Published),
    /// Input for the connector.
    Connector(ConnectorInput),
    /// Input for the miner thread (dropped when its queue is full, or when
    /// the chain is not sealed).
    Miner(MinerInput),
}

/// The answer to one request.
#[derive(Clone, Debug)]
pub enum Response {
    /// A reply as it is.
    Reply(Reply),
    /// This server's status (a `register` or `heart` message), to be signed
    /// for `slot` by the caller, who holds the key, and sent as
    /// [`Reply::Signed`].
    Sign {
        slot: Slot,
        message: Box<PeerMessage>,
    },
}

/// The ledger's state and its steps. See the module documentation.
pub struct Edge {
    core: Core,
    store: Store,
    tip: Tip,
    public_key: PublicKey,
    chain: String,
    /// The client sockets' counters and the peering socket's, for `I`.
    stats: Arc<Stats>,
    peering_stats: Arc<Stats>,
    connector: State,
    /// The chain's parameters, which every `register` and `heart` carries.
    params: Params,
    /// The clocks as the connector last reported them.
    clocks: Clocks,
    started: Millis,
    effects: Vec<Effect>,
    /// Sealing and the live views, as the edge keeps them (`sealing.rs`).
    mining: Sealed,
}

/// The parameters a chain's servers must share: its server list, its
/// schedule's timings, its difficulty (0: blocks are not sealed) and its
/// genesis.
pub fn chain_params(servers: &ServerList, schedule: &Schedule, genesis: &Hash) -> Params {
    Params::new(
        servers.keys(),
        (
            schedule.slot_ms,
            schedule.blackout_ms,
            schedule.tolerance_ms,
        ),
        schedule.difficulty,
        genesis,
    )
}

impl Edge {
    /// The edge of a server whose core was loaded from `store`, started at
    /// `now`.
    pub fn new(
        core: Core,
        store: Store,
        public_key: PublicKey,
        chain: String,
        stats: Arc<Stats>,
        peering_stats: Arc<Stats>,
        now: Millis,
    ) -> crate::Result<Edge> {
        let tip = store.tip()?;
        let genesis = store.genesis_hash().ok_or_else(|| {
            crate::Error::Store("the store was not loaded: no genesis hash".into())
        })?;
        let params = chain_params(&core.servers, &core.schedule, &genesis);
        let mut edge = Edge {
            core,
            store,
            tip,
            public_key,
            chain,
            stats,
            peering_stats,
            connector: State::Connecting,
            params,
            clocks: Clocks::default(),
            started: now,
            effects: Vec::new(),
            mining: Sealed::default(),
        };
        edge.fill_sealing();
        Ok(edge)
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn tip(&self) -> Tip {
        self.tip
    }

    /// The connector state last reported.
    pub fn connector(&self) -> State {
        self.connector
    }

    /// What the edge has handed on since it was last asked, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The chain's parameters this server runs with.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The clocks as the connector last reported them.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// This server's hello at `now`, answering a request sent at the
    /// asker's clock `echo` (0 for a request of its own): its parameters,
    /// its clock and its certified status, as `register` and `heart` and
    /// their answers carry.
    pub fn hello(&self, now: Millis, echo: Millis) -> Hello {
        Hello {
            params: self.params,
            clock: now,
            echo,
            sitting_out: self.core.sitting_out().is_some(),
            live: self.live(),
            status: self.status(),
        }
    }

    /// This server's committed state, as heartbeats report it, with the
    /// commit certificate that vouches for it. The blocks it reports are
    /// the ones the certificate vouches for (`CertifiedStatus::verify`):
    /// none without one; at most the height it names, and there only its
    /// block. A block held past it (fetched ahead of the state) is not
    /// reported, and one that differs from the certified block at its
    /// height is reported as missing, so that the connector fetches the
    /// certified one in its place, and the others do not refuse every
    /// hello of this server.
    pub fn status(&self) -> CertifiedStatus {
        let committed = self.core.committed();
        let certified = self.core.certified();
        let (height, block_hash) = match certified {
            None => (0, Hash::default()),
            Some(c) => {
                let after = c.header.header.after(self.core.schedule.shape());
                commit::vouched_tip(self.tip, after, |n| self.store.block_hash(n).ok().flatten())
            }
        };
        CertifiedStatus {
            status: Status {
                slot: committed.slot,
                balance_hash: committed.hash,
                height,
                block_hash,
            },
            certified: certified.map(|c| c.clone().into_inner()),
        }
    }

    /// The next moment the core needs a tick.
    pub fn next_deadline(&self, now: Millis) -> Millis {
        self.core.next_deadline(now)
    }

    /// What a server sends again when it starts: its own votes and lock.
    pub fn resend(&mut self) -> Vec<Action> {
        self.core.resend()
    }

    /// Advances the core's time.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        self.take_found(now);
        self.core.tick(now)
    }

    /// Tells the connector this server's committed state.
    pub fn send_own(&mut self) {
        let status = self.status();
        self.for_connector(ConnectorInput::Own(Box::new(status)));
    }

    /// The ledger ends: says so, and warns of payments it drops.
    pub fn exit(&mut self, exit: Exit, now: Millis) -> Exit {
        let pending = self.core.pending_count() + self.core.held_count();
        if pending > 0 {
            log::warn!("stopping with {pending} payments taken but not committed; they are lost");
        }
        let reason = match &exit {
            Exit::Shutdown => "shutdown".to_string(),
            Exit::ConsensusLost(reason) => format!("consensus lost: {reason}"),
            Exit::Failed(reason) => format!("failed: {reason}"),
        };
        self.publish(Event::Stop { reason }, now);
        exit
    }

    fn publish(&mut self, event: Event, now: Millis) {
        self.effects.push(Effect::Publish(Published {
            server: self.core.me,
            time_ms: now,
            event,
        }));
    }

    fn for_connector(&mut self, input: ConnectorInput) {
        self.effects.push(Effect::Connector(input));
    }

    /// Answers one request, returning what the core asks for.
    pub fn handle(&mut self, inbound: Inbound, now: Millis) -> (Response, Vec<Action>) {
        match inbound {
            Inbound::Refused(message) => (Response::Reply(Reply::Error(message)), Vec::new()),
            Inbound::Query(request) => {
                let reply = self
                    .query(request, now)
                    .unwrap_or_else(|e| Reply::Error(e.to_string()));
                (Response::Reply(reply), Vec::new())
            }
            Inbound::Submit(tx) => {
                let (result, actions) = self.core.submit(tx, now);
                let reply = match result {
                    Ok(disposition) => {
                        let event = Event::Tx {
                            id: tx.id(),
                            state: disposition.into(),
                            alpha: disposition.server(),
                        };
                        self.publish(event, now);
                        Reply::Submitted {
                            id: tx.id(),
                            disposition,
                        }
                    }
                    Err(refusal) => Reply::Error(format!("payment refused: {refusal}")),
                };
                (Response::Reply(reply), actions)
            }
            Inbound::Peer {
                from,
                slot,
                message,
            } => {
                let command = message.command();
                match self.on_peer(from, slot, message, now) {
                    Ok((Some(response), actions)) => (response, actions),
                    Ok((None, actions)) => (Response::Reply(Reply::Ack(command)), actions),
                    Err(refusal) => {
                        let late = matches!(
                            refusal,
                            PeerRefusal::Consensus(consensus::Refusal::Decided { .. })
                        );
                        if late {
                            log::debug!("{} from server {from} refused: {refusal}", command.name());
                        } else {
                            log::info!("{} from server {from} refused: {refusal}", command.name());
                        }
                        (
                            Response::Reply(Reply::Error(refusal.to_string())),
                            Vec::new(),
                        )
                    }
                }
            }
        }
    }

    /// A peer message: registrations and heartbeats are answered with this
    /// server's status; forwarded payments and the round protocol go to the
    /// core.
    fn on_peer(
        &mut self,
        from: ServerId,
        slot: u64,
        message: PeerInput,
        now: Millis,
    ) -> Result<(Option<Response>, Vec<Action>), PeerRefusal> {
        let actions = match message {
            // Answered with this server's status, by the ledger since it
            // holds the status; registrations and heartbeats are not rounds,
            // so only a slot far from this server's clock is refused.
            PeerInput::Mine(message) => {
                self.on_mine(from, slot, message, now)?;
                Vec::new()
            }
            PeerInput::Register(ref greeting) | PeerInput::Heart(ref greeting) => {
                // The parameters first: a server with another slot length
                // is told so, not that its slot is stale.
                let differences = self.params.differences(&greeting.params);
                if !differences.is_empty() {
                    return Err(PeerRefusal::Params {
                        from,
                        differences: differences.join(", "),
                    });
                }
                let current = self.core.schedule.slot_at(now);
                if slot.abs_diff(current) > 2 {
                    return Err(PeerRefusal::StaleStatus {
                        command: message.command(),
                        slot,
                        current,
                    });
                }
                self.for_miner(MinerInput::Heard(from));
                self.note_view(from, &greeting.live);
                let hello = self.hello(now, greeting.clock);
                let message = match message {
                    PeerInput::Register(_) => PeerMessage::Register(hello),
                    _ => PeerMessage::Heart(hello),
                };
                let response = Response::Sign {
                    slot: current,
                    message: Box::new(message),
                };
                return Ok((Some(response), Vec::new()));
            }
            PeerInput::Consensus(message) => self.core.on_consensus(from, *message, now)?,
            PeerInput::Forward(transaction) => {
                let disposition = self.core.on_forward(from, slot, transaction, now)?;
                let event = Event::Tx {
                    id: transaction.id(),
                    state: disposition.into(),
                    alpha: disposition.server(),
                };
                self.publish(event, now);
                Vec::new()
            }
        };
        Ok((None, actions))
    }

    /// Answers a client query from the committed state and the block store.
    fn query(&mut self, request: Request, now: Millis) -> crate::Result<Reply> {
        let committed = self.core.committed();
        let not_found = |n| format!("block {n} not found; the height is {}", self.tip.height);
        Ok(match request {
            Request::Info => Reply::Info(self.info(now).to_json()),
            Request::Height => Reply::Height(self.tip.height),
            Request::Block(n) => match self.store.block(n)? {
                Some(block) => Reply::Block {
                    seal: self.store.seal(n)?,
                    block,
                },
                None => Reply::error(not_found(n)),
            },
            Request::BlockHash(n) => match self.store.block_hash(n)? {
                Some(hash) => Reply::BlockHash(hash),
                None => Reply::error(not_found(n)),
            },
            Request::Account(key) => match committed.snapshot.get(&key) {
                Some(balance) => Reply::Account(balance),
                None => Reply::error(format!("no account for {key}")),
            },
            Request::Status(id) => Reply::Status(match self.store.tx_block(&id)? {
                Some(block) => TxStatus::Committed {
                    block,
                    slot: self.store.block_slot(block)?,
                },
                None => match self.core.tracked(&id) {
                    Some(Tracked::Pending { .. }) => TxStatus::Pending,
                    Some(Tracked::Lost { decided, .. }) => TxStatus::Lost { slot: decided },
                    None => TxStatus::Unknown,
                },
            }),
            Request::Database => Reply::Database {
                hash: committed.hash,
                slot: committed.slot,
                height: self.tip.height,
                certified: self.certified_bytes(),
                packed: committed.snapshot.pack(),
            },
            Request::Submit(_) | Request::Peer(_) => Reply::error("not a query"),
        })
    }

    /// An event from the connector, returning what the core asks for.
    pub fn on_connector(&mut self, event: ConnectorEvent, now: Millis) -> Vec<Action> {
        match event {
            ConnectorEvent::State(state) => {
                self.connector = state;
                self.core.set_synced(state == State::Sampling, now);
                let event = Event::Connector {
                    state: state.into(),
                };
                self.publish(event, now);
                Vec::new()
            }
            ConnectorEvent::SitsOut { id, sitting_out } => {
                self.core.set_peer_sitting_out(id, sitting_out);
                Vec::new()
            }
            ConnectorEvent::Peer { id, alive } => {
                self.core.set_peer_alive(id, alive);
                let event = Event::Peer {
                    peer: id,
                    state: PeerState::of(alive),
                };
                self.publish(event, now);
                Vec::new()
            }
            ConnectorEvent::Install {
                slot,
                certified,
                packed,
                ..
            } => match self.install(&certified, &packed) {
                Ok(actions) => actions,
                Err(reason) => {
                    log::warn!("the database of slot {slot} fetched is refused: {reason}");
                    vec![Action::OutOfSync]
                }
            },
            ConnectorEvent::Seal {
                number,
                block,
                seal,
            } => {
                self.keep_fetched_seal(number, &block, seal);
                Vec::new()
            }
            ConnectorEvent::Blocks(blocks) => {
                let started = std::time::Instant::now();
                match self.store.append_fetched(&blocks) {
                    Ok(Appended::Tip(tip)) => {
                        log::debug!(
                            "fetched blocks up to {} stored in {} ms",
                            tip.height,
                            started.elapsed().as_millis()
                        );
                        self.tip = tip;
                        self.fill_sealing();
                        self.keep_fetched_seals();
                        self.send_own();
                    }
                    Ok(Appended::Fork { from }) => {
                        self.refresh_tip();
                        self.for_connector(ConnectorInput::Fork { from });
                    }
                    Err(e) => {
                        log::warn!("fetched blocks not stored: {e}");
                        self.refresh_tip();
                    }
                }
                Vec::new()
            }
            ConnectorEvent::Clocks(clocks) => {
                self.core
                    .set_sitting_out(clocks.sitting_out.then_some(clocks.skew));
                self.clocks = clocks;
                Vec::new()
            }
            ConnectorEvent::LostMajority { alive, needed } => vec![Action::Stop(format!(
                "only {alive} of {} servers are alive; a majority needs {needed}",
                self.core.servers.len()
            ))],
        }
    }

    /// Installs a fetched database under the commit certificate that came
    /// with it: without one, or with one that does not check or vouches for
    /// another hash, nothing is installed.
    fn install(&mut self, certified: &[u8], packed: &[u8]) -> Result<Vec<Action>, String> {
        if certified.is_empty() {
            return Err("it carries no commit certificate".into());
        }
        let certified = Certified::decode(certified, self.core.servers.len())
            .map_err(|e| format!("its certificate is unreadable: {e}"))?;
        let balances = Balances::from_packed(packed).map_err(|e| e.to_string())?;
        self.core.install(&certified, balances)
    }

    /// The bytes of the commit certificate for `D` replies (empty for the
    /// anchor).
    pub fn certified_bytes(&self) -> Vec<u8> {
        self.core
            .certified()
            .map(|c| c.clone().into_inner().encode())
            .unwrap_or_default()
    }

    /// Reads the tip again after the store changed in ways the edge did not
    /// follow (blocks dropped or appended before a fork was found).
    fn refresh_tip(&mut self) {
        match self.store.tip() {
            Ok(tip) => self.tip = tip,
            Err(e) => log::error!("cannot read the block tip: {e}"),
        }
    }

    /// Carries out the core's actions; returns an exit when one is asked for.
    ///
    /// Actions are carried out in order. A persist that fails stops the
    /// node at once: the actions after it are dropped, because they may
    /// announce what was to be kept.
    pub fn perform(&mut self, actions: Vec<Action>, now: Millis) -> Option<Exit> {
        let mut exit = None;
        let total = actions.len();
        let mut actions = actions.into_iter().enumerate().peekable();
        while let Some((done, action)) = actions.next() {
            let persisted = match action {
                Action::Send { to, slot, message } => {
                    let to = match to {
                        Target::All => rota_connector::Target::All,
                        Target::Only(ids) => rota_connector::Target::Only(ids),
                    };
                    self.for_connector(ConnectorInput::Send {
                        to,
                        slot,
                        message: Box::new(message),
                    });
                    Ok(())
                }
                // Consecutive records go to the journal in one durable write.
                Action::Persist(Persist::Consensus(record)) => {
                    let mut records = vec![record];
                    while let Some((_, Action::Persist(Persist::Consensus(_)))) = actions.peek() {
                        if let Some((_, Action::Persist(Persist::Consensus(r)))) = actions.next() {
                            records.push(r);
                        }
                    }
                    self.store.journal_append(&records)
                }
                Action::Persist(Persist::Commit(commit)) => {
                    let (started, installed) = (std::time::Instant::now(), commit.installed);
                    let slot = commit.slot;
                    let done = self.commit(commit, now);
                    if installed {
                        log::debug!(
                            "the database of slot {slot} installed in {} ms",
                            started.elapsed().as_millis()
                        );
                    }
                    done
                }
                Action::Publish(event) => {
                    self.publish(event, now);
                    Ok(())
                }
                Action::OutOfSync => {
                    self.for_connector(ConnectorInput::OutOfSync);
                    Ok(())
                }
                Action::Stop(reason) => {
                    exit = Some(Exit::ConsensusLost(reason));
                    Ok(())
                }
            };
            if let Err(e) = persisted {
                log::error!(
                    "could not persist; dropping the {} actions after it",
                    total - done - 1
                );
                return Some(Exit::Failed(format!("could not persist: {e}")));
            }
        }
        exit
    }
}

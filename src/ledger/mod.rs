//! The ledger thread: the edge around the pure [`core::Core`], whose module
//! essay says which file holds each of its steps.
//!
//! It owns the core (balances and rounds) and the [`store::Store`] (blocks,
//! the database file, the archive). It answers the requests the listener
//! and the peering thread pass on, server messages first ([`inbox`]), feeds
//! peer messages and the connector's events to the core, ticks the core at
//! its deadlines, and carries out what the core asks: persisting commits,
//! handing peer messages to the connector, publishing events, stopping.

pub mod core;
pub mod inbox;
mod outbox;
pub mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Sender;
use rota_connector::machine::State;
use rota_connector::{ConnectorEvent, ConnectorInput};
use rota_listener::{Budgets, Inbound, Incoming, Lane, Outgoing, Stats, Waker};
use rota_peer::balances::Balances;
use rota_peer::block::{Block, BlockHeader, merkle_root};
use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::wire::{Envelope, PeerMessage, Reply, Request, Status, TxStatus};
use rota_peer::{Millis, ServerId};

use self::core::{Action, Commit, Committed, Core, PeerRefusal, Persist, Target, Tracked};
pub use self::inbox::Inputs;
use self::inbox::{Inbox, Input};
use self::store::{Appended, Store, Tip};
use crate::events::{Event, PeerState};
use crate::info::{Connections, Info, PeeringCounts};

/// Why the ledger thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGINT or SIGTERM).
    Shutdown,
    /// No majority is possible; the servers must be restarted by hand.
    ConsensusLost(String),
    /// A local failure (the disk, a thread gone).
    Failed(String),
}

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
}

/// The ledger thread's state.
pub struct LedgerThread {
    core: Core,
    store: Store,
    tip: Tip,
    keypair: Keypair,
    chain: String,
    channels: Channels,
    /// The client sockets' counters and the peering socket's, for `I`.
    stats: Arc<Stats>,
    peering_stats: Arc<Stats>,
    connector: State,
    started: Millis,
    /// The lanes, put back in arrival order, and the requests due.
    inbox: Inbox,
    /// Whether answers went to the peering thread since it was last woken.
    peering_answered: bool,
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
        let tip = store.tip()?;
        Ok(LedgerThread {
            core,
            store,
            tip,
            keypair,
            chain,
            channels,
            stats,
            peering_stats,
            connector: State::Connecting,
            started: unix_now_ms(),
            inbox: Inbox::default(),
            peering_answered: false,
        })
    }

    /// This server's committed state, as heartbeats report it.
    pub fn status(&self) -> Status {
        let committed = self.core.committed();
        Status {
            slot: committed.slot,
            balance_hash: committed.hash,
            height: self.tip.height,
            block_hash: self.tip.hash,
        }
    }

    /// The ledger thread body. Owns the core and the store; reads the three
    /// lanes of requests, events from the connector and the shutdown channel
    /// ([`Inputs`], in the order [`inbox`] says); sends replies to the
    /// listener and the peering thread, events to the listener and peer
    /// messages to the connector, waking each. Returns why it stopped.
    pub fn run(mut self) -> Exit {
        self.send_own();
        loop {
            let now = unix_now_ms();
            let deadline = self.core.next_deadline(now);
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
            actions.extend(self.core.tick(unix_now_ms()));
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
        let pending = self.core.pending_count() + self.core.held_count();
        if pending > 0 {
            log::warn!("stopping with {pending} payments taken but not committed; they are lost");
        }
        let reason = match &exit {
            Exit::Shutdown => "shutdown".to_string(),
            Exit::ConsensusLost(reason) => format!("consensus lost: {reason}"),
            Exit::Failed(reason) => format!("failed: {reason}"),
        };
        self.publish(Event::Stop { reason });
        self.wake();
        exit
    }

    /// Answers one request, returning what the core asks for.
    fn handle(&mut self, incoming: Incoming) -> Vec<Action> {
        let Incoming { route, inbound } = incoming;
        let now = unix_now_ms();
        match inbound {
            Inbound::Refused(message) => {
                self.reply(route, Reply::Error(message));
                Vec::new()
            }
            Inbound::Query(request) => {
                let reply = self
                    .query(request)
                    .unwrap_or_else(|e| Reply::Error(e.to_string()));
                self.reply(route, reply);
                Vec::new()
            }
            Inbound::Submit(tx) => {
                let (result, actions) = self.core.submit(tx, now);
                let reply = match result {
                    Ok(disposition) => {
                        self.publish(Event::Tx {
                            id: tx.id(),
                            state: disposition.into(),
                            alpha: disposition.server(),
                        });
                        Reply::Submitted {
                            id: tx.id(),
                            disposition,
                        }
                    }
                    Err(refusal) => Reply::Error(format!("payment refused: {refusal}")),
                };
                self.reply(route, reply);
                actions
            }
            Inbound::Peer {
                from,
                slot,
                message,
            } => {
                let command = message.command();
                let (reply, actions) = match self.on_peer(from, slot, message, now) {
                    Ok((Some(reply), actions)) => (reply, actions),
                    Ok((None, actions)) => (Reply::Ack(command), actions),
                    Err(refusal) => {
                        log::info!("{} from server {from} refused: {refusal}", command.name());
                        (Reply::Error(refusal.to_string()), Vec::new())
                    }
                };
                self.reply(route, reply);
                actions
            }
        }
    }

    /// A peer message: registrations and heartbeats are answered with this
    /// server's signed status; the rest go to the core.
    fn on_peer(
        &mut self,
        from: ServerId,
        slot: u64,
        message: PeerMessage<rota_peer::transaction::VerifiedTx>,
        now: Millis,
    ) -> Result<(Option<Reply>, Vec<Action>), PeerRefusal> {
        let actions = match message {
            // Answered with this server's signed status, by the ledger since
            // it holds the status; registrations and heartbeats are not rounds,
            // so only a slot far from this server's clock is refused.
            PeerMessage::Register(_) | PeerMessage::Heart(_) => {
                let current = self.core.schedule.slot_at(now);
                if slot.abs_diff(current) > 2 {
                    return Err(PeerRefusal::StaleStatus {
                        command: message.command(),
                        slot,
                        current,
                    });
                }
                let answer = match message {
                    PeerMessage::Register(_) => PeerMessage::Register(self.status()),
                    _ => PeerMessage::Heart(self.status()),
                };
                let slot = current;
                let envelope = Envelope::sign(&self.keypair, &self.chain, slot, &answer);
                return Ok((Some(Reply::Signed(envelope)), Vec::new()));
            }
            PeerMessage::Round { hash, transactions } => {
                self.core.on_round(from, slot, hash, transactions, now)?
            }
            PeerMessage::Vote { hash } => self.core.on_vote(from, slot, hash)?,
            PeerMessage::Result(decision) => self.core.on_result(from, slot, decision, now)?,
            PeerMessage::Push { packed } => self.core.on_push(from, slot, &packed, now)?,
            PeerMessage::Forward { transaction } => {
                let disposition = self.core.on_forward(from, slot, transaction, now)?;
                self.publish(Event::Tx {
                    id: transaction.id(),
                    state: disposition.into(),
                    alpha: disposition.server(),
                });
                Vec::new()
            }
        };
        Ok((None, actions))
    }

    /// Answers a client query from the committed state and the block store.
    fn query(&mut self, request: Request) -> crate::Result<Reply> {
        let committed = self.core.committed();
        Ok(match request {
            Request::Info => Reply::Info(self.info().to_json()),
            Request::Height => Reply::Height(self.tip.height),
            Request::Block(n) => match self.store.block(n)? {
                Some(bytes) => Reply::Block(bytes),
                None => Reply::error(format!(
                    "block {n} not found; the height is {}",
                    self.tip.height
                )),
            },
            Request::BlockHash(n) => match self.store.block_hash(n)? {
                Some(hash) => Reply::BlockHash(hash),
                None => Reply::error(format!(
                    "block {n} not found; the height is {}",
                    self.tip.height
                )),
            },
            Request::Account(key) => match committed.snapshot.get(&key) {
                Some(balance) => Reply::Account(balance),
                None => Reply::error(format!("no account for {key}")),
            },
            Request::Status(id) => Reply::Status(match self.store.tx_block(&id)? {
                Some(block) => TxStatus::Committed(block),
                None => match self.core.tracked(&id) {
                    Some(Tracked::Pending { .. }) => TxStatus::Pending,
                    Some(Tracked::Lost { .. }) => TxStatus::Lost,
                    None => TxStatus::Unknown,
                },
            }),
            Request::Database => Reply::Database {
                hash: committed.hash,
                slot: committed.slot,
                height: self.tip.height,
                packed: committed
                    .snapshot
                    .packed()
                    .expect("committed snapshots are packed")
                    .to_vec(),
            },
            Request::Submit(_) | Request::Peer(_) => Reply::error("not a query"),
        })
    }

    /// This server's view of itself, for `I`.
    fn info(&self) -> Info {
        let now = unix_now_ms();
        let schedule = &self.core.schedule;
        let slot = schedule.slot_at(now);
        let committed = self.core.committed();
        let peers = self
            .core
            .peers()
            .iter()
            .map(|(id, alive)| (*id, PeerState::of(*alive)))
            .collect();
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            chain: self.chain.clone(),
            public_key: self.keypair.public(),
            identifier: self.core.me,
            servers: self.core.servers.len(),
            slot,
            slot_ms: schedule.slot_ms,
            blackout_ms: schedule.blackout_ms,
            tolerance_ms: schedule.tolerance_ms,
            alpha: schedule.alpha(slot),
            window_open: schedule.window_open(now),
            role: self.core.role_at(now),
            height: self.tip.height,
            block_hash: self.tip.hash,
            balance_hash: committed.hash,
            committed_slot: committed.slot,
            accounts: committed.snapshot.len(),
            supply: committed.snapshot.supply(),
            pending: self.core.pending_count(),
            held: self.core.held_count(),
            connector: self.connector.into(),
            in_sync: self.core.is_synced(),
            peers,
            connections: Connections {
                open: self.stats.open.load(Ordering::Relaxed),
                accepted: self.stats.accepted.load(Ordering::Relaxed),
            },
            requests: self.stats.requests.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            peering: PeeringCounts {
                open: self.peering_stats.open.load(Ordering::Relaxed),
                accepted: self.peering_stats.accepted.load(Ordering::Relaxed),
                requests: self.peering_stats.requests.load(Ordering::Relaxed),
                refused: self.peering_stats.refused.load(Ordering::Relaxed),
            },
            uptime_ms: now.saturating_sub(self.started),
        }
    }

    fn on_connector(&mut self, event: ConnectorEvent) -> Vec<Action> {
        let now = unix_now_ms();
        match event {
            ConnectorEvent::State(state) => {
                self.connector = state;
                self.core.set_synced(state == State::Sampling, now);
                self.publish(Event::Connector {
                    state: state.into(),
                });
                Vec::new()
            }
            ConnectorEvent::Peer { id, alive } => {
                self.core.set_peer_alive(id, alive);
                self.publish(Event::Peer {
                    peer: id,
                    state: PeerState::of(alive),
                });
                Vec::new()
            }
            ConnectorEvent::Install { slot, hash, packed } => {
                match Balances::from_packed(&packed).map(|mut b| (b.hash(), b)) {
                    Ok((got, balances)) if got == hash => {
                        log::info!("installing the fetched database {}", hash.short());
                        self.core.install(slot, hash, balances)
                    }
                    Ok((got, _)) => {
                        log::warn!(
                            "fetched database hashes to {}, not {}; refused",
                            got.short(),
                            hash.short()
                        );
                        vec![Action::OutOfSync]
                    }
                    Err(e) => {
                        log::warn!("fetched database refused: {e}");
                        vec![Action::OutOfSync]
                    }
                }
            }
            ConnectorEvent::Blocks(blocks) => {
                match self.store.append_fetched(&blocks) {
                    Ok(Appended::Tip(tip)) => {
                        self.tip = tip;
                        self.send_own();
                    }
                    Ok(Appended::Fork { from }) => {
                        self.refresh_tip();
                        self.to_connector(ConnectorInput::Fork { from });
                    }
                    Err(e) => {
                        log::warn!("fetched blocks not stored: {e}");
                        self.refresh_tip();
                    }
                }
                Vec::new()
            }
            ConnectorEvent::LostMajority { alive, needed } => vec![Action::Stop(format!(
                "only {alive} of {} servers are alive; a majority needs {needed}",
                self.core.servers.len()
            ))],
        }
    }

    /// Reads the tip again after the store changed in ways the thread did not
    /// follow (blocks dropped or appended before a fork was found).
    fn refresh_tip(&mut self) {
        match self.store.tip() {
            Ok(tip) => self.tip = tip,
            Err(e) => log::error!("cannot read the block tip: {e}"),
        }
    }

    fn send_own(&self) {
        self.to_connector(ConnectorInput::Own(self.status()));
    }

    /// Carries out the core's actions; returns an exit when one is asked for.
    ///
    /// Actions are carried out in order. A persist that fails stops the
    /// node at once: the actions after it are dropped, because they may
    /// announce what was to be kept.
    fn perform(&mut self, actions: Vec<Action>) -> Option<Exit> {
        let mut exit = None;
        let total = actions.len();
        for (done, action) in actions.into_iter().enumerate() {
            match action {
                Action::Send { to, slot, message } => {
                    let to = match to {
                        Target::All => rota_connector::Target::All,
                        Target::Only(ids) => rota_connector::Target::Only(ids),
                    };
                    self.to_connector(ConnectorInput::Send { to, slot, message });
                }
                Action::Persist(Persist::Commit(commit)) => {
                    if let Err(e) = self.commit(commit) {
                        log::error!(
                            "could not persist a commit; dropping the {} actions after it",
                            total - done - 1
                        );
                        return Some(Exit::Failed(format!("could not persist a commit: {e}")));
                    }
                }
                Action::Publish(event) => self.publish(event),
                Action::OutOfSync => self.to_connector(ConnectorInput::OutOfSync),
                Action::Stop(reason) => exit = Some(Exit::ConsensusLost(reason)),
            }
        }
        exit
    }

    fn commit(&mut self, commit: Commit) -> crate::Result<()> {
        let block = commit
            .block
            .then(|| build_block(self.tip, &commit, self.core.schedule.start(commit.slot)));
        let committed = Committed {
            slot: commit.slot,
            hash: commit.hash,
            snapshot: commit.snapshot.clone(),
        };
        self.store
            .commit(commit.slot, &committed, block.as_ref(), commit.installed)?;
        if let Some(block) = block {
            self.tip = Tip {
                height: block.header.number,
                hash: block.header.hash(),
            };
            log::info!(
                "block {} ({} payments) appended, hash {}",
                self.tip.height,
                block.transactions.len(),
                self.tip.hash.short()
            );
            self.publish(Event::Block {
                number: self.tip.height,
                hash: self.tip.hash,
                slot: commit.slot,
                transactions: block.transactions.len(),
            });
        }
        self.send_own();
        Ok(())
    }
}

/// The block for a committed round: a pure function of the round and the
/// chain's tip, so every server in consensus builds the same one.
pub fn build_block(tip: Tip, commit: &Commit, timestamp: Millis) -> Block {
    let ids: Vec<_> = commit.transactions.iter().map(|tx| tx.id()).collect();
    Block {
        header: BlockHeader {
            number: tip.height + 1,
            previous: tip.hash,
            slot: commit.slot,
            timestamp,
            merkle_root: merkle_root(&ids),
            balance_hash: commit.hash,
            difficulty: 0,
            nonce: 0,
        },
        transactions: commit.transactions.iter().map(|tx| *tx.tx()).collect(),
    }
}

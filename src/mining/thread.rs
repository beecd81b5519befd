//! The miner thread: the [`Miner`] machine on the real clock, its search
//! threads, and the channels to the ledger and the connector.
//!
//! The ledger hands it what it hears ([`MinerInput`]); the thread sends
//! `mine` messages through the connector, and shares a [`MiningView`] with
//! the ledger: the leader and hash rate `I` reports, and the seals this
//! server's coordination found, which the ledger takes for its next round.
//! It ends when the ledger drops its end of the input channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use rota_connector::{ConnectorInput, Target};
use rota_peer::block::BlockHeader;
use rota_peer::schedule::unix_now_ms;
use rota_peer::seal::Seal;
use rota_peer::wire::{Mining, PeerMessage};
use rota_peer::{BlockNumber, Hash, ServerId};
use rota_sockets::Waker;

use super::miner::{Miner, MinerConfig, Out};
use super::worker::Pool;

/// Inputs queued from the ledger to the miner; more are dropped (a lost
/// `mine` message or heartbeat costs a retry, not a seal).
pub const MINER_QUEUE: usize = 1_024;

/// The most seals waiting for the ledger to take them.
const MAX_FOUND: usize = 64;

/// Search time, summed over the threads, between two measures of the
/// hash rate.
const MEASURE_US: u64 = 200_000;

/// How often the machine ticks with nothing else to do.
const TICK_MS: u64 = 50;

/// What the ledger tells the miner.
#[derive(Clone, Debug)]
pub enum MinerInput {
    /// Server `from` sent a heartbeat or registration.
    Heard(ServerId),
    /// A `mine` message from server `from`, its envelope checked.
    Message { from: ServerId, message: Mining },
    /// The committed blocks waiting for their seals, lowest first.
    Waiting(Vec<BlockHeader>),
}

/// What the miner shows the ledger.
#[derive(Clone, Debug, Default)]
pub struct MiningView {
    pub leader: Option<ServerId>,
    /// This server's measured hashes a second.
    pub rate: u64,
    /// Nonces tried since the start.
    pub hashes: u64,
    /// The block whose seal is searched for, as this server sees it.
    pub target: Option<BlockNumber>,
    /// The live servers, as this server sees them.
    pub live: Vec<ServerId>,
    /// Seals this server's coordination found, for the ledger to take.
    pub found: Vec<(BlockNumber, Hash, Seal)>,
}

/// The miner thread's state. Build with [`MinerThread::new`], then call
/// [`MinerThread::run`] on its own thread.
pub struct MinerThread {
    miner: Miner,
    pool: Pool,
    inputs: Receiver<MinerInput>,
    to_connector: Sender<ConnectorInput>,
    connector_waker: Waker,
    view: Arc<Mutex<MiningView>>,
    /// Wakes the ledger when a seal is found.
    wake_ledger: Sender<()>,
    slot_ms: u64,
    /// The search threads' meter at the last rate measure.
    metered: (u64, u64),
}

impl MinerThread {
    pub fn new(
        config: MinerConfig,
        threads: usize,
        slot_ms: u64,
        inputs: Receiver<MinerInput>,
        to_connector: Sender<ConnectorInput>,
        connector_waker: Waker,
        wake_ledger: Sender<()>,
    ) -> MinerThread {
        log::info!(
            "sealing at difficulty {} with {threads} search threads",
            config.difficulty
        );
        MinerThread {
            miner: Miner::new(config),
            pool: Pool::new(threads),
            inputs,
            to_connector,
            connector_waker,
            view: Arc::new(Mutex::new(MiningView::default())),
            wake_ledger,
            slot_ms: slot_ms.max(1),
            metered: (0, 0),
        }
    }

    /// The view the ledger reads.
    pub fn view(&self) -> Arc<Mutex<MiningView>> {
        self.view.clone()
    }

    pub fn run(mut self) {
        loop {
            let wait = Duration::from_millis(TICK_MS);
            let reports = self.pool.reports().clone();
            let outs = select! {
                recv(self.inputs) -> input => match input {
                    Ok(input) => self.input(input),
                    Err(_) => return,
                },
                recv(reports) -> report => match report {
                    Ok(report) => match self.pool.take(report) {
                        Some(outcome) => self.miner.outcome(outcome, unix_now_ms()),
                        None => Vec::new(),
                    },
                    Err(_) => return,
                },
                default(wait) => Vec::new(),
            };
            let mut outs = outs;
            self.measure();
            outs.extend(self.miner.tick(unix_now_ms()));
            self.carry_out(outs);
        }
    }

    /// Measures the hash rate once the threads have searched for
    /// [`MEASURE_US`] since the last measure: nonces a microsecond of one
    /// thread's time, times the threads.
    fn measure(&mut self) {
        let (tried, busy_us) = self.pool.meter();
        let (d_tried, d_busy) = (tried - self.metered.0, busy_us - self.metered.1);
        if d_busy >= MEASURE_US {
            let per_thread = d_tried.saturating_mul(1_000_000) / d_busy;
            self.miner
                .measured(per_thread.saturating_mul(self.pool.threads() as u64));
            self.metered = (tried, busy_us);
        }
    }

    fn input(&mut self, input: MinerInput) -> Vec<Out> {
        let now = unix_now_ms();
        match input {
            MinerInput::Heard(from) => {
                self.miner.heard(from, now);
                Vec::new()
            }
            MinerInput::Message { from, message } => self.miner.message(from, message, now),
            MinerInput::Waiting(blocks) => self.miner.waiting(blocks, now),
        }
    }

    /// Carries out the machine's outputs. The view is locked only at the
    /// end, briefly: the ledger reads it on every tick, and starting a job
    /// must never keep it waiting.
    fn carry_out(&mut self, outs: Vec<Out>) {
        let now = unix_now_ms();
        let mut sent = false;
        let mut found = Vec::new();
        for out in outs {
            match out {
                Out::Send { to, message } => {
                    sent |= self.send(Target::Only(vec![to]), message);
                }
                Out::SendAll(message) => sent |= self.send(Target::All, message),
                Out::Start(job) => self.pool.start(job),
                Out::Stop => self.pool.stop(),
                Out::Found {
                    number,
                    block,
                    seal,
                } => found.push((number, block, seal)),
                Out::Leader(leader) => {
                    log::info!("the leader is now server {leader}");
                }
            }
        }
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        for seal in found {
            if view.found.len() < MAX_FOUND {
                view.found.push(seal);
                // A wake-up already waiting will do.
                let _ = self.wake_ledger.try_send(());
            } else {
                log::warn!(
                    "block {}: a seal found is dropped: the ledger has not taken the {MAX_FOUND} \
                     before it",
                    seal.0
                );
            }
        }
        view.leader = self.miner.leader();
        view.rate = self.miner.rate();
        view.hashes = self.pool.meter().0;
        view.target = self.miner.target();
        view.live = self.miner.live(now);
        drop(view);
        if sent {
            self.connector_waker.wake();
        }
    }

    /// Queues `message` for the connector; false when its queue is full
    /// (the message is dropped: the search retries).
    fn send(&self, to: Target, message: Mining) -> bool {
        let input = ConnectorInput::Send {
            to,
            slot: unix_now_ms() / self.slot_ms,
            message: Box::new(PeerMessage::Mine(message)),
        };
        match self.to_connector.try_send(input) {
            Ok(()) => true,
            Err(_) => {
                log::debug!("the connector's queue is full: a mine message dropped");
                false
            }
        }
    }
}

//! One simulated server's part in sealing: the real [`Miner`] machine, and
//! its search threads played by an oracle.
//!
//! The oracle is the real search (the chain's difficulty is low in a
//! simulation, so a seal is found within a few hundred nonces) with its
//! time counted at [`RATE`] hashes a second of simulated time, so that
//! what the ledger and the consensus check of a seal is real. The miner
//! shares a view with the edge as the node's miner thread does: seals the
//! server's coordination finds go there, and the edge takes them at its
//! next tick.
//!
//! The dishonest server (`--dishonest`) leads dishonestly: it hands out no
//! range and announces no seal, so that sealing rests on the handoff to
//! the next live server.

use std::sync::{Arc, Mutex};

use rota::mining::miner::{Miner, MinerConfig, Out as MinerOut};
use rota::mining::thread::{MinerInput, MiningView};
use rota::mining::worker::{Job, Outcome};
use rota_connector::Target;
use rota_peer::seal::Searcher;
use rota_peer::wire::{Mining, PeerMessage};
use rota_peer::{Millis, ServerId};

use crate::server::{Out, Setup, peer_sends};

/// A simulated server's hashes a second.
pub const RATE: u64 = 1_000_000;

/// A server's miner, its view shared with its edge, and its search job
/// with the local time it ends.
pub struct SimMiner {
    miner: Miner,
    pub view: Arc<Mutex<MiningView>>,
    job: Option<(Job, Millis)>,
    heartbeat_ms: u64,
    /// Leads dishonestly: no ranges, no seals announced or kept.
    dishonest: bool,
}

impl SimMiner {
    /// The miner of server `me`, on a chain that is sealed.
    pub fn new(me: ServerId, setup: &Setup, dishonest: bool) -> Option<SimMiner> {
        let difficulty = setup.schedule.difficulty;
        (difficulty > 0).then(|| {
            let config = MinerConfig {
                me,
                servers: setup.servers.len(),
                heartbeat_ms: setup.heartbeat_ms,
                missed_heartbeats: setup.missed_heartbeats,
                difficulty,
            };
            let mut miner = Miner::new(config);
            miner.measured(RATE);
            SimMiner {
                miner,
                view: Arc::new(Mutex::new(MiningView::default())),
                job: None,
                heartbeat_ms: setup.heartbeat_ms,
                dishonest,
            }
        })
    }

    /// An input from the edge.
    pub fn input(&mut self, input: MinerInput, local: Millis) -> Vec<MinerOut> {
        match input {
            MinerInput::Heard(from) => {
                self.miner.heard(from, local);
                Vec::new()
            }
            MinerInput::Message { from, message } => self.miner.message(from, message, local),
            MinerInput::Waiting(blocks) => self.miner.waiting(blocks, local),
        }
    }

    /// The search job's outcome if it is due, then a tick.
    pub fn due(&mut self, local: Millis) -> Vec<MinerOut> {
        let mut outs = Vec::new();
        if let Some((job, ends)) = self.job
            && ends <= local
        {
            self.job = None;
            let (seal, tried) =
                Searcher::new(&job.block, job.time).search(job.first, job.last, || false);
            let outcome = Outcome {
                job,
                seal,
                tried,
                elapsed_ms: ends,
            };
            outs.extend(self.miner.outcome(outcome, local));
        }
        outs.extend(self.miner.tick(local));
        outs
    }

    /// When the miner wants the time next: its job's end, or its next
    /// tick (a worker asks for work every heartbeat; ticks at a quarter of
    /// that keep it and the leader choice on time).
    pub fn next_wake(&self, local: Millis) -> Millis {
        let tick = local + (self.heartbeat_ms / 4).max(1);
        self.job.map_or(tick, |(_, ends)| ends.min(tick))
    }

    /// Carries out the miner's outputs: messages to the network, search
    /// jobs, seals found for the edge.
    pub fn carry_out(
        &mut self,
        outs: Vec<MinerOut>,
        me: ServerId,
        local: Millis,
        setup: &Setup,
        sent: &mut Vec<Out>,
    ) {
        let slot = local / setup.schedule.slot_ms;
        for out in outs {
            let withheld = matches!(
                out,
                MinerOut::Send {
                    message: Mining::Range { .. },
                    ..
                } | MinerOut::SendAll(Mining::Sealed { .. })
                    | MinerOut::Found { .. }
            );
            if self.dishonest && withheld {
                continue;
            }
            match out {
                MinerOut::Send { to, message } => {
                    let target = Target::Only(vec![to]);
                    peer_sends(me, target, slot, PeerMessage::Mine(message), setup, sent);
                }
                MinerOut::SendAll(message) => {
                    peer_sends(
                        me,
                        Target::All,
                        slot,
                        PeerMessage::Mine(message),
                        setup,
                        sent,
                    );
                }
                MinerOut::Start(job) => {
                    let tried = Searcher::new(&job.block, job.time)
                        .search(job.first, job.last, || false)
                        .1;
                    let ends = local + (tried * 1_000).div_ceil(RATE).max(1);
                    self.job = Some((job, ends));
                }
                MinerOut::Stop => self.job = None,
                MinerOut::Found {
                    number,
                    block,
                    seal,
                } => {
                    let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
                    view.found.push((number, block, seal));
                }
                MinerOut::Leader(_) => {}
            }
        }
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.leader = self.miner.leader();
        view.target = self.miner.target();
    }
}

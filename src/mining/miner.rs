//! One server's part in sealing, as a pure state machine: the leader
//! choice, the coordinator when this server leads, and the worker that
//! asks its leader for ranges and answers them.
//!
//! [`Miner`] is driven with what the ledger tells it (servers heard, `mine`
//! messages, the committed blocks waiting for their seals), the outcomes of
//! this server's search threads, and ticks; it answers with [`Out`]s:
//! messages to send, jobs for the search threads, seals found for the
//! ledger, and leader changes. It reads no clock and touches no socket, so
//! unit tests and the cluster simulator drive it alike. Messages to this
//! server itself are delivered at once, inside the machine.
//!
//! - The target is the lowest waiting block whose seal is not known here
//!   yet. A block's seal is known once this server's coordination found it
//!   or a leader announced it (`sealed`, checked against the block).
//! - The leader is the lowest live server, handed on when the target stays
//!   unsealed for [`HANDOFF_HEARTBEATS`] heartbeats (`leader.rs`).
//! - While it has no range and there is a target, a worker asks its leader
//!   for one every quarter heartbeat, and again with each answer (a `no`
//!   or `yes` is also a request). It takes ranges from its leader only.
//! - The leader checks a `yes` against its own copy of the block before it
//!   announces the seal to every server and interrupts the others.

use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;
use rota_peer::wire::Mining;
use rota_peer::{BlockNumber, Hash, Millis, ServerId};

use super::coordinator::{Coordinator, Range, Work};
use super::leader::Leadership;
use super::worker::{Job, Outcome};
use super::{FIRST_NONCE, LAST_NONCE};

/// Heartbeats the target may stay unsealed before coordination passes to
/// the next live server. Short: a handoff costs nothing but the ranges out
/// (the next leader starts the search over at a new seal time, and every
/// nonce is an independent draw), while every block a dishonest lowest
/// server leads waits this long; with blocks made one a slot, seals must
/// keep up (the simulator's `sealed` invariant found 6 too slow).
pub const HANDOFF_HEARTBEATS: u32 = 2;

/// The shortest time between two requests of an idle worker.
const MIN_ASK_MS: u64 = 50;

/// The most blocks whose seals are remembered as known.
const MAX_KNOWN: usize = 256;

/// What the machine asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Send `message` to server `to` (never this one).
    Send { to: ServerId, message: Mining },
    /// Send `message` to every other server.
    SendAll(Mining),
    /// Search this range on the search threads, ending any other job.
    Start(Job),
    /// End the job under way.
    Stop,
    /// This server's coordination found the seal of block `number`: the
    /// ledger keeps it for the next round.
    Found {
        number: BlockNumber,
        block: Hash,
        seal: Seal,
    },
    /// The leader is now `leader`.
    Leader(ServerId),
}

/// Who this server is among the chain's servers.
#[derive(Clone, Copy, Debug)]
pub struct MinerConfig {
    pub me: ServerId,
    pub servers: usize,
    pub heartbeat_ms: u64,
    pub missed_heartbeats: u32,
    /// The chain's difficulty: a range for a block of another is refused.
    pub difficulty: u32,
}

/// Whether a seal proves a block: [`Seal::proves`], or a simulation's
/// stand-in for it.
pub type Proves = fn(&Seal, &BlockHeader) -> bool;

/// See the module documentation.
#[derive(Debug)]
pub struct Miner {
    config: MinerConfig,
    proves: Proves,
    leadership: Leadership,
    coordinator: Coordinator,
    /// The committed blocks waiting for their seals, lowest first.
    waiting: Vec<BlockHeader>,
    /// Blocks whose seal is known here, by id.
    known: Vec<(Hash, Seal)>,
    /// The target and since when it has been the target.
    target: Option<(BlockHeader, Millis)>,
    leader: Option<ServerId>,
    /// The block this server coordinates the search of.
    coordinating: Option<BlockHeader>,
    /// The range this server searches, and who gave it.
    job: Option<(ServerId, Job)>,
    /// This server's measured hashes a second (0: not yet).
    rate: u64,
    /// When this server last asked its leader for work.
    asked_at: Option<Millis>,
}

impl Miner {
    pub fn new(config: MinerConfig) -> Miner {
        Miner {
            leadership: Leadership::new(
                config.servers,
                config.me,
                config.heartbeat_ms,
                config.missed_heartbeats,
                HANDOFF_HEARTBEATS,
            ),
            coordinator: Coordinator::new(config.heartbeat_ms),
            config,
            proves: Seal::proves,
            waiting: Vec::new(),
            known: Vec::new(),
            target: None,
            leader: None,
            coordinating: None,
            job: None,
            rate: 0,
            asked_at: None,
        }
    }

    /// Checks seals with `proves` instead of the double SHA-256: a
    /// simulation's stand-in for the hash, whose search threads are
    /// simulated too.
    pub fn with_proof(mut self, proves: Proves) -> Miner {
        self.proves = proves;
        self
    }

    /// The leader as last computed.
    pub fn leader(&self) -> Option<ServerId> {
        self.leader
    }

    /// This server's measured hashes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The block the search is for, as this server sees it.
    pub fn target(&self) -> Option<BlockNumber> {
        self.target.map(|(block, _)| block.number)
    }

    /// The live servers at `now`, as this server sees them.
    pub fn live(&self, now: Millis) -> Vec<ServerId> {
        self.leadership.live(now)
    }

    /// Server `from` was heard from at `now` (a heartbeat or registration).
    pub fn heard(&mut self, from: ServerId, now: Millis) {
        self.leadership.heard(from, now);
    }

    /// The committed blocks waiting for their seals, lowest first.
    pub fn waiting(&mut self, blocks: Vec<BlockHeader>, now: Millis) -> Vec<Out> {
        self.waiting = blocks;
        let ids: Vec<Hash> = self.waiting.iter().map(|b| b.hash()).collect();
        self.known.retain(|(id, _)| ids.contains(id));
        let mut out = Vec::new();
        if let Some((_, job)) = self.job
            && !ids.contains(&job.block.hash())
        {
            self.job = None;
            out.push(Out::Stop);
        }
        self.retarget(now);
        out.extend(self.tick(now));
        out
    }

    /// A `mine` message from server `from` (its envelope checked).
    pub fn message(&mut self, from: ServerId, message: Mining, now: Millis) -> Vec<Out> {
        let mut out = Vec::new();
        self.receive(from, message, now, &mut out);
        out
    }

    /// This server's hash rate, measured: `rate` hashes a second with
    /// every search thread busy. Weighted towards the last measure, which
    /// is what the next range should take.
    pub fn measured(&mut self, rate: u64) {
        self.rate = if self.rate == 0 {
            rate
        } else {
            (self.rate + 3 * rate) / 4
        };
    }

    /// The search threads ended a job.
    pub fn outcome(&mut self, outcome: Outcome, now: Millis) -> Vec<Out> {
        let mut out = Vec::new();
        let Some((giver, job)) = self.job.filter(|(_, job)| *job == outcome.job) else {
            return out;
        };
        self.job = None;
        self.asked_at = Some(now);
        let block = job.block.hash();
        let answer = match outcome.seal {
            Some(seal) => Mining::Yes {
                block,
                seal,
                rate: self.rate,
            },
            None => Mining::No {
                block,
                time: job.time,
                first: job.first,
                last: job.last,
                rate: self.rate,
            },
        };
        self.send(giver, answer, now, &mut out);
        out
    }

    /// The time moved to `now`: the leader, the coordinator's silent
    /// workers, and a request for work when this server has none.
    pub fn tick(&mut self, now: Millis) -> Vec<Out> {
        let mut out = Vec::new();
        self.leadership
            .unsealed_since(self.target.map(|(_, since)| since));
        let leader = self.leadership.leader(now);
        if self.leader != Some(leader) {
            self.leader = Some(leader);
            out.push(Out::Leader(leader));
            // The range of a leader that no longer leads goes nowhere: its
            // answer would find no search. Ask the new one at once.
            if self.job.is_some_and(|(giver, _)| giver != leader) {
                self.job = None;
                out.push(Out::Stop);
            }
            self.asked_at = None;
        }
        let me = self.config.me;
        let target = self.target.map(|(block, _)| block);
        if leader == me && target.is_some() && self.coordinating != target {
            self.coordinate(target, now, &mut out);
        } else if (leader != me || target.is_none()) && self.coordinating.is_some() {
            self.coordinate(None, now, &mut out);
        }
        self.coordinator.tick(now);
        let idle = self.job.is_none() && target.is_some();
        // An unanswered request (its leader was not coordinating yet, or
        // had no range left) is made again a quarter heartbeat on.
        let again = (self.config.heartbeat_ms / 4).max(MIN_ASK_MS);
        let due = self
            .asked_at
            .is_none_or(|at| now.saturating_sub(at) >= again);
        if idle && due {
            self.asked_at = Some(now);
            let request = Mining::Request { rate: self.rate };
            self.send(leader, request, now, &mut out);
        }
        out
    }

    /// Starts coordinating the search of `block` (none: stops), telling
    /// the workers of the search before to stop.
    fn coordinate(&mut self, block: Option<BlockHeader>, now: Millis, out: &mut Vec<Out>) {
        if let Some(before) = self.coordinating.take() {
            for worker in self.coordinator.sealed() {
                let interrupt = Mining::Interrupt {
                    block: before.hash(),
                };
                self.send(worker, interrupt, now, out);
            }
        }
        if let Some(block) = block {
            log::info!(
                "coordinating the search for the seal of block {}",
                block.number
            );
            self.coordinator.start(Work {
                block: block.hash(),
                difficulty_bits: block.difficulty,
                seal_time: now,
            });
            self.coordinating = Some(block);
        }
    }

    /// The lowest waiting block whose seal is not known here.
    fn retarget(&mut self, now: Millis) {
        let next = self
            .waiting
            .iter()
            .find(|b| {
                let block = b.hash();
                !self.known.iter().any(|(id, _)| *id == block)
            })
            .copied();
        if self.target.map(|(block, _)| block) != next {
            self.target = next.map(|block| (block, now));
        }
    }

    /// Sends `message` to `to`; to this server, delivers it at once.
    fn send(&mut self, to: ServerId, message: Mining, now: Millis, out: &mut Vec<Out>) {
        if to == self.config.me {
            self.receive(to, message, now, out);
        } else {
            out.push(Out::Send { to, message });
        }
    }

    fn receive(&mut self, from: ServerId, message: Mining, now: Millis, out: &mut Vec<Out>) {
        self.leadership.heard(from, now);
        match message {
            Mining::Request { rate } => self.hand_out(from, rate, now, out),
            Mining::No {
                block,
                time,
                first,
                last,
                rate,
            } => {
                if self.coordinating.is_some_and(|b| b.hash() == block) {
                    let range = Range { first, last };
                    if let Some(next) = self.coordinator.answered_no(from, range, time) {
                        log::info!(
                            "every nonce tried for block {}: seal time {} next",
                            self.coordinating.map_or(0, |b| b.number),
                            next.seal_time
                        );
                    }
                }
                self.hand_out(from, rate, now, out);
            }
            Mining::Yes { block, seal, rate } => {
                self.answered_yes(from, block, seal, now, out);
                self.hand_out(from, rate, now, out);
            }
            Mining::Range {
                block,
                time,
                first,
                last,
            } => self.take_range(from, block, time, (first, last), out),
            Mining::Interrupt { block } => {
                if let Some((giver, job)) = self.job
                    && giver == from
                    && job.block.hash() == block
                {
                    self.job = None;
                    out.push(Out::Stop);
                }
            }
            Mining::Sealed {
                number,
                block,
                seal,
            } => {
                let proves = self
                    .waiting
                    .iter()
                    .any(|b| b.number == number && b.hash() == block && (self.proves)(&seal, b));
                if proves {
                    self.know(block, seal, now, out);
                }
            }
        }
    }

    /// A worker asks for work: a range of the search this server leads,
    /// if it leads one.
    fn hand_out(&mut self, worker: ServerId, rate: u64, now: Millis, out: &mut Vec<Out>) {
        let Some(block) = self.coordinating else {
            return;
        };
        if let Some(assignment) = self.coordinator.request(worker, rate, now) {
            let range = Mining::Range {
                block,
                time: assignment.work.seal_time,
                first: assignment.range.first,
                last: assignment.range.last,
            };
            self.send(worker, range, now, out);
        }
    }

    /// A worker's seal for the search this server leads: checked against
    /// the block, then announced to every server.
    fn answered_yes(
        &mut self,
        from: ServerId,
        block: Hash,
        seal: Seal,
        now: Millis,
        out: &mut Vec<Out>,
    ) {
        let Some(header) = self.coordinating.filter(|b| b.hash() == block) else {
            return;
        };
        if !(self.proves)(&seal, &header) {
            log::warn!(
                "server {from}: its seal of block {} does not prove it; ignored",
                header.number
            );
            return;
        }
        log::info!(
            "block {} sealed by server {from}'s nonce {} (seal time {})",
            header.number,
            seal.nonce,
            seal.time
        );
        out.push(Out::Found {
            number: header.number,
            block,
            seal,
        });
        out.push(Out::SendAll(Mining::Sealed {
            number: header.number,
            block,
            seal,
        }));
        self.know(block, seal, now, out);
    }

    /// The seal of block `block` is known: the search for it ends here,
    /// and moves on to the next block.
    fn know(&mut self, block: Hash, seal: Seal, now: Millis, out: &mut Vec<Out>) {
        if !self.known.iter().any(|(id, _)| *id == block) {
            self.known.push((block, seal));
            if self.known.len() > MAX_KNOWN {
                self.known.remove(0);
            }
        }
        if let Some((_, job)) = self.job
            && job.block.hash() == block
        {
            self.job = None;
            out.push(Out::Stop);
        }
        self.retarget(now);
        out.extend(self.tick(now));
    }

    /// A range from `from`: searched if `from` is this server's leader and
    /// the range is well formed, for a block of the chain's difficulty.
    fn take_range(
        &mut self,
        from: ServerId,
        block: BlockHeader,
        time: Millis,
        (first, last): (u64, u64),
        out: &mut Vec<Out>,
    ) {
        let well_formed = FIRST_NONCE <= first
            && first <= last
            && last <= LAST_NONCE
            && block.difficulty == self.config.difficulty
            && block.nonce == 0;
        if self.leader != Some(from) || !well_formed {
            log::debug!("server {from}: a range not taken ({first}..={last})");
            return;
        }
        if self.known.iter().any(|(id, _)| *id == block.hash()) {
            return;
        }
        let job = Job {
            block,
            time,
            first,
            last,
        };
        // The range under search, given again (a request crossed its
        // answer): the search goes on rather than start over.
        if self.job == Some((from, job)) {
            return;
        }
        self.job = Some((from, job));
        out.push(Out::Start(job));
    }
}

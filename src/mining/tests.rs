//! A cluster of [`Miner`] machines on a fake clock: messages through a
//! queue the test controls, the hash and the search threads played by an
//! oracle ([`found_at`]: the nonce that seals a block at a seal time, and
//! the time a search takes at a fixed rate), and servers that die or lead
//! dishonestly.

use std::collections::{BTreeMap, VecDeque};

use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;
use rota_peer::wire::Mining;
use rota_peer::{Hash, Millis, ServerId};

use super::miner::{HANDOFF_HEARTBEATS, Miner, MinerConfig, Out};
use super::worker::{Job, Outcome};

const HEARTBEAT: u64 = 1_000;
const MISSED: u32 = 3;
const DIFFICULTY: u32 = 18;
/// Each simulated server's hashes a second.
const RATE: u64 = 2_000_000;
/// A message's travel time.
const TRAVEL: Millis = 2;

/// How a server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Honest,
    /// Dead: it neither sends nor hears anything.
    Dead,
    /// Its heartbeats go on, but as a leader it hands out nothing and
    /// announces nothing.
    DishonestLeader,
}

struct Server {
    miner: Miner,
    kind: Kind,
    /// The job its search threads run, and when it ends.
    job: Option<(Job, Millis)>,
    /// The seals it was told of (by a leader) or found as one, by block.
    seals: BTreeMap<Hash, Seal>,
}

/// A range handed out: to whom, for which job, when.
#[derive(Clone, Copy, Debug)]
struct Handed {
    to: ServerId,
    job: Job,
    at: Millis,
}

struct Cluster {
    now: Millis,
    servers: Vec<Server>,
    queue: VecDeque<(Millis, ServerId, ServerId, Mining)>,
    blocks: Vec<BlockHeader>,
    next_heartbeat: Millis,
    /// Ranges handed out: to see one handed out again.
    ranges: Vec<Handed>,
    /// Jobs started, by server.
    started: Vec<ServerId>,
    /// Leader changes, per server, with when.
    leaders: Vec<(ServerId, ServerId, Millis)>,
}

/// The oracle: the one nonce that seals `block` at seal time `time`, from
/// 1 to twice 2^difficulty, a pure function of both.
fn found_at(block: &BlockHeader, time: Millis) -> u64 {
    let mut bytes = block.hash().0.to_vec();
    bytes.extend_from_slice(&time.to_be_bytes());
    let draw = u64::from_be_bytes(Hash::of(&bytes).0[..8].try_into().unwrap());
    1 + draw % (2 << block.difficulty)
}

/// The oracle's check of a seal, in place of the double SHA-256.
fn oracle_proves(seal: &Seal, block: &BlockHeader) -> bool {
    seal.nonce == found_at(block, seal.time)
}

fn block(number: u64) -> BlockHeader {
    BlockHeader {
        number,
        previous: Hash([number as u8; 32]),
        slot: 100 + number,
        timestamp: (100 + number) * 2_000,
        merkle_root: Hash([7; 32]),
        balance_hash: Hash([number as u8 + 1; 32]),
        difficulty: DIFFICULTY,
        nonce: 0,
    }
}

/// The oracle's search of a job: the seal if the range holds the nonce,
/// and the nonces tried.
fn search(job: &Job) -> (Option<Seal>, u64) {
    let nonce = found_at(&job.block, job.time);
    if (job.first..=job.last).contains(&nonce) {
        let seal = Seal {
            nonce,
            time: job.time,
        };
        (Some(seal), nonce - job.first + 1)
    } else {
        (None, job.last - job.first + 1)
    }
}

impl Cluster {
    fn new(kinds: &[Kind]) -> Cluster {
        let n = kinds.len();
        let servers = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| Server {
                miner: Miner::new(MinerConfig {
                    me: ServerId::from_index(i),
                    servers: n,
                    heartbeat_ms: HEARTBEAT,
                    missed_heartbeats: MISSED,
                    difficulty: DIFFICULTY,
                })
                .with_proof(oracle_proves),
                kind: *kind,
                job: None,
                seals: BTreeMap::new(),
            })
            .collect();
        let mut cluster = Cluster {
            now: 1_000_000,
            servers,
            queue: VecDeque::new(),
            blocks: Vec::new(),
            next_heartbeat: 1_000_000,
            ranges: Vec::new(),
            started: Vec::new(),
            leaders: Vec::new(),
        };
        cluster.heartbeats();
        cluster
    }

    fn alive(&self, i: usize) -> bool {
        self.servers[i].kind != Kind::Dead
    }

    /// Every live server hears every other live one.
    fn heartbeats(&mut self) {
        for a in 0..self.servers.len() {
            for b in 0..self.servers.len() {
                if a != b && self.alive(a) && self.alive(b) {
                    let now = self.now;
                    self.servers[b].miner.heard(ServerId::from_index(a), now);
                }
            }
        }
        self.next_heartbeat = self.now + HEARTBEAT;
    }

    /// Commits `blocks` as waiting on every server, and tells them.
    fn commit_blocks(&mut self, blocks: Vec<BlockHeader>) {
        self.blocks.extend(blocks);
        self.tell_waiting();
    }

    /// The blocks not yet sealed by a seal every live honest server knows
    /// (as a committed round would seal them), to every server.
    fn tell_waiting(&mut self) {
        let sealed = |b: &BlockHeader, s: &Server| s.seals.contains_key(&b.hash());
        let waiting: Vec<BlockHeader> = self
            .blocks
            .iter()
            .filter(|b| {
                !self
                    .servers
                    .iter()
                    .filter(|s| s.kind == Kind::Honest)
                    .all(|s| sealed(b, s))
            })
            .copied()
            .collect();
        for i in 0..self.servers.len() {
            if self.alive(i) {
                let outs = self.servers[i].miner.waiting(waiting.clone(), self.now);
                self.carry_out(i, outs);
            }
        }
    }

    fn carry_out(&mut self, i: usize, outs: Vec<Out>) {
        let me = ServerId::from_index(i);
        let dishonest_leader = self.servers[i].kind == Kind::DishonestLeader;
        for out in outs {
            match out {
                Out::Send { to, message } => {
                    if let Mining::Range {
                        block,
                        time,
                        first,
                        last,
                    } = message
                    {
                        if dishonest_leader {
                            continue;
                        }
                        let job = Job {
                            block,
                            time,
                            first,
                            last,
                        };
                        self.ranges.push(Handed {
                            to,
                            job,
                            at: self.now,
                        });
                    }
                    self.queue.push_back((self.now + TRAVEL, me, to, message));
                }
                Out::SendAll(message) => {
                    if dishonest_leader {
                        continue;
                    }
                    for j in 0..self.servers.len() {
                        if j != i {
                            let to = ServerId::from_index(j);
                            self.queue.push_back((self.now + TRAVEL, me, to, message));
                        }
                    }
                }
                Out::Start(job) => {
                    self.started.push(me);
                    let ends = self.now + (search(&job).1 * 1_000).div_ceil(RATE);
                    self.servers[i].job = Some((job, ends));
                }
                Out::Stop => self.servers[i].job = None,
                Out::Found { block, seal, .. } => {
                    if !dishonest_leader {
                        self.servers[i].seals.insert(block, seal);
                    }
                }
                Out::Leader(leader) => self.leaders.push((me, leader, self.now)),
            }
        }
    }

    /// Runs one millisecond: messages due, search outcomes due, ticks.
    fn step(&mut self) {
        self.now += 1;
        if self.now >= self.next_heartbeat {
            self.heartbeats();
        }
        while let Some(&(at, from, to, message)) = self.queue.front() {
            if at > self.now {
                break;
            }
            self.queue.pop_front();
            let j = to.index();
            if !self.alive(j) || !self.alive(from.index()) {
                continue;
            }
            if let Mining::Sealed { block, seal, .. } = message
                && self.servers[j].kind == Kind::Honest
            {
                self.servers[j].seals.insert(block, seal);
            }
            let now = self.now;
            let outs = self.servers[j].miner.message(from, message, now);
            self.carry_out(j, outs);
        }
        for i in 0..self.servers.len() {
            if !self.alive(i) {
                continue;
            }
            if let Some((job, ends)) = self.servers[i].job
                && ends <= self.now
            {
                self.servers[i].job = None;
                let (seal, tried) = search(&job);
                let outcome = Outcome {
                    job,
                    seal,
                    tried,
                    elapsed_ms: ends,
                };
                let now = self.now;
                self.servers[i].miner.measured(RATE);
                let outs = self.servers[i].miner.outcome(outcome, now);
                self.carry_out(i, outs);
            }
            let now = self.now;
            let outs = self.servers[i].miner.tick(now);
            self.carry_out(i, outs);
        }
    }

    /// Runs until every block is sealed on every live honest server (as
    /// committed rounds would then seal them), or `limit` ms pass.
    fn run_until_sealed(&mut self, limit: Millis) -> Millis {
        let start = self.now;
        while self.now - start < limit {
            self.step();
            let all = self.blocks.iter().all(|b| {
                self.servers
                    .iter()
                    .filter(|s| s.kind == Kind::Honest)
                    .all(|s| s.seals.contains_key(&b.hash()))
            });
            if all {
                self.tell_waiting();
                return self.now - start;
            }
        }
        panic!("not every block sealed within {limit} ms");
    }

    /// Every honest server holds the same seal of each block, and it
    /// proves the block.
    fn assert_one_seal_each(&self) {
        for block in &self.blocks {
            let seals: Vec<Seal> = self
                .servers
                .iter()
                .filter(|s| s.kind == Kind::Honest)
                .map(|s| s.seals[&block.hash()])
                .collect();
            assert!(seals.windows(2).all(|w| w[0] == w[1]), "{seals:?}");
            assert!(oracle_proves(&seals[0], block));
        }
    }
}

#[test]
fn the_lowest_server_leads_and_every_block_is_sealed_once_with_one_seal_everywhere() {
    let mut c = Cluster::new(&[Kind::Honest; 3]);
    c.commit_blocks((1..=4).map(block).collect());
    c.run_until_sealed(60_000);
    c.assert_one_seal_each();
    for (_, leader, _) in &c.leaders {
        assert_eq!(*leader, ServerId(1));
    }
    // Every server searched, the leader too.
    for id in 1..=3 {
        assert!(c.started.contains(&ServerId(id)), "server {id}");
    }
}

#[test]
fn a_dead_worker_s_range_is_handed_out_again() {
    // The first block whose seal falls in a range handed to a worker that
    // is not the leader: that worker dies holding it.
    for number in 1..50 {
        let mut c = Cluster::new(&[Kind::Honest; 3]);
        c.commit_blocks(vec![block(number)]);
        let holder = loop {
            c.step();
            if let Some(handed) = c.ranges.iter().find(|h| search(&h.job).0.is_some()) {
                break *handed;
            }
        };
        if holder.to == ServerId(1) {
            continue;
        }
        c.servers[holder.to.index()].kind = Kind::Dead;
        c.servers[holder.to.index()].job = None;
        c.run_until_sealed(60_000);
        let again = c
            .ranges
            .iter()
            .find(|h| h.job == holder.job && h.at > holder.at)
            .expect("the dead worker's range handed out again");
        assert_ne!(again.to, holder.to);
        c.assert_one_seal_each();
        return;
    }
    panic!("no block's seal fell in a worker's range");
}

#[test]
fn when_the_leader_dies_the_next_live_server_takes_over_within_a_bounded_number_of_heartbeats() {
    let mut c = Cluster::new(&[Kind::Honest; 3]);
    c.commit_blocks(vec![block(1)]);
    c.run_until_sealed(60_000);
    // Server 1 dies; the next block waits.
    c.servers[0].kind = Kind::Dead;
    let died = c.now;
    c.commit_blocks(vec![block(2)]);
    c.run_until_sealed(60_000);
    let took_over = c
        .leaders
        .iter()
        .filter(|(me, leader, at)| *me == ServerId(2) && *leader == ServerId(2) && *at > died)
        .map(|(_, _, at)| *at)
        .min()
        .expect("server 2 leads");
    let bound = HEARTBEAT * (u64::from(MISSED) + 2);
    assert!(took_over - died <= bound, "{} ms", took_over - died);
    c.assert_one_seal_each();
}

#[test]
fn a_leader_that_never_seals_cannot_stop_sealing() {
    let mut c = Cluster::new(&[Kind::DishonestLeader, Kind::Honest, Kind::Honest]);
    c.commit_blocks((1..=2).map(block).collect());
    let took = c.run_until_sealed(120_000);
    // Coordination passed on after the handoff, not before.
    let handoff = HEARTBEAT * u64::from(HANDOFF_HEARTBEATS);
    assert!(took >= handoff, "{took} ms");
    assert!(took <= 3 * handoff, "{took} ms");
    c.assert_one_seal_each();
}

#[test]
fn a_worker_leaves_the_range_of_a_leader_that_no_longer_leads_and_asks_the_new_one() {
    let me = ServerId(3);
    let mut miner = Miner::new(MinerConfig {
        me,
        servers: 3,
        heartbeat_ms: HEARTBEAT,
        missed_heartbeats: MISSED,
        difficulty: DIFFICULTY,
    })
    .with_proof(oracle_proves);
    let t0 = 1_000_000;
    for id in [1, 2] {
        miner.heard(ServerId(id), t0);
    }
    let out = miner.waiting(vec![block(1)], t0);
    let request = Mining::Request { rate: 0 };
    assert!(
        out.contains(&Out::Send {
            to: ServerId(1),
            message: request
        }),
        "{out:?}"
    );
    let job = Job {
        block: block(1),
        time: t0,
        first: 1,
        last: 100_000,
    };
    let range = Mining::Range {
        block: job.block,
        time: job.time,
        first: job.first,
        last: job.last,
    };
    assert_eq!(miner.message(ServerId(1), range, t0 + 5), [Out::Start(job)]);
    // Server 1 never seals: after the handoff, server 2 leads. The range
    // of server 1 is left at once and server 2 asked, without waiting for
    // the next request's time.
    let handoff = t0 + HEARTBEAT * u64::from(HANDOFF_HEARTBEATS);
    for id in [1, 2] {
        miner.heard(ServerId(id), handoff);
    }
    let out = miner.tick(handoff);
    assert_eq!(
        out,
        [
            Out::Leader(ServerId(2)),
            Out::Stop,
            Out::Send {
                to: ServerId(2),
                message: request
            }
        ]
    );
}

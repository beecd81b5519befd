//! N machines over a message queue the test controls, with seeded
//! orderings and faults, and the safety invariants checked after every
//! step:
//!
//! - no two honest servers commit different headers for one slot, and no
//!   slot is committed on one and lost on another;
//! - no honest server signs two different prevotes, precommits or headers
//!   for one slot, across its restarts;
//! - every vote leaves after its record (checked as each one leaves).
//!
//! Every message travels as bytes and is decoded and verified by its
//! receiver, as it will be in the node. A round a machine asks for
//! ([`Output::Missing`]) is fetched from what was ever sent. The clocks of
//! the servers differ by up to the clock bound. Profiles:
//!
//! - `clean`: delays within the bound, no loss, no crash; every round of
//!   an honest alpha must commit (liveness, as a check of the timings);
//! - `rough`: losses, duplicates, delays far beyond the bound, crashes
//!   between any two outputs of a step (a record kept, its message not
//!   sent), restarts from the records; safety only;
//! - `dishonest`: server 1 holds a real key. On even seeds it equivocates
//!   as alpha (two headers, one to each half, the second on its committed
//!   state whatever its lock); on odd seeds it withholds its round and its
//!   own votes from all but one server, so that the next beta knows nothing
//!   of them. Either way it closes its rounds early, prevotes every header
//!   it sees whatever its lock, precommits every header it sees certified,
//!   and replays old messages. With an even N the network is `rough`; with an odd N
//!   messages between honest servers arrive within the bound, the
//!   assumption safety rests on there (docs/CONSENSUS.md).

use std::collections::{BTreeMap, BTreeSet};

use rota_peer::wire::ServerList;
use rota_peer::wire::consensus::{
    Certificate, Certified, Evidence, Kind, Precommit, Prevote, SignedHeader, Verified,
};

use super::super::Refusal;
use super::*;

/// A small seeded generator (splitmix64): the whole run follows the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Per mille of messages lost, and duplicated.
    loss: u64,
    duplicate: u64,
    /// Per mille of messages late: delayed up to `max_delay`, past the
    /// bound; the others arrive within it.
    late: u64,
    max_delay: Millis,
    /// Per mille, a step of a server's is cut short by a crash.
    crash: u64,
    /// Server 1 is dishonest.
    dishonest: bool,
}

const CLEAN: Profile = Profile {
    loss: 0,
    duplicate: 0,
    late: 0,
    // Under the 300 ms delay bound, less the 10 ms step.
    max_delay: 250,
    crash: 0,
    dishonest: false,
};

const ROUGH: Profile = Profile {
    loss: 100,
    duplicate: 50,
    late: 150,
    max_delay: 3_000,
    crash: 1,
    dishonest: false,
};

const FIRST: Slot = 10;
const SLOTS: u64 = 8;
const STEP: Millis = 10;

/// A message as it travels.
#[derive(Clone, Debug)]
enum Packet {
    Round { header: Vec<u8>, payments: Pay },
    Prevote(Vec<u8>),
    Precommit(Vec<u8>),
    Certified(Vec<u8>),
    Evidence(Vec<u8>),
}

impl Packet {
    fn of(message: &Message<Pay>) -> Packet {
        match message {
            Message::Round { header, payments } => Packet::Round {
                header: header.encode(),
                payments: payments.clone(),
            },
            Message::Prevote(p) => Packet::Prevote(p.encode()),
            Message::Precommit(p) => Packet::Precommit(p.encode()),
            Message::Certified(c) => Packet::Certified(c.encode()),
            Message::Evidence(e) => Packet::Evidence(e.encode()),
        }
    }
}

struct Flight {
    at: Millis,
    to: usize,
    packet: Packet,
}

struct Server {
    node: Node,
    up: bool,
    down_until: Millis,
    /// This server's clock minus the true time.
    offset: i64,
    /// Its next step is cut short by a crash.
    crash_next: bool,
}

struct Cluster {
    keys: Keys,
    list: ServerList,
    profile: Profile,
    rng: Rng,
    seed: u64,
    now: Millis,
    servers: Vec<Server>,
    flights: Vec<Flight>,
    dishonest: Option<usize>,
    /// The dishonest server withholds its rounds and its own votes from all
    /// but one server (and does not equivocate).
    withhold: bool,
    /// Every round ever sent, by digest, to answer a machine's fetch.
    library: BTreeMap<Hash, (Vec<u8>, Pay)>,
    proposals: BTreeSet<(usize, Slot)>,
    /// What each honest server signed: (server, kind, slot) -> digest.
    signed: BTreeMap<(usize, Kind, Slot), Hash>,
    committed: BTreeMap<Slot, Hash>,
    lost: BTreeSet<Slot>,
    /// What the dishonest server has voted for, and the packets it saw.
    adversary: BTreeSet<(Kind, Hash)>,
    replays: Vec<Packet>,
    stats: Stats,
}

/// What a search went through, printed with --nocapture.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    runs: u64,
    delivered: u64,
    crashes: u64,
    evidence: u64,
    /// Slots committed and lost, summed over runs (global, not per server).
    committed: u64,
    lost: u64,
}

impl Cluster {
    fn new(n: usize, profile: Profile, seed: u64) -> Cluster {
        let keys = Keys::new(n);
        let list = keys.list();
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ n as u64);
        let servers = (0..n)
            .map(|i| Server {
                node: Node::new(&keys, i),
                up: true,
                down_until: 0,
                // Within +-100 ms: two clocks at most the 200 ms bound apart.
                offset: rng.below(201) as i64 - 100,
                crash_next: false,
            })
            .collect();
        let start = keys.timing().schedule.start(FIRST);
        Cluster {
            keys,
            list,
            profile,
            rng,
            seed,
            now: start,
            servers,
            flights: Vec::new(),
            dishonest: (profile.dishonest && n > 1).then_some(0),
            withhold: profile.dishonest && seed % 2 == 1,
            library: BTreeMap::new(),
            proposals: BTreeSet::new(),
            signed: BTreeMap::new(),
            committed: BTreeMap::new(),
            lost: BTreeSet::new(),
            adversary: BTreeSet::new(),
            replays: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn n(&self) -> usize {
        self.keys.n()
    }

    fn local(&self, i: usize) -> Millis {
        self.now.saturating_add_signed(self.servers[i].offset)
    }

    /// How early a server closes its round: the dishonest one a full
    /// second before its close, so that its round reaches the others early.
    fn early(&self, i: usize) -> Millis {
        if self.honest(i) { 0 } else { 1_000 }
    }

    fn honest(&self, i: usize) -> bool {
        self.dishonest != Some(i)
    }

    fn context(&self) -> String {
        format!(
            "N={} seed={} profile={:?} at {} ms",
            self.n(),
            self.seed,
            self.profile,
            self.now
        )
    }

    fn run(&mut self) {
        let t = self.keys.timing();
        let end = t.close(FIRST + SLOTS + 2);
        while self.now < end {
            self.step();
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        for i in 0..self.n() {
            if !self.servers[i].up && self.now >= self.servers[i].down_until {
                self.restart(i);
            }
        }
        self.propose();
        self.deliver();
        for i in 0..self.n() {
            if self.servers[i].up {
                let local = self.local(i);
                let s = &mut self.servers[i];
                let out = s.node.machine.tick(local, &mut s.node.ledger);
                self.carry(i, out);
            }
        }
        if self.profile.crash > 0 {
            for i in 0..self.n() {
                // With an odd N and a dishonest server, safety rests on honest
                // servers hearing each other within the bound: no crash.
                let bounded = self.dishonest.is_some() && self.n() % 2 == 1 && self.honest(i);
                if !bounded && self.servers[i].up && self.rng.chance(self.profile.crash) {
                    self.servers[i].crash_next = true;
                }
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.node = s.node.restart(&self.keys);
        s.up = true;
        let out = s.node.machine.resend();
        self.carry(i, out);
    }

    /// Each alpha closes its round at its own close(s).
    fn propose(&mut self) {
        let t = self.keys.timing();
        for i in 0..self.n() {
            let local = self.local(i);
            let slot = t.slot_at(local);
            let due = (slot.saturating_sub(1)..=slot).find(|s| {
                (FIRST..FIRST + SLOTS).contains(s)
                    && self.keys.alpha(*s) == i
                    && local + self.early(i) >= t.close(*s)
                    && !self.proposals.contains(&(i, *s))
            });
            let Some(slot) = due.filter(|_| self.servers[i].up) else {
                continue;
            };
            self.proposals.insert((i, slot));
            let payments: Pay = (0..1 + self.rng.below(3))
                .map(|_| self.rng.next())
                .collect();
            let s = &mut self.servers[i];
            match s
                .node
                .machine
                .propose(slot, payments, local, &mut s.node.ledger)
            {
                Ok(out) => self.carry(i, out),
                Err(Refusal::AlreadyProposed { .. } | Refusal::Decided { .. }) => {}
                Err(other) => panic!("{}: {other}", self.context()),
            }
        }
    }

    /// Delivers the messages due, in a seeded order.
    fn deliver(&mut self) {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.flights.len() {
            if self.flights[i].at <= self.now {
                due.push(self.flights.swap_remove(i));
            } else {
                i += 1;
            }
        }
        while !due.is_empty() {
            let pick = self.rng.below(due.len() as u64) as usize;
            let flight = due.swap_remove(pick);
            if self.servers[flight.to].up {
                self.stats.delivered += 1;
                self.receive(flight.to, flight.packet);
            }
        }
    }

    /// A server reads a packet: decode, verify, step.
    fn receive(&mut self, i: usize, packet: Packet) {
        if Some(i) == self.dishonest {
            self.adversary_sees(&packet);
        }
        let (n, list, now) = (self.n(), self.list.clone(), self.local(i));
        let s = &mut self.servers[i];
        let (machine, ledger) = (&mut s.node.machine, &mut s.node.ledger);
        let result = match packet {
            Packet::Round { header, payments } => SignedHeader::decode(&header, n)
                .and_then(|h| h.verify(CHAIN, &list))
                .map(|h| machine.on_round(h, payments, now, ledger)),
            Packet::Prevote(bytes) => Prevote::decode(&bytes, n)
                .and_then(|p| p.verify(CHAIN, &list))
                .map(|p| machine.on_prevote(p, now, ledger)),
            Packet::Precommit(bytes) => Precommit::decode(&bytes, n)
                .and_then(|p| p.verify(CHAIN, &list))
                .map(|p| machine.on_precommit(p, now, ledger)),
            Packet::Certified(bytes) => Certified::decode(&bytes, n)
                .and_then(|c| c.verify(CHAIN, &list))
                .map(|c| machine.on_certified(c, now, ledger)),
            Packet::Evidence(bytes) => Evidence::decode(&bytes, n)
                .and_then(|e| e.verify(CHAIN, &list))
                .map(|e| machine.on_evidence(e, now, ledger)),
        };
        match result {
            Err(e) => panic!("{}: a message that does not verify: {e}", self.context()),
            Ok(Err(_refused)) => {}
            Ok(Ok(out)) => self.carry(i, out),
        }
    }

    /// Carries out a server's outputs in order; a crash cuts them short.
    fn carry(&mut self, i: usize, outputs: Vec<Output<Pay>>) {
        let cut = if self.servers[i].crash_next {
            self.rng.below(outputs.len() as u64 + 1) as usize
        } else {
            outputs.len()
        };
        for output in outputs.into_iter().take(cut) {
            match output {
                Output::Persist(record) => self.servers[i].node.disk.push(record),
                Output::Send(message) => self.send(i, message),
                Output::Commit(commit) => {
                    if self.honest(i) {
                        self.check_commit(&commit);
                    }
                    self.servers[i].node.commits.push(commit);
                }
                Output::Missing { digest, .. } => self.fetch(i, digest),
                Output::Evidence(_) => self.stats.evidence += 1,
                Output::Halt(reason) => {
                    panic!("{}: server {} halted: {reason}", self.context(), i + 1)
                }
            }
        }
        let s = &mut self.servers[i];
        if s.crash_next {
            s.crash_next = false;
            s.up = false;
            self.stats.crashes += 1;
            s.down_until = self.now + 500 + self.rng.below(3_000);
        }
    }

    fn send(&mut self, i: usize, message: Message<Pay>) {
        assert_durable(&self.servers[i].node.disk, &message);
        if self.honest(i) {
            self.check_signed(i, &message);
        }
        let packet = Packet::of(&message);
        if let Message::Round { header, payments } = &message {
            self.library
                .insert(header.digest(), (header.encode(), payments.clone()));
            if Some(i) == self.dishonest && !self.withhold {
                return self.equivocate(i, header, payments);
            }
        }
        if Some(i) == self.dishonest && self.withhold {
            let target = self.target();
            return self.transmit(i, target, packet);
        }
        self.broadcast(i, packet);
    }

    /// The one server a withholding dishonest server talks to: not the
    /// alpha of the slot after its own, so that the next round's beta is
    /// one that heard nothing from it.
    fn target(&self) -> usize {
        (self.dishonest.unwrap_or(0) + 2) % self.n()
    }

    fn broadcast(&mut self, from: usize, packet: Packet) {
        for to in (0..self.n()).filter(|to| *to != from) {
            self.transmit(from, to, packet.clone());
        }
    }

    /// Sends a packet on its way, lost, duplicated or delayed as the
    /// profile says, except between honest servers with an odd N and a
    /// dishonest server: those arrive within the bound.
    fn transmit(&mut self, from: usize, to: usize, packet: Packet) {
        let p = self.profile;
        let bounded = self.dishonest.is_some() && self.n() % 2 == 1 && self.honest(from);
        let (loss, duplicate, late) = if bounded {
            (0, 0, 0)
        } else {
            (p.loss, p.duplicate, p.late)
        };
        if self.rng.chance(loss) {
            return;
        }
        let copies = if self.rng.chance(duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let max_delay = if self.rng.chance(late) {
                p.max_delay
            } else {
                CLEAN.max_delay
            };
            let at = self.now + self.rng.below(max_delay + 1);
            self.flights.push(Flight {
                at,
                to,
                packet: packet.clone(),
            });
        }
    }

    /// Answers a machine's request for a round from what was ever sent.
    fn fetch(&mut self, i: usize, digest: Hash) {
        if let Some((header, payments)) = self.library.get(&digest).cloned() {
            // From an honest server that holds it.
            let from = (i + 1 + usize::from(self.dishonest == Some((i + 1) % self.n()))) % self.n();
            self.transmit(from, i, Packet::Round { header, payments });
        }
    }

    /// No honest server signs two different things of one kind for a slot.
    fn check_signed(&mut self, i: usize, message: &Message<Pay>) {
        let (kind, slot, digest) = match message {
            Message::Round { header, .. } => (Kind::Header, header.slot(), header.digest()),
            Message::Prevote(p) => (Kind::Prevote, p.vote.slot, p.vote.digest),
            Message::Precommit(p) => (Kind::Precommit, p.vote.slot, p.vote.digest),
            Message::Certified(_) | Message::Evidence(_) => return,
        };
        let before = *self.signed.entry((i, kind, slot)).or_insert(digest);
        assert_eq!(
            before,
            digest,
            "{}: server {} signed two {}s for slot {slot}",
            self.context(),
            i + 1,
            kind.name()
        );
    }

    /// No two honest servers commit different headers for a slot, nor one
    /// commits what another lost.
    fn check_commit(&mut self, commit: &Commit<Pay>) {
        let ctx = self.context();
        for round in &commit.rounds {
            let slot = round.header.slot();
            let digest = round.header.digest();
            let before = *self.committed.entry(slot).or_insert(digest);
            assert_eq!(
                before, digest,
                "{ctx}: two headers committed for slot {slot}"
            );
            assert!(
                !self.lost.contains(&slot),
                "{ctx}: slot {slot} committed and lost"
            );
        }
        for slot in commit.from..=commit.slot() {
            if commit.decides(slot) == Some(false) {
                assert!(
                    !self.committed.contains_key(&slot),
                    "{ctx}: slot {slot} lost and committed"
                );
                self.lost.insert(slot);
            }
        }
    }

    /// The dishonest alpha sends one header to half the servers and
    /// another to the rest, and votes for both. The second ignores its
    /// lock: it builds on its committed state, however old.
    fn equivocate(&mut self, z: usize, header: &SignedHeader, payments: &Pay) {
        let mut other = payments.clone();
        other.push(self.rng.next());
        let committed = self.servers[z].node.machine.committed().clone();
        let second = self.keys.header(
            header.slot(),
            committed.base,
            committed.certified.map(|c| c.certificate()),
            &other,
        );
        self.library
            .insert(second.digest(), (second.encode(), other.clone()));
        for to in (0..self.n()).filter(|to| *to != z) {
            let packet = if to % 2 == 0 {
                Packet::Round {
                    header: header.encode(),
                    payments: payments.clone(),
                }
            } else {
                Packet::Round {
                    header: second.encode(),
                    payments: other.clone(),
                }
            };
            self.transmit(z, to, packet);
        }
        self.adversary_prevotes(&second);
    }

    /// The dishonest server votes for whatever it sees, lock or no lock,
    /// and now and then replays something old.
    fn adversary_sees(&mut self, packet: &Packet) {
        let (n, list) = (self.n(), self.list.clone());
        match packet {
            Packet::Round { header, .. } => {
                if let Ok(h) = SignedHeader::decode(header, n).and_then(|h| h.verify(CHAIN, &list))
                {
                    self.adversary_prevotes(&h);
                }
            }
            Packet::Prevote(bytes) => {
                if let Ok(p) = Prevote::decode(bytes, n).and_then(|p| p.verify(CHAIN, &list)) {
                    self.adversary_prevotes(&p.parts().1);
                }
            }
            Packet::Precommit(bytes) => {
                if let Ok(p) = Precommit::decode(bytes, n).and_then(|p| p.verify(CHAIN, &list)) {
                    let (_, header, certificate) = p.parts();
                    self.adversary_prevotes(&header);
                    self.adversary_precommits(&header, certificate);
                }
            }
            Packet::Certified(_) | Packet::Evidence(_) => {}
        }
        if self.replays.len() < 256 {
            self.replays.push(packet.clone());
        }
        if !self.replays.is_empty() && self.rng.chance(50) {
            let old = self.replays[self.rng.below(self.replays.len() as u64) as usize].clone();
            let to = self.rng.below(self.n() as u64) as usize;
            if let Some(z) = self.dishonest.filter(|z| *z != to) {
                self.transmit(z, to, old);
            }
        }
    }

    /// Whether the dishonest server keeps quiet about a header: its own,
    /// when it withholds.
    fn quiet(&self, header: &SignedHeader) -> bool {
        self.withhold && self.dishonest == Some(self.keys.alpha(header.slot()))
    }

    fn adversary_prevotes(&mut self, header: &Verified<SignedHeader>) {
        let z = self.dishonest.expect("a dishonest server");
        if self.quiet(header) || !self.adversary.insert((Kind::Prevote, header.digest())) {
            return;
        }
        let prevote = self.keys.prevote(z, header);
        self.broadcast(z, Packet::Prevote(prevote.encode()));
    }

    fn adversary_precommits(
        &mut self,
        header: &Verified<SignedHeader>,
        certificate: Verified<Certificate>,
    ) {
        let z = self.dishonest.expect("a dishonest server");
        if self.quiet(header) || !self.adversary.insert((Kind::Precommit, header.digest())) {
            return;
        }
        let vote = self.keys.vote(z, Kind::Precommit, header);
        let precommit = Verified::<Precommit>::join(vote, header.clone(), certificate)
            .expect("a precommit on the certified header");
        self.broadcast(z, Packet::Precommit(precommit.encode()));
    }

    /// Every round of an honest alpha committed, on every server.
    fn check_live(&self) {
        let ctx = self.context();
        for slot in FIRST..FIRST + SLOTS {
            if self.honest(self.keys.alpha(slot)) {
                assert!(
                    self.committed.contains_key(&slot),
                    "{ctx}: slot {slot} not committed"
                );
            }
        }
        for (i, s) in self.servers.iter().enumerate() {
            let at = s.node.machine.committed().base.slot;
            assert!(
                at >= FIRST + SLOTS - 2,
                "{ctx}: server {} committed only through {at}",
                i + 1
            );
        }
    }
}

fn search(ns: &[usize], profile: Profile, seeds: u64, live: bool) -> Stats {
    let mut total = Stats::default();
    for &n in ns {
        for seed in 0..seeds {
            let mut cluster = Cluster::new(n, profile, seed);
            cluster.run();
            if live {
                cluster.check_live();
            }
            let s = cluster.stats;
            total.runs += 1;
            total.delivered += s.delivered;
            total.crashes += s.crashes;
            total.evidence += s.evidence;
            total.committed += cluster.committed.len() as u64;
            total.lost += cluster.lost.range(FIRST..).count() as u64;
        }
    }
    eprintln!("N in {ns:?}, {profile:?}: {total:?}");
    total
}

#[test]
fn every_round_commits_on_a_clean_network_with_drifting_clocks() {
    let stats = search(&[1, 3, 4, 5], CLEAN, 8, true);
    assert_eq!(stats.lost, 0);
}

#[test]
fn no_two_servers_commit_different_rounds_through_loss_delay_and_crashes() {
    let stats = search(&[3, 4, 5], ROUGH, 24, false);
    assert!(
        stats.crashes > 0 && stats.committed > 0 && stats.lost > 0,
        "{stats:?}"
    );
}

#[test]
fn one_dishonest_server_cannot_make_honest_servers_disagree() {
    let dishonest = Profile {
        dishonest: true,
        ..ROUGH
    };
    // Odd N: honest messages within the bound (see the module essay).
    let stats = search(&[3, 4, 5], dishonest, 40, false);
    assert!(stats.evidence > 0 && stats.committed > 0, "{stats:?}");
}

/// The long search: `cargo test --release -- --ignored consensus`.
#[test]
#[ignore]
fn the_long_search() {
    let dishonest = Profile {
        dishonest: true,
        ..ROUGH
    };
    search(&[1, 3, 4, 5], CLEAN, 200, true);
    search(&[3, 4, 5, 6], ROUGH, 2_000, false);
    search(&[3, 4, 5, 6], dishonest, 2_000, false);
}

//! Tests of the consensus machine, with a fake ledger and a fake clock.
//!
//! `machine.rs` drives one machine by hand, playing the other servers with
//! their real keys; `cluster.rs` runs N machines over a message queue the
//! test controls (every message through its bytes and its signature
//! check), with seeded orderings, losses, crashes and one dishonest
//! server, checking the safety invariants after every step.
//!
//! The fake ledger's state after a round is its balance hash, folded from
//! the base's and the payments': `result = SHA-256(base balance | slot |
//! root)`. A round's validity then depends on its base and slot only, as
//! the real ledger's does, and a test can compute any header's result.

mod cluster;
mod machine;
mod seal;

use std::collections::BTreeMap;

use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::wire::ServerList;
use rota_peer::wire::consensus::{
    Base, Certificate, Certified, Header, Kind, Precommit, Prevote, SignedHeader, Verified,
};
use rota_peer::{Hash, Millis, ServerId, Slot};

use super::{Commit, Committed, Config, Ledger, Machine, Message, Output, Record, Timing};

pub(super) const CHAIN: &str = "test";

/// The test chain's seal difficulty: low, so that a test finds seals at
/// once, and not 0, so that a wrong seal does not prove.
pub(super) const DIFFICULTY: u32 = 8;

/// A round's payments: numbers the fake ledger folds in.
pub(super) type Pay = Vec<u64>;

pub(super) fn schedule(n: usize) -> Schedule {
    Schedule {
        slot_ms: 2_000,
        blackout_ms: 600,
        tolerance_ms: 200,
        servers: n,
        difficulty: DIFFICULTY,
    }
}

pub(super) fn timing(n: usize) -> Timing {
    Timing::new(schedule(n))
}

/// The state every test starts from.
pub(super) fn anchor() -> Committed {
    Committed::anchor(0, Hash([1; 32]))
}

pub(super) fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

pub(super) fn server_list(keys: &[Keypair]) -> ServerList {
    ServerList::new(keys.iter().map(Keypair::public).collect())
}

pub(super) fn config(keys: &[Keypair], index: usize) -> Config {
    Config {
        chain: CHAIN.into(),
        me: ServerId::from_index(index),
        keypair: keys[index].clone(),
        servers: server_list(keys),
        timing: timing(keys.len()),
    }
}

pub(super) fn root(payments: &Pay) -> Hash {
    let bytes: Vec<u8> = payments.iter().flat_map(|p| p.to_be_bytes()).collect();
    Hash::of(&bytes)
}

/// The payments of `payments` that apply: a payment 0 never does.
pub(super) fn valid(payments: &Pay) -> Pay {
    payments.iter().copied().filter(|p| *p != 0).collect()
}

/// The balance hash after `payments` as the round of `slot` on `base`
/// (those that apply).
pub(super) fn fold(base: &Hash, slot: Slot, payments: &Pay) -> Hash {
    let mut bytes = base.0.to_vec();
    bytes.extend_from_slice(&slot.to_be_bytes());
    bytes.extend_from_slice(&root(&valid(payments)).0);
    Hash::of(&bytes)
}

/// A ledger that keeps balance hashes only; a payment 0 does not apply.
#[derive(Debug, Default)]
pub(super) struct FakeLedger {
    states: BTreeMap<Hash, Hash>,
    pub applied: usize,
    /// Committed blocks waiting for their seals, by number.
    pub blocks: BTreeMap<u64, rota_peer::block::BlockHeader>,
    /// Seals found, by block number.
    pub seals: BTreeMap<u64, rota_peer::seal::Seal>,
}

impl FakeLedger {
    /// A ledger holding the committed state only, as after a restart.
    pub fn new(committed: &Committed) -> FakeLedger {
        let mut states = BTreeMap::new();
        states.insert(committed.base.digest, committed.base.balance);
        FakeLedger {
            states,
            ..FakeLedger::default()
        }
    }
}

impl Ledger for FakeLedger {
    type Payments = Pay;
    /// The balance hash, and the payments that applied if some did not.
    type State = (Hash, Option<Pay>);

    fn root(&self, payments: &Pay) -> Hash {
        root(payments)
    }

    fn none(&self) -> Pay {
        Vec::new()
    }

    fn apply(&mut self, base: &Base, slot: Slot, payments: &Pay) -> Option<(Hash, Self::State)> {
        let before = self.states.get(&base.digest)?;
        self.applied += 1;
        let after = fold(before, slot, payments);
        let valid = valid(payments);
        let skipped = (valid.len() < payments.len()).then_some(valid);
        Some((after, (after, skipped)))
    }

    fn valid_part(&self, state: &Self::State) -> Option<Pay> {
        state.1.clone()
    }

    fn block(&self, number: u64) -> Option<rota_peer::block::BlockHeader> {
        self.blocks.get(&number).copied()
    }

    fn seal(&self, block: &rota_peer::block::BlockHeader) -> Option<rota_peer::seal::Seal> {
        self.seals.get(&block.number).copied()
    }

    fn keep(&mut self, digest: Hash, state: Self::State) {
        self.states.insert(digest, state.0);
    }
}

/// Every server's keys, to play the others by hand.
pub(super) struct Keys {
    pub keys: Vec<Keypair>,
}

impl Keys {
    pub fn new(n: usize) -> Keys {
        Keys { keys: keys(n) }
    }

    pub fn n(&self) -> usize {
        self.keys.len()
    }

    pub fn list(&self) -> ServerList {
        server_list(&self.keys)
    }

    pub fn timing(&self) -> Timing {
        timing(self.n())
    }

    /// The index (from 0) of the alpha of `slot`.
    pub fn alpha(&self, slot: Slot) -> usize {
        (slot % self.n() as u64) as usize
    }

    /// The header of `slot` with `payments` on the anchor, signed by its alpha.
    pub fn on_anchor(&self, slot: Slot, payments: &Pay) -> Verified<SignedHeader> {
        self.header(slot, anchor().base, None, payments)
    }

    /// The header of `slot` with `payments` on `base`, signed by its alpha.
    pub fn header(
        &self,
        slot: Slot,
        base: Base,
        certificate: Option<Verified<Certificate>>,
        payments: &Pay,
    ) -> Verified<SignedHeader> {
        let header = Header {
            slot,
            base,
            payments: root(payments),
            result: fold(&base.balance, slot, payments),
            seal: None,
        };
        Verified::sign_header(&self.keys[self.alpha(slot)], CHAIN, header, certificate)
    }

    /// The header of `slot` on the certified round `base`.
    pub fn on(
        &self,
        slot: Slot,
        base: &Verified<Certified>,
        payments: &Pay,
    ) -> Verified<SignedHeader> {
        let h = &base.header;
        let b = Base {
            digest: h.digest(),
            slot: h.slot(),
            balance: h.header.result,
            chain: h.header.after(self.timing().schedule.shape()),
            sealed: h.header.sealed_after(),
        };
        self.header(slot, b, Some(base.certificate()), payments)
    }

    pub fn vote(
        &self,
        who: usize,
        kind: Kind,
        header: &SignedHeader,
    ) -> Verified<rota_peer::wire::consensus::Vote> {
        Verified::sign_vote(
            &self.keys[who],
            CHAIN,
            ServerId::from_index(who),
            kind,
            header.slot(),
            header.digest(),
        )
    }

    pub fn prevote(&self, who: usize, header: &Verified<SignedHeader>) -> Verified<Prevote> {
        Verified::<Prevote>::join(self.vote(who, Kind::Prevote, header), header.clone()).unwrap()
    }

    pub fn certificate(
        &self,
        kind: Kind,
        who: &[usize],
        header: &SignedHeader,
    ) -> Verified<Certificate> {
        let votes: Vec<_> = who.iter().map(|w| self.vote(*w, kind, header)).collect();
        Verified::assemble(&votes, self.list().majority()).expect("a majority")
    }

    pub fn certified(
        &self,
        kind: Kind,
        who: &[usize],
        header: &Verified<SignedHeader>,
    ) -> Verified<Certified> {
        Verified::<Certified>::join(header.clone(), self.certificate(kind, who, header)).unwrap()
    }

    pub fn precommit(
        &self,
        who: usize,
        header: &Verified<SignedHeader>,
        prevoters: &[usize],
    ) -> Verified<Precommit> {
        Verified::<Precommit>::join(
            self.vote(who, Kind::Precommit, header),
            header.clone(),
            self.certificate(Kind::Prevote, prevoters, header),
        )
        .unwrap()
    }
}

/// One machine with its ledger and its disk, and what it has done.
pub(super) struct Node {
    pub index: usize,
    pub machine: Machine<Pay>,
    pub ledger: FakeLedger,
    /// Every record made durable, in order.
    pub disk: Vec<Record<Pay>>,
    pub commits: Vec<Commit<Pay>>,
}

impl Node {
    pub fn new(keys: &Keys, index: usize) -> Node {
        Node {
            index,
            machine: Machine::new(config(&keys.keys, index), anchor()),
            ledger: FakeLedger::new(&anchor()),
            disk: Vec::new(),
            commits: Vec::new(),
        }
    }

    /// The node a crash leaves: its machine rebuilt from its disk, its
    /// ledger from its last committed state.
    pub fn restart(&self, keys: &Keys) -> Node {
        let committed = self.commits.last().map_or_else(anchor, |c| {
            Committed::round(
                c.certified.clone(),
                timing(keys.keys.len()).schedule.shape(),
            )
        });
        let machine = Machine::restore(
            config(&keys.keys, self.index),
            committed.clone(),
            self.disk.clone(),
        )
        .expect("its own records verify");
        Node {
            index: self.index,
            machine,
            ledger: FakeLedger::new(&committed),
            disk: self.disk.clone(),
            commits: self.commits.clone(),
        }
    }

    /// Carries out a step's outputs: records to disk, commits noted;
    /// returns the messages, checking each vote left after its record.
    pub fn absorb(&mut self, outputs: Vec<Output<Pay>>) -> Vec<Message<Pay>> {
        let mut sent = Vec::new();
        for output in outputs {
            match output {
                Output::Persist(record) => self.disk.push(record),
                Output::Send(message) => {
                    assert_durable(&self.disk, &message);
                    sent.push(message);
                }
                Output::Commit(commit) => self.commits.push(commit),
                Output::Missing { .. } | Output::Evidence(_) => {}
                Output::Halt(reason) => panic!("server {} halted: {reason}", self.index + 1),
            }
        }
        sent
    }

    pub fn tick(&mut self, now: Millis) -> Vec<Message<Pay>> {
        let out = self.machine.tick(now, &mut self.ledger);
        self.absorb(out)
    }

    pub fn round(
        &mut self,
        header: &Verified<SignedHeader>,
        payments: &Pay,
        now: Millis,
    ) -> Vec<Message<Pay>> {
        let out = self
            .machine
            .on_round(header.clone(), payments.clone(), now, &mut self.ledger)
            .expect("a round to take");
        self.absorb(out)
    }

    pub fn prevote(&mut self, prevote: Verified<Prevote>, now: Millis) -> Vec<Message<Pay>> {
        let out = self
            .machine
            .on_prevote(prevote, now, &mut self.ledger)
            .expect("a prevote to take");
        self.absorb(out)
    }

    pub fn precommit(&mut self, precommit: Verified<Precommit>, now: Millis) -> Vec<Message<Pay>> {
        let out = self
            .machine
            .on_precommit(precommit, now, &mut self.ledger)
            .expect("a precommit to take");
        self.absorb(out)
    }

    pub fn certified(&mut self, certified: Verified<Certified>, now: Millis) -> Vec<Message<Pay>> {
        let out = self
            .machine
            .on_certified(certified, now, &mut self.ledger)
            .expect("a certificate to take");
        self.absorb(out)
    }

    pub fn propose(&mut self, slot: Slot, payments: &Pay, now: Millis) -> Vec<Message<Pay>> {
        let out = self
            .machine
            .propose(slot, payments.clone(), now, &mut self.ledger)
            .expect("a round to propose");
        self.absorb(out)
    }
}

/// A vote leaves only after its record is on disk (rule 4).
pub(super) fn assert_durable(disk: &[Record<Pay>], message: &Message<Pay>) {
    let kept = match message {
        Message::Prevote(p) => disk.contains(&Record::Prevote(p.clone())),
        Message::Precommit(p) => disk.contains(&Record::Precommit(p.clone())),
        Message::Round { header, payments } => disk.contains(&Record::Proposal {
            header: header.clone(),
            payments: payments.clone(),
        }),
        Message::Certified(_) | Message::Evidence(_) => true,
    };
    assert!(kept, "sent before it was durable: {message:?}");
}

/// The prevotes in `sent`.
pub(super) fn prevotes(sent: &[Message<Pay>]) -> Vec<&Prevote> {
    sent.iter()
        .filter_map(|m| match m {
            Message::Prevote(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The precommits in `sent`.
pub(super) fn precommits(sent: &[Message<Pay>]) -> Vec<&Precommit> {
    sent.iter()
        .filter_map(|m| match m {
            Message::Precommit(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The certificates in `sent`.
pub(super) fn certificates(sent: &[Message<Pay>]) -> Vec<&Certified> {
    sent.iter()
        .filter_map(|m| match m {
            Message::Certified(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Moments of slot `s`: just after its close, before V(s), before P(s),
/// at P(s).
pub(super) struct Moments {
    pub close: Millis,
    pub voting: Millis,
    pub before_p: Millis,
    pub p: Millis,
}

pub(super) fn moments(t: &Timing, slot: Slot) -> Moments {
    Moments {
        close: t.close(slot),
        voting: t.close(slot) + 100,
        before_p: t.precommit_at(slot) - 1,
        p: t.precommit_at(slot),
    }
}

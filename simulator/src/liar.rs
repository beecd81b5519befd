//! The dishonest server: real code, with a liar between it and the network.
//!
//! The dishonest server runs the same edge and machine as the others; what
//! it sends passes through a [`Liar`] that, at the profile's rates, changes
//! it, and what it receives feeds the votes no rule allows. It holds its
//! own real key and no other, so every lie goes out under its own name (the
//! network sets the sender): it can say anything a server can sign, and
//! nothing another server would have to sign.
//!
//! - **forge-result**: as alpha, sign its ROUND(s) with a result that mints
//!   a million to an account, and send a commit certificate for it made of
//!   its own precommit alone;
//! - **fail-result**: as alpha, withhold its ROUND(s) from everyone;
//! - **equivocate**: as alpha, sign a second, valid header for its slot (no
//!   payments, on the same base) and send it to some servers, the first to
//!   the others; prevote and precommit each one to the servers that got it,
//!   and never publish the evidence against itself;
//! - **ignore-lock**: in a slot of another alpha, prevote every header it
//!   sees, whatever its lock and its earlier votes say, and precommit every
//!   header it holds a prevote certificate for, at once (`liar/loose.rs`);
//! - **vote**: send a prevote whose signature names a made-up header;
//! - **replay**: send a server one of its own old messages again, of any
//!   kind, from before its restarts too;
//! - **status**: claim, in registrations and heartbeats, 1000 blocks more
//!   than it has;
//! - **withhold**: never answer a `D` or `B` request;
//! - **blocks**: answer `B` with a block of its own making, chained on its
//!   own previous block.
//!
//! With an odd number of servers, safety against equivocation and against
//! a voter that ignores its lock rests on a timing bound (docs/CONSENSUS.md
//! §5.3): the liar tells those two lies only in runs that keep the honest
//! servers within it, or with an even number of servers
//! ([`Liar::timing_lies`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rota::ledger::edge::Response;
use rota_listener::{Consensus, PeerInput};
use rota_peer::balances::Balances;
use rota_peer::block::{Block, merkle_root};
use rota_peer::keys::Keypair;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::{
    Certificate, Certified, Header, Kind, SignedHeader, Verified, Vote,
};
use rota_peer::wire::{Hello, PeerMessage, Reply, ServerList};
use rota_peer::{Amount, Hash, PublicKey, ServerId, Slot};

use crate::network::{Ask, Endpoint, Payload};
use crate::profile::Profile;
use crate::rng::Rng;
use crate::server::{Out, SimServer};

mod loose;

use loose::Voter;

/// How many of its own messages the liar keeps for replaying.
const REMEMBERED: usize = 32;

/// How many slots the liar remembers what it chose for.
const CHOICES: usize = 64;

/// What the liar does to its own ROUND of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RoundLie {
    Honest,
    Forge,
    Withhold,
    /// Two headers: the second, and the servers that get it.
    Equivocate {
        second: Box<SignedHeader>,
        to: BTreeSet<ServerId>,
    },
}

/// The dishonest server's liar. See the module documentation.
pub struct Liar {
    pub id: ServerId,
    key: Keypair,
    chain: String,
    servers: ServerList,
    rng: Rng,
    /// Whether it may equivocate and ignore its lock: with an even number
    /// of servers, or in a run that keeps the honest servers within the
    /// timing bound.
    pub timing_lies: bool,
    /// Its own messages, for replaying: (slot, message).
    sent: VecDeque<(Slot, PeerMessage<VerifiedTx>)>,
    rounds: BTreeMap<Slot, RoundLie>,
    /// Slots of other alphas it chose whether to ignore its lock in.
    ignoring: BTreeMap<Slot, bool>,
    voter: Voter,
    /// Lies told so far, by kind (the words of the lie flags).
    pub lies: BTreeMap<&'static str, u64>,
}

impl Liar {
    pub fn new(
        id: ServerId,
        key: Keypair,
        chain: &str,
        servers: ServerList,
        rng: Rng,
        timing_lies: bool,
    ) -> Liar {
        Liar {
            id,
            voter: Voter::new(id, key.clone(), chain, servers.clone()),
            key,
            chain: chain.into(),
            servers,
            rng,
            timing_lies,
            sent: VecDeque::new(),
            rounds: BTreeMap::new(),
            ignoring: BTreeMap::new(),
            lies: BTreeMap::new(),
        }
    }

    /// Rewrites what the dishonest server sends, and adds the votes no
    /// rule allows.
    pub fn filter(&mut self, server: &SimServer, outs: Vec<Out>, p: &Profile) -> Vec<Out> {
        let mut rewritten = Vec::with_capacity(outs.len());
        for out in outs {
            match out {
                Out::Send { to, payload } => self.send(server, to, payload, p, &mut rewritten),
                other => rewritten.push(other),
            }
        }
        self.cast(&mut rewritten);
        rewritten
    }

    /// A message the dishonest server received, its signatures checked:
    /// what it learns feeds the votes no rule allows, which leave at once.
    pub fn hear(&mut self, input: &PeerInput, p: &Profile) -> Vec<Out> {
        if let PeerInput::Consensus(message) = input {
            let slot = match message.as_ref() {
                Consensus::Round { header, .. } => Some(header.slot()),
                Consensus::Prevote(v) => Some(v.header.slot()),
                Consensus::Precommit(v) => Some(v.header.slot()),
                Consensus::Certified(c) => Some(c.header.slot()),
                Consensus::Evidence(_) | Consensus::Want { .. } => None,
            };
            if let Some(slot) = slot {
                self.choose_ignoring(slot, p);
            }
        }
        self.voter.hear(input);
        let mut outs = Vec::new();
        self.cast(&mut outs);
        outs
    }

    fn lie(&mut self, kind: &'static str) {
        *self.lies.entry(kind).or_default() += 1;
    }

    /// Whether to ignore its lock in `slot`, once a slot.
    fn choose_ignoring(&mut self, slot: Slot, p: &Profile) {
        if self.ignoring.contains_key(&slot) {
            return;
        }
        let ignore = self.timing_lies && self.rng.chance(p.lie_ignore_lock);
        self.ignoring.insert(slot, ignore);
        if self.ignoring.len() > CHOICES {
            self.ignoring.pop_first();
        }
        if ignore {
            self.voter.vote_in(slot);
        }
    }

    /// The voter's new votes, one packet per server that gets them.
    fn cast(&mut self, outs: &mut Vec<Out>) {
        for cast in self.voter.cast() {
            let slot = match &cast.message {
                PeerMessage::Prevote(p) => p.vote.slot,
                PeerMessage::Precommit(p) => p.vote.slot,
                // The voter casts votes only.
                PeerMessage::Round { .. }
                | PeerMessage::Certified(_)
                | PeerMessage::Evidence(_)
                | PeerMessage::Want { .. }
                | PeerMessage::Forward { .. }
                | PeerMessage::Register(_)
                | PeerMessage::Mine(_)
                | PeerMessage::Heart(_) => continue,
            };
            if self.rounds.get(&slot).is_some_and(is_split) {
                self.lie("equivocate");
            } else {
                self.lie("ignore-lock");
            }
            self.remember(slot, &cast.message);
            for id in self.servers.ids() {
                if id == self.id || cast.to.as_ref().is_some_and(|to| !to.contains(&id)) {
                    continue;
                }
                let ask = Ask::Peer {
                    slot,
                    message: Box::new(cast.message.clone()),
                };
                outs.push(Out::Send {
                    to: Endpoint::Server(id),
                    payload: Payload::Ask(ask),
                });
            }
        }
    }

    fn send(
        &mut self,
        server: &SimServer,
        to: Endpoint,
        payload: Payload,
        p: &Profile,
        outs: &mut Vec<Out>,
    ) {
        let payload = match payload {
            Payload::Ask(Ask::Peer { slot, message }) => {
                let Endpoint::Server(receiver) = to else {
                    return;
                };
                let lies = self.peer(server, receiver, *message, p);
                for message in lies {
                    self.remember(slot, &message);
                    let ask = Ask::Peer {
                        slot,
                        message: Box::new(message),
                    };
                    outs.push(Out::Send {
                        to,
                        payload: Payload::Ask(ask),
                    });
                }
                return;
            }
            Payload::Answer(response) => match self.answer(response, p) {
                Some(response) => Payload::Answer(response),
                None => return,
            },
            other => other,
        };
        outs.push(Out::Send { to, payload });
    }

    fn remember(&mut self, slot: Slot, message: &PeerMessage<VerifiedTx>) {
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((slot, message.clone()));
    }

    /// One peer message to one server, as the liar would have it.
    fn peer(
        &mut self,
        server: &SimServer,
        to: ServerId,
        message: PeerMessage<VerifiedTx>,
        p: &Profile,
    ) -> Vec<PeerMessage<VerifiedTx>> {
        if let Some(slot) = header_slot(&message) {
            self.choose_ignoring(slot, p);
        }
        match message {
            PeerMessage::Round {
                header,
                transactions,
            } if self.alpha_of(header.slot()) => self.round(server, to, header, transactions, p),
            // Its votes on its first header go only to the servers that got it.
            PeerMessage::Prevote(prevote) if self.hides(&prevote.header, to) => Vec::new(),
            PeerMessage::Precommit(precommit) if self.hides(&precommit.header, to) => Vec::new(),
            // It never publishes evidence against itself.
            PeerMessage::Evidence(evidence)
                if self.rounds.get(&evidence.slot()).is_some_and(is_split) =>
            {
                Vec::new()
            }
            PeerMessage::Prevote(mut prevote) if self.rng.chance(p.lie_vote) => {
                self.lie("vote");
                let made_up = Hash(self.rng.bytes32());
                prevote.vote = self
                    .sign(Kind::Prevote, prevote.vote.slot, made_up)
                    .into_inner();
                vec![PeerMessage::Prevote(prevote)]
            }
            PeerMessage::Prevote(prevote) => {
                if prevote.vote.signer == self.id {
                    self.voter.prevoted(prevote.vote.slot, prevote.vote.digest);
                }
                vec![PeerMessage::Prevote(prevote)]
            }
            other => vec![other],
        }
    }

    /// Whether the liar is the alpha of `slot`.
    fn alpha_of(&self, slot: Slot) -> bool {
        ServerId::from_index((slot % self.servers.len() as u64) as usize) == self.id
    }

    /// Whether `header` is its own first header of a slot it equivocates
    /// in, and `to` got the second.
    fn hides(&self, header: &SignedHeader, to: ServerId) -> bool {
        match self.rounds.get(&header.slot()) {
            Some(RoundLie::Equivocate { second, to: those }) => {
                header.digest() != second.digest() && those.contains(&to)
            }
            Some(RoundLie::Honest | RoundLie::Forge | RoundLie::Withhold) | None => false,
        }
    }

    /// Its own ROUND(s), to one server: as it is, forged, withheld, or the
    /// second header of its signing.
    fn round(
        &mut self,
        server: &SimServer,
        to: ServerId,
        header: SignedHeader,
        transactions: Vec<VerifiedTx>,
        p: &Profile,
    ) -> Vec<PeerMessage<VerifiedTx>> {
        let slot = header.slot();
        if !self.rounds.contains_key(&slot) {
            let lie = self.choose_round(&header, p);
            self.rounds.insert(slot, lie);
            if self.rounds.len() > CHOICES {
                self.rounds.pop_first();
            }
        }
        match self.rounds[&slot].clone() {
            RoundLie::Withhold => {
                self.lie("fail-result");
                Vec::new()
            }
            RoundLie::Forge => {
                self.lie("forge-result");
                let forged = self.resign(&header, |h| h.result = minted(server));
                let certified = self.own_commit(&forged);
                vec![
                    PeerMessage::Round {
                        header: forged,
                        transactions,
                    },
                    PeerMessage::Certified(certified),
                ]
            }
            RoundLie::Equivocate { second, to: those } if those.contains(&to) => {
                self.lie("equivocate");
                vec![PeerMessage::Round {
                    header: *second,
                    transactions: Vec::new(),
                }]
            }
            RoundLie::Equivocate { .. } | RoundLie::Honest => vec![PeerMessage::Round {
                header,
                transactions,
            }],
        }
    }

    /// What to do with its round of a slot: forge it, withhold it, sign a
    /// second one (splitting the other servers in two), or nothing.
    fn choose_round(&mut self, header: &SignedHeader, p: &Profile) -> RoundLie {
        if self.rng.chance(p.lie_forge_result) {
            return RoundLie::Forge;
        }
        if self.rng.chance(p.lie_fail_result) {
            return RoundLie::Withhold;
        }
        if !(self.timing_lies && self.rng.chance(p.lie_equivocate)) {
            return RoundLie::Honest;
        }
        let second = self.resign(header, |h| {
            h.payments = merkle_root(&[]);
            h.result = h.base.balance;
        });
        let others: Vec<ServerId> = self.servers.ids().filter(|id| *id != self.id).collect();
        let mut to: BTreeSet<ServerId> = others
            .iter()
            .copied()
            .filter(|_| self.rng.chance(0.5))
            .collect();
        if to.is_empty() {
            to.insert(others[self.rng.index(others.len())]);
        } else if to.len() == others.len() {
            to.remove(&others[self.rng.index(others.len())]);
        }
        let slot = header.slot();
        let first: BTreeSet<ServerId> = others.into_iter().filter(|id| !to.contains(id)).collect();
        self.voter.vote_in(slot);
        self.voter.header(header, Some(first));
        self.voter.header(&second, Some(to.clone()));
        RoundLie::Equivocate {
            second: Box::new(second),
            to,
        }
    }

    fn sign(&self, kind: Kind, slot: Slot, digest: Hash) -> Verified<Vote> {
        Verified::<Vote>::sign_vote(&self.key, &self.chain, self.id, kind, slot, digest)
    }

    /// `header` changed by `change` and signed again with the liar's key,
    /// on the same base and base certificate.
    fn resign(&self, header: &SignedHeader, change: impl FnOnce(&mut Header)) -> SignedHeader {
        let mut inner = header.header;
        change(&mut inner);
        let base = header
            .base_certificate
            .as_ref()
            .and_then(|c| c.verify(&self.chain, &self.servers).ok());
        Verified::<SignedHeader>::sign_header(&self.key, &self.chain, inner, base).into_inner()
    }

    /// A "commit certificate" for `header` with the liar's precommit alone:
    /// never enough, and every honest server must see so.
    fn own_commit(&self, header: &SignedHeader) -> Certified {
        let vote = self.sign(Kind::Precommit, header.slot(), header.digest());
        Certified {
            header: header.clone(),
            certificate: Certificate {
                kind: Kind::Precommit,
                slot: header.slot(),
                digest: header.digest(),
                signatures: vec![(self.id, vote.signature)],
            },
        }
    }

    /// An answer to another server's request, as the liar would have it;
    /// none to withhold it.
    fn answer(&mut self, response: Response, p: &Profile) -> Option<Response> {
        match response {
            Response::Sign { slot, message } => {
                let hello = matches!(*message, PeerMessage::Register(_) | PeerMessage::Heart(_));
                let lie = hello && self.rng.chance(p.lie_status);
                let clock = hello && self.rng.chance(p.lie_clock);
                let mut tell = |hello: Hello| {
                    let hello = if lie { self.inflate(hello) } else { hello };
                    if clock { self.mistime(hello, p) } else { hello }
                };
                let message = match *message {
                    PeerMessage::Register(hello) => PeerMessage::Register(tell(hello)),
                    PeerMessage::Heart(hello) => PeerMessage::Heart(tell(hello)),
                    other => other,
                };
                Some(Response::Sign {
                    slot,
                    message: Box::new(message),
                })
            }
            Response::Reply(Reply::Database { .. } | Reply::Block { .. })
                if self.rng.chance(p.lie_withhold) =>
            {
                self.lie("withhold");
                None
            }
            Response::Reply(Reply::Block { seal, block }) if self.rng.chance(p.lie_blocks) => {
                self.lie("blocks");
                let block = self.forged_block(&block);
                Some(Response::Reply(Reply::Block { seal, block }))
            }
            other => Some(other),
        }
    }

    /// A status claiming 1000 blocks more than it has. Its certificate
    /// vouches for its blocks too (the certified header names the chain of
    /// blocks after its round), so the answer is refused where it is
    /// decoded (`CertifiedStatus::verify`), as a lie about the slot or the
    /// hash is: it costs the asker an answer, nothing more.
    fn inflate(&mut self, mut claim: Hello) -> Hello {
        self.lie("status");
        claim.status.status.height += 1_000;
        claim.status.status.block_hash = Hash(self.rng.bytes32());
        claim
    }

    /// A hello whose clock is up to ten tolerances off the liar's own, and
    /// which says at random that it sits its slots out. The echo stays
    /// true, or the answer would not count at all. The judge's clock
    /// watch allows for any clock the liar gives (`Judge::skews`).
    fn mistime(&mut self, mut claim: Hello, p: &Profile) -> Hello {
        self.lie("clock");
        let off = self.rng.signed(p.tolerance_ms.saturating_mul(10));
        claim.clock = claim.clock.saturating_add_signed(off);
        claim.sitting_out = self.rng.chance(0.5);
        claim
    }

    /// A block of the liar's making in place of its block: the same number
    /// and previous block, with its last payment dropped and a made-up
    /// balance hash.
    fn forged_block(&mut self, bytes: &[u8]) -> Vec<u8> {
        let Ok(mut block) = Block::decode(bytes) else {
            return bytes.to_vec();
        };
        block.transactions.pop();
        let ids: Vec<_> = block.transactions.iter().map(|tx| tx.id()).collect();
        block.header.merkle_root = merkle_root(&ids);
        block.header.balance_hash = Hash(self.rng.bytes32());
        block.encode()
    }

    /// One of its old messages to replay now, to a random server.
    pub fn replay(
        &mut self,
        servers: usize,
        p: &Profile,
    ) -> Option<(ServerId, Slot, PeerMessage<VerifiedTx>)> {
        if self.sent.is_empty() || !self.rng.chance(p.lie_replay) {
            return None;
        }
        let (slot, message) = self.sent[self.rng.index(self.sent.len())].clone();
        let mut to = ServerId::from_index(self.rng.index(servers));
        if to == self.id {
            to = ServerId::from_index((to.index() + 1) % servers);
        }
        self.lie("replay");
        Some((to, slot, message))
    }
}

/// The slot of the header a message carries, if it carries one.
fn header_slot(message: &PeerMessage<VerifiedTx>) -> Option<Slot> {
    match message {
        PeerMessage::Round { header, .. } => Some(header.slot()),
        PeerMessage::Prevote(p) => Some(p.header.slot()),
        PeerMessage::Precommit(p) => Some(p.header.slot()),
        PeerMessage::Certified(c) => Some(c.header.slot()),
        PeerMessage::Evidence(e) => Some(e.slot()),
        PeerMessage::Register(_)
        | PeerMessage::Heart(_)
        | PeerMessage::Mine(_)
        | PeerMessage::Want { .. }
        | PeerMessage::Forward { .. } => None,
    }
}

fn is_split(lie: &RoundLie) -> bool {
    matches!(lie, RoundLie::Equivocate { .. })
}

/// The balance hash of the liar's committed database with a million
/// minted to its first account.
fn minted(server: &SimServer) -> Hash {
    let mut accounts: Vec<(PublicKey, Amount)> = match server.node() {
        Some(node) => {
            let balances = Balances::clone(&node.edge.core().committed().snapshot);
            balances.accounts().collect()
        }
        None => Vec::new(),
    };
    if let Some(first) = accounts.first_mut() {
        first.1 = first.1.saturating_add(1_000_000);
    }
    Balances::from_accounts(&accounts)
        .unwrap_or_default()
        .hash()
}

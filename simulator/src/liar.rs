//! The dishonest server: real code, with a liar between it and the network.
//!
//! The dishonest server runs the same edge and machine as the others; what
//! it sends passes through a [`Liar`] that, at the profile's rates, changes
//! it. It holds its own real key and no other, so every lie goes out under
//! its own name (the network sets the sender): it can say anything a
//! server can sign, and nothing another server would have to sign.
//!
//! - **forge-result**: as beta, replace its RESULT(s) by a consensus of all
//!   servers on a made-up database (its own with a million minted to an
//!   account), and push that database to everyone;
//! - **fail-result**: as beta, replace its RESULT(s) by "no majority";
//! - **equivocate**: as beta, send each server a different ROUND(s) (a
//!   different share of its payments, with the same claimed hash);
//! - **vote**: vote a made-up hash;
//! - **replay**: send a server one of its own old messages again;
//! - **status**: claim, in registrations and heartbeats, 1000 blocks more
//!   than it has;
//! - **withhold**: never answer a `D` or `B` request;
//! - **blocks**: answer `B` with a block of its own making, chained on its
//!   own previous block.

use std::collections::{BTreeMap, VecDeque};

use rota::ledger::edge::Response;
use rota_peer::balances::Balances;
use rota_peer::block::{Block, merkle_root};
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{Decision, PeerMessage, Reply, Status};
use rota_peer::{Amount, Hash, PublicKey, ServerId, Slot};

use crate::network::{Ask, Endpoint, Payload};
use crate::profile::Profile;
use crate::rng::Rng;
use crate::server::{Out, SimServer};

/// How many of its own messages the liar keeps for replaying.
const REMEMBERED: usize = 32;

/// What the liar does to a beta's RESULT of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResultLie {
    Honest,
    Forge,
    Fail,
}

/// The dishonest server's liar. See the module documentation.
pub struct Liar {
    pub id: ServerId,
    rng: Rng,
    /// Its own messages, for replaying: (slot, message).
    sent: VecDeque<(Slot, PeerMessage<VerifiedTx>)>,
    results: BTreeMap<Slot, ResultLie>,
    equivocating: BTreeMap<Slot, bool>,
    /// Lies told so far.
    pub lies: u64,
}

impl Liar {
    pub fn new(id: ServerId, rng: Rng) -> Liar {
        Liar {
            id,
            rng,
            sent: VecDeque::new(),
            results: BTreeMap::new(),
            equivocating: BTreeMap::new(),
            lies: 0,
        }
    }

    /// Rewrites what the dishonest server sends.
    pub fn filter(
        &mut self,
        server: &SimServer,
        outs: Vec<Out>,
        servers: usize,
        p: &Profile,
    ) -> Vec<Out> {
        let mut rewritten = Vec::with_capacity(outs.len());
        for out in outs {
            match out {
                Out::Send { to, payload } => {
                    self.send(server, to, payload, servers, p, &mut rewritten)
                }
                other => rewritten.push(other),
            }
        }
        rewritten
    }

    fn send(
        &mut self,
        server: &SimServer,
        to: Endpoint,
        payload: Payload,
        servers: usize,
        p: &Profile,
        outs: &mut Vec<Out>,
    ) {
        let payload = match payload {
            Payload::Ask(Ask::Peer { slot, message }) => {
                let lies = self.peer(server, slot, message, servers, p);
                for message in lies {
                    self.remember(slot, &message);
                    let ask = Ask::Peer { slot, message };
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
        if matches!(
            message,
            PeerMessage::Register(_) | PeerMessage::Heart(_) | PeerMessage::Forward { .. }
        ) {
            return;
        }
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((slot, message.clone()));
    }

    /// One peer message to one server, as the liar would have it.
    fn peer(
        &mut self,
        server: &SimServer,
        slot: Slot,
        message: PeerMessage<VerifiedTx>,
        servers: usize,
        p: &Profile,
    ) -> Vec<PeerMessage<VerifiedTx>> {
        match message {
            PeerMessage::Result(decision) => {
                let rng = &mut self.rng;
                let lie = *self.results.entry(slot).or_insert_with(|| {
                    if rng.chance(p.lie_forge_result) {
                        ResultLie::Forge
                    } else if rng.chance(p.lie_fail_result) {
                        ResultLie::Fail
                    } else {
                        ResultLie::Honest
                    }
                });
                match lie {
                    ResultLie::Honest => vec![PeerMessage::Result(decision)],
                    ResultLie::Fail => {
                        self.lies += 1;
                        vec![PeerMessage::Result(Decision {
                            consensus: None,
                            agreeing: 1,
                            voters: servers as u32,
                        })]
                    }
                    ResultLie::Forge => {
                        self.lies += 1;
                        let (hash, packed) = minted(server);
                        vec![
                            PeerMessage::Result(Decision {
                                consensus: Some(hash),
                                agreeing: servers as u32,
                                voters: servers as u32,
                            }),
                            PeerMessage::Push { packed },
                        ]
                    }
                }
            }
            PeerMessage::Round { hash, transactions } => {
                let rng = &mut self.rng;
                let split = *self
                    .equivocating
                    .entry(slot)
                    .or_insert_with(|| rng.chance(p.lie_equivocate));
                if !split || transactions.is_empty() {
                    return vec![PeerMessage::Round { hash, transactions }];
                }
                self.lies += 1;
                let kept = transactions
                    .into_iter()
                    .filter(|_| self.rng.chance(0.5))
                    .collect();
                vec![PeerMessage::Round {
                    hash,
                    transactions: kept,
                }]
            }
            PeerMessage::Vote { .. } if self.rng.chance(p.lie_vote) => {
                self.lies += 1;
                vec![PeerMessage::Vote {
                    hash: Hash(self.rng.bytes32()),
                }]
            }
            other => vec![other],
        }
    }

    /// An answer to another server's request, as the liar would have it;
    /// none to withhold it.
    fn answer(&mut self, response: Response, p: &Profile) -> Option<Response> {
        match response {
            Response::Sign { slot, message } => {
                let lie = matches!(message, PeerMessage::Register(_) | PeerMessage::Heart(_))
                    && self.rng.chance(p.lie_status);
                let message = match message {
                    PeerMessage::Register(status) if lie => {
                        PeerMessage::Register(self.inflate(status))
                    }
                    PeerMessage::Heart(status) if lie => PeerMessage::Heart(self.inflate(status)),
                    other => other,
                };
                Some(Response::Sign { slot, message })
            }
            Response::Reply(Reply::Database { .. } | Reply::Block(_))
                if self.rng.chance(p.lie_withhold) =>
            {
                self.lies += 1;
                None
            }
            Response::Reply(Reply::Block(bytes)) if self.rng.chance(p.lie_blocks) => {
                self.lies += 1;
                Some(Response::Reply(Reply::Block(self.forged_block(&bytes))))
            }
            other => Some(other),
        }
    }

    /// A status claiming 1000 blocks more than it has.
    fn inflate(&mut self, mut status: Status) -> Status {
        self.lies += 1;
        status.height += 1_000;
        status.block_hash = Hash(self.rng.bytes32());
        status
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
        self.lies += 1;
        Some((to, slot, message))
    }
}

/// The liar's committed database with a million minted to the first
/// account, packed, with its hash.
fn minted(server: &SimServer) -> (Hash, Vec<u8>) {
    let mut accounts: Vec<(PublicKey, Amount)> = match server.node() {
        Some(node) => {
            let mut balances = Balances::clone(&node.edge.core().committed().snapshot);
            balances.accounts().collect()
        }
        None => Vec::new(),
    };
    if let Some(first) = accounts.first_mut() {
        first.1 = first.1.saturating_add(1_000_000);
    }
    let mut balances = Balances::from_accounts(&accounts).unwrap_or_default();
    let hash = balances.hash();
    (hash, balances.pack().to_vec())
}

//! The dishonest server: real code, with a liar between it and the network.
//!
//! The dishonest server runs the same edge and machine as the others; what
//! it sends passes through a [`Liar`] that, at the profile's rates, changes
//! it. It holds its own real key and no other, so every lie goes out under
//! its own name (the network sets the sender): it can say anything a
//! server can sign, and nothing another server would have to sign.
//!
//! - **forge-result**: as alpha, sign its ROUND(s) with a result that mints
//!   a million to an account, and send a commit certificate for it made of
//!   its own precommit alone;
//! - **fail-result**: as alpha, withhold its ROUND(s) from everyone;
//! - **equivocate**: as alpha, send some servers a second, valid ROUND(s)
//!   of its own signing (no payments, on the same base);
//! - **vote**: send a prevote whose signature names a made-up header;
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
use rota_peer::keys::Keypair;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::{
    Certificate, Certified, Header, Kind, SignedHeader, Verified, Vote,
};
use rota_peer::wire::{PeerMessage, Reply, ServerList, Status};
use rota_peer::{Amount, Hash, PublicKey, ServerId, Slot};

use crate::network::{Ask, Endpoint, Payload};
use crate::profile::Profile;
use crate::rng::Rng;
use crate::server::{Out, SimServer};

/// How many of its own messages the liar keeps for replaying.
const REMEMBERED: usize = 32;

/// What the liar does to its own ROUND of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RoundLie {
    Honest,
    Forge,
    Withhold,
}

/// The dishonest server's liar. See the module documentation.
pub struct Liar {
    pub id: ServerId,
    key: Keypair,
    chain: String,
    servers: ServerList,
    rng: Rng,
    /// Its own messages, for replaying: (slot, message).
    sent: VecDeque<(Slot, PeerMessage<VerifiedTx>)>,
    rounds: BTreeMap<Slot, RoundLie>,
    equivocating: BTreeMap<Slot, bool>,
    /// Lies told so far.
    pub lies: u64,
}

impl Liar {
    pub fn new(id: ServerId, key: Keypair, chain: &str, servers: ServerList, rng: Rng) -> Liar {
        Liar {
            id,
            key,
            chain: chain.into(),
            servers,
            rng,
            sent: VecDeque::new(),
            rounds: BTreeMap::new(),
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
                let lies = self.peer(server, slot, *message, servers, p);
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
        _servers: usize,
        p: &Profile,
    ) -> Vec<PeerMessage<VerifiedTx>> {
        match message {
            PeerMessage::Round {
                header,
                transactions,
            } if header.slot() == slot => self.round(server, header, transactions, p),
            PeerMessage::Prevote(mut prevote) if self.rng.chance(p.lie_vote) => {
                self.lies += 1;
                prevote.vote = Verified::<Vote>::sign_vote(
                    &self.key,
                    &self.chain,
                    self.id,
                    Kind::Prevote,
                    prevote.vote.slot,
                    Hash(self.rng.bytes32()),
                )
                .into_inner();
                vec![PeerMessage::Prevote(prevote)]
            }
            other => vec![other],
        }
    }

    /// Its own ROUND(s), to one server: as it is, forged, withheld, or a
    /// second one of its signing.
    fn round(
        &mut self,
        server: &SimServer,
        header: SignedHeader,
        transactions: Vec<VerifiedTx>,
        p: &Profile,
    ) -> Vec<PeerMessage<VerifiedTx>> {
        let slot = header.slot();
        let rng = &mut self.rng;
        let lie = *self.rounds.entry(slot).or_insert_with(|| {
            if rng.chance(p.lie_forge_result) {
                RoundLie::Forge
            } else if rng.chance(p.lie_fail_result) {
                RoundLie::Withhold
            } else {
                RoundLie::Honest
            }
        });
        let split = *self
            .equivocating
            .entry(slot)
            .or_insert_with(|| rng.chance(p.lie_equivocate));
        match lie {
            RoundLie::Withhold => {
                self.lies += 1;
                Vec::new()
            }
            RoundLie::Forge => {
                self.lies += 1;
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
            RoundLie::Honest if split && self.rng.chance(0.5) => {
                self.lies += 1;
                let empty = self.resign(&header, |h| {
                    h.payments = merkle_root(&[]);
                    h.result = h.base.balance;
                });
                vec![PeerMessage::Round {
                    header: empty,
                    transactions: Vec::new(),
                }]
            }
            RoundLie::Honest => vec![PeerMessage::Round {
                header,
                transactions,
            }],
        }
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
        let vote = Verified::<Vote>::sign_vote(
            &self.key,
            &self.chain,
            self.id,
            Kind::Precommit,
            header.slot(),
            header.digest(),
        )
        .into_inner();
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
                let lie = matches!(*message, PeerMessage::Register(_) | PeerMessage::Heart(_))
                    && self.rng.chance(p.lie_status);
                let message = match *message {
                    PeerMessage::Register(status) if lie => {
                        PeerMessage::Register(self.inflate(status))
                    }
                    PeerMessage::Heart(status) if lie => PeerMessage::Heart(self.inflate(status)),
                    other => other,
                };
                Some(Response::Sign {
                    slot,
                    message: Box::new(message),
                })
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

/// The balance hash of the liar's committed database with a million
/// minted to its first account.
fn minted(server: &SimServer) -> Hash {
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
    Balances::from_accounts(&accounts)
        .unwrap_or_default()
        .hash()
}

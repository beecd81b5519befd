//! One dishonest server against real ones. The test holds the key of
//! server 3 of a three-server network whose server 3 never runs: it speaks
//! in that server's name, answers the heartbeats sent to it, and captures
//! what the honest servers 1 and 2 send it. It sends them forged commit
//! certificates, a round that mints money, two different headers for its
//! own slot, and replays of their own rounds and votes, before and after
//! one of them restarts. Then the balances, the supply and the blocks are
//! those the honest servers decided, they keep committing, neither stops,
//! their `D` replies carry a commit certificate that checks, and each
//! forgery got the refusal docs/PROTOCOL.md quotes (an `E` text), or, for
//! what is refused only when its round is voted on (a round that mints, a
//! second header), the log line that says so.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::Net;
use rota_peer::balances::Balances;
use rota_peer::block::merkle_root;
use rota_peer::keys::Keypair;
use rota_peer::schedule::{Schedule, unix_now_ms};
use rota_peer::transaction::{Transaction, Verifier};
use rota_peer::wire::consensus::{
    Base, Certificate, Certified, Header, Kind, Precommit, Prevote, SignedHeader, Verified,
};
use rota_peer::wire::{Envelope, PeerCommand, PeerMessage, Reply, Request, ServerList};
use rota_peer::{Hash, PublicKey, ServerId, Slot};

const SLOT_MS: u64 = 2_000;
/// The dishonest server: the test holds its key.
const LIAR: usize = 3;
/// The most messages the liar keeps of what it hears.
const MAX_HEARD: usize = 10_000;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A message an honest server sent the liar, as it came.
#[derive(Clone, Debug)]
struct Heard {
    from: ServerId,
    /// The request frames, `[chain][command][signer][slot][payload][signature]`.
    frames: Vec<Vec<u8>>,
    message: PeerMessage,
}

impl Heard {
    /// The slot of the round this message is about.
    fn round_slot(&self) -> Option<Slot> {
        match &self.message {
            PeerMessage::Round { header, .. } => Some(header.slot()),
            PeerMessage::Prevote(p) => Some(p.vote.slot),
            PeerMessage::Precommit(p) => Some(p.vote.slot),
            PeerMessage::Certified(c) => Some(c.header.slot()),
            PeerMessage::Evidence(e) => Some(e.first.slot()),
            PeerMessage::Register(_)
            | PeerMessage::Heart(_)
            | PeerMessage::Mine(_)
            | PeerMessage::Want { .. }
            | PeerMessage::Forward { .. } => None,
        }
    }
}

/// Server 3, run by the test: its key, and a thread on its peering
/// address that answers heartbeats and keeps every round protocol message
/// the honest servers send it.
struct Liar {
    key: Keypair,
    chain: String,
    servers: ServerList,
    schedule: Schedule,
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Liar {
    /// Binds server 3's peering address (before the honest servers start,
    /// so that they find it at once) and starts listening there.
    fn new(net: &Net) -> Liar {
        let key = net.server_key(LIAR);
        let chain = net.client.chain.clone();
        let servers = net.client.server_list();
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::ROUTER).expect("socket");
        socket.set_linger(0).expect("linger");
        socket
            .bind(&rota::config::endpoint(&net.peering_address(LIAR)))
            .expect("bind server 3's peering address");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            key: key.clone(),
            chain: chain.clone(),
            servers: servers.clone(),
            slot_ms: net.slot_ms(),
            heard: heard.clone(),
            stop: stop.clone(),
        };
        let thread = thread::spawn(move || listener.run(ctx, socket));
        Liar {
            key,
            chain,
            schedule: net.client.schedule(),
            servers,
            heard,
            stop,
            thread: Some(thread),
        }
    }

    fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// Signs `message` for `slot` in server 3's name and sends it to
    /// server `to`; returns the reply.
    fn send(&self, net: &Net, to: usize, slot: Slot, message: PeerMessage) -> Reply {
        let envelope = Envelope::sign(&self.key, &self.chain, slot, &message);
        net.peer_reply(to, &Request::Peer(envelope))
            .unwrap_or_else(|| panic!("server {to} did not answer\n{}", net.logs()))
    }

    /// Sends `message` to `to` and checks it is refused with `text`.
    fn refused(&self, net: &Net, to: usize, slot: Slot, message: PeerMessage, text: &str) {
        let command = message.command().name();
        let reply = self.send(net, to, slot, message);
        assert_eq!(reply, Reply::Error(text.into()), "{command} to server {to}");
    }

    /// Sends `message` to `to` and checks it is taken (acknowledged).
    fn taken(&self, net: &Net, to: usize, slot: Slot, message: PeerMessage) {
        let command = message.command();
        let reply = self.send(net, to, slot, message);
        assert_eq!(
            reply,
            Reply::Ack(command),
            "{} to server {to}",
            command.name()
        );
    }

    /// Waits for a slot of server 3's early enough to act in, with the
    /// round before it committed on both honest servers; returns the slot
    /// and the committed state it builds on, from server 1's `D`.
    fn own_slot(&self, net: &Net) -> (Slot, Verified<Certified>, Balances) {
        let mut found = None;
        net.wait_for("a slot of server 3's, early", secs(20), || {
            let now = unix_now_ms();
            let slot = self.schedule.slot_at(now);
            if self.schedule.alpha(slot) != ServerId(LIAR as u32)
                || now > self.schedule.start(slot) + SLOT_MS * 6 / 10
                || [1, 2]
                    .iter()
                    .any(|i| net.committed_slot(*i) != Some(slot - 1))
            {
                return false;
            }
            let (certified, balances) = self.committed(net, 1);
            found = (certified.header.slot() == slot - 1).then_some((slot, certified, balances));
            found.is_some()
        });
        found.expect("found")
    }

    /// Server `i`'s committed state from its `D` reply, with the commit
    /// certificate that vouches for it, checked.
    fn committed(&self, net: &Net, i: usize) -> (Verified<Certified>, Balances) {
        let Some(Reply::Database {
            hash,
            slot,
            certified,
            packed,
            ..
        }) = net.peer_reply(i, &Request::Database)
        else {
            panic!("no D reply from server {i}");
        };
        let certified = Certified::decode(&certified, self.servers.len())
            .and_then(|c| c.verify(&self.chain, &self.servers))
            .unwrap_or_else(|e| {
                panic!("the D reply of server {i} carries no valid certificate: {e}")
            });
        assert_eq!(
            certified.certificate.kind,
            Kind::Precommit,
            "a commit certificate"
        );
        assert_eq!(certified.header.slot(), slot, "the committed slot's");
        assert_eq!(
            certified.header.header.result, hash,
            "vouching for the hash"
        );
        let mut balances = Balances::from_packed(&packed).expect("a packed database");
        assert_eq!(balances.hash(), hash, "the database's hash");
        (certified, balances)
    }

    /// A header of server 3's slot `slot` on `base`, for `payments`,
    /// claiming `result`.
    fn header(
        &self,
        slot: Slot,
        base: &Verified<Certified>,
        payments: &[Transaction],
        result: Hash,
    ) -> SignedHeader {
        let ids: Vec<_> = payments.iter().map(Transaction::id).collect();
        let header = Header {
            slot,
            base: Base {
                digest: base.header.digest(),
                slot: base.header.slot(),
                balance: base.header.header.result,
                chain: Default::default(),
                sealed: 0,
            },
            payments: merkle_root(&ids),
            result,
            seal: None,
        };
        Verified::<SignedHeader>::sign_header(
            &self.key,
            &self.chain,
            header,
            Some(base.certificate()),
        )
        .into_inner()
    }

    /// The balance hash an honest server gets applying `payments` on
    /// `balances` in `slot`, and the state.
    fn apply(&self, balances: &Balances, slot: Slot, payments: &[Transaction]) -> (Hash, Balances) {
        let mut verifier = Verifier::new(&self.chain);
        let verified: Vec<_> = payments
            .iter()
            .map(|tx| verifier.verify(*tx).expect("a signed payment"))
            .collect();
        let mut balances = balances.clone();
        rota::ledger::core::apply_round(&mut balances, &self.schedule, slot, &verified);
        (balances.hash(), balances)
    }

    /// Server 3's signature on (kind, slot, digest).
    fn vote_signature(&self, kind: Kind, slot: Slot, digest: Hash) -> [u8; 64] {
        Verified::sign_vote(
            &self.key,
            &self.chain,
            ServerId(LIAR as u32),
            kind,
            slot,
            digest,
        )
        .signature
    }

    fn prevote(&self, header: &SignedHeader) -> PeerMessage {
        let vote = Verified::sign_vote(
            &self.key,
            &self.chain,
            ServerId(LIAR as u32),
            Kind::Prevote,
            header.slot(),
            header.digest(),
        );
        PeerMessage::Prevote(Prevote {
            vote: vote.into_inner(),
            header: header.clone(),
        })
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The liar's listening thread.
struct Listener {
    key: Keypair,
    chain: String,
    servers: ServerList,
    slot_ms: u64,
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Owns the ROUTER on server 3's peering address until stopped:
    /// answers `register` and `heart` with a signed status (the asker's
    /// own, echoed), and keeps the round protocol's messages.
    fn run(self, _ctx: zmq::Context, socket: zmq::Socket) {
        while !self.stop.load(Ordering::Relaxed) {
            if socket.poll(zmq::POLLIN, 50).unwrap_or(0) == 0 {
                continue;
            }
            let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) else {
                continue;
            };
            let Some((identity, request)) = frames.split_first() else {
                continue;
            };
            let parts: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
            let Ok(Request::Peer(envelope)) = Request::decode(&self.chain, &parts) else {
                continue;
            };
            let Ok(from) = self.servers.verify(&self.chain, &envelope) else {
                continue;
            };
            let Ok(message) = envelope.message(self.servers.len()) else {
                continue;
            };
            let answer = match message {
                PeerMessage::Register(status) => PeerMessage::Register(status),
                PeerMessage::Heart(status) => PeerMessage::Heart(status),
                PeerMessage::Want { .. } | PeerMessage::Forward { .. } => continue,
                message => {
                    let mut heard = self.heard.lock().unwrap();
                    if heard.len() < MAX_HEARD {
                        heard.push(Heard {
                            from,
                            frames: request.to_vec(),
                            message,
                        });
                    }
                    continue;
                }
            };
            let slot = unix_now_ms() / self.slot_ms;
            let reply = Reply::Signed(Envelope::sign(&self.key, &self.chain, slot, &answer));
            let mut out = vec![identity.clone()];
            out.extend(reply.encode());
            let _ = socket.send_multipart(out, zmq::DONTWAIT);
        }
    }
}

/// A network whose server 3 is the test: servers 1 and 2 running and in
/// sync, the liar listening.
fn honest_two() -> (Net, Liar) {
    let mut net = Net::init(3, SLOT_MS);
    let liar = Liar::new(&net);
    net.start(1);
    net.start(2);
    net.wait_in_sync(&[1, 2], secs(20));
    (net, liar)
}

/// What every attack must leave: both honest servers running and
/// committing, holding the same database and blocks, the genesis supply,
/// and `D` replies whose certificate checks.
fn honest_state_holds(net: &mut Net, liar: &Liar) {
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2], slot + 1, secs(20));
    assert!(net.running(1) && net.running(2), "{}", net.logs());
    net.wait_agree(&[1, 2], secs(15));
    net.assert_same_blocks(&[1, 2]);
    let supply = net.genesis_supply();
    for i in [1, 2] {
        assert_eq!(net.typed_info(i).map(|info| info.supply), Some(supply));
        let (_, balances) = liar.committed(net, i);
        assert_eq!(balances.supply(), supply, "the sum of the balances");
    }
}

fn payment(net: &Net, payer: usize, to: PublicKey, amount: u32) -> Transaction {
    Transaction::sign(
        &net.client.chain,
        &net.payer(payer),
        to,
        amount,
        unix_now_ms(),
    )
}

fn account(net: &Net, i: usize, key: &PublicKey) -> Option<u32> {
    net.balance(i, key)
}

#[test]
fn a_dishonest_server_neither_forges_a_decision_nor_mints_nor_splits_its_slot() {
    let (mut net, liar) = honest_two();
    let me = ServerId(LIAR as u32);

    // A round of its own slot that mints 1,000,000,000, sent to both with
    // its prevote, and the forged decisions on it.
    let (slot, base, balances) = liar.own_slot(&net);
    let minter = Keypair::from_seed(&[90; 32]).public();
    let paid = payment(&net, 1, minter, 5);
    let (_, honest) = liar.apply(&balances, slot, &[paid]);
    let mut accounts: Vec<(PublicKey, u32)> = honest.clone().accounts().collect();
    for (key, balance) in &mut accounts {
        if *key == minter {
            *balance += 1_000_000_000;
        }
    }
    let minted = Balances::from_accounts(&accounts).unwrap().hash();
    let header = liar.header(slot, &base, &[paid], minted);
    let digest = header.digest();
    for i in [1, 2] {
        let round = PeerMessage::Round {
            header: header.clone(),
            transactions: vec![paid],
        };
        liar.taken(&net, i, slot, round);
        liar.taken(&net, i, slot, liar.prevote(&header));
    }
    let signature = liar.vote_signature(Kind::Precommit, slot, digest);
    let forged = |signatures: Vec<(ServerId, [u8; 64])>| {
        PeerMessage::Certified(Certified {
            header: header.clone(),
            certificate: Certificate {
                kind: Kind::Precommit,
                slot,
                digest,
                signatures,
            },
        })
    };
    let what = format!("certified: the precommit certificate of slot {slot}");
    for i in [1, 2] {
        liar.refused(
            &net,
            i,
            slot,
            forged(vec![(me, signature)]),
            &format!("{what} holds 1 signatures; 2 to 3 are needed"),
        );
        liar.refused(
            &net,
            i,
            slot,
            forged(vec![(me, signature), (me, signature)]),
            &format!(
                "{what}: signers must be distinct and in increasing order, got server 3 then 3"
            ),
        );
        liar.refused(
            &net,
            i,
            slot,
            forged(vec![(me, signature), (ServerId(4), signature)]),
            &format!("{what}: server 4 is not in the conf (3 servers)"),
        );
        liar.refused(
            &net,
            i,
            slot,
            forged(vec![(ServerId(1), signature), (me, signature)]),
            &format!("{what}: a signature does not verify"),
        );
        // A precommit resting on a prevote certificate of its own vote.
        let precommit = PeerMessage::Precommit(Precommit {
            vote: Verified::sign_vote(&liar.key, &liar.chain, me, Kind::Precommit, slot, digest)
                .into_inner(),
            header: header.clone(),
            certificate: Certificate {
                kind: Kind::Prevote,
                slot,
                digest,
                signatures: vec![(me, liar.vote_signature(Kind::Prevote, slot, digest))],
            },
        });
        liar.refused(
            &net,
            i,
            slot,
            precommit,
            &format!(
                "precommit: the prevote certificate of slot {slot} holds 1 signatures; 2 to 3 \
                 are needed"
            ),
        );
    }
    net.wait_committed_after(&[1, 2], slot, secs(15));
    let not_prevoted = format!(
        "slot {slot}: not prevoting {}: its payments do not all apply on its base, or do not give \
         its header's result (slot {slot})",
        digest.short()
    );
    for i in [1, 2] {
        assert!(
            net.log(i).contains(&not_prevoted),
            "server {i}\n{}",
            net.logs()
        );
        assert_eq!(account(&net, i, &minter), None, "server {i} minted");
    }
    let votes = |slot: Slot, command: PeerCommand| {
        liar.heard()
            .iter()
            .filter(|h| h.round_slot() == Some(slot) && h.message.command() == command)
            .count()
    };
    assert_eq!(
        votes(slot, PeerCommand::Prevote),
        0,
        "no honest prevote on it"
    );

    // Two valid headers for its next slot, one to each honest server, with
    // its prevote on each.
    let (slot, base, balances) = liar.own_slot(&net);
    let (x, y) = (
        Keypair::from_seed(&[91; 32]).public(),
        Keypair::from_seed(&[92; 32]).public(),
    );
    let (a, b) = (payment(&net, 1, x, 11), payment(&net, 2, y, 13));
    let first = liar.header(slot, &base, &[a], liar.apply(&balances, slot, &[a]).0);
    let second = liar.header(slot, &base, &[b], liar.apply(&balances, slot, &[b]).0);
    for (i, header, paid) in [(1, &first, a), (2, &second, b)] {
        let round = PeerMessage::Round {
            header: header.clone(),
            transactions: vec![paid],
        };
        liar.taken(&net, i, slot, round);
        liar.taken(&net, i, slot, liar.prevote(header));
    }
    net.wait_committed_after(&[1, 2], slot + 1, secs(15));
    let evidence = format!("slot {slot}: its alpha, server 3, signed two headers");
    for i in [1, 2] {
        assert!(net.log(i).contains(&evidence), "server {i}\n{}", net.logs());
    }
    assert_eq!(
        votes(slot, PeerCommand::Precommit),
        0,
        "no honest precommit"
    );
    honest_state_holds(&mut net, &liar);
    let (to_x, to_y) = (account(&net, 1, &x), account(&net, 1, &y));
    eprintln!("of the two headers of slot {slot}, committed: first {to_x:?}, second {to_y:?}");
    assert!(
        matches!(
            (to_x, to_y),
            (Some(11), None) | (None, Some(13)) | (None, None)
        ),
        "at most one of the two rounds is committed: {to_x:?} {to_y:?}"
    );
}

/// Replays `heard` to server `to`, as it came and relayed in server 3's
/// envelope, and checks both are refused as decided.
fn replay_refused(net: &Net, liar: &Liar, to: usize, heard: &Heard) {
    let slot = heard.round_slot().expect("a round protocol message");
    let decided = format!("slot {slot} is already decided here (committed through slot ");
    let command = heard.message.command().name();
    let what = format!(
        "{command} of slot {slot} from server {} to server {to}",
        heard.from
    );
    match net.peer_frames(to, &heard.frames) {
        Some(Reply::Error(text)) => assert!(text.starts_with(&decided), "{what}: {text}"),
        other => panic!("{what}: {other:?}\n{}", net.logs()),
    }
    match liar.send(net, to, slot, heard.message.clone()) {
        Reply::Error(text) => assert!(text.starts_with(&decided), "{what}, relayed: {text}"),
        other => panic!("{what}, relayed: {other:?}"),
    }
}

#[test]
fn replayed_rounds_votes_and_certificates_change_nothing_even_after_a_restart() {
    let (mut net, liar) = honest_two();
    // A payment in a round of server 1's, early in its window.
    net.wait_for("a slot of server 1's, early", secs(20), || {
        let now = unix_now_ms();
        let schedule = net.client.schedule();
        schedule.alpha(schedule.slot_at(now)) == ServerId(1)
            && now < schedule.start(schedule.slot_at(now)) + SLOT_MS / 4
    });
    let payee = Keypair::from_seed(&[93; 32]).public();
    let paid = net.pay(Some(1), &payee, 7);
    assert_eq!(paid["status"], "committed", "{paid}");
    let round = paid["decided_by"].as_u64().expect("a slot");

    // What servers 1 and 2 sent server 3 about that round, and a relayed
    // commit certificate, once it is decided everywhere.
    let mut captured = Vec::new();
    net.wait_for("the messages of the round heard", secs(15), || {
        let heard = liar.heard();
        let of = |from: usize, command: PeerCommand| {
            heard
                .iter()
                .find(|h| {
                    h.from == ServerId(from as u32)
                        && h.round_slot() == Some(round)
                        && h.message.command() == command
                })
                .cloned()
        };
        let wanted = [
            of(1, PeerCommand::Round),
            of(1, PeerCommand::Prevote),
            of(2, PeerCommand::Prevote),
            of(1, PeerCommand::Precommit),
            of(2, PeerCommand::Precommit),
        ];
        let relayed = heard.iter().find(|h| {
            h.message.command() == PeerCommand::Certified
                && h.round_slot().is_some_and(|s| s >= round)
        });
        captured = wanted
            .into_iter()
            .chain([relayed.cloned()])
            .flatten()
            .collect();
        captured.len() == 6
    });
    let PeerMessage::Round { transactions, .. } = &captured[0].message else {
        panic!("a round");
    };
    assert_eq!(transactions.len(), 1, "the round carries the payment");
    net.wait_committed_after(&[1, 2], round + 1, secs(15));

    for heard in &captured {
        for to in [1, 2] {
            replay_refused(&net, &liar, to, heard);
        }
    }
    // Server 2 restarts (server 1 and server 3, alive, are a majority) and
    // is sent everything again.
    assert_eq!(net.stop(2).code(), Some(0));
    net.start(2);
    net.wait_in_sync(&[2], secs(20));
    for heard in &captured {
        replay_refused(&net, &liar, 2, heard);
    }
    honest_state_holds(&mut net, &liar);
    for i in [1, 2] {
        assert_eq!(account(&net, i, &payee), Some(7), "server {i}, paid once");
    }
}

//! The worked examples of docs/PROTOCOL.md §9.4, §9.6, §10.2 and §11.8 are
//! what rota makes and sends.
//!
//! Three real ledger cores (the node's own code, without its sockets and
//! disk) run one round on a fixed clock with fixed keys: the payment of
//! PROTOCOL.md §5.2 in slot 28,333,333, on the genesis of §8. Every message
//! goes from one core to another through its bytes and the listener's own
//! checks, as between real servers. The test then reads every byte block
//! of PROTOCOL.md marked `<!-- bytes: NAME -->` and checks that it is the
//! bytes the cores sent (so a client author can test a parser against the
//! document alone), that each line's offset counts the bytes before it,
//! and that the bytes decode and their signatures verify. The sealed
//! header of §9.6 is the block the round makes, on a chain of difficulty
//! 12, with the first nonce rota's own search finds for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rota::ledger::consensus::{Config, Timing};
use rota::ledger::core::{Action, Committed, CommittedRound, Core, Persist, Target};
use rota::ledger::edge::build_block;
use rota_listener::{PeerInput, check_peer};
use rota_peer::balances::Balances;
use rota_peer::block::{Block, BlockHeader};
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::seal::{search, zero_bits};
use rota_peer::transaction::{Transaction, VerifiedTx, Verifier};
use rota_peer::wire::consensus::{
    Certified, Kind, Precommit, Prevote, SignedHeader, VOTE_LEN, statement,
};
use rota_peer::wire::{Envelope, PeerCommand, PeerMessage, ServerList};
use rota_peer::{Hash, Millis, ServerId, Slot};

const CHAIN: &str = "local";
const N: usize = 3;
/// The slot of the §5.2 payment, with the default 60 s slots.
const SLOT: Slot = 28_333_333;
/// The §5.2 payment's timestamp, and the moment it is sent.
const PAID_AT: Millis = 1_700_000_000_123;
/// The difficulty and seal time of the §9.6 example: a second after the
/// close of the round that makes block 1.
const SEAL_DIFFICULTY: u32 = 12;
const SEAL_TIME: Millis = 1_700_000_026_000;

fn schedule() -> Schedule {
    Schedule {
        slot_ms: 60_000,
        blackout_ms: 15_000,
        tolerance_ms: 5_000,
        servers: N,
        difficulty: 0,
    }
}

/// Server `i`'s key: the seed `1i` repeated (0x11, 0x12, 0x13).
fn server_key(i: usize) -> Keypair {
    Keypair::from_seed(&[0x10 + i as u8; 32])
}

fn servers() -> ServerList {
    ServerList::new((1..=N).map(|i| server_key(i).public()).collect())
}

/// The §8 genesis: the §5.2 payer (seed 01) holds 1,000.
fn genesis() -> Committed {
    let payer = Keypair::from_seed(&[1; 32]).public();
    let mut balances = Balances::from_accounts(&[(payer, 1_000)]).expect("one account");
    Committed {
        slot: 0,
        hash: balances.hash(),
        snapshot: Arc::new(balances),
    }
}

/// The §5.2 payment: 250 from seed 01 to seed 02.
fn payment() -> VerifiedTx {
    let payer = Keypair::from_seed(&[1; 32]);
    let payee = Keypair::from_seed(&[2; 32]).public();
    let tx = Transaction::sign(CHAIN, &payer, payee, 250, PAID_AT);
    Verifier::new(CHAIN).verify(tx).expect("a valid payment")
}

/// What one server sent, once for all its receivers.
struct Sent {
    from: ServerId,
    slot: Slot,
    message: PeerMessage<VerifiedTx>,
}

/// Three cores on one clock; messages are delivered at once, in order.
struct Round {
    cores: Vec<Core>,
    now: Millis,
    queue: VecDeque<(ServerId, ServerId, Slot, PeerMessage<VerifiedTx>)>,
    sent: Vec<Sent>,
    /// The rounds server 1 committed, oldest first.
    commits: Vec<CommittedRound>,
}

impl Round {
    fn new() -> Round {
        let cores = (1..=N)
            .map(|i| {
                let config = Config {
                    chain: CHAIN.into(),
                    me: ServerId(i as u32),
                    keypair: server_key(i),
                    servers: servers(),
                    timing: Timing::new(schedule()),
                };
                let mut core = Core::new(config, genesis(), None, Vec::new()).expect("a core");
                core.set_synced(true, PAID_AT);
                core
            })
            .collect();
        Round {
            cores,
            now: PAID_AT,
            queue: VecDeque::new(),
            sent: Vec::new(),
            commits: Vec::new(),
        }
    }

    fn perform(&mut self, i: usize, actions: Vec<Action>) {
        let from = ServerId(i as u32);
        for action in actions {
            if let Action::Persist(Persist::Commit(commit)) = &action
                && i == 1
            {
                self.commits.extend(commit.rounds.iter().cloned());
            }
            if let Action::Send { to, slot, message } = action {
                let targets: Vec<ServerId> = match to {
                    Target::All => (1..=N as u32)
                        .map(ServerId)
                        .filter(|j| *j != from)
                        .collect(),
                    Target::Only(ids) => ids,
                };
                for to in targets {
                    self.queue.push_back((from, to, slot, message.clone()));
                }
                self.sent.push(Sent {
                    from,
                    slot,
                    message,
                });
            }
        }
    }

    /// Delivers every queued message through its bytes and the door's
    /// checks, as the peering socket would.
    fn deliver(&mut self) {
        while let Some((from, to, slot, message)) = self.queue.pop_front() {
            let decoded = PeerMessage::decode(message.command(), &message.payload(), N)
                .expect("a message rota sent decodes");
            let servers = servers();
            // Parameters matter to `register` and `heart`, not sent here.
            let params = rota_peer::wire::Params::default();
            let door = rota_listener::Door {
                chain: CHAIN,
                servers: &servers,
                params: &params,
            };
            let input = check_peer(&door, from, &mut Verifier::new(CHAIN), slot, decoded)
                .expect("a message rota sent passes the door");
            let PeerInput::Consensus(consensus) = input else {
                continue;
            };
            let core = &mut self.cores[to.0 as usize - 1];
            if let Ok(actions) = core.on_consensus(from, *consensus, self.now) {
                self.perform(to.0 as usize, actions);
            }
        }
    }

    /// Ticks every core at each deadline up to `until`.
    fn run_until(&mut self, until: Millis) {
        while self.now < until {
            let next = self.cores.iter().map(|c| c.next_deadline(self.now)).min();
            self.now = next.unwrap_or(until).min(until);
            for i in 1..=N {
                let actions = self.cores[i - 1].tick(self.now);
                self.perform(i, actions);
            }
            self.deliver();
        }
    }

    /// The payload of the first `command` server `from` sent for `slot`.
    fn payload(&self, command: PeerCommand, from: u32, slot: Slot) -> Vec<u8> {
        self.sent
            .iter()
            .find(|s| s.message.command() == command && s.from == ServerId(from) && s.slot == slot)
            .unwrap_or_else(|| panic!("server {from} sent no {} for {slot}", command.name()))
            .message
            .payload()
    }
}

/// Runs the example: the payment to server 2, the alpha of the slot, then
/// the clock up to the close of the next slot.
fn run() -> Round {
    let mut round = Round::new();
    let (result, actions) = round.cores[1].submit(payment(), PAID_AT);
    result.expect("the alpha accepts the §5.2 payment");
    round.perform(2, actions);
    let next_close = schedule().close(SLOT + 1);
    round.run_until(next_close + 1);
    round
}

/// The byte blocks of PROTOCOL.md, by name: each is the fenced block after
/// a `<!-- bytes: NAME -->` line. A line with a number in its first six
/// columns is `offset hex field...`, its offset checked against the bytes
/// before it; a line indented further carries on the bytes of the line
/// before it; a line of words (the column titles) adds nothing.
fn documented() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("../docs/PROTOCOL.md");
    let mut blocks = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- bytes: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert!(lines.next().is_some_and(|l| l.starts_with("```")), "{name}");
        let mut bytes = Vec::new();
        for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            let (head, rest) = line.split_at(line.len().min(6));
            let data = match head.trim().parse::<usize>() {
                Ok(offset) => {
                    assert_eq!(offset, bytes.len(), "{name}: the offset of {line:?}");
                    rest.split_whitespace().next()
                }
                Err(_) if head.trim().is_empty() => rest.split_whitespace().next(),
                Err(_) => continue,
            };
            let data = data.unwrap_or_else(|| panic!("{name}: no bytes in {line:?}"));
            bytes.extend(hex::decode(data).unwrap_or_else(|e| panic!("{name}: {line:?}: {e}")));
        }
        blocks.insert(name.to_string(), bytes);
    }
    blocks
}

/// The payload of a `round` carries the header's length in front of it.
fn signed_header_of(round: &[u8]) -> &[u8] {
    let length = u32::from_be_bytes(round[..4].try_into().unwrap()) as usize;
    &round[4..4 + length]
}

#[test]
fn the_documented_round_is_the_bytes_three_servers_send() {
    let round = run();
    let doc = documented();
    let block = |name: &str| {
        doc.get(name)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no block {name}"))
            .clone()
    };
    let list = servers();

    // ROUND(s), whole.
    let sent = round.payload(PeerCommand::Round, 2, SLOT);
    assert_eq!(hex::encode(&sent), hex::encode(block("round")));
    let signed = signed_header_of(&sent).to_vec();
    let header = SignedHeader::decode(&signed, N).unwrap();
    let header = header
        .verify(CHAIN, &list)
        .expect("the alpha's signature checks");
    assert_eq!(header.header.slot, SLOT);
    assert!(header.header.base.is_anchor());
    let digest = header.digest();
    assert_eq!(
        block("header-statement"),
        statement(CHAIN, Kind::Header, SLOT, &digest)
    );

    // PREVOTE: the documented vote, then the ROUND's signed header.
    let prevote = round.payload(PeerCommand::Prevote, 1, SLOT);
    assert_eq!(prevote[..VOTE_LEN], block("prevote-vote"));
    assert_eq!(prevote[VOTE_LEN..], signed);
    let prevote = Prevote::decode(&prevote, N).unwrap();
    prevote
        .verify(CHAIN, &list)
        .expect("server 1's prevote checks");
    assert_eq!(
        (prevote.vote.kind, prevote.vote.signer),
        (Kind::Prevote, ServerId(1))
    );

    // PRECOMMIT: its vote, the header, the prevote certificate.
    let precommit = round.payload(PeerCommand::Precommit, 1, SLOT);
    let certificate_at = VOTE_LEN + signed.len();
    assert_eq!(precommit[..VOTE_LEN], block("precommit-vote"));
    assert_eq!(precommit[VOTE_LEN..certificate_at], signed);
    assert_eq!(precommit[certificate_at..], block("prevote-certificate"));
    let precommit = Precommit::decode(&precommit, N).unwrap();
    precommit
        .verify(CHAIN, &list)
        .expect("server 1's precommit checks");

    // The commit certificate server 1 relays, with its header.
    let certified = round.payload(PeerCommand::Certified, 1, SLOT);
    assert_eq!(certified[..signed.len()], signed);
    assert_eq!(certified[signed.len()..], block("commit-certificate"));
    let certified = Certified::decode(&certified, N).unwrap();
    let certified = certified.verify(CHAIN, &list).expect("the commit checks");
    assert_eq!(certified.certificate.kind, Kind::Precommit);
    assert_eq!(
        certified.certificate.signatures.len(),
        list.majority(),
        "q signatures"
    );

    // The next round builds on it, with the commit certificate as its base's.
    let next = round.payload(PeerCommand::Round, 3, SLOT + 1);
    let next_header = signed_header_of(&next);
    let base_at = block("next-header").len();
    assert_eq!(next_header[..base_at], block("next-header"));
    assert_eq!(next_header[base_at..], block("commit-certificate"));
    assert_eq!(next[4 + next_header.len()..], [0, 0, 0, 0], "no payments");
    let next_header = SignedHeader::decode(next_header, N).unwrap();
    let next_header = next_header.verify(CHAIN, &list).unwrap();
    assert_eq!(next_header.header.base.digest, digest);
}

#[test]
fn the_documented_block_and_envelope_are_the_ones_rota_makes() {
    let round = run();
    let text = include_str!("../docs/PROTOCOL.md");
    // Block 1 of §9.4 is the block the round of §11.8 makes.
    let committed = round.commits.first().expect("server 1 committed");
    let block = build_block(committed).expect("the round has a payment");
    assert_eq!(block.header.number, 1);
    assert_eq!(block.header.timestamp, schedule().start(SLOT));
    let hash = block.header.hash().to_string();
    assert!(text.contains(&hash), "§9.4 shows block hash {hash}");
    // Its bytes, proof included, are §9.4's, and they prove themselves
    // against the conf alone (§9.5).
    let documented_block = &documented()["block"];
    assert_eq!(hex::encode(block.encode()), hex::encode(documented_block));
    let read = Block::decode(documented_block).expect("the documented block reads");
    assert_eq!(read, block);
    read.verify(CHAIN, &servers(), schedule().shape())
        .expect("the documented block proves itself");

    // The `want` of §10.2, signed by server 1.
    let want: PeerMessage = PeerMessage::Want {
        slot: SLOT,
        digest: Hash(
            hex::decode("9f86fad8e70ae4e06ae03414be4dd76a7a46c39bf3fbb1a320bb5d5e8b5bcca5")
                .unwrap()
                .try_into()
                .unwrap(),
        ),
    };
    let envelope = Envelope::sign(&server_key(1), CHAIN, SLOT, &want);
    let signed = Envelope::signed_bytes(CHAIN, PeerCommand::Want, SLOT, &envelope.payload);
    assert_eq!(documented()["want-signed"], signed);
    let signature = hex::encode(envelope.signature);
    for half in [&signature[..64], &signature[64..]] {
        assert!(text.contains(half), "§10.2 shows the signature {signature}");
    }
    assert!(text.contains(&hex::encode(&envelope.payload[..32])));
    assert_eq!(servers().verify(CHAIN, &envelope).unwrap(), ServerId(1));
}

#[test]
fn the_documented_seal_is_the_first_nonce_that_seals_block_1_at_difficulty_12() {
    let round = run();
    let committed = round.commits.first().expect("server 1 committed");
    let block = build_block(committed).expect("the round has a payment");
    assert_eq!(SEAL_TIME, schedule().close(SLOT) + 1_000);
    // §9.6: block 1 of §9.4 on a chain of difficulty 12, which changes its
    // difficulty field and so its id, and nothing else.
    let header = BlockHeader {
        difficulty: SEAL_DIFFICULTY,
        ..block.header
    };
    let seal = search(&header, SEAL_TIME, 1, rota::mining::LAST_NONCE)
        .expect("12 bits within the nonces of one seal time");
    assert_eq!(
        search(&header, SEAL_TIME, 1, seal.nonce - 1),
        None,
        "no smaller nonce seals it"
    );
    assert!(seal.proves(&header));
    assert_eq!(zero_bits(&seal.hash(&header)), SEAL_DIFFICULTY, "not 13");
    let sealed = seal.sealed_header(&header);
    assert_eq!(
        hex::encode(sealed),
        hex::encode(&documented()["sealed-header"])
    );
    let text = include_str!("../docs/PROTOCOL.md");
    for shown in [
        header.hash().to_string(),
        seal.hash(&header).to_string(),
        hex::encode(seal.to_bytes()),
    ] {
        assert!(text.contains(&shown), "§9.6 shows {shown}");
    }
}

/// The text between the stop rule's markers in a document.
fn stop_rule(text: &str) -> &str {
    let start = text
        .find("<!-- stop rule")
        .expect("the stop rule's opening marker");
    let end = text[start..]
        .find("<!-- /stop rule -->")
        .expect("the stop rule's closing marker");
    &text[start..start + end]
}

#[test]
fn the_stop_rule_reads_the_same_in_protocol_and_operations() {
    let protocol = stop_rule(include_str!("../docs/PROTOCOL.md"));
    let operations = stop_rule(include_str!("../docs/OPERATIONS.md"));
    assert_eq!(protocol, operations);
    assert!(protocol.contains("`peering.missed_heartbeats`"));
}

//! Tests of the ledger core, driven by a fake clock.
//!
//! [`Sim`] runs N cores in memory: it ticks them at their deadlines, delivers
//! their messages at once (to servers that are up) through their bytes and
//! the listener's own signature checks ([`check_peer`]), and records what
//! each persists and whether it stops.

use std::collections::VecDeque;
use std::sync::Arc;

use rota_listener::{Consensus, PeerInput, check_peer};
use rota_peer::balances::{Balances, PaymentRefusal};
use rota_peer::block::Block;
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::{Transaction, VerifiedTx, Verifier};
use rota_peer::wire::consensus::{Base, Header, SignedHeader, Verified};
use rota_peer::wire::{Disposition, PeerMessage, ServerList};
use rota_peer::{Amount, Hash, Millis, PublicKey, ServerId, Slot, TxId};

use super::consensus::{self, Ledger, Record, Timing};
use super::core::{
    Action, Commit, Committed, CommittedRound, Core, Persist, Refusal, States, Target, Tracked,
};
use crate::events::{Event, TxState};

const SLOT: u64 = 1_000;
/// The start of slot 999, whose alpha is server 1 of 3 (999 mod 3 = 0).
const T0: Millis = 999 * SLOT;
const CHAIN: &str = "test";

fn schedule(servers: usize) -> Schedule {
    Schedule {
        slot_ms: SLOT,
        blackout_ms: 300,
        tolerance_ms: 100,
        servers,
        difficulty: 0,
    }
}

fn payer(k: u8) -> Keypair {
    Keypair::from_seed(&[k; 32])
}

fn key(k: u8) -> PublicKey {
    PublicKey([k; 32])
}

fn genesis() -> Vec<(PublicKey, Amount)> {
    (1..=3).map(|k| (payer(k).public(), 100)).collect()
}

fn committed(accounts: &[(PublicKey, Amount)]) -> Committed {
    let mut balances = Balances::from_accounts(accounts).unwrap();
    Committed {
        slot: 0,
        hash: balances.hash(),
        snapshot: Arc::new(balances),
    }
}

fn verified(tx: Transaction) -> VerifiedTx {
    Verifier::new(CHAIN).verify(tx).unwrap()
}

/// A payment of `amount` from client `from` to `to`, stamped `at`.
fn payment(from: u8, to: PublicKey, amount: Amount, at: Millis) -> VerifiedTx {
    verified(Transaction::sign(CHAIN, &payer(from), to, amount, at))
}

/// Server `i`'s key (1-based).
fn server_key(i: usize) -> Keypair {
    Keypair::from_seed(&[100 + i as u8; 32])
}

fn servers(n: usize) -> ServerList {
    ServerList::new((1..=n).map(|i| server_key(i).public()).collect())
}

fn config(me: u32, n: usize) -> consensus::Config {
    consensus::Config {
        chain: CHAIN.into(),
        me: ServerId(me),
        keypair: server_key(me as usize),
        servers: servers(n),
        timing: Timing::new(schedule(n)),
    }
}

fn core(me: u32, n: usize, accounts: &[(PublicKey, Amount)]) -> Core {
    let mut core = Core::new(config(me, n), committed(accounts), None, Vec::new()).unwrap();
    core.set_synced(true, T0);
    core
}

/// A message as another server would receive it: through its bytes and
/// the listener's checks.
fn receive(n: usize, slot: Slot, message: &PeerMessage<VerifiedTx>) -> PeerInput {
    let decoded = PeerMessage::decode(message.command(), &message.payload(), n).unwrap();
    let servers = servers(n);
    let door = door(&servers);
    check_peer(&door, ServerId(1), &mut Verifier::new(CHAIN), slot, decoded).unwrap()
}

/// The listener's door for a chain of `servers` (the parameters matter to
/// `register` and `heart` only, which these tests do not send).
fn door(servers: &ServerList) -> rota_listener::Door<'_> {
    static PARAMS: std::sync::OnceLock<rota_peer::wire::Params> = std::sync::OnceLock::new();
    rota_listener::Door {
        chain: CHAIN,
        servers,
        params: PARAMS.get_or_init(Default::default),
    }
}

/// N cores, a clock, and instant delivery.
struct Sim {
    cores: Vec<Core>,
    up: Vec<bool>,
    now: Millis,
    queue: VecDeque<(ServerId, ServerId, Slot, PeerMessage<VerifiedTx>)>,
    commits: Vec<Vec<Commit>>,
    records: Vec<Vec<Record<super::core::Payments>>>,
    stops: Vec<Option<String>>,
    refused: Vec<String>,
}

impl Sim {
    fn new(n: usize) -> Sim {
        Sim::with_genesis(n, |_| genesis())
    }

    fn with_genesis(n: usize, accounts: impl Fn(usize) -> Vec<(PublicKey, Amount)>) -> Sim {
        Sim {
            cores: (1..=n).map(|i| core(i as u32, n, &accounts(i))).collect(),
            up: vec![true; n],
            now: T0,
            queue: VecDeque::new(),
            commits: vec![Vec::new(); n],
            records: vec![Vec::new(); n],
            stops: vec![None; n],
            refused: Vec::new(),
        }
    }

    fn core(&self, i: usize) -> &Core {
        &self.cores[i - 1]
    }

    fn live(&self, i: usize) -> bool {
        self.up[i - 1] && self.stops[i - 1].is_none()
    }

    fn perform(&mut self, i: usize, actions: Vec<Action>) {
        let from = ServerId(i as u32);
        for action in actions {
            match action {
                Action::Send { to, slot, message } => {
                    let targets: Vec<ServerId> = match to {
                        Target::All => (1..=self.cores.len())
                            .map(|j| ServerId(j as u32))
                            .filter(|j| *j != from)
                            .collect(),
                        Target::Only(ids) => ids,
                    };
                    for to in targets {
                        self.queue.push_back((from, to, slot, message.clone()));
                    }
                }
                Action::Persist(Persist::Commit(commit)) => self.commits[i - 1].push(commit),
                Action::Persist(Persist::Consensus(record)) => self.records[i - 1].push(record),
                Action::Publish(_) | Action::OutOfSync => {}
                Action::Stop(reason) => self.stops[i - 1] = Some(reason),
            }
        }
    }

    fn deliver(&mut self) {
        let n = self.cores.len();
        while let Some((from, to, slot, message)) = self.queue.pop_front() {
            let i = to.0 as usize;
            if !self.live(i) {
                continue;
            }
            let now = self.now;
            let core = &mut self.cores[i - 1];
            let result = match receive(n, slot, &message) {
                PeerInput::Consensus(message) => core.on_consensus(from, *message, now),
                PeerInput::Forward(tx) => core.on_forward(from, slot, tx, now).map(|_| Vec::new()),
                PeerInput::Register(_) | PeerInput::Heart(_) | PeerInput::Mine(_) => Ok(Vec::new()),
            };
            match result {
                Ok(actions) => self.perform(i, actions),
                // A vote that arrives after its round committed: a late
                // copy, which changes nothing.
                Err(e) if e.to_string().contains("already decided") => {}
                Err(e) => self.refused.push(format!("server {i}: {e}")),
            }
        }
    }

    /// Runs every live core up to time `t`, ticking at each deadline.
    fn run_until(&mut self, t: Millis) {
        loop {
            let next = (1..=self.cores.len())
                .filter(|i| self.live(*i))
                .map(|i| self.cores[i - 1].next_deadline(self.now))
                .min()
                .unwrap_or(t)
                .min(t);
            self.now = next.max(self.now);
            for i in 1..=self.cores.len() {
                if self.live(i) {
                    let actions = self.cores[i - 1].tick(self.now);
                    self.perform(i, actions);
                }
            }
            self.deliver();
            if self.now >= t {
                return;
            }
        }
    }

    fn submit(&mut self, i: usize, tx: VerifiedTx) -> Result<Disposition, Refusal> {
        let (result, actions) = self.cores[i - 1].submit(tx, self.now);
        self.perform(i, actions);
        self.deliver();
        result
    }

    fn hashes(&self) -> Vec<Hash> {
        self.cores.iter().map(|c| c.committed().hash).collect()
    }

    /// The rounds with payments server `i` committed: those its edge
    /// builds blocks for, its chain being in step.
    fn blocks(&self, i: usize) -> Vec<&CommittedRound> {
        self.commits[i - 1]
            .iter()
            .flat_map(|c| c.rounds.iter())
            .filter(|r| !r.transactions.is_empty())
            .collect()
    }
}

// ---- acceptance rules, one server ------------------------------------------

#[test]
fn the_alpha_accepts_a_valid_payment_into_its_round() {
    let mut core = core(1, 1, &genesis());
    let (result, _) = core.submit(payment(1, key(9), 10, T0 + 50), T0 + 50);
    assert_eq!(result, Ok(Disposition::Accepted(ServerId(1))));
    assert_eq!(core.pending_count(), 1);
}

#[test]
fn a_timestamp_at_the_end_of_time_is_refused_with_a_sane_offset() {
    let now = T0 + 500;
    for at in [1 << 63, u64::MAX, u64::MAX - 1, 0] {
        let mut core = core(1, 1, &genesis());
        let (result, _) = core.submit(payment(1, key(9), 1, at), now);
        match result {
            Err(Refusal::Timestamp { offset_ms, .. }) => {
                assert_eq!(offset_ms.signum(), if at == 0 { -1 } else { 1 }, "{at}");
                assert_eq!(
                    offset_ms.unsigned_abs(),
                    at.abs_diff(now).min(i64::MAX as u64)
                );
            }
            other => panic!("timestamp {at}: {other:?}"),
        }
    }
}

#[test]
fn a_timestamp_outside_the_tolerance_is_refused_at_both_ends() {
    let mut core = core(1, 1, &genesis());
    let now = T0 + 500;
    for (at, ok) in [
        (now - 100, true),
        (now + 100, true),
        (now - 101, false),
        (now + 101, false),
    ] {
        let result = core.accept(payment(1, key(9), 1, at), now);
        assert_eq!(result.is_ok(), ok, "timestamp {at} at {now}");
        if !ok {
            assert!(matches!(
                result,
                Err(Refusal::Timestamp {
                    tolerance_ms: 100,
                    ..
                })
            ));
        }
    }
}

#[test]
fn a_payer_without_an_account_is_refused() {
    let mut core = core(1, 1, &genesis());
    let result = core.accept(payment(7, key(9), 1, T0), T0);
    assert_eq!(result, Err(Refusal::Payment(PaymentRefusal::NoAccount)));
}

#[test]
fn funds_count_the_payments_already_in_the_round() {
    let mut core = core(1, 1, &genesis());
    assert!(core.accept(payment(1, key(9), 60, T0), T0).is_ok());
    let result = core.accept(payment(1, key(9), 50, T0 + 1), T0 + 1);
    assert_eq!(
        result,
        Err(Refusal::Payment(PaymentRefusal::InsufficientFunds {
            balance: 40,
            amount: 50
        }))
    );
}

#[test]
fn a_zero_amount_and_a_self_payment_are_refused() {
    let mut core = core(1, 1, &genesis());
    let zero = core.accept(payment(1, key(9), 0, T0), T0);
    assert_eq!(zero, Err(Refusal::Payment(PaymentRefusal::ZeroAmount)));
    let own = core.accept(payment(1, payer(1).public(), 5, T0), T0);
    assert_eq!(own, Err(Refusal::Payment(PaymentRefusal::SelfPayment)));
}

#[test]
fn a_duplicate_id_is_refused() {
    let mut core = core(1, 1, &genesis());
    let tx = payment(1, key(9), 5, T0);
    assert!(core.accept(tx, T0).is_ok());
    assert_eq!(core.accept(tx, T0 + 1), Err(Refusal::Duplicate));
}

#[test]
fn only_the_alpha_accepts_and_only_in_its_window() {
    let mut sim = Sim::new(3);
    // Slot 999: server 1 is alpha; server 2 is not.
    let refused = sim.cores[1].accept(payment(1, key(9), 5, T0), T0);
    assert_eq!(
        refused,
        Err(Refusal::NotAlpha {
            slot: 999,
            alpha: ServerId(1)
        })
    );
    // In the blackout even the alpha takes nothing directly.
    let late = T0 + 800;
    let refused = sim.cores[0].accept(payment(1, key(9), 5, late), late);
    assert!(
        matches!(
            refused,
            Err(Refusal::Blackout {
                slot: 999,
                next: ServerId(2),
                ..
            })
        ),
        "{refused:?}"
    );
}

#[test]
fn a_server_out_of_sync_takes_no_payments() {
    let mut core = core(1, 3, &genesis());
    core.set_synced(false, T0);
    assert_eq!(
        core.submit(payment(1, key(9), 5, T0), T0).0,
        Err(Refusal::CatchingUp)
    );
}

// ---- forwarding and holding -------------------------------------------------

#[test]
fn a_payment_sent_to_another_server_is_forwarded_to_the_alpha() {
    let mut sim = Sim::new(3);
    let tx = payment(1, key(9), 5, T0 + 10);
    sim.now = T0 + 10;
    assert_eq!(sim.submit(3, tx), Ok(Disposition::Forwarded(ServerId(1))));
    assert_eq!(sim.core(1).pending_count(), 1, "the alpha took it");
    assert_eq!(
        sim.core(3).tracked(&tx.id()),
        Some(Tracked::Pending { slot: 999 })
    );
}

#[test]
fn a_payment_sent_in_the_blackout_is_held_for_the_next_alpha() {
    let mut sim = Sim::new(3);
    // Last 100 ms of slot 999's blackout: stamped for the next slot's opening.
    sim.run_until(T0 + 950);
    let tx = payment(1, key(9), 5, T0 + SLOT);
    assert_eq!(sim.submit(3, tx), Ok(Disposition::Held(ServerId(2))));
    assert_eq!(sim.core(2).pending_count(), 0);
    sim.run_until(T0 + SLOT + 1);
    assert_eq!(sim.core(3).held_count(), 0);
    assert_eq!(
        sim.core(2).pending_count(),
        1,
        "handed to server 2 when slot 1000 opened"
    );
}

#[test]
fn a_payment_is_not_held_for_an_alpha_known_down() {
    let mut core = core(3, 3, &genesis());
    core.set_peer_alive(ServerId(2), false);
    let tx = payment(1, key(9), 5, T0 + SLOT);
    let (result, actions) = core.submit(tx, T0 + 950);
    let refusal = result.unwrap_err();
    assert!(
        matches!(
            refusal,
            Refusal::AlphaDown {
                alpha: ServerId(2),
                slot: 1000,
                next: 1001,
                ..
            }
        ),
        "{refusal:?}"
    );
    assert!(actions.is_empty());
    assert_eq!(core.held_count(), 0);
}

/// The alpha refuses a payment it held for itself (it is catching up when
/// its slot opens): the client may still send the same bytes into its
/// round, so the payment stays pending until a commit decides the slot,
/// and only then is lost.
#[test]
fn a_held_payment_its_alpha_refuses_stays_pending_until_a_commit_decides_it() {
    let mut sim = Sim::new(3);
    sim.run_until(T0 + 950);
    let tx = payment(1, key(9), 5, T0 + SLOT);
    assert_eq!(sim.submit(2, tx), Ok(Disposition::Held(ServerId(2))));
    sim.cores[1].set_synced(false, sim.now);
    sim.run_until(T0 + SLOT + 1);
    assert_eq!(sim.core(2).held_count(), 0);
    assert_eq!(
        sim.core(2).tracked(&tx.id()),
        Some(Tracked::Pending { slot: 1000 }),
        "refused while catching up, but not lost yet"
    );
    sim.run_until(T0 + 3 * SLOT);
    match sim.core(2).tracked(&tx.id()) {
        Some(Tracked::Lost {
            slot: 1000,
            decided,
        }) => assert!(decided > 1000, "decided by the commit of slot {decided}"),
        other => panic!("{other:?}"),
    }
    assert!(sim.core(2).committed().slot > 1000);
}

#[test]
fn a_held_payment_that_would_fall_outside_the_tolerance_is_refused() {
    let mut sim = Sim::new(3);
    sim.run_until(T0 + 750);
    let tx = payment(1, key(9), 5, T0 + 750);
    let refusal = sim.submit(3, tx).unwrap_err();
    assert!(
        matches!(
            refusal,
            Refusal::HeldTooLate {
                offset_ms: -250,
                tolerance_ms: 100,
                ..
            }
        ),
        "{refusal:?}"
    );
    assert!(
        refusal
            .to_string()
            .contains("send it again once slot 1000 opens")
    );
}

// ---- rounds -----------------------------------------------------------------

#[test]
fn three_servers_commit_the_same_round_and_block() {
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    sim.submit(1, payment(1, key(9), 30, T0 + 10)).unwrap();
    sim.submit(2, payment(2, key(9), 20, T0 + 11)).unwrap();
    sim.run_until(T0 + SLOT + 600);
    let hashes = sim.hashes();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    for i in 1..=3 {
        let blocks = sim.blocks(i);
        assert_eq!(blocks.len(), 1, "server {i}");
        assert_eq!(blocks[0].slot, 999);
        assert_eq!(blocks[0].transactions.len(), 2);
        assert_eq!(sim.core(i).committed().snapshot.get(&key(9)), Some(50));
        let certified = sim.core(i).certified().expect("a commit certificate");
        assert_eq!(certified.header.header.result, hashes[0]);
        // The block proves itself against the conf alone, through its bytes.
        let block = crate::ledger::edge::build_block(blocks[0]).expect("a block");
        assert_eq!(
            (block.header.number, block.header.previous),
            (1, Hash::default())
        );
        let block = Block::decode(&block.encode()).unwrap();
        block
            .verify(CHAIN, &servers(3), schedule(3).shape())
            .expect("its proof checks");
        // The round's certified header fixes every field of the block.
        let lies: [fn(&mut Block); 3] = [
            |b| b.header.balance_hash = Hash([0xee; 32]),
            |b| b.header.number = 2,
            |b| b.header.previous = Hash([0xee; 32]),
        ];
        for lie in lies {
            let mut lying = block.clone();
            lie(&mut lying);
            let err = lying
                .verify(CHAIN, &servers(3), schedule(3).shape())
                .unwrap_err()
                .to_string();
            assert!(err.contains("makes another"), "{err}");
        }
    }
    assert!(sim.refused.is_empty(), "{:?}", sim.refused);
}

#[test]
fn every_vote_is_recorded_before_it_is_sent() {
    let mut sim = Sim::new(3);
    sim.run_until(T0 + 800);
    // Server 2 prevoted and precommitted round 999 on the fast path: both
    // votes are in its records.
    let kinds: Vec<&str> = sim.records[1]
        .iter()
        .filter_map(|r| match r {
            Record::Prevote(_) => Some("prevote"),
            Record::Precommit(_) => Some("precommit"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["prevote", "precommit"]);
}

#[test]
fn rounds_go_on_with_one_server_down() {
    let mut sim = Sim::new(3);
    sim.up[2] = false;
    sim.now = T0 + 10;
    sim.submit(1, payment(1, key(9), 30, T0 + 10)).unwrap();
    sim.run_until(T0 + 4 * SLOT);
    assert_eq!(sim.core(1).committed().hash, sim.core(2).committed().hash);
    assert!(sim.stops.iter().all(Option::is_none), "{:?}", sim.stops);
    assert_eq!(sim.blocks(1).len(), 1);
    // Without server 3 there is no fast path: rounds 999 and 1000 commit at
    // their P(s); round 1001 had a dead alpha, so there was none.
    assert_eq!(
        sim.core(1).committed().slot,
        1000,
        "empty rounds commit too"
    );
}

#[test]
fn with_two_of_three_down_nothing_commits_and_no_server_stops() {
    let mut sim = Sim::new(3);
    sim.up[1] = false;
    sim.up[2] = false;
    sim.run_until(T0 + 5 * SLOT);
    assert!(sim.stops[0].is_none(), "a failed slot stops nothing");
    assert_eq!(sim.core(1).committed().slot, 0);
    assert!(sim.commits[0].is_empty());
}

#[test]
fn a_server_that_missed_a_round_asks_for_it_and_catches_up() {
    let mut sim = Sim::new(3);
    sim.up[2] = false;
    sim.now = T0 + 10;
    sim.submit(1, payment(1, key(9), 30, T0 + 10)).unwrap();
    // Round 999 commits without server 3.
    sim.run_until(T0 + SLOT + 300);
    assert_eq!(sim.core(1).committed().slot, 999);
    sim.up[2] = true;
    sim.run_until(T0 + 4 * SLOT);
    let hashes = sim.hashes();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    assert_eq!(sim.core(3).committed().snapshot.get(&key(9)), Some(30));
    assert_eq!(sim.blocks(3).len(), 1, "server 3 has the block of slot 999");
}

/// A header for slot 999 on the anchor of `accounts`, signed by server
/// `signer`, claiming `result` for `payments`, as a receiver would get it
/// once checked.
fn header(
    signer: usize,
    accounts: &[(PublicKey, Amount)],
    payments: &[VerifiedTx],
    result: Hash,
) -> Verified<SignedHeader> {
    unchecked_header(signer, accounts, payments, result)
        .verify(CHAIN, &servers(3))
        .unwrap()
}

/// The same header, signed and not checked.
fn unchecked_header(
    signer: usize,
    accounts: &[(PublicKey, Amount)],
    payments: &[VerifiedTx],
    result: Hash,
) -> SignedHeader {
    let base = committed(accounts);
    let states = States::new(schedule(3), Hash::default(), base.snapshot.clone());
    let header = Header {
        slot: 999,
        base: Base {
            digest: Hash::default(),
            slot: 0,
            balance: base.hash,
            chain: Default::default(),
            sealed: 0,
        },
        payments: states.root(&payments.to_vec().into()),
        result,
        seal: None,
    };
    let signed = Verified::<SignedHeader>::sign_header(&server_key(signer), CHAIN, header, None);
    // Through the bytes, as a receiver would get it.
    let bytes = signed.into_inner().encode();
    SignedHeader::decode(&bytes, 3).unwrap()
}

fn prevotes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    message: PeerMessage::Prevote(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_round_carrying_a_payment_that_does_not_apply_gets_no_prevote_anywhere() {
    let good = payment(1, key(9), 10, T0 + 5);
    let broke = payment(2, key(9), 500, T0 + 6);
    let stale = payment(3, key(9), 1, T0 - 5_000);
    let mut after_good = Balances::from_accounts(&genesis()).unwrap();
    after_good.pay(&good.payer(), &good.payee(), 10).unwrap();
    // Each bad payment beside the good one, with the result of the good
    // one alone (what skipping would give), then the good one alone.
    for (round, prevoted) in [
        (vec![good, broke], 0),
        (vec![good, stale], 0),
        (vec![good, good], 0),
        (vec![good], 1),
    ] {
        let header = header(1, &genesis(), &round, after_good.hash());
        for me in [2, 3] {
            let mut core = core(me, 3, &genesis());
            let message = Consensus::Round {
                header: header.clone(),
                payments: round.clone(),
            };
            let actions = core.on_consensus(ServerId(1), message, T0 + 710).unwrap();
            assert_eq!(
                prevotes(&actions),
                prevoted,
                "server {me}, a round of {} payments",
                round.len()
            );
        }
    }
}

#[test]
fn a_restarted_server_sends_its_own_votes_again() {
    let mut core = core(2, 3, &genesis());
    let header = header(1, &genesis(), &[], committed(&genesis()).hash);
    let message = Consensus::Round {
        header,
        payments: Vec::new(),
    };
    let actions = core.on_consensus(ServerId(1), message, T0 + 710).unwrap();
    assert_eq!(prevotes(&actions), 1);
    let records: Vec<_> = actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Persist(Persist::Consensus(record)) => Some(record),
            _ => None,
        })
        .collect();
    // Killed before anything else: it restarts from its records.
    let mut restarted = Core::new(config(2, 3), committed(&genesis()), None, records).unwrap();
    assert_eq!(
        prevotes(&restarted.resend()),
        1,
        "the same prevote, sent again"
    );
}

#[test]
fn a_round_whose_header_claims_another_result_gets_no_prevote() {
    let round = vec![payment(1, key(9), 10, T0 + 5)];
    let minted = Hash([0xee; 32]);
    let header = header(1, &genesis(), &round, minted);
    let mut core = core(2, 3, &genesis());
    let message = Consensus::Round {
        header,
        payments: round,
    };
    let actions = core.on_consensus(ServerId(1), message, T0 + 710).unwrap();
    assert_eq!(prevotes(&actions), 0);
    assert_eq!(core.committed().slot, 0);
}

#[test]
fn a_header_signed_by_anyone_but_the_alpha_is_refused_at_the_door() {
    let forged = unchecked_header(3, &genesis(), &[], committed(&genesis()).hash);
    let message: PeerMessage<VerifiedTx> = PeerMessage::Round {
        header: forged,
        transactions: Vec::new(),
    };
    let decoded = PeerMessage::decode(message.command(), &message.payload(), 3).unwrap();
    let servers = servers(3);
    let err = check_peer(
        &door(&servers),
        ServerId(2),
        &mut Verifier::new(CHAIN),
        999,
        decoded,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("round:"), "{err}");
}

#[test]
fn a_replayed_round_is_refused_once_its_slot_is_decided() {
    let mut sim = Sim::new(3);
    sim.run_until(T0 + SLOT + 300);
    assert_eq!(sim.core(2).committed().slot, 999);
    let (header, payments) = sim.cores[0]
        .recent_round(999)
        .expect("kept to answer wants");
    let replay = Consensus::Round {
        header,
        payments: payments.to_vec(),
    };
    let err = sim.cores[1]
        .on_consensus(ServerId(1), replay, T0 + SLOT + 310)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already decided"), "{err}");
}

#[test]
fn a_round_too_far_ahead_is_refused() {
    let mut core = core(2, 3, &genesis());
    let header = header(1, &genesis(), &[], committed(&genesis()).hash);
    let message = Consensus::Round {
        header,
        payments: Vec::new(),
    };
    let err = core
        .on_consensus(ServerId(1), message, T0 - 2 * SLOT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("too far ahead"), "{err}");
}

#[test]
fn a_database_is_installed_only_under_a_commit_certificate_for_its_hash() {
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    sim.submit(1, payment(1, key(9), 30, T0 + 10)).unwrap();
    sim.run_until(T0 + SLOT + 300);
    let certified = sim.core(1).certified().unwrap().clone().into_inner();
    let mut fresh = core(3, 3, &genesis());
    // Another database under that certificate: refused.
    let other = Balances::from_accounts(&[(key(4), 4)]).unwrap();
    let err = fresh.install(&certified, other).unwrap_err();
    assert!(err.contains("vouches for"), "{err}");
    // A prevote certificate is not a commit: refused.
    let mut prevote = certified.clone();
    prevote.certificate.kind = rota_peer::wire::consensus::Kind::Prevote;
    let db = Balances::clone(&sim.core(1).committed().snapshot);
    assert!(fresh.install(&prevote, db.clone()).is_err());
    // The committed database under its certificate: installed.
    let actions = fresh.install(&certified, db).unwrap();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Persist(Persist::Commit(Commit {
            installed: true,
            ..
        }))
    )));
    assert_eq!(fresh.committed().hash, sim.core(1).committed().hash);
    assert_eq!(fresh.committed().slot, 999);
}

#[test]
fn a_forwarded_payment_its_round_leaves_out_is_reported_lost() {
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    // Client 7 has no account: the alpha refuses what server 3 forwards.
    let tx = payment(7, key(9), 5, T0 + 10);
    assert_eq!(sim.submit(3, tx), Ok(Disposition::Forwarded(ServerId(1))));
    sim.run_until(T0 + SLOT + 600);
    assert_eq!(
        sim.core(3).tracked(&tx.id()),
        Some(Tracked::Lost {
            slot: 999,
            decided: 999
        })
    );
}

#[test]
fn a_payment_whose_round_never_came_is_lost_by_the_round_that_decided_it() {
    // Server 1, the alpha of slot 999, is down: server 3 forwards a payment
    // to it all the same, and round 999 never happens. Round 1000 commits
    // without it, and that is the round `S` names.
    let mut sim = Sim::new(3);
    sim.up[0] = false;
    sim.now = T0 + 10;
    let tx = payment(1, key(9), 5, T0 + 10);
    assert_eq!(sim.submit(3, tx), Ok(Disposition::Forwarded(ServerId(1))));
    sim.run_until(T0 + 2 * SLOT + 600);
    assert_eq!(sim.core(3).committed().slot, 1000);
    assert_eq!(
        sim.core(3).tracked(&tx.id()),
        Some(Tracked::Lost {
            slot: 999,
            decided: 1000
        })
    );
}

#[test]
fn roles_follow_the_schedule() {
    let core = core(1, 3, &genesis());
    assert_eq!(core.role_at(T0 + 10).name(), "alpha");
    assert_eq!(core.role_at(T0 + 800).name(), "beta");
    assert_eq!(core.role_at(T0 + SLOT + 10).name(), "beta");
    assert_eq!(core.role_at(T0 + SLOT + 800).name(), "follower");
    let single =
        super::core::Core::new(config(1, 1), committed(&genesis()), None, Vec::new()).unwrap();
    assert_eq!(single.role_at(T0 + 10).name(), "alpha+beta");
}

#[test]
fn a_payment_for_an_alpha_known_down_is_refused_with_the_next_slot() {
    let mut core = core(2, 3, &genesis());
    core.set_peer_alive(ServerId(1), false);
    let (result, actions) = core.submit(payment(1, key(9), 5, T0 + 10), T0 + 10);
    let refusal = result.unwrap_err();
    assert!(
        matches!(
            refusal,
            Refusal::AlphaDown {
                alpha: ServerId(1),
                next: 1000,
                ..
            }
        ),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains(rota_peer::wire::ALPHA_DOWN));
    assert!(actions.is_empty(), "nothing forwarded");
    core.set_peer_alive(ServerId(1), true);
    let (result, _) = core.submit(payment(1, key(9), 5, T0 + 11), T0 + 11);
    assert_eq!(result, Ok(Disposition::Forwarded(ServerId(1))));
}

#[test]
fn no_payment_is_forwarded_or_held_for_an_alpha_that_sits_out() {
    // Server 1, the alpha of slot 999, says in its hellos that its clock is
    // off and it sits its slots out: a payment forwarded to it, or held for
    // it, would only be lost.
    let mut forwarder = core(2, 3, &genesis());
    forwarder.set_peer_sitting_out(ServerId(1), true);
    let (result, actions) = forwarder.submit(payment(1, key(9), 5, T0 + 10), T0 + 10);
    let refusal = result.unwrap_err();
    assert!(
        matches!(
            refusal,
            Refusal::AlphaSitsOut {
                alpha: ServerId(1),
                slot: 999,
                next: 1000,
                ..
            }
        ),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains(rota_peer::wire::ALPHA_DOWN));
    assert!(refusal.to_string().contains("sits its slots out"));
    assert!(actions.is_empty(), "nothing forwarded");
    // Server 3 holds nothing for server 1 either: in the blackout of slot
    // 1001, its own, for slot 1002, server 1's.
    let mut holder = core(3, 3, &genesis());
    holder.set_peer_sitting_out(ServerId(1), true);
    let blackout = T0 + 2 * SLOT + 950;
    let (result, _) = holder.submit(payment(1, key(9), 5, T0 + 3 * SLOT), blackout);
    assert!(
        matches!(
            result,
            Err(Refusal::AlphaSitsOut {
                alpha: ServerId(1),
                slot: 1002,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(holder.held_count(), 0);
    // It takes part again: forwarded.
    forwarder.set_peer_sitting_out(ServerId(1), false);
    let (result, _) = forwarder.submit(payment(1, key(9), 5, T0 + 11), T0 + 11);
    assert_eq!(result, Ok(Disposition::Forwarded(ServerId(1))));
}

#[test]
fn a_held_payment_is_not_handed_to_an_alpha_that_began_to_sit_out() {
    let forwards = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        message: PeerMessage::Forward { .. },
                        ..
                    }
                )
            })
            .count()
    };
    for sits_out in [false, true] {
        let mut holder = core(3, 3, &genesis());
        let tx = payment(1, key(9), 5, T0 + SLOT);
        let (held, _) = holder.submit(tx, T0 + 950);
        assert_eq!(held, Ok(Disposition::Held(ServerId(2))));
        // Server 2 says it sits out only after the payment was held.
        holder.set_peer_sitting_out(ServerId(2), sits_out);
        let actions = holder.tick(T0 + SLOT + 1);
        assert_eq!(holder.held_count(), 0, "released either way");
        assert_eq!(
            forwards(&actions),
            usize::from(!sits_out),
            "forwarded only to an alpha that takes part: {actions:?}"
        );
    }
}

#[test]
fn a_stale_forward_is_refused() {
    let mut core = core(1, 3, &genesis());
    let err = core
        .on_forward(ServerId(2), 990, payment(1, key(9), 5, T0 + 10), T0 + 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stale"), "{err}");
}

#[test]
fn an_installed_database_leaves_the_fate_of_earlier_payments_unknown_not_lost() {
    // Server 3 forwarded a payment, then installed the majority's database
    // without the round: it cannot tell whether the payment made it.
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    let tx = payment(1, key(9), 5, T0 + 10);
    sim.submit(3, tx).unwrap();
    sim.up[2] = false;
    sim.run_until(T0 + SLOT + 300);
    let certified = sim.core(1).certified().unwrap().clone().into_inner();
    let db = Balances::clone(&sim.core(1).committed().snapshot);
    sim.cores[2].install(&certified, db).unwrap();
    assert_eq!(sim.core(3).tracked(&tx.id()), None, "not reported lost");
}

/// The `tx` events of `actions`: each payment's id and state, in order.
fn tx_events(actions: &[Action]) -> Vec<(TxId, TxState)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Publish(Event::Tx { id, state, .. }) => Some((*id, *state)),
            _ => None,
        })
        .collect()
}

#[test]
fn payments_lost_together_are_reported_in_id_order() {
    // Server 2 forwards eight payments to the alpha, which never gets them
    // (the messages are lost); its empty round commits. The lost events
    // leave the core in the same order on every run: by payment id, not by
    // a hash map's whim.
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    let mut ids = Vec::new();
    for client in 10..18 {
        let tx = payment(client, key(9), 5, T0 + 10);
        let (result, _) = sim.cores[1].submit(tx, T0 + 10);
        assert_eq!(result, Ok(Disposition::Forwarded(ServerId(1))));
        ids.push(tx.id());
    }
    let mut lost_events = Vec::new();
    while sim.now < T0 + SLOT + 300 {
        let next = sim
            .cores
            .iter()
            .map(|c| c.next_deadline(sim.now))
            .min()
            .unwrap();
        sim.now = next;
        for i in 1..=3 {
            let actions = sim.cores[i - 1].tick(sim.now);
            if i == 2 {
                lost_events.extend(tx_events(&actions));
            }
            sim.perform(i, actions);
        }
        // Deliver one by one, keeping server 2's events.
        while let Some((from, to, slot, message)) = sim.queue.pop_front() {
            let i = to.0 as usize;
            let PeerInput::Consensus(message) = receive(3, slot, &message) else {
                continue;
            };
            if let Ok(actions) = sim.cores[i - 1].on_consensus(from, *message, sim.now) {
                if i == 2 {
                    lost_events.extend(tx_events(&actions));
                }
                sim.perform(i, actions);
            }
        }
    }
    assert!(sim.core(2).committed().slot >= 999);
    ids.sort();
    let lost: Vec<(TxId, TxState)> = ids.into_iter().map(|id| (id, TxState::Lost)).collect();
    assert_eq!(lost_events, lost);
}

/// A ledger thread of one server on a memory disk, with the channel the
/// connector would read. The disk is returned so a test can crash it.
fn one_server_thread(
    ctx: &zmq::Context,
) -> (
    super::LedgerThread,
    crate::ledger::store::MemoryDisk,
    crossbeam_channel::Receiver<rota_connector::ConnectorInput>,
) {
    use crate::ledger::store::{MemoryDisk, Store};
    let disk = MemoryDisk::new();
    let store = Store::on_disk(Box::new(disk.clone()), 4, SLOT);
    let start = committed(&genesis());
    store.load(start.snapshot.as_ref().clone()).unwrap();
    // Nothing reads the wake-ups: an inproc connect needs no bound end.
    let waker = || rota_listener::Waker::connect(ctx, "inproc://ledger-test").unwrap();
    let (_events_in, connector_events) = crossbeam_channel::bounded(1);
    let (_shutdown_in, shutdown) = crossbeam_channel::bounded(1);
    let (to_listener, _from_ledger) = crossbeam_channel::unbounded();
    let (to_peering, _from_ledger) = crossbeam_channel::unbounded();
    let (to_connector, from_ledger) = crossbeam_channel::unbounded();
    let channels = super::Channels {
        inputs: super::Inputs {
            consensus: crossbeam_channel::never(),
            bulk: crossbeam_channel::never(),
            client: crossbeam_channel::never(),
            connector_events,
            mining: crossbeam_channel::never(),
            shutdown,
        },
        budgets: rota_listener::Budgets::new(),
        to_listener,
        listener_waker: waker(),
        to_peering,
        peering_waker: waker(),
        to_connector,
        to_miner: None,
        connector_waker: waker(),
    };
    let me = server_key(1);
    let core = Core::new(config(1, 1), start, None, Vec::new()).unwrap();
    let thread = super::LedgerThread::new(
        core,
        store,
        me,
        "test".into(),
        channels,
        Arc::new(rota_listener::Stats::default()),
        Arc::new(rota_listener::Stats::default()),
    )
    .unwrap();
    (thread, disk, from_ledger)
}

/// A commit that changes the database, then a message announcing it.
fn commit_then_send() -> Vec<Action> {
    let mut after = Balances::from_accounts(&genesis()).unwrap();
    after.pay(&payer(1).public(), &key(7), 5).unwrap();
    let commit = Commit {
        slot: 1_000,
        hash: after.hash(),
        snapshot: Arc::new(after),
        rounds: Vec::new(),
        installed: false,
        certified: None,
        journal: Vec::new(),
    };
    vec![
        Action::Persist(Persist::Commit(commit)),
        Action::Send {
            to: Target::All,
            slot: 1_000,
            message: PeerMessage::Want {
                slot: 1_000,
                digest: Hash([1; 32]),
            },
        },
    ]
}

fn sends(from_ledger: &crossbeam_channel::Receiver<rota_connector::ConnectorInput>) -> usize {
    from_ledger
        .try_iter()
        .filter(|input| matches!(input, rota_connector::ConnectorInput::Send { .. }))
        .count()
}

#[test]
fn a_message_after_a_persist_leaves_once_the_persist_is_durable() {
    let ctx = zmq::Context::new();
    let (mut thread, disk, from_ledger) = one_server_thread(&ctx);
    let before = disk.writes();
    assert_eq!(thread.perform(commit_then_send()), None);
    assert!(disk.writes() > before, "the commit reached the disk");
    assert_eq!(sends(&from_ledger), 1);
}

#[test]
fn a_persist_that_fails_lets_nothing_after_it_leave() {
    let ctx = zmq::Context::new();
    let (mut thread, disk, from_ledger) = one_server_thread(&ctx);
    disk.crash_after(0);
    let exit = thread.perform(commit_then_send());
    assert!(matches!(exit, Some(super::Exit::Failed(_))), "{exit:?}");
    assert_eq!(sends(&from_ledger), 0);
}

//! Tests of the ledger core, driven by a fake clock.
//!
//! [`Sim`] runs N cores in memory: it ticks them at their deadlines, delivers
//! their messages at once (to servers that are up), records commits and
//! stops, and stands in for the connector by marking a server in sync again
//! once it installs a database.

use std::collections::VecDeque;
use std::sync::Arc;

use rota_peer::balances::{Balances, PaymentRefusal};
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::transaction::{Transaction, VerifiedTx, Verifier};
use rota_peer::wire::{Decision, Disposition, PeerMessage, ServerList};
use rota_peer::{Amount, Hash, Millis, PublicKey, ServerId, Slot, TxId};

use super::core::{Action, Commit, Committed, Core, Persist, Refusal, Target, Tracked};
use crate::events::{Event, TxState};

const SLOT: u64 = 1_000;
/// The start of slot 999, whose alpha is server 1 of 3 (999 mod 3 = 0).
const T0: Millis = 999 * SLOT;

fn schedule(servers: usize) -> Schedule {
    Schedule {
        slot_ms: SLOT,
        blackout_ms: 300,
        tolerance_ms: 100,
        servers,
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
    Verifier::new("test").verify(tx).unwrap()
}

/// A payment of `amount` from client `from` to `to`, stamped `at`.
fn payment(from: u8, to: PublicKey, amount: Amount, at: Millis) -> VerifiedTx {
    verified(Transaction::sign("test", &payer(from), to, amount, at))
}

fn servers(n: usize) -> ServerList {
    ServerList::new((1..=n as u8).map(|i| PublicKey([100 + i; 32])).collect())
}

fn core(me: u32, n: usize, accounts: &[(PublicKey, Amount)]) -> Core {
    let mut core = Core::new(ServerId(me), servers(n), schedule(n), committed(accounts));
    core.set_synced(true, T0);
    core
}

/// N cores, a clock, and instant delivery.
struct Sim {
    cores: Vec<Core>,
    up: Vec<bool>,
    now: Millis,
    queue: VecDeque<(ServerId, ServerId, Slot, PeerMessage<VerifiedTx>)>,
    commits: Vec<Vec<Commit>>,
    stops: Vec<Option<String>>,
    out_of_sync: Vec<u32>,
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
            stops: vec![None; n],
            out_of_sync: vec![0; n],
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
                Action::Persist(Persist::Commit(commit)) => {
                    if commit.installed {
                        // The connector would now find this server in sync.
                        self.cores[i - 1].set_synced(true, self.now);
                    }
                    self.commits[i - 1].push(commit);
                }
                Action::Publish(_) => {}
                Action::OutOfSync => self.out_of_sync[i - 1] += 1,
                Action::Stop(reason) => self.stops[i - 1] = Some(reason),
            }
        }
    }

    fn deliver(&mut self) {
        while let Some((from, to, slot, message)) = self.queue.pop_front() {
            let i = to.0 as usize;
            if !self.live(i) {
                continue;
            }
            let now = self.now;
            let core = &mut self.cores[i - 1];
            let result = match message {
                PeerMessage::Round { hash, transactions } => {
                    core.on_round(from, slot, hash, transactions, now)
                }
                PeerMessage::Vote { hash } => core.on_vote(from, slot, hash),
                PeerMessage::Result(decision) => core.on_result(from, slot, decision, now),
                PeerMessage::Push { packed } => core.on_push(from, slot, &packed, now),
                PeerMessage::Forward { transaction } => core
                    .on_forward(from, slot, transaction, now)
                    .map(|_| Vec::new()),
                PeerMessage::Register(_) | PeerMessage::Heart(_) => Ok(Vec::new()),
            };
            match result {
                Ok(actions) => self.perform(i, actions),
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

    fn blocks(&self, i: usize) -> Vec<&Commit> {
        self.commits[i - 1].iter().filter(|c| c.block).collect()
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
    }
    assert!(sim.refused.is_empty(), "{:?}", sim.refused);
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
    // Round 1000 was empty and decided at its vote deadline (server 3 never
    // voted); round 1001 had a dead alpha, so there was none.
    assert_eq!(
        sim.core(1).committed().slot,
        1000,
        "empty rounds are committed too"
    );
}

#[test]
fn with_two_of_three_down_the_beta_finds_no_majority_and_stops() {
    let mut sim = Sim::new(3);
    sim.up[1] = false;
    sim.up[2] = false;
    // Round 999 closes at +700 and is decided at its vote deadline, +1200.
    sim.run_until(T0 + 1_199);
    assert!(sim.stops[0].is_none());
    sim.run_until(T0 + 1_200);
    let reason = sim.stops[0].clone().expect("server 1 stopped");
    assert!(
        reason.contains("no majority") && reason.contains("1 of 1 votes"),
        "{reason}"
    );
}

#[test]
fn a_failed_result_stops_the_servers_that_receive_it() {
    let mut core = core(2, 3, &genesis());
    let decision = Decision {
        consensus: None,
        agreeing: 1,
        voters: 2,
    };
    let actions = core
        .on_result(ServerId(1), 999, decision, T0 + 800)
        .unwrap();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Stop(r) if r.contains("found no majority")))
    );
}

#[test]
fn a_server_out_of_sync_is_pushed_the_database_and_rejoins() {
    // Server 3 starts from a different genesis: its hash disagrees.
    let mut sim = Sim::with_genesis(3, |i| {
        let mut accounts = genesis();
        if i == 3 {
            accounts[0].1 = 99;
        }
        accounts
    });
    sim.now = T0 + 10;
    sim.submit(1, payment(1, key(9), 30, T0 + 10)).unwrap();
    sim.run_until(T0 + SLOT + 600);
    assert_eq!(
        sim.out_of_sync[2], 2,
        "lost sync at RESULT, then asked the connector after the push"
    );
    assert!(
        sim.commits[2].iter().any(|c| c.installed),
        "server 3 installed the push"
    );
    let hashes = sim.hashes();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    // And it stays in consensus for the next round.
    sim.submit(2, payment(2, key(9), 5, sim.now)).unwrap();
    sim.run_until(T0 + 3 * SLOT + 600);
    assert_eq!(sim.core(3).committed().snapshot.get(&key(9)), Some(35));
}

#[test]
fn a_round_skips_invalid_payments_the_same_way_everywhere() {
    let mut followers = [core(2, 3, &genesis()), core(3, 3, &genesis())];
    let good = payment(1, key(9), 10, T0 + 5);
    let broke = payment(2, key(9), 500, T0 + 6);
    let stale = payment(3, key(9), 1, T0 - 5_000);
    let repeat = good;
    let mut expected = Balances::from_accounts(&genesis()).unwrap();
    expected.pay(&good.payer(), &good.payee(), 10).unwrap();
    let claimed = expected.hash();
    for core in &mut followers {
        let actions = core
            .on_round(
                ServerId(1),
                999,
                claimed,
                vec![good, broke, stale, repeat],
                T0 + 710,
            )
            .unwrap();
        let vote = actions.iter().find_map(|a| match a {
            Action::Send {
                message: PeerMessage::Vote { hash },
                to,
                ..
            } => Some((*hash, to.clone())),
            _ => None,
        });
        assert_eq!(vote, Some((claimed, Target::Only(vec![ServerId(1)]))));
    }
}

#[test]
fn a_round_from_the_wrong_server_is_refused() {
    let mut core = core(2, 3, &genesis());
    let err = core
        .on_round(ServerId(3), 999, Hash::default(), vec![], T0 + 710)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must come from server 1"), "{err}");
}

#[test]
fn a_replayed_round_is_refused() {
    let mut core = core(2, 3, &genesis());
    let hash = core.committed().hash;
    core.on_round(ServerId(1), 999, hash, vec![], T0 + 710)
        .unwrap();
    let again = core
        .on_round(ServerId(1), 999, hash, vec![], T0 + 720)
        .unwrap_err()
        .to_string();
    assert!(again.contains("already applied"), "{again}");
    let older = core
        .on_round(ServerId(3), 998, hash, vec![], T0 + 730)
        .unwrap_err()
        .to_string();
    assert!(older.contains("already applied"), "{older}");
}

#[test]
fn a_stale_or_future_round_is_refused() {
    let mut core = core(2, 3, &genesis());
    let hash = core.committed().hash;
    let stale = core
        .on_round(ServerId(2), 997, hash, vec![], T0 + 710)
        .unwrap_err()
        .to_string();
    assert!(stale.contains("stale"), "{stale}");
    let future = core
        .on_round(ServerId(3), 1001, hash, vec![], T0 + 710)
        .unwrap_err()
        .to_string();
    assert!(future.contains("future"), "{future}");
}

#[test]
fn a_result_from_anyone_but_the_beta_is_refused() {
    let mut core = core(2, 3, &genesis());
    let decision = Decision {
        consensus: None,
        agreeing: 0,
        voters: 0,
    };
    let err = core
        .on_result(ServerId(3), 999, decision, T0 + 800)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must come from server 1"), "{err}");
}

#[test]
fn a_push_that_does_not_match_the_consensus_is_refused() {
    let mut core = core(2, 3, &genesis());
    let err = core
        .on_push(ServerId(1), 999, &[], T0 + 800)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no result for it"), "{err}");
    let consensus = Hash([7; 32]);
    let decision = Decision {
        consensus: Some(consensus),
        agreeing: 2,
        voters: 3,
    };
    core.on_result(ServerId(1), 999, decision, T0 + 800)
        .unwrap();
    let mut other = Balances::from_accounts(&[(key(1), 1)]).unwrap();
    let err = core
        .on_push(ServerId(1), 999, other.pack(), T0 + 810)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not the consensus"), "{err}");
}

#[test]
fn a_late_round_drops_pending_payments_it_invalidates() {
    // Server 2 is the alpha of slot 1000 and has taken a payment when
    // ROUND(999) arrives late, spending the same payer's funds first.
    let mut core = core(2, 3, &genesis());
    let now = T0 + SLOT + 20;
    let mine = payment(1, key(9), 80, now);
    assert!(core.submit(mine, now).0.is_ok());
    let earlier = payment(1, key(8), 50, T0 + 5);
    let mut after = Balances::from_accounts(&genesis()).unwrap();
    after.pay(&earlier.payer(), &earlier.payee(), 50).unwrap();
    core.on_round(ServerId(1), 999, after.hash(), vec![earlier], now + 1)
        .unwrap();
    assert_eq!(core.pending_count(), 0);
    assert_eq!(core.tracked(&mine.id()), Some(Tracked::Lost { slot: 1000 }));
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
        Some(Tracked::Lost { slot: 999 })
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
        Some(Tracked::Lost { slot: 1000 })
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
        super::core::Core::new(ServerId(1), servers(1), schedule(1), committed(&genesis()));
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
    // Server 3 forwarded a payment, then fell out of sync and installed the
    // majority's database: it cannot tell whether the payment made it.
    let mut sim = Sim::new(3);
    sim.now = T0 + 10;
    let tx = payment(1, key(9), 5, T0 + 10);
    sim.submit(3, tx).unwrap();
    let mut other = Balances::from_accounts(&[(key(4), 4)]).unwrap();
    let hash = other.hash();
    let core3 = &mut sim.cores[2];
    core3.install(999, hash, other);
    assert_eq!(core3.tracked(&tx.id()), None);
    let decision = Decision {
        consensus: Some(hash),
        agreeing: 2,
        voters: 3,
    };
    core3
        .on_result(ServerId(2), 1000, decision, T0 + SLOT + 800)
        .unwrap();
    assert_eq!(core3.tracked(&tx.id()), None, "not reported lost");
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
    // Server 2 forwards eight payments to the alpha, whose round then
    // commits without any of them. The lost events leave the core in the
    // same order on every run: by payment id, not by a hash map's whim.
    let mut core = core(2, 3, &genesis());
    let mut ids = Vec::new();
    for client in 10..18 {
        let tx = payment(client, key(9), 5, T0 + 10);
        let (result, _) = core.submit(tx, T0 + 10);
        assert_eq!(result, Ok(Disposition::Forwarded(ServerId(1))));
        ids.push(tx.id());
    }
    let hash = core.committed().hash;
    core.on_round(ServerId(1), 999, hash, vec![], T0 + 710)
        .unwrap();
    let decision = Decision {
        consensus: Some(hash),
        agreeing: 3,
        voters: 3,
    };
    let actions = core
        .on_result(ServerId(1), 999, decision, T0 + 800)
        .unwrap();
    ids.sort();
    let lost: Vec<(TxId, TxState)> = ids.into_iter().map(|id| (id, TxState::Lost)).collect();
    assert_eq!(tx_events(&actions), lost);
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
            shutdown,
        },
        budgets: rota_listener::Budgets::new(),
        to_listener,
        listener_waker: waker(),
        to_peering,
        peering_waker: waker(),
        to_connector,
        connector_waker: waker(),
    };
    let me = payer(9);
    let core = Core::new(
        ServerId(1),
        ServerList::new(vec![me.public()]),
        schedule(1),
        start,
    );
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
        transactions: Vec::new(),
        block: false,
        installed: false,
    };
    vec![
        Action::Persist(Persist::Commit(commit)),
        Action::Send {
            to: Target::All,
            slot: 1_000,
            message: PeerMessage::Vote {
                hash: Hash([1; 32]),
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

//! One machine driven by hand: the test plays every other server with its
//! real key, and the clock.

use rota_peer::block::Position;
use rota_peer::wire::consensus::{Certificate, Certified, Header, Kind, Verified};
use rota_peer::{Hash, ServerId};

use super::super::{Output, Record, Refusal};
use super::*;

const S: Slot = 10;

/// A server that is not the alpha of slot S (server 1 when N = 1).
fn follower(k: &Keys) -> usize {
    (k.alpha(S) + 1) % k.n()
}

/// The servers other than `me`, alpha of S first.
fn others(k: &Keys, me: usize) -> Vec<usize> {
    let a = k.alpha(S);
    let mut v: Vec<usize> = std::iter::once(a)
        .chain((0..k.n()).filter(|i| *i != a))
        .filter(|i| *i != me)
        .collect();
    v.dedup();
    v
}

fn lock_slot(node: &Node) -> Option<Slot> {
    node.machine.lock().map(|l| l.header.slot())
}

#[test]
fn a_single_server_commits_its_own_round_at_once() {
    let k = Keys::new(1);
    let mut node = Node::new(&k, 0);
    let m = moments(&k.timing(), S);
    let sent = node.propose(S, &vec![1, 2], m.close);
    assert!(matches!(sent[0], Message::Round { .. }));
    assert_eq!(prevotes(&sent).len(), 1);
    assert_eq!(precommits(&sent).len(), 1);
    assert_eq!(
        certificates(&sent).len(),
        1,
        "the commit certificate, relayed"
    );
    let commit = &node.commits[0];
    assert_eq!(commit.slot(), S);
    assert_eq!(commit.from, 1);
    assert_eq!(commit.decides(S), Some(true));
    assert_eq!(commit.decides(S - 1), Some(false));
    assert_eq!(commit.certified.certificate.kind, Kind::Precommit);
    assert_eq!(node.machine.committed().base.slot, S);
}

#[test]
fn the_alpha_proposes_only_the_payments_that_apply_on_its_base() {
    let k = Keys::new(3);
    let mut node = Node::new(&k, k.alpha(S));
    let m = moments(&k.timing(), S);
    let sent = node.propose(S, &vec![1, 0, 2], m.close);
    let Message::Round { header, payments } = &sent[0] else {
        panic!("a round first: {sent:?}");
    };
    assert_eq!(payments, &vec![1, 2], "the payment 0 left out");
    assert_eq!(header.header.payments, root(&vec![1, 2]));
    assert_eq!(prevotes(&sent).len(), 1, "and it prevotes its own round");
}

#[test]
fn a_round_carrying_a_payment_that_does_not_apply_gets_no_prevote() {
    let k = Keys::new(3);
    let mut node = Node::new(&k, follower(&k));
    let m = moments(&k.timing(), S);
    // Its result is what the payments that apply give: only the payment 0
    // is wrong.
    let pay = vec![7, 0];
    let h = k.on_anchor(S, &pay);
    let sent = node.round(&h, &pay, m.voting);
    assert!(prevotes(&sent).is_empty(), "{sent:?}");
    let good = vec![7];
    let sent = node.round(
        &k.on_anchor(S + 3, &good),
        &good,
        moments(&k.timing(), S + 3).voting,
    );
    assert_eq!(prevotes(&sent).len(), 1, "a round whose payments all apply");
}

#[test]
fn the_fast_path_precommits_as_soon_as_all_n_prevotes_are_in() {
    for n in [3, 4, 5] {
        let k = Keys::new(n);
        let me = follower(&k);
        let mut node = Node::new(&k, me);
        let m = moments(&k.timing(), S);
        let pay = vec![7, 8];
        let h = k.on_anchor(S, &pay);
        let sent = node.round(&h, &pay, m.voting);
        assert_eq!(prevotes(&sent).len(), 1, "N={n}: its own prevote");
        let rest = others(&k, me);
        for (i, w) in rest.iter().enumerate() {
            let sent = node.prevote(k.prevote(*w, &h), m.voting);
            let last = i + 1 == rest.len();
            assert_eq!(
                precommits(&sent).len(),
                usize::from(last),
                "N={n}, prevote {i}"
            );
        }
        assert_eq!(
            lock_slot(&node),
            Some(S),
            "N={n}: the certificate locked it"
        );
        let q = k.list().majority();
        let all: Vec<usize> = (0..n).collect();
        for w in rest.iter().take(q - 1) {
            node.precommit(k.precommit(*w, &h, &all), m.voting);
        }
        assert_eq!(node.commits.len(), 1, "N={n}: q precommits commit");
        assert_eq!(node.commits[0].rounds[0].payments, pay);
    }
}

/// One prevote is lost on its way to this server: without all N, it waits
/// for P(s), then precommits on the certificate it holds, and the round
/// commits all the same.
#[test]
fn a_lost_prevote_moves_the_precommit_to_p_and_the_round_still_commits() {
    for n in [3, 4, 5] {
        let k = Keys::new(n);
        let me = follower(&k);
        let mut node = Node::new(&k, me);
        let m = moments(&k.timing(), S);
        let pay = vec![3];
        let h = k.on_anchor(S, &pay);
        node.round(&h, &pay, m.voting);
        let rest = others(&k, me);
        // All but the last prevote arrive; that one is lost.
        for w in &rest[..rest.len() - 1] {
            let sent = node.prevote(k.prevote(*w, &h), m.voting);
            assert!(precommits(&sent).is_empty(), "N={n}: not all N yet");
        }
        assert!(
            precommits(&node.tick(m.before_p)).is_empty(),
            "N={n}: before P"
        );
        let sent = node.tick(m.p);
        assert_eq!(
            precommits(&sent).len(),
            1,
            "N={n}: at P, on the certificate"
        );
        let lock_at = node.disk.iter().position(|r| matches!(r, Record::Lock(_)));
        let precommit_at = node
            .disk
            .iter()
            .position(|r| matches!(r, Record::Precommit(_)));
        assert!(lock_at < precommit_at, "N={n}: the lock is durable first");
        let q = k.list().majority();
        let prevoters: Vec<usize> = std::iter::once(me)
            .chain(rest.iter().copied())
            .take(q)
            .collect();
        for w in rest.iter().take(q - 1) {
            node.precommit(k.precommit(*w, &h, &prevoters), m.p + 5);
        }
        assert_eq!(node.commits.len(), 1, "N={n}");
        assert!(node.tick(m.p + 10).is_empty(), "N={n}: P(s) handled once");
    }
}

/// Prevote by prevote, the certificate completes after P(s): the server
/// locks on it and never precommits, whether the deadline was ticked or the
/// message is the first thing it sees after P(s).
#[test]
fn a_certificate_that_comes_after_p_is_a_lock_never_a_precommit() {
    let k = Keys::new(4);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let pay = vec![1];
    let h = k.on_anchor(S, &pay);
    let rest = others(&k, me);
    for ticked in [true, false] {
        let mut node = Node::new(&k, me);
        node.round(&h, &pay, m.voting);
        node.prevote(k.prevote(rest[0], &h), m.voting);
        if ticked {
            assert!(precommits(&node.tick(m.p)).is_empty());
        }
        let sent = node.prevote(k.prevote(rest[1], &h), m.p + 1);
        assert!(precommits(&sent).is_empty(), "ticked={ticked}");
        assert_eq!(lock_slot(&node), Some(S), "ticked={ticked}: a lock");
        assert!(node.disk.iter().any(|r| matches!(r, Record::Lock(_))));
        assert!(precommits(&node.tick(m.p + 100)).is_empty());
        assert!(!node.disk.iter().any(|r| matches!(r, Record::Precommit(_))));
    }
    // A relayed prevote certificate after P(s): the same.
    let mut node = Node::new(&k, me);
    node.round(&h, &pay, m.voting);
    node.tick(m.p);
    let sent = node.certified(k.certified(Kind::Prevote, &rest, &h), m.p + 1);
    assert!(precommits(&sent).is_empty());
    assert_eq!(lock_slot(&node), Some(S));
}

/// A server paused through P(s) and past the cutoff wakes with the
/// certificate in hand: too late to precommit on it (its precommit might
/// reach the others after the next round closed).
#[test]
fn a_server_that_wakes_after_the_cutoff_does_not_precommit() {
    let k = Keys::new(3);
    let t = k.timing();
    let me = follower(&k);
    let h = k.on_anchor(S, &vec![1]);
    let mut node = Node::new(&k, me);
    node.round(&h, &vec![1], moments(&t, S).voting);
    node.prevote(k.prevote(k.alpha(S), &h), moments(&t, S).voting);
    assert_eq!(lock_slot(&node), Some(S));
    assert!(precommits(&node.tick(t.precommit_cutoff(S))).is_empty());
    let mut on_time = Node::new(&k, me);
    on_time.round(&h, &vec![1], moments(&t, S).voting);
    on_time.prevote(k.prevote(k.alpha(S), &h), moments(&t, S).voting);
    assert_eq!(
        precommits(&on_time.tick(t.precommit_cutoff(S) - 1)).len(),
        1
    );
}

#[test]
fn a_locked_server_refuses_a_round_off_its_lock_and_sends_its_lock_to_all() {
    let k = Keys::new(4);
    let t = k.timing();
    let me = 0;
    let mut node = Node::new(&k, me);
    // Slot 10: a certificate on H10 and no commit.
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], moments(&t, 10).voting);
    for w in [1, 2] {
        node.prevote(k.prevote(w, &h10), moments(&t, 10).voting);
    }
    assert_eq!(lock_slot(&node), Some(10));
    // Slot 11: a round on the anchor, as if slot 10 never happened.
    let m11 = moments(&t, 11);
    let y11 = k.on_anchor(11, &vec![11]);
    let sent = node.round(&y11, &vec![11], m11.voting);
    assert!(prevotes(&sent).is_empty(), "off the lock");
    let locks = certificates(&sent);
    assert_eq!(locks.len(), 1, "its lock, to every server");
    assert_eq!(locks[0].header.digest(), h10.digest());
    assert_eq!(locks[0].certificate.kind, Kind::Prevote);
    assert!(
        certificates(&node.tick(m11.voting + 1)).is_empty(),
        "sent once"
    );
    // The other servers certify Y11 all the same (they were not locked).
    // Slot 12 builds on Y11, whose certificate is of a slot above the
    // lock's: prevoted, though its chain does not hold H10.
    let y11_cert = k.certified(Kind::Prevote, &[1, 2, 3], &y11);
    let m12 = moments(&t, 12);
    let h12 = k.on(12, &y11_cert, &vec![12]);
    let sent = node.round(&h12, &vec![12], m12.voting);
    assert_eq!(prevotes(&sent).len(), 1);
    assert_eq!(
        lock_slot(&node),
        Some(11),
        "the base's certificate moved the lock up"
    );
    // Slot 13 on H10 again, below the lock now: refused, lock sent.
    let h10_cert = k.certified(Kind::Prevote, &[0, 1, 2], &h10);
    let h13 = k.on(13, &h10_cert, &vec![13]);
    let sent = node.round(&h13, &vec![13], moments(&t, 13).voting);
    assert!(prevotes(&sent).is_empty());
    assert_eq!(
        certificates(&sent)[0].header.slot(),
        11,
        "the lock on slot 11"
    );
}

#[test]
fn an_equivocating_alpha_gets_no_precommit_and_both_headers_are_kept_as_evidence() {
    for n in [3, 4, 5] {
        let k = Keys::new(n);
        let me = follower(&k);
        let m = moments(&k.timing(), S);
        let mut node = Node::new(&k, me);
        let h = k.on_anchor(S, &vec![1]);
        let h2 = k.on_anchor(S, &vec![2]);
        node.round(&h, &vec![1], m.voting);
        // The alpha and enough others prevote H: a certificate.
        let rest = others(&k, me);
        let q = k.list().majority();
        for w in rest.iter().take(q - 1) {
            node.prevote(k.prevote(*w, &h), m.voting);
        }
        assert_eq!(lock_slot(&node), Some(S), "N={n}");
        // The last server got the other header and prevoted it.
        let last = *rest.last().unwrap();
        let out = node
            .machine
            .on_prevote(k.prevote(last, &h2), m.voting, &mut node.ledger)
            .unwrap();
        let evidence: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Evidence(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(evidence.len(), 1, "N={n}");
        assert_eq!(evidence[0].first, *h);
        assert_eq!(evidence[0].second, *h2);
        let sent = node.absorb(out);
        assert!(
            sent.iter().any(|m| matches!(m, Message::Evidence(_))),
            "published"
        );
        assert!(
            precommits(&node.tick(m.p)).is_empty(),
            "N={n}: no precommit"
        );
        assert!(node.commits.is_empty());
    }
}

#[test]
fn a_replayed_message_changes_nothing() {
    let k = Keys::new(3);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let mut node = Node::new(&k, me);
    let pay = vec![5];
    let h = k.on_anchor(S, &pay);
    node.round(&h, &pay, m.voting);
    let alpha = k.alpha(S);
    let prevote = k.prevote(alpha, &h);
    let out = node.prevote(prevote.clone(), m.voting);
    assert_eq!(precommits(&out).len(), 0, "two of three: no fast path");
    let disk = node.disk.len();
    assert!(
        node.prevote(prevote.clone(), m.voting).is_empty(),
        "a duplicate"
    );
    assert_eq!(node.disk.len(), disk);
    node.tick(m.p);
    let precommit = k.precommit(alpha, &h, &[alpha, me]);
    node.precommit(precommit.clone(), m.p + 1);
    assert_eq!(node.commits.len(), 1);
    // Every message of the decided slot, replayed, is refused and does nothing.
    let later = m.p + 3_000;
    let l = &mut node.ledger;
    let decided = Refusal::Decided {
        slot: S,
        committed: S,
    };
    assert_eq!(
        node.machine
            .on_round(h.clone(), pay.clone(), later, l)
            .unwrap_err(),
        decided
    );
    assert_eq!(
        node.machine.on_prevote(prevote, later, l).unwrap_err(),
        decided
    );
    assert_eq!(
        node.machine.on_precommit(precommit, later, l).unwrap_err(),
        decided
    );
    let commit = node.commits[0].certified.clone();
    assert_eq!(
        node.machine.on_certified(commit, later, l).unwrap_err(),
        decided
    );
    assert_eq!(node.commits.len(), 1);
}

#[test]
fn a_restarted_server_never_votes_twice_in_a_slot() {
    let k = Keys::new(3);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let h = k.on_anchor(S, &vec![1]);
    let h2 = k.on_anchor(S, &vec![2]);
    let mut node = Node::new(&k, me);
    let first = node.round(&h, &vec![1], m.voting);
    let mine = prevotes(&first)[0].clone();

    // Restarted: neither the same round nor another header of the slot
    // gets a second prevote, and what it sends again is the one it signed.
    let mut other = node.restart(&k);
    assert_eq!(other.machine.voted(), Some(S));
    assert!(prevotes(&other.round(&h2, &vec![2], m.voting + 1)).is_empty());
    let mut node = node.restart(&k);
    assert!(prevotes(&node.round(&h, &vec![1], m.voting + 1)).is_empty());
    let again = node.absorb(node.machine.resend());
    assert_eq!(prevotes(&again), vec![&mine]);

    // It still precommits on the certificate (it voted in no later slot),
    // once: restarted again, it signs no second precommit.
    node.prevote(k.prevote(k.alpha(S), &h), m.voting + 3);
    let sent = node.tick(m.p);
    assert_eq!(precommits(&sent).len(), 1);
    let mine = precommits(&sent)[0].clone();
    let mut node = node.restart(&k);
    assert!(precommits(&node.tick(m.p + 1)).is_empty());
    assert!(
        precommits(&node.certified(k.certified(Kind::Prevote, &[0, 1], &h), m.p + 2)).is_empty()
    );
    let again = node.absorb(node.machine.resend());
    assert_eq!(precommits(&again), vec![&mine]);
}

#[test]
fn a_restarted_server_keeps_its_lock() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], moments(&t, 10).voting);
    node.prevote(k.prevote(k.alpha(10), &h10), moments(&t, 10).voting);
    assert_eq!(lock_slot(&node), Some(10));
    let mut node = node.restart(&k);
    assert_eq!(lock_slot(&node), Some(10));
    let y11 = k.on_anchor(11, &vec![11]);
    let sent = node.round(&y11, &vec![11], moments(&t, 11).voting);
    assert!(prevotes(&sent).is_empty(), "off the lock it kept");
    assert_eq!(certificates(&sent)[0].header.digest(), h10.digest());
    // And it builds on its locked chain, its payments kept too.
    let mut alpha = Node::new(&k, k.alpha(10));
    alpha.round(&h10, &vec![10], moments(&t, 10).voting);
    alpha.prevote(k.prevote(0, &h10), moments(&t, 10).voting);
    let mut alpha = alpha.restart(&k);
    let slot = (11..).find(|s| k.alpha(*s) == k.alpha(10)).unwrap();
    let sent = alpha.propose(slot, &vec![1], t.close(slot));
    let Message::Round { header, .. } = &sent[0] else {
        panic!("a round first");
    };
    assert_eq!(header.header.base.digest, h10.digest());
}

/// The clock steps back after this server prevoted slot S+1: all N
/// prevotes of slot S arrive "before P(S)", yet it voted in a later slot,
/// so it does not precommit S.
#[test]
fn no_precommit_for_a_slot_after_voting_in_a_later_one() {
    let k = Keys::new(3);
    let t = k.timing();
    let me = follower(&k);
    let mut node = Node::new(&k, me);
    let h = k.on_anchor(S, &vec![1]);
    let c = k.certified(Kind::Prevote, &[0, 1, 2], &h);
    node.round(&h, &vec![1], moments(&t, S).voting);
    let next = k.on(S + 1, &c, &vec![2]);
    assert_eq!(
        prevotes(&node.round(&next, &vec![2], moments(&t, S + 1).voting)).len(),
        1
    );
    let back = moments(&t, S).voting;
    for w in others(&k, me) {
        assert!(precommits(&node.prevote(k.prevote(w, &h), back)).is_empty());
    }
}

/// The prevote is durable but the crash comes before it leaves: after the
/// restart the server sends that prevote, and no other.
#[test]
fn a_vote_durable_but_not_sent_is_sent_after_the_restart() {
    let k = Keys::new(3);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let mut node = Node::new(&k, me);
    let h = k.on_anchor(S, &vec![1]);
    let out = node
        .machine
        .on_round(h.clone(), vec![1], m.voting, &mut node.ledger)
        .unwrap();
    // Only the records reach the disk.
    let mut signed = None;
    for o in out {
        match o {
            Output::Persist(record) => node.disk.push(record),
            Output::Send(Message::Prevote(p)) => signed = Some(p),
            _ => {}
        }
    }
    let mut node = node.restart(&k);
    assert!(prevotes(&node.round(&h, &vec![1], m.voting + 1)).is_empty());
    let again = node.absorb(node.machine.resend());
    assert_eq!(prevotes(&again), vec![&signed.unwrap()]);
}

#[test]
fn a_restarted_alpha_never_signs_a_second_header_for_its_slot() {
    let k = Keys::new(3);
    let a = k.alpha(S);
    let m = moments(&k.timing(), S);
    let mut node = Node::new(&k, a);
    node.propose(S, &vec![1], m.close);
    let mut node = node.restart(&k);
    let err = node
        .machine
        .propose(S, vec![2], m.close + 1, &mut node.ledger)
        .unwrap_err();
    assert_eq!(
        err,
        Refusal::AlreadyProposed {
            slot: S,
            proposed: S
        }
    );
}

#[test]
fn forged_certificates_never_reach_the_machine_and_a_real_one_commits() {
    let k = Keys::new(4);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let list = k.list();
    let pay = vec![9];
    let h = k.on_anchor(S, &pay);
    let good = k.certified(Kind::Precommit, &[0, 1, 2], &h).into_inner();
    let mut forgeries: Vec<Certified> = Vec::new();
    let mut few = good.clone();
    few.certificate.signatures.truncate(2);
    forgeries.push(few);
    let mut duplicate = good.clone();
    duplicate.certificate.signatures[2] = duplicate.certificate.signatures[1];
    forgeries.push(duplicate);
    let mut unknown = good.clone();
    unknown.certificate.signatures[2].0 = ServerId(5);
    forgeries.push(unknown);
    let mut bad = good.clone();
    bad.certificate.signatures[0].1[5] ^= 1;
    forgeries.push(bad);
    let mut prevotes_as_commit = k.certified(Kind::Prevote, &[0, 1, 2], &h).into_inner();
    prevotes_as_commit.certificate.kind = Kind::Precommit;
    forgeries.push(prevotes_as_commit);
    for forged in forgeries {
        let bytes = forged.encode();
        let decoded = Certified::decode(&bytes, 4).and_then(|c| c.verify(CHAIN, &list));
        assert!(decoded.is_err(), "{forged:?}");
    }
    let mut node = Node::new(&k, me);
    node.round(&h, &pay, m.voting);
    let real = Certified::decode(&good.encode(), 4)
        .unwrap()
        .verify(CHAIN, &list)
        .unwrap();
    node.certified(real, m.voting);
    assert_eq!(
        node.commits.len(),
        1,
        "a relayed commit certificate commits"
    );
}

#[test]
fn a_later_commit_certificate_commits_every_round_of_its_chain() {
    let k = Keys::new(3);
    let t = k.timing();
    let me = 0;
    let mut node = Node::new(&k, me);
    // Slot 10: certified (locked) but its precommits are lost.
    let m10 = moments(&t, 10);
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], m10.voting);
    node.prevote(k.prevote(k.alpha(10), &h10), m10.voting);
    node.tick(m10.p);
    assert!(node.commits.is_empty());
    // Slot 11 builds on it and commits.
    let m11 = moments(&t, 11);
    let c10 = k.certified(Kind::Prevote, &[0, 1], &h10);
    let h11 = k.on(11, &c10, &vec![11]);
    node.round(&h11, &vec![11], m11.voting);
    for w in [1, 2] {
        node.prevote(k.prevote(w, &h11), m11.voting);
    }
    node.precommit(k.precommit(2, &h11, &[0, 1, 2]), m11.voting);
    assert_eq!(node.commits.len(), 1);
    let commit = &node.commits[0];
    let slots: Vec<Slot> = commit.rounds.iter().map(|r| r.header.slot()).collect();
    assert_eq!(slots, vec![10, 11]);
    assert_eq!(commit.decides(10), Some(true), "committed through slot 11");
    assert_eq!(commit.decides(9), Some(false));
    assert_eq!(commit.decides(12), None);
}

#[test]
fn a_relayed_commit_waits_for_the_rounds_it_lacks_and_asks_for_them() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![10]);
    let c10 = k.certified(Kind::Prevote, &[1, 2], &h10);
    let h11 = k.on(11, &c10, &vec![11]);
    let commit = k.certified(Kind::Precommit, &[1, 2], &h11);
    let now = moments(&t, 11).p + 50;
    let out = node
        .machine
        .on_certified(commit, now, &mut node.ledger)
        .unwrap();
    let asked: Vec<Slot> = out
        .iter()
        .filter_map(|o| match o {
            Output::Missing { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![10], "the base header is unknown");
    node.absorb(out);
    assert!(node.commits.is_empty());
    // The rounds come, fetched, late: each is kept; the chain commits.
    node.round(&h10, &vec![10], now + 1);
    assert!(
        node.commits.is_empty(),
        "slot 11's payments are still missing"
    );
    node.round(&h11, &vec![11], now + 2);
    assert_eq!(node.commits.len(), 1);
    assert_eq!(node.commits[0].rounds.len(), 2);
}

/// Servers left on different committed rounds catch up only from a
/// certificate; while nothing later commits, a server relays its own once
/// a slot.
#[test]
fn a_server_whose_commits_stall_relays_its_commit_certificate_once_a_slot() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], moments(&t, 10).voting);
    let commit = k.certified(Kind::Precommit, &[1, 2], &h10);
    node.certified(commit.clone(), moments(&t, 10).voting + 1);
    assert_eq!(node.commits.len(), 1);
    let start = |slot: Slot| t.schedule.start(slot);
    // Slots 11 and 12 may still commit round 11 in a working network.
    for slot in [11, 12] {
        let sent = node.tick(start(slot));
        assert!(certificates(&sent).is_empty(), "slot {slot}: {sent:?}");
    }
    // From slot 13 on, nothing later committed: once a slot, not more.
    for slot in [13, 14] {
        let sent = node.tick(start(slot));
        assert_eq!(certificates(&sent), vec![&commit.clone().into_inner()]);
        assert!(certificates(&node.tick(start(slot) + 10)).is_empty());
    }
}

/// An empty round needs nothing fetched: its header names the root of no
/// payments. A server that restarted keeps no committed round to answer a
/// `want` with, so one behind would otherwise never commit past it.
#[test]
fn an_empty_round_commits_from_its_certificate_alone() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![]);
    let commit = k.certified(Kind::Precommit, &[1, 2], &h10);
    let out = node
        .machine
        .on_certified(commit, moments(&t, 10).p + 50, &mut node.ledger)
        .unwrap();
    assert!(
        !out.iter().any(|o| matches!(o, Output::Missing { .. })),
        "nothing to fetch: {out:?}"
    );
    node.absorb(out);
    assert_eq!(node.commits.len(), 1);
    assert_eq!(node.commits[0].rounds.len(), 1);
    assert!(node.commits[0].rounds[0].payments.is_empty());
}

#[test]
fn a_slot_is_lost_only_when_a_later_round_commits_without_it() {
    let k = Keys::new(3);
    let t = k.timing();
    let me = 0;
    let mut node = Node::new(&k, me);
    // Slot 10: only this server prevotes; no certificate, nothing decided.
    let m10 = moments(&t, 10);
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], m10.voting);
    node.tick(m10.p);
    node.tick(t.close(11) - 1);
    assert!(
        node.commits.is_empty(),
        "a slot without a commit certificate decides nothing"
    );
    // Slot 11 builds on the anchor and commits: slot 10 is lost.
    let m11 = moments(&t, 11);
    let h11 = k.on_anchor(11, &vec![11]);
    // This server voted in 10 only; it may prevote 11 (a later slot).
    node.round(&h11, &vec![11], m11.voting);
    let commit = k.certified(Kind::Precommit, &[1, 2], &h11);
    node.certified(commit, m11.voting + 1);
    let c = &node.commits[0];
    assert_eq!(c.decides(10), Some(false), "lost");
    assert_eq!(c.decides(11), Some(true));
}

#[test]
fn a_round_that_comes_early_is_held_until_its_close_and_one_after_v_is_not_prevoted() {
    let k = Keys::new(3);
    let t = k.timing();
    let me = follower(&k);
    let h = k.on_anchor(S, &vec![1]);
    let mut node = Node::new(&k, me);
    assert!(prevotes(&node.round(&h, &vec![1], t.close(S) - 150)).is_empty());
    assert_eq!(
        node.machine.next_deadline(t.close(S) - 150),
        Some(t.close(S))
    );
    assert_eq!(prevotes(&node.tick(t.close(S))).len(), 1);

    let mut late = Node::new(&k, me);
    assert!(prevotes(&late.round(&h, &vec![1], t.prevote_deadline(S))).is_empty());
    assert!(prevotes(&late.tick(t.prevote_deadline(S) + 1)).is_empty());
    // It still locks on what the others certify.
    late.precommit(
        k.precommit(k.alpha(S), &h, &[0, 1, 2]),
        t.precommit_at(S) + 1,
    );
    assert_eq!(lock_slot(&late), Some(S));
}

#[test]
fn a_round_whose_payments_do_not_give_its_result_is_not_prevoted() {
    let k = Keys::new(3);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let good = k.on_anchor(S, &vec![1]);
    let mut header: Header = good.header;
    header.result = Hash([0xee; 32]);
    let lie = Verified::sign_header(&k.keys[k.alpha(S)], CHAIN, header, None);
    let mut node = Node::new(&k, me);
    assert!(prevotes(&node.round(&lie, &vec![1], m.voting)).is_empty());
    let err = node
        .machine
        .on_round(good.clone(), vec![2], m.voting, &mut node.ledger)
        .unwrap_err();
    assert_eq!(err, Refusal::PaymentsMismatch { slot: S });
}

#[test]
fn a_round_that_misplaces_its_block_in_the_chain_is_not_prevoted() {
    let k = Keys::new(3);
    let t = k.timing();
    let shape = t.schedule.shape();
    // Slot 10 has payments: the chain stands at block 1 after it.
    let h10 = k.on_anchor(10, &vec![10]);
    assert_eq!(h10.header.base.chain.height, 0, "the anchor has no block");
    // A server that holds round 10 (each sees one header of slot 11: two
    // would be the alpha equivocating).
    let holder = || {
        let mut node = Node::new(&k, 0);
        node.round(&h10, &vec![10], moments(&t, 10).voting);
        node
    };
    let c10 = k.certified(Kind::Prevote, &[1, 2], &h10);
    let good = k.on(11, &c10, &vec![11]);
    assert_eq!(good.header.base.chain, h10.header.after(shape));
    assert_eq!(good.header.base.chain.height, 1);
    // The same round, placed as if slot 10 had made no block, or another.
    let placed = |chain| {
        let mut header: Header = good.header;
        header.base.chain = chain;
        Verified::sign_header(&k.keys[k.alpha(11)], CHAIN, header, Some(c10.certificate()))
    };
    let m11 = moments(&t, 11);
    let lies = [
        h10.header.base.chain,
        Position {
            height: 1,
            block: Hash([0xee; 32]),
        },
        Position {
            height: 2,
            block: good.header.base.chain.block,
        },
    ];
    for chain in lies {
        let lie = placed(chain);
        assert!(
            prevotes(&holder().round(&lie, &vec![11], m11.voting)).is_empty(),
            "{chain:?}"
        );
    }
    let sent = holder().round(&good, &vec![11], m11.voting);
    assert_eq!(prevotes(&sent).len(), 1, "the true placement is prevoted");
}

#[test]
fn a_round_on_an_unknown_base_is_asked_for_and_prevoted_once_it_comes() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![10]);
    let c10 = k.certified(Kind::Prevote, &[1, 2], &h10);
    let h11 = k.on(11, &c10, &vec![11]);
    let m11 = moments(&t, 11);
    let out = node
        .machine
        .on_round(h11.clone(), vec![11], m11.voting, &mut node.ledger)
        .unwrap();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Missing { slot: 10, .. }))
    );
    assert!(prevotes(&node.absorb(out)).is_empty());
    let sent = node.round(&h10, &vec![10], m11.voting + 1);
    assert_eq!(prevotes(&sent).len(), 1);
    assert_eq!(prevotes(&sent)[0].header.slot(), 11);
}

#[test]
fn certificates_are_assembled_only_from_a_majority() {
    let k = Keys::new(5);
    let h = k.on_anchor(S, &vec![1]);
    let votes = [k.vote(0, Kind::Prevote, &h), k.vote(1, Kind::Prevote, &h)];
    assert!(Verified::<Certificate>::assemble(&votes, 3).is_none());
}

/// More servers than the protocol tolerates sign a commit that forgets a
/// committed round: the server halts rather than go on, and takes nothing
/// more.
#[test]
fn a_commit_that_conflicts_with_the_committed_round_halts_the_machine() {
    let k = Keys::new(3);
    let t = k.timing();
    let mut node = Node::new(&k, 0);
    let h10 = k.on_anchor(10, &vec![10]);
    node.round(&h10, &vec![10], moments(&t, 10).voting);
    node.certified(
        k.certified(Kind::Precommit, &[1, 2], &h10),
        moments(&t, 10).voting,
    );
    assert_eq!(node.commits.len(), 1);
    let fork = k.on_anchor(11, &vec![11]);
    let now = moments(&t, 11).voting;
    let l = &mut node.ledger;
    let out = node
        .machine
        .on_certified(k.certified(Kind::Precommit, &[1, 2], &fork), now, l)
        .unwrap();
    let halts: Vec<&String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Halt(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(halts.len(), 1, "{out:?}");
    assert!(
        halts[0].contains("conflicts with the committed round of slot 10"),
        "{}",
        halts[0]
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Commit(_))));
    let again = node
        .machine
        .on_round(fork, vec![11], now + 1, l)
        .unwrap_err();
    assert_eq!(again, Refusal::Halted);
    assert!(node.machine.tick(now + 2, l).is_empty());
}

/// Evidence is durable: a server that restarts between seeing two headers
/// for a slot and P(s) still precommits neither.
#[test]
fn a_restarted_server_remembers_the_evidence() {
    let k = Keys::new(3);
    let me = follower(&k);
    let m = moments(&k.timing(), S);
    let h = k.on_anchor(S, &vec![1]);
    let h2 = k.on_anchor(S, &vec![2]);
    let mut node = Node::new(&k, me);
    node.round(&h, &vec![1], m.voting);
    let other = (0..3).find(|i| *i != me && *i != k.alpha(S)).unwrap();
    let sent = node.prevote(k.prevote(other, &h2), m.voting);
    assert!(sent.iter().any(|m| matches!(m, Message::Evidence(_))));
    assert!(node.disk.iter().any(|r| matches!(r, Record::Evidence(_))));
    let mut node = node.restart(&k);
    node.prevote(k.prevote(k.alpha(S), &h), m.voting + 1);
    assert_eq!(lock_slot(&node), Some(S), "a certificate on H");
    assert!(precommits(&node.tick(m.p)).is_empty());
}

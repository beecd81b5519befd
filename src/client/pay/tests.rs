//! The decisions of `rota pay`, without a socket: when to offer the same
//! bytes again, when to wait for certainty, when to sign a new payment.

use super::*;

const TIMES: Times = Times {
    resend_until: 1_000,
    deadline: 5_000,
};

fn taken() -> Option<(ServerId, Disposition)> {
    Some((ServerId(2), Disposition::Forwarded(ServerId(1))))
}

/// Offered once; the alpha did not answer and the others said it is down.
fn unanswered() -> Seen {
    Seen {
        offers: 1,
        delivered: true,
        refusal: Some("server 2: payment refused: alpha down: ...".into()),
        ..Seen::default()
    }
}

/// Offered once; every server refused it (the alpha is known down).
fn refused_everywhere() -> Seen {
    Seen {
        offers: 1,
        refusal: Some("server 2: payment refused: alpha down: ...".into()),
        ..Seen::default()
    }
}

fn with_status(seen: Seen, status: TxStatus) -> Seen {
    Seen {
        status: Some(status),
        ..seen
    }
}

#[test]
fn a_new_payment_is_offered_once_even_past_its_window() {
    assert_eq!(next_step(0, true, &TIMES, &Seen::default()), Step::Offer);
    assert_eq!(
        next_step(9_999, false, &TIMES, &Seen::default()),
        Step::Offer
    );
}

#[test]
fn the_same_bytes_are_offered_again_while_no_server_took_them_and_they_can_be_taken() {
    for seen in [unanswered(), refused_everywhere()] {
        assert_eq!(next_step(999, true, &TIMES, &seen), Step::Offer, "{seen:?}");
        assert_eq!(
            next_step(999, false, &TIMES, &seen),
            Step::Offer,
            "{seen:?}"
        );
    }
}

#[test]
fn a_payment_a_server_took_is_not_offered_again() {
    let seen = Seen {
        offers: 1,
        taken: taken(),
        delivered: true,
        ..Seen::default()
    };
    assert_eq!(next_step(10, true, &TIMES, &seen), Step::Poll);
    assert_eq!(next_step(10, false, &TIMES, &seen), Step::End(End::Done));
}

#[test]
fn a_payment_a_server_may_hold_is_followed_not_signed_again() {
    // The alpha got the bytes and did not answer: waiting, with or without
    // --wait, until a server says what became of them.
    for wait in [true, false] {
        assert_eq!(next_step(1_000, wait, &TIMES, &unanswered()), Step::Poll);
        let pending = with_status(unanswered(), TxStatus::Pending);
        assert_eq!(next_step(4_999, wait, &TIMES, &pending), Step::Poll);
        let unknown = with_status(unanswered(), TxStatus::Unknown);
        assert_eq!(next_step(4_999, wait, &TIMES, &unknown), Step::Poll);
    }
}

#[test]
fn a_payment_still_pending_at_the_deadline_is_given_up_not_signed_again() {
    let pending = Seen {
        taken: taken(),
        status: Some(TxStatus::Pending),
        ..unanswered()
    };
    assert_eq!(
        next_step(5_000, true, &TIMES, &pending),
        Step::End(End::GiveUp)
    );
    assert_eq!(
        next_step(5_000, false, &TIMES, &unanswered()),
        Step::End(End::GiveUp)
    );
}

#[test]
fn a_payment_no_server_can_hold_is_signed_again_once_its_window_is_over() {
    let seen = refused_everywhere();
    assert_eq!(
        next_step(1_000, true, &TIMES, &seen),
        Step::End(End::Resign)
    );
    assert_eq!(
        next_step(1_000, false, &TIMES, &seen),
        Step::End(End::Resign)
    );
}

#[test]
fn a_lost_payment_is_signed_again_at_once() {
    for seen in [
        Seen {
            taken: taken(),
            ..unanswered()
        },
        unanswered(),
    ] {
        let lost = with_status(seen, TxStatus::Lost { slot: 12 });
        for now in [0, 999, 1_000, 6_000] {
            assert_eq!(next_step(now, true, &TIMES, &lost), Step::End(End::Resign));
        }
    }
}

#[test]
fn a_committed_payment_is_done_whoever_said_so() {
    let committed = TxStatus::Committed { block: 3, slot: 11 };
    for seen in [
        unanswered(),
        Seen {
            taken: taken(),
            ..unanswered()
        },
    ] {
        let seen = with_status(seen, committed);
        for now in [0, 999, 6_000] {
            assert_eq!(next_step(now, true, &TIMES, &seen), Step::End(End::Done));
        }
    }
}

#[test]
fn the_resend_window_ends_at_the_close_or_when_the_timestamp_leaves_the_tolerance() {
    let schedule = Schedule {
        slot_ms: 1_000,
        blackout_ms: 300,
        tolerance_ms: 100,
        servers: 3,
        difficulty: 0,
    };
    let early = Times::of(&schedule, 2, 10, 10_050);
    assert_eq!(early.resend_until, 10_150);
    // Slot 10 may be decided by round 12 when the alpha of 11 is down: its
    // vote deadline (close 12_700 + 500) and two slots more.
    assert_eq!(early.deadline, 15_200);
    let late = Times::of(&schedule, 2, 10, 10_650);
    assert_eq!(late.resend_until, 10_700, "the close of slot 10");
    let alone = Schedule {
        servers: 1,
        difficulty: 0,
        ..schedule
    };
    assert_eq!(Times::of(&alone, 1, 10, 10_050).deadline, 14_200);
}

#[test]
fn a_new_payment_says_why_the_last_one_is_not_pending() {
    let tx = Transaction::sign(
        "test",
        &Keypair::from_seed(&[1; 32]),
        PublicKey([2; 32]),
        3,
        4,
    );
    let mut payment = Payment {
        tx,
        slot: 10,
        times: TIMES,
        seen: with_status(unanswered(), TxStatus::Lost { slot: 12 }),
    };
    assert_eq!(
        payment.why_resign(),
        format!("payment {} was lost (decided by slot 12)", tx.id())
    );
    payment.seen = refused_everywhere();
    assert!(
        payment
            .why_resign()
            .starts_with(&format!("no server took payment {} (server 2: ", tx.id())),
        "{}",
        payment.why_resign()
    );
}

#[test]
fn a_refusal_is_kept_to_a_bounded_length_on_a_character_boundary() {
    let long = "é".repeat(1_000);
    let cut = bounded(&long);
    assert!(cut.len() <= MAX_REFUSAL);
    assert!(cut.len() >= MAX_REFUSAL - 1);
    assert_eq!(bounded("short"), "short");
}

#[test]
fn a_payment_left_pending_is_named_with_how_to_check_it() {
    let id = TxId::of(b"a payment");
    let note = still_pending(id);
    assert!(
        note.contains(&format!("payment {id} is still pending")),
        "{note}"
    );
    assert!(note.contains(&format!("`rota status {id}`")), "{note}");
}

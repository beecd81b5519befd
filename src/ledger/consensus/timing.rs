//! The deadlines of a slot's vote, V(s) and P(s), and the bounds they
//! assume.
//!
//! ```text
//!   close(s)        V(s)          P(s)        cutoff(s)      close(s+1)
//!      |-- slot/4 ----|-- slot/4 ----|-- slot/4 ----|-- slot/4 ----|
//!      ROUND(s) sent   last prevote   precommits     last late      the next
//!                                     on a cert      P(s) tick      round closes
//! ```
//!
//! With `delay` the bound on a message's travel (the time to apply a round
//! counted in it) and `clock` the bound on two servers' clocks apart, the
//! three inequalities are:
//!
//! 1. close(s) + delay + clock <= V(s): ROUND(s), sent at the beta's close,
//!    reaches and is applied by every server before its V(s);
//! 2. V(s) + delay + clock <= P(s): every prevote, sent before the voter's
//!    V(s), reaches every server before its P(s), so a second header for s
//!    is seen before anyone precommits on the first;
//! 3. cutoff(s) + delay + clock <= close(s+1): every precommit, and the
//!    prevote certificate it carries, reaches every server before the next
//!    round closes, so the next beta builds on it and no server prevotes a
//!    later round without having locked on it.
//!
//! A precommit on the P(s) path is taken at the first tick at or after
//! P(s), and never after cutoff(s): a server that wakes later (a long
//! pause) takes the certificate as a lock only. Each gap is a quarter slot,
//! so all three hold when delay + clock <= slot/4. rota takes the clock
//! bound to be `schedule.tolerance_ms`, the bound the payment windows
//! already assume; what is left is the delay bound, [`Timing::delay_bound`]:
//! 10 s with the defaults (60 s slots, 5 s tolerance), 750 ms on the 5 s
//! test rig of `conf/rig` (500 ms tolerance).
//!
//! Only safety against one dishonest server with an odd N rests on these
//! bounds; the deadlines themselves are read from each server's own clock
//! and decide nothing about what is valid.

use rota_peer::schedule::Schedule;
use rota_peer::{Millis, ServerId, Slot};

/// A chain's slot timings, and the deadlines of its votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub schedule: Schedule,
    /// How far apart two servers' clocks may be, in milliseconds.
    pub clock_ms: u64,
}

impl Timing {
    /// The deadlines of `schedule`, taking its tolerance as the clock bound.
    pub fn new(schedule: Schedule) -> Timing {
        Timing {
            schedule,
            clock_ms: schedule.tolerance_ms,
        }
    }

    fn quarter(&self) -> u64 {
        self.schedule.slot_ms / 4
    }

    pub fn slot_at(&self, now: Millis) -> Slot {
        self.schedule.slot_at(now)
    }

    pub fn alpha(&self, slot: Slot) -> ServerId {
        self.schedule.alpha(slot)
    }

    /// When the beta of slot `s` closes its round and sends it.
    pub fn close(&self, slot: Slot) -> Millis {
        self.schedule.close(slot)
    }

    /// V(s): a server prevotes ROUND(s) only before this.
    pub fn prevote_deadline(&self, slot: Slot) -> Millis {
        self.close(slot).saturating_add(self.quarter())
    }

    /// P(s): without all N prevotes, a server precommits on a certificate
    /// it holds at this moment.
    pub fn precommit_at(&self, slot: Slot) -> Millis {
        self.close(slot).saturating_add(2 * self.quarter())
    }

    /// The last moment a late tick may still take the P(s) precommit.
    pub fn precommit_cutoff(&self, slot: Slot) -> Millis {
        self.close(slot).saturating_add(3 * self.quarter())
    }

    /// The largest message delay (applying a round included) under which
    /// all three inequalities hold.
    pub fn delay_bound(&self) -> u64 {
        self.quarter().saturating_sub(self.clock_ms)
    }

    /// Refuses timings that leave no room for a message to travel.
    pub fn check(&self) -> Result<(), String> {
        if self.delay_bound() == 0 {
            return Err(format!(
                "schedule.slot_ms / 4 ({} ms) must be more than the clock bound \
                 schedule.tolerance_ms ({} ms), or no delay bound is left for the votes",
                self.quarter(),
                self.clock_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(slot_ms: u64, blackout_ms: u64, tolerance_ms: u64) -> Timing {
        Timing::new(Schedule {
            slot_ms,
            blackout_ms,
            tolerance_ms,
            servers: 3,
            difficulty: 0,
        })
    }

    #[test]
    fn the_three_inequalities_hold_for_the_defaults_and_the_test_rig() {
        for (t, bound) in [
            (timing(60_000, 15_000, 5_000), 10_000),
            (timing(2_000, 600, 200), 300),
        ] {
            assert_eq!(t.delay_bound(), bound);
            t.check().unwrap();
            let travel = t.delay_bound() + t.clock_ms;
            for s in [1, 7, 1_000_000] {
                assert!(t.close(s) + travel <= t.prevote_deadline(s));
                assert!(t.prevote_deadline(s) + travel <= t.precommit_at(s));
                assert!(t.precommit_cutoff(s) + travel <= t.close(s + 1));
                assert!(t.precommit_at(s) < t.precommit_cutoff(s));
            }
        }
    }

    #[test]
    fn timings_without_room_for_a_message_are_refused() {
        let err = timing(1_000, 900, 400).check().unwrap_err();
        assert!(err.contains("schedule.tolerance_ms"), "{err}");
    }

    #[test]
    fn deadlines_at_the_end_of_time_saturate() {
        let t = timing(60_000, 15_000, 5_000);
        assert_eq!(t.precommit_cutoff(u64::MAX), u64::MAX);
        assert!(t.prevote_deadline(u64::MAX) >= t.close(u64::MAX));
    }
}

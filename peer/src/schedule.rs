//! The alpha schedule: time cut into UTC-aligned slots, one alpha a slot.
//!
//! ```text
//!        slot s starts                          slot s+1 starts
//!   ---------|--------------------------|----------|--------------------
//!            |  alpha(s) accepts        | blackout |  alpha(s+1) accepts
//!            |                        close(s)     |
//!            |                          |-- beta(s) for one full slot --|
//! ```
//!
//! Slot `s` covers `[s * slot_ms, (s + 1) * slot_ms)` and its alpha is server
//! `s mod N` (counted from 0 in the list). The alpha accepts transactions until
//! `close(s) = start(s + 1) - blackout_ms`, then closes the round and acts as
//! beta until `close(s + 1)`. A transaction's timestamp must be within
//! `tolerance_ms` of the alpha's clock. Because `blackout_ms > 2 *
//! tolerance_ms`, the timestamps one alpha can accept and those the next can
//! accept never overlap, so a transaction can be valid in one round only.

use crate::block::Shape;
use crate::types::{Millis, ServerId, Slot};

/// The environment variable that sets a process's clock off by a signed
/// number of milliseconds: a testing aid (docs/OPERATIONS.md), read once.
pub const CLOCK_OFFSET_VARIABLE: &str = "ROTA_CLOCK_OFFSET_MS";

/// The system clock in Unix milliseconds, plus `ROTA_CLOCK_OFFSET_MS` when
/// it is set (tests start a server with a skewed clock that way). Only the
/// threads at the edge read it; everything else takes the time as an
/// argument.
pub fn unix_now_ms() -> Millis {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_VARIABLE)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0);
    now.saturating_add_signed(offset)
}

/// Slot timings and the number of servers they rotate over, with the
/// sealing difficulty the blocks of their rounds carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub slot_ms: u64,
    pub blackout_ms: u64,
    pub tolerance_ms: u64,
    pub servers: usize,
    /// Leading zero bits a block's seal needs (0: blocks are not sealed).
    pub difficulty: u32,
}

impl Schedule {
    /// What the chain's blocks take from it.
    pub fn shape(&self) -> Shape {
        Shape {
            slot_ms: self.slot_ms,
            difficulty: self.difficulty,
        }
    }

    /// The slot that holds the instant `now`.
    pub fn slot_at(&self, now: Millis) -> Slot {
        now / self.slot_ms
    }

    /// The first millisecond of slot `s`. Slots and times come from
    /// outside (requests, peer messages), so every sum and product here
    /// saturates: a slot past the end of time starts at the end of time.
    pub fn start(&self, slot: Slot) -> Millis {
        slot.saturating_mul(self.slot_ms)
    }

    /// When the alpha of slot `s` stops accepting and closes the round.
    pub fn close(&self, slot: Slot) -> Millis {
        self.start(slot.saturating_add(1))
            .saturating_sub(self.blackout_ms)
    }

    /// When the beta of round `s` gives up waiting for votes and decides with
    /// those it has: half a slot after the close, well before the next round
    /// closes.
    pub fn vote_deadline(&self, slot: Slot) -> Millis {
        self.close(slot).saturating_add(self.slot_ms / 2)
    }

    /// The alpha of slot `s`.
    pub fn alpha(&self, slot: Slot) -> ServerId {
        ServerId::from_index((slot % self.servers as u64) as usize)
    }

    /// Whether `now` is inside the accepting part of its slot (not in the
    /// blackout).
    pub fn window_open(&self, now: Millis) -> bool {
        now < self.close(self.slot_at(now))
    }

    /// Whether a timestamp is within tolerance of the clock reading `now`.
    pub fn timestamp_ok(&self, timestamp: Millis, now: Millis) -> bool {
        timestamp.abs_diff(now) <= self.tolerance_ms
    }

    /// Whether a transaction stamped `timestamp` could have been accepted by
    /// the alpha of slot `s`: the accepting window widened by the tolerance
    /// at both ends. Servers applying a ROUND use this, not their own clock.
    pub fn in_round(&self, timestamp: Millis, slot: Slot) -> bool {
        let earliest = self.start(slot).saturating_sub(self.tolerance_ms);
        let latest = self.close(slot).saturating_add(self.tolerance_ms);
        (earliest..=latest).contains(&timestamp)
    }

    /// The first moment at or after `now` when an alpha window is open, with
    /// the slot it belongs to: `now` itself outside a blackout, else the start
    /// of the next slot.
    pub fn next_open(&self, now: Millis) -> (Slot, Millis) {
        let slot = self.slot_at(now);
        if self.window_open(now) {
            (slot, now)
        } else {
            let next = slot.saturating_add(1);
            (next, self.start(next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            slot_ms: 60_000,
            blackout_ms: 15_000,
            tolerance_ms: 5_000,
            servers: 3,
            difficulty: 0,
        }
    }

    #[test]
    fn slots_are_aligned_to_the_epoch() {
        let s = schedule();
        assert_eq!(s.slot_at(0), 0);
        assert_eq!(s.slot_at(59_999), 0);
        assert_eq!(s.slot_at(60_000), 1);
        assert_eq!(s.start(7), 420_000);
    }

    #[test]
    fn the_alpha_rotates_through_the_list() {
        let s = schedule();
        let alphas: Vec<u32> = (0..7).map(|slot| s.alpha(slot).0).collect();
        assert_eq!(alphas, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn the_window_closes_exactly_at_the_blackout() {
        let s = schedule();
        assert!(s.window_open(60_000));
        assert!(s.window_open(104_999));
        assert!(!s.window_open(105_000), "blackout starts at close");
        assert!(!s.window_open(119_999));
        assert!(s.window_open(120_000), "next slot opens");
        assert_eq!(s.close(1), 105_000);
    }

    #[test]
    fn tolerance_is_inclusive_at_both_ends() {
        let s = schedule();
        assert!(s.timestamp_ok(95_000, 100_000));
        assert!(!s.timestamp_ok(94_999, 100_000));
        assert!(s.timestamp_ok(105_000, 100_000));
        assert!(!s.timestamp_ok(105_001, 100_000));
    }

    #[test]
    fn round_windows_of_consecutive_slots_never_overlap() {
        let s = schedule();
        // Round 1 takes timestamps 55_000..=110_000, round 2 from 115_000.
        assert!(s.in_round(55_000, 1));
        assert!(!s.in_round(54_999, 1));
        assert!(s.in_round(110_000, 1));
        assert!(!s.in_round(110_001, 1));
        assert!(!s.in_round(110_000, 2));
        assert!(s.in_round(115_000, 2));
        for t in 0..400_000u64 {
            let rounds = (0..10).filter(|slot| s.in_round(t, *slot)).count();
            assert!(rounds <= 1, "timestamp {t} fits {rounds} rounds");
        }
    }

    #[test]
    fn next_open_waits_out_a_blackout() {
        let s = schedule();
        assert_eq!(s.next_open(61_000), (1, 61_000));
        assert_eq!(s.next_open(106_000), (2, 120_000));
    }

    #[test]
    fn the_vote_deadline_falls_before_the_next_close() {
        let s = schedule();
        assert!(s.vote_deadline(1) < s.close(2));
        assert!(s.vote_deadline(1) > s.close(1));
    }

    #[test]
    fn slots_and_times_at_the_end_of_time_saturate_instead_of_overflowing() {
        let s = schedule();
        for slot in [u64::MAX, u64::MAX - 1, 1 << 63, u64::MAX / 60_000 + 1] {
            assert_eq!(s.start(slot), u64::MAX);
            assert_eq!(s.close(slot), u64::MAX - s.blackout_ms);
            assert!(s.vote_deadline(slot) >= s.close(slot));
            assert!(!s.in_round(0, slot));
            let _ = s.alpha(slot);
        }
        for now in [u64::MAX, 1 << 63] {
            let (slot, opens) = s.next_open(now);
            assert!(slot >= s.slot_at(now) && opens >= s.start(s.slot_at(now)));
            assert!(!s.timestamp_ok(0, now));
            assert!(s.timestamp_ok(now, now));
        }
    }
}

//! Clocks watched: each server's offset to every other one, estimated from
//! the clocks a `register` or `heart` answer carries, and this server's own
//! skew, its clock's difference from the median of the live servers'.
//!
//! An answer carries the other's clock `c` when it answered and the echo
//! `e` of this server's clock in the request it answers. Received at `now`,
//! it gives the offset `c - (e + now) / 2`: the other's clock minus this
//! one's, off by at most half the round trip `now - e`. Only answers whose
//! round trip is at most the payment tolerance are used (an answer held up
//! in a queue, or a busy server's, says little of its clock), so no offset
//! used is off by more than half the tolerance.
//!
//! The skew is the median of the fresh offsets of the live servers and of
//! this one's (0), negated: positive when this server's clock is ahead.
//! Another server's offset past half the tolerance is logged. Past the
//! tolerance this server sits out its alpha windows (the ledger takes no
//! payment into a round of its own), because its slots no longer line up
//! with the others'; it takes them again once the skew is back within
//! four fifths of the tolerance, so that a skew near the edge does not
//! flap. One dishonest server's offset alone never decides the median of
//! three or more samples, but it can pick it among the honest ones: with
//! two honest clocks (as measured, round trips included) close to the
//! tolerance apart, a liar can push one of them out. Servers are meant to
//! keep their clocks well within half the tolerance of true time.

use rota_peer::{Millis, ServerId};

use super::{Liveness, Output};

/// What the machine reports to the ledger after each heartbeat round.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Clocks {
    /// Each server's offset in ms (its clock minus this one's), in list
    /// order; `None` for this server and for a server not heard from.
    pub offsets: Vec<Option<i64>>,
    /// This server's skew against the median of the live servers, in ms.
    pub skew: i64,
    /// Whether the skew is past the tolerance: this server sits out its
    /// alpha windows.
    pub sitting_out: bool,
}

/// A server's skew from the offsets of the other servers' clocks to its
/// own and its own (0): the median, negated. With an even count, of the two
/// middle offsets the one nearer this server's clock: two servers that
/// disagree cannot tell which one is off, and neither sits out.
pub fn skew(mut offsets: Vec<i64>) -> i64 {
    if offsets.is_empty() {
        return 0;
    }
    offsets.sort_unstable();
    let half = offsets.len() / 2;
    let median = if offsets.len() % 2 == 1 {
        offsets[half]
    } else {
        let (low, high) = (offsets[half - 1], offsets[half]);
        if low.unsigned_abs() <= high.unsigned_abs() {
            low
        } else {
            high
        }
    };
    median.saturating_neg()
}

/// A server that sits out takes its slots again once its skew is within
/// this many fifths of the tolerance.
const REJOIN_FIFTHS: u64 = 4;

/// Whether a server with skew `skew` sits out, given whether it did.
pub fn sits_out(skew: i64, tolerance_ms: u64, did: bool) -> bool {
    let limit = if did {
        tolerance_ms / 5 * REJOIN_FIFTHS + tolerance_ms % 5 * REJOIN_FIFTHS / 5
    } else {
        tolerance_ms
    };
    skew.unsigned_abs() > limit
}

/// How far a clock may be off before it is logged, as a share of the
/// tolerance.
const WARN_SHARE: i64 = 2;

#[derive(Clone, Debug)]
pub(super) struct Watch {
    tolerance_ms: i64,
    heartbeat_ms: u64,
    offsets: Vec<Option<i64>>,
    /// When each offset was measured.
    measured: Vec<Millis>,
    /// Whether each server's offset was past the warning when last looked at.
    warned: Vec<bool>,
    sitting_out: bool,
}

impl Watch {
    pub(super) fn new(servers: usize, tolerance_ms: u64, heartbeat_ms: u64) -> Watch {
        Watch {
            tolerance_ms: i64::try_from(tolerance_ms).unwrap_or(i64::MAX),
            heartbeat_ms,
            offsets: vec![None; servers],
            measured: vec![0; servers],
            warned: vec![false; servers],
            sitting_out: false,
        }
    }

    /// Whether this server sat out at the last review.
    pub(super) fn sitting_out(&self) -> bool {
        self.sitting_out
    }

    /// `id` answered at `now` with its clock `clock`, echoing `echo`, this
    /// server's clock in the request.
    pub(super) fn answered(&mut self, id: ServerId, clock: Millis, echo: Millis, now: Millis) {
        if id.index() >= self.offsets.len()
            || echo > now
            || now - echo > self.tolerance_ms.unsigned_abs()
        {
            return;
        }
        let middle = echo + (now - echo) / 2;
        let offset = i128::from(clock) - i128::from(middle);
        let offset = offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.offsets[id.index()] = Some(offset);
        self.measured[id.index()] = now;
        let warn = offset.unsigned_abs() > (self.tolerance_ms / WARN_SHARE).unsigned_abs();
        if warn != std::mem::replace(&mut self.warned[id.index()], warn) {
            if warn {
                log::warn!(
                    "server {id}'s clock is {} this server's by {} ms, more than half the \
                     payment tolerance ({} ms): check both servers' time sync",
                    if offset > 0 { "ahead of" } else { "behind" },
                    offset.unsigned_abs(),
                    self.tolerance_ms
                );
            } else {
                log::info!("server {id}'s clock is within {offset} ms of this server's again");
            }
        }
    }

    /// The clocks as they stand at `now`, `alive` telling which servers
    /// count for the median; logs when this server starts or stops sitting
    /// out. Only offsets measured in the last two heartbeats count: an old
    /// one may be from before a clock was fixed (or jumped).
    pub(super) fn review(&mut self, now: Millis, alive: impl Fn(ServerId) -> bool) -> Clocks {
        let fresh = now.saturating_sub(2 * self.heartbeat_ms);
        let mut samples: Vec<i64> = vec![0];
        for (index, offset) in self.offsets.iter().enumerate() {
            if let Some(offset) = offset
                && self.measured[index] >= fresh
                && alive(ServerId::from_index(index))
            {
                samples.push(*offset);
            }
        }
        let counted = samples.len();
        let skew = skew(samples);
        // No fresh sample: nothing new is known, and the verdict stands.
        let sitting_out = if counted > 1 {
            sits_out(skew, self.tolerance_ms.unsigned_abs(), self.sitting_out)
        } else {
            self.sitting_out
        };
        if sitting_out != self.sitting_out {
            self.sitting_out = sitting_out;
            if sitting_out {
                log::warn!(
                    "this server's clock is {} ms {} the median of the live servers', more than \
                     the payment tolerance ({} ms): it sits out its alpha slots (payments sent \
                     to it are forwarded or held) until its clock is fixed",
                    skew.unsigned_abs(),
                    if skew > 0 { "ahead of" } else { "behind" },
                    self.tolerance_ms
                );
            } else {
                log::info!("this server's clock is within {skew} ms of the others' again");
            }
        }
        Clocks {
            offsets: self.offsets.clone(),
            skew,
            sitting_out,
        }
    }
}

impl super::Machine {
    /// The clocks at `now`, the live servers counting for the median.
    pub(super) fn clocks_now(&mut self, now: Millis) -> Clocks {
        let peers = &self.peers;
        self.clocks
            .review(now, |id| peers[id.index()].liveness == Liveness::Alive)
    }

    /// After an answer: reports the clocks at once when this server starts
    /// or stops sitting out (a clock set right is taken back into the
    /// rotation as soon as the answers show it), else at the next heartbeat
    /// round.
    pub(super) fn review_clocks(&mut self, now: Millis, out: &mut Vec<Output>) {
        let before = self.clocks.sitting_out();
        let clocks = self.clocks_now(now);
        if clocks.sitting_out != before {
            out.push(Output::Clocks(clocks));
        }
    }
}

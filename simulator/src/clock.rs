//! Simulated time: one true clock for the run, and each server's own clock,
//! which is off by an offset, drifts, and can jump.
//!
//! The run's events are ordered by true time. A server never sees true
//! time: every step it takes is given its own clock's reading, as the real
//! node reads its system clock. Its deadlines (the core's and the
//! connector's) are in its own time and are turned back into true time to
//! be scheduled.

use rota_peer::Millis;

/// The moment every run starts, in true Unix milliseconds: a day in 2023,
/// far from both ends of the clock arithmetic.
pub const EPOCH: Millis = 1_700_000_000_000;

/// One server's clock: `local(t) = t + offset + (t - EPOCH) * drift / 10^6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Milliseconds ahead of true time at the epoch (negative: behind);
    /// jumps add to it.
    pub offset: i64,
    /// Parts per million the clock runs fast (negative: slow).
    pub drift_ppm: i64,
}

impl Clock {
    /// A true clock.
    pub fn exact() -> Clock {
        Clock {
            offset: 0,
            drift_ppm: 0,
        }
    }

    /// This clock's reading at true time `t`.
    pub fn local(&self, t: Millis) -> Millis {
        let since = i128::from(t) - i128::from(EPOCH);
        let drift = since * i128::from(self.drift_ppm) / 1_000_000;
        let local = i128::from(t) + i128::from(self.offset) + drift;
        local.clamp(0, i128::from(u64::MAX)) as Millis
    }

    /// The first true time at or after `now` when this clock reads at least
    /// `deadline`: when a server's timer set for `deadline` goes off.
    pub fn true_time(&self, deadline: Millis, now: Millis) -> Millis {
        if self.local(now) >= deadline {
            return now;
        }
        // Invert the line, then step over the rounding.
        let scale = 1_000_000 + i128::from(self.drift_ppm);
        let shifted = i128::from(deadline) - i128::from(self.offset) - i128::from(EPOCH);
        let guess = i128::from(EPOCH) + shifted * 1_000_000 / scale.max(1);
        let mut t = guess.clamp(i128::from(now), i128::from(u64::MAX)) as Millis;
        while self.local(t) < deadline && t < u64::MAX {
            t += 1;
        }
        t
    }

    /// The clock jumps by `by` milliseconds (back when negative).
    pub fn jump(&mut self, by: i64) {
        self.offset = self.offset.saturating_add(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_wakes_exactly_at_its_deadline() {
        for clock in [
            Clock::exact(),
            Clock {
                offset: -700,
                drift_ppm: 300,
            },
            Clock {
                offset: 1_250,
                drift_ppm: -250,
            },
        ] {
            let now = EPOCH + 12_345;
            for ahead in [0, 1, 999, 60_000] {
                let deadline = clock.local(now) + ahead;
                let t = clock.true_time(deadline, now);
                assert!(clock.local(t) >= deadline);
                assert!(
                    t == now || clock.local(t - 1) < deadline,
                    "{clock:?} {ahead}"
                );
            }
        }
    }
}

//! Giving memory back to the system after clients go.
//!
//! What libzmq and the node allocate for a connection (receive buffers,
//! queued requests and replies) is freed when the connection closes, but
//! glibc's allocator keeps freed memory in its arenas for reuse: after
//! fifty clients flooded a node for ten seconds without reading and left,
//! its resident size stayed at 36 MiB of a 38 MiB peak (24 MiB before);
//! with a trim it fell back to 25 MiB of a 40 MiB peak (22 MiB before).
//! `malloc_trim(0)` hands the free pages of every arena back. It walks the whole heap, holding each arena's lock: about
//! 0.3 ms per MiB in use (190 ms for a fragmented 690 MiB heap, 3 ms for
//! the same once freed), so the listener trims once connections have
//! stopped closing for [`QUIET`], and under a steady stream of short
//! client connections at most every [`AT_MOST_EVERY`]. libzmq frees a
//! closed connection's queues on its I/O thread and at the socket's next
//! call, not at once, which the wait also covers.

use std::time::{Duration, Instant};

/// How long no connection must have closed before the trim runs.
pub const QUIET: Duration = Duration::from_secs(1);

/// The longest a trim waits for quiet once connections have closed.
pub const AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// When the next trim is due, if connections have closed since the last.
#[derive(Debug, Default)]
pub struct Trimmer {
    /// The first close since the last trim, and when the trim is due.
    pending: Option<(Instant, Instant)>,
}

impl Trimmer {
    /// Connections closed at `now`: the trim is due [`QUIET`] later, but no
    /// later than [`AT_MOST_EVERY`] after the first close since the last.
    pub fn closed(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, (now + QUIET).min(first + AT_MOST_EVERY)));
    }

    /// How long the listener may sleep in `poll` before the trim is due,
    /// in milliseconds; -1 (no limit) when none is due.
    pub fn poll_timeout_ms(&self, now: Instant) -> i64 {
        match self.pending {
            Some((_, due)) => due.saturating_duration_since(now).as_millis() as i64,
            None => -1,
        }
    }

    /// Trims if the trim is due at `now`; returns whether it did.
    pub fn run_if_due(&mut self, now: Instant) -> bool {
        match self.pending {
            Some((_, due)) if due <= now => {
                self.pending = None;
                release_free_memory();
                true
            }
            Some(_) | None => false,
        }
    }
}

/// Hands the allocator's free memory back to the system, and logs how much
/// went back when it is worth saying (a mebibyte or more).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    let (before, start) = (resident_bytes(), Instant::now());
    // SAFETY: malloc_trim only walks glibc's own heap under its locks; it
    // takes no pointer and is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) };
    let (took, after) = (start.elapsed(), resident_bytes());
    let freed = before.saturating_sub(after);
    if freed >= 1 << 20 {
        log::info!(
            "gave {} MiB of freed memory back to the system ({} MiB resident, in {took:?})",
            freed >> 20,
            after >> 20
        );
    } else {
        log::debug!("malloc_trim gave back {freed} bytes in {took:?}");
    }
}

/// This process's resident size (`VmRSS`), in bytes; 0 if unreadable.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Other allocators give memory back by themselves, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_waits_for_quiet_but_not_for_ever() {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let mut trimmer = Trimmer::default();
        assert_eq!(trimmer.poll_timeout_ms(start), -1);
        assert!(!trimmer.run_if_due(start));
        trimmer.closed(start);
        trimmer.closed(ms(600));
        assert_eq!(trimmer.poll_timeout_ms(ms(600)), 1_000, "quiet from 600 ms");
        assert!(!trimmer.run_if_due(ms(1_599)));
        assert!(trimmer.run_if_due(ms(1_600)));
        assert!(!trimmer.run_if_due(ms(5_000)), "nothing closed since");
        assert_eq!(trimmer.poll_timeout_ms(ms(5_000)), -1);

        // A close every half second: the trim still runs 10 s after the first.
        let first = ms(20_000);
        let mut now = first;
        while now < first + AT_MOST_EVERY {
            trimmer.closed(now);
            assert!(!trimmer.run_if_due(now));
            now += Duration::from_millis(500);
        }
        assert!(trimmer.run_if_due(first + AT_MOST_EVERY));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_below_a_live_allocation_goes_back_only_with_a_trim() {
        const MIB: u64 = 1024 * 1024;
        // 128 MiB in small chunks, as queued requests and replies are, then
        // one allocation above them that stays, as the node's own do.
        let chunks: Vec<Box<[u8]>> = (0..128 * 1024)
            .map(|i| vec![i as u8; 1024].into_boxed_slice())
            .collect();
        let pin: Box<[u8]> = vec![1u8; 64].into_boxed_slice();
        drop(chunks);
        let kept = resident_bytes();
        assert!(kept > 100 * MIB, "glibc kept the freed chunks: {kept}");
        release_free_memory();
        let trimmed = resident_bytes();
        assert!(
            trimmed + 100 * MIB < kept,
            "trimmed from {} to {} MiB",
            kept / MIB,
            trimmed / MIB
        );
        assert_eq!(pin[0], 1);
    }
}

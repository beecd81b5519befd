//! The leader's side of the nonce search: which ranges of
//! [`FIRST_NONCE`]..=[`LAST_NONCE`] went to which worker, and what comes
//! of them.
//!
//! - A worker asks for work (every heartbeat while it has none, and again
//!   with each answer) and reports its hash rate. Its first range is
//!   [`FIRST_RANGE`] nonces; later ones are sized so that a range takes it
//!   about [`RANGE_MS`] at the rate it reported, within bounds.
//! - A worker answers no for its range, or yes with a nonce. The caller
//!   checks a yes against the block's header and difficulty before it
//!   tells the coordinator ([`Coordinator::sealed`]): the coordinator then
//!   stops handing out work for that block and names the workers to
//!   interrupt.
//! - A worker silent for longer than its deadline (a few of its ranges'
//!   length, at least a heartbeat) has its range handed out again, first,
//!   to the next worker that asks.
//! - When every range of the space has gone out, the next request starts
//!   the search over at the next seal time (a second on), and so does the
//!   last "no" of a space.
//! - A worker's reported rate sizes its ranges and deadlines, within
//!   bounds ([`MIN_RANGE`]..[`MAX_RANGE`], one to two heartbeats): a worker
//!   that lies about it, or answers no without searching, wastes only the
//!   nonces it is handed.

use std::collections::BTreeMap;

use rota_peer::{Hash, Millis, ServerId};

use super::{FIRST_NONCE, LAST_NONCE};

/// The first range a worker gets, before it reports a rate.
pub const FIRST_RANGE: u64 = 100_000;
/// How long a range should take a worker at its reported rate.
pub const RANGE_MS: u64 = 100;
/// The smallest and largest range handed out.
pub const MIN_RANGE: u64 = 1_000;
pub const MAX_RANGE: u64 = 100_000_000;

/// The block to seal: its id (the double SHA-256 of its unsealed header),
/// the difficulty, and the seal time the nonces go with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub block: Hash,
    pub difficulty_bits: u32,
    pub seal_time: Millis,
}

/// Nonces `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
}

impl Range {
    /// How many nonces it holds (never 0: `first <= last`).
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What a worker is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub work: Work,
    pub range: Range,
}

#[derive(Clone, Copy, Debug)]
struct Out {
    range: Range,
    seal_time: Millis,
    deadline: Millis,
}

/// The coordinator of one block's search at a time.
#[derive(Debug)]
pub struct Coordinator {
    heartbeat_ms: u64,
    work: Option<Work>,
    /// The next nonce never handed out for the current seal time.
    next: u64,
    /// Ranges handed out and not answered yet, by worker.
    out: BTreeMap<ServerId, Out>,
    /// Ranges to hand out again (their worker went silent), first.
    again: Vec<Range>,
    /// Each worker's last reported rate, hashes per second.
    rates: BTreeMap<ServerId, u64>,
}

impl Coordinator {
    pub fn new(heartbeat_ms: u64) -> Coordinator {
        Coordinator {
            heartbeat_ms: heartbeat_ms.max(1),
            work: None,
            next: FIRST_NONCE,
            out: BTreeMap::new(),
            again: Vec::new(),
            rates: BTreeMap::new(),
        }
    }

    /// Starts the search for `work`'s seal, dropping any other.
    pub fn start(&mut self, work: Work) {
        self.work = Some(work);
        self.next = FIRST_NONCE;
        self.out.clear();
        self.again.clear();
    }

    /// The block under search, if any.
    pub fn work(&self) -> Option<Work> {
        self.work
    }

    /// `worker`, reporting `rate` hashes/s (0: not measured yet), asks for
    /// work at `now`. None when nothing is under search. A worker that
    /// still holds a range is given it again (its answer may have been
    /// lost), not a second one.
    pub fn request(&mut self, worker: ServerId, rate: u64, now: Millis) -> Option<Assignment> {
        let work = self.work?;
        if rate > 0 {
            self.rates.insert(worker, rate);
        }
        if let Some(held) = self.out.get(&worker)
            && held.seal_time == work.seal_time
        {
            return Some(Assignment {
                work,
                range: held.range,
            });
        }
        let range = match self.again.pop() {
            Some(range) => range,
            None => {
                if self.next > LAST_NONCE {
                    // Every range went out: the search starts over at the
                    // next seal time at once, rather than leave this worker
                    // idle until the others answer (a worker that answers
                    // no at once, truly or not, could otherwise keep every
                    // other one waiting). A seal found in a range of the
                    // last seal time still counts: it proves itself.
                    self.start(Work {
                        seal_time: work.seal_time + 1_000,
                        ..work
                    });
                    return self.request(worker, rate, now);
                }
                let size = self.size_for(worker);
                let last = self.next.saturating_add(size - 1).min(LAST_NONCE);
                let range = Range {
                    first: self.next,
                    last,
                };
                self.next = last + 1;
                range
            }
        };
        let deadline = now + self.deadline_for(worker, range);
        self.out.insert(
            worker,
            Out {
                range,
                seal_time: work.seal_time,
                deadline,
            },
        );
        Some(Assignment { work, range })
    }

    /// `worker` searched `range` for `seal_time` and found nothing. When
    /// the whole space is answered no, the search starts over at the next
    /// seal time (returned).
    pub fn answered_no(
        &mut self,
        worker: ServerId,
        range: Range,
        seal_time: Millis,
    ) -> Option<Work> {
        let work = self.work?;
        let held = self.out.get(&worker)?;
        if held.range != range || held.seal_time != seal_time || work.seal_time != seal_time {
            return None;
        }
        self.out.remove(&worker);
        if self.next > LAST_NONCE && self.out.is_empty() && self.again.is_empty() {
            let next = Work {
                seal_time: work.seal_time + 1_000,
                ..work
            };
            self.start(next);
            return Some(next);
        }
        None
    }

    /// A seal was found (by a worker, checked by the caller against the
    /// header and difficulty): the search ends, and the workers still
    /// holding a range are returned, to be interrupted.
    pub fn sealed(&mut self) -> Vec<ServerId> {
        self.work = None;
        self.again.clear();
        let busy: Vec<ServerId> = self.out.keys().copied().collect();
        self.out.clear();
        busy
    }

    /// At `now`: the ranges of workers past their deadline go back to be
    /// handed out again; returns those workers.
    pub fn tick(&mut self, now: Millis) -> Vec<ServerId> {
        let silent: Vec<ServerId> = self
            .out
            .iter()
            .filter(|(_, o)| now > o.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in &silent {
            if let Some(out) = self.out.remove(id)
                && self.work.is_some_and(|w| w.seal_time == out.seal_time)
            {
                self.again.push(out.range);
            }
        }
        silent
    }

    /// The range size for `worker`: [`FIRST_RANGE`] until it reports a
    /// rate, then what it hashes in [`RANGE_MS`].
    fn size_for(&self, worker: ServerId) -> u64 {
        match self.rates.get(&worker) {
            None => FIRST_RANGE,
            Some(rate) => (rate.saturating_mul(RANGE_MS) / 1_000).clamp(MIN_RANGE, MAX_RANGE),
        }
    }

    /// How long `worker` gets for `range`: ten times what its rate says it
    /// takes, at least a heartbeat (a second, before it reports a rate),
    /// and at most two: a worker that claims a tiny rate does not hold its
    /// range for hours. A silent worker's range so goes out again about as
    /// soon as the search would pass to another leader
    /// (`miner::HANDOFF_HEARTBEATS`).
    fn deadline_for(&self, worker: ServerId, range: Range) -> u64 {
        let floor = self.heartbeat_ms;
        let wanted = match self.rates.get(&worker) {
            Some(rate) if *rate > 0 => range.count().saturating_mul(10_000) / rate,
            _ => RANGE_MS * 10,
        };
        wanted.clamp(floor, 2 * floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: u64 = 5_000;

    fn work() -> Work {
        Work {
            block: Hash([1; 32]),
            difficulty_bits: 16,
            seal_time: 1_700_000_000_000,
        }
    }

    fn id(n: u32) -> ServerId {
        ServerId(n)
    }

    #[test]
    fn ranges_go_out_in_order_without_overlap_first_small_then_sized_to_the_rate() {
        let mut c = Coordinator::new(HEARTBEAT);
        assert_eq!(c.request(id(1), 0, 0), None, "nothing under search");
        c.start(work());
        let a = c.request(id(1), 0, 0).unwrap();
        assert_eq!(
            a.range,
            Range {
                first: 1,
                last: FIRST_RANGE
            }
        );
        let b = c.request(id(2), 0, 0).unwrap();
        assert_eq!(b.range.first, FIRST_RANGE + 1, "no overlap");
        // Server 1 answers no and reports 2,000,000 hashes/s: its next
        // range takes it 100 ms, 200,000 nonces.
        assert_eq!(c.answered_no(id(1), a.range, a.work.seal_time), None);
        let next = c.request(id(1), 2_000_000, 10).unwrap();
        assert_eq!(next.range.first, 2 * FIRST_RANGE + 1);
        assert_eq!(next.range.count(), 200_000);
        // A very slow or very fast worker stays within bounds.
        assert_eq!(c.answered_no(id(1), next.range, next.work.seal_time), None);
        assert_eq!(c.request(id(1), 5, 20).unwrap().range.count(), MIN_RANGE);
        let mut fast = Coordinator::new(HEARTBEAT);
        fast.start(work());
        assert_eq!(
            fast.request(id(3), u64::MAX, 0).unwrap().range.count(),
            MAX_RANGE
        );
    }

    #[test]
    fn a_worker_asking_again_gets_the_range_it_holds() {
        let mut c = Coordinator::new(HEARTBEAT);
        c.start(work());
        let a = c.request(id(1), 0, 0).unwrap();
        assert_eq!(
            c.request(id(1), 0, 5),
            Some(a),
            "its answer may have been lost"
        );
        // A no for a range it does not hold changes nothing.
        let other = Range { first: 7, last: 9 };
        assert_eq!(c.answered_no(id(1), other, a.work.seal_time), None);
        assert_eq!(c.request(id(1), 0, 6), Some(a));
    }

    #[test]
    fn a_silent_worker_s_range_is_handed_out_again_first() {
        let mut c = Coordinator::new(HEARTBEAT);
        c.start(work());
        let lost = c.request(id(2), 0, 0).unwrap();
        let kept = c.request(id(3), 0, 0).unwrap();
        // Server 3 answers; server 2 never does.
        assert_eq!(c.answered_no(id(3), kept.range, kept.work.seal_time), None);
        assert_eq!(c.tick(HEARTBEAT / 2), Vec::<ServerId>::new(), "not yet");
        assert_eq!(c.tick(20 * HEARTBEAT), [id(2)]);
        let again = c.request(id(3), 0, 20 * HEARTBEAT + 1).unwrap();
        assert_eq!(again.range, lost.range, "the lost range first");
        // Server 2's late answer for it counts for nothing now.
        assert_eq!(c.answered_no(id(2), lost.range, lost.work.seal_time), None);
    }

    #[test]
    fn a_seal_ends_the_search_and_names_the_workers_to_interrupt() {
        let mut c = Coordinator::new(HEARTBEAT);
        c.start(work());
        for n in 1..=3 {
            c.request(id(n), 0, 0).unwrap();
        }
        assert_eq!(c.sealed(), [id(1), id(2), id(3)]);
        assert_eq!(c.work(), None);
        assert_eq!(c.request(id(1), 0, 10), None, "nothing more to do");
    }

    #[test]
    fn a_space_answered_no_starts_over_at_the_next_seal_time() {
        let mut c = Coordinator::new(HEARTBEAT);
        c.start(work());
        // A worker that holds a range while another takes the rest of the
        // space does not hold the search up: the next request starts over.
        let held = c.request(id(2), 0, 0).unwrap();
        let mut now = 1;
        let restarted = loop {
            let a = c.request(id(1), u64::MAX, now).unwrap();
            now += 1;
            if a.work.seal_time != work().seal_time {
                break a;
            }
            assert_eq!(c.answered_no(id(1), a.range, a.work.seal_time), None);
        };
        assert_eq!(restarted.work.seal_time, work().seal_time + 1_000);
        assert_eq!(restarted.range.first, FIRST_NONCE);
        // The held range's late answer counts for nothing now.
        assert_eq!(c.answered_no(id(2), held.range, held.work.seal_time), None);
        let mut c = Coordinator::new(HEARTBEAT);
        c.start(work());
        // One very fast worker takes the whole space in twenty ranges.
        let mut now = 0;
        let mut next_work = None;
        let mut ranges = 0;
        while next_work.is_none() {
            let a = c
                .request(id(1), u64::MAX, now)
                .expect("work while the space lasts");
            ranges += 1;
            now += 1;
            next_work = c.answered_no(id(1), a.range, a.work.seal_time);
        }
        assert_eq!(ranges, LAST_NONCE.div_ceil(MAX_RANGE));
        let next = next_work.unwrap();
        assert_eq!(next.seal_time, work().seal_time + 1_000);
        assert_eq!(next.block, work().block);
        let a = c.request(id(1), u64::MAX, now).unwrap();
        assert_eq!(
            (a.work, a.range.first),
            (next, FIRST_NONCE),
            "from the start again"
        );
    }
}

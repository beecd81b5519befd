//! This server's search threads: each range the leader hands out is split
//! among them, and they run at the lowest priority the system has, so
//! that payments, votes and queries always come first.
//!
//! A job is one range of one block at one seal time. Starting a new job,
//! or stopping, ends the one before: every thread looks every few thousand
//! nonces at the job number it works for ([`Pool::stop`]). The pool reports
//! one [`Outcome`] per job, when a thread finds a seal or when every
//! thread has gone through its part; a stopped job reports nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use rota_peer::Millis;
use rota_peer::block::BlockHeader;
use rota_peer::seal::{Seal, Searcher};

/// One range to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub block: BlockHeader,
    pub time: Millis,
    pub first: u64,
    pub last: u64,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub job: Job,
    /// The seal found, if any.
    pub seal: Option<Seal>,
    /// Nonces tried, by every thread, and how long the job took.
    pub tried: u64,
    pub elapsed_ms: u64,
}

/// A thread's part of a job, with the job's number.
struct Part {
    number: u64,
    job: Job,
    first: u64,
    last: u64,
}

/// What a thread reports for its part: hand it to [`Pool::take`].
pub struct Report {
    number: u64,
    seal: Option<Seal>,
    tried: u64,
}

/// The search threads.
pub struct Pool {
    /// Each thread's slot for its next part: the pool holds both ends, so
    /// that it empties a slot a thread has not taken yet (the part is
    /// stale once a new job starts) and never waits on a thread, which at
    /// the lowest priority may not run for a long while.
    parts: Vec<(Sender<Part>, Receiver<Part>)>,
    done: Receiver<Report>,
    /// The job the threads work for; any other number means stop.
    current: Arc<AtomicU64>,
    /// Nonces tried by every thread, and the microseconds they spent
    /// trying them, since the start: what the hash rate is measured from.
    meter: Arc<Meter>,
    threads: Vec<JoinHandle<()>>,
    /// The job under way: its number, what it is, when it started, the
    /// parts still out and the nonces tried so far.
    running: Option<(u64, Job, Instant, usize, u64)>,
}

impl Pool {
    /// Starts `threads` search threads (at least one).
    pub fn new(threads: usize) -> Pool {
        let current = Arc::new(AtomicU64::new(0));
        let meter = Arc::new(Meter::default());
        let (done_tx, done) = unbounded();
        let mut parts = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = bounded::<Part>(1);
            let rx_of_pool = rx.clone();
            let (current, done_tx, meter) = (current.clone(), done_tx.clone(), meter.clone());
            let handle = thread::Builder::new()
                .name(format!("search-{i}"))
                .spawn(move || search_thread(rx, current, done_tx, &meter))
                .expect("a search thread");
            parts.push((tx, rx_of_pool));
            handles.push(handle);
        }
        Pool {
            parts,
            done,
            current,
            meter,
            threads: handles,
            running: None,
        }
    }

    /// The threads' reports, for a `select!` beside other channels; hand
    /// each to [`Pool::take`].
    pub fn reports(&self) -> &Receiver<Report> {
        &self.done
    }

    /// The search threads' count.
    pub fn threads(&self) -> usize {
        self.parts.len()
    }

    /// Nonces tried so far by every thread, and the microseconds each
    /// spent on them, summed: finished and stopped parts alike.
    pub fn meter(&self) -> (u64, u64) {
        (
            self.meter.tried.load(Ordering::Relaxed),
            self.meter.busy_us.load(Ordering::Relaxed),
        )
    }

    /// Whether a job is under way.
    pub fn busy(&self) -> Option<Job> {
        self.running.map(|(_, job, ..)| job)
    }

    /// Starts `job` (a range of at least one nonce: `first <= last`),
    /// ending the one under way.
    pub fn start(&mut self, job: Job) {
        debug_assert!(job.first <= job.last, "{job:?}");
        let job = Job {
            last: job.last.max(job.first),
            ..job
        };
        let number = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        let count = (job.last - job.first)
            .saturating_add(1)
            .min(self.parts.len() as u64)
            .max(1);
        let share = (job.last - job.first).saturating_add(1) / count;
        let mut first = job.first;
        let mut sent = 0;
        for (i, (tx, rx)) in self.parts.iter().take(count as usize).enumerate() {
            let last = if i as u64 + 1 == count {
                job.last
            } else {
                first + share - 1
            };
            // A part the thread has not taken yet is stale: drop it, then
            // the slot is free (only the pool sends into it).
            while rx.try_recv().is_ok() {}
            if tx
                .try_send(Part {
                    number,
                    job,
                    first,
                    last,
                })
                .is_ok()
            {
                sent += 1;
            }
            first = last.saturating_add(1);
        }
        self.running = Some((number, job, Instant::now(), sent, 0));
    }

    /// Ends the job under way, if any; it reports nothing.
    pub fn stop(&mut self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        self.running = None;
    }

    /// Takes one thread's report; the outcome when it ends the job.
    pub fn take(&mut self, done: Report) -> Option<Outcome> {
        let (number, job, started, left, tried) = self.running.as_mut()?;
        if done.number != *number {
            return None;
        }
        *tried += done.tried;
        *left -= 1;
        let outcome = Outcome {
            job: *job,
            seal: done.seal,
            tried: *tried,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        if done.seal.is_some() {
            self.stop();
            return Some(outcome);
        }
        if *left == 0 {
            self.running = None;
            return Some(outcome);
        }
        None
    }
}

impl Drop for Pool {
    /// Stops the threads without waiting for them: at the lowest priority
    /// on a busy machine one may not run for a long while, and a stopping
    /// node must not wait on it. Each ends at its next look at the job
    /// number, or when it finds its slot closed.
    fn drop(&mut self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        self.parts.clear();
        self.threads.clear();
    }
}

/// Nonces tried and time spent, by every search thread.
#[derive(Debug, Default)]
struct Meter {
    tried: AtomicU64,
    busy_us: AtomicU64,
}

/// One search thread: at the lowest priority, it searches each part it is
/// given until it ends, finds a seal, or the job number moves on.
fn search_thread(
    parts: Receiver<Part>,
    current: Arc<AtomicU64>,
    done: Sender<Report>,
    meter: &Meter,
) {
    lowest_priority();
    for part in parts {
        if current.load(Ordering::SeqCst) != part.number {
            continue;
        }
        let started = Instant::now();
        let mut searcher = Searcher::new(&part.job.block, part.job.time);
        let (seal, tried) = searcher.search(part.first, part.last, || {
            current.load(Ordering::SeqCst) != part.number
        });
        meter.tried.fetch_add(tried, Ordering::Relaxed);
        meter
            .busy_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let stopped = seal.is_none() && current.load(Ordering::SeqCst) != part.number;
        if !stopped
            && done
                .send(Report {
                    number: part.number,
                    seal,
                    tried,
                })
                .is_err()
        {
            return;
        }
    }
}

/// Puts the calling thread at the lowest priority: the idle scheduling
/// class where the system has it (it runs only when nothing else would),
/// else the highest niceness.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid
        // sched_param for SCHED_IDLE, whose priority must be 0.
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
        if idle {
            return;
        }
    }
    // SAFETY: setpriority with who 0 changes the calling thread's (on
    // Linux) or process's niceness; it reads no memory of ours.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_peer::Hash;

    fn header(difficulty: u32) -> BlockHeader {
        BlockHeader {
            number: 3,
            previous: Hash([1; 32]),
            slot: 9,
            timestamp: 9_000,
            merkle_root: Hash([2; 32]),
            balance_hash: Hash([3; 32]),
            difficulty,
            nonce: 0,
        }
    }

    fn outcome(pool: &mut Pool) -> Outcome {
        loop {
            let report = pool
                .reports()
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("a report");
            if let Some(outcome) = pool.take(report) {
                return outcome;
            }
        }
    }

    #[test]
    fn a_range_split_among_threads_finds_the_seal_one_thread_finds_or_answers_no() {
        let block = header(10);
        let time = 77;
        let mut pool = Pool::new(3);
        let expected = rota_peer::seal::search(&block, time, 1, 1_000_000).unwrap();
        // Within the range: some seal is found (a thread's part may hold
        // another before the first), and it proves the block.
        pool.start(Job {
            block,
            time,
            first: 1,
            last: expected.nonce + 30_000,
        });
        let found = outcome(&mut pool);
        assert!(found.seal.is_some_and(|seal| seal.proves(&block)));
        assert_eq!(pool.busy(), None);
        // A range before the first seal: no, every nonce tried.
        let job = Job {
            block,
            time,
            first: 1,
            last: expected.nonce - 1,
        };
        pool.start(job);
        let none = outcome(&mut pool);
        assert_eq!(
            (none.seal, none.tried, none.job),
            (None, expected.nonce - 1, job)
        );
    }

    #[test]
    fn a_stopped_job_reports_nothing_and_the_next_one_is_answered() {
        let mut pool = Pool::new(2);
        pool.start(Job {
            block: header(64),
            time: 1,
            first: 1,
            last: u64::MAX / 2,
        });
        pool.stop();
        let block = header(4);
        let job = Job {
            block,
            time: 1,
            first: 1,
            last: 1_000,
        };
        pool.start(job);
        let outcome = outcome(&mut pool);
        assert_eq!(outcome.job, job, "only the last job's outcome");
        assert!(outcome.seal.is_some_and(|seal| seal.proves(&block)));
    }
}

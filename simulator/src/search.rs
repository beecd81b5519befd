//! Many seeds at once, and shrinking one that fails.
//!
//! [`search`] runs a range of seeds on every core: runs are independent,
//! each single-threaded and deterministic, so threads only share the next
//! seed to take and the totals. It counts seeds, simulated rounds, faults
//! and failures by invariant, keeping the first few failing seeds of each.
//!
//! [`shrink`] takes a failing seed and turns its profile's faults off one
//! at a time (then fewer servers, then fewer slots), keeping each change
//! under which the same invariant still breaks: what is left is the
//! smallest profile that shows the failure, printed as flags to replay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::invariants::Invariant;
use crate::profile::Profile;
use crate::world::{Faults, Report, Rounds};

/// Failing seeds kept per invariant.
const KEPT: usize = 8;

/// What a search found.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub rounds: Rounds,
    pub steps: u64,
    pub faults: Faults,
    pub payments: u64,
    pub committed: u64,
    /// What the clients were told, by kind.
    pub told: BTreeMap<&'static str, u64>,
    /// Lies told, by kind.
    pub lies: BTreeMap<&'static str, u64>,
    /// Failures by invariant: how many, and the first seeds with a line each.
    pub failures: BTreeMap<Invariant, (u64, Vec<(u64, String)>)>,
    pub elapsed: Duration,
}

impl Summary {
    fn add(&mut self, report: &Report) {
        self.seeds += 1;
        self.rounds.committed += report.rounds.committed;
        self.rounds.lost += report.rounds.lost;
        self.rounds.evidence += report.rounds.evidence;
        self.rounds.sat_out += report.rounds.sat_out;
        self.steps += report.steps;
        self.payments += report.payments as u64;
        self.committed += report.committed as u64;
        for (word, count) in &report.told {
            *self.told.entry(word).or_default() += count;
        }
        for (kind, count) in &report.lies {
            *self.lies.entry(kind).or_default() += count;
        }
        let f = &mut self.faults;
        let r = &report.faults;
        f.dropped += r.dropped;
        f.late += r.late;
        f.reordered += r.reordered;
        f.duplicated += r.duplicated;
        f.partitions += r.partitions;
        f.crashes += r.crashes;
        f.torn += r.torn;
        f.jumps += r.jumps;
        f.lies += r.lies;
        if let Some(failure) = &report.failure {
            let entry = self
                .failures
                .entry(failure.violation.invariant)
                .or_default();
            entry.0 += 1;
            if entry.1.len() < KEPT {
                entry
                    .1
                    .push((report.seed, failure.violation.detail.clone()));
            }
        }
    }

    /// Failing seeds in all.
    pub fn failed(&self) -> u64 {
        self.failures.values().map(|(count, _)| count).sum()
    }

    /// The summary as the binary prints it.
    pub fn print(&self, threads: usize) {
        let f = &self.faults;
        println!(
            "{} seeds on {threads} threads in {:.1} s: {} slots decided ({} committed, {} lost), \
             {} steps, {} faults ({} dropped, {} late, {} reordered, {} duplicated, {} \
             partitions, {} crashes, {} torn writes, {} clock jumps, {} lies; {} evidence of \
             equivocation; {} slot checks of a skewed server sitting out), {} payments ({} \
             committed)",
            self.seeds,
            self.elapsed.as_secs_f64(),
            self.rounds.decided(),
            self.rounds.committed,
            self.rounds.lost,
            self.steps,
            f.total(),
            f.dropped,
            f.late,
            f.reordered,
            f.duplicated,
            f.partitions,
            f.crashes,
            f.torn,
            f.jumps,
            f.lies,
            self.rounds.evidence,
            self.rounds.sat_out,
            self.payments,
            self.committed
        );
        let told: Vec<String> = self
            .told
            .iter()
            .map(|(word, count)| format!("{count} {word}"))
            .collect();
        println!("clients were told: {}", told.join(", "));
        let lies: Vec<String> = self
            .lies
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        if !lies.is_empty() {
            println!("lies told: {}", lies.join(", "));
        }
        if self.failures.is_empty() {
            println!("no invariant broken");
        }
        for (invariant, (count, seeds)) in &self.failures {
            println!("{invariant}: {count} seeds ({})", invariant.meaning());
            for (seed, detail) in seeds {
                println!("  --seed {seed}: {detail}");
            }
        }
    }
}

/// Runs seeds `first..first + count` under `p` on `threads` threads.
pub fn search(p: &Profile, first: u64, count: u64, threads: usize) -> Summary {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(first));
    let total = Arc::new(Mutex::new(Summary::default()));
    let end = first.saturating_add(count);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let (next, total) = (next.clone(), total.clone());
            scope.spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    mine.push(crate::run(seed, p, false));
                    if mine.len() == 64 {
                        merge(&total, &mut mine);
                    }
                }
                merge(&total, &mut mine);
            });
        }
    });
    let mut summary = std::mem::take(&mut *total.lock().unwrap_or_else(|e| e.into_inner()));
    // Threads finish in any order: keep each invariant's seeds sorted so
    // the same search prints the same lines.
    for (_, seeds) in summary.failures.values_mut() {
        seeds.sort();
    }
    summary.elapsed = started.elapsed();
    summary
}

fn merge(total: &Mutex<Summary>, reports: &mut Vec<Report>) {
    let mut total = total.lock().unwrap_or_else(|e| e.into_inner());
    for report in reports.drain(..) {
        total.add(&report);
    }
}

/// The knobs [`shrink`] tries to turn off, with the value that turns each
/// off.
const OFF: &[(&str, &str)] = &[
    ("dishonest", "false"),
    ("lie-forge-result", "0"),
    ("lie-fail-result", "0"),
    ("lie-equivocate", "0"),
    ("lie-ignore-lock", "0"),
    ("lie-vote", "0"),
    ("lie-replay", "0"),
    ("lie-status", "0"),
    ("lie-withhold", "0"),
    ("lie-blocks", "0"),
    ("partition-rate", "0"),
    ("crash-rate", "0"),
    ("torn-rate", "0"),
    ("drop-rate", "0"),
    ("late-rate", "0"),
    ("reorder-rate", "0"),
    ("duplicate-rate", "0"),
    ("jump-rate", "0"),
    ("skew-max-ms", "0"),
    ("skew-one-ms", "0"),
    ("drift-max-ppm", "0"),
    ("bad-payments", "0"),
    ("resubmit", "0"),
];

/// The smallest profile found under which `seed` still breaks the same
/// invariant, with its report; `None` if the seed passes under `p`.
pub fn shrink(seed: u64, p: &Profile) -> Option<(Profile, Report)> {
    let first = crate::run(seed, p, false);
    let invariant = first.failure.as_ref()?.violation.invariant;
    let mut best = (p.clone(), first);
    for (flag, off) in OFF {
        attempt(seed, invariant, &mut best, |q| q.set(flag, off).is_ok());
    }
    let servers = best.1.servers;
    attempt(seed, invariant, &mut best, |q| {
        q.servers_min = servers;
        q.servers_max = servers;
        true
    });
    loop {
        let before = best.0.slots;
        attempt(seed, invariant, &mut best, |q| {
            q.slots = (q.slots / 2).max(1);
            true
        });
        if best.0.slots == before {
            break;
        }
    }
    Some(best)
}

/// Keeps `change` if the seed still breaks `invariant` under it.
fn attempt(
    seed: u64,
    invariant: Invariant,
    best: &mut (Profile, Report),
    change: impl Fn(&mut Profile) -> bool,
) {
    let mut q = best.0.clone();
    if !change(&mut q) || q == best.0 || q.validate().is_err() {
        return;
    }
    let report = crate::run(seed, &q, false);
    if report
        .failure
        .as_ref()
        .is_some_and(|f| f.violation.invariant == invariant)
    {
        *best = (q, report);
    }
}

//! What `rota bench` prints: each figure as it is measured, then a summary
//! that puts each figure beside its limit, the raw verify rate measured in
//! the same run or a stated target.

use super::catch_up::{self, CatchUp};
use super::flood::Flooded;
use super::load::Load;
use super::rounds::Decided;

/// The figures the summary lists.
pub struct Summary<'a> {
    /// The raw single-core batched verify rate, signatures per second.
    pub raw: f64,
    pub throughput: &'a Load,
    /// The latency round, and when it was decided.
    pub round: &'a Load,
    pub decided: &'a Decided,
    /// The round under a client flood, when one was asked for.
    pub flooded: Option<&'a (Load, Decided, Flooded)>,
    pub catch_up: &'a CatchUp,
    /// A round with server 3 stopped: no fast path.
    pub slow: &'a (Load, Decided),
}

pub fn verify_rate(raw: f64) {
    println!("  raw batched verify: {raw:.0} signatures/s");
}

/// The raw rate over batches of fewer distinct payers, for comparison.
pub fn verify_rate_few(raw: f64, payers: usize) {
    println!(
        "  raw batched verify, batches from only {payers} payers: {raw:.0} signatures/s (not the limit)"
    );
}

/// A loaded round: how much was accepted, how fast, and the first refusal.
pub fn load(load: &Load, connections: usize) {
    println!(
        "  slot {}: accepted {} payments in {:.3} s over {connections} connections: {:.0} payments/s",
        load.slot,
        load.accepted,
        load.seconds,
        load.rate()
    );
    if load.refused > 0 {
        println!(
            "  refused {}; the first refusal: {}",
            load.refused,
            load.first_refusal.clone().unwrap_or_default()
        );
    }
}

/// The throughput round's result.
pub fn throughput_round(decided: &Decided) {
    println!(
        "  round {}: {}, close -> commit at its alpha {} ms",
        decided.slot, decided.outcome, decided.to_alpha
    );
}

/// The latency round's result, at its beta and everywhere.
pub fn latency_round(decided: &Decided, payments: usize) {
    println!(
        "  round {} ({payments} payments): {}; close -> commit at its alpha {} ms, on all three {} ms",
        decided.slot, decided.outcome, decided.to_alpha, decided.to_all
    );
}

/// What the flood clients got while the flooded round ran.
pub fn flood(flood: &Flooded) {
    println!(
        "  flood: {} clients got {} answers, {} busy refusals, {} requests unanswered within a second",
        flood.clients, flood.answered, flood.busy, flood.unanswered
    );
}

pub fn catch_up(catch_up: &CatchUp) {
    println!(
        "  catch-up of a {}-account database ({}): connector start -> in sync {}, of which \
         fetch and install (from fetch-snapshot first seen) {}; process start -> in sync {} ms; \
         each seen in its I, asked every {} ms",
        catch_up.accounts,
        catch_up.how,
        catch_up.total.map_or("?".into(), |ms| format!("{ms} ms")),
        catch_up.fetch.map_or("-".into(), |ms| format!("{ms} ms")),
        catch_up.process,
        catch_up::POLL.as_millis()
    );
}

pub fn summary(summary: &Summary) {
    let Summary {
        raw,
        throughput,
        round,
        decided,
        flooded,
        catch_up,
        slow,
    } = summary;
    let rate = throughput.rate();
    println!();
    println!("summary");
    println!("  raw batched verify (1 core)        {raw:>10.0} /s");
    println!(
        "  accepted at the alpha              {rate:>10.0} /s   {:.0}% of raw (target >= 80%; {} payments)",
        100.0 * rate / raw,
        throughput.accepted
    );
    println!(
        "  round close -> commit              {:>10} ms  ({} payments, on all three {} ms)",
        decided.to_alpha, round.accepted, decided.to_all
    );
    println!(
        "  ... without the fast path          {:>10} ms  ({} payments, server 3 down; P(s) is half a slot after the close)",
        slow.1.to_alpha, slow.0.accepted
    );
    if let Some((load, decided, flood)) = flooded {
        println!(
            "  ... under a flood of {} I/D clients {:>7} ms  ({} payments; the figure above is the limit)",
            flood.clients, decided.to_alpha, load.accepted
        );
    }
    if let Some(ms) = catch_up.total {
        println!(
            "  catch-up, {:>7}-account database {ms:>10} ms  (target <= 1000 ms at 1,000,000 accounts)",
            catch_up.accounts,
        );
    }
}

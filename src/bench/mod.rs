//! `rota bench`: a load generator against a real 3-server network on loopback.
//!
//! It writes a network whose genesis holds `accounts` accounts (1,000,000 by
//! default) plus the payers, starts the three servers as separate processes,
//! and measures, printing each figure beside a limit measured in the same run:
//!
//! 1. the raw single-core batched signature-verification rate, in process;
//! 2. payments accepted per second at the alpha: `transactions` (50,000)
//!    pre-signed payments sent over `connections` pipelined DEALER sockets,
//!    connected beforehand, from the alpha's window opening; timed from the
//!    first send to the last reply;
//! 3. in the next slot, a round of `round_transactions` (10,000) payments at
//!    the next alpha: the latency from its close to its commit at that
//!    alpha (its round event), and to the last server committing it;
//! 4. with `flood` > 0: a round like the latency round, at server 3, while
//!    `flood` clients ask server 3 for `I` and `D` as fast as it answers
//!    (reading every reply): its latency beside the unflooded round's;
//! 5. the catch-up time of a server that lost its database: server 3 is
//!    stopped, a round changes the database, its data directory is deleted,
//!    and it is started again; the time from its connector starting to in
//!    sync, the part of it from fetch-snapshot on, and from its process
//!    start to in sync, all read from its `I` answers;
//! 6. a round without the fast path: server 3 is stopped, so no round
//!    gathers all three prevotes and the others precommit at P(s); a round
//!    of `round_transactions` at server 1, close -> commit.
//!
//! The servers and the load generator share this machine's cores.
//!
//! Its rooms: [`network`] (the servers, on the supervisor), [`load`] (the
//! payments sent, and the raw verify rate they are held against),
//! [`rounds`] (the round events, and the latencies read from them),
//! [`catch_up`] (the restarted server, timed from its `I`) and [`report`]
//! (what is printed). [`run`] goes through the steps in order.

mod catch_up;
mod flood;
mod load;
pub mod mining;
mod network;
mod report;
mod rounds;

use std::path::PathBuf;
use std::time::Duration;

use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::{Hash, PublicKey, ServerId};

use crate::error::Result;
use load::{Load, load_round};
use network::Network;
use rounds::Rounds;

pub use load::raw_batched_verify_rate;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Where to write the network; a fresh temporary directory if `None`.
    pub dir: Option<PathBuf>,
    /// Payments in the throughput round.
    pub transactions: usize,
    /// Payments in the round whose close -> commit latency is measured.
    pub round_transactions: usize,
    /// Pipelined DEALER connections sending them.
    pub connections: usize,
    /// Accounts in the genesis besides the payers.
    pub accounts: usize,
    /// Accounts that pay.
    pub payers: usize,
    /// Slot length of the network.
    pub slot_ms: u64,
    /// Seal difficulty of the network (0: blocks are not sealed).
    pub difficulty_bits: u32,
    /// Keep the network directory afterwards.
    pub keep: bool,
    /// Clients flooding the alpha with `I` and `D` during a third round (0:
    /// no flooded round).
    pub flood: usize,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            dir: None,
            transactions: 50_000,
            round_transactions: 10_000,
            connections: 4,
            accounts: 1_000_000,
            payers: 1_000,
            slot_ms: 20_000,
            difficulty_bits: 0,
            keep: false,
            flood: 0,
        }
    }
}

/// The key of payer `i`, funded in the genesis.
fn payer(i: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    seed[8] = 0xbe;
    Keypair::from_seed(&seed)
}

/// A key for account `i` that nobody signs with: only its bytes matter.
fn filler(i: usize) -> PublicKey {
    let mut input = b"rota bench account ".to_vec();
    input.extend_from_slice(&(i as u64).to_be_bytes());
    PublicKey(Hash::of(&input).0)
}

/// The payers of the second raw rate printed: batches with fewer distinct
/// keys verify faster, and stops before this one measured the limit so.
const FEW_PAYERS: usize = 64;

/// How long three fresh servers have to get in sync.
pub(crate) const START_WITHIN: Duration = Duration::from_secs(120);

/// Runs the benchmark and prints its report.
pub fn run(options: &BenchOptions) -> Result<()> {
    println!(
        "rota bench: raw single-core batched verify rate (batches of 1024 from {} payers, as the load's)...",
        options.payers
    );
    let raw = raw_batched_verify_rate(Duration::from_secs(3), options.payers);
    report::verify_rate(raw);
    let few = raw_batched_verify_rate(Duration::from_secs(2), FEW_PAYERS);
    report::verify_rate_few(few, FEW_PAYERS);

    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("rota-bench-{}", std::process::id())));
    println!(
        "writing a 3-server network with {} + {} accounts in {}...",
        options.accounts,
        options.payers,
        dir.display()
    );
    let mut net = Network::up(options, dir)?;
    let rounds = Rounds::subscribe(&net.client)?;

    let throughput = throughput(&net, &rounds, options)?;
    let (round, decided) = latency(&net, &rounds, options, throughput.slot)?;
    let flooded = if options.flood > 0 {
        Some(flooded_latency(&net, &rounds, options, round.slot)?)
    } else {
        None
    };
    let catch_up = catch_up::measure(
        &mut net,
        &rounds,
        options.accounts + options.payers,
        options.payers,
    )?;
    report::catch_up(&catch_up);
    let slow = slow_path(&mut net, &rounds, options)?;

    report::summary(&report::Summary {
        raw,
        throughput: &throughput,
        round: &round,
        decided: &decided,
        flooded: flooded.as_ref(),
        catch_up: &catch_up,
        slow: &slow,
    });
    Ok(())
}

/// Round latency without the fast path: server 3 is stopped, so no round
/// gathers prevotes from all three, and the two others precommit at P(s),
/// half a slot after the close (docs/CONSENSUS.md). A round like the
/// latency round, at server 1.
fn slow_path(
    net: &mut Network,
    rounds: &Rounds,
    options: &BenchOptions,
) -> Result<(Load, rounds::Decided)> {
    println!(
        "without the fast path: server 3 stopped, {} payments to server 1 in its next slot...",
        options.round_transactions
    );
    net.stop(3)?;
    let load = load_round(
        &net.client,
        ServerId(1),
        unix_now_ms() + 1_000,
        options.round_transactions,
        options.connections,
        options.payers,
    )?;
    report::load(&load, options.connections);
    let decided = rounds.decided_by(net, load.slot, &[1, 2])?;
    report::latency_round(&decided, load.accepted);
    Ok((load, decided))
}

/// Throughput: a large round at server 1, so that once-a-round costs do not
/// dominate.
fn throughput(net: &Network, rounds: &Rounds, options: &BenchOptions) -> Result<Load> {
    println!(
        "throughput: {} payments to server 1 in its next slot...",
        options.transactions
    );
    let load = load_round(
        &net.client,
        ServerId(1),
        unix_now_ms() + 3_000,
        options.transactions,
        options.connections,
        options.payers,
    )?;
    report::load(&load, options.connections);
    report::throughput_round(&rounds.decided(net, load.slot)?);
    Ok(load)
}

/// Round latency: a round of the size asked for, at the alpha after
/// `after_slot`'s.
fn latency(
    net: &Network,
    rounds: &Rounds,
    options: &BenchOptions,
    after_slot: u64,
) -> Result<(Load, rounds::Decided)> {
    println!(
        "latency: {} payments to server 2 in its next slot...",
        options.round_transactions
    );
    let load = load_round(
        &net.client,
        ServerId(2),
        net.client.schedule().close(after_slot),
        options.round_transactions,
        options.connections,
        options.payers,
    )?;
    report::load(&load, options.connections);
    let decided = rounds.decided(net, load.slot)?;
    report::latency_round(&decided, load.accepted);
    Ok((load, decided))
}

/// Round latency under a client flood: a round like the latency round, at
/// server 3, while `options.flood` clients flood server 3 with `I` and `D`.
fn flooded_latency(
    net: &Network,
    rounds: &Rounds,
    options: &BenchOptions,
    after_slot: u64,
) -> Result<(Load, rounds::Decided, flood::Flooded)> {
    println!(
        "flooded latency: {} payments to server 3 in its next slot, {} clients flooding it with I and D...",
        options.round_transactions, options.flood
    );
    let address = net.client.server_address(ServerId(3));
    let flood = flood::Flood::start(&net.client.chain, address, options.flood)?;
    let load = load_round(
        &net.client,
        ServerId(3),
        net.client.schedule().close(after_slot),
        options.round_transactions,
        options.connections,
        options.payers,
    );
    let decided = load
        .as_ref()
        .ok()
        .map(|load| rounds.decided(net, load.slot));
    let flooded = flood.stop();
    let load = load?;
    let decided = decided.expect("a load that returned")?;
    report::load(&load, options.connections);
    report::latency_round(&decided, load.accepted);
    report::flood(&flooded);
    Ok((load, decided, flooded))
}

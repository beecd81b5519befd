//! `rota bench --mining`: the nonce search on a real 3-server network,
//! beside the machine's own double SHA-256 rate measured in the same run.
//!
//! 1. The raw rate: every core running the search loop in this process, at
//!    normal priority, on a header no nonce seals; measured right before
//!    and right after the cluster's rate of (2), and averaged.
//! 2. A network whose difficulty no search reaches in the bench
//!    ([`UNREACHABLE_BITS`]): a load round at the alpha before any block
//!    waits for a seal (no search), then, once the load's block waits, the
//!    cluster's hash rate with no payments flowing (the nonces every
//!    server's `I` says it tried, over [`RATE_WINDOW`]), then a load round
//!    during the search, with the hash rate over it.
//! 3. A network at `--difficulty-bits` (20 by default): blocks made one a
//!    slot, and for each the time from its commit to its seal's commit at
//!    server 1, read from the `block` and `seal` events it publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rota_peer::block::BlockHeader;
use rota_peer::schedule::unix_now_ms;
use rota_peer::seal::Searcher;
use rota_peer::{Hash, Millis, ServerId};

use super::load::{Load, load_round};
use super::network::Network;
use super::{BenchOptions, START_WITHIN};
use crate::config::{Config, endpoint};
use crate::error::Result;
use crate::events::{Event, Published};

/// A difficulty no search reaches within the bench.
pub const UNREACHABLE_BITS: u32 = 48;

/// How long the cluster's hash rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Blocks whose commit -> seal time is measured.
const SEALED_BLOCKS: usize = 5;

/// Runs the mining benchmark and prints its figures.
pub fn run(options: &BenchOptions) -> Result<()> {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());

    let base = options.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rota-bench-mining-{}", std::process::id()))
    });
    let unreachable = BenchOptions {
        difficulty_bits: UNREACHABLE_BITS,
        ..options.clone()
    };
    println!("a 3-server network at difficulty {UNREACHABLE_BITS} (no seal within the bench)...");
    let net = Network::up(&unreachable, base.join("unreachable"))?;
    let before = load(&net, options, "no block waits: no search")?;
    net.wait_for("a block waiting for its seal", START_WITHIN, || {
        (1..=3).all(|i| searching(&net, i))
    })?;
    // The raw rate is measured right before and right after the cluster's,
    // so that a machine whose speed drifts (a shared host) compares like
    // with like; the servers' search threads, at the lowest priority, give
    // way to it.
    println!("raw double SHA-256 rate on {cores} cores, in process, around the cluster's...");
    let before_rate = raw_search_rate(cores, Duration::from_secs(3));
    let idle = cluster_rate(&net, RATE_WINDOW)?;
    let after_rate = raw_search_rate(cores, Duration::from_secs(3));
    let raw = (before_rate + after_rate) / 2.0;
    println!(
        "raw search rate: {before_rate:.0} before, {after_rate:.0} after: {raw:.0} hashes/s on \
         {cores} cores"
    );
    println!(
        "cluster hash rate, no payments: {idle:.0} hashes/s = {:.1}% of the raw rate (target >= 90%)",
        100.0 * idle / raw
    );
    let counted = cluster_hashes(&net)?;
    let started = Instant::now();
    let during = load(&net, options, "during the search")?;
    let busy = (cluster_hashes(&net)? - counted) as f64 / started.elapsed().as_secs_f64();
    println!(
        "with payments flowing: {:.0} payments/s accepted ({:.1}% of {:.0} with no search), \
         {busy:.0} hashes/s over the load = {:.1}% of the raw rate",
        during.rate(),
        100.0 * during.rate() / before.rate(),
        before.rate(),
        100.0 * busy / raw
    );
    drop(net);

    let bits = options.difficulty_bits;
    println!(
        "a 3-server network at difficulty {bits}: commit -> seal of {SEALED_BLOCKS} blocks..."
    );
    let net = Network::up(options, base.join("sealed"))?;
    let events = Events::subscribe(&net.client)?;
    let mut times = Vec::new();
    for k in 0..SEALED_BLOCKS {
        let alpha = ServerId(1 + (k % 3) as u32);
        let load = load_round(&net.client, alpha, unix_now_ms(), 10, 1, options.payers)?;
        let Some(number) = events.block_of(&net, load.slot)? else {
            println!(
                "  the round of slot {} made no block ({} payments accepted, {} refused: {:?})",
                load.slot, load.accepted, load.refused, load.first_refusal
            );
            continue;
        };
        let (found, sealed) = events.commit_to_seal(&net, number)?;
        println!(
            "  block {number}: a seal found {found} ms after its commit, committed after {sealed} ms"
        );
        times.push((found, sealed));
    }
    for (what, pick) in [("found", 0), ("committed (it rides the next round)", 1)] {
        let mut ms: Vec<u64> = times
            .iter()
            .map(|t| if pick == 0 { t.0 } else { t.1 })
            .collect();
        ms.sort_unstable();
        if let Some(median) = ms.get(ms.len() / 2) {
            println!(
                "commit -> seal {what} at {bits} bits: median {median} ms, {} to {} ms over {} blocks",
                ms[0],
                ms[ms.len() - 1],
                ms.len()
            );
        }
    }
    Ok(())
}

/// A load round of `options.transactions` payments at server 1.
fn load(net: &Network, options: &BenchOptions, what: &str) -> Result<Load> {
    let load = load_round(
        &net.client,
        ServerId(1),
        unix_now_ms() + 1_000,
        options.transactions,
        options.connections,
        options.payers,
    )?;
    println!(
        "  {what}: {} payments accepted in {:.2} s: {:.0}/s ({} refused)",
        load.accepted,
        load.seconds,
        load.rate(),
        load.refused
    );
    Ok(load)
}

fn searching(net: &Network, i: usize) -> bool {
    net.info(i)
        .is_some_and(|info| info.mining.searching.is_some() && info.mining.hashes > 0)
}

/// The nonces every server says it tried.
fn cluster_hashes(net: &Network) -> Result<u64> {
    let mut sum = 0;
    for i in 1..=3 {
        let info = net
            .info(i)
            .ok_or_else(|| net.timed_out(&format!("server {i}'s I")))?;
        sum += info.mining.hashes;
    }
    Ok(sum)
}

/// The cluster's hashes a second over `window`, from the servers' counts.
fn cluster_rate(net: &Network, window: Duration) -> Result<f64> {
    let (first, started) = (cluster_hashes(net)?, Instant::now());
    thread::sleep(window);
    let last = cluster_hashes(net)?;
    Ok((last - first) as f64 / started.elapsed().as_secs_f64())
}

/// Hashes a second of `threads` threads running the search loop for
/// `within`, at normal priority: the limit a cluster on this machine can
/// reach.
pub fn raw_search_rate(threads: usize, within: Duration) -> f64 {
    let header = BlockHeader {
        number: 1,
        previous: Hash([1; 32]),
        slot: 1,
        timestamp: 1,
        merkle_root: Hash([2; 32]),
        balance_hash: Hash([3; 32]),
        difficulty: 255,
        nonce: 0,
    };
    let started = Instant::now();
    let tried: u64 = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1) as u64)
            .map(|t| {
                scope.spawn(move || {
                    let mut searcher = Searcher::new(&header, t);
                    searcher
                        .search(1, u64::MAX, || started.elapsed() >= within)
                        .1
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    tried as f64 / started.elapsed().as_secs_f64()
}

/// The `block`, `found` and `seal` events of server 1, by block number:
/// when each was published, and in which slot each block was made.
struct Events {
    blocks: Arc<Mutex<HashMap<u64, (Millis, u64)>>>,
    found: Arc<Mutex<HashMap<u64, Millis>>>,
    seals: Arc<Mutex<HashMap<u64, Millis>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Events {
    fn subscribe(config: &Config) -> Result<Events> {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_subscribe(config.chain.as_bytes())?;
        if let Some(address) = config.server_publish(ServerId(1)) {
            socket.connect(&endpoint(&address))?;
        }
        let blocks = Arc::new(Mutex::new(HashMap::new()));
        let found = Arc::new(Mutex::new(HashMap::new()));
        let seals = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, f, s, st) = (blocks.clone(), found.clone(), seals.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let _ctx = ctx;
            while !st.load(Ordering::Relaxed) {
                if socket.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
                    continue;
                }
                while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
                    let [_, _, body] = frames.as_slice() else {
                        continue;
                    };
                    let Ok(published) = serde_json::from_slice::<Published>(body) else {
                        continue;
                    };
                    let at = published.time_ms;
                    match published.event {
                        Event::Block { number, slot, .. } => {
                            b.lock().expect("events").insert(number, (at, slot));
                        }
                        Event::Found { number, .. } => {
                            f.lock().expect("events").insert(number, at);
                        }
                        Event::Seal { number, .. } => {
                            s.lock().expect("events").insert(number, at);
                        }
                        _ => {}
                    }
                }
            }
        });
        Ok(Events {
            blocks,
            found,
            seals,
            stop,
            thread: Some(thread),
        })
    }

    /// The block the round of `slot` made at server 1, once published.
    fn block_of(&self, net: &Network, slot: u64) -> Result<Option<u64>> {
        let find = || {
            let blocks = self.blocks.lock().expect("events");
            blocks
                .iter()
                .find(|(_, (_, s))| *s == slot)
                .map(|(n, _)| *n)
        };
        let within = Duration::from_millis(4 * net.client.schedule().slot_ms);
        let _ = net.wait_for("the load's block", within, || find().is_some());
        Ok(find())
    }

    /// Milliseconds from block `number`'s commit at server 1 to a seal of
    /// it found there, and to the seal's commit.
    fn commit_to_seal(&self, net: &Network, number: u64) -> Result<(u64, u64)> {
        let within = Duration::from_millis(30 * net.client.schedule().slot_ms);
        net.wait_for("the block's seal", within, || {
            self.seals.lock().expect("events").contains_key(&number)
        })?;
        let sealed = self.seals.lock().expect("events")[&number];
        let made = self.blocks.lock().expect("events")[&number].0;
        let found = self
            .found
            .lock()
            .expect("events")
            .get(&number)
            .copied()
            .unwrap_or(sealed);
        Ok((found.saturating_sub(made), sealed.saturating_sub(made)))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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
//!    the next alpha: the latency from its close to its RESULT (the beta's
//!    round event), and to the last server committing it;
//! 4. the catch-up time of a server that lost its database: server 3 is
//!    stopped, a round changes the database, its data directory is deleted,
//!    and it is started again; the time from its connector entering
//!    fetch-snapshot to sampling again, and from its start to in sync.
//!
//! The servers and the load generator share this machine's cores.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rota_peer::keys::Keypair;
use rota_peer::schedule::{Schedule, unix_now_ms};
use rota_peer::transaction::{SIGNED_LEN, Transaction};
use rota_peer::wire::{Reply, Request};
use rota_peer::{Hash, Millis, PublicKey, ServerId};

use crate::config::{Config, Role, endpoint};
use crate::error::{Error, Result};
use crate::genesis::{Genesis, GenesisAccount};
use crate::testnet::{self, InitOptions};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Where to write the network; a fresh temporary directory if `None`.
    pub dir: Option<PathBuf>,
    /// Payments in the throughput round.
    pub transactions: usize,
    /// Payments in the round whose close -> RESULT latency is measured.
    pub round_transactions: usize,
    /// Pipelined DEALER connections sending them.
    pub connections: usize,
    /// Accounts in the genesis besides the payers.
    pub accounts: usize,
    /// Accounts that pay.
    pub payers: usize,
    /// Slot length of the network.
    pub slot_ms: u64,
    /// Keep the network directory afterwards.
    pub keep: bool,
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
            keep: false,
        }
    }
}

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

/// The raw single-core batched verify rate: `ed25519_dalek::verify_batch`
/// over batches of 1024, keys already decompressed.
pub fn raw_batched_verify_rate(within: Duration) -> f64 {
    const BATCH: usize = 1024;
    let txs: Vec<Transaction> = (0..BATCH)
        .map(|i| Transaction::sign(&payer(i % 64), filler(i), 1, i as u64))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = txs
        .iter()
        .map(|t| ed25519_dalek::VerifyingKey::from_bytes(&t.payer().0).expect("valid key"))
        .collect();
    let messages: Vec<&[u8]> = txs.iter().map(|t| &t.bytes()[..SIGNED_LEN]).collect();
    let signatures: Vec<ed25519_dalek::Signature> = txs
        .iter()
        .map(|t| ed25519_dalek::Signature::from_bytes(t.bytes()[76..].try_into().expect("64")))
        .collect();
    let start = Instant::now();
    let mut verified = 0usize;
    while start.elapsed() < within {
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).expect("valid batch");
        verified += BATCH;
    }
    verified as f64 / start.elapsed().as_secs_f64()
}

/// The network under test: three `rota run` processes, killed on drop.
struct Network {
    dir: PathBuf,
    client: Config,
    children: Vec<Option<Child>>,
    keep: bool,
}

impl Network {
    fn start(&mut self, i: usize) -> Result<()> {
        let node = self.dir.join(format!("node-{i}"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.join("node.log"))
            .map_err(|e| Error::io(&node, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&node, e))?;
        let exe = std::env::current_exe().map_err(|e| Error::io("rota executable", e))?;
        let child = Command::new(exe)
            .args(["run", "--conf"])
            .arg(node.join("rota.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io("rota run", e))?;
        self.children[i - 1] = Some(child);
        Ok(())
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.children[i - 1].take() {
            // SAFETY: kill(2) on a child this process spawned and still owns.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    fn info(&self, i: usize) -> Option<serde_json::Value> {
        let ctx = zmq::Context::new();
        let mut connection =
            crate::client::connect(&ctx, &self.client, ServerId(i as u32), 2_000).ok()?;
        match connection.call(&Request::Info).ok()? {
            Reply::Info(text) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }

    fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut condition: impl FnMut(&Network) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        while !condition(self) {
            if Instant::now() > deadline {
                return Err(Error::Remote(format!(
                    "bench: timed out waiting for {what}; logs are in {}",
                    self.dir.display()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn in_sync(&self, i: usize) -> bool {
        self.info(i).and_then(|v| v["in_sync"].as_bool()) == Some(true)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 1..=self.children.len() {
            self.stop(i);
        }
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes the network: `testnet init`, then a genesis with the payers and
/// the filler accounts.
fn write_network(options: &BenchOptions, dir: &Path) -> Result<()> {
    testnet::init(&InitOptions {
        nodes: 3,
        dir: dir.to_path_buf(),
        slot_ms: options.slot_ms,
        base_port: None,
    })?;
    let mut accounts: Vec<GenesisAccount> = (0..options.payers)
        .map(|i| GenesisAccount {
            public_key: payer(i).public(),
            balance: 1_000_000,
        })
        .collect();
    accounts.extend((0..options.accounts).map(|i| GenesisAccount {
        public_key: filler(i),
        balance: 1,
    }));
    Genesis {
        chain: testnet::CHAIN.into(),
        accounts,
    }
    .write(&dir.join("genesis.json"))
}

/// Pre-signed payments for one round: payer `i mod payers` pays 1 to a new
/// account, all stamped `at`.
fn presign(count: usize, payers: usize, at: Millis, round: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut payee = [0u8; 32];
            payee[..8].copy_from_slice(&round.to_be_bytes());
            payee[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            payee[16] = 0x77;
            Transaction::sign(&payer(i % payers), PublicKey(payee), 1, at)
                .bytes()
                .to_vec()
        })
        .collect()
}

/// What one sender saw.
#[derive(Default)]
struct Sent {
    accepted: usize,
    refused: usize,
    first_refusal: Option<String>,
    first_send: Option<Instant>,
    last_reply: Option<Instant>,
}

/// A DEALER for the load, connected before the measured window opens so
/// that connection set-up is not timed.
fn dealer(ctx: &zmq::Context, address: &str) -> Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.set_sndhwm(0)?;
    socket.set_rcvhwm(0)?;
    socket.connect(address)?;
    Ok(socket)
}

/// Sends `payments` over one DEALER, keeping up to `window` requests in
/// flight, until every reply is in or `deadline` passes.
fn send_pipelined(
    socket: zmq::Socket,
    chain: &str,
    payments: &[Vec<u8>],
    deadline: Instant,
) -> Result<Sent> {
    const WINDOW: usize = 1_000;
    let mut sent = 0;
    let mut result = Sent::default();
    while result.accepted + result.refused < payments.len() && Instant::now() < deadline {
        while sent < payments.len() && sent - (result.accepted + result.refused) < WINDOW {
            socket.send_multipart([chain.as_bytes(), b"T", &payments[sent]], 0)?;
            result.first_send.get_or_insert_with(Instant::now);
            sent += 1;
        }
        if socket.poll(zmq::POLLIN, 100)? == 0 {
            continue;
        }
        while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
            result.last_reply = Some(Instant::now());
            if frames.first().map(Vec::as_slice) == Some(b"T") {
                result.accepted += 1;
            } else {
                result.refused += 1;
                if result.first_refusal.is_none() {
                    result.first_refusal = frames
                        .get(1)
                        .map(|m| String::from_utf8_lossy(m).into_owned());
                }
            }
        }
    }
    Ok(result)
}

/// One loaded round.
struct Load {
    slot: u64,
    accepted: usize,
    refused: usize,
    first_refusal: Option<String>,
    /// From the first payment sent to the last reply received.
    seconds: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.seconds
    }
}

/// Pre-signs `count` payments for the first slot of `alpha` opening after
/// `after`, and sends them from the slot's opening over `connections`
/// pipelined DEALERs connected beforehand.
fn load_round(
    net: &Network,
    alpha: ServerId,
    after: Millis,
    count: usize,
    connections: usize,
    payers: usize,
) -> Result<Load> {
    let schedule = net.client.schedule();
    let slot = next_slot_of(&schedule, alpha, after);
    let opens = schedule.start(slot);
    let payments = presign(count, payers, opens + schedule.tolerance_ms / 2, slot);
    let ctx = zmq::Context::new();
    let address = endpoint(&net.client.server_address(alpha));
    let sockets = (0..connections.max(1))
        .map(|_| dealer(&ctx, &address))
        .collect::<Result<Vec<_>>>()?;
    sleep_until(opens + 20);
    let deadline =
        Instant::now() + Duration::from_millis(schedule.slot_ms - schedule.blackout_ms - 100);
    let share = count.div_ceil(sockets.len()).max(1);
    let chain = &net.client.chain;
    let results: Vec<Result<Sent>> = thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .into_iter()
            .zip(payments.chunks(share))
            .map(|(socket, chunk)| {
                scope.spawn(move || send_pipelined(socket, chain, chunk, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender thread"))
            .collect()
    });
    let results: Vec<Sent> = results.into_iter().collect::<Result<_>>()?;
    let first = results.iter().filter_map(|r| r.first_send).min();
    let last = results.iter().filter_map(|r| r.last_reply).max();
    Ok(Load {
        slot,
        accepted: results.iter().map(|r| r.accepted).sum(),
        refused: results.iter().map(|r| r.refused).sum(),
        first_refusal: results.iter().find_map(|r| r.first_refusal.clone()),
        seconds: first
            .zip(last)
            .map_or(f64::NAN, |(a, b)| b.duration_since(a).as_secs_f64()),
    })
}

/// Events published by the servers, with the time each was received.
#[derive(Default)]
struct Events {
    seen: Vec<(u32, String, serde_json::Value)>,
}

fn subscribe(
    config: &Config,
    events: Arc<Mutex<Events>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<thread::JoinHandle<()>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::SUB)?;
    socket.set_linger(0)?;
    socket.set_subscribe(config.chain.as_bytes())?;
    for id in config.server_list().ids() {
        if let Some(address) = config.server_publish(id) {
            socket.connect(&endpoint(&address))?;
        }
    }
    Ok(thread::spawn(move || {
        let _ctx = ctx;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if socket.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
                continue;
            }
            while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
                let [_, topic, body] = frames.as_slice() else {
                    continue;
                };
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
                    continue;
                };
                let server = value["server"].as_u64().unwrap_or(0) as u32;
                let topic = String::from_utf8_lossy(topic).into_owned();
                events
                    .lock()
                    .expect("events lock")
                    .seen
                    .push((server, topic, value));
            }
        }
    }))
}

/// The first slot at or after `from` whose alpha is server `alpha`.
fn next_slot_of(schedule: &Schedule, alpha: ServerId, from: Millis) -> u64 {
    let mut slot = schedule.slot_at(from) + 1;
    while schedule.alpha(slot) != alpha {
        slot += 1;
    }
    slot
}

fn sleep_until(at: Millis) {
    let now = unix_now_ms();
    if at > now {
        thread::sleep(Duration::from_millis(at - now));
    }
}

/// How a restarted server caught up, read from its log: events published
/// in its first moments are missed by subscribers that connect after it
/// starts, so the log is the reliable record.
struct CatchUp {
    how: &'static str,
    /// From its connector starting (after the genesis is loaded) to sampling.
    total: Option<u64>,
    /// From fetch-snapshot to sampling, when it fetched.
    fetch: Option<u64>,
}

impl CatchUp {
    fn from_log(log: &str) -> CatchUp {
        // Only the last run of the server: its lines after the last start.
        let marker = format!("rota {}: server", env!("CARGO_PKG_VERSION"));
        let run = log.rfind(&marker).map_or(log, |at| &log[at..]);
        let when = |needle: &str| -> Option<u64> {
            run.lines()
                .find(|l| l.contains(needle))
                .and_then(log_time_ms)
        };
        let last_sampling = run
            .lines()
            .rev()
            .find(|l| l.contains("-> sampling"))
            .and_then(log_time_ms);
        let connecting = when("connector: connecting");
        let fetching = when("-> fetch-snapshot");
        let how = if run.contains("installing the fetched database") {
            "fetched by its connector"
        } else if run.contains("installing the database pushed") {
            "pushed by a beta"
        } else {
            "not installed"
        };
        let span = |from: Option<u64>| from.zip(last_sampling).map(|(a, b)| b.saturating_sub(a));
        CatchUp {
            how,
            total: span(connecting),
            fetch: span(fetching),
        }
    }
}

/// The time of day of a log line `[YYYY-MM-DDTHH:MM:SS.mmmZ ...`, in ms.
fn log_time_ms(line: &str) -> Option<u64> {
    let clock = line.get(12..24)?;
    let number = |range: std::ops::Range<usize>| clock.get(range)?.parse::<u64>().ok();
    Some(((number(0..2)? * 60 + number(3..5)?) * 60 + number(6..8)?) * 1000 + number(9..12)?)
}

/// Runs the benchmark and prints its report.
pub fn run(options: &BenchOptions) -> Result<()> {
    println!("rota bench: raw single-core batched verify rate (batches of 1024)...");
    let raw = raw_batched_verify_rate(Duration::from_secs(3));
    println!("  raw batched verify: {raw:.0} signatures/s");

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
    write_network(options, &dir)?;
    let client = Config::load(&dir.join("client.toml"), Role::Client)?;
    let schedule = client.schedule();
    let mut net = Network {
        dir: dir.clone(),
        client,
        children: vec![None, None, None],
        keep: options.keep,
    };
    for i in 1..=3 {
        net.start(i)?;
    }
    net.wait_for("all three servers in sync", Duration::from_secs(120), |n| {
        (1..=3).all(|i| n.in_sync(i))
    })?;
    let events = Arc::new(Mutex::new(Events::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = subscribe(&net.client, events.clone(), stop.clone())?;

    let round_events = |slot: u64| -> HashMap<u32, (u64, String)> {
        events
            .lock()
            .expect("events lock")
            .seen
            .iter()
            .filter(|(_, topic, v)| topic == "round" && v["slot"].as_u64() == Some(slot))
            .map(|(server, _, v)| {
                let time = v["time_ms"].as_u64().unwrap_or(0);
                (
                    *server,
                    (time, v["outcome"].as_str().unwrap_or("").to_string()),
                )
            })
            .collect()
    };
    // When round `load` was decided at its beta and committed everywhere,
    // in ms after its close.
    let decided = |load: &Load| -> Result<(u64, u64, String)> {
        net.wait_for(
            "a round's result on all three servers",
            Duration::from_millis(3 * schedule.slot_ms),
            |_| round_events(load.slot).len() == 3,
        )?;
        let seen = round_events(load.slot);
        let close = schedule.close(load.slot);
        let beta = schedule.alpha(load.slot).0;
        let (at_beta, outcome) = seen[&beta].clone();
        let everywhere = seen.values().map(|(t, _)| *t).max().unwrap_or(0);
        Ok((
            at_beta.saturating_sub(close),
            everywhere.saturating_sub(close),
            outcome,
        ))
    };
    let report = |what: &str, load: &Load| {
        println!(
            "  {what}: accepted {} payments in {:.3} s over {} connections: {:.0} payments/s",
            load.accepted,
            load.seconds,
            options.connections,
            load.rate()
        );
        if load.refused > 0 {
            println!(
                "  refused {}; the first refusal: {}",
                load.refused,
                load.first_refusal.clone().unwrap_or_default()
            );
        }
    };

    // Throughput: a large round, so that once-a-round costs do not dominate.
    println!(
        "throughput: {} payments to server 1 in its next slot...",
        options.transactions
    );
    let throughput = load_round(
        &net,
        ServerId(1),
        unix_now_ms() + 3_000,
        options.transactions,
        options.connections,
        options.payers,
    )?;
    report(&format!("slot {}", throughput.slot), &throughput);
    let (big_result, _, outcome) = decided(&throughput)?;
    println!(
        "  round {}: {outcome}, close -> RESULT {big_result} ms",
        throughput.slot
    );

    // Round latency: a round of the size asked for, at the next alpha.
    println!(
        "latency: {} payments to server 2 in its next slot...",
        options.round_transactions
    );
    let round = load_round(
        &net,
        ServerId(2),
        schedule.close(throughput.slot),
        options.round_transactions,
        options.connections,
        options.payers,
    )?;
    report(&format!("slot {}", round.slot), &round);
    let (to_result, to_all, outcome) = decided(&round)?;
    println!(
        "  round {} ({} payments): {outcome}; close -> RESULT {to_result} ms, close -> committed on all three {to_all} ms",
        round.slot, round.accepted
    );

    // Catch-up of a server that lost its database.
    net.stop(3);
    let change = load_round(
        &net,
        ServerId(1),
        unix_now_ms() + 2_000,
        100,
        1,
        options.payers,
    )?;
    net.wait_for(
        "the changing round to commit on servers 1 and 2",
        Duration::from_millis(3 * schedule.slot_ms),
        |_| {
            let seen = round_events(change.slot);
            seen.contains_key(&1) && seen.contains_key(&2)
        },
    )?;
    fs::remove_dir_all(dir.join("node-3/data"))
        .map_err(|e| Error::io(dir.join("node-3/data"), e))?;
    let started_at = Instant::now();
    net.start(3)?;
    net.wait_for("server 3 in sync again", Duration::from_secs(120), |n| {
        n.in_sync(3)
    })?;
    let to_sync = started_at.elapsed();
    let log = fs::read_to_string(dir.join("node-3/node.log")).unwrap_or_default();
    let catch_up = CatchUp::from_log(&log);
    println!(
        "  catch-up of a {}-account database ({}): connector start -> in sync {}, of which \
         fetch and install {}; process start -> in sync {} ms",
        options.accounts + options.payers,
        catch_up.how,
        catch_up.total.map_or("?".into(), |ms| format!("{ms} ms")),
        catch_up.fetch.map_or("-".into(), |ms| format!("{ms} ms")),
        to_sync.as_millis()
    );

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
        "  round close -> RESULT              {to_result:>10} ms  ({} payments)",
        round.accepted
    );
    if let Some(ms) = catch_up.total {
        println!(
            "  catch-up, {:>7}-account database {ms:>10} ms  (target <= 1000 ms at 1,000,000 accounts)",
            options.accounts + options.payers,
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = listener.join();
    Ok(())
}

//! Single-core throughput of the ledger's hot paths.
//!
//! Groups (filter with `cargo bench --bench ledger -- <regex>`):
//!
//! - `verify`: the raw ZIP 215 batch check (`rota_peer::signature::Batch`)
//!   over the signed messages of pre-signed transactions, built beforehand
//!   (the upper limit for accepting payments), batches of 1024 (the
//!   listener's batch) and 256; and the single check one at a time for
//!   reference.
//! - `accept`: what the node does with a batch of 1024 payments:
//!   `Verifier::verify_batch` then `Core::submit` for each (`batched`), or
//!   `Verifier::verify` then `Core::submit` for each (`single`).
//! - `accept_steps`: the two halves of `accept/batched` alone.
//! - `hash`: `Balances::hash()` of a 1,000,000-account database from scratch
//!   (the whole tree) and of a round's state that created 10,000 accounts in
//!   it (only the changed buckets), `Balances::pack()`, and `Sha256::digest`
//!   alone over the same 36,000,000 bytes.
//!
//! After the runs, `main` reads each benchmark's mean from
//! `<criterion dir>/<group>/<bench>/new/estimates.json` and prints the rates,
//! the two target ratios and whether each target is met. Only results written
//! by this run are used, so a filtered run reports what it measured.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use rota::ledger::core::{Committed, Core};
use rota_peer::balances::Balances;
use rota_peer::keys::Keypair;
use rota_peer::schedule::Schedule;
use rota_peer::signature::{self, Batch};
use rota_peer::transaction::{SIGNED_LEN, Transaction, VerifiedTx, Verifier};
use rota_peer::wire::ServerList;
use rota_peer::{Hash, PublicKey, ServerId};
use sha2::{Digest, Sha256};

/// The chain the payments are signed for.
const CHAIN: &str = "bench";
/// The listener's batch: it reads up to this many requests at a time.
const BATCH: usize = 1024;
/// A smaller batch, to show how the batch speed-up depends on size.
const SMALL_BATCH: usize = 256;
/// Payer accounts in the acceptance genesis.
const PAYERS: usize = 1_000;
/// Each payer's opening balance (1,000 x 1,000,000 fits a u32 supply).
const PAYER_FUNDS: u32 = 1_000_000;

/// The fake clock: 20 s into a 60 s slot, so the one server's window is open
/// (it closes 45 s in) and stays open for every timestamp used.
const NOW: u64 = 1_700_000_000_000;
const SCHEDULE: Schedule = Schedule {
    slot_ms: 60_000,
    blackout_ms: 15_000,
    tolerance_ms: 5_000,
    servers: 1,
    difficulty: 0,
};
const _: () = assert!(NOW % SCHEDULE.slot_ms < 40_000);

/// Accounts in the hashed database, and how many of them were just created.
const DB_ACCOUNTS: usize = 1_000_000;
const DB_ADDED: usize = 10_000;
const DB_BYTES: usize = DB_ACCOUNTS * 36;

// Group and benchmark names, shared by the runs and the summary.
const G_VERIFY: &str = "verify";
const G_ACCEPT: &str = "accept";
const G_STEPS: &str = "accept_steps";
const G_HASH: &str = "hash";

/// A fast deterministic generator for account keys that need no private key.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn key(&mut self) -> PublicKey {
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes());
        }
        PublicKey(key)
    }
}

/// The payers, their genesis, and 1024 distinct payments signed by them.
struct Payments {
    genesis: Arc<Balances>,
    genesis_hash: Hash,
    txs: Vec<Transaction>,
}

impl Payments {
    fn new() -> Payments {
        let payers: Vec<Keypair> = (0..PAYERS)
            .map(|i| {
                let mut seed = [0x5a; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Keypair::from_seed(&seed)
            })
            .collect();
        let accounts: Vec<(PublicKey, u32)> =
            payers.iter().map(|p| (p.public(), PAYER_FUNDS)).collect();
        let mut genesis = Balances::from_accounts(&accounts).expect("a valid genesis");
        let genesis_hash = genesis.hash();
        let mut fresh = SplitMix(7);
        // Distinct by (payer, timestamp): payer i % 1000, stamp i % 4000 ms
        // around NOW. One payment in four creates its payee's account.
        let txs = (0..BATCH)
            .map(|i| {
                let payer = &payers[i % PAYERS];
                let payee = if i % 4 == 0 {
                    fresh.key()
                } else {
                    payers[(i * 7 + 1) % PAYERS].public()
                };
                let amount = 1 + (i % 97) as u32;
                let timestamp = NOW - 2_000 + (i % 4_000) as u64;
                Transaction::sign(CHAIN, payer, payee, amount, timestamp)
            })
            .collect();
        Payments {
            genesis: Arc::new(genesis),
            genesis_hash,
            txs,
        }
    }

    /// A one-server core resuming from the genesis: the alpha, in sync.
    fn core(&self) -> Core {
        let server = Keypair::from_seed(&[0xee; 32]);
        let committed = Committed {
            slot: SCHEDULE.slot_at(NOW) - 1,
            hash: self.genesis_hash,
            snapshot: self.genesis.clone(),
        };
        let config = rota::ledger::consensus::Config {
            chain: CHAIN.into(),
            me: ServerId(1),
            keypair: server.clone(),
            servers: ServerList::new(vec![server.public()]),
            timing: rota::ledger::consensus::Timing::new(SCHEDULE),
        };
        Core::new(config, committed, None, Vec::new()).expect("no records to check")
    }
}

/// Submits every payment; each must be accepted.
fn submit_all(core: &mut Core, txs: impl IntoIterator<Item = VerifiedTx>) {
    for tx in txs {
        let (result, actions) = core.submit(tx, NOW);
        assert!(result.is_ok(), "payment refused: {result:?}");
        black_box(actions);
    }
}

/// A signature check with its inputs built: key, signed message, signature.
type Check = ([u8; 32], Vec<u8>, [u8; 64]);

fn signature_checks(txs: &[Transaction]) -> Vec<Check> {
    txs.iter()
        .map(|t| {
            (
                t.payer().0,
                t.signed_message(CHAIN),
                t.bytes()[SIGNED_LEN..].try_into().expect("64 bytes"),
            )
        })
        .collect()
}

fn verify_benches(c: &mut Criterion, payments: &OnceCell<Payments>) {
    let mut group = c.benchmark_group(G_VERIFY);
    for size in [BATCH, SMALL_BATCH] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("raw_batch", size), |b| {
            let checks = signature_checks(&payments.get_or_init(Payments::new).txs[..size]);
            let batch = |checks: &[Check]| {
                let mut batch = Batch::new();
                for (key, message, signature) in checks {
                    batch.queue(key, message, signature);
                }
                batch.verify()
            };
            assert!(batch(&checks), "a valid batch");
            b.iter(|| assert!(batch(black_box(&checks))));
        });
    }
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("raw_single", BATCH), |b| {
        let checks = signature_checks(&payments.get_or_init(Payments::new).txs);
        b.iter(|| {
            for (key, message, signature) in black_box(&checks) {
                assert!(signature::verify(key, message, signature));
            }
        });
    });
    group.finish();
}

fn accept_benches(c: &mut Criterion, payments: &OnceCell<Payments>) {
    let mut group = c.benchmark_group(G_ACCEPT);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("batched", BATCH), |b| {
        let payments = payments.get_or_init(Payments::new);
        // Long-lived, as in the listener: payer keys stay decompressed.
        let mut verifier = Verifier::new(CHAIN);
        let mut check = payments.core();
        submit_all(
            &mut check,
            verifier
                .verify_batch(&payments.txs)
                .into_iter()
                .map(|v| v.unwrap()),
        );
        assert_eq!(check.pending_count(), BATCH);
        b.iter_batched(
            || payments.core(),
            |mut core| {
                let verdicts = verifier.verify_batch(black_box(&payments.txs));
                submit_all(&mut core, verdicts.into_iter().map(|v| v.unwrap()));
                core
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function(BenchmarkId::new("single", BATCH), |b| {
        let payments = payments.get_or_init(Payments::new);
        let mut verifier = Verifier::new(CHAIN);
        for tx in &payments.txs {
            verifier.verify(*tx).unwrap();
        }
        b.iter_batched(
            || payments.core(),
            |mut core| {
                for tx in black_box(&payments.txs) {
                    let verified = verifier.verify(*tx).unwrap();
                    submit_all(&mut core, [verified]);
                }
                core
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    let mut group = c.benchmark_group(G_STEPS);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("verifier_batch", BATCH), |b| {
        let payments = payments.get_or_init(Payments::new);
        let mut verifier = Verifier::new(CHAIN);
        verifier.verify_batch(&payments.txs);
        b.iter(|| verifier.verify_batch(black_box(&payments.txs)));
    });
    group.bench_function(BenchmarkId::new("submit", BATCH), |b| {
        let payments = payments.get_or_init(Payments::new);
        let verified: Vec<VerifiedTx> = Verifier::new(CHAIN)
            .verify_batch(&payments.txs)
            .into_iter()
            .map(|v| v.unwrap())
            .collect();
        b.iter_batched(
            || (payments.core(), verified.clone()),
            |(mut core, verified)| {
                submit_all(&mut core, black_box(verified));
                core
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// The databases of the hash benches.
struct Databases {
    /// 1,000,000 genesis accounts, hashed.
    hashed: Balances,
    /// The payments of a round that creates `DB_ADDED` accounts in it.
    round: Vec<(PublicKey, PublicKey)>,
    /// The packed bytes of `hashed`.
    packed: Vec<u8>,
}

impl Databases {
    fn new() -> Databases {
        let mut rng = SplitMix(42);
        let accounts: Vec<(PublicKey, u32)> =
            (0..DB_ACCOUNTS).map(|_| (rng.key(), 1_000)).collect();
        let mut hashed = Balances::from_accounts(&accounts).expect("a valid genesis");
        hashed.hash();
        let round = (0..DB_ADDED).map(|i| (accounts[i].0, rng.key())).collect();
        let packed = hashed.pack();
        assert_eq!(packed.len(), DB_BYTES);
        Databases {
            hashed,
            round,
            packed,
        }
    }
}

fn hash_benches(c: &mut Criterion, dbs: &OnceCell<Databases>) {
    let mut group = c.benchmark_group(G_HASH);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(DB_BYTES as u64));
    // The whole tree, as after reading a packed database (built in setup).
    group.bench_function("hash_scratch", |b| {
        let dbs = dbs.get_or_init(Databases::new);
        b.iter_batched(
            || Balances::from_packed(&dbs.packed).expect("packed"),
            |mut db| {
                black_box(db.hash());
                db
            },
            BatchSize::PerIteration,
        );
    });
    // A round's state: a clone of the hashed database with 10,000 accounts
    // created by payments (in setup); only the changed buckets are hashed.
    group.bench_function("hash_round", |b| {
        let dbs = dbs.get_or_init(Databases::new);
        b.iter_batched(
            || {
                let mut db = dbs.hashed.clone();
                for (payer, payee) in &dbs.round {
                    db.pay(payer, payee, 1).expect("a valid payment");
                }
                db
            },
            |mut db| {
                black_box(db.hash());
                db
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("pack", |b| {
        let dbs = dbs.get_or_init(Databases::new);
        b.iter(|| black_box(dbs.hashed.pack()));
    });
    group.bench_function("sha256_alone", |b| {
        let packed = &dbs.get_or_init(Databases::new).packed;
        b.iter(|| Sha256::digest(black_box(packed)));
    });
    group.finish();
}

/// Where criterion keeps its results: $CRITERION_HOME, else
/// $CARGO_TARGET_DIR/criterion, else target/criterion in this package. It is
/// also handed to criterion, so both sides agree.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(target)
            .join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion")
}

/// The mean time per iteration in ns of `group/bench`, if this run wrote it.
fn mean_ns(dir: &Path, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// How a result is shown: a rate in transactions for a batch of this many,
/// or a time with a rate over the 36,000,000 bytes.
#[derive(Clone, Copy)]
enum Unit {
    Txs(usize),
    DbBytes,
}

fn show(label: &str, unit: Unit, ns: Option<f64>) {
    match (unit, ns) {
        (Unit::Txs(count), Some(ns)) => println!(
            "  {label:<44} {:>9.0} tx/s  {:>8.3} ms/batch of {count}",
            count as f64 * 1e9 / ns,
            ns / 1e6
        ),
        (Unit::DbBytes, Some(ns)) => println!(
            "  {label:<44} {:>9.2} ms      {:>8.0} MB/s",
            ns / 1e6,
            DB_BYTES as f64 * 1e3 / ns
        ),
        (_, None) => println!("  {label:<44} not measured in this run"),
    }
}

fn verdict(name: &str, ratio: Option<f64>, target: &str, met: impl Fn(f64) -> bool) {
    match ratio {
        Some(r) => println!(
            "  {name:<44} {r:>9.3}  (target {target}): {}",
            if met(r) { "MET" } else { "NOT MET" }
        ),
        None => println!("  {name:<44} not measured in this run (target {target})"),
    }
}

/// Prints every figure of this run beside its limit. One piece: a table of
/// lines, one per figure, in the order the README shows them.
fn summary(dir: &Path, since: SystemTime) {
    let rows: [(&str, String, Unit); 11] = [
        (
            "raw ZIP 215 batch check (1024)",
            format!("{G_VERIFY}/raw_batch/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "raw ZIP 215 batch check (256)",
            format!("{G_VERIFY}/raw_batch/{SMALL_BATCH}"),
            Unit::Txs(SMALL_BATCH),
        ),
        (
            "raw ZIP 215 single check, one at a time",
            format!("{G_VERIFY}/raw_single/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "accept batched: verify_batch + submit",
            format!("{G_ACCEPT}/batched/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "accept single: verify + submit",
            format!("{G_ACCEPT}/single/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "  step: Verifier::verify_batch alone",
            format!("{G_STEPS}/verifier_batch/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "  step: Core::submit alone",
            format!("{G_STEPS}/submit/{BATCH}"),
            Unit::Txs(BATCH),
        ),
        (
            "hash 1M accounts from scratch",
            format!("{G_HASH}/hash_scratch"),
            Unit::DbBytes,
        ),
        (
            "hash a round creating 10k of 1M accounts",
            format!("{G_HASH}/hash_round"),
            Unit::DbBytes,
        ),
        ("pack 1M accounts", format!("{G_HASH}/pack"), Unit::DbBytes),
        (
            "sha256 alone over the 36,000,000 bytes",
            format!("{G_HASH}/sha256_alone"),
            Unit::DbBytes,
        ),
    ];
    let means: Vec<Option<f64>> = rows
        .iter()
        .map(|(_, id, _)| mean_ns(dir, id, since))
        .collect();
    if means.iter().all(Option::is_none) {
        return;
    }
    println!();
    println!("== rota ledger benchmarks, one core: means of this run ==");
    for ((label, _, unit), ns) in rows.iter().zip(&means) {
        show(label, *unit, *ns);
    }
    let rate = |i: usize| means[i].map(|ns| BATCH as f64 * 1e9 / ns);
    println!("targets:");
    verdict(
        "accept batched rate / raw verify_batch rate",
        rate(3).zip(rate(0)).map(|(a, b)| a / b),
        ">= 0.80",
        |x| x >= 0.80,
    );
    verdict(
        "pack+hash from scratch time / sha256 time",
        means[7]
            .zip(means[9])
            .zip(means[10])
            .map(|((hash, pack), sha)| (hash + pack) / sha),
        "<= 1.50",
        |x| x <= 1.50,
    );
}

fn main() {
    let since = SystemTime::now();
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(15)
        .configure_from_args();
    let payments = OnceCell::new();
    let dbs = OnceCell::new();
    verify_benches(&mut c, &payments);
    accept_benches(&mut c, &payments);
    hash_benches(&mut c, &dbs);
    c.final_summary();
    summary(&dir, since);
}

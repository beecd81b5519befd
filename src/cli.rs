//! The command line: one binary for servers, clients and operators.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rota_peer::keys::{SeedFile, create_seed_file, load_seed_file};
use rota_peer::wire::{Reply, Request};
use rota_peer::{Hash, PublicKey, ServerId};
use serde_json::json;

use crate::client::{self, DEFAULT_TIMEOUT_MS, PayOptions};
use crate::config::{Config, Role};
use crate::ledger::Exit;
use crate::testnet::{self, DEFAULT_DIFFICULTY_BITS, DEFAULT_NODES, DEFAULT_SLOT_MS, InitOptions};

/// Exit code of a server that stopped because consensus was lost.
pub const EXIT_CONSENSUS_LOST: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "rota",
    version,
    about = "A peer node for a small signed-ledger currency run by a fixed, ordered set of servers",
    long_about = "A peer node for a small signed-ledger currency run by a fixed, ordered set of \
                  servers.\n\nStart a local network of three servers with `rota testnet up --dir \
                  testnet`, then pay with `rota pay --conf testnet/client.toml --to KEY --amount 5`.\n\
                  Logging follows RUST_LOG (default: info).\n\nExit codes: 0 done, 1 error, \
                  2 usage, 3 a server stopped because consensus was lost."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a seed file (if missing; never overwritten) and print its public key.
    Keygen {
        /// The seed file to create or read.
        #[arg(long, default_value = "rota.seed")]
        seed_file: PathBuf,
    },
    /// Run a server.
    Run {
        /// The server's conf file.
        #[arg(long)]
        conf: PathBuf,
    },
    /// Check a conf file and print the resolved configuration as JSON.
    ConfigTest {
        #[arg(long)]
        conf: PathBuf,
        /// Check it as a client conf (no [listen], data directory or genesis needed).
        #[arg(long)]
        client: bool,
    },
    /// Sign a payment and send it to the current alpha (or --server).
    Pay(PayArgs),
    /// Print the balance of an account.
    Balance {
        /// The account's public key (64 hex characters).
        key: PublicKey,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Print a server's information.
    Info {
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Print what a server knows of a transaction id.
    Status {
        /// The transaction id (64 hex characters).
        id: Hash,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Print the events servers publish, until Ctrl-C.
    Watch {
        #[command(flatten)]
        common: ClientArgs,
        /// Only these topics (tx, round, block, peer, connector, role, stop); repeatable.
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Audit a server's data directory: replay its blocks from the genesis, check
    /// every certificate, signature and balance hash, and compare the result with its
    /// database. Exit code 0 when everything checks, 1 otherwise.
    Verify {
        /// The server's conf (chain, server list, genesis, data directory).
        #[arg(long)]
        conf: PathBuf,
        /// Audit this data directory instead of the conf's (a copy, or a stopped
        /// server's); one in use by a running server is refused.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set up and run a local network.
    #[command(subcommand)]
    Testnet(TestnetCommand),
    /// Load a real 3-server network on loopback and print its figures.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Payments in the throughput round.
    #[arg(long, default_value_t = 50_000)]
    pub transactions: usize,
    /// Payments in the round whose close -> commit latency is measured.
    #[arg(long, default_value_t = 10_000)]
    pub round_transactions: usize,
    /// Pipelined DEALER connections sending them.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Accounts in the genesis besides the payers.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: usize,
    /// Accounts that pay.
    #[arg(long, default_value_t = 1_000)]
    pub payers: usize,
    /// The network's slot length in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    pub slot_ms: u64,
    /// Write the network here (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the network's directory (logs, data) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Also measure a round at server 3 while this many clients flood it
    /// with I and D requests (reading every reply); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub flood: usize,
    /// Measure the nonce search instead: the cluster's hash rate beside
    /// this machine's all-core double SHA-256 rate, the acceptance rate
    /// with and without a search under way, and the time from a block's
    /// commit to its seal's (with at most 10,000 filler accounts).
    #[arg(long)]
    pub mining: bool,
    /// With --mining: the difficulty whose commit -> seal time is measured.
    #[arg(long, default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=crate::config::MAX_DIFFICULTY_BITS as i64))]
    pub difficulty_bits: u32,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// A client (or server) conf listing the chain's servers.
    #[arg(long)]
    pub conf: PathBuf,
    /// Ask this server (its number in the conf) instead of the first that answers.
    #[arg(long)]
    pub server: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each reply, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct PayArgs {
    /// The payee's public key (64 hex characters).
    #[arg(long)]
    pub to: PublicKey,
    /// The amount, more than 0.
    #[arg(long)]
    pub amount: u32,
    /// Sign with this seed file instead of the conf's.
    #[arg(long)]
    pub seed_file: Option<PathBuf>,
    /// Wait until the payment is committed in a block or reported lost.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub common: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum TestnetCommand {
    /// Write keys, confs and a genesis for N local servers into a directory.
    Init {
        /// Number of servers.
        #[arg(long, default_value_t = DEFAULT_NODES)]
        nodes: usize,
        /// Directory to write (must not hold a network already).
        #[arg(long)]
        dir: PathBuf,
        /// Slot length in milliseconds; blackout and tolerance are scaled to it.
        #[arg(long, default_value_t = DEFAULT_SLOT_MS)]
        slot_ms: u64,
        /// Leading zero bits each block's seal needs, a chain parameter
        /// (0 turns sealing off). Each bit doubles the search.
        #[arg(long, default_value_t = DEFAULT_DIFFICULTY_BITS,
              value_parser = clap::value_parser!(u32).range(0..=crate::config::MAX_DIFFICULTY_BITS as i64))]
        difficulty_bits: u32,
        /// Use fixed ports from here instead of free ones.
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Run every server of a network (making a 3-server one first if the
    /// directory holds none) and print each round's result; Ctrl-C stops them.
    Up {
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Keygen { seed_file } => keygen(&seed_file),
        Command::Run { conf } => run_server(&conf),
        Command::ConfigTest { conf, client } => config_test(&conf, client),
        Command::Pay(args) => pay(args),
        Command::Balance { key, common } => balance(key, &common),
        Command::Info { common } => info(&common),
        Command::Status { id, common } => status(id, &common),
        Command::Watch { common, topics } => watch(&common, &topics),
        Command::Testnet(TestnetCommand::Init {
            nodes,
            dir,
            slot_ms,
            difficulty_bits,
            base_port,
        }) => {
            testnet::init(&InitOptions {
                nodes,
                dir: dir.clone(),
                slot_ms,
                difficulty_bits,
                base_port,
            })?;
            print_init(&dir, nodes)?;
            Ok(0)
        }
        Command::Testnet(TestnetCommand::Up { dir }) => testnet_up(&dir),
        Command::Verify {
            conf,
            data_dir,
            json,
        } => verify(&conf, data_dir.as_deref(), json),
        Command::Bench(args) => {
            let options = crate::bench::BenchOptions {
                dir: args.dir,
                transactions: args.transactions,
                round_transactions: args.round_transactions,
                connections: args.connections,
                accounts: args.accounts,
                payers: args.payers,
                slot_ms: args.slot_ms,
                difficulty_bits: 0,
                keep: args.keep,
                flood: args.flood,
            };
            if args.mining {
                crate::bench::mining::run(&crate::bench::BenchOptions {
                    difficulty_bits: args.difficulty_bits,
                    accounts: options.accounts.min(10_000),
                    ..options
                })?;
            } else {
                crate::bench::run(&options)?;
            }
            Ok(0)
        }
    }
}

/// `rota keygen`: makes a seed file unless one is there, prints the key.
fn keygen(seed_file: &std::path::Path) -> Result<i32> {
    let (keypair, made) = create_seed_file(seed_file)?;
    match made {
        SeedFile::Created => eprintln!("created {}", seed_file.display()),
        SeedFile::AlreadyThere => {
            eprintln!("{} already exists; not overwritten", seed_file.display())
        }
    }
    println!("{}", keypair.public());
    Ok(0)
}

/// `rota run`: a server, until it stops; the exit code says why.
fn run_server(conf: &std::path::Path) -> Result<i32> {
    let config = Config::load(conf, Role::Server)?;
    let exit = crate::node::run(&config)?;
    Ok(match exit {
        Exit::Shutdown => {
            log::info!("stopped");
            0
        }
        Exit::ConsensusLost(reason) => {
            log::error!(
                "consensus lost: {reason}. State is saved; restart the servers once \
                 their operators agree (docs/OPERATIONS.md). Exit code {EXIT_CONSENSUS_LOST}."
            );
            EXIT_CONSENSUS_LOST
        }
        Exit::Failed(reason) => {
            log::error!("failed: {reason}");
            1
        }
    })
}

/// `rota verify`: the audit, and whether everything checked.
fn verify(conf: &std::path::Path, data_dir: Option<&std::path::Path>, json: bool) -> Result<i32> {
    let config = Config::load(conf, Role::Server)?;
    let audit = crate::verify::audit(&config, data_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        crate::verify::print(&audit);
    }
    Ok(if audit.ok() { 0 } else { 1 })
}

/// `rota config-test`: the conf, resolved, as JSON.
fn config_test(conf: &std::path::Path, client: bool) -> Result<i32> {
    let role = if client { Role::Client } else { Role::Server };
    let config = Config::load(conf, role)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&resolved(&config, role)?)?
    );
    Ok(0)
}

/// `rota balance`.
fn balance(key: PublicKey, common: &ClientArgs) -> Result<i32> {
    let (config, server) = client_conf(common)?;
    let ctx = zmq::Context::new();
    let (from, reply) = client::ask(
        &ctx,
        &config,
        server,
        &Request::Account(key),
        common.timeout_ms,
    )?;
    let Reply::Account(balance) = reply else {
        bail!("unexpected reply {reply:?}")
    };
    if common.json {
        println!(
            "{}",
            json!({"public_key": key, "balance": balance, "server": from})
        );
    } else {
        println!("{balance}");
    }
    Ok(0)
}

/// `rota info`: the `I` reply, as JSON or one field a line.
fn info(common: &ClientArgs) -> Result<i32> {
    let (config, server) = client_conf(common)?;
    let ctx = zmq::Context::new();
    let (_, reply) = client::ask(&ctx, &config, server, &Request::Info, common.timeout_ms)?;
    let Reply::Info(text) = reply else {
        bail!("unexpected reply {reply:?}")
    };
    let value: serde_json::Value = serde_json::from_str(&text)?;
    if common.json {
        println!("{value}");
    } else if let Some(map) = value.as_object() {
        for (key, value) in map {
            println!("{key:>15}: {value}");
        }
    }
    Ok(0)
}

/// `rota status`: what a server knows of a payment.
fn status(id: Hash, common: &ClientArgs) -> Result<i32> {
    let (config, server) = client_conf(common)?;
    let ctx = zmq::Context::new();
    let (from, reply) = client::ask(
        &ctx,
        &config,
        server,
        &Request::Status(id),
        common.timeout_ms,
    )?;
    let Reply::Status(status) = reply else {
        bail!("unexpected reply {reply:?}")
    };
    let (word, block, decided_by) = client::status_words(status);
    if common.json {
        println!(
            "{}",
            json!({"id": id, "status": word, "block": block, "decided_by": decided_by, "server": from})
        );
    } else {
        println!("{}", client::status_text(status));
    }
    Ok(0)
}

/// `rota watch`: events until Ctrl-C.
fn watch(common: &ClientArgs, topics: &[String]) -> Result<i32> {
    let (config, server) = client_conf(common)?;
    let stop = stop_flag()?;
    client::watch(
        &config,
        server,
        topics,
        |published| {
            let event = published.to_json();
            if common.json {
                println!("{event}");
            } else {
                let (server, topic) = (published.server, published.event.topic());
                println!("server {server} {topic}: {event}");
            }
        },
        || stop.load(Ordering::Relaxed),
    )?;
    Ok(0)
}

/// `rota testnet up`: writes the network the first time, then runs it.
fn testnet_up(dir: &std::path::Path) -> Result<i32> {
    if !dir.join("client.toml").exists() {
        testnet::init(&InitOptions {
            nodes: DEFAULT_NODES,
            dir: dir.to_path_buf(),
            slot_ms: DEFAULT_SLOT_MS,
            difficulty_bits: DEFAULT_DIFFICULTY_BITS,
            base_port: None,
        })?;
        print_init(dir, DEFAULT_NODES)?;
    }
    testnet::up(dir, stop_flag()?)?;
    Ok(0)
}

fn print_init(dir: &std::path::Path, nodes: usize) -> Result<()> {
    let client = Config::load(&dir.join("client.toml"), Role::Client)?;
    let payer = load_seed_file(&client.seed_file)?;
    println!("wrote a {nodes}-server network in {}", dir.display());
    println!("  run it:   rota testnet up --dir {}", dir.display());
    println!(
        "  pay:      rota pay --conf {} --to <KEY> --amount 5 --wait",
        dir.join("client.toml").display()
    );
    println!(
        "  funded client key (clients/client-1.seed): {}",
        payer.public()
    );
    Ok(())
}

/// A flag set by SIGINT or SIGTERM.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    }
    Ok(flag)
}

fn client_conf(args: &ClientArgs) -> Result<(Config, Option<ServerId>)> {
    let config = Config::load(&args.conf, Role::Client)?;
    let server = args
        .server
        .map(|n| client::server_id(&config, n))
        .transpose()?;
    Ok((config, server))
}

fn pay(args: PayArgs) -> Result<i32> {
    let (config, server) = client_conf(&args.common)?;
    let seed = args.seed_file.as_ref().unwrap_or(&config.seed_file);
    let payer = load_seed_file(seed)
        .with_context(|| format!("reading the payer's seed file {}", seed.display()))?;
    if args.amount == 0 {
        bail!("--amount must be more than 0");
    }
    let outcome = client::pay(
        &config,
        &payer,
        &PayOptions {
            to: args.to,
            amount: args.amount,
            server,
            wait: args.wait,
            timeout_ms: args.common.timeout_ms,
        },
    )?;
    let (status, block, decided_by) = match outcome.status.map(client::status_words) {
        Some((word, block, decided_by)) => (Some(word), block, decided_by),
        None => (None, None, None),
    };
    if args.common.json {
        println!(
            "{}",
            json!({
                "id": outcome.id,
                "disposition": outcome.disposition.map(|d| d.word()),
                "server": outcome.disposition.map(|d| d.server()),
                "sent_to": outcome.sent_to,
                "status": status,
                "block": block,
                "decided_by": decided_by,
            })
        );
    } else {
        match (outcome.disposition, outcome.sent_to) {
            (Some(disposition), Some(sent_to)) => println!(
                "payment {} {} by server {} (sent to server {sent_to})",
                outcome.id,
                disposition.word(),
                disposition.server(),
            ),
            _ => println!("payment {} (no server answered its T)", outcome.id),
        }
        if let Some(status) = outcome.status {
            println!("{}", client::status_text(status));
        }
    }
    Ok(match status {
        Some("committed") | None => 0,
        Some(_) => 1,
    })
}

/// The configuration as `config-test` prints it: every value resolved,
/// defaults filled in, with what follows from it.
fn resolved(config: &Config, role: Role) -> Result<serde_json::Value> {
    let keypair = load_seed_file(&config.seed_file)?;
    let mut value = serde_json::to_value(config)?;
    let schedule = config.schedule();
    let servers = config.server_list();
    let derived = json!({
        "role": match role { Role::Server => "server", Role::Client => "client" },
        "public_key": keypair.public(),
        "identifier": servers.id_of(&keypair.public()),
        "majority": servers.majority(),
        "accepting_ms": schedule.slot_ms - schedule.blackout_ms,
        "vote_wait_ms": schedule.slot_ms / 2,
    });
    if role == Role::Server {
        config.identify(&keypair.public())?;
    }
    value
        .as_object_mut()
        .expect("a conf is a table")
        .insert("resolved".into(), derived);
    Ok(value)
}

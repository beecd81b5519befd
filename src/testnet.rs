//! `rota testnet`: a local network of N servers on one machine.
//!
//! `init` writes everything the network needs into one directory:
//!
//! ```text
//! <dir>/genesis.json            the funded client accounts
//! <dir>/client.toml             a client conf for `rota pay`, `balance`, `watch`...
//! <dir>/clients/client-K.seed   the client seed files
//! <dir>/node-N/rota.toml        server N's conf (loopback ports: client sockets
//!                               on IPv4 and IPv6, a peering socket, events)
//! <dir>/node-N/rota.seed        server N's seed file
//! ```
//!
//! `up` starts one `rota run` process per server through a
//! [`Supervisor`] (logs in `node-N/node.log`), prints each round's result as
//! the servers publish it, and stops them all on Ctrl-C.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rota_peer::PublicKey;
use rota_peer::keys::create_seed_file;

use crate::config::{Config, Limits, MESSAGE_BYTES, Role};
use crate::error::{Error, Result};
use crate::events::{Event, Outcome, Published};
use crate::genesis::{Genesis, GenesisAccount};
use crate::supervisor::{Stopped, Supervisor};

/// The chain name of a generated network.
pub const CHAIN: &str = "local";
/// The default slot of a generated network: short enough to watch rounds go by.
pub const DEFAULT_SLOT_MS: u64 = 5_000;
/// The default number of servers.
pub const DEFAULT_NODES: usize = 3;

/// The seal difficulty a test network gets: about a million hashes a
/// block, a fraction of a second of one core's search, so a laptop seals
/// each block well within a slot.
pub const DEFAULT_DIFFICULTY_BITS: u32 = 20;
/// Funded client accounts written by `init`.
pub const CLIENTS: usize = 3;
/// The balance of each funded client.
pub const CLIENT_BALANCE: u32 = 1_000_000;

/// What `init` writes.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    pub slot_ms: u64,
    /// Leading zero bits a block's seal needs (0: blocks are not sealed).
    pub difficulty_bits: u32,
    /// Fixed ports from here instead of free ones picked at random: server
    /// N's client sockets on base + 2(N-1), its events on the next port, and
    /// its peering socket on base + 2 x nodes + (N-1), after all of those.
    pub base_port: Option<u16>,
}

/// The timings a network with this slot length gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub slot_ms: u64,
    pub blackout_ms: u64,
    pub tolerance_ms: u64,
    pub heartbeat_ms: u64,
}

impl Timings {
    /// Blackout a quarter of the slot, tolerance a tenth (so the blackout is
    /// more than twice the tolerance), heartbeats four times a slot.
    pub fn for_slot(slot_ms: u64) -> Timings {
        Timings {
            slot_ms,
            blackout_ms: slot_ms / 4,
            tolerance_ms: slot_ms / 10,
            heartbeat_ms: (slot_ms / 4).clamp(50, 5_000),
        }
    }
}

struct Ports {
    request: u16,
    publish: u16,
    peering: u16,
}

/// One server as the confs list it.
struct Entry {
    key: PublicKey,
    address: SocketAddr,
    publish: SocketAddr,
    peering: SocketAddr,
}

/// The fixed ports of `nodes` servers from `base` (see
/// [`InitOptions::base_port`]), refused if the last is above 65535.
fn fixed_ports(base: u16, nodes: usize) -> Result<Vec<Ports>> {
    let port = |offset: usize| {
        u16::try_from(usize::from(base) + offset).map_err(|_| {
            Error::Config(format!(
                "--base-port {base}: {nodes} servers need ports up to {}, above 65535",
                usize::from(base) + 3 * nodes - 1
            ))
        })
    };
    (0..nodes)
        .map(|i| {
            Ok(Ports {
                request: port(2 * i)?,
                publish: port(2 * i + 1)?,
                peering: port(2 * nodes + i)?,
            })
        })
        .collect()
}

fn ipv6_available() -> bool {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// Ports free on both loopback addresses, distinct from each other.
fn free_ports(count: usize, ipv6: bool) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..count * 50 {
        if ports.len() == count {
            break;
        }
        let v4 =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| Error::io("127.0.0.1", e))?;
        let port = v4
            .local_addr()
            .map_err(|e| Error::io("127.0.0.1", e))?
            .port();
        if !seen.insert(port) {
            continue;
        }
        if ipv6 {
            match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
                Ok(v6) => held.push(v6),
                Err(_) => continue,
            }
        }
        held.push(v4);
        ports.push(port);
    }
    if ports.len() < count {
        return Err(Error::Config(
            "could not find enough free loopback ports".into(),
        ));
    }
    Ok(ports)
}

fn quote(text: &str) -> String {
    format!("{text:?}")
}

/// The commented `[schedule]`, `[[servers]]` parts shared by server and
/// client confs; a server conf lists each server's peering address too (a
/// client never connects there).
fn shared_sections(out: &mut String, timings: &Timings, servers: &[Entry], peering: bool) {
    let _ = write!(
        out,
        r#"
[schedule]
# Length of a slot in milliseconds. Slots are aligned to the Unix epoch (UTC);
# slot s has alpha server (s mod N) + 1. Every server and client of a chain
# must use the same three timings.
slot_ms = {}
# The end of each slot in which the alpha takes no payments. Must be more
# than 2 x tolerance_ms (so one payment cannot be taken by two alphas) and
# less than slot_ms.
blackout_ms = {}
# How far a payment's timestamp may be from the alpha's clock, either way.
# Less than slot_ms / 4: the votes' deadlines are a quarter slot apart and
# each must hold a message's travel plus this clock bound (docs/CONSENSUS.md).
tolerance_ms = {}

# The servers of the chain, in order: a server's identifier is its position
# (1, 2, 3...). The list must be identical on every server and client.
"#,
        timings.slot_ms, timings.blackout_ms, timings.tolerance_ms
    );
    for (i, server) in servers.iter().enumerate() {
        let _ = write!(
            out,
            r#"
[[servers]]
# Server {}: its ed25519 public key, 64 hex characters (from `rota keygen`).
public_key = "{}"
# Where its client socket listens, for clients' requests: "host:port",
# "[v6]:port".
address = {}
"#,
            i + 1,
            server.key,
            quote(&server.address.to_string()),
        );
        if peering {
            let _ = write!(
                out,
                r#"# Where its peering socket listens, for the other servers' messages:
# "host:port", "[v6]:port". Required when there is more than one server.
peering = {}
"#,
                quote(&server.peering.to_string())
            );
        }
        let _ = write!(
            out,
            r#"# Where it publishes events (optional; `rota watch` subscribes here).
publish = {}
"#,
            quote(&server.publish.to_string())
        );
    }
}

fn server_conf(
    id: usize,
    difficulty_bits: u32,
    timings: &Timings,
    ports: &Ports,
    ipv6: bool,
    servers: &[Entry],
) -> String {
    let limits = Limits::default();
    let mut out = format!(
        r#"# rota server conf: server {id} of {n} on chain "{CHAIN}".
# Written by `rota testnet init`. Check it with `rota config-test --conf FILE`.

# The chain's name. Every request and peer message carries it. 1 to 32
# characters from a-z, 0-9, - and _.
chain = "{CHAIN}"

# Where this server keeps balances.db, blocks.redb and archive/. Relative
# paths are taken from this file's directory.
data_dir = "data"

# This server's seed file: 64 hex characters, mode 0600. Its public key must
# be in the [[servers]] list below.
seed_file = "rota.seed"

# The initial accounts, identical on every server of the chain.
genesis_file = "../genesis.json"

[listen]
# The client socket (ZeroMQ ROUTER), on IPv4 and on IPv6, for clients'
# requests. Either may be left out, not both.
ipv4 = "127.0.0.1:{port}"
{v6}
# The peering socket (ZeroMQ ROUTER) the other servers send their messages
# to, apart from the clients: the address it binds, "host:port" or
# "[v6]:port". Required when there is more than one server.
peering = "127.0.0.1:{peering_port}"
# Where events are published (ZeroMQ PUB) as [chain][topic][JSON].
publish = [{publish}]
# The largest frame a client may send, in bytes (ZMQ_MAXMSGSIZE); a larger
# one drops the connection before anything is allocated for it. The largest
# client frame is a payment's 140 bytes. 512 to 65536.
max_message_bytes = {max_message_bytes}

[peering]
# Interval between heartbeats to each other server, in milliseconds.
heartbeat_ms = {heartbeat}
# A server that misses this many heartbeats in a row is marked failed.
missed_heartbeats = 3
# The largest message the peering socket takes, and the largest reply taken
# from another server's, in bytes (ZMQ_MAXMSGSIZE), at least 1 MiB. A full
# ROUND (36 + 140 bytes a payment) and a pushed database (36 bytes an
# account) must fit.
max_message_bytes = 67108864

[mining]
# Leading zero bits a block's seal needs: a chain parameter, the same on
# every server (0 turns sealing off). Each bit doubles the search.
difficulty_bits = {difficulty_bits}
# This server's search threads (0: one per core). They run at the lowest
# priority, so payments come first.
threads = 0

[archive]
# How many archived databases (archive/<hash>.<seconds>) to keep.
keep = 10

[limits]
# What clients can make this server hold or do, on the client sockets
# (listen.ipv4, listen.ipv6; the peering socket has limits of its own).
# docs/OPERATIONS.md explains each default and the memory they add up to.
# Client connections open at once, IPv4 and IPv6 together; a handshake
# beyond it is refused.
max_connections = {max_connections}
# Replies queued for one connection (messages); more are dropped. Keep at
# most half of it in flight on one connection.
send_queue = {send_queue}
# Requests queued from one connection (messages) before the server stops
# reading it for a while; nothing is dropped.
receive_queue = {receive_queue}
# The kernel's send and receive buffers for each client connection, in
# bytes, fixed rather than left to grow to several megabytes.
tcp_send_buffer = {tcp_send_buffer}
tcp_receive_buffer = {tcp_receive_buffer}
# Time for a new connection to finish the ZeroMQ handshake, in milliseconds.
handshake_ms = {handshake_ms}
# Bytes of large replies (D, B) held at once, queued or being sent; past it
# they are refused as busy. Keep it above 36 bytes an account plus 28 MB.
large_reply_bytes = {large_reply_bytes}
# Bytes of large replies (D, B) sent per second, on average; past it they
# are refused as busy.
large_reply_bytes_per_s = {large_reply_bytes_per_s}
"#,
        n = servers.len(),
        port = ports.request,
        peering_port = ports.peering,
        v6 = if ipv6 {
            format!("ipv6 = \"[::1]:{}\"", ports.request)
        } else {
            "# ipv6 = \"[::1]:PORT\" (this machine has no IPv6 loopback)".to_string()
        },
        publish = quote(&format!("127.0.0.1:{}", ports.publish)),
        heartbeat = timings.heartbeat_ms,
        max_message_bytes = MESSAGE_BYTES.default,
        max_connections = limits.max_connections,
        send_queue = limits.send_queue,
        receive_queue = limits.receive_queue,
        tcp_send_buffer = limits.tcp_send_buffer,
        tcp_receive_buffer = limits.tcp_receive_buffer,
        handshake_ms = limits.handshake_ms,
        large_reply_bytes = limits.large_reply_bytes,
        large_reply_bytes_per_s = limits.large_reply_bytes_per_s,
    );
    shared_sections(&mut out, timings, servers, true);
    out
}

fn client_conf(timings: &Timings, servers: &[Entry]) -> String {
    let mut out = format!(
        r#"# rota client conf for chain "{CHAIN}", written by `rota testnet init`.
# Use it with `rota pay`, `rota balance`, `rota info`, `rota status` and
# `rota watch` (`--conf FILE`).

# The chain's name, as the servers have it.
chain = "{CHAIN}"

# The client's seed file: its key signs payments. `--seed-file` overrides it
# (clients/client-2.seed, clients/client-3.seed are funded too).
seed_file = "clients/client-1.seed"
"#
    );
    shared_sections(&mut out, timings, servers, false);
    out
}

/// Writes a new network; refuses a directory that already holds one.
pub fn init(options: &InitOptions) -> Result<()> {
    if options.nodes == 0 || options.nodes > 64 {
        return Err(Error::Config(format!(
            "--nodes {}: between 1 and 64",
            options.nodes
        )));
    }
    let timings = Timings::for_slot(options.slot_ms);
    if options.slot_ms < 400 {
        return Err(Error::Config(format!(
            "--slot-ms {}: at least 400",
            options.slot_ms
        )));
    }
    let dir = &options.dir;
    if dir.join("client.toml").exists() || dir.join("genesis.json").exists() {
        return Err(Error::Config(format!(
            "{} already holds a network; remove it or choose another --dir",
            dir.display()
        )));
    }
    fs::create_dir_all(dir.join("clients")).map_err(|e| Error::io(dir, e))?;
    let ipv6 = ipv6_available();
    let ports: Vec<Ports> = match options.base_port {
        Some(base) => fixed_ports(base, options.nodes)?,
        None => free_ports(3 * options.nodes, ipv6)?
            .chunks(3)
            .map(|p| Ports {
                request: p[0],
                publish: p[1],
                peering: p[2],
            })
            .collect(),
    };
    let mut servers = Vec::new();
    for (i, ports) in ports.iter().enumerate() {
        let node = dir.join(format!("node-{}", i + 1));
        fs::create_dir_all(&node).map_err(|e| Error::io(&node, e))?;
        let (keypair, _) = create_seed_file(&node.join("rota.seed"))?;
        let localhost = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        servers.push(Entry {
            key: keypair.public(),
            address: localhost(ports.request),
            publish: localhost(ports.publish),
            peering: localhost(ports.peering),
        });
    }
    for (i, ports) in ports.iter().enumerate() {
        let path = dir.join(format!("node-{}/rota.toml", i + 1));
        fs::write(
            &path,
            server_conf(
                i + 1,
                options.difficulty_bits,
                &timings,
                ports,
                ipv6,
                &servers,
            ),
        )
        .map_err(|e| Error::io(&path, e))?;
    }
    let mut accounts = Vec::new();
    for k in 1..=CLIENTS {
        let (keypair, _) = create_seed_file(&dir.join(format!("clients/client-{k}.seed")))?;
        accounts.push(GenesisAccount {
            public_key: keypair.public(),
            balance: CLIENT_BALANCE,
        });
    }
    Genesis {
        chain: CHAIN.into(),
        accounts,
    }
    .write(&dir.join("genesis.json"))?;
    let path = dir.join("client.toml");
    fs::write(&path, client_conf(&timings, &servers)).map_err(|e| Error::io(&path, e))?;
    for i in 1..=options.nodes {
        Config::load(&dir.join(format!("node-{i}/rota.toml")), Role::Server)?;
    }
    Config::load(&path, Role::Client)?;
    Ok(())
}

/// The server confs of a network, in order.
pub fn node_confs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut confs = Vec::new();
    for i in 1.. {
        let conf = dir.join(format!("node-{i}/rota.toml"));
        if !conf.exists() {
            break;
        }
        confs.push(conf);
    }
    if confs.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no network (no node-1/rota.toml); make one with `rota testnet init`",
            dir.display()
        )));
    }
    Ok(confs)
}

/// How long `up` gives the servers to stop after SIGTERM before killing them.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Starts every server of the network in `dir`, prints round results as
/// they are published, and stops the servers when `stop` is set. Returns
/// once all servers have exited.
pub fn up(dir: &Path, stop: Arc<AtomicBool>) -> Result<()> {
    let confs = node_confs(dir)?;
    let client = Config::load(&dir.join("client.toml"), Role::Client)?;
    let exe = std::env::current_exe().map_err(|e| Error::io("rota executable", e))?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut servers = Supervisor::new(exe, confs).log_filter(filter);
    for i in 1..=servers.len() {
        let pid = servers.start(i)?;
        println!(
            "server {i} started (pid {pid}), log {}",
            servers.log(i).display()
        );
    }
    println!("watching rounds; Ctrl-C stops the network");
    let mut printed = Printed::default();
    let result = crate::client::watch(
        &client,
        None,
        &[],
        |published| print_event(published, &mut printed),
        || {
            reap(&mut servers);
            stop.load(Ordering::Relaxed) || servers.all_exited()
        },
    );
    stop_all(&mut servers);
    result
}

/// Reports each server that has exited by itself.
fn reap(servers: &mut Supervisor) {
    for (i, exit) in servers.reap() {
        println!(
            "server {i} {} (exit code {}); see node-{i}/node.log",
            exit.meaning(),
            exit.code().map_or("none".into(), |c| c.to_string()),
        );
    }
}

/// Stops every running server, killing those that do not stop in time.
fn stop_all(servers: &mut Supervisor) {
    for (i, stopped) in servers.stop_all(STOP_WITHIN) {
        match stopped {
            Ok(Stopped::Exited(exit)) => println!("server {i} {}", exit.meaning()),
            Ok(Stopped::Killed(_)) => println!("server {i} killed after not stopping in time"),
            Err(e) => println!("server {i}: {e}"),
        }
    }
}

/// The blocks and seals `testnet up` printed already.
#[derive(Default)]
struct Printed {
    blocks: BTreeSet<u64>,
    seals: BTreeSet<u64>,
}

/// Prints one event for `testnet up`: each round once (by its beta, or by
/// any server that saw it end otherwise), each block and seal once, and
/// every peer, connector, leader and stop event.
fn print_event(published: &Published, printed: &mut Printed) {
    let server = published.server;
    match &published.event {
        Event::Round {
            slot,
            outcome,
            hash,
            agreeing,
            voters,
            transactions,
            beta,
        } => {
            if *beta == server || *outcome != Outcome::Committed {
                println!(
                    "slot {slot}  round {outcome:<11} {agreeing}/{voters} signatures  hash {}  payments {transactions}  alpha {beta}{}",
                    hash.map_or("-".to_string(), |h| h.short()),
                    if *beta == server {
                        String::new()
                    } else {
                        format!("  (seen by server {server})")
                    }
                );
            }
        }
        Event::Block {
            number,
            hash,
            transactions,
            ..
        } => {
            if printed.blocks.insert(*number) {
                println!(
                    "block {number} with {transactions} payments, hash {}",
                    hash.short()
                );
            }
        }
        Event::Peer { peer, state } => println!("server {server}: server {peer} is {state}"),
        Event::Connector { state } => println!("server {server}: connector {state}"),
        Event::Stop { reason } => println!("server {server}: stopping: {reason}"),
        Event::Evidence { slot, alpha } => println!(
            "server {server}: server {alpha}, the alpha of slot {slot}, signed two headers"
        ),
        Event::Seal {
            number,
            nonce,
            seal_time,
            ..
        } => {
            if printed.seals.insert(*number) {
                println!("block {number} sealed: nonce {nonce}, seal time {seal_time}");
            }
        }
        Event::Leader { leader } => {
            println!("server {server}: the leader is now server {leader}")
        }
        Event::Tx { .. } | Event::Role { .. } | Event::Found { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ports_put_the_peering_sockets_after_the_client_and_event_ports() {
        let ports = fixed_ports(2130, 3).unwrap();
        let got: Vec<(u16, u16, u16)> = ports
            .iter()
            .map(|p| (p.request, p.publish, p.peering))
            .collect();
        assert_eq!(
            got,
            [(2130, 2131, 2136), (2132, 2133, 2137), (2134, 2135, 2138)]
        );
        let err = fixed_ports(65_530, 3).err().unwrap().to_string();
        assert!(
            err.contains("--base-port 65530") && err.contains("65538"),
            "{err}"
        );
    }

    #[test]
    fn init_writes_every_peering_address_and_a_client_conf_without_them() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions {
            nodes: 3,
            dir: dir.path().to_path_buf(),
            slot_ms: 2_000,
            difficulty_bits: 0,
            base_port: None,
        })
        .unwrap();
        let server = Config::load(&dir.path().join("node-2/rota.toml"), Role::Server).unwrap();
        let peering = server.listen_peering().unwrap();
        assert_eq!(server.server_peering(rota_peer::ServerId(2)), Some(peering));
        assert_eq!(server.peering.max_message_bytes, 64 * 1024 * 1024);
        let mut ports = HashSet::new();
        for id in server.server_list().ids() {
            assert!(ports.insert(server.server_address(id).port()));
            assert!(ports.insert(server.server_peering(id).unwrap().port()));
        }
        let text = fs::read_to_string(dir.path().join("node-2/rota.toml")).unwrap();
        assert!(
            text.contains("# The peering socket (ZeroMQ ROUTER)"),
            "{text}"
        );
        let client = Config::load(&dir.path().join("client.toml"), Role::Client).unwrap();
        assert!(client.servers.iter().all(|s| s.peering.is_none()));
    }
}

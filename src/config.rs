//! The configuration file: TOML, written by hand, one per server or client.
//!
//! [`Config`] mirrors the file; every field has its default in
//! [`Config::default`] and friends, and [`Config::validate`] checks every value,
//! naming the key and what is allowed. Relative paths are taken from the conf
//! file's own directory, so a conf and its files can be moved together.
//! [`Config::load`] reads, validates and resolves a file in one step.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rota_peer::schedule::Schedule;
use rota_peer::wire::{MAX_CHAIN_LEN, ServerList};
use rota_peer::{PublicKey, ServerId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod limits;

use limits::in_range;
pub use limits::{LIMIT_RANGES, LimitRanges, Limits, MESSAGE_BYTES, Range};

/// A rota conf file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The chain's name; every request and peer message names it.
    pub chain: String,
    /// Where a server keeps its balance database, blocks and archive.
    pub data_dir: PathBuf,
    /// This server's (or client's) seed file.
    pub seed_file: PathBuf,
    /// The initial accounts, shared by all servers of the chain.
    pub genesis_file: PathBuf,
    /// Server sockets; a client conf leaves this out.
    pub listen: Option<Listen>,
    pub schedule: ScheduleConf,
    pub peering: Peering,
    pub mining: Mining,
    pub archive: Archive,
    /// Bounds on what clients can make a server hold or do.
    pub limits: Limits,
    /// The ordered server list; a server's identifier is its position from 1.
    pub servers: Vec<ServerEntry>,
}

/// Addresses a server binds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// IPv4 address and port of the client socket, e.g. "127.0.0.1:2130".
    pub ipv4: Option<String>,
    /// IPv6 address and port of the client socket, e.g. "[::1]:2130".
    pub ipv6: Option<String>,
    /// Address and port the peering socket binds, e.g. "127.0.0.1:2136":
    /// the other servers' connectors send their messages there, apart from
    /// the clients. Required when the chain has more than one server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peering: Option<String>,
    /// Addresses of the event publisher (PUB) socket.
    pub publish: Vec<String>,
    /// Largest frame the client request sockets take (ZMQ_MAXMSGSIZE), in
    /// bytes; a larger one drops the connection before anything is
    /// allocated for it. Client requests are tiny: the largest frame is the
    /// 140-byte payment of a `T`. See [`MESSAGE_BYTES`].
    pub max_message_bytes: i64,
}

/// Slot timings, identical on every server of a chain.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConf {
    pub slot_ms: u64,
    pub blackout_ms: u64,
    pub tolerance_ms: u64,
}

/// Connector and peering socket settings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Peering {
    /// Interval between heartbeats to each server.
    pub heartbeat_ms: u64,
    /// A server that misses this many heartbeats in a row is marked failed.
    pub missed_heartbeats: u32,
    /// Largest frame the peering socket takes, and the largest reply the
    /// connector takes from another server's (ZMQ_MAXMSGSIZE), in bytes. A
    /// full ROUND (36 + 140 bytes a payment: 28 MB at 200,000 payments) and
    /// a pushed or fetched database (36 bytes an account) must fit.
    pub max_message_bytes: i64,
}

/// Sealing blocks.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mining {
    /// Leading zero bits a block's seal needs: a chain parameter, the same
    /// on every server (0: blocks are not sealed).
    pub difficulty_bits: u32,
    /// This server's search threads (0: one per core). They run at the
    /// lowest priority, so payments come first.
    pub threads: usize,
}

/// The most `mining.difficulty_bits`: past it a seal is out of reach of
/// the 2,000,000,000 nonces of a seal time for any chain of this kind.
pub const MAX_DIFFICULTY_BITS: u32 = 48;

/// The most `mining.threads`.
pub const MAX_MINING_THREADS: usize = 256;

/// Archive settings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Archive {
    /// How many archived databases to keep (the newest).
    pub keep: usize,
}

/// One server of the chain.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// The server's ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// Where its client socket listens, "host:port" ("[v6]:port" for IPv6):
    /// clients send their requests here.
    pub address: String,
    /// Where its peering socket listens, "host:port": the other servers'
    /// connectors connect here. Required in a server conf when the chain has
    /// more than one server; a client conf may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<String>,
    /// Where it publishes events, for `rota watch`; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            chain: "local".into(),
            data_dir: "data".into(),
            seed_file: "rota.seed".into(),
            genesis_file: "genesis.json".into(),
            listen: None,
            schedule: ScheduleConf::default(),
            peering: Peering::default(),
            mining: Mining::default(),
            archive: Archive::default(),
            limits: Limits::default(),
            servers: Vec::new(),
        }
    }
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            ipv4: None,
            ipv6: None,
            peering: None,
            publish: Vec::new(),
            max_message_bytes: MESSAGE_BYTES.default,
        }
    }
}

impl Default for ScheduleConf {
    fn default() -> ScheduleConf {
        ScheduleConf {
            slot_ms: 60_000,
            blackout_ms: 15_000,
            tolerance_ms: 5_000,
        }
    }
}

impl Default for Peering {
    fn default() -> Peering {
        Peering {
            heartbeat_ms: 5_000,
            missed_heartbeats: 3,
            max_message_bytes: DEFAULT_MESSAGE_BYTES,
        }
    }
}

impl Default for Archive {
    fn default() -> Archive {
        Archive { keep: 10 }
    }
}

/// The smallest `peering.max_message_bytes` allowed (the client sockets'
/// `listen.max_message_bytes` has its own range, [`MESSAGE_BYTES`]).
pub const MIN_MESSAGE_BYTES: i64 = 1 << 20;

/// The default largest frame on the peering socket, 64 MiB: more than a
/// full ROUND (28 MB) and a pushed database of a million accounts (36 MB).
pub const DEFAULT_MESSAGE_BYTES: i64 = 64 * 1024 * 1024;

/// Whether a conf is for a server (`rota run`) or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

pub(crate) fn bad(key: &str, message: impl std::fmt::Display) -> Error {
    Error::Config(format!("{key}: {message}"))
}

/// Parses "host:port" where host is an IP address, naming the key on error.
pub fn parse_address(key: &str, text: &str) -> Result<SocketAddr> {
    text.parse::<SocketAddr>().map_err(|_| {
        bad(
            key,
            format!(
                "{text:?} is not an address; write \"127.0.0.1:2130\" for IPv4 or \"[::1]:2130\" for IPv6"
            ),
        )
    })
}

impl Config {
    /// Reads, validates and resolves the conf file at `path`.
    pub fn load(path: &Path, role: Role) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .validate(role)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`, the conf file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.data_dir,
            &mut self.seed_file,
            &mut self.genesis_file,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks every value; the error names the first key that is wrong.
    pub fn validate(&self, role: Role) -> Result<()> {
        self.validate_chain()?;
        self.validate_schedule()?;
        self.validate_servers()?;
        if self.peering.heartbeat_ms == 0 {
            return Err(bad("peering.heartbeat_ms", "must be at least 1"));
        }
        if self.peering.missed_heartbeats == 0 {
            return Err(bad("peering.missed_heartbeats", "must be at least 1"));
        }
        if self.mining.difficulty_bits > MAX_DIFFICULTY_BITS {
            return Err(bad(
                "mining.difficulty_bits",
                format!(
                    "{} is too many; at most {MAX_DIFFICULTY_BITS} (0 turns sealing off)",
                    self.mining.difficulty_bits
                ),
            ));
        }
        if self.mining.threads > MAX_MINING_THREADS {
            return Err(bad(
                "mining.threads",
                format!(
                    "{} is too many; at most {MAX_MINING_THREADS} (0: one per core)",
                    self.mining.threads
                ),
            ));
        }
        if !self.seed_file.is_file() {
            return Err(bad(
                "seed_file",
                format!(
                    "{} does not exist; make one with `rota keygen --seed-file {}`",
                    self.seed_file.display(),
                    self.seed_file.display()
                ),
            ));
        }
        if role == Role::Server {
            self.validate_server_only()?;
        }
        Ok(())
    }

    fn validate_chain(&self) -> Result<()> {
        let ok = !self.chain.is_empty()
            && self.chain.len() <= MAX_CHAIN_LEN
            && self
                .chain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(bad(
                "chain",
                format!(
                    "{:?} is not allowed; use 1 to {MAX_CHAIN_LEN} characters from a-z, 0-9, - and _",
                    self.chain
                ),
            ))
        }
    }

    fn validate_schedule(&self) -> Result<()> {
        let s = &self.schedule;
        if s.slot_ms < 100 {
            return Err(bad(
                "schedule.slot_ms",
                format!("{} is too short; at least 100", s.slot_ms),
            ));
        }
        if s.tolerance_ms == 0 {
            return Err(bad("schedule.tolerance_ms", "must be at least 1"));
        }
        if s.blackout_ms <= 2 * s.tolerance_ms {
            return Err(bad(
                "schedule.blackout_ms",
                format!(
                    "{} must be more than 2 x schedule.tolerance_ms ({}), or one transaction \
                     could be accepted by two alphas",
                    s.blackout_ms,
                    2 * s.tolerance_ms
                ),
            ));
        }
        if s.blackout_ms >= s.slot_ms {
            return Err(bad(
                "schedule.blackout_ms",
                format!(
                    "{} must be less than schedule.slot_ms ({}), or no transaction is ever accepted",
                    s.blackout_ms, s.slot_ms
                ),
            ));
        }
        // The votes' deadlines are quarter slots apart; each gap must hold a
        // message's travel plus the clock bound (docs/CONSENSUS.md).
        crate::ledger::consensus::Timing::new(self.schedule())
            .check()
            .map_err(|why| bad("schedule.slot_ms", why))?;
        Ok(())
    }

    fn validate_servers(&self) -> Result<()> {
        if self.servers.is_empty() {
            return Err(bad(
                "servers",
                "the list is empty; add one [[servers]] table per server",
            ));
        }
        let mut keys = HashSet::new();
        let mut addresses = HashSet::new();
        for (i, server) in self.servers.iter().enumerate() {
            let key_name = format!("servers[{}].public_key", i + 1);
            let key: PublicKey = server.public_key.parse().map_err(|e| bad(&key_name, e))?;
            if !keys.insert(key) {
                return Err(bad(
                    &key_name,
                    format!("{key} is listed twice; each server once"),
                ));
            }
            let address_name = format!("servers[{}].address", i + 1);
            let address = parse_address(&address_name, &server.address)?;
            if !addresses.insert(address) {
                return Err(bad(
                    &address_name,
                    format!("{address} is listed twice; each server has its own"),
                ));
            }
            if let Some(publish) = &server.publish {
                parse_address(&format!("servers[{}].publish", i + 1), publish)?;
            }
        }
        self.validate_server_peering()
    }

    /// Each `[[servers]] peering` given: an address, once, and none of the
    /// servers' client addresses (the two sockets are apart).
    fn validate_server_peering(&self) -> Result<()> {
        let mut seen: Vec<(SocketAddr, String)> = Vec::new();
        for (i, server) in self.servers.iter().enumerate() {
            let name = format!("servers[{}].address", i + 1);
            seen.push((parse_address(&name, &server.address)?, name));
        }
        for (i, server) in self.servers.iter().enumerate() {
            let Some(text) = &server.peering else {
                continue;
            };
            let name = format!("servers[{}].peering", i + 1);
            let address = parse_address(&name, text)?;
            if let Some((_, other)) = seen.iter().find(|(a, _)| *a == address) {
                return Err(bad(
                    &name,
                    format!(
                        "{address} is also {other}; each server's peering socket has an \
                         address of its own, apart from every client socket and peering socket"
                    ),
                ));
            }
            seen.push((address, name));
        }
        Ok(())
    }

    fn validate_server_only(&self) -> Result<()> {
        let Some(listen) = &self.listen else {
            return Err(bad(
                "listen",
                "a server conf needs a [listen] table with ipv4 and/or ipv6",
            ));
        };
        if listen.ipv4.is_none() && listen.ipv6.is_none() {
            return Err(bad("listen", "give listen.ipv4, listen.ipv6 or both"));
        }
        if let Some(text) = &listen.ipv4
            && !parse_address("listen.ipv4", text)?.is_ipv4()
        {
            return Err(bad(
                "listen.ipv4",
                format!("{text:?} is not an IPv4 address"),
            ));
        }
        if let Some(text) = &listen.ipv6
            && !parse_address("listen.ipv6", text)?.is_ipv6()
        {
            return Err(bad(
                "listen.ipv6",
                format!("{text:?} is not an IPv6 address"),
            ));
        }
        for (i, text) in listen.publish.iter().enumerate() {
            parse_address(&format!("listen.publish[{}]", i + 1), text)?;
        }
        self.validate_peering(listen)?;
        in_range(
            "listen.max_message_bytes",
            listen.max_message_bytes,
            MESSAGE_BYTES,
        )?;
        self.limits.validate()?;
        if self.archive.keep == 0 {
            return Err(bad("archive.keep", "must be at least 1"));
        }
        if !self.genesis_file.is_file() {
            return Err(bad(
                "genesis_file",
                format!("{} does not exist", self.genesis_file.display()),
            ));
        }
        Ok(())
    }

    /// A server's peering keys: `listen.peering` and every `[[servers]]
    /// peering` are required when there is more than one server (one server
    /// has no peers, and binds a peering socket only if given one), the
    /// bind address must not clash with a client socket's, and
    /// `peering.max_message_bytes` must hold a ROUND and a database.
    fn validate_peering(&self, listen: &Listen) -> Result<()> {
        let many = self.servers.len() > 1;
        match &listen.peering {
            None if many => {
                return Err(bad(
                    "listen.peering",
                    format!(
                        "a chain of {} servers needs a peering socket: give the address it binds, \
                         \"host:port\" (e.g. \"127.0.0.1:2136\" or \"[::1]:2136\"), apart from \
                         listen.ipv4 and listen.ipv6; the other servers connect to this server's \
                         [[servers]] peering address",
                        self.servers.len()
                    ),
                ));
            }
            None => {}
            Some(text) => {
                let peering = parse_address("listen.peering", text)?;
                for (key, client) in [("listen.ipv4", &listen.ipv4), ("listen.ipv6", &listen.ipv6)]
                {
                    let Some(client) = client else { continue };
                    if clashes(peering, parse_address(key, client)?) {
                        return Err(bad(
                            "listen.peering",
                            format!(
                                "{text:?} clashes with {key} ({client:?}); the peering socket \
                                 needs an address and port of its own"
                            ),
                        ));
                    }
                }
            }
        }
        if many && let Some(i) = self.servers.iter().position(|s| s.peering.is_none()) {
            return Err(bad(
                &format!("servers[{}].peering", i + 1),
                "missing; a server conf of a chain of more than one server gives every \
                 server's peering address, \"host:port\" or \"[v6]:port\", where the other \
                 servers connect",
            ));
        }
        if self.peering.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(bad(
                "peering.max_message_bytes",
                format!(
                    "{} is too small; at least {MIN_MESSAGE_BYTES} (1 MiB), and more than a full \
                     ROUND (36 + 140 bytes a payment) and a pushed database (36 bytes an account)",
                    self.peering.max_message_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The server list with keys parsed. Only call after `validate`.
    pub fn server_list(&self) -> ServerList {
        ServerList::new(
            self.servers
                .iter()
                .map(|s| s.public_key.parse().expect("validated"))
                .collect(),
        )
    }

    /// The client address of server `id`. Only call after `validate`.
    pub fn server_address(&self, id: ServerId) -> SocketAddr {
        self.servers[id.index()].address.parse().expect("validated")
    }

    /// The peering address of server `id`, if the conf gives one (a server
    /// conf of more than one server gives every one). Only call after
    /// `validate`.
    pub fn server_peering(&self, id: ServerId) -> Option<SocketAddr> {
        self.servers[id.index()]
            .peering
            .as_ref()
            .map(|p| p.parse().expect("validated"))
    }

    /// The address the peering socket binds, if any. Only call after
    /// `validate`.
    pub fn listen_peering(&self) -> Option<SocketAddr> {
        self.listen
            .as_ref()?
            .peering
            .as_ref()
            .map(|p| p.parse().expect("validated"))
    }

    /// The publish address of server `id`, if the conf gives one.
    pub fn server_publish(&self, id: ServerId) -> Option<SocketAddr> {
        self.servers[id.index()]
            .publish
            .as_ref()
            .map(|p| p.parse().expect("validated"))
    }

    /// The slot schedule.
    /// The chain's parameters, as a server of this conf runs with them:
    /// they need its genesis file.
    pub fn chain_params(&self) -> Result<rota_peer::wire::Params> {
        let genesis = crate::genesis::Genesis::load(&self.genesis_file, &self.chain)?
            .balances()?
            .hash();
        Ok(crate::ledger::edge::chain_params(
            &self.server_list(),
            &self.schedule(),
            &genesis,
        ))
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            slot_ms: self.schedule.slot_ms,
            blackout_ms: self.schedule.blackout_ms,
            tolerance_ms: self.schedule.tolerance_ms,
            servers: self.servers.len(),
            difficulty: self.mining.difficulty_bits,
        }
    }

    /// This server's identifier, given its public key; the error says the key
    /// is missing from the list.
    pub fn identify(&self, key: &PublicKey) -> Result<ServerId> {
        self.server_list().id_of(key).ok_or_else(|| {
            bad(
                "servers",
                format!(
                    "this server's public key {key} (from {}) is not in the list; \
                     add a [[servers]] entry for it",
                    self.seed_file.display()
                ),
            )
        })
    }
}

/// Whether two bind addresses would take the same port: the same family and
/// port, and the same address or either one unspecified (`0.0.0.0`, `::`).
fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A ZeroMQ endpoint for a socket address; formatted in one place, the
/// sockets crate.
pub use rota_sockets::endpoint;

#[cfg(test)]
mod tests;

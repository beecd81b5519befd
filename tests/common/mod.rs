//! A small harness for tests that run real `rota` processes.
//!
//! [`Net::init`] writes a network with `rota testnet init` (free loopback
//! ports, short slots) in a temporary directory; [`Net::start`] runs
//! `rota run` for a server through the library's
//! [`Supervisor`](rota::supervisor::Supervisor). Every wait is a condition
//! polled against a deadline ([`Net::wait_for`]); a timeout fails the test
//! with the tail of each server's log. Dropping the `Net` stops every
//! process it started and, after a test that passed, audits every data
//! directory with `rota verify` ([`Net::audit`]).
//! Networks inside one test binary run one at a time, so that tests with
//! second-long slots do not starve each other of the machine's two cores.

#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rota::client::Connection;
use rota::config::{Config, Role};
use rota::info::Info;
use rota::supervisor::{self, Exit, Stopped, Supervisor};
use rota_peer::keys::{Keypair, load_seed_file};
use rota_peer::wire::{Reply, Request, TxStatus};
use rota_peer::{Hash, PublicKey, ServerId};

static SERIAL: Mutex<()> = Mutex::new(());

/// How long a server has to stop after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(15);
/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// The `rota` binary under test.
pub fn rota_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rota")
}

/// Runs `rota` with `args` and returns its output.
pub fn rota(args: &[&str]) -> Output {
    Command::new(rota_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rota")
}

/// A network of servers in a temporary directory.
pub struct Net {
    /// Declared first, so that dropping the `Net` kills the servers before
    /// their directory is removed and the next network may start.
    servers: Supervisor,
    pub dir: tempfile::TempDir,
    pub client: Config,
    /// Whether dropping the `Net` audits every data directory.
    audit: bool,
    _serial: MutexGuard<'static, ()>,
}

impl Net {
    /// Writes an `nodes`-server network with `slot_ms` slots whose blocks
    /// are not sealed; starts nothing.
    pub fn init(nodes: usize, slot_ms: u64) -> Net {
        Net::init_sealed(nodes, slot_ms, 0)
    }

    /// Writes an `nodes`-server network with `slot_ms` slots whose blocks
    /// are sealed at `difficulty_bits`; starts nothing.
    pub fn init_sealed(nodes: usize, slot_ms: u64, difficulty_bits: u32) -> Net {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = rota(&[
            "testnet",
            "init",
            "--nodes",
            &nodes.to_string(),
            "--dir",
            dir.path().to_str().unwrap(),
            "--slot-ms",
            &slot_ms.to_string(),
            "--difficulty-bits",
            &difficulty_bits.to_string(),
        ]);
        assert!(
            out.status.success(),
            "testnet init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let client =
            Config::load(&dir.path().join("client.toml"), Role::Client).expect("client conf");
        let confs = (1..=nodes)
            .map(|i| dir.path().join(format!("node-{i}/rota.toml")))
            .collect();
        Net {
            servers: Supervisor::new(rota_bin(), confs),
            dir,
            client,
            audit: true,
            _serial: serial,
        }
    }

    /// The chain's parameters, as every server of this network runs with
    /// them.
    pub fn params(&self) -> rota_peer::wire::Params {
        Config::load(&self.conf(1), Role::Server)
            .expect("server conf")
            .chain_params()
            .expect("chain parameters")
    }

    /// Leaves the data directories unaudited at the end of a test that
    /// damages them on purpose.
    pub fn skip_audit(&mut self) {
        self.audit = false;
    }

    /// Stops every server and audits each data directory with `rota
    /// verify`, as an operator would: every block, certificate, signature
    /// and balance hash must check, and the database must be what the
    /// blocks rebuild. Dropping the `Net` does it after every test that
    /// passed.
    pub fn audit(&mut self) {
        self.audit = false;
        for (i, stopped) in self.servers.stop_all(STOP_WITHIN) {
            if let Err(e) = stopped {
                panic!("server {i} did not stop for the audit: {e}");
            }
        }
        for i in 1..=self.servers.len() {
            if !self.data_dir(i).join("blocks.redb").is_file() {
                continue;
            }
            let conf = self.conf(i);
            let out = rota(&["verify", "--conf", conf.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "rota verify of server {i} after the test failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Writes and starts every server.
    pub fn up(nodes: usize, slot_ms: u64) -> Net {
        let mut net = Net::init(nodes, slot_ms);
        for i in 1..=nodes {
            net.start(i);
        }
        net
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.path().join(format!("node-{i}"))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }

    pub fn conf(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("rota.toml")
    }

    pub fn client_conf(&self) -> PathBuf {
        self.path().join("client.toml")
    }

    pub fn slot_ms(&self) -> u64 {
        self.client.schedule.slot_ms
    }

    /// The funded client `k` (1 to 3).
    pub fn payer(&self, k: usize) -> Keypair {
        load_seed_file(&self.path().join(format!("clients/client-{k}.seed"))).expect("client seed")
    }

    /// The key pair of server `i`.
    pub fn server_key(&self, i: usize) -> Keypair {
        load_seed_file(&self.node_dir(i).join("rota.seed")).expect("server seed")
    }

    /// Starts `rota run` for server `i`, appending to its `node.log`;
    /// returns its process id.
    pub fn start(&mut self, i: usize) -> u32 {
        self.servers.start(i).expect("start rota run")
    }

    /// Starts server `i` with more environment variables for this run
    /// only (`ROTA_CRASH_AT`, say); returns its process id.
    pub fn start_with_env(&mut self, i: usize, env: &[(&str, &str)]) -> u32 {
        self.servers.start_with(i, env).expect("start rota run")
    }

    /// Whether server `i`'s process is still running.
    pub fn running(&mut self, i: usize) -> bool {
        self.servers.running(i)
    }

    /// Stops server `i` with SIGTERM and returns how it exited.
    pub fn stop(&mut self, i: usize) -> Exit {
        match self.servers.stop(i, STOP_WITHIN).expect("stop") {
            Stopped::Exited(exit) => exit,
            Stopped::Killed(_) => panic!(
                "server {i} did not stop within {STOP_WITHIN:?} of SIGTERM\n{}",
                self.logs()
            ),
        }
    }

    /// Kills server `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        self.servers.kill(i).expect("kill");
    }

    /// Waits for server `i` to exit by itself and returns its status.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Exit {
        match self.servers.wait_exit(i, within).expect("wait") {
            Some(exit) => exit,
            None => panic!("server {i} did not exit within {within:?}\n{}", self.logs()),
        }
    }

    /// A connection to server `i` with a short timeout.
    pub fn connect(&self, i: usize) -> Connection {
        rota::client::connect(
            &zmq::Context::new(),
            &self.client,
            ServerId(i as u32),
            1_000,
        )
        .expect("connect")
    }

    /// Sends one request to server `i`'s client socket.
    pub fn request(&self, i: usize, request: &Request) -> rota::Result<Reply> {
        self.connect(i).call(request)
    }

    /// Server `i`'s peering address, from its own conf: the client conf
    /// lists none, since clients never connect there.
    pub fn peering_address(&self, i: usize) -> SocketAddr {
        Config::load(&self.conf(i), Role::Server)
            .expect("server conf")
            .server_peering(ServerId(i as u32))
            .expect("a peering address")
    }

    /// Sends one request to server `i`'s peering socket, as another
    /// server's connector does.
    pub fn peer_request(&self, i: usize, request: &Request) -> rota::Result<Reply> {
        let ctx = zmq::Context::new();
        Connection::open(&ctx, &self.client.chain, self.peering_address(i), 1_000)?.call(request)
    }

    /// Sends raw frames to `address` on a fresh DEALER and returns the reply
    /// frames, or `None` when none comes within 2 s.
    pub fn raw(&self, address: SocketAddr, frames: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::DEALER).expect("socket");
        socket.set_linger(0).expect("linger");
        socket.set_ipv6(address.is_ipv6()).expect("ipv6");
        socket
            .connect(&rota::config::endpoint(&address))
            .expect("connect");
        socket.send_multipart(frames, 0).expect("send");
        if socket.poll(zmq::POLLIN, 2_000).expect("poll") == 0 {
            return None;
        }
        socket.recv_multipart(0).ok()
    }

    /// Server `i`'s `I` reply, or `None` when it does not answer.
    pub fn typed_info(&self, i: usize) -> Option<Info> {
        let address = self.client.server_address(ServerId(i as u32));
        supervisor::info(&zmq::Context::new(), &self.client.chain, address, 1_000)
    }

    /// Server `i`'s `I` reply as JSON, for tests that read it by name.
    pub fn info(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::to_value(self.typed_info(i)?).ok()
    }

    /// A field of server `i`'s info, as the JSON of the `I` reply has it.
    pub fn field(&self, i: usize, name: &str) -> Option<serde_json::Value> {
        self.info(i)?.get(name).cloned()
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        self.typed_info(i).map(|info| info.height)
    }

    pub fn balance_hash(&self, i: usize) -> Option<String> {
        self.typed_info(i).map(|info| info.balance_hash.to_string())
    }

    pub fn committed_slot(&self, i: usize) -> Option<u64> {
        self.typed_info(i).map(|info| info.committed_slot)
    }

    /// The balance of `key` on server `i` (`None` if no account or no answer).
    pub fn balance(&self, i: usize, key: &PublicKey) -> Option<u32> {
        match self.request(i, &Request::Account(*key)) {
            Ok(Reply::Account(balance)) => Some(balance),
            _ => None,
        }
    }

    /// Whether server `i` is in sync (its connector sampling).
    pub fn in_sync(&self, i: usize) -> bool {
        self.typed_info(i).is_some_and(|info| info.in_sync)
    }

    /// Waits until every listed server is in sync.
    pub fn wait_in_sync(&self, servers: &[usize], within: Duration) {
        self.wait_for(&format!("servers {servers:?} in sync"), within, || {
            servers.iter().all(|i| self.in_sync(*i))
        });
    }

    /// Waits until every listed server has committed a round after `slot`.
    pub fn wait_committed_after(&self, servers: &[usize], slot: u64, within: Duration) {
        self.wait_for(
            &format!("servers {servers:?} committing after slot {slot}"),
            within,
            || {
                servers
                    .iter()
                    .all(|i| self.committed_slot(*i).is_some_and(|s| s > slot))
            },
        );
    }

    /// The current slot by this machine's clock.
    pub fn slot_now(&self) -> u64 {
        rota_peer::schedule::unix_now_ms() / self.slot_ms()
    }

    /// Polls `condition` every 50 ms until it holds; fails the test with the
    /// servers' logs when `within` passes first.
    pub fn wait_for(&self, what: &str, within: Duration, condition: impl FnMut() -> bool) {
        if !supervisor::wait_until(within, POLL, condition) {
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                self.logs()
            );
        }
    }

    /// Runs a client command against this network's client conf.
    pub fn client_command(&self, args: &[&str]) -> Output {
        let conf = self.client_conf();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--conf", conf.to_str().unwrap()]);
        rota(&all)
    }

    /// Pays through the real client, `rota pay --wait --json`, sending to
    /// `server` if given (else to the alpha); fails the test if the command
    /// fails, and returns what it printed.
    pub fn pay(&self, server: Option<usize>, to: &PublicKey, amount: u32) -> serde_json::Value {
        let (to, amount) = (to.to_string(), amount.to_string());
        let server = server.map(|s| s.to_string());
        let mut args = vec!["pay", "--to", &to, "--amount", &amount, "--wait", "--json"];
        if let Some(server) = &server {
            args.extend(["--server", server]);
        }
        let out = self.client_command(&args);
        assert!(
            out.status.success(),
            "rota pay {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        serde_json::from_slice(&out.stdout).expect("pay prints JSON")
    }

    /// The last lines of every server's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.servers.len() {
            let text = fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default();
            // Connections opened and closed by the test's own polling would
            // bury everything else.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("rota_listener::monitor"))
                .collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            out.push_str(&format!(
                "---- node-{i}/node.log (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }

    /// The whole log of server `i`.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default()
    }

    /// The sum of the genesis balances: the supply no round may change.
    pub fn genesis_supply(&self) -> u64 {
        let genesis =
            rota::genesis::Genesis::load(&self.path().join("genesis.json"), &self.client.chain)
                .expect("genesis");
        genesis.balances().expect("genesis balances").supply()
    }

    /// Sends one request to server `i`'s peering socket and returns the
    /// reply as it came, an `E` as [`Reply::Error`] with its exact text;
    /// `None` when no reply comes within 2 s.
    pub fn peer_reply(&self, i: usize, request: &Request) -> Option<Reply> {
        self.peer_frames(i, &request.encode(&self.client.chain))
    }

    /// Sends raw request frames to server `i`'s peering socket and decodes
    /// the reply, as [`Net::peer_reply`].
    pub fn peer_frames(&self, i: usize, frames: &[Vec<u8>]) -> Option<Reply> {
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let reply = self.raw(self.peering_address(i), &frames)?;
        let parts: Vec<&[u8]> = reply.iter().map(Vec::as_slice).collect();
        Some(Reply::decode(&parts).expect("a reply rota reads"))
    }

    /// Waits until the listed servers hold the same balance hash and height.
    pub fn wait_agree(&self, servers: &[usize], within: Duration) {
        self.wait_for(&format!("servers {servers:?} to agree"), within, || {
            let states: Vec<_> = servers
                .iter()
                .map(|i| (self.balance_hash(*i), self.height(*i)))
                .collect();
            states[0].0.is_some() && states.iter().all(|s| *s == states[0])
        });
    }

    /// The hash of block `n` on server `i`.
    pub fn block_hash(&self, i: usize, n: u64) -> Hash {
        match self.request(i, &Request::BlockHash(n)) {
            Ok(Reply::BlockHash(hash)) => hash,
            other => panic!("H {n} on server {i}: {other:?}"),
        }
    }

    /// Checks that the listed servers, agreeing on their height, hold the
    /// same blocks, each block by its hash; returns the height.
    pub fn assert_same_blocks(&self, servers: &[usize]) -> u64 {
        let height = self.height(servers[0]).expect("an I reply");
        for n in 1..=height {
            let first = self.block_hash(servers[0], n);
            for i in &servers[1..] {
                assert_eq!(self.block_hash(*i, n), first, "block {n} on server {i}");
            }
        }
        height
    }

    /// `S` of payment `id` on server `i`.
    pub fn tx_status(&self, i: usize, id: &Hash) -> TxStatus {
        match self.request(i, &Request::Status(*id)) {
            Ok(Reply::Status(status)) => status,
            other => panic!("S {id} on server {i}: {other:?}"),
        }
    }

    /// Starts `rota pay --to to --amount amount --wait --json` paid by the
    /// funded client `payer` (1 to 3), without waiting for it: for a
    /// payment in flight while something else happens.
    pub fn pay_in_background(&self, payer: usize, to: &PublicKey, amount: u32) -> Paying {
        let seed = self.path().join(format!("clients/client-{payer}.seed"));
        let child = Command::new(rota_bin())
            .args([
                "pay",
                "--to",
                &to.to_string(),
                "--amount",
                &amount.to_string(),
            ])
            .args(["--wait", "--json", "--conf"])
            .arg(self.client_conf())
            .arg("--seed-file")
            .arg(seed)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rota pay");
        Paying { child: Some(child) }
    }
}

/// A `rota pay` running in the background; killed if dropped unfinished.
pub struct Paying {
    child: Option<Child>,
}

impl Paying {
    /// Waits up to `within` for the payment to end; returns what it printed
    /// (its JSON) when it ended, or `None` if it had not and was killed or
    /// printed nothing to read.
    pub fn finish(mut self, within: Duration) -> Option<serde_json::Value> {
        let mut child = self.child.take()?;
        let ended = supervisor::wait_until(within, POLL, || {
            matches!(child.try_wait(), Ok(Some(_)) | Err(_))
        });
        if !ended {
            let _ = child.kill();
        }
        let out = child.wait_with_output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Paying {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.audit && !std::thread::panicking() {
            self.audit();
        }
    }
}

//! The network `rota bench` runs against: three servers written by `rota
//! testnet init` with a genesis of the bench's own, run by a
//! [`Supervisor`]. Dropping it stops the servers and, unless asked to keep
//! it, removes the directory.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use rota_peer::ServerId;

use super::{BenchOptions, START_WITHIN, filler, payer};
use crate::config::{Config, Role};
use crate::error::{Error, Result};
use crate::genesis::{Genesis, GenesisAccount};
use crate::info::Info;
use crate::supervisor::{self, Supervisor};
use crate::testnet::{self, InitOptions};

/// How long a server is given to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How often a condition on the network is checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// The network under test.
pub struct Network {
    /// Declared first so that the servers are stopped before `dir` goes.
    servers: Supervisor,
    pub dir: PathBuf,
    pub client: Config,
    keep: bool,
}

impl Network {
    /// Writes a 3-server network into `dir` (`testnet init`, then a genesis
    /// with the payers and the filler accounts); starts nothing.
    pub fn write(options: &BenchOptions, dir: PathBuf) -> Result<Network> {
        testnet::init(&InitOptions {
            nodes: 3,
            dir: dir.clone(),
            slot_ms: options.slot_ms,
            difficulty_bits: options.difficulty_bits,
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
        .write(&dir.join("genesis.json"))?;
        let client = Config::load(&dir.join("client.toml"), Role::Client)?;
        let exe = std::env::current_exe().map_err(|e| Error::io("rota executable", e))?;
        Ok(Network {
            // The servers log as `RUST_LOG` says, as `rota testnet up`'s do.
            servers: Supervisor::new(exe, testnet::node_confs(&dir)?)
                .log_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
            dir,
            client,
            keep: options.keep,
        })
    }

    /// Writes the network (as [`Network::write`]), starts its three
    /// servers and waits for them to be in sync.
    pub fn up(options: &BenchOptions, dir: PathBuf) -> Result<Network> {
        let mut net = Network::write(options, dir)?;
        for i in 1..=3 {
            net.start(i)?;
        }
        net.wait_for("all three servers in sync", START_WITHIN, || {
            (1..=3).all(|i| net.in_sync(i))
        })?;
        Ok(net)
    }

    /// Server `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}/data"))
    }

    /// Starts server `i`.
    pub fn start(&mut self, i: usize) -> Result<()> {
        self.servers.start(i).map(|_| ())
    }

    /// Stops server `i` with SIGTERM (SIGKILL if it has not stopped within
    /// [`STOP_WITHIN`]).
    pub fn stop(&mut self, i: usize) -> Result<()> {
        self.servers.stop(i, STOP_WITHIN).map(|_| ())
    }

    /// Server `i`'s `I` reply, or `None` when it does not answer.
    pub fn info(&self, i: usize) -> Option<Info> {
        let address = self.client.server_address(ServerId(i as u32));
        supervisor::info(&zmq::Context::new(), &self.client.chain, address, 2_000)
    }

    pub fn in_sync(&self, i: usize) -> bool {
        self.info(i).is_some_and(|info| info.in_sync)
    }

    /// Polls `condition` until it holds; an error naming `what` and where
    /// the logs are if `within` passes first.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        condition: impl FnMut() -> bool,
    ) -> Result<()> {
        if supervisor::wait_until(within, POLL, condition) {
            return Ok(());
        }
        Err(self.timed_out(what))
    }

    /// The error for a wait for `what` that timed out.
    pub fn timed_out(&self, what: &str) -> Error {
        Error::Remote(format!(
            "bench: timed out waiting for {what}; logs are in {}",
            self.dir.display()
        ))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.servers.stop_all(STOP_WITHIN);
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

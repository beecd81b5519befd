//! The catch-up of a server that lost its database.
//!
//! Server 3 is stopped, a round changes the database on servers 1 and 2, its
//! data directory is deleted, and it is started again. The bench then asks
//! it for `I` every [`POLL`] until it answers in sync, and takes every time
//! on this machine's clock, which the servers share:
//!
//! - **connector start**: the first answer's arrival less the `uptime_ms`
//!   it carries. The uptime counts from the creation of the ledger thread,
//!   after the database is loaded; the connector takes its first step a few
//!   thread spawns later, well within a millisecond or two.
//! - **fetch-snapshot**: the first answer whose `connector` says so. The
//!   connector enters it one exchange with its peers after it starts; an
//!   answer shows it within a poll (10 ms plus the reply's way back), so
//!   "fetch and install" is short by up to that much, and a fetch quicker
//!   than a poll may not be seen at all.
//! - **in sync**: the first answer with `in_sync`, late by up to a poll.
//!
//! Neither the server's log nor its events serve: the log is text for
//! people, and a subscriber to a starting server joins after its first
//! transitions are published (its PUB socket binds just before the
//! connector starts).

use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use rota_peer::schedule::unix_now_ms;
use rota_peer::wire::{Reply, Request};
use rota_peer::{Millis, ServerId};

use super::load::load_round;
use super::network::Network;
use super::rounds::Rounds;
use crate::config::endpoint;
use crate::error::{Error, Result};
use crate::events::ConnectorState;
use crate::info::Info;
use crate::supervisor;

/// How often the restarted server is asked for `I`.
pub const POLL: Duration = Duration::from_millis(10);
/// How long one `I` may take. The ledger does not answer while it installs
/// a database, so an unanswered request is given up and asked again.
const REPLY_TIMEOUT_MS: i64 = 1_000;
/// How long the restarted server has to get back in sync.
const WITHIN: Duration = Duration::from_secs(120);

/// How the restarted server caught up.
pub struct CatchUp {
    /// Its accounts, the payers included.
    pub accounts: usize,
    /// Whether its connector was seen fetching.
    pub how: &'static str,
    /// From its connector starting to in sync.
    pub total: Option<u64>,
    /// From fetch-snapshot first seen to in sync.
    pub fetch: Option<u64>,
    /// From its process starting to in sync.
    pub process: u64,
}

/// Stops server 3, changes the database without it, deletes its data and
/// times its way back to in sync.
pub fn measure(
    net: &mut Network,
    rounds: &Rounds,
    accounts: usize,
    payers: usize,
) -> Result<CatchUp> {
    let schedule = net.client.schedule();
    net.stop(3)?;
    let change = load_round(
        &net.client,
        ServerId(1),
        unix_now_ms() + 2_000,
        100,
        1,
        payers,
    )?;
    net.wait_for(
        "the changing round to commit on servers 1 and 2",
        Duration::from_millis(3 * schedule.slot_ms),
        || rounds.seen_at(change.slot, &[1, 2]),
    )?;
    let data = net.data_dir(3);
    fs::remove_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    let process_start = unix_now_ms();
    net.start(3)?;
    let seen = watch(net, ServerId(3))?;
    let in_sync = seen.in_sync.expect("watched until in sync");
    Ok(CatchUp {
        accounts,
        how: if seen.fetching.is_some() {
            "fetched by its connector"
        } else {
            "its connector not seen fetching: a beta may have pushed it"
        },
        total: seen.connector_start.map(|at| in_sync.saturating_sub(at)),
        fetch: seen.fetching.map(|at| in_sync.saturating_sub(at)),
        process: in_sync.saturating_sub(process_start),
    })
}

/// What the answers of a restarting server showed, on this machine's clock.
#[derive(Default)]
struct Seen {
    answered: bool,
    connector_start: Option<Millis>,
    fetching: Option<Millis>,
    in_sync: Option<Millis>,
}

impl Seen {
    /// Takes in one `I` answer received `at`; true once it says in sync.
    fn note(&mut self, info: &Info, at: Millis) -> bool {
        if !self.answered {
            self.answered = true;
            self.connector_start = Some(at.saturating_sub(info.uptime_ms));
        }
        if info.connector == ConnectorState::FetchSnapshot {
            self.fetching.get_or_insert(at);
        }
        if info.in_sync {
            self.in_sync = Some(at);
        }
        self.in_sync.is_some()
    }
}

/// Asks server `id` for `I` every [`POLL`] until it is in sync.
fn watch(net: &Network, id: ServerId) -> Result<Seen> {
    let mut asker = Asker {
        ctx: zmq::Context::new(),
        chain: net.client.chain.clone(),
        address: net.client.server_address(id),
        socket: None,
    };
    let mut seen = Seen::default();
    let synced = supervisor::wait_until(WITHIN, POLL, || match asker.info() {
        Some(info) => seen.note(&info, unix_now_ms()),
        None => false,
    });
    if !synced {
        return Err(net.timed_out(&format!("server {id} in sync again")));
    }
    Ok(seen)
}

/// One DEALER that asks a starting server for `I`. It queues its request
/// until the server binds and retries the connection every 5 ms (ZeroMQ's
/// default is 100 ms), so that the first answer closely follows the start.
struct Asker {
    ctx: zmq::Context,
    chain: String,
    address: SocketAddr,
    socket: Option<zmq::Socket>,
}

impl Asker {
    fn open(&self) -> zmq::Result<zmq::Socket> {
        let socket = self.ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.set_reconnect_ivl(5)?;
        socket.set_ipv6(self.address.is_ipv6())?;
        socket.connect(&endpoint(&self.address))?;
        Ok(socket)
    }

    /// The `I` answer, or `None`; after a request left unanswered the
    /// socket is replaced, so that a late answer is never taken for the
    /// next one.
    fn info(&mut self) -> Option<Info> {
        let answer = self.ask();
        if answer.is_none() {
            self.socket = None;
        }
        answer
    }

    fn ask(&mut self) -> Option<Info> {
        if self.socket.is_none() {
            self.socket = self.open().ok();
        }
        let socket = self.socket.as_ref()?;
        socket
            .send_multipart(Request::Info.encode(&self.chain), 0)
            .ok()?;
        if socket.poll(zmq::POLLIN, REPLY_TIMEOUT_MS).ok()? == 0 {
            return None;
        }
        let frames = socket.recv_multipart(0).ok()?;
        let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        match Reply::decode(&parts).ok()? {
            Reply::Info(text) => Info::from_json(&text),
            _ => None,
        }
    }
}

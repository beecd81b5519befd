//! The client side: talking to nodes as `rota pay`, `balance`, `info`,
//! `status` and `watch` do.
//!
//! A [`Connection`] is one DEALER socket to one server, with a timeout on
//! every request. [`pay`] (in `pay.rs`) signs a payment with the client's
//! seed, waits out a blackout rather than sending into it, sends it to the
//! current alpha (or a chosen server, which forwards or holds it), and never
//! signs a second payment while the first may still be committed.

use std::net::SocketAddr;

use rota_peer::wire::{Reply, Request, TxStatus};
use rota_peer::{BlockNumber, ServerId, Slot};

use crate::config::{Config, endpoint};
use crate::error::{Error, Result};
use crate::events::Published;

mod pay;

pub use pay::{PayOptions, PayOutcome, pay};

/// How long a request waits for its reply by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// One DEALER socket to one server. `ZMQ_IMMEDIATE` keeps requests from
/// queueing for a server that is not connected, so a dead server costs one
/// timeout, not a hang.
pub struct Connection {
    socket: zmq::Socket,
    chain: String,
    address: SocketAddr,
    timeout_ms: u64,
}

impl Connection {
    pub fn open(
        ctx: &zmq::Context,
        chain: &str,
        address: SocketAddr,
        timeout_ms: u64,
    ) -> Result<Connection> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.set_immediate(true)?;
        socket.set_sndtimeo(timeout_ms.min(i32::MAX as u64) as i32)?;
        socket.set_ipv6(address.is_ipv6())?;
        socket.connect(&endpoint(&address))?;
        Ok(Connection {
            socket,
            chain: chain.to_string(),
            address,
            timeout_ms,
        })
    }

    fn no_answer(&self, request: &Request) -> Error {
        Error::NoAnswer(format!(
            "{} did not answer {} within {} ms",
            self.address,
            request.command(),
            self.timeout_ms
        ))
    }

    /// Sends a request and waits for its reply. An `E` reply is returned as
    /// [`Error::Remote`] with the node's message; silence as [`Error::NoAnswer`].
    pub fn call(&mut self, request: &Request) -> Result<Reply> {
        match self.exchange(request)? {
            Exchange::Reply(Reply::Error(message)) => {
                Err(Error::Remote(format!("{}: {message}", self.address)))
            }
            Exchange::Reply(reply) => Ok(reply),
            Exchange::Unsent | Exchange::Silent => Err(self.no_answer(request)),
        }
    }

    /// Sends a request and waits for its reply, telling a request that never
    /// left (no connection within the timeout) from one that went unanswered:
    /// `rota pay` must know whether a server may hold its payment.
    fn exchange(&mut self, request: &Request) -> Result<Exchange> {
        match self.socket.send_multipart(request.encode(&self.chain), 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(Exchange::Unsent),
            Err(e) => return Err(e.into()),
        }
        if self.socket.poll(zmq::POLLIN, self.timeout_ms as i64)? == 0 {
            return Ok(Exchange::Silent);
        }
        let frames = self.socket.recv_multipart(0)?;
        let parts: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        Ok(Exchange::Reply(Reply::decode(&parts)?))
    }
}

/// How one request fared.
enum Exchange {
    /// The server answered (an `E` reply included).
    Reply(Reply),
    /// No connection to the server within the timeout: it never got the
    /// request (`ZMQ_IMMEDIATE` queues nothing for an absent peer).
    Unsent,
    /// Sent, but no reply within the timeout: the server may have acted on it.
    Silent,
}

/// Opens a connection to server `id` of `config`.
pub fn connect(
    ctx: &zmq::Context,
    config: &Config,
    id: ServerId,
    timeout_ms: u64,
) -> Result<Connection> {
    Connection::open(ctx, &config.chain, config.server_address(id), timeout_ms)
}

/// Checks a `--server` number against the conf.
pub fn server_id(config: &Config, number: u32) -> Result<ServerId> {
    if number == 0 || number as usize > config.servers.len() {
        return Err(Error::Config(format!(
            "--server {number}: the conf lists servers 1 to {}",
            config.servers.len()
        )));
    }
    Ok(ServerId(number))
}

/// Sends `request` to the chosen server, or to each server in turn until one
/// answers. Returns the reply and who gave it.
pub fn ask(
    ctx: &zmq::Context,
    config: &Config,
    server: Option<ServerId>,
    request: &Request,
    timeout_ms: u64,
) -> Result<(ServerId, Reply)> {
    let candidates: Vec<ServerId> = match server {
        Some(id) => vec![id],
        None => config.server_list().ids().collect(),
    };
    let mut silent = Vec::new();
    for id in candidates {
        match connect(ctx, config, id, timeout_ms)?.call(request) {
            Ok(reply) => return Ok((id, reply)),
            Err(Error::NoAnswer(message)) => {
                eprintln!("server {id} did not answer ({message})");
                silent.push(id);
            }
            Err(e) => return Err(e),
        }
    }
    Err(no_server_answered(&silent))
}

fn no_server_answered(silent: &[ServerId]) -> Error {
    let list: Vec<String> = silent.iter().map(|id| id.to_string()).collect();
    Error::NoAnswer(format!(
        "no server answered (asked servers {}); are they running, and is the conf's server list right?",
        list.join(", ")
    ))
}

/// The word, block and deciding slot of a status, for printing.
pub fn status_words(status: TxStatus) -> (&'static str, Option<BlockNumber>, Option<Slot>) {
    match status {
        TxStatus::Pending => ("pending", None, None),
        TxStatus::Committed { block, slot } => ("committed", Some(block), Some(slot)),
        TxStatus::Lost { slot } => ("lost", None, Some(slot)),
        TxStatus::Unknown => ("unknown", None, None),
    }
}

/// A status as `rota status` and `rota pay` print it: "committed in block
/// n (decided by slot s)", "lost (decided by slot s)", "pending", "unknown".
pub fn status_text(status: TxStatus) -> String {
    match status {
        TxStatus::Pending => "pending".into(),
        TxStatus::Committed { block, slot } => {
            format!("committed in block {block} (decided by slot {slot})")
        }
        TxStatus::Lost { slot } => format!("lost (decided by slot {slot})"),
        TxStatus::Unknown => "unknown".into(),
    }
}

/// Prints every event published by the chosen servers (all that list a
/// `publish` address when none is chosen) until `stop` returns true. A body
/// that is not an event of its topic (from a server of another version) is
/// skipped.
pub fn watch(
    config: &Config,
    server: Option<ServerId>,
    topics: &[String],
    mut print: impl FnMut(&Published),
    mut stop: impl FnMut() -> bool,
) -> Result<()> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::SUB)?;
    socket.set_linger(0)?;
    let ids: Vec<ServerId> = match server {
        Some(id) => vec![id],
        None => config.server_list().ids().collect(),
    };
    let mut watched = 0;
    for id in ids {
        let Some(address) = config.server_publish(id) else {
            continue;
        };
        socket.set_ipv6(address.is_ipv6())?;
        socket.connect(&endpoint(&address))?;
        watched += 1;
    }
    if watched == 0 {
        return Err(Error::Config(
            "no server in the conf has a publish address; add `publish = \"host:port\"` to its [[servers]] entry".into(),
        ));
    }
    // A subscription matches the first frame only (the chain); topics are
    // the second frame, so they are filtered after receiving.
    let prefix = config.chain.as_bytes();
    socket.set_subscribe(prefix)?;
    while !stop() {
        // A signal (Ctrl-C) interrupts the wait; `stop` then says whether to end.
        match socket.poll(zmq::POLLIN, 200) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let frames = match socket.recv_multipart(0) {
            Ok(frames) => frames,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let [chain, topic, body] = frames.as_slice() else {
            continue;
        };
        if chain.as_slice() != prefix {
            continue;
        }
        let topic = String::from_utf8_lossy(topic);
        if !topics.is_empty() && !topics.iter().any(|t| *t == topic) {
            continue;
        }
        let Some(published) = Published::decode(&topic, body) else {
            log::debug!("skipped a {topic} event that does not read as one");
            continue;
        };
        print(&published);
    }
    Ok(())
}

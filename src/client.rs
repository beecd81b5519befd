//! The client side: talking to nodes as `rota pay`, `balance`, `info`,
//! `status` and `watch` do.
//!
//! A [`Connection`] is one DEALER socket to one server, with a timeout on
//! every request. [`pay`] signs a payment with the client's seed, waits out a
//! blackout rather than sending into it, sends it to the current alpha (or a
//! chosen server, which forwards or holds it), and can wait until the payment
//! is committed or reported lost.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::transaction::Transaction;
use rota_peer::wire::{ALPHA_DOWN, Disposition, Reply, Request, TxStatus};
use rota_peer::{Amount, Millis, PublicKey, ServerId, TxId};

use crate::config::{Config, endpoint};
use crate::error::{Error, Result};
use crate::events::Published;

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
        match self.socket.send_multipart(request.encode(&self.chain), 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Err(self.no_answer(request)),
            Err(e) => return Err(e.into()),
        }
        if self.socket.poll(zmq::POLLIN, self.timeout_ms as i64)? == 0 {
            return Err(self.no_answer(request));
        }
        let frames = self.socket.recv_multipart(0)?;
        let parts: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        match Reply::decode(&parts)? {
            Reply::Error(message) => Err(Error::Remote(format!("{}: {message}", self.address))),
            reply => Ok(reply),
        }
    }
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

/// What `rota pay` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOutcome {
    pub id: TxId,
    pub disposition: Disposition,
    /// The server the payment was sent to.
    pub sent_to: ServerId,
    /// With `--wait`: the final status, or the last one seen at the deadline.
    pub status: Option<TxStatus>,
}

/// Options of `rota pay`.
#[derive(Debug, Clone)]
pub struct PayOptions {
    pub to: PublicKey,
    pub amount: Amount,
    pub server: Option<ServerId>,
    pub wait: bool,
    pub timeout_ms: u64,
}

/// Sleeps until an alpha window is open with a margin, so the payment is not
/// sent into a blackout. Returns the slot it will be sent in.
fn wait_for_window(config: &Config) -> u64 {
    let schedule = config.schedule();
    let margin = (schedule.blackout_ms / 4).clamp(5, 200);
    let now = unix_now_ms();
    let (slot, opens) = schedule.next_open(now + margin);
    if opens > now + margin {
        let wait = opens - now;
        eprintln!(
            "slot {} is in its blackout: waiting {wait} ms for slot {slot}",
            slot - 1
        );
        thread::sleep(Duration::from_millis(wait + margin.min(20)));
    }
    schedule.slot_at(unix_now_ms())
}

fn sleep_until(at: Millis) {
    let now = unix_now_ms();
    if at > now {
        thread::sleep(Duration::from_millis(at - now));
    }
}

/// How one attempt to hand a signed payment to a server ended.
enum Attempt {
    Taken {
        sent_to: ServerId,
        id: TxId,
        disposition: Disposition,
        connection: Connection,
    },
    /// No server took it for this slot: the alpha is down or unreachable.
    NoAlpha(String),
}

/// Offers one signed payment to the chosen server, or to the slot's alpha and
/// then to every other server. Offering the same bytes again is safe: they
/// have one id, and their timestamp fits one round only.
fn offer(
    ctx: &zmq::Context,
    config: &Config,
    options: &PayOptions,
    slot: u64,
    tx: Transaction,
) -> Result<Attempt> {
    let alpha = config.schedule().alpha(slot);
    let order: Vec<ServerId> = match options.server {
        Some(id) => vec![id],
        None => std::iter::once(alpha)
            .chain(config.server_list().ids().filter(|id| *id != alpha))
            .collect(),
    };
    let request = Request::Submit(tx);
    let mut silent = Vec::new();
    for id in order {
        let mut connection = connect(ctx, config, id, options.timeout_ms)?;
        match connection.call(&request) {
            Ok(Reply::Submitted {
                id: tx_id,
                disposition,
            }) => {
                return Ok(Attempt::Taken {
                    sent_to: id,
                    id: tx_id,
                    disposition,
                    connection,
                });
            }
            Ok(other) => return Err(Error::Remote(format!("unexpected reply {other:?}"))),
            Err(Error::NoAnswer(message)) => {
                eprintln!("server {id} did not answer ({message})");
                silent.push(id);
            }
            Err(Error::Remote(message)) if message.contains(ALPHA_DOWN) => {
                return Ok(Attempt::NoAlpha(message));
            }
            Err(e) => return Err(e),
        }
    }
    if silent.contains(&alpha) && silent.len() < config.servers.len() {
        return Ok(Attempt::NoAlpha(format!(
            "server {alpha}, the alpha of slot {slot}, did not answer"
        )));
    }
    Err(no_server_answered(&silent))
}

/// Signs and sends a payment; see the module documentation. When no alpha
/// takes it, it waits until that round has been decided and checks the
/// payment is not in it before signing a new one for a later slot, so a
/// payment is never made twice.
pub fn pay(config: &Config, payer: &Keypair, options: &PayOptions) -> Result<PayOutcome> {
    let ctx = zmq::Context::new();
    let schedule = config.schedule();
    for _ in 0..=config.servers.len() {
        let slot = wait_for_window(config);
        let tx = Transaction::sign(
            &config.chain,
            payer,
            options.to,
            options.amount,
            unix_now_ms(),
        );
        match offer(&ctx, config, options, slot, tx)? {
            Attempt::Taken {
                sent_to,
                id,
                disposition,
                mut connection,
            } => {
                let status = if options.wait {
                    let round = match disposition {
                        Disposition::Held(_) => slot + 1,
                        Disposition::Accepted(_) | Disposition::Forwarded(_) => slot,
                    };
                    let deadline = schedule.vote_deadline(round) + 2 * schedule.slot_ms;
                    Some(wait_for_commit(
                        &mut connection,
                        id,
                        deadline,
                        schedule.slot_ms,
                    )?)
                } else {
                    None
                };
                return Ok(PayOutcome {
                    id,
                    disposition,
                    sent_to,
                    status,
                });
            }
            Attempt::NoAlpha(reason) => {
                eprintln!("{reason}; waiting for round {slot} to be decided before trying again");
                sleep_until(schedule.vote_deadline(slot) + schedule.slot_ms / 10);
                if let Some((server, block)) =
                    committed_somewhere(&ctx, config, tx.id(), options.timeout_ms)
                {
                    return Ok(PayOutcome {
                        id: tx.id(),
                        disposition: Disposition::Accepted(schedule.alpha(slot)),
                        sent_to: server,
                        status: Some(TxStatus::Committed(block)),
                    });
                }
            }
        }
    }
    Err(Error::Remote(format!(
        "no alpha took the payment in {} slots; the network may be down",
        config.servers.len() + 1
    )))
}

/// Whether any server reports `id` committed, and in which block.
fn committed_somewhere(
    ctx: &zmq::Context,
    config: &Config,
    id: TxId,
    timeout_ms: u64,
) -> Option<(ServerId, u64)> {
    config.server_list().ids().find_map(|server| {
        let mut connection = connect(ctx, config, server, timeout_ms).ok()?;
        match connection.call(&Request::Status(id)) {
            Ok(Reply::Status(TxStatus::Committed(block))) => Some((server, block)),
            _ => None,
        }
    })
}

/// Polls `S` until the payment is committed or lost, or the deadline passes.
fn wait_for_commit(
    connection: &mut Connection,
    id: TxId,
    deadline: Millis,
    slot_ms: u64,
) -> Result<TxStatus> {
    let pause = Duration::from_millis((slot_ms / 10).clamp(50, 1_000));
    loop {
        let status = match connection.call(&Request::Status(id))? {
            Reply::Status(status) => status,
            other => return Err(Error::Remote(format!("unexpected reply {other:?}"))),
        };
        match status {
            TxStatus::Committed(_) | TxStatus::Lost => return Ok(status),
            TxStatus::Pending | TxStatus::Unknown if unix_now_ms() >= deadline => {
                return Ok(status);
            }
            TxStatus::Pending | TxStatus::Unknown => thread::sleep(pause),
        }
    }
}

/// The word and block number of a status, for printing.
pub fn status_words(status: TxStatus) -> (&'static str, Option<u64>) {
    match status {
        TxStatus::Pending => ("pending", None),
        TxStatus::Committed(block) => ("committed", Some(block)),
        TxStatus::Lost => ("lost", None),
        TxStatus::Unknown => ("unknown", None),
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

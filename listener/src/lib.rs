//! rota-listener: the listener and peering threads, their sockets, and the
//! verifiers.
//!
//! The listener owns the sockets clients connect to: a ROUTER on IPv4 and
//! one on IPv6 (either may be left out), the PUB socket for events, a
//! monitor on each ROUTER, and the PULL end of the inproc signal pair (all
//! built by `rota-sockets`, which sets their options). It polls them all in
//! one loop and does only I/O: requests are read in batches and decoded; a
//! malformed one, or a server command, is answered at once with `E`. The
//! other servers talk to a socket of their own, owned by the peering thread
//! ([`peering`]), so that no client load delays them.
//!
//! Decoded batches go, numbered, to a pool of verifier threads
//! ([`verify::Verifiers`]). Signatures are checked there and nowhere else:
//! payments in `T`, `forward` and `round` by a
//! [`rota_peer::transaction::Verifier`] (a round's payments as one batch, so
//! every server reaches the same verdict), peer envelopes against the server
//! list. What passes goes to the ledger thread as a numbered [`Batch`] of
//! [`Incoming`]; the ledger takes batches in number order, so requests are
//! applied in the order they arrived although several threads verify them.
//! The ledger's answers come back as [`Outgoing`] on a channel, with a
//! wake-up on the signal pair.
//!
//! Each socket's requests take their own lane to the ledger ([`lane`]), and
//! each lane is bounded in requests: what does not fit is answered with `E`
//! ("busy") and the refusal is logged and counted, so a flood of requests
//! cannot grow memory without limit.
//!
//! What one client can make the node hold is bounded at the sockets: the
//! options of [`rota_sockets::client_router`], the connection limit kept
//! at the handshake by the ZAP handler ([`zap::Gate`], polled here), at
//! most [`MAX_FRAMES`] frames kept of a request, and large replies sent
//! without a copy ([`Outgoing::Large`]). When clients go, freed memory is
//! handed back to the system ([`trim`]). These limits are the client
//! sockets' alone: the peering socket has its own.

mod error;
pub mod lane;
mod monitor;
pub mod peering;
mod trim;
mod verify;
mod zap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::consensus::{Certified, Evidence, Precommit, Prevote, SignedHeader, Verified};
use rota_peer::wire::{Greeting, Mining, PeerCommand, Reply, Request, ServerList};
use rota_peer::{Hash, ServerId, Slot};
use rota_sockets::large::Body;
use rota_sockets::{ClientLimits, Signal, SignalReceiver};

pub use error::{Error, Refusal};
pub use lane::{
    Budget, Budgets, Lane, LaneSender, MAX_QUEUED_BULK, MAX_QUEUED_CLIENT_REQUESTS,
    MAX_QUEUED_CONSENSUS,
};
pub use monitor::Stats;
pub use peering::{PEERING_SIGNAL, Peering, PeeringConfig, PeeringLanes};
/// The signal pair lives in `rota-sockets`; the node and the ledger thread
/// take their [`Waker`] from here, beside the [`SIGNAL`] endpoint it wakes.
pub use rota_sockets::Waker;
pub use verify::{Batch, Door, InOrder, Verifiers, Work, check_peer};

/// The inproc endpoint of the listener's signal pair.
pub const SIGNAL: &str = "inproc://rota-listener-signal";

/// The most requests read from one socket before looking at the others.
pub const BATCH: usize = 1024;

/// The most frames of one message the listener keeps: the identity, a REQ
/// delimiter, and the six frames of the longest request (a server command:
/// chain, command and four parameters). libzmq does not limit the frames of
/// a message; the rest are read and dropped, and the request is refused.
pub const MAX_FRAMES: usize = 8;

/// Which ROUTER a request came in on: a client socket, by its family, or
/// the peering socket (whichever its family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Peering,
}

/// Where to send a reply: the socket and the routing frames (the peer's
/// identity, and the empty delimiter a REQ socket adds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    pub envelope: Vec<Vec<u8>>,
}

/// A request that passed the door, for the ledger thread.
#[derive(Clone, Debug)]
pub enum Inbound {
    /// A client query (`I N B H A S D`).
    Query(Request),
    /// A payment whose signature verified.
    Submit(VerifiedTx),
    /// A peer message whose envelope verified, with every signature inside
    /// checked.
    Peer {
        from: ServerId,
        slot: Slot,
        message: PeerInput,
    },
    /// A request that failed its checks: answer `E` with this message.
    Refused(String),
}

/// A server message whose signatures all checked: the envelope's, and
/// those of every header, vote, certificate and payment it carries.
#[derive(Clone, Debug)]
pub enum PeerInput {
    /// `register`, with the sender's parameters, clock and status.
    Register(Greeting),
    /// `heart`, with the sender's parameters, clock and status.
    Heart(Greeting),
    /// `forward`: a payment for this server's round.
    Forward(VerifiedTx),
    /// `mine`: a message of the nonce search.
    Mine(Mining),
    /// A message of the round protocol (boxed: it carries signed headers
    /// and certificates, many times the size of the others).
    Consensus(Box<Consensus>),
}

impl PeerInput {
    /// The command the message came as.
    pub fn command(&self) -> PeerCommand {
        match self {
            PeerInput::Register(_) => PeerCommand::Register,
            PeerInput::Heart(_) => PeerCommand::Heart,
            PeerInput::Forward(_) => PeerCommand::Forward,
            PeerInput::Mine(_) => PeerCommand::Mine,
            PeerInput::Consensus(message) => message.command(),
        }
    }
}

impl Consensus {
    /// The command the message came as.
    pub fn command(&self) -> PeerCommand {
        match self {
            Consensus::Round { .. } => PeerCommand::Round,
            Consensus::Prevote(_) => PeerCommand::Prevote,
            Consensus::Precommit(_) => PeerCommand::Precommit,
            Consensus::Certified(_) => PeerCommand::Certified,
            Consensus::Evidence(_) => PeerCommand::Evidence,
            Consensus::Want { .. } => PeerCommand::Want,
        }
    }
}

/// A message of the round protocol, verified.
#[derive(Clone, Debug)]
pub enum Consensus {
    /// ROUND(s): the alpha's signed header and its payments, all verified.
    Round {
        header: Verified<SignedHeader>,
        payments: Vec<VerifiedTx>,
    },
    Prevote(Verified<Prevote>),
    Precommit(Verified<Precommit>),
    Certified(Verified<Certified>),
    Evidence(Verified<Evidence>),
    /// A server asks for the round `digest` of `slot`.
    Want {
        slot: Slot,
        digest: Hash,
    },
}

/// One request with its return route.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub route: Route,
    pub inbound: Inbound,
}

/// What the ledger thread hands back to the listener.
#[derive(Clone, Debug)]
pub enum Outgoing {
    Reply {
        route: Route,
        reply: Reply,
    },
    /// A reply whose last frame is a large body (the database of a `D`, the
    /// block of a `B`): `head` is the frames before it. The body is sent
    /// without a copy and counted on its gauge until libzmq lets it go.
    Large {
        route: Route,
        head: Vec<Vec<u8>>,
        body: Arc<Body>,
    },
    Publish {
        topic: &'static str,
        body: String,
    },
}

/// What the listener binds and whom it trusts.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub chain: String,
    pub ipv4: Option<SocketAddr>,
    pub ipv6: Option<SocketAddr>,
    pub publish: Vec<SocketAddr>,
    /// The options of the client request sockets.
    pub client: ClientLimits,
    /// Client connections open at once, both request sockets together.
    pub max_connections: u64,
    pub servers: ServerList,
}

/// The listener thread's state. Build it with [`Listener::bind`], then run
/// [`Listener::run`] on its own thread.
pub struct Listener {
    config: ListenerConfig,
    socket4: Option<zmq::Socket>,
    socket6: Option<zmq::Socket>,
    monitors: Vec<monitor::Monitor>,
    gate: zap::Gate,
    trimmer: trim::Trimmer,
    publisher: Option<zmq::Socket>,
    signal: SignalReceiver,
    /// The client lane to the verifiers.
    lane: LaneSender,
    from_ledger: Receiver<Outgoing>,
    stats: Arc<Stats>,
}

impl Listener {
    /// Binds every socket. Fails (address in use, say) before any thread
    /// starts, so the node can report it and exit.
    pub fn bind(
        ctx: &zmq::Context,
        config: ListenerConfig,
        lane: LaneSender,
        from_ledger: Receiver<Outgoing>,
        stats: Arc<Stats>,
    ) -> Result<Listener, Error> {
        // In place before the client sockets take a connection.
        let gate = zap::Gate::bind(ctx, config.max_connections)?;
        let bind = |address: &SocketAddr| {
            rota_sockets::client_router(ctx, address, &config.client).map_err(|source| {
                Error::Listen {
                    address: *address,
                    source,
                }
            })
        };
        let socket4 = config.ipv4.as_ref().map(bind).transpose()?;
        let socket6 = config.ipv6.as_ref().map(bind).transpose()?;
        let mut monitors = Vec::new();
        for (socket, name) in [(&socket4, "ipv4"), (&socket6, "ipv6")] {
            if let Some(socket) = socket {
                monitors.push(
                    monitor::Monitor::attach(ctx, socket, name)
                        .map_err(|source| Error::Monitor { name, source })?,
                );
            }
        }
        let publisher = if config.publish.is_empty() {
            None
        } else {
            let socket = rota_sockets::publisher(ctx)?;
            for address in &config.publish {
                rota_sockets::bind(&socket, address).map_err(|source| Error::Publish {
                    address: *address,
                    source,
                })?;
            }
            Some(socket)
        };
        let signal = SignalReceiver::bind(ctx, SIGNAL)?;
        for address in config.ipv4.iter().chain(config.ipv6.iter()) {
            log::info!("listening on {address}");
        }
        for address in &config.publish {
            log::info!("publishing events on {address}");
        }
        Ok(Listener {
            config,
            socket4,
            socket6,
            monitors,
            gate,
            trimmer: trim::Trimmer::default(),
            publisher,
            signal,
            lane,
            from_ledger,
            stats,
        })
    }

    /// The listener thread body. Owns the ROUTER, PUB, monitor and signal
    /// sockets; sends decoded batches on `to_verifiers`, takes replies and
    /// events from `from_ledger` when woken. Returns on a `stop` signal or
    /// when the verifiers have gone.
    pub fn run(mut self) {
        loop {
            let ready = match self.poll() {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("listener poll failed: {e}");
                    return;
                }
            };
            if ready.signal && self.signal.drain() == Some(Signal::Stop) {
                // Last replies and events (a `stop` event, say) go out first.
                self.send_outgoing();
                log::debug!("listener stopping");
                return;
            }
            self.send_outgoing();
            self.handle_connections(ready.monitors || ready.gate);
            let mut alive = true;
            if ready.v4 {
                alive &= self.serve(Family::V4);
            }
            if ready.v6 {
                alive &= self.serve(Family::V6);
            }
            if !alive {
                log::error!("the verifier threads have gone; listener stopping");
                return;
            }
        }
    }

    /// Reads the monitors' events, then answers waiting handshakes (so that
    /// the gate counts the connections asking), then trims freed memory if
    /// connections closed a while ago.
    fn handle_connections(&mut self, ready: bool) {
        let now = Instant::now();
        if ready {
            let closed: usize = self.monitors.iter().map(|m| m.handle(&self.stats)).sum();
            if closed > 0 {
                self.trimmer.closed(now);
            }
            self.gate.handle(&self.stats);
        }
        self.trimmer.run_if_due(now);
    }

    fn poll(&self) -> zmq::Result<Ready> {
        let mut items = Vec::with_capacity(4 + self.monitors.len());
        items.push(self.signal.socket().as_poll_item(zmq::POLLIN));
        items.push(self.gate.socket().as_poll_item(zmq::POLLIN));
        for socket in [&self.socket4, &self.socket6].into_iter().flatten() {
            items.push(socket.as_poll_item(zmq::POLLIN));
        }
        for monitor in &self.monitors {
            items.push(monitor.socket().as_poll_item(zmq::POLLIN));
        }
        zmq::poll(&mut items, self.trimmer.poll_timeout_ms(Instant::now()))?;
        let mut next = 2;
        let mut readable = |present: bool| {
            if !present {
                return false;
            }
            next += 1;
            items[next - 1].is_readable()
        };
        let v4 = readable(self.socket4.is_some());
        let v6 = readable(self.socket6.is_some());
        let monitors = self
            .monitors
            .iter()
            .fold(false, |any, _| readable(true) | any);
        Ok(Ready {
            signal: items[0].is_readable(),
            gate: items[1].is_readable(),
            v4,
            v6,
            monitors,
        })
    }

    fn socket(&self, family: Family) -> Option<&zmq::Socket> {
        match family {
            Family::V4 => self.socket4.as_ref(),
            Family::V6 => self.socket6.as_ref(),
            // Answers on the peering socket go through the peering thread.
            Family::Peering => None,
        }
    }

    /// Sends every reply and event the ledger has queued.
    fn send_outgoing(&mut self) {
        while let Ok(outgoing) = self.from_ledger.try_recv() {
            match outgoing {
                Outgoing::Reply { route, reply } => self.reply(&route, &reply),
                Outgoing::Large { route, head, body } => self.reply_large(&route, head, &body),
                Outgoing::Publish { topic, body } => {
                    if let Some(publisher) = &self.publisher {
                        let frames = [
                            self.config.chain.as_bytes(),
                            topic.as_bytes(),
                            body.as_bytes(),
                        ];
                        if let Err(e) = publisher.send_multipart(frames, zmq::DONTWAIT) {
                            log::debug!("event {topic} not published: {e}");
                        }
                    }
                }
            }
        }
    }

    fn reply(&self, route: &Route, reply: &Reply) {
        let Some(socket) = self.socket(route.family) else {
            return;
        };
        let frames = route.envelope.iter().cloned().chain(reply.encode());
        if let Err(e) = socket.send_multipart(frames, zmq::DONTWAIT) {
            log::debug!("reply not sent: {e}");
        }
    }

    /// Sends the routing frames and `head`, then `body` without a copy. A
    /// full send queue drops the whole reply, as for any other.
    fn reply_large(&mut self, route: &Route, head: Vec<Vec<u8>>, body: &Arc<Body>) {
        let socket = match route.family {
            Family::V4 => self.socket4.as_mut(),
            Family::V6 => self.socket6.as_mut(),
            // Answers on the peering socket go through the peering thread.
            Family::Peering => None,
        };
        let Some(socket) = socket else {
            return;
        };
        let more = zmq::DONTWAIT | zmq::SNDMORE;
        let sent = route
            .envelope
            .iter()
            .chain(&head)
            .try_for_each(|frame| socket.send(frame.as_slice(), more))
            .and_then(|()| rota_sockets::large::send(socket, body, zmq::DONTWAIT));
        if let Err(e) = sent {
            log::debug!("large reply not sent: {e}");
        }
    }

    fn refuse(&self, route: &Route, refusal: Refusal) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        log::debug!("refused: {refusal}");
        self.reply(route, &Reply::Error(refusal.to_string()));
    }

    /// Reads up to a batch of requests from one socket, decodes them,
    /// refuses server commands, and hands the batch to the verifiers as far
    /// as the client lane has room; the rest are refused as busy. Returns
    /// false if the verifiers are gone.
    fn serve(&mut self, family: Family) -> bool {
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some(socket) = self.socket(family) else {
                break;
            };
            let Some((frames, count)) = recv_bounded(socket) else {
                break;
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let Some((route, body)) = split_route(family, frames) else {
                continue;
            };
            if count > MAX_FRAMES {
                let got = count - route.envelope.len();
                let error = rota_peer::Error::Invalid(format!(
                    "a request has at most {} frames, got {got}",
                    MAX_FRAMES - 2
                ));
                self.refuse(&route, Refusal::Malformed(error));
                continue;
            }
            let parts: Vec<&[u8]> = body.iter().map(|f| f.as_slice()).collect();
            match Request::decode(&self.config.chain, &parts) {
                Ok(request) => match Lane::on_client_socket(&request) {
                    Ok(_) => batch.push((route, request)),
                    Err(refusal) => self.refuse(&route, refusal),
                },
                Err(e) => self.refuse(&route, Refusal::Malformed(e)),
            }
        }
        let Ok(over) = self.lane.queue(batch) else {
            return false;
        };
        if !over.is_empty() {
            log::warn!(
                "client lane full ({MAX_QUEUED_CLIENT_REQUESTS} requests): refusing {} as busy",
                over.len()
            );
            for (route, _) in over {
                self.refuse(&route, Refusal::Busy);
            }
        }
        true
    }
}

/// What one poll found readable.
struct Ready {
    signal: bool,
    gate: bool,
    v4: bool,
    v6: bool,
    monitors: bool,
}

/// Reads one whole message, keeping its first [`MAX_FRAMES`] frames and
/// counting all of them, so that a message of a million frames costs a
/// count, not a copy. `None` when no message is waiting.
pub(crate) fn recv_bounded(socket: &zmq::Socket) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut frame = zmq::Message::new();
    socket.recv(&mut frame, zmq::DONTWAIT).ok()?;
    let mut frames = vec![frame.to_vec()];
    let mut count = 1;
    // The parts of a message arrive together, so these do not wait.
    while frame.get_more() && socket.recv(&mut frame, zmq::DONTWAIT).is_ok() {
        count += 1;
        if frames.len() < MAX_FRAMES {
            frames.push(frame.to_vec());
        }
    }
    Some((frames, count))
}

/// Splits a ROUTER message into its route (identity, and the empty delimiter
/// if a REQ socket sent it) and its body.
pub(crate) fn split_route(
    family: Family,
    mut frames: Vec<Vec<u8>>,
) -> Option<(Route, Vec<Vec<u8>>)> {
    if frames.is_empty() {
        return None;
    }
    let cut = if frames.get(1).is_some_and(|f| f.is_empty()) {
        2
    } else {
        1
    };
    let body = frames.split_off(cut.min(frames.len()));
    Some((
        Route {
            family,
            envelope: frames,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dealer_route_is_the_identity_alone() {
        let frames = vec![b"id".to_vec(), b"chain".to_vec(), b"I".to_vec()];
        let (route, body) = split_route(Family::V4, frames).unwrap();
        assert_eq!(route.envelope, vec![b"id".to_vec()]);
        assert_eq!(body, vec![b"chain".to_vec(), b"I".to_vec()]);
    }

    #[test]
    fn a_req_route_keeps_the_empty_delimiter() {
        let frames = vec![b"id".to_vec(), vec![], b"chain".to_vec(), b"I".to_vec()];
        let (route, body) = split_route(Family::V6, frames).unwrap();
        assert_eq!(route.envelope, vec![b"id".to_vec(), vec![]]);
        assert_eq!(body.len(), 2);
    }
}

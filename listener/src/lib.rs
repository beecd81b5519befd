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

mod error;
pub mod lane;
mod monitor;
pub mod peering;
mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{PeerMessage, Reply, Request, ServerList};
use rota_peer::{ServerId, Slot};
use rota_sockets::{Signal, SignalReceiver};

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
pub use verify::{Batch, InOrder, Verifiers, Work};

/// The inproc endpoint of the listener's signal pair.
pub const SIGNAL: &str = "inproc://rota-listener-signal";

/// The most requests read from one socket before looking at the others.
pub const BATCH: usize = 1024;

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
    /// A peer message whose envelope verified, with its payments checked.
    Peer {
        from: ServerId,
        slot: Slot,
        message: PeerMessage<VerifiedTx>,
    },
    /// A request that failed its checks: answer `E` with this message.
    Refused(String),
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
    Reply { route: Route, reply: Reply },
    Publish { topic: &'static str, body: String },
}

/// What the listener binds and whom it trusts.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub chain: String,
    pub ipv4: Option<SocketAddr>,
    pub ipv6: Option<SocketAddr>,
    pub publish: Vec<SocketAddr>,
    pub max_message_bytes: i64,
    pub servers: ServerList,
}

/// The listener thread's state. Build it with [`Listener::bind`], then run
/// [`Listener::run`] on its own thread.
pub struct Listener {
    config: ListenerConfig,
    socket4: Option<zmq::Socket>,
    socket6: Option<zmq::Socket>,
    monitors: Vec<monitor::Monitor>,
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
        let bind = |address: &SocketAddr| {
            rota_sockets::router(ctx, address, config.max_message_bytes).map_err(|source| {
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
            let (ready4, ready6, ready_signal, ready_monitors) = match self.poll() {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("listener poll failed: {e}");
                    return;
                }
            };
            if ready_signal && self.signal.drain() == Some(Signal::Stop) {
                // Last replies and events (a `stop` event, say) go out first.
                self.send_outgoing();
                log::debug!("listener stopping");
                return;
            }
            self.send_outgoing();
            for (i, ready) in ready_monitors.into_iter().enumerate() {
                if ready {
                    self.monitors[i].handle(&self.stats);
                }
            }
            let mut alive = true;
            if ready4 {
                alive &= self.serve(Family::V4);
            }
            if ready6 {
                alive &= self.serve(Family::V6);
            }
            if !alive {
                log::error!("the verifier threads have gone; listener stopping");
                return;
            }
        }
    }

    fn poll(&self) -> zmq::Result<(bool, bool, bool, Vec<bool>)> {
        let mut items = Vec::with_capacity(3 + self.monitors.len());
        items.push(self.signal.socket().as_poll_item(zmq::POLLIN));
        for socket in [&self.socket4, &self.socket6].into_iter().flatten() {
            items.push(socket.as_poll_item(zmq::POLLIN));
        }
        for monitor in &self.monitors {
            items.push(monitor.socket().as_poll_item(zmq::POLLIN));
        }
        zmq::poll(&mut items, -1)?;
        let mut next = 1;
        let mut readable = |present: bool| {
            if !present {
                return false;
            }
            next += 1;
            items[next - 1].is_readable()
        };
        let ready4 = readable(self.socket4.is_some());
        let ready6 = readable(self.socket6.is_some());
        let ready_monitors = self.monitors.iter().map(|_| readable(true)).collect();
        Ok((ready4, ready6, items[0].is_readable(), ready_monitors))
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
    fn send_outgoing(&self) {
        while let Ok(outgoing) = self.from_ledger.try_recv() {
            match outgoing {
                Outgoing::Reply { route, reply } => self.reply(&route, &reply),
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
            let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) else {
                break;
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let Some((route, body)) = split_route(family, frames) else {
                continue;
            };
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

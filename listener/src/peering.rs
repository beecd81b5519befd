//! The peering thread: the socket the other servers talk to, apart from the
//! clients.
//!
//! Each server binds one ROUTER at `listen.peering` (built by
//! `rota-sockets`, its frame limit `peering.max_message_bytes`); the other
//! servers' connectors connect their DEALERs to it, at the `peering` address
//! of its `[[servers]]` entry. It takes the server commands and the two
//! queries the connector sends, `D` and `B`, and refuses any other client
//! command with an `E` that names the client socket ([`Lane::on_peering`]);
//! the client sockets refuse the server commands the same way.
//!
//! This thread owns that socket, its monitor and its own signal pair, and
//! does only I/O, as the listener does for the clients: requests are read in
//! batches of up to [`crate::BATCH`], decoded, and put in their lane:
//! consensus messages in one, forwards, `D` and `B` in another
//! ([`crate::lane`]), each with its own budget, its own verifier thread and
//! its own channel to the ledger, which takes the consensus lane first. So
//! no client load, on the client sockets or forwarded by another server,
//! delays a round, a vote or a heartbeat. The ledger's answers come back on
//! a channel of their own, with a wake-up on [`PEERING_SIGNAL`].
//!
//! The socket is plain, like the client sockets: anyone who can reach it can
//! send to it, and only a message's signature tells a server from a
//! stranger. Until it is encrypted, reach it from the servers alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use rota_peer::wire::{Reply, Request};
use rota_sockets::{Signal, SignalReceiver};

use crate::lane::{Gone, Lane, LaneSender};
use crate::{
    BATCH, Error, Family, MAX_FRAMES, Outgoing, Refusal, Route, Stats, monitor, recv_bounded,
    split_route,
};

/// The inproc endpoint of the peering thread's signal pair.
pub const PEERING_SIGNAL: &str = "inproc://rota-peering-signal";

/// What the peering socket binds.
#[derive(Clone, Debug)]
pub struct PeeringConfig {
    pub chain: String,
    /// `listen.peering`.
    pub address: SocketAddr,
    /// `peering.max_message_bytes`.
    pub max_message_bytes: i64,
}

/// The two lanes the peering socket feeds.
pub struct PeeringLanes {
    pub consensus: LaneSender,
    pub bulk: LaneSender,
}

/// The peering thread's state. Build it with [`Peering::bind`], then run
/// [`Peering::run`] on its own thread.
pub struct Peering {
    chain: String,
    socket: zmq::Socket,
    monitor: monitor::Monitor,
    signal: SignalReceiver,
    lanes: PeeringLanes,
    from_ledger: Receiver<Outgoing>,
    stats: Arc<Stats>,
}

impl Peering {
    /// Binds the peering socket, its monitor and the signal pair. Fails (the
    /// address in use, say) before any thread starts.
    pub fn bind(
        ctx: &zmq::Context,
        config: PeeringConfig,
        lanes: PeeringLanes,
        from_ledger: Receiver<Outgoing>,
        stats: Arc<Stats>,
    ) -> Result<Peering, Error> {
        let socket = rota_sockets::peering_router(ctx, &config.address, config.max_message_bytes)
            .map_err(|source| Error::Peering {
            address: config.address,
            source,
        })?;
        let monitor =
            monitor::Monitor::attach(ctx, &socket, "peering").map_err(|source| Error::Monitor {
                name: "peering",
                source,
            })?;
        let signal = SignalReceiver::bind(ctx, PEERING_SIGNAL)?;
        log::info!("peering socket listening on {}", config.address);
        Ok(Peering {
            chain: config.chain,
            socket,
            monitor,
            signal,
            lanes,
            from_ledger,
            stats,
        })
    }

    /// The peering thread body. Owns the peering ROUTER, its monitor and the
    /// PULL end of [`PEERING_SIGNAL`]; sends decoded batches on its two
    /// lanes, takes the ledger's answers from `from_ledger` when woken.
    /// Returns on a `stop` signal or when the verifiers have gone.
    pub fn run(mut self) {
        loop {
            let mut items = [
                self.signal.socket().as_poll_item(zmq::POLLIN),
                self.socket.as_poll_item(zmq::POLLIN),
                self.monitor.socket().as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, -1) {
                log::error!("peering poll failed: {e}");
                return;
            }
            let [signal, socket, monitor] = items.map(|item| item.is_readable());
            if signal && self.signal.drain() == Some(Signal::Stop) {
                self.send_outgoing();
                log::debug!("peering thread stopping");
                return;
            }
            self.send_outgoing();
            if monitor {
                self.monitor.handle(&self.stats);
            }
            if socket && self.serve().is_err() {
                log::error!("the peering verifiers have gone; peering thread stopping");
                return;
            }
        }
    }

    /// Sends every answer the ledger has queued for the peering socket.
    fn send_outgoing(&mut self) {
        while let Ok(outgoing) = self.from_ledger.try_recv() {
            match outgoing {
                Outgoing::Reply { route, reply } => self.reply(&route, &reply),
                // A `D` or `B`: the body goes without a copy, shared with
                // every other reply that holds it.
                Outgoing::Large { route, head, body } => {
                    let more = zmq::DONTWAIT | zmq::SNDMORE;
                    let socket = &mut self.socket;
                    let sent = route
                        .envelope
                        .iter()
                        .chain(&head)
                        .try_for_each(|frame| socket.send(frame.as_slice(), more))
                        .and_then(|()| rota_sockets::large::send(socket, &body, zmq::DONTWAIT));
                    if let Err(e) = sent {
                        log::debug!("peering reply not sent: {e}");
                    }
                }
                // Events go out on the listener's PUB socket only.
                Outgoing::Publish { topic, .. } => {
                    log::debug!("event {topic} sent to the peering thread; dropped")
                }
            }
        }
    }

    fn reply(&self, route: &Route, reply: &Reply) {
        let frames = route.envelope.iter().cloned().chain(reply.encode());
        if let Err(e) = self.socket.send_multipart(frames, zmq::DONTWAIT) {
            log::debug!("peering reply not sent: {e}");
        }
    }

    fn refuse(&self, route: &Route, refusal: Refusal) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        log::debug!("refused on the peering socket: {refusal}");
        self.reply(route, &Reply::Error(refusal.to_string()));
    }

    /// Reads up to a batch of requests, decodes them, refuses those this
    /// socket does not take, and queues the rest in their lanes; what a
    /// lane has no room for is refused as busy.
    fn serve(&mut self) -> Result<(), Gone> {
        let mut consensus = Vec::new();
        let mut bulk = Vec::new();
        for _ in 0..BATCH {
            let Some((frames, count)) = recv_bounded(&self.socket) else {
                break;
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let Some((route, body)) = split_route(Family::Peering, frames) else {
                continue;
            };
            if count > MAX_FRAMES {
                let error = rota_peer::Error::Invalid(format!(
                    "a request has at most {} frames, got {}",
                    MAX_FRAMES - 2,
                    count - route.envelope.len()
                ));
                self.refuse(&route, Refusal::Malformed(error));
                continue;
            }
            let parts: Vec<&[u8]> = body.iter().map(|f| f.as_slice()).collect();
            let request = match Request::decode(&self.chain, &parts) {
                Ok(request) => request,
                Err(e) => {
                    self.refuse(&route, Refusal::Malformed(e));
                    continue;
                }
            };
            match Lane::on_peering(&request) {
                Ok(Lane::Consensus) => consensus.push((route, request)),
                // `on_peering` gives no request the client lane.
                Ok(Lane::Bulk | Lane::Client) => bulk.push((route, request)),
                Err(refusal) => self.refuse(&route, refusal),
            }
        }
        let over = self.lanes.consensus.queue(consensus)?;
        self.refuse_busy(over, "consensus");
        let over = self.lanes.bulk.queue(bulk)?;
        self.refuse_busy(over, "bulk");
        Ok(())
    }

    fn refuse_busy(&self, over: Vec<(Route, Request)>, lane: &str) {
        if over.is_empty() {
            return;
        }
        log::warn!(
            "peering {lane} lane full: refusing {} requests as busy",
            over.len()
        );
        for (route, _) in over {
            self.refuse(&route, Refusal::PeeringBusy);
        }
    }
}

//! rota-sockets: every ZeroMQ socket rota opens, built in one place.
//!
//! The listener and the connector each own sockets, but the options those
//! sockets carry (the largest message taken, how many messages queue before
//! a send fails, how long a closing socket keeps trying to deliver, whether
//! it speaks IPv6) and the `tcp://` endpoint they bind or connect to are
//! decided here, once:
//!
//! - [`client_router`]: a node's client socket, bound on one address, with
//!   the [`ClientLimits`] that bound what a client can make the node hold;
//! - [`peering_router`]: a node's peering socket, where the other servers'
//!   connectors send their messages;
//! - [`dealer`]: a connection to another server's peering socket,
//!   reconnecting on its own;
//! - [`publisher`]: the event socket, bound on every publish address;
//! - [`subscriber`]: an event watcher's socket;
//! - [`signal`]: the inproc pair ([`SignalReceiver`], [`Waker`]) that wakes
//!   or stops a thread that polls sockets;
//! - [`endpoint`]: the `tcp://` form of a socket address;
//! - [`large`]: large reply bodies sent without a copy and counted while
//!   libzmq holds them.
//!
//! Nothing here spawns a thread or reads a message: a socket is built, then
//! handed to the thread that owns it.

pub mod large;
pub mod signal;

use std::net::SocketAddr;

pub use signal::{Signal, SignalReceiver, Waker};

/// Messages the peering socket and the connector's DEALERs queue, each way
/// and per connection, before a send fails (or a peer is not read from).
/// Kept apart from the client sockets' queues (`limits.send_queue`,
/// `limits.receive_queue`) so that a choice made for clients does not
/// silently apply to the servers: a busy round's forwarded payments arrive
/// as one message each.
pub const PEERING_HIGH_WATER_MARK: i32 = 100_000;

/// Replies the peering socket queues for one connection before it drops
/// more. A server's connector has a few requests in flight (statuses, a
/// window of blocks); the bound is what a peer that asks for databases and
/// never reads can make this server hold, each a shared body.
pub const PEERING_SEND_QUEUE: i32 = 1_000;

/// How long a DEALER may keep trying to deliver its last messages when the
/// node stops.
pub const DEALER_LINGER_MS: i32 = 500;

/// First wait before a DEALER reconnects to a server that went away.
pub const RECONNECT_MS: i32 = 100;

/// Longest wait between a DEALER's reconnection attempts (the wait doubles
/// up to this).
pub const RECONNECT_MAX_MS: i32 = 2_000;

/// The ZeroMQ endpoint of a socket address: `tcp://1.2.3.4:5` or
/// `tcp://[::1]:5`.
pub fn endpoint(address: &SocketAddr) -> String {
    format!("tcp://{address}")
}

/// Binds `socket` on `address`, speaking IPv6 if the address is one.
pub fn bind(socket: &zmq::Socket, address: &SocketAddr) -> zmq::Result<()> {
    socket.set_ipv6(address.is_ipv6())?;
    socket.bind(&endpoint(address))
}

/// Connects `socket` to `address`, speaking IPv6 if the address is one.
pub fn connect(socket: &zmq::Socket, address: &SocketAddr) -> zmq::Result<()> {
    socket.set_ipv6(address.is_ipv6())?;
    socket.connect(&endpoint(address))
}

/// The ZAP domain of the client request sockets. Setting a domain makes
/// libzmq ask the ZAP handler (rota's connection limit, bound at
/// [`ZAP_ENDPOINT`] in the same context) before it completes a NULL-mechanism
/// handshake; sockets without a domain never ask.
pub const CLIENT_ZAP_DOMAIN: &str = "rota-clients";

/// Where libzmq looks for the ZAP handler of every socket in a context.
pub const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// TCP keepalive on client connections: a client whose host vanished
/// without closing (a laptop shut, a phone off the network) is found after
/// a minute's silence and three unanswered probes ten seconds apart, so
/// that it does not hold one of `limits.max_connections` for ever. A client
/// that is there answers the probes, idle or not.
pub const KEEPALIVE_IDLE_S: i32 = 60;
pub const KEEPALIVE_INTERVAL_S: i32 = 10;
pub const KEEPALIVE_PROBES: i32 = 3;

/// What one client connection may make the node hold, as socket options.
///
/// No ZMTP heartbeat (ZMQ_HEARTBEAT_IVL) is set, although libzmq's
/// heartbeat timeout is its only limit on a frame started and not
/// finished: in libzmq 4.3.4, a heartbeat on a connection whose peer reset
/// while the node had stopped reading it (its receive queue full) aborts
/// the process (`Assertion failed: !_io_error`, stream_engine_base.cpp:331:
/// `timer_event` calls `out_event` after `in_event` has set `_io_error`),
/// and a client can bring that about by flooding and resetting.
/// The conf's `listen.max_message_bytes` and `[limits]` fill it; the
/// reasons for each default are in docs/OPERATIONS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// ZMQ_MAXMSGSIZE: a frame over it drops the connection at its header,
    /// before libzmq allocates anything for it.
    pub max_message_bytes: i64,
    /// ZMQ_SNDHWM: replies queued per connection; more are dropped.
    pub send_queue: i32,
    /// ZMQ_RCVHWM: requests queued per connection; past it the connection
    /// is not read from until the listener catches up.
    pub receive_queue: i32,
    /// SO_SNDBUF (ZMQ_SNDBUF): the kernel's send buffer per connection,
    /// fixed rather than grown by the kernel (up to `net.ipv4.tcp_wmem`).
    pub tcp_send_buffer: i32,
    /// SO_RCVBUF (ZMQ_RCVBUF): the kernel's receive buffer per connection.
    /// It bounds the requests a client can have buffered unread, and so
    /// the backlog a flood leaves behind when its clients have gone.
    pub tcp_receive_buffer: i32,
    /// ZMQ_HANDSHAKE_IVL: a connection that has not finished its handshake
    /// by then is dropped.
    pub handshake_ms: i32,
}

/// A node's client socket, bound on `address`, with `limits` and the
/// client ZAP domain, so that each handshake passes the connection limit.
/// Nothing lingers on close, since replies to a node that is stopping are
/// not worth waiting for. The peering socket has none of these: it is for
/// the servers of the list, and has its own limits.
pub fn client_router(
    ctx: &zmq::Context,
    address: &SocketAddr,
    limits: &ClientLimits,
) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::ROUTER)?;
    socket.set_linger(0)?;
    socket.set_maxmsgsize(limits.max_message_bytes)?;
    socket.set_sndhwm(limits.send_queue)?;
    socket.set_rcvhwm(limits.receive_queue)?;
    socket.set_sndbuf(limits.tcp_send_buffer)?;
    socket.set_rcvbuf(limits.tcp_receive_buffer)?;
    socket.set_handshake_ivl(limits.handshake_ms)?;
    socket.set_tcp_keepalive(1)?;
    socket.set_tcp_keepalive_idle(KEEPALIVE_IDLE_S)?;
    socket.set_tcp_keepalive_intvl(KEEPALIVE_INTERVAL_S)?;
    socket.set_tcp_keepalive_cnt(KEEPALIVE_PROBES)?;
    socket.set_zap_domain(CLIENT_ZAP_DOMAIN)?;
    bind(&socket, address)?;
    Ok(socket)
}

/// A node's peering socket, bound on `address`: the other servers'
/// connectors send their signed messages, `D` and `B` here. Frames longer
/// than `max_message_bytes` (`peering.max_message_bytes`: a ROUND or a
/// pushed database must fit) drop the connection; nothing lingers on close.
pub fn peering_router(
    ctx: &zmq::Context,
    address: &SocketAddr,
    max_message_bytes: i64,
) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::ROUTER)?;
    socket.set_linger(0)?;
    socket.set_maxmsgsize(max_message_bytes)?;
    socket.set_rcvhwm(PEERING_HIGH_WATER_MARK)?;
    socket.set_sndhwm(PEERING_SEND_QUEUE)?;
    bind(&socket, address)?;
    Ok(socket)
}

/// A connection to another server's peering socket at `address`. It queues
/// only once the connection is up (`immediate`), so a message to a server
/// that is down fails at once instead of waiting; it reconnects with
/// backoff on its own, and lingers briefly on close so that a last RESULT
/// still goes out. Replies longer than `max_message_bytes` (a `D` reply
/// holds a whole database, as a push does) drop the connection.
pub fn dealer(
    ctx: &zmq::Context,
    address: &SocketAddr,
    max_message_bytes: i64,
) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(DEALER_LINGER_MS)?;
    socket.set_immediate(true)?;
    socket.set_maxmsgsize(max_message_bytes)?;
    socket.set_sndhwm(PEERING_HIGH_WATER_MARK)?;
    socket.set_rcvhwm(PEERING_HIGH_WATER_MARK)?;
    socket.set_reconnect_ivl(RECONNECT_MS)?;
    socket.set_reconnect_ivl_max(RECONNECT_MAX_MS)?;
    connect(&socket, address)?;
    Ok(socket)
}

/// The event socket, not yet bound: bind it on each publish address with
/// [`bind`], so that the caller can say which address failed. Events are
/// dropped rather than kept for a slow watcher, and none linger on close.
pub fn publisher(ctx: &zmq::Context) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::PUB)?;
    socket.set_linger(0)?;
    Ok(socket)
}

/// An event watcher's socket, subscribed to messages whose first frame
/// starts with `prefix` (a chain name). Connect it to each publisher with
/// [`connect`].
pub fn subscriber(ctx: &zmq::Context, prefix: &[u8]) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::SUB)?;
    socket.set_linger(0)?;
    socket.set_subscribe(prefix)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_bracket_ipv6_addresses() {
        let v4: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        assert_eq!(endpoint(&v4), "tcp://127.0.0.1:7000");
        assert_eq!(endpoint(&v6), "tcp://[::1]:7000");
    }
}

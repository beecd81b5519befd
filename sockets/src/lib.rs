//! rota-sockets: every ZeroMQ socket rota opens, built in one place.
//!
//! The listener and the connector each own sockets, but the options those
//! sockets carry (the largest message taken, how many messages queue before
//! a send fails, how long a closing socket keeps trying to deliver, whether
//! it speaks IPv6) and the `tcp://` endpoint they bind or connect to are
//! decided here, once:
//!
//! - [`router`]: a node's client socket, bound on one address;
//! - [`peering_router`]: a node's peering socket, where the other servers'
//!   connectors send their messages;
//! - [`dealer`]: a connection to another server's peering socket,
//!   reconnecting on its own;
//! - [`publisher`]: the event socket, bound on every publish address;
//! - [`subscriber`]: an event watcher's socket;
//! - [`signal`]: the inproc pair ([`SignalReceiver`], [`Waker`]) that wakes
//!   or stops a thread that polls sockets;
//! - [`endpoint`]: the `tcp://` form of a socket address.
//!
//! Nothing here spawns a thread or reads a message: a socket is built, then
//! handed to the thread that owns it.

pub mod signal;

use std::net::SocketAddr;

pub use signal::{Signal, SignalReceiver, Waker};

/// Messages a client socket queues, each way and per connection, before a
/// send fails (or a peer is not read from).
pub const HIGH_WATER_MARK: i32 = 100_000;

/// Messages the peering socket and the connector's DEALERs queue, each way
/// and per connection, before a send fails (or a peer is not read from).
/// Kept apart from the client sockets' mark so that a choice made for
/// clients does not silently apply to the servers: a busy round's forwarded
/// payments arrive as one message each.
pub const PEERING_HIGH_WATER_MARK: i32 = 100_000;

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

/// A node's client socket, bound on `address`. Frames longer than
/// `max_message_bytes` drop the connection, so a client cannot make the node
/// allocate without limit; nothing lingers on close, since replies to a node
/// that is stopping are not worth waiting for.
pub fn router(
    ctx: &zmq::Context,
    address: &SocketAddr,
    max_message_bytes: i64,
) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::ROUTER)?;
    socket.set_linger(0)?;
    socket.set_maxmsgsize(max_message_bytes)?;
    socket.set_rcvhwm(HIGH_WATER_MARK)?;
    socket.set_sndhwm(HIGH_WATER_MARK)?;
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
    socket.set_sndhwm(PEERING_HIGH_WATER_MARK)?;
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

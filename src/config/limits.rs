//! The `[limits]` section, and the range of `listen.max_message_bytes`:
//! what clients can make a server hold or do on its client request
//! sockets. Every default and range is here, with the reason for it;
//! docs/OPERATIONS.md ("Limits and memory") adds them up into the
//! server's worst-case memory.

use serde::{Deserialize, Serialize};

use super::bad;
use crate::error::Result;

/// Bounds on what clients can make a server hold or do, on the client
/// request sockets (`listen.ipv4`, `listen.ipv6`). Each default is chosen,
/// and its memory cost worked out, in docs/OPERATIONS.md ("Limits and
/// memory"); [`Limits::validate`] keeps each within [`LIMIT_RANGES`].
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Client connections open at once, both request sockets together,
    /// counting those still in their handshake. A handshake beyond it is
    /// refused (ZAP status 400).
    pub max_connections: u64,
    /// Replies queued for one connection (ZMQ_SNDHWM, in messages); more
    /// are dropped. A client keeps at most half of it in flight.
    pub send_queue: i32,
    /// Requests queued from one connection before the node stops reading
    /// it (ZMQ_RCVHWM, in messages); nothing is dropped.
    pub receive_queue: i32,
    /// The kernel's send buffer for each client connection (SO_SNDBUF),
    /// in bytes: replies written but not yet read by the client.
    pub tcp_send_buffer: i32,
    /// The kernel's receive buffer for each client connection (SO_RCVBUF),
    /// in bytes: requests sent but not yet read by the node.
    pub tcp_receive_buffer: i32,
    /// Time for a new connection to finish the ZeroMQ handshake
    /// (ZMQ_HANDSHAKE_IVL).
    pub handshake_ms: i32,
    /// Bytes of large reply bodies (`D`, `B`) held at once, in queues or
    /// being sent; past it they are refused as busy.
    pub large_reply_bytes: u64,
    /// Bytes of large replies (`D`, `B`) sent per second, on average; past
    /// it they are refused as busy.
    pub large_reply_bytes_per_s: u64,
}

/// A key's default and the range `validate` allows.
#[derive(Clone, Copy, Debug)]
pub struct Range<T> {
    pub default: T,
    pub min: T,
    pub max: T,
}

/// `listen.max_message_bytes`. The largest client frame is a `T`'s 140
/// bytes; the ZeroMQ handshake's READY command (socket type and an identity
/// of up to 255 bytes) must fit too, hence the floor of 512. The default
/// leaves room for either to grow; the ceiling keeps the per-connection
/// memory figure of docs/OPERATIONS.md small, since libzmq allocates a frame
/// of up to this size as soon as its header arrives.
pub const MESSAGE_BYTES: Range<i64> = Range {
    default: 1024,
    min: 512,
    max: 64 * 1024,
};

/// The defaults and ranges of `[limits]`, in one place; docs/OPERATIONS.md
/// explains each choice and gives the memory they add up to.
pub struct LimitRanges {
    pub max_connections: Range<u64>,
    pub send_queue: Range<i32>,
    pub receive_queue: Range<i32>,
    pub tcp_send_buffer: Range<i32>,
    pub tcp_receive_buffer: Range<i32>,
    pub handshake_ms: Range<i32>,
    pub large_reply_bytes: Range<u64>,
    pub large_reply_bytes_per_s: Range<u64>,
}

const MIB: u64 = 1024 * 1024;

pub const LIMIT_RANGES: LimitRanges = LimitRanges {
    // Enough for a community's wallets and watchers at once (the rota
    // client opens one connection per call and closes it).
    max_connections: Range {
        default: 256,
        min: 1,
        max: 65_536,
    },
    // A well-behaved client has one request in flight; 256 lets a
    // pipelining client keep 128 (libzmq may count up to half the queue as
    // unread after it has gone out).
    send_queue: Range {
        default: 256,
        min: 2,
        max: 100_000,
    },
    // Reading stops, not drops, past it, so it can be small: a queued
    // request can hold libzmq's whole 18 KiB receive buffer.
    receive_queue: Range {
        default: 32,
        min: 1,
        max: 100_000,
    },
    // Fixed, not grown by the kernel up to net.ipv4.tcp_wmem (4 MiB): a
    // client that stops reading holds this much, and a 28 MB block still
    // goes out at 5 MB/s over a 50 ms round trip.
    tcp_send_buffer: Range {
        default: 256 * 1024,
        min: 4 * 1024,
        max: 16 * 1024 * 1024,
    },
    // Requests are tiny: 64 KiB holds hundreds. Left to the kernel it grows
    // to net.ipv4.tcp_rmem (up to 32 MiB here), and a flood left behind
    // millions of requests to work through after its clients had gone.
    tcp_receive_buffer: Range {
        default: 64 * 1024,
        min: 4 * 1024,
        max: 16 * 1024 * 1024,
    },
    // The handshake is two round trips; 5 s is generous on any link.
    handshake_ms: Range {
        default: 5_000,
        min: 100,
        max: 60_000,
    },
    // A database of a million accounts (36 MB) and a full block (28 MB).
    large_reply_bytes: Range {
        default: 64 * MIB,
        min: MIB,
        max: 1 << 40,
    },
    // A quarter of a gigabit link, leaving the node's I/O thread and the
    // ledger thread free for rounds.
    large_reply_bytes_per_s: Range {
        default: 32 * MIB,
        min: 64 * 1024,
        max: 1 << 40,
    },
};

impl Default for Limits {
    fn default() -> Limits {
        let r = &LIMIT_RANGES;
        Limits {
            max_connections: r.max_connections.default,
            send_queue: r.send_queue.default,
            receive_queue: r.receive_queue.default,
            tcp_send_buffer: r.tcp_send_buffer.default,
            tcp_receive_buffer: r.tcp_receive_buffer.default,
            handshake_ms: r.handshake_ms.default,
            large_reply_bytes: r.large_reply_bytes.default,
            large_reply_bytes_per_s: r.large_reply_bytes_per_s.default,
        }
    }
}

impl Limits {
    /// Checks every key against its range in [`LIMIT_RANGES`].
    pub fn validate(&self) -> Result<()> {
        let (l, r) = (self, &LIMIT_RANGES);
        in_range(
            "limits.max_connections",
            l.max_connections,
            r.max_connections,
        )?;
        in_range("limits.send_queue", l.send_queue, r.send_queue)?;
        in_range("limits.receive_queue", l.receive_queue, r.receive_queue)?;
        in_range(
            "limits.tcp_send_buffer",
            l.tcp_send_buffer,
            r.tcp_send_buffer,
        )?;
        in_range(
            "limits.tcp_receive_buffer",
            l.tcp_receive_buffer,
            r.tcp_receive_buffer,
        )?;
        in_range("limits.handshake_ms", l.handshake_ms, r.handshake_ms)?;
        in_range(
            "limits.large_reply_bytes",
            l.large_reply_bytes,
            r.large_reply_bytes,
        )?;
        in_range(
            "limits.large_reply_bytes_per_s",
            l.large_reply_bytes_per_s,
            r.large_reply_bytes_per_s,
        )
    }
}

/// Checks that `value` is within `range`, naming `key` and the range.
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    range: Range<T>,
) -> Result<()> {
    if value < range.min || value > range.max {
        return Err(bad(
            key,
            format!(
                "{value} is out of range; allowed {} to {} (default {})",
                range.min, range.max, range.default
            ),
        ));
    }
    Ok(())
}

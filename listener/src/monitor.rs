//! Socket monitors: an inproc PAIR socket per monitored socket, reporting
//! accepted and closed connections. The listener logs them and keeps counts
//! that `I` reports.

use std::sync::atomic::{AtomicU64, Ordering};

/// Connection counts kept by the listener, read by the ledger for `I`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Requests received since start.
    pub requests: AtomicU64,
    /// Requests refused at the door (malformed, bad signature, busy).
    pub refused: AtomicU64,
}

/// A monitor reading one socket's events.
pub struct Monitor {
    socket: zmq::Socket,
    name: &'static str,
}

impl Monitor {
    /// Starts monitoring `target` for accepted and closed connections.
    pub fn attach(
        ctx: &zmq::Context,
        target: &zmq::Socket,
        name: &'static str,
    ) -> zmq::Result<Monitor> {
        let endpoint = format!("inproc://rota-monitor-{name}-{:p}", target);
        let events = zmq::SocketEvent::ACCEPTED.to_raw() | zmq::SocketEvent::DISCONNECTED.to_raw();
        target.monitor(&endpoint, events as i32)?;
        let socket = ctx.socket(zmq::PAIR)?;
        socket.set_linger(0)?;
        socket.connect(&endpoint)?;
        Ok(Monitor { socket, name })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Reads every waiting event, logging it and updating `stats`; returns
    /// how many connections closed.
    pub fn handle(&self, stats: &Stats) -> usize {
        let mut closed = 0;
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let [event, address, ..] = frames.as_slice() else {
                continue;
            };
            if event.len() < 2 {
                continue;
            }
            let id = u16::from_ne_bytes([event[0], event[1]]);
            let address = String::from_utf8_lossy(address);
            match zmq::SocketEvent::from_raw(id) {
                zmq::SocketEvent::ACCEPTED => {
                    let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "{}: accepted a connection on {address} ({open} open)",
                        self.name
                    );
                }
                zmq::SocketEvent::DISCONNECTED => {
                    closed += 1;
                    let open = stats
                        .open
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            Some(n.saturating_sub(1))
                        })
                        .unwrap_or(1)
                        .saturating_sub(1);
                    log::info!(
                        "{}: a connection on {address} closed ({open} open)",
                        self.name
                    );
                }
                other => log::debug!("{}: socket event {other:?} on {address}", self.name),
            }
        }
        closed
    }
}

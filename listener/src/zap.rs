//! The limit on open client connections, kept at the ZeroMQ handshake.
//!
//! libzmq has no option that limits how many connections a socket accepts.
//! It does ask a ZAP handler (ZeroMQ RFC 27) before it completes a
//! handshake on a socket that has a ZAP domain, even with the NULL
//! mechanism rota uses (`null_mechanism_t::next_handshake_command` sends the
//! request when `zap_domain` is set and a handler is bound at
//! `inproc://zeromq.zap.01` in the socket's context). The client request
//! sockets have that domain ([`rota_sockets::CLIENT_ZAP_DOMAIN`]), and the
//! [`Gate`] is the handler: a REP socket polled by the listener thread,
//! which admits a handshake while the connections open, as the socket
//! monitors count them, are within the limit, and refuses it (status 400)
//! otherwise. A refused client's libzmq reports `HANDSHAKE_FAILED_AUTH`
//! with status 400 on its monitor; the node sends it nothing else.
//!
//! The monitor reports a connection as accepted before its handshake
//! starts, so the count the gate reads includes the connection asking. It
//! also includes connections still handshaking, and refused ones until
//! their close is reported: under a burst of connections the gate errs
//! towards refusing. Sockets without the domain (server connections,
//! the event publisher) never ask the gate.

use std::sync::atomic::Ordering;

use crate::Stats;

/// The ZAP version rota speaks (RFC 27).
const VERSION: &[u8] = b"1.0";

/// The ZAP handler. Bind it before the client sockets take connections.
pub struct Gate {
    socket: zmq::Socket,
    max_connections: u64,
    /// Whether the last handshake was refused, so that reaching and leaving
    /// the limit are each logged once.
    full: bool,
}

/// What the gate says to one handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Too many connections open.
    Refuse,
    /// A request rota does not understand (never sent by libzmq 4.3).
    Malformed,
}

impl Gate {
    /// Binds the handler at [`rota_sockets::ZAP_ENDPOINT`] in `ctx`.
    pub fn bind(ctx: &zmq::Context, max_connections: u64) -> zmq::Result<Gate> {
        let socket = ctx.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(rota_sockets::ZAP_ENDPOINT)?;
        Ok(Gate {
            socket,
            max_connections,
            full: false,
        })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Answers every waiting handshake. Call it after the monitors' events
    /// have been read, so that `stats.open` counts the connections asking.
    pub fn handle(&mut self, stats: &Stats) {
        while let Ok(request) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let open = stats.open.load(Ordering::Relaxed);
            let verdict = judge(&request, open, self.max_connections);
            self.log(verdict, open, &request);
            if let Err(e) = self
                .socket
                .send_multipart(reply(&request, verdict), zmq::DONTWAIT)
            {
                log::warn!("connection limit: a ZAP reply was not sent: {e}");
            }
        }
    }

    fn log(&mut self, verdict: Verdict, open: u64, request: &[Vec<u8>]) {
        let address = request
            .get(3)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        match verdict {
            Verdict::Admit if self.full => {
                self.full = false;
                log::info!(
                    "client connections within the limit again ({open} open of {})",
                    self.max_connections
                );
            }
            Verdict::Admit => {}
            Verdict::Refuse => {
                if !self.full {
                    self.full = true;
                    log::warn!(
                        "client connection limit reached ({} open, limits.max_connections = {}): \
                         refusing new handshakes",
                        open - 1,
                        self.max_connections
                    );
                }
                log::debug!("refused a handshake from {address}: {open} connections open");
            }
            Verdict::Malformed => log::warn!("a malformed ZAP request was refused"),
        }
    }
}

/// The verdict on one ZAP request: `open` counts the asking connection.
pub fn judge(request: &[Vec<u8>], open: u64, max_connections: u64) -> Verdict {
    if request.len() < 6 || request[0] != VERSION {
        Verdict::Malformed
    } else if open <= max_connections {
        Verdict::Admit
    } else {
        Verdict::Refuse
    }
}

/// The ZAP reply frames (after the delimiter, which REP adds): version,
/// request id, status code and text, user id and metadata, both empty.
pub fn reply(request: &[Vec<u8>], verdict: Verdict) -> Vec<Vec<u8>> {
    let id = request.get(1).cloned().unwrap_or_default();
    let (code, text): (&[u8], &[u8]) = match verdict {
        Verdict::Admit => (b"200", b"OK"),
        Verdict::Refuse => (b"400", b"too many connections"),
        Verdict::Malformed => (b"500", b"malformed ZAP request"),
    };
    vec![
        VERSION.to_vec(),
        id,
        code.to_vec(),
        text.to_vec(),
        Vec::new(),
        Vec::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Monitor;
    use std::time::{Duration, Instant};

    fn request(id: &[u8]) -> Vec<Vec<u8>> {
        [
            b"1.0" as &[u8],
            id,
            b"rota-clients",
            b"127.0.0.1",
            b"",
            b"NULL",
        ]
        .iter()
        .map(|f| f.to_vec())
        .collect()
    }

    #[test]
    fn a_handshake_is_admitted_up_to_the_limit_counting_itself() {
        assert_eq!(judge(&request(b"1"), 1, 2), Verdict::Admit);
        assert_eq!(judge(&request(b"1"), 2, 2), Verdict::Admit);
        assert_eq!(judge(&request(b"1"), 3, 2), Verdict::Refuse);
        assert_eq!(judge(&request(b"1")[..5], 1, 2), Verdict::Malformed);
        let reply = reply(&request(b"7"), Verdict::Refuse);
        assert_eq!(
            reply[..3],
            [b"1.0".to_vec(), b"7".to_vec(), b"400".to_vec()]
        );
        assert_eq!(reply.len(), 6);
    }

    /// Polls the node side (monitor, then gate) until `done` holds.
    fn run_until(
        monitor: &Monitor,
        gate: &mut Gate,
        stats: &Stats,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            monitor.handle(stats);
            gate.handle(stats);
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The client's own monitor reports a refusal at the handshake as
    /// `HANDSHAKE_FAILED_AUTH` with the ZAP status code.
    fn refused_at_handshake(events: &zmq::Socket) -> bool {
        while let Ok(frames) = events.recv_multipart(zmq::DONTWAIT) {
            let event = &frames[0];
            let id = u16::from_ne_bytes([event[0], event[1]]);
            let value = u32::from_ne_bytes([event[2], event[3], event[4], event[5]]);
            if zmq::SocketEvent::from_raw(id) == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH {
                return value == 400;
            }
        }
        false
    }

    #[test]
    fn libzmq_asks_the_gate_and_a_connection_over_the_limit_is_refused() {
        let ctx = zmq::Context::new();
        let stats = Stats::default();
        let mut gate = Gate::bind(&ctx, 1).unwrap();
        let limits = rota_sockets::ClientLimits {
            max_message_bytes: 1024,
            send_queue: 16,
            receive_queue: 16,
            tcp_send_buffer: 65_536,
            tcp_receive_buffer: 65_536,
            handshake_ms: 2_000,
        };
        let address = "127.0.0.1:0".parse().unwrap();
        let router = rota_sockets::client_router(&ctx, &address, &limits).unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let monitor = Monitor::attach(&ctx, &router, "test").unwrap();

        let first = ctx.socket(zmq::DEALER).unwrap();
        first.set_linger(0).unwrap();
        first.connect(&endpoint).unwrap();
        first.send_multipart([b"chain" as &[u8], b"I"], 0).unwrap();
        let got_request = run_until(&monitor, &mut gate, &stats, || {
            router.poll(zmq::POLLIN, 0).unwrap_or(0) > 0
        });
        assert!(got_request, "the first client is admitted");
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);

        let second = ctx.socket(zmq::DEALER).unwrap();
        second.set_linger(0).unwrap();
        second
            .monitor(
                "inproc://rota-zap-test-client",
                zmq::SocketEvent::ALL as i32,
            )
            .unwrap();
        let events = ctx.socket(zmq::PAIR).unwrap();
        events.connect("inproc://rota-zap-test-client").unwrap();
        second.connect(&endpoint).unwrap();
        let refused = run_until(&monitor, &mut gate, &stats, || {
            refused_at_handshake(&events)
        });
        assert!(refused, "the second client is refused with status 400");
    }
}

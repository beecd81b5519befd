//! The inproc signal pair: one PULL socket owned by a polling thread, and a
//! PUSH [`Waker`] for each other thread that must wake it. ZeroMQ sockets are
//! not thread-safe, so every waking thread connects its own PUSH socket to
//! the same inproc endpoint.
//!
//! A signal is one frame: `wake` (look at your channels) or `stop`.

/// What a signal asks of the polling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Wake,
    Stop,
}

const WAKE: &[u8] = b"wake";
const STOP: &[u8] = b"stop";

/// The receiving end, bound by the thread that polls it.
pub struct SignalReceiver {
    socket: zmq::Socket,
}

impl SignalReceiver {
    /// Binds the PULL end at `endpoint` (an `inproc://` address).
    pub fn bind(ctx: &zmq::Context, endpoint: &str) -> zmq::Result<SignalReceiver> {
        let socket = ctx.socket(zmq::PULL)?;
        socket.set_linger(0)?;
        socket.bind(endpoint)?;
        Ok(SignalReceiver { socket })
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Reads every signal waiting, without blocking; `Stop` wins over `Wake`.
    pub fn drain(&self) -> Option<Signal> {
        let mut seen = None;
        while let Ok(frame) = self.socket.recv_bytes(zmq::DONTWAIT) {
            if frame == STOP {
                seen = Some(Signal::Stop);
            } else if seen.is_none() {
                seen = Some(Signal::Wake);
            }
        }
        seen
    }
}

/// A sending end, owned by one thread.
pub struct Waker {
    socket: zmq::Socket,
}

impl Waker {
    /// Connects a PUSH socket to the signal endpoint. Connecting before the
    /// receiver binds is allowed for inproc.
    pub fn connect(ctx: &zmq::Context, endpoint: &str) -> zmq::Result<Waker> {
        let socket = ctx.socket(zmq::PUSH)?;
        socket.set_linger(0)?;
        socket.set_sndhwm(16)?;
        socket.connect(endpoint)?;
        Ok(Waker { socket })
    }

    /// Asks the polling thread to look at its channels. Never blocks: when
    /// the queue is full a wake-up is already waiting.
    pub fn wake(&self) {
        let _ = self.socket.send(WAKE, zmq::DONTWAIT);
    }

    /// Asks the polling thread to stop. Blocks until the signal is queued.
    pub fn stop(&self) {
        if let Err(e) = self.socket.send(STOP, 0) {
            log::error!("could not send the stop signal: {e}");
        }
    }
}

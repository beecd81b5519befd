//! The `round` events the servers publish, collected by one SUB thread, and
//! the latencies read from them: each event carries the publishing server's
//! clock (`time_ms`), which is this machine's clock, so a round's close by
//! the schedule and its commit at a server can be subtracted directly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rota_peer::{Millis, ServerId, Slot};

use super::network::Network;
use crate::config::{Config, endpoint};
use crate::error::Result;
use crate::events::{Event, Published};

/// One server's word on one round.
struct RoundEvent {
    server: ServerId,
    slot: Slot,
    time_ms: Millis,
    outcome: String,
}

/// The round events received so far; the thread stops when this is dropped.
pub struct Rounds {
    seen: Arc<Mutex<Vec<RoundEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// When a round was decided, in ms after its close by the schedule.
pub struct Decided {
    pub slot: Slot,
    /// At its alpha, which closed it.
    pub to_alpha: u64,
    /// At the last of the servers up.
    pub to_all: u64,
    /// consensus, no-majority or out-of-sync, as the beta published it.
    pub outcome: String,
}

impl Rounds {
    /// Subscribes to every server's events and starts collecting.
    pub fn subscribe(config: &Config) -> Result<Rounds> {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_subscribe(config.chain.as_bytes())?;
        for id in config.server_list().ids() {
            if let Some(address) = config.server_publish(id) {
                socket.connect(&endpoint(&address))?;
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopped) = (seen.clone(), stop.clone());
        let thread = thread::spawn(move || collect(ctx, socket, &into, &stopped));
        Ok(Rounds {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// Each server's time and outcome for round `slot`, as far as seen.
    fn of(&self, slot: Slot) -> HashMap<ServerId, (Millis, String)> {
        self.seen
            .lock()
            .expect("round events lock")
            .iter()
            .filter(|e| e.slot == slot)
            .map(|e| (e.server, (e.time_ms, e.outcome.clone())))
            .collect()
    }

    /// Whether every server in `servers` has published round `slot`.
    pub fn seen_at(&self, slot: Slot, servers: &[u32]) -> bool {
        let seen = self.of(slot);
        servers.iter().all(|id| seen.contains_key(&ServerId(*id)))
    }

    /// Waits (up to three slots) for round `slot` on all three servers and
    /// reads when it was decided.
    pub fn decided(&self, net: &Network, slot: Slot) -> Result<Decided> {
        self.decided_by(net, slot, &[1, 2, 3])
    }

    /// Waits (up to three slots) for round `slot` on `servers` and reads when
    /// it was decided.
    pub fn decided_by(&self, net: &Network, slot: Slot, servers: &[u32]) -> Result<Decided> {
        let schedule = net.client.schedule();
        net.wait_for(
            "a round committed on the servers up",
            Duration::from_millis(3 * schedule.slot_ms),
            || self.seen_at(slot, servers),
        )?;
        let seen = self.of(slot);
        let close = schedule.close(slot);
        let (at_beta, outcome) = seen[&schedule.alpha(slot)].clone();
        let everywhere = seen.values().map(|(t, _)| *t).max().unwrap_or(0);
        Ok(Decided {
            slot,
            to_alpha: at_beta.saturating_sub(close),
            to_all: everywhere.saturating_sub(close),
            outcome,
        })
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The SUB thread body: owns the socket (and its context) and appends each
/// `round` event to `seen` until `stop` is set.
fn collect(
    _ctx: zmq::Context,
    socket: zmq::Socket,
    seen: &Mutex<Vec<RoundEvent>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if socket.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
            continue;
        }
        while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
            let [_, topic, body] = frames.as_slice() else {
                continue;
            };
            let Some(Published {
                server,
                time_ms,
                event: Event::Round { slot, outcome, .. },
            }) = Published::decode("round", body).filter(|_| topic.as_slice() == b"round")
            else {
                continue;
            };
            seen.lock().expect("round events lock").push(RoundEvent {
                server,
                slot,
                time_ms,
                outcome: outcome.name().to_string(),
            });
        }
    }
}

//! A client flood: threads that ask one server for `I` and `D` as fast as it
//! answers, reading every reply, for as long as a loaded round runs. The
//! bench compares the round's latency under the flood with the same figure
//! without it: server traffic travels apart from client traffic, so a flood
//! should cost a round little.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use rota_peer::wire::{Reply, Request};

use crate::config::endpoint;
use crate::error::Result;

/// How long a flood client waits for one reply before it sends the next
/// request anyway.
const REPLY_WAIT_MS: i64 = 1_000;

/// The flood's counts, shared by its threads.
#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    busy: AtomicU64,
    unanswered: AtomicU64,
}

/// A running flood; [`Flood::stop`] ends it and returns its counts.
pub struct Flood {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

/// What a flood did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flooded {
    pub clients: usize,
    pub answered: u64,
    pub busy: u64,
    pub unanswered: u64,
}

impl Flood {
    /// Starts `clients` threads flooding `address` with `I` and `D`.
    pub fn start(chain: &str, address: SocketAddr, clients: usize) -> Result<Flood> {
        let ctx = zmq::Context::new();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut threads = Vec::with_capacity(clients);
        for i in 0..clients {
            let socket = ctx.socket(zmq::DEALER)?;
            socket.set_linger(0)?;
            socket.connect(&endpoint(&address))?;
            let (stop, counts) = (stop.clone(), counts.clone());
            let chain = chain.to_string();
            // Half the clients ask for the database, half for info.
            let request = if i % 2 == 0 {
                Request::Database
            } else {
                Request::Info
            };
            threads.push(thread::spawn(move || {
                flood(&socket, &request.encode(&chain), &stop, &counts)
            }));
        }
        Ok(Flood {
            stop,
            counts,
            threads,
        })
    }

    /// Stops the flood and returns what it did.
    pub fn stop(self) -> Flooded {
        self.stop.store(true, Ordering::Relaxed);
        let clients = self.threads.len();
        for thread in self.threads {
            let _ = thread.join();
        }
        Flooded {
            clients,
            answered: self.counts.answered.load(Ordering::Relaxed),
            busy: self.counts.busy.load(Ordering::Relaxed),
            unanswered: self.counts.unanswered.load(Ordering::Relaxed),
        }
    }
}

/// One flood client: a request, its reply, again, until told to stop.
fn flood(socket: &zmq::Socket, request: &[Vec<u8>], stop: &AtomicBool, counts: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        if socket.send_multipart(request, 0).is_err() {
            return;
        }
        if socket.poll(zmq::POLLIN, REPLY_WAIT_MS).unwrap_or(0) == 0 {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(frames) = socket.recv_multipart(0) else {
            return;
        };
        let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let counter = match Reply::decode(&parts) {
            Ok(Reply::Error(_)) => &counts.busy,
            _ => &counts.answered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

//! The load `rota bench` sends, and the limit it is measured against.
//!
//! A loaded round is pre-signed before its slot opens (signing is not
//! timed), and sent from the slot's opening over pipelined DEALER sockets
//! connected beforehand (connection set-up is not timed either); it is timed
//! from the first payment sent to the last reply. The limit is the raw
//! single-core batched verify rate, measured in process.

use std::thread;
use std::time::{Duration, Instant};

use rota_peer::schedule::{Schedule, unix_now_ms};
use rota_peer::transaction::{SIGNED_LEN, Transaction};
use rota_peer::{Hash, Millis, PublicKey, ServerId};

use super::{filler, payer};
use crate::config::{Config, endpoint};
use crate::error::Result;
use crate::testnet;

/// Requests one sender keeps in flight: half the node's send queue per
/// connection (`limits.send_queue`), as docs/PROTOCOL.md §3.3 asks of a
/// pipelining client, or replies are dropped.
const WINDOW: usize = crate::config::LIMIT_RANGES.send_queue.default as usize / 2;

/// The raw single-core batched verify rate: the node's own ZIP 215 batch
/// check ([`rota_peer::signature::Batch`]) over batches of 1024 payments
/// from `payers` payers, as the load's are, the signed messages built
/// beforehand. A batch decompresses each distinct key it holds once, so
/// the fewer the payers the higher the rate: the limit is measured with
/// the load's own.
pub fn raw_batched_verify_rate(within: Duration, payers: usize) -> f64 {
    const BATCH: usize = 1024;
    let checks: Vec<([u8; 32], Vec<u8>, [u8; 64])> = (0..BATCH)
        .map(|i| {
            let tx = Transaction::sign(
                testnet::CHAIN,
                &payer(i % payers.max(1)),
                filler(i),
                1,
                i as u64,
            );
            let signature = tx.bytes()[SIGNED_LEN..].try_into().expect("64 bytes");
            (tx.payer().0, tx.signed_message(testnet::CHAIN), signature)
        })
        .collect();
    let start = Instant::now();
    let mut verified = 0usize;
    while start.elapsed() < within {
        let mut batch = rota_peer::signature::Batch::new();
        for (key, message, signature) in &checks {
            batch.queue(key, message, signature);
        }
        assert!(batch.verify(), "a valid batch");
        verified += BATCH;
    }
    verified as f64 / start.elapsed().as_secs_f64()
}

/// Pre-signed payments for one round: payer `i mod payers` pays 1 to a new
/// account, all stamped `at`. The new accounts' keys are hashes, spread
/// over the key space as real public keys are (keys sharing their first
/// bytes would all fall in one bucket of the balance tree and measure
/// that bucket's inserts instead).
fn presign(count: usize, payers: usize, at: Millis, round: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut input = b"rota bench payee ".to_vec();
            input.extend_from_slice(&round.to_be_bytes());
            input.extend_from_slice(&(i as u64).to_be_bytes());
            let payee = PublicKey(Hash::of(&input).0);
            Transaction::sign(testnet::CHAIN, &payer(i % payers), payee, 1, at)
                .bytes()
                .to_vec()
        })
        .collect()
}

/// What one sender saw.
#[derive(Default)]
struct Sent {
    accepted: usize,
    refused: usize,
    first_refusal: Option<String>,
    first_send: Option<Instant>,
    last_reply: Option<Instant>,
}

/// A DEALER for the load, connected before the measured window opens so
/// that connection set-up is not timed.
fn dealer(ctx: &zmq::Context, address: &str) -> Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.set_sndhwm(0)?;
    socket.set_rcvhwm(0)?;
    socket.connect(address)?;
    Ok(socket)
}

/// Sends `payments` over one DEALER, keeping up to [`WINDOW`] requests in
/// flight, until every reply is in or `deadline` passes.
fn send_pipelined(
    socket: zmq::Socket,
    chain: &str,
    payments: &[Vec<u8>],
    deadline: Instant,
) -> Result<Sent> {
    let mut sent = 0;
    let mut result = Sent::default();
    while result.accepted + result.refused < payments.len() && Instant::now() < deadline {
        while sent < payments.len() && sent - (result.accepted + result.refused) < WINDOW {
            socket.send_multipart([chain.as_bytes(), b"T", &payments[sent]], 0)?;
            result.first_send.get_or_insert_with(Instant::now);
            sent += 1;
        }
        if socket.poll(zmq::POLLIN, 100)? == 0 {
            continue;
        }
        while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
            result.last_reply = Some(Instant::now());
            if frames.first().map(Vec::as_slice) == Some(b"T") {
                result.accepted += 1;
            } else {
                result.refused += 1;
                if result.first_refusal.is_none() {
                    result.first_refusal = frames
                        .get(1)
                        .map(|m| String::from_utf8_lossy(m).into_owned());
                }
            }
        }
    }
    Ok(result)
}

/// One loaded round.
pub struct Load {
    pub slot: u64,
    pub accepted: usize,
    pub refused: usize,
    pub first_refusal: Option<String>,
    /// From the first payment sent to the last reply received.
    pub seconds: f64,
}

impl Load {
    /// Payments accepted per second.
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.seconds
    }
}

/// Pre-signs `count` payments for the first slot of `alpha` opening after
/// `after`, and sends them from the slot's opening over `connections`
/// pipelined DEALERs connected beforehand.
pub fn load_round(
    client: &Config,
    alpha: ServerId,
    after: Millis,
    count: usize,
    connections: usize,
    payers: usize,
) -> Result<Load> {
    let schedule = client.schedule();
    let slot = next_slot_of(&schedule, alpha, after);
    let opens = schedule.start(slot);
    let payments = presign(count, payers, opens + schedule.tolerance_ms / 2, slot);
    let ctx = zmq::Context::new();
    let address = endpoint(&client.server_address(alpha));
    let sockets = (0..connections.max(1))
        .map(|_| dealer(&ctx, &address))
        .collect::<Result<Vec<_>>>()?;
    sleep_until(opens + 20);
    let deadline =
        Instant::now() + Duration::from_millis(schedule.slot_ms - schedule.blackout_ms - 100);
    let share = count.div_ceil(sockets.len()).max(1);
    let chain = &client.chain;
    let results: Vec<Result<Sent>> = thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .into_iter()
            .zip(payments.chunks(share))
            .map(|(socket, chunk)| {
                scope.spawn(move || send_pipelined(socket, chain, chunk, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender thread"))
            .collect()
    });
    let results: Vec<Sent> = results.into_iter().collect::<Result<_>>()?;
    let first = results.iter().filter_map(|r| r.first_send).min();
    let last = results.iter().filter_map(|r| r.last_reply).max();
    Ok(Load {
        slot,
        accepted: results.iter().map(|r| r.accepted).sum(),
        refused: results.iter().map(|r| r.refused).sum(),
        first_refusal: results.iter().find_map(|r| r.first_refusal.clone()),
        seconds: first
            .zip(last)
            .map_or(f64::NAN, |(a, b)| b.duration_since(a).as_secs_f64()),
    })
}

/// The first slot at or after `from` whose alpha is server `alpha`.
fn next_slot_of(schedule: &Schedule, alpha: ServerId, from: Millis) -> u64 {
    let mut slot = schedule.slot_at(from) + 1;
    while schedule.alpha(slot) != alpha {
        slot += 1;
    }
    slot
}

/// Sleeps until the clock reads `at`: the load starts at a time the
/// schedule fixes, not when a condition holds.
fn sleep_until(at: Millis) {
    let now = unix_now_ms();
    if at > now {
        thread::sleep(Duration::from_millis(at - now));
    }
}

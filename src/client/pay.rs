//! `rota pay`: one signed payment at a time, until its fate is certain.
//!
//! A payment's bytes are valid in one round only (their timestamp fits one
//! slot's window), so sending the same bytes again can never pay twice, and
//! signing new bytes can. `pay` therefore offers one signed payment to every
//! server (the alpha of its slot first) again and again while its timestamp
//! can still be taken, then asks `S` of every server until one says it is
//! committed or lost, and signs a new one only when it is lost, or when no
//! server can hold it at all (every server refused it or never received it).
//! A payment still pending at the deadline is reported, with its id and how
//! to check it, never dropped in silence.
//!
//! What to do next is [`next_step`], a pure function of the time and of what
//! the servers said ([`Seen`]); [`follow`] carries its steps out.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use rota_peer::keys::Keypair;
use rota_peer::schedule::{Schedule, unix_now_ms};
use rota_peer::transaction::Transaction;
use rota_peer::wire::{ALPHA_DOWN, Disposition, Reply, Request, TxStatus};
use rota_peer::{Amount, Millis, PublicKey, ServerId, Slot, TxId};

use super::{Exchange, connect, no_server_answered, status_text};
use crate::config::Config;
use crate::error::{Error, Result};

/// The most of a server's refusal kept and printed: its `E` text comes from
/// outside.
const MAX_REFUSAL: usize = 300;

/// What `rota pay` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOutcome {
    pub id: TxId,
    /// What the first server to take it did with it; `None` when no server
    /// answered its `T` (one may still have taken it).
    pub disposition: Option<Disposition>,
    /// The server that took it.
    pub sent_to: Option<ServerId>,
    /// The last status seen: with `--wait`, or when the payment had to be
    /// followed to know whether to sign another.
    pub status: Option<TxStatus>,
}

/// Options of `rota pay`.
#[derive(Debug, Clone)]
pub struct PayOptions {
    pub to: PublicKey,
    pub amount: Amount,
    pub server: Option<ServerId>,
    pub wait: bool,
    pub timeout_ms: u64,
}

/// When one signed payment may be offered again, and how long it is
/// followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Times {
    /// Offering the bytes again is pointless from here: the slot's window
    /// closes, or their timestamp leaves every server's tolerance.
    pub resend_until: Millis,
    /// Waiting for certainty ends here.
    pub deadline: Millis,
}

impl Times {
    /// For a payment stamped `timestamp` and signed for `slot`. A held
    /// payment belongs to `slot + 1`, and a failed slot is decided by the
    /// next round that commits: up to `N - majority` alphas in a row may be
    /// down before one does.
    pub fn of(schedule: &Schedule, majority: usize, slot: Slot, timestamp: Millis) -> Times {
        let down = schedule.servers.saturating_sub(majority) as u64;
        let decided_by = slot.saturating_add(1 + down);
        Times {
            resend_until: schedule
                .close(slot)
                .min(timestamp.saturating_add(schedule.tolerance_ms)),
            deadline: schedule
                .vote_deadline(decided_by)
                .saturating_add(2 * schedule.slot_ms),
        }
    }
}

/// What the servers said of one signed payment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Seen {
    /// How many times its bytes were offered.
    pub offers: u32,
    /// The first server that took it, and how.
    pub taken: Option<(ServerId, Disposition)>,
    /// Whether a server may hold it: one took it, or one received it and did
    /// not answer. A server that refused it, or never got it, holds nothing.
    pub delivered: bool,
    /// The last status from any server; `Committed` and `Lost` are final.
    pub status: Option<TxStatus>,
    /// The last refusal (bounded), to say why no server took it.
    pub refusal: Option<String>,
}

/// What to do next with a signed payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Offer the same bytes to the servers (again).
    Offer,
    /// Ask `S` for certainty.
    Poll,
    /// Stop following it.
    End(End),
}

/// How following one signed payment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Committed; or, without `--wait`, taken by a server.
    Done,
    /// Lost, or held by no server: a new payment may be signed.
    Resign,
    /// Still pending at the deadline.
    GiveUp,
}

/// The decision, pure: certainty first, then offering while the bytes can
/// be taken, then waiting for certainty, which only a payment no server can
/// hold skips.
pub(super) fn next_step(now: Millis, wait: bool, times: &Times, seen: &Seen) -> Step {
    match seen.status {
        Some(TxStatus::Committed { .. }) => return Step::End(End::Done),
        Some(TxStatus::Lost { .. }) => return Step::End(End::Resign),
        Some(TxStatus::Pending | TxStatus::Unknown) | None => {}
    }
    let taken = seen.taken.is_some();
    if !taken && (seen.offers == 0 || now < times.resend_until) {
        Step::Offer
    } else if taken && !wait {
        Step::End(End::Done)
    } else if !seen.delivered {
        Step::End(End::Resign)
    } else if now >= times.deadline {
        Step::End(End::GiveUp)
    } else {
        Step::Poll
    }
}

/// One signed payment and what is known of it.
struct Payment {
    tx: Transaction,
    /// The slot it was signed in, whose alpha it is for.
    slot: Slot,
    times: Times,
    seen: Seen,
}

impl Payment {
    /// Waits for a window of slot `from` or later, and signs.
    fn sign(config: &Config, payer: &Keypair, options: &PayOptions, from: Slot) -> Payment {
        let slot = wait_for_window(config, from);
        let timestamp = unix_now_ms();
        let tx = Transaction::sign(&config.chain, payer, options.to, options.amount, timestamp);
        let majority = config.server_list().majority();
        Payment {
            tx,
            slot,
            times: Times::of(&config.schedule(), majority, slot, timestamp),
            seen: Seen::default(),
        }
    }

    fn outcome(&self) -> PayOutcome {
        PayOutcome {
            id: self.tx.id(),
            disposition: self.seen.taken.map(|(_, d)| d),
            sent_to: self.seen.taken.map(|(server, _)| server),
            status: self.seen.status,
        }
    }

    /// Why a new payment is signed after this one.
    fn why_resign(&self) -> String {
        let id = self.tx.id();
        match (self.seen.status, &self.seen.refusal) {
            (Some(status @ TxStatus::Lost { .. }), _) => {
                format!("payment {id} was {}", status_text(status))
            }
            (_, Some(refusal)) => format!("no server took payment {id} ({refusal})"),
            (_, None) => format!("no server took payment {id}"),
        }
    }
}

/// Signs and sends a payment; see the module documentation. At most one
/// signed payment is ever pending: a new one is signed, for a later slot,
/// only once the last is lost or held by no server, and at most N + 1 are.
pub fn pay(config: &Config, payer: &Keypair, options: &PayOptions) -> Result<PayOutcome> {
    let ctx = zmq::Context::new();
    let attempts = config.servers.len() + 1;
    let mut signed = Vec::new();
    let mut from = 0;
    loop {
        let mut payment = Payment::sign(config, payer, options, from);
        signed.push(payment.tx.id().to_string());
        let end = match follow(&ctx, config, options, &mut payment) {
            Ok(end) => end,
            Err(e) => {
                if payment.seen.delivered {
                    eprintln!("{}", still_pending(payment.tx.id()));
                }
                return Err(e);
            }
        };
        match end {
            End::Done => return Ok(payment.outcome()),
            End::GiveUp => {
                eprintln!("{}", still_pending(payment.tx.id()));
                return Ok(payment.outcome());
            }
            End::Resign if signed.len() < attempts => {
                eprintln!("{}; signing a new one", payment.why_resign());
                from = payment.slot + 1;
            }
            End::Resign => {
                eprintln!(
                    "{}; none of the {} payments signed ({}) is pending",
                    payment.why_resign(),
                    signed.len(),
                    signed.join(", ")
                );
                return match payment.seen.status {
                    Some(TxStatus::Lost { .. }) => Ok(payment.outcome()),
                    _ => Err(Error::Remote(format!(
                        "no alpha took the payment in {attempts} slots; the network may be down"
                    ))),
                };
            }
        }
    }
}

/// What `rota pay` says when it stops while a server may hold payment `id`.
fn still_pending(id: TxId) -> String {
    format!(
        "payment {id} is still pending: no server has said it is committed or lost, \
         so no new payment was signed; check it with `rota status {id}`"
    )
}

/// Carries out [`next_step`] until it ends. Every offer and poll that
/// leaves the fate open is followed by a pause.
fn follow(
    ctx: &zmq::Context,
    config: &Config,
    options: &PayOptions,
    payment: &mut Payment,
) -> Result<End> {
    let pause = Duration::from_millis((config.schedule().slot_ms / 10).clamp(50, 1_000));
    let mut deaf = BTreeSet::new();
    loop {
        match next_step(unix_now_ms(), options.wait, &payment.times, &payment.seen) {
            Step::Offer => {
                offer(ctx, config, options, payment)?;
                if payment.seen.taken.is_none() {
                    thread::sleep(pause);
                }
            }
            Step::Poll => {
                poll(ctx, config, options, payment, &mut deaf)?;
                if let Some(TxStatus::Pending | TxStatus::Unknown) | None = payment.seen.status {
                    thread::sleep(pause);
                }
            }
            Step::End(end) => return Ok(end),
        }
    }
}

/// Offers the payment's bytes to the chosen server, or to the slot's alpha
/// and then to every other server, until one takes them. A refusal while no
/// server may hold the payment ends `rota pay` with the server's reason, as
/// nothing is pending; one after that is noted, and the payment followed.
fn offer(
    ctx: &zmq::Context,
    config: &Config,
    options: &PayOptions,
    payment: &mut Payment,
) -> Result<()> {
    let alpha = config.schedule().alpha(payment.slot);
    let order: Vec<ServerId> = match options.server {
        Some(id) => vec![id],
        None => std::iter::once(alpha)
            .chain(config.server_list().ids().filter(|id| *id != alpha))
            .collect(),
    };
    payment.seen.offers += 1;
    let request = Request::Submit(payment.tx);
    let mut silent = Vec::new();
    for server in order.iter().copied() {
        let mut connection = connect(ctx, config, server, options.timeout_ms)?;
        let refusal = match connection.exchange(&request)? {
            Exchange::Reply(Reply::Submitted { id, disposition }) if id == payment.tx.id() => {
                payment.seen.taken = Some((server, disposition));
                payment.seen.delivered = true;
                return Ok(());
            }
            Exchange::Reply(Reply::Error(message)) => message,
            Exchange::Reply(other) => format!("unexpected reply {other:?}"),
            Exchange::Unsent => {
                eprintln!(
                    "server {server} could not be reached within {} ms",
                    options.timeout_ms
                );
                silent.push(server);
                continue;
            }
            Exchange::Silent => {
                eprintln!(
                    "server {server} got the payment but did not answer within {} ms",
                    options.timeout_ms
                );
                payment.seen.delivered = true;
                silent.push(server);
                continue;
            }
        };
        let refusal = bounded(&format!("server {server}: {refusal}"));
        if !payment.seen.delivered && !refusal.contains(ALPHA_DOWN) {
            return Err(Error::Remote(refusal));
        }
        eprintln!("{refusal}");
        payment.seen.refusal = Some(refusal);
    }
    if silent.len() == order.len() && !payment.seen.delivered {
        return Err(no_server_answered(&silent));
    }
    Ok(())
}

/// Asks `S` of the server that took the payment and then of the others,
/// until one says it is committed or lost. A server that does not answer is
/// not asked again (each costs a timeout) until none is left to ask.
fn poll(
    ctx: &zmq::Context,
    config: &Config,
    options: &PayOptions,
    payment: &mut Payment,
    deaf: &mut BTreeSet<ServerId>,
) -> Result<()> {
    let first = payment
        .seen
        .taken
        .map_or(config.schedule().alpha(payment.slot), |(server, _)| server);
    let ids: Vec<ServerId> = config.server_list().ids().collect();
    if ids.iter().all(|id| deaf.contains(id)) {
        deaf.clear();
    }
    let order = std::iter::once(first).chain(ids.into_iter().filter(|id| *id != first));
    let request = Request::Status(payment.tx.id());
    for server in order.filter(|id| !deaf.contains(id)).collect::<Vec<_>>() {
        match connect(ctx, config, server, options.timeout_ms)?.exchange(&request)? {
            Exchange::Reply(Reply::Status(status)) => {
                if payment.seen.status != Some(TxStatus::Pending) || status != TxStatus::Unknown {
                    payment.seen.status = Some(status);
                }
                if let TxStatus::Committed { .. } | TxStatus::Lost { .. } = status {
                    return Ok(());
                }
            }
            Exchange::Reply(other) => {
                eprintln!(
                    "server {server} answered S with {}",
                    bounded(&format!("{other:?}"))
                );
                deaf.insert(server);
            }
            Exchange::Unsent | Exchange::Silent => {
                deaf.insert(server);
            }
        }
    }
    Ok(())
}

/// Sleeps until an alpha window of slot `from` or later is open with a
/// margin, so the payment is not sent into a blackout. Returns the slot it
/// will be sent in.
fn wait_for_window(config: &Config, from: Slot) -> Slot {
    let schedule = config.schedule();
    let margin = (schedule.blackout_ms / 4).clamp(5, 200);
    let now = unix_now_ms();
    let (slot, opens) = schedule.next_open((now + margin).max(schedule.start(from)));
    if opens > now + margin {
        let wait = opens - now;
        eprintln!("waiting {wait} ms for slot {slot} to open");
        thread::sleep(Duration::from_millis(wait + margin.min(20)));
    }
    schedule.slot_at(unix_now_ms())
}

/// At most [`MAX_REFUSAL`] bytes of `text`, cut on a character boundary.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_REFUSAL);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;

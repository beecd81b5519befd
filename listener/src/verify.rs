//! The verifier threads: every signature a node accepts is checked here.
//!
//! The listener hands each decoded batch, with its sequence number, to
//! whichever verifier is free; the verifier checks payments in one batch,
//! together with those of the batches queued behind it when it is behind
//! (falling back to one at a time to find a forgery), checks peer envelopes
//! against the server list, and passes the batch on, still numbered, to the
//! ledger, which applies batches in number order. Refusals travel in the
//! batch as [`Inbound::Refused`] so that the ledger answers them in order too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use rota_peer::transaction::{Transaction, VerifiedTx, Verifier};
use rota_peer::wire::{Params, PeerCommand, PeerMessage, Request, ServerList};
use rota_peer::{ServerId, Slot};

use crate::{Consensus, Inbound, Incoming, PeerInput, Refusal, Route, Stats};

/// How many requests a verifier gathers when it takes several queued
/// batches together: it stops taking once it holds this many, so a
/// coalesced check holds less than two of the listener's full batches, and
/// the lanes without payments (the round protocol's) are not drained
/// before the ledger sees any of them.
pub const COALESCE: usize = crate::BATCH;

/// A decoded batch for the verifiers.
#[derive(Debug)]
pub struct Work {
    pub seq: u64,
    pub requests: Vec<(Route, Request)>,
}

/// A checked batch for the ledger, in the listener's numbering.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub items: Vec<Incoming>,
}

/// Puts checked batches back in the listener's order: verifiers finish in
/// any order, but requests must take effect as they arrived (a beta's RESULT
/// before its push, say).
#[derive(Debug, Default)]
pub struct InOrder {
    next: u64,
    early: BTreeMap<u64, Vec<Incoming>>,
}

impl InOrder {
    /// Takes one batch and returns every request now due, in order: none if
    /// an earlier batch is still being checked.
    pub fn arrive(&mut self, batch: Batch) -> Vec<Incoming> {
        self.early.insert(batch.seq, batch.items);
        let mut due = Vec::new();
        while let Some(items) = self.early.remove(&self.next) {
            self.next += 1;
            due.extend(items);
        }
        due
    }
}

/// `first`, and the batches queued behind it while they hold fewer than
/// [`COALESCE`] requests.
fn take_queued(first: Work, work: &Receiver<Work>) -> Vec<Work> {
    let mut requests = first.requests.len();
    let mut taken = vec![first];
    while requests < COALESCE {
        let Ok(next) = work.try_recv() else {
            break;
        };
        requests += next.requests.len();
        taken.push(next);
    }
    taken
}

/// What the verifier threads share.
#[derive(Clone, Debug)]
pub struct Verifiers {
    pub chain: String,
    pub servers: ServerList,
    /// The chain's parameters: a `register` or `heart` with others is
    /// refused, naming the differences, before anything else is checked.
    pub params: Params,
    pub stats: Arc<Stats>,
}

impl Verifiers {
    /// A verifier thread body. Takes [`Work`] from `work` and sends each
    /// checked [`Batch`] on `to_ledger`. Returns when the listener has gone
    /// (its sender dropped) or the ledger has.
    ///
    /// Under load the listener reads a socket faster than a verifier
    /// checks, and the work queued behind the first batch is taken with it
    /// (up to [`COALESCE`] requests): every payment of them is checked in one
    /// signature batch, whose cost per signature falls with its size, while
    /// each batch still goes to the ledger under its own number.
    pub fn run(self, work: Receiver<Work>, to_ledger: Sender<Batch>) {
        let mut verifier = Verifier::new(&self.chain);
        while let Ok(first) = work.recv() {
            let taken = take_queued(first, &work);
            for batch in self.check_batches(&mut verifier, taken) {
                if to_ledger.send(batch).is_err() {
                    return;
                }
            }
        }
    }

    /// Checks every request of the batches taken, all their payments in one
    /// signature batch.
    fn check_batches(&self, verifier: &mut Verifier, taken: Vec<Work>) -> Vec<Batch> {
        let payments: Vec<Transaction> = taken
            .iter()
            .flat_map(|work| &work.requests)
            .filter_map(|(_, r)| match r {
                Request::Submit(tx) => Some(*tx),
                _ => None,
            })
            .collect();
        let mut verdicts = verifier.verify_batch(&payments).into_iter();
        taken
            .into_iter()
            .map(|Work { seq, requests }| Batch {
                seq,
                items: self.check_requests(verifier, requests, &mut verdicts),
            })
            .collect()
    }

    /// Checks the requests of one batch, taking their payments' verdicts in
    /// order from `verdicts`.
    fn check_requests(
        &self,
        verifier: &mut Verifier,
        requests: Vec<(Route, Request)>,
        verdicts: &mut impl Iterator<Item = rota_peer::Result<VerifiedTx>>,
    ) -> Vec<Incoming> {
        requests
            .into_iter()
            .map(|(route, request)| {
                let checked = match request {
                    Request::Submit(_) => verdicts
                        .next()
                        .expect("one verdict per payment")
                        .map(Inbound::Submit)
                        .map_err(Refusal::Payment),
                    other => self.check(verifier, other),
                };
                let inbound = checked.unwrap_or_else(|refusal| {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    log::debug!("refused: {refusal}");
                    Inbound::Refused(refusal.to_string())
                });
                Incoming { route, inbound }
            })
            .collect()
    }

    /// Checks a request that is not a payment: peer envelopes against the
    /// server list, and the payments they carry.
    fn check(&self, verifier: &mut Verifier, request: Request) -> Result<Inbound, Refusal> {
        let Request::Peer(envelope) = request else {
            return Ok(Inbound::Query(request));
        };
        let from = self
            .servers
            .verify(&self.chain, &envelope)
            .map_err(Refusal::Signature)?;
        let message = envelope
            .message(self.servers.len())
            .map_err(Refusal::Payload)?;
        let door = Door {
            chain: &self.chain,
            servers: &self.servers,
            params: &self.params,
        };
        let message = check_peer(&door, from, verifier, envelope.slot, message)?;
        Ok(Inbound::Peer {
            from,
            slot: envelope.slot,
            message,
        })
    }
}

/// What the door checks peer messages against: the conf's chain, server
/// list and parameters.
pub struct Door<'a> {
    pub chain: &'a str,
    pub servers: &'a ServerList,
    pub params: &'a Params,
}

/// Checks what a peer message carries, once its envelope verified: the
/// signatures of every header, vote and certificate against the conf, and
/// of every payment. A round with one bad payment is refused whole (its
/// alpha signed what no honest server may prevote); a forwarded payment
/// must verify. The simulator checks its messages through this same door.
pub fn check_peer(
    door: &Door,
    from: ServerId,
    verifier: &mut Verifier,
    slot: Slot,
    message: PeerMessage<Transaction>,
) -> Result<PeerInput, Refusal> {
    let (chain, servers) = (door.chain, door.servers);
    let consensus = |command: PeerCommand| {
        move |error| Refusal::Consensus {
            command: command.name(),
            error,
        }
    };
    let command = message.command();
    let checked = match message {
        PeerMessage::Register(hello) | PeerMessage::Heart(hello)
            if !door.params.differences(&hello.params).is_empty() =>
        {
            return Err(Refusal::Params {
                from,
                differences: door.params.differences(&hello.params).join(", "),
            });
        }
        PeerMessage::Register(hello) => {
            let greeting = hello.verify(chain, servers).map_err(consensus(command))?;
            return Ok(PeerInput::Register(greeting));
        }
        PeerMessage::Heart(hello) => {
            let greeting = hello.verify(chain, servers).map_err(consensus(command))?;
            return Ok(PeerInput::Heart(greeting));
        }
        PeerMessage::Forward { transaction } => {
            let transaction = verifier.verify(transaction).map_err(Refusal::Forward)?;
            return Ok(PeerInput::Forward(transaction));
        }
        // Signed by its sender (the envelope, checked already); what it
        // claims is checked where it is acted on (`wire::mining`).
        PeerMessage::Mine(mining) => return Ok(PeerInput::Mine(mining)),
        PeerMessage::Round {
            header,
            transactions,
        } => {
            let header = header.verify(chain, servers).map_err(consensus(command))?;
            let mut payments = Vec::with_capacity(transactions.len());
            for (index, verdict) in verifier.verify_batch(&transactions).into_iter().enumerate() {
                payments.push(verdict.map_err(|error| Refusal::RoundPayment {
                    slot,
                    index,
                    error,
                })?);
            }
            Consensus::Round { header, payments }
        }
        PeerMessage::Prevote(prevote) => {
            Consensus::Prevote(prevote.verify(chain, servers).map_err(consensus(command))?)
        }
        PeerMessage::Precommit(precommit) => Consensus::Precommit(
            precommit
                .verify(chain, servers)
                .map_err(consensus(command))?,
        ),
        PeerMessage::Certified(certified) => Consensus::Certified(
            certified
                .verify(chain, servers)
                .map_err(consensus(command))?,
        ),
        PeerMessage::Evidence(evidence) => Consensus::Evidence(
            evidence
                .verify(chain, servers)
                .map_err(consensus(command))?,
        ),
        PeerMessage::Want { slot, digest } => Consensus::Want { slot, digest },
    };
    Ok(PeerInput::Consensus(Box::new(checked)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;

    fn batch(seq: u64, tags: &[u8]) -> Batch {
        let items = tags
            .iter()
            .map(|tag| Incoming {
                route: Route {
                    family: Family::V4,
                    envelope: vec![vec![*tag]],
                },
                inbound: Inbound::Query(Request::Info),
            })
            .collect();
        Batch { seq, items }
    }

    fn tags(items: Vec<Incoming>) -> Vec<u8> {
        items.iter().map(|i| i.route.envelope[0][0]).collect()
    }

    fn route(tag: u8) -> Route {
        Route {
            family: Family::V4,
            envelope: vec![vec![tag]],
        }
    }

    /// A batch of `payments` payments, the one at `forged` (if any) with a
    /// signature that does not check, and an `I` query at the end.
    fn work(seq: u64, payments: usize, forged: Option<usize>) -> Work {
        let payer = rota_peer::keys::Keypair::from_seed(&[7; 32]);
        let mut requests: Vec<(Route, Request)> = (0..payments)
            .map(|i| {
                let mut payee = [1u8; 32];
                payee[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let payee = rota_peer::PublicKey(payee);
                let mut tx = Transaction::sign("test", &payer, payee, 1, seq * 10_000 + i as u64);
                if forged == Some(i) {
                    let mut bytes = tx.bytes().to_vec();
                    bytes[139] ^= 1;
                    tx = Transaction::decode(&bytes).expect("140 bytes");
                }
                (route(i as u8), Request::Submit(tx))
            })
            .collect();
        requests.push((route(255), Request::Info));
        Work { seq, requests }
    }

    #[test]
    fn a_verifier_behind_takes_the_queued_batches_up_to_a_full_batch_of_requests() {
        let (send, queue) = crossbeam_channel::unbounded();
        for seq in 1..=3 {
            send.send(work(seq, 400, None)).unwrap();
        }
        let taken = take_queued(work(0, 400, None), &queue);
        // 401 + 401 + 401 requests reach COALESCE (1024): the fourth waits.
        assert_eq!(taken.iter().map(|w| w.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(queue.len(), 1);
        // Nothing queued: the first alone.
        let (_send, empty) = crossbeam_channel::unbounded();
        assert_eq!(take_queued(work(9, 3, None), &empty).len(), 1);
        // Batches without payments are bounded alike: a queue of them is not
        // drained before the ledger sees the first.
        let queries = |seq| Work {
            seq,
            requests: vec![(route(1), Request::Info); 600],
        };
        let (send, queue) = crossbeam_channel::unbounded();
        for seq in 1..=3 {
            send.send(queries(seq)).unwrap();
        }
        assert_eq!(take_queued(queries(0), &queue).len(), 2);
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn batches_checked_together_keep_their_numbers_and_each_payment_its_verdict() {
        let verifiers = Verifiers {
            chain: "test".into(),
            servers: ServerList::new(Vec::new()),
            params: Params::default(),
            stats: Arc::new(Stats::default()),
        };
        let mut verifier = Verifier::new("test");
        let taken = vec![work(4, 3, None), work(5, 2, Some(1)), work(6, 2, None)];
        let batches = verifiers.check_batches(&mut verifier, taken);
        assert_eq!(batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [4, 5, 6]);
        let verdicts: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| {
                b.items
                    .iter()
                    .map(|item| match &item.inbound {
                        Inbound::Submit(_) => "paid",
                        Inbound::Refused(_) => "refused",
                        Inbound::Query(_) => "query",
                        Inbound::Peer { .. } => "peer",
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                vec!["paid", "paid", "paid", "query"],
                vec!["paid", "refused", "query"],
                vec!["paid", "paid", "query"],
            ]
        );
        assert_eq!(verifiers.stats.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn batches_checked_out_of_order_are_applied_in_arrival_order() {
        let mut order = InOrder::default();
        assert_eq!(
            tags(order.arrive(batch(1, &[3, 4]))),
            Vec::<u8>::new(),
            "batch 0 still out"
        );
        assert_eq!(tags(order.arrive(batch(2, &[5]))), Vec::<u8>::new());
        assert_eq!(tags(order.arrive(batch(0, &[1, 2]))), [1, 2, 3, 4, 5]);
        assert_eq!(tags(order.arrive(batch(3, &[6]))), [6]);
    }
}

//! The lanes from the sockets to the ledger, and the budget that bounds each.
//!
//! A request reaches the ledger by one of three lanes. Each is a bounded
//! queue to verifier threads of its own and a channel of its own to the
//! ledger, so that one lane's load never waits in another's queue:
//!
//! - **consensus**: the server messages that keep consensus (`register`,
//!   `heart`, `round`, `vote`, `result`, `push`), from the peering socket.
//!   The ledger takes them before anything else.
//! - **bulk**: what else the peering socket takes: `forward` (a payment a
//!   client gave another server) and the connector's catch-up queries `D`
//!   and `B`. It is client load relayed by a server, so it must not crowd
//!   out a vote, and it has a budget of its own.
//! - **client**: every request from the client sockets.
//!
//! Each lane has a [`Budget`]: how many requests have been handed to its
//! verifiers and not yet answered by the ledger. The thread that reads the
//! socket takes from the budget before it queues a batch, and refuses as
//! busy what does not fit; the ledger gives one back for each request it
//! answers. So the busy limit counts requests, whatever the size of the
//! batches they were read in, and it covers every request between the
//! socket and its answer: in the queue, in a verifier, on its way to the
//! ledger, and waiting there for its turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Sender, TrySendError};
use rota_peer::wire::{PeerCommand, Request};

use crate::{Refusal, Route, Work};

/// Client requests queued between the client sockets and their answers
/// before more are refused with "the node is busy; try again shortly".
/// Eight full batches: enough to keep every verifier busy while the ledger
/// answers, and at a few microseconds of ledger time a request, a wait in
/// the queue of tens of milliseconds for the request that arrives last.
pub const MAX_QUEUED_CLIENT_REQUESTS: usize = 8_192;

/// Consensus messages queued from the peering socket before more are
/// refused. A round takes a handful of messages from each server; the rest
/// of the room is for a peer that sends junk.
pub const MAX_QUEUED_CONSENSUS: usize = 1_024;

/// Forwarded payments, `D` and `B` queued from the peering socket before
/// more are refused: the forwards of a busy non-alpha arrive one message
/// each.
pub const MAX_QUEUED_BULK: usize = 4_096;

/// The three ways to the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Consensus,
    Bulk,
    Client,
}

impl Lane {
    /// The lane of a request read from the peering socket, or why that
    /// socket does not take it: it serves the server commands and the two
    /// queries the connector sends, `D` and `B`.
    pub fn on_peering(request: &Request) -> Result<Lane, Refusal> {
        match request {
            Request::Peer(envelope) => Ok(match envelope.command {
                PeerCommand::Register
                | PeerCommand::Heart
                | PeerCommand::Round
                | PeerCommand::Prevote
                | PeerCommand::Precommit
                | PeerCommand::Certified
                | PeerCommand::Evidence
                | PeerCommand::Want => Lane::Consensus,
                PeerCommand::Forward | PeerCommand::Mine => Lane::Bulk,
            }),
            Request::Database | Request::Block(_) => Ok(Lane::Bulk),
            Request::Info
            | Request::Height
            | Request::BlockHash(_)
            | Request::Account(_)
            | Request::Submit(_)
            | Request::Status(_) => Err(Refusal::NotOnPeering(request.command())),
        }
    }

    /// Whether the client sockets take `request`: every client command, and
    /// no server command.
    pub fn on_client_socket(request: &Request) -> Result<Lane, Refusal> {
        match request {
            Request::Peer(envelope) => Err(Refusal::ServerCommand(envelope.command.name())),
            Request::Info
            | Request::Height
            | Request::Block(_)
            | Request::BlockHash(_)
            | Request::Account(_)
            | Request::Submit(_)
            | Request::Status(_)
            | Request::Database => Ok(Lane::Client),
        }
    }

    /// The most requests of this lane queued at once.
    pub fn limit(self) -> usize {
        match self {
            Lane::Consensus => MAX_QUEUED_CONSENSUS,
            Lane::Bulk => MAX_QUEUED_BULK,
            Lane::Client => MAX_QUEUED_CLIENT_REQUESTS,
        }
    }
}

/// How many requests of one lane are queued, shared by the socket's thread
/// (which takes) and the ledger (which gives back).
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    queued: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` requests, all free.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes room for up to `wanted` requests and returns how many it took:
    /// fewer, down to none, when the lane is nearly full.
    pub fn take(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                granted = wanted.min(self.limit.saturating_sub(queued));
                Some(queued + granted)
            });
        granted
    }

    /// Gives back the room of `n` requests that were answered.
    pub fn give_back(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(n))
            });
    }

    /// Requests queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The three lanes' budgets, shared by the threads that read the sockets
/// (which take) and the ledger (which gives back).
#[derive(Clone, Debug)]
pub struct Budgets {
    pub consensus: Arc<Budget>,
    pub bulk: Arc<Budget>,
    pub client: Arc<Budget>,
}

impl Budgets {
    /// Each lane's budget at its [`Lane::limit`], all free.
    pub fn new() -> Budgets {
        let budget = |lane: Lane| Arc::new(Budget::new(lane.limit()));
        Budgets {
            consensus: budget(Lane::Consensus),
            bulk: budget(Lane::Bulk),
            client: budget(Lane::Client),
        }
    }

    pub fn of(&self, lane: Lane) -> &Arc<Budget> {
        match lane {
            Lane::Consensus => &self.consensus,
            Lane::Bulk => &self.bulk,
            Lane::Client => &self.client,
        }
    }
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets::new()
    }
}

/// The verifiers or the ledger have gone: the thread that reads the socket
/// stops.
#[derive(Debug, PartialEq, Eq)]
pub struct Gone;

/// One lane's sending end, owned by the thread that reads its socket: it
/// numbers the batches (the ledger puts them back in this order) and takes
/// their room from the budget.
pub struct LaneSender {
    work: Sender<Work>,
    budget: Arc<Budget>,
    next_seq: u64,
}

impl LaneSender {
    /// `work` must hold at least `budget.limit()` batches, so that a batch
    /// the budget admits always fits (a batch holds one request or more).
    pub fn new(work: Sender<Work>, budget: Arc<Budget>) -> LaneSender {
        LaneSender {
            work,
            budget,
            next_seq: 0,
        }
    }

    /// Queues as many of `requests`, the first ones, as the budget has room
    /// for, and returns the rest, to be refused as busy.
    pub fn queue(
        &mut self,
        mut requests: Vec<(Route, Request)>,
    ) -> Result<Vec<(Route, Request)>, Gone> {
        if requests.is_empty() {
            return Ok(requests);
        }
        let granted = self.budget.take(requests.len());
        let over = requests.split_off(granted);
        if granted == 0 {
            return Ok(over);
        }
        let work = Work {
            seq: self.next_seq,
            requests,
        };
        match self.work.try_send(work) {
            Ok(()) => {
                self.next_seq += 1;
                Ok(over)
            }
            // Not reached while the channel holds the budget's limit; if it
            // is, the batch is refused rather than lost.
            Err(TrySendError::Full(work)) => {
                self.budget.give_back(granted);
                let mut refused = work.requests;
                refused.extend(over);
                Ok(refused)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.budget.give_back(granted);
                Err(Gone)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;
    use rota_peer::wire::{Envelope, PeerMessage};

    fn info(tag: u8) -> (Route, Request) {
        let route = Route {
            family: Family::V4,
            envelope: vec![vec![tag]],
        };
        (route, Request::Info)
    }

    #[test]
    fn a_budget_grants_what_fits_and_takes_back_what_was_answered() {
        let budget = Budget::new(10);
        assert_eq!(budget.take(4), 4);
        assert_eq!(budget.take(8), 6, "only 6 more fit");
        assert_eq!(budget.take(1), 0);
        budget.give_back(3);
        assert_eq!(budget.queued(), 7);
        assert_eq!(budget.take(5), 3);
        budget.give_back(100);
        assert_eq!(budget.queued(), 0, "never below zero");
    }

    #[test]
    fn one_request_batches_fill_the_lane_up_to_its_limit_in_requests() {
        let limit = 100;
        let (work, queued) = crossbeam_channel::bounded(limit);
        let budget = Arc::new(Budget::new(limit));
        let mut lane = LaneSender::new(work, budget.clone());
        // Far more one-request batches than the 64 batches that once made
        // the node busy: every one is taken until the requests reach the limit.
        for i in 0..limit {
            assert!(lane.queue(vec![info(i as u8)]).unwrap().is_empty(), "{i}");
        }
        assert_eq!(queued.len(), limit);
        let refused = lane.queue(vec![info(0), info(1)]).unwrap();
        assert_eq!(refused.len(), 2, "the lane is full");
        // The ledger answers one request.
        assert_eq!(queued.try_recv().unwrap().seq, 0);
        budget.give_back(1);
        let refused = lane.queue(vec![info(7), info(8)]).unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0.envelope, vec![vec![8]], "the first ones go");
        let seqs: Vec<u64> = queued.try_iter().map(|w| w.seq).collect();
        assert_eq!(seqs, (1..=limit as u64).collect::<Vec<_>>());
    }

    #[test]
    fn the_peering_socket_takes_server_commands_d_and_b_only() {
        let keypair = rota_peer::keys::Keypair::from_seed(&[1; 32]);
        let signed =
            |message: &PeerMessage| Request::Peer(Envelope::sign(&keypair, "test", 1, message));
        let vote = signed(&PeerMessage::Want {
            slot: 1,
            digest: rota_peer::Hash([2; 32]),
        });
        let forward = signed(&PeerMessage::Forward {
            transaction: rota_peer::transaction::Transaction::sign(
                "test",
                &keypair,
                rota_peer::PublicKey([3; 32]),
                1,
                1,
            ),
        });
        assert_eq!(Lane::on_peering(&vote).ok(), Some(Lane::Consensus));
        assert_eq!(Lane::on_peering(&forward).ok(), Some(Lane::Bulk));
        assert_eq!(Lane::on_peering(&Request::Database).ok(), Some(Lane::Bulk));
        assert_eq!(Lane::on_peering(&Request::Block(3)).ok(), Some(Lane::Bulk));
        let err = Lane::on_peering(&Request::Info).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command I is not taken on the peering socket, which takes the server commands, \
             D and B: send it to the client socket"
        );
        assert_eq!(
            Lane::on_client_socket(&Request::Info).ok(),
            Some(Lane::Client)
        );
        let err = Lane::on_client_socket(&vote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command want is a server command: servers send it to the peering socket, not to \
             the client socket"
        );
    }
}

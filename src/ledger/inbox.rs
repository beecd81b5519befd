//! What the ledger thread reads next, and in which order.
//!
//! Requests reach the ledger by three lanes (`rota_listener::lane`), each a
//! channel of numbered, verified batches. The [`Inbox`] puts each lane's
//! batches back in the order they were read ([`InOrder`]: a beta's RESULT
//! before its push, a client's `T` before its `S`) and decides what the
//! thread does next:
//!
//! 1. a stop, an event from the connector, or a batch of the consensus lane
//!    (`round`, `vote`, `result`, `push`, `register`, `heart`), first
//!    whenever one waits;
//! 2. then the client and bulk requests already due, one at a time
//!    ([`Inbox::next_due`]), giving way as soon as (1) has something;
//! 3. only when none are due, a new client or bulk batch, or a wait until
//!    the core's next deadline.
//!
//! So a round, a vote or a heartbeat waits for at most one client request
//! in the ledger, however many are queued. A new client or bulk batch is
//! taken only once the last one is answered, so the requests held here are
//! bounded by the lanes' budgets, which the thread gives back one by one as
//! it answers.

use std::collections::VecDeque;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvError, select, select_biased};
use rota_connector::ConnectorEvent;
use rota_listener::{Batch, InOrder, Incoming, Lane};

/// The channels the ledger thread reads.
pub struct Inputs {
    /// Verified batches of the consensus lane, from the peering socket.
    pub consensus: Receiver<Batch>,
    /// Verified batches of the bulk lane (`forward`, `D`, `B`), from the
    /// peering socket.
    pub bulk: Receiver<Batch>,
    /// Verified batches of the client lane, from the client sockets.
    pub client: Receiver<Batch>,
    pub connector_events: Receiver<ConnectorEvent>,
    /// The miner thread's wake-ups: it found a seal (in the view it shares
    /// with the ledger); never, when the chain is not sealed.
    pub mining: Receiver<()>,
    pub shutdown: Receiver<()>,
}

/// What the ledger thread does next.
#[derive(Debug)]
pub enum Input {
    /// Asked to stop (SIGINT or SIGTERM).
    Shutdown,
    /// The named thread has gone; the node cannot go on.
    Gone(&'static str),
    Connector(ConnectorEvent),
    /// Consensus-lane requests, in order, to answer now.
    Consensus(Vec<Incoming>),
    /// Client or bulk requests may be due: answer them with
    /// [`Inbox::next_due`].
    Requests,
    /// Nothing came before the deadline.
    Timeout,
}

/// The lanes put back in order, and the client and bulk requests due.
#[derive(Debug, Default)]
pub struct Inbox {
    consensus: InOrder,
    bulk: InOrder,
    client: InOrder,
    due: VecDeque<(Lane, Incoming)>,
}

impl Inbox {
    /// Waits up to `wait` for the next thing to do, taking from `channels`
    /// in the order of the module's list.
    pub fn next(&mut self, channels: &Inputs, wait: Duration) -> Input {
        if let Some(input) = self.urgent(channels) {
            return input;
        }
        if !self.due.is_empty() {
            return Input::Requests;
        }
        select! {
            recv(channels.shutdown) -> _ => Input::Shutdown,
            recv(channels.connector_events) -> event => event.map_or(Input::Gone("connector"), Input::Connector),
            recv(channels.consensus) -> batch => self.consensus(batch),
            recv(channels.bulk) -> batch => self.arrive(Lane::Bulk, batch),
            recv(channels.client) -> batch => self.arrive(Lane::Client, batch),
            // The loop takes what the miner found with its next tick.
            recv(channels.mining) -> _ => Input::Timeout,
            default(wait) => Input::Timeout,
        }
    }

    /// The next due client or bulk request, in order; `None` when none is
    /// due or when a stop, a connector event or a consensus batch waits.
    pub fn next_due(&mut self, channels: &Inputs) -> Option<(Lane, Incoming)> {
        let urgent = !channels.shutdown.is_empty()
            || !channels.connector_events.is_empty()
            || !channels.consensus.is_empty();
        if urgent {
            return None;
        }
        self.due.pop_front()
    }

    /// Client and bulk requests due and not yet answered.
    pub fn due(&self) -> usize {
        self.due.len()
    }

    /// A stop, a connector event or a consensus batch, if one waits, in that
    /// order of preference.
    fn urgent(&mut self, channels: &Inputs) -> Option<Input> {
        select_biased! {
            recv(channels.shutdown) -> _ => Some(Input::Shutdown),
            recv(channels.connector_events) -> event => {
                Some(event.map_or(Input::Gone("connector"), Input::Connector))
            }
            recv(channels.consensus) -> batch => Some(self.consensus(batch)),
            default => None,
        }
    }

    fn consensus(&mut self, batch: Result<Batch, RecvError>) -> Input {
        match batch {
            Ok(batch) => Input::Consensus(self.consensus.arrive(batch)),
            Err(_) => Input::Gone("peering"),
        }
    }

    fn arrive(&mut self, lane: Lane, batch: Result<Batch, RecvError>) -> Input {
        let (order, thread) = match lane {
            Lane::Bulk => (&mut self.bulk, "peering"),
            Lane::Client => (&mut self.client, "listener"),
            Lane::Consensus => return self.consensus(batch),
        };
        match batch {
            Ok(batch) => {
                self.due
                    .extend(order.arrive(batch).into_iter().map(|i| (lane, i)));
                Input::Requests
            }
            Err(_) => Input::Gone(thread),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Sender, bounded, never};
    use rota_listener::{Family, Inbound, Route};
    use rota_peer::wire::Request;

    struct Ends {
        consensus: Sender<Batch>,
        bulk: Sender<Batch>,
        client: Sender<Batch>,
        _connector: Sender<ConnectorEvent>,
        _shutdown: Sender<()>,
    }

    fn inputs() -> (Inputs, Ends) {
        let (consensus, consensus_rx) = bounded(8);
        let (bulk, bulk_rx) = bounded(8);
        let (client, client_rx) = bounded(8);
        let (connector, connector_rx) = bounded(8);
        let (shutdown, shutdown_rx) = bounded(1);
        let inputs = Inputs {
            consensus: consensus_rx,
            bulk: bulk_rx,
            client: client_rx,
            connector_events: connector_rx,
            mining: crossbeam_channel::never(),
            shutdown: shutdown_rx,
        };
        let ends = Ends {
            consensus,
            bulk,
            client,
            _connector: connector,
            _shutdown: shutdown,
        };
        (inputs, ends)
    }

    /// A batch of `I` requests told apart by the first byte of their route.
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

    fn tag(incoming: &Incoming) -> u8 {
        incoming.route.envelope[0][0]
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn a_consensus_batch_goes_before_client_batches_that_came_first() {
        let (inputs, ends) = inputs();
        let mut inbox = Inbox::default();
        ends.client.send(batch(0, &[1, 2])).unwrap();
        ends.bulk.send(batch(0, &[3])).unwrap();
        ends.consensus.send(batch(0, &[9])).unwrap();
        match inbox.next(&inputs, NOW) {
            Input::Consensus(due) => assert_eq!(due.iter().map(tag).collect::<Vec<_>>(), [9]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn due_client_requests_give_way_to_a_consensus_batch_one_request_at_a_time() {
        let (inputs, ends) = inputs();
        let mut inbox = Inbox::default();
        ends.client.send(batch(0, &[1, 2, 3])).unwrap();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
        let (lane, first) = inbox.next_due(&inputs).unwrap();
        assert_eq!((lane, tag(&first)), (Lane::Client, 1));
        ends.consensus.send(batch(0, &[9])).unwrap();
        assert!(inbox.next_due(&inputs).is_none(), "the vote goes first");
        assert!(matches!(inbox.next(&inputs, NOW), Input::Consensus(_)));
        assert_eq!(tag(&inbox.next_due(&inputs).unwrap().1), 2);
        assert_eq!(tag(&inbox.next_due(&inputs).unwrap().1), 3);
        assert!(inbox.next_due(&inputs).is_none());
    }

    #[test]
    fn no_new_client_batch_is_taken_while_requests_are_due() {
        let (inputs, ends) = inputs();
        let mut inbox = Inbox::default();
        ends.client.send(batch(0, &[1])).unwrap();
        ends.client.send(batch(1, &[2])).unwrap();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
        assert_eq!(inbox.due(), 1, "the second batch stays in its channel");
        assert_eq!(inputs.client.len(), 1);
        inbox.next_due(&inputs).unwrap();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
        assert_eq!(tag(&inbox.next_due(&inputs).unwrap().1), 2);
    }

    #[test]
    fn each_lane_is_put_back_in_its_own_order() {
        let (inputs, ends) = inputs();
        let mut inbox = Inbox::default();
        // Client batch 1 was verified before batch 0; the bulk lane numbers
        // its batches on its own.
        ends.client.send(batch(1, &[2])).unwrap();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
        assert_eq!(inbox.due(), 0, "batch 0 is still being verified");
        ends.bulk.send(batch(0, &[7])).unwrap();
        ends.client.send(batch(0, &[1])).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            if let Some((lane, incoming)) = inbox.next_due(&inputs) {
                seen.push((lane, tag(&incoming)));
            } else {
                assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
            }
        }
        let client: Vec<u8> = seen
            .iter()
            .filter(|(lane, _)| *lane == Lane::Client)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(client, [1, 2]);
        assert!(seen.contains(&(Lane::Bulk, 7)));
    }

    #[test]
    fn a_chain_without_a_peering_socket_reads_the_client_lane_alone() {
        let (mut inputs, ends) = inputs();
        inputs.consensus = never();
        inputs.bulk = never();
        drop((ends.consensus, ends.bulk));
        let mut inbox = Inbox::default();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Timeout));
        ends.client.send(batch(0, &[1])).unwrap();
        assert!(matches!(inbox.next(&inputs, NOW), Input::Requests));
    }
}

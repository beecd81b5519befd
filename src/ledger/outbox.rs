//! How the ledger thread sends: replies to the thread that owns the socket
//! a request came in on (the listener for the client sockets, the peering
//! thread for the peering socket), events to the listener, messages to the
//! connector, each with a wake-up on that thread's signal pair.

use crossbeam_channel::{Sender, TrySendError};
use rota_listener::{Family, Outgoing, Waker};
use rota_peer::wire::Reply;

use super::LedgerThread;
use super::edge::Effect;
use super::large::Large;

/// Queues `item` for a thread that sleeps in `poll` until woken. When the
/// queue is full the thread is woken first, so that it drains the queue
/// while this one waits.
fn send_waking<T>(queue: &Sender<T>, waker: &Waker, item: T) {
    match queue.try_send(item) {
        Ok(()) => {}
        Err(TrySendError::Full(item)) => {
            waker.wake();
            let _ = queue.send(item);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

impl LedgerThread {
    /// Wakes the listener, and the peering thread if it has answers to send.
    pub(super) fn wake(&mut self) {
        self.channels.listener_waker.wake();
        if std::mem::take(&mut self.peering_answered) {
            self.channels.peering_waker.wake();
        }
    }

    /// Queues a reply for the thread that owns the socket it came in on.
    pub(super) fn reply(&mut self, route: rota_listener::Route, reply: Reply) {
        let (queue, waker) = match route.family {
            Family::V4 | Family::V6 => (&self.channels.to_listener, &self.channels.listener_waker),
            Family::Peering => {
                self.peering_answered = true;
                (&self.channels.to_peering, &self.channels.peering_waker)
            }
        };
        send_waking(queue, waker, Outgoing::Reply { route, reply });
    }

    /// Queues a large reply (a `D` or `B`) for the thread that owns the
    /// socket it came in on, which sends its body without a copy.
    pub(super) fn reply_large(&mut self, route: rota_listener::Route, large: Large) {
        let Large { head, body } = large;
        let (queue, waker) = match route.family {
            Family::V4 | Family::V6 => (&self.channels.to_listener, &self.channels.listener_waker),
            Family::Peering => {
                self.peering_answered = true;
                (&self.channels.to_peering, &self.channels.peering_waker)
            }
        };
        send_waking(queue, waker, Outgoing::Large { route, head, body });
    }

    /// Hands what the edge produced on: events to the listener, input to
    /// the connector (woken once).
    pub(super) fn flush(&mut self) {
        let mut woke_connector = false;
        for effect in self.edge.take_effects() {
            match effect {
                Effect::Publish(published) => {
                    let topic = published.event.topic();
                    let body = published.to_json();
                    let outgoing = Outgoing::Publish { topic, body };
                    send_waking(
                        &self.channels.to_listener,
                        &self.channels.listener_waker,
                        outgoing,
                    );
                }
                Effect::Miner(input) => {
                    if let Some(miner) = &self.channels.to_miner
                        && miner.try_send(input).is_err()
                    {
                        log::debug!("the miner's queue is full: an input dropped");
                    }
                }
                Effect::Connector(input) => {
                    send_waking(
                        &self.channels.to_connector,
                        &self.channels.connector_waker,
                        input,
                    );
                    woke_connector = true;
                }
            }
        }
        if woke_connector {
            self.channels.connector_waker.wake();
        }
    }
}

//! What the clients were told, and the end of the run: the invariants that
//! are judged from outside the servers.
//!
//! An answer to a client is kept in the trace; a status answer from an
//! honest server goes to the checker ([`crate::invariants::Checker::status`]),
//! and a refused payment is judged for timeliness: after the heal, a good
//! payment sent straight to the alpha of the slot, well inside its window,
//! by a client whose clock is within its bound, may be refused only for
//! what it asks (funds, a duplicate, a full round) or while that alpha is
//! catching up. At the end of the run, liveness: some round closed by an
//! honest server after the heal is committed on every honest server.

use rota::ledger::edge::Response;
use rota_connector::machine::State;
use rota_peer::{Millis, ServerId};

use crate::clients::{Asked, Clients, Told};
use crate::invariants::Invariant;
use crate::network::{Endpoint, Payload};
use crate::server::Life;
use crate::world::World;

/// Refusals a timely payment may get: the words of the rules that judge
/// what it asks, not when it came (PROTOCOL.md §7.3 quotes them).
const FAIR_REFUSALS: [&str; 4] = [
    "balance",
    "already in the round",
    "round is full",
    "catching up",
];

impl World {
    /// An answer to client request `n`.
    pub(crate) fn client_answer(&mut self, n: usize, from: Endpoint, payload: Payload) {
        let Payload::Answer(Response::Reply(reply)) = payload else {
            return;
        };
        let told = Clients::told(&reply);
        *self.clients.tally.entry(told.word()).or_default() += 1;
        let asked = self.clients.asked[n];
        let (index, server) = match asked {
            Asked::Submit { index, server, .. } | Asked::Status { index, server } => {
                (index, server)
            }
        };
        let id = self.clients.payments[index].tx.id();
        let (step, now) = (self.step, self.now);
        self.trace.note(step, now, || {
            format!("{from}->c{n} {} told {told:?}", id.short())
        });
        let srv = &self.servers[server.index()];
        if !srv.honest {
            return;
        }
        match (told, asked) {
            (Told::Status(status), _) => {
                // A server that went down since it answered cannot be read.
                let result = match srv.node() {
                    Some(node) => self.checker.status(server, id, status, &node.edge),
                    None => Ok(()),
                };
                if let Err(v) = result {
                    self.fail(v.invariant, v.detail);
                }
            }
            (Told::Refused(text), Asked::Submit { at, fresh, .. }) => {
                if fresh && self.timely(index, server, at) && !fair(&text) {
                    let detail = format!(
                        "s{server}, the alpha of the slot, refused {} sent {} ms into its \
                         window: {text}",
                        id.short(),
                        at - self.setup.schedule.start(self.setup.schedule.slot_at(at))
                    );
                    self.fail(Invariant::Timely, detail);
                }
            }
            (Told::Refused(_), Asked::Status { .. })
            | (Told::Disposition(_) | Told::Other(_), _) => {}
        }
    }

    /// Whether payment `index`, sent at true time `at` to `server`, came on
    /// time: after the heal, good, to the alpha of the slot, in sync, well
    /// inside its window (and still inside it now), from a client whose
    /// clock is off by less than the tolerance.
    fn timely(&self, index: usize, server: ServerId, at: Millis) -> bool {
        let schedule = &self.setup.schedule;
        let margin = self.p.tolerance_ms;
        let slot = schedule.slot_at(at);
        let window = schedule.start(slot) + margin..schedule.close(slot).saturating_sub(margin);
        let alpha_in_sync = match &self.servers[server.index()].life {
            Life::Up(node) => node.edge.connector() == State::Sampling,
            Life::Down | Life::Stopped(_) => false,
        };
        self.healed
            && at >= self.heal_at
            && self.p.client_skew_ms < self.p.tolerance_ms
            && self.clients.payments[index].bad.is_none()
            && schedule.alpha(slot) == server
            && window.contains(&at)
            && window.contains(&self.now)
            && alpha_in_sync
    }

    /// Judges liveness at the end of the run.
    pub(crate) fn finish(&mut self) {
        let heal_slot = self.heal_at / self.p.slot_ms;
        let first = self.decided.range(heal_slot + 1..).next().copied();
        for server in &self.servers {
            if !server.honest {
                continue;
            }
            let detail = match (&server.life, first) {
                (Life::Down, _) => Some("is down".to_string()),
                (Life::Stopped(reason), _) => Some(format!("is stopped: {reason}")),
                (Life::Up(_), None) => Some(format!(
                    "and every honest server: no round an honest server closed after the heal \
                     at slot {heal_slot} has committed"
                )),
                (Life::Up(node), Some(round)) => {
                    let committed = node.edge.core().committed().slot;
                    (committed < round).then(|| {
                        format!(
                            "has not committed round {round}, closed and committed by its honest \
                             beta after the heal (its last is slot {committed}, connector {})",
                            node.edge.connector().name()
                        )
                    })
                }
            };
            if let Some(detail) = detail {
                let id = server.id;
                self.fail(
                    Invariant::Liveness,
                    format!("{} slots after the heal, s{id} {detail}", self.p.heal_slots),
                );
                return;
            }
        }
    }
}

/// Whether a refusal judges what the payment asks rather than when it came.
fn fair(text: &str) -> bool {
    FAIR_REFUSALS.iter().any(|words| text.contains(words))
}

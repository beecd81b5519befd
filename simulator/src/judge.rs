//! The invariants judged from outside the servers: what they sign and
//! publish, when they stop, what the clients were told, and the end of the
//! run.
//!
//! - **What they sign** ([`Invariant::OneVote`]): every header an honest
//!   server sends as the alpha of its slot, and every prevote and
//!   precommit it signs, goes to the checker as it leaves; evidence an
//!   honest server publishes must name a dishonest alpha.
//! - **When they stop** ([`Invariant::NoStop`]): an honest server may stop
//!   only when it cannot reach a majority. It broke the rule if, for the
//!   `missed-heartbeats + 1` heartbeats before it stopped, a majority of
//!   honest servers (itself among them) were up, on its side of any
//!   partition, and linked to it by a network that lost no message between
//!   them and held none late.
//! - **What clients were told**: a status answer from an honest server
//!   goes to the checker ([`crate::invariants::Checker::status`]), and a
//!   refused payment is judged for timeliness: after the heal, a good
//!   payment sent straight to the alpha of the slot, well inside its
//!   window, by a client whose clock is within its bound, to an alpha whose
//!   own clock is within the bound that leaves, may be refused only for
//!   what it asks (funds, a duplicate, a full round) or while that alpha is
//!   catching up.
//! - **The end**, liveness: some round closed by an honest server after the
//!   heal is committed on every honest server.

use rota::events::{Event as Published, Outcome};
use rota::ledger::edge::{Exit, Response};
use rota_connector::machine::State;
use rota_connector::machine::clock::skew;
use rota_peer::transaction::VerifiedTx;
use rota_peer::wire::{PeerMessage, majority};
use rota_peer::{Millis, ServerId};

use crate::clients::{Asked, Clients, Told};
use crate::invariants::{Invariant, Signed};
use crate::network::{Endpoint, Payload};
use crate::server::{Life, SimServer};
use crate::world::{Event, World};

/// Refusals a timely payment may get: the words of the rules that judge
/// what it asks, not when it came (PROTOCOL.md §7.3 quotes them).
const FAIR_REFUSALS: [&str; 4] = [
    "balance",
    "already in the round",
    "round is full",
    "catching up",
];

/// How far a server's estimate of its skew may be off the true one: half a
/// round trip (at most 15 ms after the heal, whose delays are at most 30
/// ms), drift over a few heartbeats.
const SKEW_SLACK_MS: u64 = 100;

impl World {
    /// What an honest server signs, for the one-vote check: its header as
    /// the alpha of a slot, its prevotes and precommits. (A round it sends
    /// on to a server that asked for it is not its own header.)
    pub(crate) fn observe(&mut self, id: ServerId, message: &PeerMessage<VerifiedTx>) {
        let (signed, slot, digest) = match message {
            PeerMessage::Round { header, .. } if self.setup.schedule.alpha(header.slot()) == id => {
                (Signed::Header, header.slot(), header.digest())
            }
            PeerMessage::Prevote(p) if p.vote.signer == id => {
                (Signed::Vote, p.vote.slot, p.vote.digest)
            }
            PeerMessage::Precommit(p) if p.vote.signer == id => {
                (Signed::Vote, p.vote.slot, p.vote.digest)
            }
            PeerMessage::Round { .. }
            | PeerMessage::Prevote(_)
            | PeerMessage::Precommit(_)
            | PeerMessage::Register(_)
            | PeerMessage::Heart(_)
            | PeerMessage::Mine(_)
            | PeerMessage::Certified(_)
            | PeerMessage::Evidence(_)
            | PeerMessage::Want { .. }
            | PeerMessage::Forward { .. } => return,
        };
        let voted = &mut self.voted[id.index()];
        *voted = (*voted).max(slot);
        if self.server(id).honest
            && let Err(v) = self.checker.signed(id, signed, slot, digest)
        {
            self.fail(v.invariant, v.detail);
        }
    }

    /// An event a server published: committed rounds are counted, and
    /// evidence from an honest server must name a dishonest alpha.
    pub(crate) fn published(&mut self, id: ServerId, honest: bool, event: Published) {
        let (step, now) = (self.step, self.now);
        self.trace
            .detail(step, now, || format!("s{id} event {event:?}"));
        if !honest {
            return;
        }
        match event {
            Published::Round {
                slot,
                outcome: Outcome::Committed,
                beta,
                hash,
                ..
            } => {
                self.committed_slots.insert(slot);
                if let Err(v) = self.checker.round(id, slot, hash) {
                    self.fail(v.invariant, v.detail);
                }
                // The beta's own word on its round: it closed it, and the
                // round committed.
                if beta == id {
                    self.decided.insert(slot);
                }
            }
            Published::Evidence { slot, alpha } => {
                self.evidence += 1;
                if self.server(alpha).honest {
                    self.fail(
                        Invariant::OneVote,
                        format!(
                            "s{id} holds evidence that s{alpha}, an honest server, signed two \
                             headers for slot {slot}"
                        ),
                    );
                }
            }
            Published::Round { .. }
            | Published::Tx { .. }
            | Published::Seal { .. }
            | Published::Found { .. }
            | Published::Leader { .. }
            | Published::Block { .. }
            | Published::Peer { .. }
            | Published::Connector { .. }
            | Published::Role { .. }
            | Published::Stop { .. } => {}
        }
    }

    /// A server's ledger ended: stopped (judged), or down (to restart).
    pub(crate) fn exited(&mut self, id: ServerId, exit: Exit) {
        let (step, now) = (self.step, self.now);
        self.trace
            .note(step, now, || format!("s{id} EXIT {exit:?}"));
        match exit {
            Exit::ConsensusLost(reason) => {
                // A halt is an honest ledger disagreeing with a commit
                // certificate: two commits conflict, whatever the network.
                if self.server(id).honest && self.server(id).halted {
                    self.fail(Invariant::Prefix, format!("s{id} halted: {reason}"));
                }
                // After the heal the operator restarts a stopped server,
                // as at the heal.
                if self.healed {
                    let back = now
                        + self
                            .rngs
                            .crash
                            .range(self.p.restart_min_ms, self.p.restart_max_ms);
                    self.at(back, Event::Restart(id));
                }
                if self.server(id).honest
                    && let Some(talking) = self.could_talk(id)
                {
                    self.fail(
                        Invariant::NoStop,
                        format!(
                            "s{id} stopped ({reason}) while {talking} could reach it for the \
                             last {} ms, no message between them lost or late",
                            self.grace()
                        ),
                    );
                }
            }
            Exit::Failed(_) | Exit::Shutdown => {
                self.faults.crashes += 1;
                if self.armed[id.index()] == Some(true) {
                    self.faults.torn += 1;
                }
                let back = now
                    + self
                        .rngs
                        .crash
                        .range(self.p.restart_min_ms, self.p.restart_max_ms);
                self.at(back, Event::Restart(id));
            }
        }
        self.update_quorum();
    }

    /// How long a server must have been able to talk to a majority for its
    /// stop to break [`Invariant::NoStop`]: the heartbeats it may miss, and
    /// one more.
    fn grace(&self) -> u64 {
        u64::from(self.p.missed_heartbeats + 1) * self.p.heartbeat_ms
    }

    /// The honest servers (`id` among them) that could reach `id` through
    /// the whole grace before now, named, if they are a majority.
    fn could_talk(&self, id: ServerId) -> Option<String> {
        let since = self.now.checked_sub(self.grace())?;
        let talking: Vec<String> = self
            .servers
            .iter()
            .filter(|s| {
                s.honest
                    && (s.id == id
                        || self.together[id.index()][s.id.index()].is_some_and(|t| t <= since)
                            && self.network.impaired(id, s.id).is_none_or(|at| at < since))
            })
            .map(|s| format!("s{}", s.id))
            .collect();
        (talking.len() >= majority(self.servers.len())).then(|| talking.join(", "))
    }

    /// Recomputes, for every pair of servers, since when both have been up
    /// and on one side of any partition.
    pub(crate) fn update_quorum(&mut self) {
        let n = self.servers.len();
        for i in 0..n {
            for j in 0..n {
                let a = &self.servers[i];
                let b = &self.servers[j];
                let together = a.is_up()
                    && b.is_up()
                    && self
                        .network
                        .connected(Endpoint::Server(a.id), Endpoint::Server(b.id));
                let since = &mut self.together[i][j];
                *since = match (together, *since) {
                    (true, Some(t)) => Some(t),
                    (true, None) => Some(self.now),
                    (false, _) => None,
                };
            }
        }
    }

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
    /// clock and the alpha's are off by less than the tolerance together
    /// (an alpha whose own clock is further off is outside the bound the
    /// windows assume, and refuses with the offset it sees). The heal undoes
    /// clock jumps, and a server learns that its clock is back in line only
    /// from the answers to its heartbeats, whose timer runs on its clock: a
    /// clock set back by the heal fires it up to the jump later, and the
    /// server may sit its window out until then and a heartbeat's answers
    /// after (connector/src/machine/clock.rs).
    fn timely(&self, index: usize, server: ServerId, at: Millis) -> bool {
        let schedule = &self.setup.schedule;
        let margin = self.p.tolerance_ms;
        let slot = schedule.slot_at(at);
        let window = schedule.start(slot) + margin..schedule.close(slot).saturating_sub(margin);
        let alpha = &self.servers[server.index()];
        let alpha_in_sync = match &alpha.life {
            Life::Up(node) => node.edge.connector() == State::Sampling,
            Life::Down | Life::Stopped(_) => false,
        };
        let off = |t: Millis| alpha.clock.local(t).abs_diff(t);
        let alpha_off = off(at).max(off(self.now));
        // Past the tolerance (less the estimate's error) it sits its
        // window out, saying so, and takes it again within four fifths.
        let in_line = self.in_line(self.skews(server).1);
        self.healed
            && at >= self.heal_at + 2 * self.p.heartbeat_ms + self.p.jump_max_ms
            && self.p.client_skew_ms + alpha_off < self.p.tolerance_ms
            && in_line
            && self.clients.payments[index].bad.is_none()
            && schedule.alpha(slot) == server
            && window.contains(&at)
            && window.contains(&self.now)
            && alpha_in_sync
    }

    /// Whether a skew is one a server must take its slots with: within the
    /// four fifths of the tolerance at which one that sat out rejoins
    /// (`clock::sits_out`), less the estimate's error.
    fn in_line(&self, skew: i64) -> bool {
        skew.unsigned_abs() + SKEW_SLACK_MS < self.p.tolerance_ms * 4 / 5
    }

    /// Server `id`'s skew as the node works it out, from the clocks of the
    /// servers up: its clock minus their median, as the smallest and the
    /// largest it can be in size. They are the same, the true skew, unless
    /// the dishonest server (another; up or lately down) lies about its clock: its
    /// offset can then be anything, and the median with it lies between
    /// bounds that one of a few offsets reaches (far below and far above
    /// every other, zero, each other offset and either side of it: the
    /// median of an even count, the one nearer zero of the middle two, is
    /// the liar's own offset only when that is nearer zero).
    fn skews(&self, id: ServerId) -> (i64, i64) {
        let own = self.servers[id.index()].clock.local(self.now) as i64;
        let offset = |s: &SimServer| s.clock.local(self.now) as i64 - own;
        let up = |s: &&SimServer| s.is_up();
        let liar = (self.p.lie_clock > 0.0)
            .then(|| {
                // Down, the offset it last told may still count for a while
                // (the median without it is within the same bounds).
                self.servers.iter().position(|s| !s.honest && s.id != id)
            })
            .flatten();
        let Some(liar) = liar else {
            let skew = skew(self.servers.iter().filter(up).map(offset).collect());
            return (skew, skew);
        };
        let others: Vec<i64> = (self.servers.iter().enumerate())
            .filter(|(i, s)| *i != liar && s.is_up())
            .map(|(_, s)| offset(s))
            .collect();
        let far = i64::from(u32::MAX);
        let mut told = vec![-far, far, 0];
        told.extend(others.iter().flat_map(|o| [o - 1, *o, o + 1]));
        let sizes = told.into_iter().map(|lie| {
            let mut offsets = others.clone();
            offsets.push(lie);
            skew(offsets)
        });
        let (low, high) = sizes.fold((i64::MAX, 0), |(low, high), s| {
            let size = s.saturating_abs();
            (low.min(size), high.max(size))
        });
        (low, high)
    }

    /// At each slot after the heal has settled (the heal sets jumped clocks
    /// back, and a server reads its skew from its heartbeats' answers, on
    /// timers its own clock runs): every honest server in sync says it sits
    /// out when its clock is off the servers up by more than the
    /// tolerance, and takes its slots when within four fifths of it, 100
    /// ms left to the estimate either way.
    pub(crate) fn watch_clocks(&mut self) {
        let settled = self.heal_at + 3 * self.p.heartbeat_ms + self.p.jump_max_ms;
        if !self.healed || self.now < settled {
            return;
        }
        let tolerance = self.p.tolerance_ms;
        for index in 0..self.servers.len() {
            let server = &self.servers[index];
            let Life::Up(node) = &server.life else {
                continue;
            };
            if !server.honest || node.edge.connector() != State::Sampling {
                continue;
            }
            let says = node.edge.clocks().sitting_out;
            let id = ServerId::from_index(index);
            let (least, most) = self.skews(id);
            let skew = if says { least } else { most };
            let off = least.unsigned_abs() > tolerance + SKEW_SLACK_MS;
            let in_line = self.in_line(most);
            if off && says {
                self.sat_out += 1;
            }
            if (off && !says) || (in_line && says) {
                let detail = format!(
                    "s{id}'s clock is {skew} ms off the median of the servers up (tolerance \
                     {tolerance} ms), and it says it {} its alpha slots out",
                    if says { "sits" } else { "does not sit" }
                );
                self.fail(Invariant::ClockWatch, detail);
                return;
            }
        }
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
        self.finish_sealing(heal_slot);
    }

    /// Judges sealing at the end of the run: on a sealed chain, every
    /// block an honest server holds that a round before the heal made is
    /// sealed there (its certified sealed height covers it).
    fn finish_sealing(&mut self, heal_slot: u64) {
        if self.p.difficulty == 0 {
            return;
        }
        for server in &self.servers {
            let (true, Life::Up(node)) = (server.honest, &server.life) else {
                continue;
            };
            let sealed = node.edge.core().sealing().sealed();
            let store = node.edge.store();
            let first = sealed + 1;
            let made = store
                .block_slot(first)
                .ok()
                .filter(|_| first <= node.edge.tip().height);
            if let Some(slot) = made.filter(|slot| *slot <= heal_slot) {
                let id = server.id;
                let detail = format!(
                    "{} slots after the heal at slot {heal_slot}, s{id} has not sealed block \
                     {first}, made in slot {slot} (sealed height {sealed}, tip {})",
                    self.p.heal_slots,
                    node.edge.tip().height
                );
                self.fail(Invariant::Sealed, detail);
                return;
            }
        }
    }
}

/// Whether a refusal judges what the payment asks rather than when it came.
fn fair(text: &str) -> bool {
    FAIR_REFUSALS.iter().any(|words| text.contains(words))
}

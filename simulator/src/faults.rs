//! Drawing the faults and the clients' actions, slot by slot, and the heal.
//!
//! At the start of every slot the run draws, each from its own stream: the
//! client payments and queries of the slot (at random moments in it); and,
//! during the fault phase, a partition, each server's crash and clock jump,
//! and the dishonest server's replay. Network faults are drawn per message
//! by the network itself.
//!
//! A crash falls at once, or before one of the server's next few durable
//! writes (the disk refuses every write from there on; the ledger stops
//! when its persist fails, and a file write at that point may be torn).
//! With `--crash-in-vote false` a crash waits while the server has voted
//! in a round it has not committed.
//!
//! Adding a fault: a knob in `profile.rs`, a draw here (or in the network),
//! a count in [`crate::world::Faults`], and a line in docs/SIMULATOR.md.

use rota_connector::machine::State;
use rota_peer::wire::Request;
use rota_peer::{ServerId, Slot};

use crate::clients::Asked;
use crate::network::{Ask, Endpoint, Payload};
use crate::server::Life;
use crate::world::{Event, World};

impl World {
    /// A slot begins: draw its client actions and, before the heal, faults.
    pub(crate) fn slot(&mut self, slot: Slot) {
        let start = self.now;
        let slot_ms = self.p.slot_ms;
        let (payments, queries) = (self.p.payments, self.p.queries);
        for (mean, event) in [(payments, Event::Submit), (queries, Event::Query)] {
            let count = mean.floor() as u64 + u64::from(self.rngs.clients.chance(mean.fract()));
            for _ in 0..count {
                let at = start + self.rngs.clients.below(slot_ms);
                self.at(at, event.clone());
            }
        }
        self.at(start + slot_ms, Event::Slot(slot + 1));
        self.replay();
        self.watch_clocks();
        if self.healed {
            return;
        }
        let n = self.servers.len();
        if n >= 2
            && !self.bounded
            && !self.network.partitioned()
            && self.rngs.partition.chance(self.p.partition_rate)
        {
            let mut sides: Vec<bool> = (0..n).map(|_| self.rngs.partition.chance(0.5)).collect();
            if sides.iter().all(|s| *s == sides[0]) {
                let flip = self.rngs.partition.index(n);
                sides[flip] = !sides[flip];
            }
            self.network.partition(sides);
            self.faults.partitions += 1;
            let lasts = self
                .rngs
                .partition
                .range(self.p.heartbeat_ms, self.p.partition_max_ms);
            self.at(self.now + lasts, Event::EndPartition);
            let (step, now, shape) = (self.step, self.now, self.network.describe());
            self.trace.note(step, now, || format!("PARTITION {shape}"));
            self.update_quorum();
        }
        for i in 0..n {
            let id = ServerId::from_index(i);
            // Within the bound, honest servers neither crash nor jump.
            let shielded = self.bounded && self.servers[i].honest;
            if self.rngs.crash.chance(self.p.crash_rate) && !shielded {
                let at = start + self.rngs.crash.below(slot_ms);
                self.at(at, Event::Crash(id));
            }
            if self.rngs.clock.chance(self.p.jump_rate) && !shielded {
                let at = start + self.rngs.clock.below(slot_ms);
                self.at(at, Event::Jump(id));
            }
        }
    }

    /// The dishonest server, if up, may replay one of its old messages.
    fn replay(&mut self) {
        let n = self.servers.len();
        let replay = match self.liar.as_mut() {
            Some(liar) if self.servers[liar.id.index()].is_up() => liar
                .replay(n, &self.p)
                .map(|(to, slot, message)| (liar.id, to, slot, message)),
            _ => None,
        };
        if let Some((liar, to, slot, message)) = replay {
            let payload = Payload::Ask(Ask::Peer {
                slot,
                message: Box::new(message),
            });
            self.send(Endpoint::Server(liar), Endpoint::Server(to), payload);
        }
    }

    /// A client submits a payment to a random server.
    pub(crate) fn submit(&mut self) {
        let (index, fresh) = self
            .clients
            .next_payment(self.now, &self.p, &mut self.rngs.clients);
        let server = ServerId::from_index(self.rngs.clients.index(self.servers.len()));
        let n = self.clients.ask(Asked::Submit {
            index,
            server,
            at: self.now,
            fresh,
        });
        let tx = self.clients.payments[index].tx;
        let payload = Payload::Ask(Ask::Submit(tx));
        self.send(Endpoint::Client(n), Endpoint::Server(server), payload);
    }

    /// A client asks a random server after a random earlier payment.
    pub(crate) fn query(&mut self) {
        if self.clients.payments.is_empty() {
            return;
        }
        let index = self.rngs.clients.index(self.clients.payments.len());
        let server = ServerId::from_index(self.rngs.clients.index(self.servers.len()));
        let n = self.clients.ask(Asked::Status { index, server });
        let id = self.clients.payments[index].tx.id();
        let payload = Payload::Ask(Ask::Query(Request::Status(id)));
        self.send(Endpoint::Client(n), Endpoint::Server(server), payload);
    }

    /// Whether a server has voted in a round it has not committed.
    fn voting(&self, id: ServerId) -> bool {
        self.server(id)
            .node()
            .is_some_and(|node| self.voted[id.index()] > node.edge.core().committed().slot)
    }

    /// Servers down, armed to crash, or up and catching up (their
    /// connector not sampling).
    fn behind(&self) -> usize {
        self.servers
            .iter()
            .zip(&self.armed)
            .filter(|(s, armed)| match s.node() {
                None => true,
                Some(node) => armed.is_some() || node.edge.connector() != State::Sampling,
            })
            .count()
    }

    /// A crash: at once, or armed on the server's next durable writes.
    pub(crate) fn crash(&mut self, id: ServerId) {
        if self.healed || !self.server(id).is_up() {
            return;
        }
        if (!self.p.crash_in_vote && self.voting(id)) || self.behind() >= self.p.crash_max_behind {
            let later = self.now + self.rngs.crash.range(50, 500);
            self.at(later, Event::Crash(id));
            return;
        }
        let writes = self.rngs.crash.range(0, self.p.crash_writes_max);
        let (step, now) = (self.step, self.now);
        if writes == 0 {
            self.faults.crashes += 1;
            self.servers[id.index()].crash();
            self.trace.note(step, now, || format!("s{id} CRASHED"));
            let back = now
                + self
                    .rngs
                    .crash
                    .range(self.p.restart_min_ms, self.p.restart_max_ms);
            self.at(back, Event::Restart(id));
            self.update_quorum();
            return;
        }
        let torn = self.rngs.crash.chance(self.p.torn_rate);
        self.armed[id.index()] = Some(torn);
        let disk = &self.servers[id.index()].disk;
        if torn {
            let keep = self.rngs.crash.range(1, 200) as usize;
            disk.crash_after_torn(writes, keep);
        } else {
            disk.crash_after(writes);
        }
        self.trace.note(step, now, || {
            let how = if torn { ", tearing it" } else { "" };
            format!("s{id} will crash at its durable write {}{how}", writes)
        });
    }

    /// Restarts a crashed (or, at the heal, stopped) server from its disk.
    pub(crate) fn restart(&mut self, id: ServerId) {
        self.armed[id.index()] = None;
        let server = &self.servers[id.index()];
        let stopped = matches!(server.life, Life::Stopped(_));
        if server.is_up() || (stopped && !self.healed) {
            return;
        }
        let (step, now) = (self.step, self.now);
        self.trace.note(step, now, || format!("s{id} starts"));
        if let Some(reason) = self.servers[id.index()].damaged(&self.setup) {
            self.fail(
                crate::invariants::Invariant::Recovery,
                format!("s{id} restarted on a damaged store: {reason}"),
            );
            return;
        }
        match self.servers[id.index()].boot(&self.setup, now) {
            Ok(outs) => self.emit(id, outs),
            Err(reason) => {
                self.fail(
                    crate::invariants::Invariant::Recovery,
                    format!("s{id} cannot start: {reason}"),
                );
                return;
            }
        }
        self.reschedule(id);
        self.update_quorum();
        self.check(id);
    }

    /// A server's clock jumps.
    pub(crate) fn jump(&mut self, id: ServerId) {
        if self.healed {
            return;
        }
        self.faults.jumps += 1;
        let by = self.rngs.clock.signed(self.p.jump_max_ms);
        self.servers[id.index()].clock.jump(by);
        let (step, now) = (self.step, self.now);
        self.trace
            .note(step, now, || format!("s{id} clock jumps {by:+} ms"));
        self.reschedule(id);
    }

    /// The fault phase ends: the network is whole again, crash points are
    /// disarmed, clocks that jumped are set back (their starting offset and
    /// drift stay), and every server that is down or stopped is restarted.
    pub(crate) fn heal(&mut self) {
        self.healed = true;
        self.p = self.p.healed();
        self.network.heal();
        for (server, clock) in self.servers.iter_mut().zip(&self.clocks) {
            server.clock = *clock;
        }
        let (step, now) = (self.step, self.now);
        self.trace.note(step, now, || "HEAL: faults end".into());
        for i in 0..self.servers.len() {
            let server = &self.servers[i];
            if server.is_up() {
                server.disk.restart();
                self.armed[i] = None;
            } else {
                self.restart(ServerId::from_index(i));
            }
        }
        self.update_quorum();
    }
}

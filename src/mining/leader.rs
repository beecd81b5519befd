//! Who coordinates the nonce search: the live server with the lowest
//! identifier, passed on when a block stays unsealed too long.
//!
//! A server is live while its heartbeats arrive: one heard within
//! `missed` heartbeat intervals. This server counts itself live. The
//! leader is the live server with the lowest identifier (its position in
//! the conf's list). Two servers may briefly disagree (one has not yet
//! missed a heartbeat the other has): that wastes hashing and changes
//! nothing stored, since a seal proves itself.
//!
//! A leader that never seals (broken or dishonest) must not stop sealing:
//! while the oldest unsealed block waits for more than `handoff`
//! heartbeats, coordination passes to the next live server in order, and
//! again after each further `handoff` heartbeats, round the live servers.

use rota_peer::{Millis, ServerId};

/// The leader choice of one server.
#[derive(Clone, Debug)]
pub struct Leadership {
    me: ServerId,
    heartbeat_ms: u64,
    missed: u32,
    /// Heartbeats a block may stay unsealed before coordination moves on.
    handoff: u32,
    /// When each server was last heard from, by index.
    heard: Vec<Option<Millis>>,
    /// Since when the oldest block waiting for its seal has waited.
    unsealed_since: Option<Millis>,
}

impl Leadership {
    pub fn new(
        servers: usize,
        me: ServerId,
        heartbeat_ms: u64,
        missed: u32,
        handoff: u32,
    ) -> Leadership {
        Leadership {
            me,
            heartbeat_ms: heartbeat_ms.max(1),
            missed: missed.max(1),
            handoff: handoff.max(1),
            heard: vec![None; servers],
            unsealed_since: None,
        }
    }

    /// A heartbeat (or its answer) from `id` at `now`.
    pub fn heard(&mut self, id: ServerId, now: Millis) {
        if let Some(slot) = self.heard.get_mut(id.index()) {
            *slot = Some(slot.map_or(now, |t| t.max(now)));
        }
    }

    /// A block is waiting for its seal since `at` (the oldest one, if
    /// several), or none is (`None`: every block is sealed).
    pub fn unsealed_since(&mut self, at: Option<Millis>) {
        self.unsealed_since = at;
    }

    /// Whether server `id` is live at `now`.
    pub fn is_live(&self, id: ServerId, now: Millis) -> bool {
        if id == self.me {
            return true;
        }
        let window = self.heartbeat_ms.saturating_mul(u64::from(self.missed));
        self.heard
            .get(id.index())
            .copied()
            .flatten()
            .is_some_and(|t| now.saturating_sub(t) <= window)
    }

    /// The live servers at `now`, lowest identifier first.
    pub fn live(&self, now: Millis) -> Vec<ServerId> {
        (0..self.heard.len())
            .map(ServerId::from_index)
            .filter(|id| self.is_live(*id, now))
            .collect()
    }

    /// The server that coordinates the search at `now`: the lowest live
    /// one, moved on by one live server for each `handoff` heartbeats the
    /// oldest unsealed block has waited.
    pub fn leader(&self, now: Millis) -> ServerId {
        let live = self.live(now);
        let waited = self
            .unsealed_since
            .map_or(0, |since| now.saturating_sub(since));
        let turn = waited / self.heartbeat_ms.saturating_mul(u64::from(self.handoff));
        let turn = usize::try_from(turn).unwrap_or(usize::MAX) % live.len();
        live[turn]
    }

    /// Whether this server coordinates at `now`.
    pub fn leads(&self, now: Millis) -> bool {
        self.leader(now) == self.me
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: u64 = 5_000;

    fn id(n: u32) -> ServerId {
        ServerId(n)
    }

    /// Server `me` of five, hearing every other server at `now`.
    fn all_heard(me: u32, now: Millis) -> Leadership {
        let mut l = Leadership::new(5, id(me), HEARTBEAT, 3, 4);
        for n in 1..=5 {
            l.heard(id(n), now);
        }
        l
    }

    #[test]
    fn the_lowest_live_server_leads_and_every_server_agrees() {
        for me in 1..=5 {
            let l = all_heard(me, 0);
            assert_eq!(l.leader(1_000), id(1), "seen from server {me}");
            assert_eq!(l.leads(1_000), me == 1);
        }
    }

    #[test]
    fn a_silent_server_stops_leading_after_its_missed_heartbeats_and_leads_again_when_heard() {
        let mut l = all_heard(3, 0);
        // Server 1 goes quiet; the others keep beating.
        let mut now = 0;
        let mut leaders = Vec::new();
        for beat in 1..=5 {
            now = beat * HEARTBEAT;
            for n in 2..=5 {
                l.heard(id(n), now);
            }
            leaders.push(l.leader(now).0);
        }
        assert_eq!(
            leaders,
            [1, 1, 1, 2, 2],
            "three heartbeats missed, then server 2"
        );
        // It flaps back: heard again, it leads again at once.
        l.heard(id(1), now + 10);
        assert_eq!(l.leader(now + 10), id(1));
        // This server itself is always live, even hearing no one.
        let alone = Leadership::new(5, id(4), HEARTBEAT, 3, 4);
        assert_eq!(alone.live(1_000_000), [id(4)]);
        assert!(alone.leads(1_000_000));
    }

    #[test]
    fn a_block_left_unsealed_passes_coordination_round_the_live_servers() {
        let mut l = all_heard(2, 0);
        l.heard(id(3), 0);
        // Server 3 is down: live are 1, 2, 4, 5.
        let mut now = 0;
        for beat in 1..=3 {
            now = beat * HEARTBEAT;
            for n in [1, 2, 4, 5] {
                l.heard(id(n), now);
            }
        }
        let since = now;
        l.unsealed_since(Some(since));
        let at = |heartbeats: u64| since + heartbeats * HEARTBEAT;
        let mut turns = Vec::new();
        for heartbeats in [0, 3, 4, 7, 8, 12, 16] {
            let t = at(heartbeats);
            for n in [1, 2, 4, 5] {
                l.heard(id(n), t);
            }
            turns.push(l.leader(t).0);
        }
        assert_eq!(
            turns,
            [1, 1, 2, 2, 4, 5, 1],
            "every four heartbeats, skipping server 3"
        );
        // Sealed: back to the lowest.
        l.unsealed_since(None);
        assert_eq!(l.leader(at(16)), id(1));
    }
}

//! `I`: this server's view of itself, from the core, the block tip, the
//! sockets' counters, the clocks and sealing.

use std::sync::atomic::Ordering;

use rota_peer::{Millis, ServerId};

use super::Edge;
use crate::events::PeerState;
use crate::info::{ClockView, Connections, Info, PeeringCounts};

impl Edge {
    /// This server's view of itself, for `I`.
    pub(super) fn info(&self, now: Millis) -> Info {
        let schedule = &self.core.schedule;
        let slot = schedule.slot_at(now);
        let committed = self.core.committed();
        let peers = self
            .core
            .peers()
            .iter()
            .map(|(id, alive)| (*id, PeerState::of(*alive)))
            .collect();
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: rota_peer::wire::PROTOCOL_VERSION,
            chain: self.chain.clone(),
            public_key: self.public_key,
            identifier: self.core.me,
            servers: self.core.servers.len(),
            slot,
            slot_ms: schedule.slot_ms,
            blackout_ms: schedule.blackout_ms,
            tolerance_ms: schedule.tolerance_ms,
            alpha: schedule.alpha(slot),
            window_open: schedule.window_open(now),
            role: self.core.role_at(now),
            height: self.tip.height,
            block_hash: self.tip.hash,
            balance_hash: committed.hash,
            committed_slot: committed.slot,
            accounts: committed.snapshot.len(),
            supply: committed.snapshot.supply(),
            pending: self.core.pending_count(),
            held: self.core.held_count(),
            connector: self.connector.into(),
            in_sync: self.core.is_synced(),
            peers,
            connections: Connections {
                open: self.stats.open.load(Ordering::Relaxed),
                accepted: self.stats.accepted.load(Ordering::Relaxed),
            },
            requests: self.stats.requests.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            peering: PeeringCounts {
                open: self.peering_stats.open.load(Ordering::Relaxed),
                accepted: self.peering_stats.accepted.load(Ordering::Relaxed),
                requests: self.peering_stats.requests.load(Ordering::Relaxed),
                refused: self.peering_stats.refused.load(Ordering::Relaxed),
            },
            uptime_ms: now.saturating_sub(self.started),
            params_hash: self.params.hash(),
            clock: ClockView {
                offsets: self
                    .clocks
                    .offsets
                    .iter()
                    .enumerate()
                    .filter_map(|(index, offset)| Some((ServerId::from_index(index), (*offset)?)))
                    .collect(),
                skew_ms: self.clocks.skew,
                sitting_out: self.clocks.sitting_out,
                others_sitting_out: self
                    .core
                    .peers_sitting_out()
                    .iter()
                    .map(|id| id.0)
                    .collect(),
            },
            mining: self.mining_info(),
        }
    }
}

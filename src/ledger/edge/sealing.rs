//! The edge's part in sealing: the core's window of blocks waiting for
//! their seals, filled from the store; `mine` messages, handed to the miner
//! thread (a leader's `sealed` is also offered to the window); the seals
//! this server's coordination found; and `I`'s mining section.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rota_peer::block::{BlockHeader, HEADER_LEN};
use rota_peer::seal::Seal;
use rota_peer::wire::Mining;
use rota_peer::{Hash, Millis, ServerId, Slot};

use super::{Edge, Effect};
use crate::events::Event;
use crate::info::MiningInfo;
use crate::ledger::core::PeerRefusal;
use crate::mining::thread::{MinerInput, MiningView};

/// The most seals served with fetched blocks that wait for their blocks.
const FETCHED_SEALS: usize = 4_096;

/// What the edge keeps for sealing and the live views.
#[derive(Default)]
pub(super) struct Sealed {
    /// What the miner thread shows, when the chain is sealed.
    view: Option<Arc<Mutex<MiningView>>>,
    /// The leader last published.
    published_leader: Option<ServerId>,
    /// The live servers each other server's last hello named.
    views: BTreeMap<u32, Vec<u32>>,
    /// Seals served with fetched blocks, kept until their blocks are
    /// stored.
    fetched_seals: BTreeMap<u64, (Hash, Seal)>,
}

impl Edge {
    /// Runs with a miner thread that shows `view`: the chain is sealed.
    pub fn with_mining(mut self, view: Arc<Mutex<MiningView>>) -> Edge {
        self.mining.view = Some(view);
        self.tell_miner();
        self
    }

    pub(super) fn for_miner(&mut self, input: MinerInput) {
        if self.mining.view.is_some() {
            self.effects.push(Effect::Miner(input));
        }
    }

    /// Reads into the core's sealing window the committed blocks it lacks
    /// and has room for (after a start, an install, a fetch, or when the
    /// sealed height moves past the blocks it held), then tells the miner
    /// which blocks wait. A block this server does not hold yet (it is
    /// catching up) is read once it is fetched.
    pub(super) fn fill_sealing(&mut self) {
        // A chain that is not sealed keeps no window.
        if self.core.schedule.difficulty == 0 {
            return;
        }
        if let Some((first, last)) = self.core.sealing().lacking() {
            let mut headers = Vec::new();
            for number in first..=last {
                match self.store.block(number) {
                    Ok(Some(bytes)) => {
                        if let Some(header) = bytes.first_chunk::<HEADER_LEN>() {
                            headers.push(BlockHeader::decode(header));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!("block {number} for sealing: {e}");
                        break;
                    }
                }
            }
            self.core.sealing_mut().fill(headers);
        }
        self.tell_miner();
    }

    /// Tells the miner which committed blocks wait for their seals.
    fn tell_miner(&mut self) {
        let waiting: Vec<BlockHeader> = self.core.sealing().waiting().copied().collect();
        self.for_miner(MinerInput::Waiting(waiting));
    }

    /// A `mine` message from server `from`, signed for `slot`: refused when
    /// that slot is far from this server's clock; a leader's seal is
    /// offered to the window (kept only if it proves a waiting block);
    /// then it goes to the miner.
    pub(super) fn on_mine(
        &mut self,
        from: ServerId,
        slot: Slot,
        message: Mining,
        now: Millis,
    ) -> Result<(), PeerRefusal> {
        let current = self.core.schedule.slot_at(now);
        if slot.abs_diff(current) > 2 {
            return Err(PeerRefusal::StaleStatus {
                command: rota_peer::wire::PeerCommand::Mine,
                slot,
                current,
            });
        }
        if let Mining::Sealed {
            number,
            block,
            seal,
        } = message
        {
            self.offer_seal(number, &block, seal, from, now);
        }
        self.for_miner(MinerInput::Message { from, message });
        Ok(())
    }

    /// Takes the seals this server's coordination found, and publishes a
    /// change of leader.
    pub(super) fn take_found(&mut self, now: Millis) {
        let Some(view) = &self.mining.view else {
            return;
        };
        let (found, leader) = {
            let mut view = view.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut view.found), view.leader)
        };
        let me = self.core.me;
        for (number, block, seal) in found {
            self.offer_seal(number, &block, seal, me, now);
        }
        if let Some(leader) = leader
            && self.mining.published_leader != Some(leader)
        {
            self.mining.published_leader = Some(leader);
            self.publish(Event::Leader { leader }, now);
        }
    }

    /// A seal of block `number` that `leader`'s search found: kept (and
    /// published) if it proves a block waiting here.
    fn offer_seal(
        &mut self,
        number: u64,
        block: &rota_peer::Hash,
        seal: rota_peer::seal::Seal,
        leader: ServerId,
        now: Millis,
    ) {
        if self.core.sealing_mut().offer(number, block, seal) {
            log::debug!(
                "block {number}: a seal found (nonce {}), for the next round",
                seal.nonce
            );
            let event = Event::Found {
                number,
                block: *block,
                nonce: seal.nonce,
                seal_time: seal.time,
                leader,
            };
            self.publish(event, now);
        }
    }

    /// The seal a server served with a block this server fetched (it
    /// proves the block): kept for a block this server's certificate says
    /// is sealed, once it holds that block with that id, if it holds no
    /// seal for it. A server that installed a database missed the rounds
    /// that carried the seals of the blocks before it. The seal comes as
    /// its block is checked, before the block is stored: it waits (at most
    /// [`FETCHED_SEALS`] of them) until the fetched blocks are.
    pub(super) fn keep_fetched_seal(
        &mut self,
        number: u64,
        block: &rota_peer::Hash,
        seal: rota_peer::seal::Seal,
    ) {
        if self.mining.fetched_seals.len() >= FETCHED_SEALS {
            self.mining.fetched_seals.pop_first();
        }
        self.mining.fetched_seals.insert(number, (*block, seal));
        self.keep_fetched_seals();
    }

    /// Stores the waiting fetched seals whose blocks are stored now, and
    /// that this server's certificate says are sealed (a block fetched
    /// early comes before the database it follows is installed).
    pub(super) fn keep_fetched_seals(&mut self) {
        let tip = self.tip.height.min(self.core.sealing().sealed());
        let ready: Vec<u64> = self
            .mining
            .fetched_seals
            .range(..=tip)
            .map(|(n, _)| *n)
            .collect();
        for number in ready {
            let Some((block, seal)) = self.mining.fetched_seals.remove(&number) else {
                continue;
            };
            let ours = matches!(self.store.block_hash(number), Ok(Some(hash)) if hash == block);
            if ours && matches!(self.store.seal(number), Ok(None)) {
                match self.store.put_seal(number, seal) {
                    Ok(()) => log::debug!("block {number}: its seal kept from a fetch"),
                    Err(e) => log::warn!("block {number}: its fetched seal not stored: {e}"),
                }
            }
        }
    }

    /// The live servers as this server sees them (the connector's word,
    /// and itself): what its hellos carry.
    pub(super) fn live(&self) -> Vec<ServerId> {
        let mut live: Vec<ServerId> = self
            .core
            .peers()
            .iter()
            .filter(|(_, alive)| **alive)
            .map(|(id, _)| *id)
            .chain([self.core.me])
            .collect();
        live.sort_unstable();
        live.dedup();
        live
    }

    /// Keeps the live servers server `from`'s hello named, for `I`.
    pub(super) fn note_view(&mut self, from: ServerId, live: &[ServerId]) {
        let view = live.iter().map(|id| id.0).collect();
        self.mining.views.insert(from.0, view);
    }

    /// `I`'s mining section.
    pub(super) fn mining_info(&self) -> MiningInfo {
        let sealing = self.core.sealing();
        let mut info = MiningInfo {
            difficulty: self.core.schedule.difficulty,
            sealed_height: sealing.sealed(),
            views: self.mining.views.clone(),
            ..MiningInfo::default()
        };
        if let Some(view) = &self.mining.view {
            let view = view.lock().unwrap_or_else(|e| e.into_inner());
            info.leader = view.leader.map(|id| id.0);
            info.live = view.live.iter().map(|id| id.0).collect();
            info.searching = view.target;
            info.hash_rate = view.rate;
            info.hashes = view.hashes;
        }
        info
    }
}

//! The committed blocks waiting for their seals, and the seals found for
//! them.
//!
//! Blocks are sealed in order (`consensus::seal`): the committed header
//! chain names the sealed height, and the next round may seal the block
//! after it. The ledger keeps the headers of the lowest [`WINDOW`]
//! committed blocks above the sealed height, so that the machine can check
//! a round's seal and the search can be handed its block; and the seals
//! found for them (by this server's search, or announced by a leader),
//! each checked against its block when it comes, so that the alpha puts a
//! good one in its round. A seal that does not prove its block, or comes
//! for a block not waiting here, is dropped.

use std::collections::BTreeMap;

use rota_peer::BlockNumber;
use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;

/// The most blocks above the sealed height whose headers are held. Rounds
/// seal one block each, so a round's seal is at most a few blocks above
/// the committed sealed height; blocks past the window are read from the
/// store as the window moves on.
pub const WINDOW: u64 = 64;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Sealing {
    /// The committed sealed height: blocks 1 to it are sealed.
    sealed: BlockNumber,
    /// The highest committed block.
    height: BlockNumber,
    /// Headers of committed blocks above `sealed`, at most [`WINDOW`].
    waiting: BTreeMap<BlockNumber, BlockHeader>,
    /// A seal found for each of those blocks that proves it.
    found: BTreeMap<BlockNumber, Seal>,
}

impl Sealing {
    /// The committed sealed height.
    pub fn sealed(&self) -> BlockNumber {
        self.sealed
    }

    /// The header of committed block `number`, if it waits for its seal.
    pub fn block(&self, number: BlockNumber) -> Option<&BlockHeader> {
        self.waiting.get(&number)
    }

    /// The blocks waiting for their seals, lowest first.
    pub fn waiting(&self) -> impl Iterator<Item = &BlockHeader> {
        self.waiting.values()
    }

    /// The seal found for `block`, if any.
    pub fn found(&self, block: &BlockHeader) -> Option<Seal> {
        self.found
            .get(&block.number)
            .copied()
            .filter(|seal| seal.proves(block))
    }

    /// A commit: the sealed height after it, the committed height, and the
    /// headers of the blocks it made (lowest first). Sealed blocks leave the
    /// window; new ones join it while there is room.
    pub fn committed(
        &mut self,
        sealed: BlockNumber,
        height: BlockNumber,
        blocks: impl IntoIterator<Item = BlockHeader>,
    ) {
        self.sealed = sealed;
        self.height = height;
        for block in blocks {
            if block.number > sealed && block.number <= sealed.saturating_add(WINDOW) {
                self.waiting.insert(block.number, block);
            }
        }
        self.waiting = self.waiting.split_off(&sealed.saturating_add(1));
        self.found = self.found.split_off(&sealed.saturating_add(1));
    }

    /// The committed blocks the window lacks and has room for, as a range
    /// of numbers to read from the store; `None` when it lacks none.
    pub fn lacking(&self) -> Option<(BlockNumber, BlockNumber)> {
        let last = self.height.min(self.sealed.saturating_add(WINDOW));
        let first = (self.sealed + 1..=last).find(|n| !self.waiting.contains_key(n))?;
        Some((first, last))
    }

    /// Headers read from the store to fill the window.
    pub fn fill(&mut self, blocks: impl IntoIterator<Item = BlockHeader>) {
        let top = self.sealed.saturating_add(WINDOW);
        for block in blocks {
            if block.number > self.sealed && block.number <= top {
                self.waiting.insert(block.number, block);
            }
        }
    }

    /// A seal found for block `number`: kept if that block waits here, has
    /// id `block`, and the seal proves it, and no seal is kept for it yet.
    /// Returns whether it was kept.
    pub fn offer(&mut self, number: BlockNumber, block: &rota_peer::Hash, seal: Seal) -> bool {
        let fits = self
            .waiting
            .get(&number)
            .is_some_and(|header| header.hash() == *block && seal.proves(header));
        if !fits || self.found.contains_key(&number) {
            return false;
        }
        self.found.insert(number, seal);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_peer::Hash;

    fn block(number: BlockNumber, difficulty: u32) -> BlockHeader {
        BlockHeader {
            number,
            previous: Hash([number as u8; 32]),
            slot: number * 3,
            timestamp: number * 3_000,
            merkle_root: Hash([1; 32]),
            balance_hash: Hash([2; 32]),
            difficulty,
            nonce: 0,
        }
    }

    fn seal_of(header: &BlockHeader) -> Seal {
        rota_peer::seal::search(header, 5, 1, u64::MAX).expect("a seal at low difficulty")
    }

    #[test]
    fn the_window_holds_the_lowest_unsealed_blocks_and_moves_on_with_the_sealed_height() {
        let mut sealing = Sealing::default();
        sealing.committed(0, 100, (1..=100).map(|n| block(n, 4)));
        assert_eq!(sealing.waiting().count(), WINDOW as usize);
        assert_eq!(sealing.lacking(), None);
        sealing.committed(10, 100, []);
        assert!(sealing.block(10).is_none());
        assert!(sealing.block(11).is_some());
        // Blocks 65 to 74 are now within the window and must be read.
        assert_eq!(sealing.lacking(), Some((65, 74)));
        sealing.fill((65..=80).map(|n| block(n, 4)));
        assert_eq!(sealing.lacking(), None);
        assert!(sealing.block(74).is_some() && sealing.block(75).is_none());
    }

    #[test]
    fn only_a_seal_that_proves_a_waiting_block_is_kept_and_the_first_stays() {
        let mut sealing = Sealing::default();
        let b1 = block(1, 6);
        sealing.committed(0, 2, [b1, block(2, 6)]);
        let good = seal_of(&b1);
        let bad = (good.time + 1..)
            .map(|time| Seal {
                nonce: good.nonce,
                time,
            })
            .find(|seal| !seal.proves(&b1))
            .unwrap();
        // Not proving, another id, a block not waiting: all dropped.
        assert!(!sealing.offer(1, &b1.hash(), bad));
        assert!(!sealing.offer(1, &Hash([9; 32]), good));
        assert!(!sealing.offer(3, &b1.hash(), good));
        assert!(sealing.offer(1, &b1.hash(), good));
        let other = rota_peer::seal::search(&b1, 6, 1, u64::MAX).unwrap();
        assert!(!sealing.offer(1, &b1.hash(), other), "the first seal stays");
        assert_eq!(sealing.found(&b1), Some(good));
        // Sealed by a commit: the block and its seal leave.
        sealing.committed(1, 2, []);
        assert_eq!(sealing.found(&b1), None);
        assert!(sealing.block(1).is_none());
    }
}

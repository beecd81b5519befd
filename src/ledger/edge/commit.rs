//! Persisting a commit: the blocks of its rounds that extend this
//! server's chain, then the store's commit point.

use rota_peer::block::{Block, Position};
use rota_peer::{BlockNumber, Hash, Millis};

use super::Edge;
use crate::events::Event;
use crate::ledger::core::{Commit, Committed, CommittedRound};
use crate::ledger::store::Tip;

impl Edge {
    /// Persists a commit: a block for each round with payments that extends
    /// this server's chain, the database, the certificate and the journal,
    /// in one commit point.
    pub(super) fn commit(&mut self, commit: Commit, now: Millis) -> crate::Result<()> {
        let blocks = blocks_of(self.tip, &commit.rounds);
        let seals: Vec<_> = commit.rounds.iter().filter_map(|r| r.seal).collect();
        let committed = Committed {
            slot: commit.slot,
            hash: commit.hash,
            snapshot: commit.snapshot.clone(),
        };
        self.store.commit(
            &committed,
            &blocks,
            commit.installed,
            commit.certified.as_ref(),
            &commit.journal,
            &seals,
        )?;
        for (number, seal) in &seals {
            log::info!(
                "block {number} sealed: nonce {}, seal time {}",
                seal.nonce,
                seal.time
            );
            let block = match self.store.block_hash(*number) {
                Ok(Some(hash)) => hash,
                _ => rota_peer::Hash::default(),
            };
            let event = Event::Seal {
                number: *number,
                block,
                nonce: seal.nonce,
                seal_time: seal.time,
            };
            self.publish(event, now);
        }
        for block in blocks {
            self.tip = Tip {
                height: block.header.number,
                hash: block.header.hash(),
            };
            log::info!(
                "block {} ({} payments) appended, hash {}",
                self.tip.height,
                block.transactions.len(),
                self.tip.hash.short()
            );
            let event = Event::Block {
                number: self.tip.height,
                hash: self.tip.hash,
                slot: block.header.slot,
                transactions: block.transactions.len(),
            };
            self.publish(event, now);
        }
        self.fill_sealing();
        // A commit or an install may have raised the sealed height over
        // blocks whose fetched seals wait.
        self.keep_fetched_seals();
        self.send_own();
        Ok(())
    }
}

/// The block of a committed round, if it has payments: the header its
/// certified round header fixes, its payments, and the proof that it is
/// committed. Every server in consensus builds the same header; the proof
/// may differ between servers, if different commit certificates reached
/// them.
pub fn build_block(round: &CommittedRound) -> Option<Block> {
    Some(Block {
        header: round.block?,
        transactions: round.transactions.iter().map(|tx| *tx.tx()).collect(),
        proof: round.proof.clone(),
    })
}

/// The blocks of a commit's rounds that extend this server's chain,
/// whose last block is `tip`. Each round's certified header fixes its block, number and previous
/// id included (`Header::block`), so a block is built only where it
/// follows this server's last one exactly:
/// - a block at or below the last one is already here (fetched from
///   another server while this one caught up; the store refuses a
///   fetched block that is not the certified one), and gets no second
///   copy;
/// - a block above the next one leaves a hole: this server's blocks
///   stop short of its state (it installed a database and has not
///   fetched them all), and it builds none until its connector has
///   fetched the rest. Numbering the next block as the missing one
///   forked the block store once (the simulator's `torn-fork` seed).
///
/// A server that commits rounds while it is catching up (after a
/// restart) builds their blocks like every other server, in sync or
/// not: skipping them left a hole its next block filled with the wrong
/// round (`blockless-commit`).
fn blocks_of(mut tip: Tip, rounds: &[CommittedRound]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for round in rounds {
        let Some(block) = build_block(round) else {
            continue;
        };
        let header = block.header;
        if header.number <= tip.height {
            continue;
        }
        if (header.number - 1, header.previous) != (tip.height, tip.hash) {
            log::info!(
                "block {} waits: this server's blocks stop at {}",
                header.number,
                tip.height
            );
            break;
        }
        tip = Tip {
            height: header.number,
            hash: header.hash(),
        };
        blocks.push(block);
    }
    blocks
}

/// The last block of a server whose last block is `tip` that the chain
/// position `after` (its commit certificate's) vouches for, as its status
/// reports it: its number and id. `block_hash` reads a stored block's id.
/// A block held past `after` is not reported; one that differs from the
/// certified block at its height is reported missing (the one below it is
/// the last), so that the connector fetches the certified one in its place.
pub(super) fn vouched_tip(
    tip: Tip,
    after: Position,
    block_hash: impl Fn(BlockNumber) -> Option<Hash>,
) -> (BlockNumber, Hash) {
    if tip.height < after.height || (tip.height, tip.hash) == (after.height, after.block) {
        return (tip.height, tip.hash);
    }
    let mut height = after.height;
    if block_hash(height) != Some(after.block) {
        log::error!(
            "block {height} here is not the one the commit certificate vouches for ({}): \
             reported missing, to be fetched again",
            after.block.short()
        );
        height = height.saturating_sub(1);
    }
    let id = match height {
        0 => Hash::default(),
        h => block_hash(h).unwrap_or_default(),
    };
    (height, id)
}

#[cfg(test)]
mod tests {
    use rota_peer::Hash;
    use rota_peer::block::BlockHeader;

    use super::*;

    /// A committed round of `slot`; with `block`, the block it makes.
    fn round(slot: u64, block: Option<(u64, Hash)>) -> CommittedRound {
        CommittedRound {
            slot,
            hash: Hash([slot as u8; 32]),
            block: block.map(|(number, previous)| BlockHeader {
                number,
                previous,
                slot,
                timestamp: slot * 1_000,
                merkle_root: Hash([0xaa; 32]),
                balance_hash: Hash([slot as u8; 32]),
                difficulty: 0,
                nonce: 0,
            }),
            seal: None,
            transactions: Vec::new(),
            proof: Vec::new(),
        }
    }

    fn numbers(blocks: &[Block]) -> Vec<u64> {
        blocks.iter().map(|b| b.header.number).collect()
    }

    #[test]
    fn a_commit_builds_the_blocks_that_follow_the_last_one_and_only_those() {
        let genesis = Tip::default();
        let first = round(10, Some((1, Hash::default())));
        let one = Tip {
            height: 1,
            hash: first.block.unwrap().hash(),
        };
        let empty = round(11, None);
        let second = round(12, Some((2, one.hash)));
        let rounds = [first.clone(), empty, second.clone()];
        // From the genesis: both blocks, the empty round making none.
        assert_eq!(numbers(&blocks_of(genesis, &rounds)), [1, 2]);
        // Block 1 fetched already: only block 2.
        assert_eq!(numbers(&blocks_of(one, &rounds)), [2]);
        // Both here: none again.
        let two = Tip {
            height: 2,
            hash: second.block.unwrap().hash(),
        };
        assert_eq!(numbers(&blocks_of(two, &rounds)), Vec::<u64>::new());
        // Blocks stopping short of the state (a database installed, block
        // 1 not fetched): block 2 waits, and takes no other number.
        assert_eq!(
            numbers(&blocks_of(genesis, std::slice::from_ref(&second))),
            Vec::<u64>::new()
        );
        // Another block 1 here than the certified one: block 2 does not
        // follow it, and waits for the certified one to be fetched.
        let other = Tip {
            height: 1,
            hash: Hash([0xee; 32]),
        };
        assert_eq!(numbers(&blocks_of(other, &[second])), Vec::<u64>::new());
    }

    #[test]
    fn a_status_reports_only_the_blocks_its_certificate_vouches_for() {
        let id = |n: u64| Hash([n as u8; 32]);
        let stored = |n: u64| (1..=5).contains(&n).then(|| id(n));
        let tip = |height: u64| Tip {
            height,
            hash: id(height),
        };
        let at = |height: u64, block: Hash| Position { height, block };
        // Behind the certified position (still fetching), or at it: as held.
        assert_eq!(vouched_tip(tip(2), at(4, id(4)), stored), (2, id(2)));
        assert_eq!(vouched_tip(tip(4), at(4, id(4)), stored), (4, id(4)));
        // Blocks held past it (fetched ahead of the state): not reported.
        assert_eq!(vouched_tip(tip(5), at(4, id(4)), stored), (4, id(4)));
        // Another block here at the certified height: reported missing,
        // the one below is the last; with none below, height 0.
        assert_eq!(vouched_tip(tip(4), at(4, id(9)), stored), (3, id(3)));
        assert_eq!(vouched_tip(tip(5), at(4, id(9)), stored), (3, id(3)));
        assert_eq!(
            vouched_tip(tip(1), at(1, id(9)), stored),
            (0, Hash::default())
        );
    }
}

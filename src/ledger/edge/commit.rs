//! Persisting a commit: the blocks of its rounds that extend this
//! server's chain, then the store's commit point.

use rota_peer::Millis;
use rota_peer::block::Block;

use super::Edge;
use crate::events::Event;
use crate::ledger::core::{Commit, Committed, CommittedRound};
use crate::ledger::store::Tip;

impl Edge {
    /// The blocks of a commit's rounds that extend this server's chain.
    /// Each round's certified header fixes its block, number and previous
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
    fn blocks_of(&self, commit: &Commit) -> Vec<Block> {
        let mut tip = self.tip;
        let mut blocks = Vec::new();
        for round in &commit.rounds {
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

    /// Persists a commit: a block for each round with payments that extends
    /// this server's chain, the database, the certificate and the journal,
    /// in one commit point.
    pub(super) fn commit(&mut self, commit: Commit, now: Millis) -> crate::Result<()> {
        let blocks = self.blocks_of(&commit);
        let committed = Committed {
            slot: commit.slot,
            hash: commit.hash,
            snapshot: commit.snapshot.clone(),
        };
        self.store.commit(
            commit.slot,
            &committed,
            &blocks,
            commit.installed,
            commit.certified.as_ref(),
            &commit.journal,
        )?;
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

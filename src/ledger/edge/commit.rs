//! Persisting a commit: the blocks of its rounds, built only when this
//! server's chain is in step with its committed state, then the store's
//! commit point.

use rota_peer::block::{Block, BlockHeader, HEADER_LEN, merkle_root};
use rota_peer::{Hash, Millis, Slot};

use super::Edge;
use crate::events::Event;
use crate::ledger::core::{Commit, Committed, CommittedRound};
use crate::ledger::store::Tip;

impl Edge {
    /// Whether this server's blocks reach the committed state `before`:
    /// its last block left that balance hash (with no block, `before` is
    /// the genesis's). Only then are the blocks of a commit built, whatever
    /// the connector's state:
    /// - a server that commits rounds while it is catching up (after a
    ///   restart) still builds their blocks, as every other server does;
    ///   skipping them left a hole its next block filled with the wrong
    ///   round (the simulator's `blockless-commit` seed);
    /// - a server whose blocks stop short of its state builds none until
    ///   it has fetched them, even in sync: a server that installed a
    ///   database and whose only source of the blocks was distrusted went
    ///   to sampling one block short, and numbered its next block as the
    ///   missing one (`torn-fork`). Its connector fetches the rest once a
    ///   trusted server shows more blocks.
    fn blocks_in_step(&self, before: Hash) -> crate::Result<bool> {
        if self.tip.height == 0 {
            return Ok(self.store.genesis_hash() == Some(before));
        }
        let Some(bytes) = self.store.block(self.tip.height)? else {
            return Ok(false);
        };
        let header: Option<&[u8; HEADER_LEN]> =
            bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok());
        Ok(header.is_some_and(|h| BlockHeader::decode(h).balance_hash == before))
    }

    /// The slot of the last block, if any.
    fn tip_slot(&self) -> crate::Result<Option<Slot>> {
        if self.tip.height == 0 {
            return Ok(None);
        }
        let Some(bytes) = self.store.block(self.tip.height)? else {
            return Ok(None);
        };
        let header: Option<&[u8; HEADER_LEN]> =
            bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok());
        Ok(header.map(|h| BlockHeader::decode(h).slot))
    }

    /// Persists a commit: a block for each round with payments (when the
    /// chain is in step), the database, the certificate and the journal, in one commit
    /// point.
    pub(super) fn commit(&mut self, commit: Commit, now: Millis) -> crate::Result<()> {
        let mut blocks = Vec::new();
        if self.blocks_in_step(commit.before)? {
            let mut tip = self.tip;
            // A round whose block came already, fetched from another server
            // while this one caught up, gets no second block.
            let fetched = self.tip_slot()?;
            let rounds = commit
                .rounds
                .iter()
                .filter(|r| !r.transactions.is_empty() && fetched.is_none_or(|slot| r.slot > slot));
            for round in rounds {
                let block = build_block(tip, round, self.core.schedule.start(round.slot));
                tip = Tip {
                    height: block.header.number,
                    hash: block.header.hash(),
                };
                blocks.push(block);
            }
        }
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

/// The block for a committed round: a pure function of the round and the
/// chain's tip, so every server in consensus builds the same header; the
/// proof at its end may differ between servers, if different commit
/// certificates reached them.
pub fn build_block(tip: Tip, round: &CommittedRound, timestamp: Millis) -> Block {
    let ids: Vec<_> = round.transactions.iter().map(|tx| tx.id()).collect();
    Block {
        header: BlockHeader {
            number: tip.height + 1,
            previous: tip.hash,
            slot: round.slot,
            timestamp,
            merkle_root: merkle_root(&ids),
            balance_hash: round.hash,
            difficulty: 0,
            nonce: 0,
        },
        transactions: round.transactions.iter().map(|tx| *tx.tx()).collect(),
        proof: round.proof.clone(),
    }
}

//! Seals in rounds: which block a round may seal, and whether its seal
//! proves it.
//!
//! Blocks are sealed in order. A header may carry the seal of the block
//! after its base's sealed height (`Header::sealing`), which the base's
//! chain of blocks must hold; the sealed height after it is one more
//! (`Header::sealed_after`), and each link of a header chain is checked
//! against the round below it (`chain.rs`). So a certified header chain
//! fixes, for every block, the one seal that counts: the first its chain
//! carries. A seal needs no agreement of its own and never holds a round
//! up: a round without one is as good as a round with one.
//!
//! A server prevotes a round carrying a seal only once the seal proves the
//! block, looked up in the round's own header chain or among the
//! committed blocks the ledger holds ([`Ledger::block`]); until it holds
//! that block it waits. A prevote certificate therefore holds the prevote
//! of at least one honest server that checked the seal, and a committed
//! seal proves its block.
//!
//! The alpha puts in its round the seal the ledger knows for the block
//! after its base's sealed height ([`Ledger::seal`]), if it knows one.

use rota_peer::block::BlockHeader;
use rota_peer::seal::Seal;
use rota_peer::wire::consensus::{Base, Header};
use rota_peer::{BlockNumber, Hash};

use super::{Ledger, Machine};

/// What a round's seal is worth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SealCheck {
    /// No seal, or one that proves its block.
    Good,
    /// The sealed block is not held here (yet).
    Unknown,
    /// The seal does not prove its block.
    Bad(String),
}

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// Block `number` of the chain below `base`: made by a round of the
    /// header chain down to the committed round, or a committed block the
    /// ledger holds.
    pub(super) fn chain_block(
        &self,
        base: &Base,
        number: BlockNumber,
        ledger: &impl Ledger<Payments = P>,
    ) -> Option<BlockHeader> {
        let shape = self.config.timing.schedule.shape();
        let mut digest: Hash = base.digest;
        while let Some(round) = self.rounds.get(&digest) {
            let header = &round.header.header;
            if header.slot <= self.committed.base.slot {
                break;
            }
            if let Some(block) = header.block(shape).filter(|b| b.number == number) {
                return Some(block);
            }
            digest = header.base.digest;
        }
        ledger.block(number)
    }

    /// Checks the seal `header` carries, if any.
    pub(super) fn check_seal(
        &self,
        header: &Header,
        ledger: &impl Ledger<Payments = P>,
    ) -> SealCheck {
        let (Some(seal), Some(number)) = (header.seal, header.sealing()) else {
            return SealCheck::Good;
        };
        if self.config.timing.schedule.difficulty == 0 {
            return SealCheck::Bad(
                "it carries a seal on a chain whose blocks are not sealed".into(),
            );
        }
        match self.chain_block(&header.base, number, ledger) {
            None => SealCheck::Unknown,
            Some(block) if seal.proves(&block) => SealCheck::Good,
            Some(block) => SealCheck::Bad(format!(
                "its seal (nonce {}, time {}) does not prove block {number} ({}) at difficulty {}",
                seal.nonce,
                seal.time,
                block.hash().short(),
                block.difficulty
            )),
        }
    }

    /// The seal this server's round on `base` carries: the one the ledger
    /// knows for the block after the base's sealed height, if it knows one
    /// and that block is in the base's chain. None on a chain that is not
    /// sealed (difficulty 0).
    pub(super) fn seal_for(&self, base: &Base, ledger: &impl Ledger<Payments = P>) -> Option<Seal> {
        if self.config.timing.schedule.difficulty == 0 || base.sealed >= base.chain.height {
            return None;
        }
        let block = self.chain_block(base, base.sealed + 1, ledger)?;
        ledger.seal(&block).filter(|seal| seal.proves(&block))
    }
}

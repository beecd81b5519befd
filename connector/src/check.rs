//! A fetched block's check: its proof against the conf, and every
//! payment's signature, split over the cores for a large block.

use rota_peer::block::{Block, Shape};
use rota_peer::transaction::{Transaction, Verifier};
use rota_peer::wire::ServerList;

/// A fetched block, taken only if it proves itself: its proof checks
/// against the conf (`chain`, `servers`, the chain's `shape`) and its round
/// makes exactly this block (number, previous id, slot, time, merkle root,
/// balance hash, difficulty), and every payment's signature checks.
/// Whether it extends this server's chain is the store's to check.
pub fn check_block(
    chain: &str,
    servers: &ServerList,
    shape: Shape,
    bytes: &[u8],
) -> rota_peer::Result<Block> {
    let block = Block::decode(bytes)?;
    block.verify(chain, servers, shape)?;
    if let Some(e) = first_bad_payment(chain, &block.transactions) {
        return Err(rota_peer::Error::Invalid(format!(
            "block {}: a payment does not check: {e}",
            block.header.number
        )));
    }
    Ok(block)
}

/// Payments of a block from which its check is split over the cores: a
/// catching-up server checks every payment of every block it fetches, and
/// on one thread that check was most of a catch-up's time.
const SPLIT_FROM: usize = 4_096;

/// Why the first payment of `txs` that does not check fails, if one does.
/// A large block's payments are checked in one batch per core, each on a
/// thread of its own.
fn first_bad_payment(chain: &str, txs: &[Transaction]) -> Option<rota_peer::Error> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    first_bad_payment_in(chain, txs, cores)
}

/// [`first_bad_payment`] in `parts` batches, each on a thread of its own
/// (one batch below [`SPLIT_FROM`] payments).
fn first_bad_payment_in(
    chain: &str,
    txs: &[Transaction],
    parts: usize,
) -> Option<rota_peer::Error> {
    let check = |part: &[Transaction]| {
        Verifier::new(chain)
            .verify_batch(part)
            .into_iter()
            .find_map(Result::err)
    };
    if txs.len() < SPLIT_FROM || parts < 2 {
        return check(txs);
    }
    let part = txs.len().div_ceil(parts);
    std::thread::scope(|scope| {
        let checks: Vec<_> = txs
            .chunks(part)
            .map(|chunk| scope.spawn(move || check(chunk)))
            .collect();
        checks
            .into_iter()
            .map(|c| c.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .find(Option::is_some)
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use rota_peer::keys::Keypair;
    use rota_peer::types::PublicKey;

    use super::*;

    fn payments(count: usize) -> Vec<Transaction> {
        let payer = Keypair::from_seed(&[3; 32]);
        (0..count)
            .map(|i| Transaction::sign("test", &payer, PublicKey([4; 32]), 1, 1_000 + i as u64))
            .collect()
    }

    /// A payment whose signature no longer checks.
    fn forge(tx: &Transaction) -> Transaction {
        let mut bytes = *tx.bytes();
        bytes[139] ^= 1;
        Transaction::decode(&bytes).expect("still 140 bytes")
    }

    #[test]
    fn a_forged_payment_is_found_in_a_block_checked_on_every_core() {
        // One part, two and three (whatever cores this machine has).
        for (count, parts) in [
            (10, 2),
            (SPLIT_FROM + 7, 1),
            (SPLIT_FROM + 7, 2),
            (SPLIT_FROM, 3),
        ] {
            let mut txs = payments(count);
            assert!(
                first_bad_payment_in("test", &txs, parts).is_none(),
                "{count}"
            );
            // Last, so that it sits in the last part when the check splits.
            let last = txs.len() - 1;
            txs[last] = forge(&txs[last]);
            assert!(
                first_bad_payment_in("test", &txs, parts).is_some(),
                "{count}"
            );
            assert!(
                first_bad_payment_in("other chain", &payments(count), parts).is_some(),
                "signed for another chain: {count}"
            );
        }
        assert!(first_bad_payment("test", &payments(3)).is_none());
    }
}

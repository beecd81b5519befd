//! Blocks: each committed round with transactions becomes one.
//!
//! ```text
//! header (132 bytes, integers big-endian)
//!      0   8  number                 first block is 1
//!      8  32  previous block hash    zero for block 1
//!     40   8  slot of the round
//!     48   8  timestamp, ms          the start of the round's slot
//!     56  32  merkle root of the transaction ids
//!     88  32  balance hash after the round
//!    120   4  difficulty (leading zero bits; 0 = not mined)
//!    124   8  nonce
//! body
//!    132   4  transaction count
//!    136 140  each transaction, in the order they were applied
//! proof       the rest: that the round is committed (`wire::consensus::Proof`)
//! ```
//!
//! The block hash (its id) is the double SHA-256 of the header; a block
//! chains by the previous block's id. Every header field is a pure function
//! of the committed round, so every server in consensus builds the same
//! header. The proof is the round's signed header, the headers built on it
//! up to the round whose commit certificate committed it, and that
//! certificate: [`Block::verify`] checks it against the conf alone, and that
//! it names this block's slot, merkle root and balance hash. (Two servers
//! may hold different proofs of one round, if different certificates
//! reached them; the id does not cover the proof.)

use crate::error::{Error, Result};
use crate::transaction::{TX_LEN, Transaction};
use crate::types::{BlockNumber, Hash, Millis, Slot, TxId};
use crate::wire::ServerList;
use crate::wire::consensus::Proof;

/// Length of an encoded block header.
pub const HEADER_LEN: usize = 132;

/// Where a chain of blocks stands: its height and the id of its last block
/// (zeros at height 0, where the genesis stands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Position {
    pub height: BlockNumber,
    pub block: Hash,
}

/// What a chain's blocks take from its parameters: the slot length (a
/// block's time is the start of its round's slot) and the sealing
/// difficulty every block header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    pub slot_ms: u64,
    pub difficulty: u32,
}

/// The fixed-size part of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub number: BlockNumber,
    pub previous: Hash,
    pub slot: Slot,
    pub timestamp: Millis,
    pub merkle_root: Hash,
    pub balance_hash: Hash,
    pub difficulty: u32,
    pub nonce: u64,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.number.to_be_bytes());
        out[8..40].copy_from_slice(&self.previous.0);
        out[40..48].copy_from_slice(&self.slot.to_be_bytes());
        out[48..56].copy_from_slice(&self.timestamp.to_be_bytes());
        out[56..88].copy_from_slice(&self.merkle_root.0);
        out[88..120].copy_from_slice(&self.balance_hash.0);
        out[120..124].copy_from_slice(&self.difficulty.to_be_bytes());
        out[124..132].copy_from_slice(&self.nonce.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> BlockHeader {
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        let hash_at = |at: usize| Hash(bytes[at..at + 32].try_into().expect("32"));
        BlockHeader {
            number: u64_at(0),
            previous: hash_at(8),
            slot: u64_at(40),
            timestamp: u64_at(48),
            merkle_root: hash_at(56),
            balance_hash: hash_at(88),
            difficulty: u32::from_be_bytes(bytes[120..124].try_into().expect("4")),
            nonce: u64_at(124),
        }
    }

    /// The block hash: double SHA-256 of the encoded header.
    pub fn hash(&self) -> Hash {
        Hash::double(&self.encode())
    }
}

/// A header with its transactions and the proof of its round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
    /// The encoded [`Proof`]; empty in a block built without one (tests).
    pub proof: Vec<u8>,
}

impl Block {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 + TX_LEN * self.transactions.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&(self.transactions.len() as u32).to_be_bytes());
        for tx in &self.transactions {
            out.extend_from_slice(tx.bytes());
        }
        out.extend_from_slice(&self.proof);
        out
    }

    /// Checks that the block is its committed round: the proof checks
    /// against the conf, and this block's header is exactly the one its
    /// round makes on a chain of this `shape` ([`Header::block`]): its
    /// number and previous id (which the round's base names), slot, time,
    /// merkle root, balance hash and difficulty. The payments' signatures are checked apart.
    ///
    /// [`Header::block`]: crate::wire::consensus::Header::block
    pub fn verify(&self, chain: &str, servers: &ServerList, shape: Shape) -> Result<()> {
        let number = self.header.number;
        let proof = Proof::decode(&self.proof, servers.len())
            .map_err(|e| Error::Invalid(format!("block {number}: {e}")))?;
        let round = proof
            .verify(chain, servers)
            .map_err(|e| Error::Invalid(format!("block {number}: {e}")))?;
        let h = &round.header;
        if h.block(shape) != Some(self.header) {
            return Err(Error::Invalid(format!(
                "block {number}: its proof is of round {} of slot {}, which makes another \
                 block (number, previous id, slot, time, merkle root, balance hash or difficulty)",
                round.digest().short(),
                h.slot
            )));
        }
        Ok(())
    }

    /// Reads a block, refusing one too short for its count or whose merkle
    /// root does not match its transactions; the rest is its proof, read by
    /// [`Block::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Block> {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(Error::Invalid(format!(
                "a block is at least {} bytes, got {}",
                HEADER_LEN + 4,
                bytes.len()
            )));
        }
        let header = BlockHeader::decode(bytes[..HEADER_LEN].try_into().expect("header"));
        let count = u32::from_be_bytes(bytes[HEADER_LEN..HEADER_LEN + 4].try_into().expect("4"));
        let rest = &bytes[HEADER_LEN + 4..];
        let Some(length) = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(TX_LEN))
            .filter(|length| *length <= rest.len())
        else {
            return Err(Error::Invalid(format!(
                "block {} says {count} transactions but carries {} bytes after its count",
                header.number,
                rest.len()
            )));
        };
        let (body, proof) = rest.split_at(length);
        let transactions = body
            .chunks_exact(TX_LEN)
            .map(Transaction::decode)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<TxId> = transactions.iter().map(Transaction::id).collect();
        if merkle_root(&ids) != header.merkle_root {
            return Err(Error::Invalid(format!(
                "block {}: the merkle root does not match its transactions",
                header.number
            )));
        }
        Ok(Block {
            header,
            transactions,
            proof: proof.to_vec(),
        })
    }
}

/// The merkle root of a list of transaction ids: pairs hashed level by level
/// (SHA-256 of the two 32-byte ids side by side), the last id of an odd level
/// paired with itself. The root of no ids is all zeros.
pub fn merkle_root(ids: &[TxId]) -> Hash {
    if ids.is_empty() {
        return Hash::default();
    }
    let mut level: Vec<Hash> = ids.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let right = pair.get(1).unwrap_or(&pair[0]);
                let mut joined = [0u8; 64];
                joined[..32].copy_from_slice(&pair[0].0);
                joined[32..].copy_from_slice(&right.0);
                Hash::of(&joined)
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::types::PublicKey;

    fn block(count: usize) -> Block {
        let payer = Keypair::from_seed(&[3; 32]);
        let transactions: Vec<Transaction> = (0..count)
            .map(|i| Transaction::sign("test", &payer, PublicKey([4; 32]), 1, 1000 + i as u64))
            .collect();
        let ids: Vec<TxId> = transactions.iter().map(Transaction::id).collect();
        Block {
            header: BlockHeader {
                number: 2,
                previous: Hash([1; 32]),
                slot: 77,
                timestamp: 4_620_000,
                merkle_root: merkle_root(&ids),
                balance_hash: Hash([2; 32]),
                difficulty: 0,
                nonce: 0,
            },
            transactions,
            proof: Vec::new(),
        }
    }

    #[test]
    fn blocks_round_trip() {
        let b = block(3);
        let bytes = b.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 4 + 3 * TX_LEN);
        assert_eq!(Block::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn a_block_claiming_the_largest_count_is_refused_without_overflow() {
        let mut bytes = block(1).encode();
        bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = Block::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("4294967295 transactions"), "{err}");
    }

    #[test]
    fn header_fields_sit_at_their_documented_offsets() {
        let h = block(1).header.encode();
        assert_eq!(&h[0..8], &2u64.to_be_bytes());
        assert_eq!(&h[40..48], &77u64.to_be_bytes());
        assert_eq!(&h[88..120], &[2; 32]);
    }

    #[test]
    fn a_block_that_lies_about_its_contents_is_refused() {
        let mut bytes = block(2).encode();
        bytes.pop();
        assert!(
            Block::decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("says 2")
        );
        let mut bytes = block(2).encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            Block::decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("merkle")
        );
    }

    #[test]
    fn merkle_root_pairs_an_odd_leaf_with_itself() {
        let a = Hash([1; 32]);
        let b = Hash([2; 32]);
        let c = Hash([3; 32]);
        let join = |x: Hash, y: Hash| {
            let mut v = x.0.to_vec();
            v.extend_from_slice(&y.0);
            Hash::of(&v)
        };
        assert_eq!(merkle_root(&[a]), a);
        assert_eq!(merkle_root(&[a, b]), join(a, b));
        assert_eq!(merkle_root(&[a, b, c]), join(join(a, b), join(c, c)));
        assert_eq!(merkle_root(&[]), Hash::default());
    }

    #[test]
    fn the_block_hash_is_double_sha256_of_the_header() {
        let header = block(1).header;
        assert_eq!(header.hash(), Hash::double(&header.encode()));
        let mut other = header;
        other.nonce = 1;
        assert_ne!(other.hash(), header.hash());
    }
}

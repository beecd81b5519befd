//! A block's seal: the nonce the search found, and the seal time it goes
//! with. It is an attachment that proves itself against the block's
//! header: the block's id stays the double SHA-256 of its unsealed header
//! (nonce 0), so sealing never changes an id, a `previous` or `H`.
//!
//! ```text
//! sealed header (140 bytes) = the block header (132), its nonce field
//!                             (offset 124) set to the seal's nonce
//!                           | seal time u64 (8), Unix ms
//! seal hash = double SHA-256 of the sealed header
//! ```
//!
//! A seal proves itself when its hash begins with at least the block
//! header's difficulty (offset 120) zero bits. Difficulty 0 needs no seal.

use sha2::{Digest, Sha256};

use crate::block::{BlockHeader, HEADER_LEN};
use crate::types::{Hash, Millis};

/// Length of a sealed header.
pub const SEALED_LEN: usize = HEADER_LEN + 8;

/// The nonce and seal time that seal a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seal {
    pub nonce: u64,
    pub time: Millis,
}

impl Seal {
    /// The sealed header's bytes: `header` with this nonce, then the time.
    pub fn sealed_header(&self, header: &BlockHeader) -> [u8; SEALED_LEN] {
        let sealed = BlockHeader {
            nonce: self.nonce,
            ..*header
        };
        let mut out = [0u8; SEALED_LEN];
        out[..HEADER_LEN].copy_from_slice(&sealed.encode());
        out[HEADER_LEN..].copy_from_slice(&self.time.to_be_bytes());
        out
    }

    /// The stored form: nonce u64 | time u64, big-endian.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.nonce.to_be_bytes());
        out[8..].copy_from_slice(&self.time.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8; 16]) -> Seal {
        Seal {
            nonce: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            time: u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
        }
    }

    /// The double SHA-256 of the sealed header.
    pub fn hash(&self, header: &BlockHeader) -> Hash {
        Hash::double(&self.sealed_header(header))
    }

    /// Whether this seal proves `header` at its difficulty. Nonce 0 never
    /// does: a round header says "no seal" with it.
    pub fn proves(&self, header: &BlockHeader) -> bool {
        self.nonce != 0 && zero_bits(&self.hash(header)) >= header.difficulty
    }
}

/// The leading zero bits of `hash`, read as a big-endian number.
pub fn zero_bits(hash: &Hash) -> u32 {
    let mut bits = 0;
    for byte in hash.0 {
        if byte != 0 {
            return bits + byte.leading_zeros();
        }
        bits += 8;
    }
    bits
}

/// The first nonce of `first..=last` that seals `header` at `time`, if
/// any: one worker's search of one range.
pub fn search(header: &BlockHeader, time: Millis, first: u64, last: u64) -> Option<Seal> {
    Searcher::new(header, time).search(first, last, || false).0
}

/// Nonces tried between two looks at whether to stop.
const STRIDE: u64 = 4_096;

/// The search loop: the sealed header's bytes with the first 64 hashed
/// once (its SHA-256 state after them), since the nonce is in the second
/// 64. Each nonce then costs the rest of the first SHA-256 and the second.
#[derive(Clone)]
pub struct Searcher {
    bytes: [u8; SEALED_LEN],
    midstate: Sha256,
    difficulty: u32,
    time: Millis,
}

impl Searcher {
    pub fn new(header: &BlockHeader, time: Millis) -> Searcher {
        let bytes = Seal { nonce: 0, time }.sealed_header(header);
        let mut midstate = Sha256::new();
        midstate.update(&bytes[..64]);
        Searcher {
            bytes,
            midstate,
            difficulty: header.difficulty,
            time,
        }
    }

    /// The first nonce of `first..=last` that seals the header, and how
    /// many nonces were tried. `stop` is asked every few thousand nonces;
    /// when it says so the search ends early with no seal.
    pub fn search(
        &mut self,
        first: u64,
        last: u64,
        mut stop: impl FnMut() -> bool,
    ) -> (Option<Seal>, u64) {
        let mut tried = 0;
        let mut nonce = first;
        while nonce <= last {
            if tried % STRIDE == 0 && tried > 0 && stop() {
                break;
            }
            self.bytes[124..132].copy_from_slice(&nonce.to_be_bytes());
            let mut first_hash = self.midstate.clone();
            first_hash.update(&self.bytes[64..]);
            let hash: [u8; 32] = Sha256::digest(first_hash.finalize()).into();
            tried += 1;
            if zero_bits(&Hash(hash)) >= self.difficulty {
                let seal = Seal {
                    nonce,
                    time: self.time,
                };
                return (Some(seal), tried);
            }
            let Some(next) = nonce.checked_add(1) else {
                break;
            };
            nonce = next;
        }
        (None, tried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(difficulty: u32) -> BlockHeader {
        BlockHeader {
            number: 1,
            previous: Hash::default(),
            slot: 28_333_333,
            timestamp: 1_699_999_980_000,
            merkle_root: Hash([0x65; 32]),
            balance_hash: Hash([0x81; 32]),
            difficulty,
            nonce: 0,
        }
    }

    #[test]
    fn zero_bits_count_from_the_first_byte() {
        assert_eq!(zero_bits(&Hash([0; 32])), 256);
        assert_eq!(zero_bits(&Hash([0xff; 32])), 0);
        let mut h = [0xff; 32];
        h[0] = 0;
        h[1] = 0x1f;
        assert_eq!(zero_bits(&Hash(h)), 11);
    }

    #[test]
    fn a_found_seal_proves_its_header_and_nothing_else() {
        let header = header(12);
        let time = 1_700_000_000_000;
        let seal = search(&header, time, 1, 1_000_000).expect("12 bits within a million");
        assert!(seal.proves(&header));
        assert!(zero_bits(&seal.hash(&header)) >= 12);
        // It is the first: no nonce before it seals.
        assert_eq!(search(&header, time, 1, seal.nonce - 1), None);
        // The sealed bytes: the header with the nonce, then the time; the
        // block's id (nonce 0) does not move.
        let bytes = seal.sealed_header(&header);
        assert_eq!(&bytes[124..132], &seal.nonce.to_be_bytes());
        assert_eq!(&bytes[132..], &time.to_be_bytes());
        assert_eq!(&bytes[..124], &header.encode()[..124]);
        assert_eq!(header.nonce, 0);
        // Another time, another block or a higher difficulty: the seal
        // does not prove it (fixed inputs, so this is deterministic).
        let other_time = Seal {
            time: time + 1,
            ..seal
        };
        let other_block = BlockHeader {
            number: 2,
            ..header
        };
        let harder = BlockHeader {
            difficulty: zero_bits(&seal.hash(&header)) + 1,
            ..header
        };
        assert!(!other_time.proves(&header));
        assert!(!seal.proves(&other_block));
        assert!(!seal.proves(&harder));
        // The search loop agrees with the check, nonce for nonce, and
        // stops when told to.
        let (found, tried) = Searcher::new(&header, time).search(1, seal.nonce + 10, || false);
        assert_eq!((found, tried), (Some(seal), seal.nonce));
        let hard = self::header(64);
        let (found, tried) = Searcher::new(&hard, time).search(1, 1_000_000, || true);
        assert_eq!((found, tried), (None, STRIDE));
        // Difficulty 0: any seal proves it but one of nonce 0, which a
        // round header reads as no seal.
        assert!(Seal { nonce: 7, time }.proves(&self::header(0)));
        assert!(!Seal { nonce: 0, time }.proves(&self::header(0)));
        let zero = (0..)
            .map(|time| Seal { nonce: 0, time })
            .find(|seal| zero_bits(&seal.hash(&header)) >= 12)
            .unwrap();
        assert!(!zero.proves(&header), "a nonce-0 seal with the zero bits");
    }
}

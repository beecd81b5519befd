//! What servers say to each other about the nonce search: the payload of
//! the `mine` command, one message of six kinds.
//!
//! ```text
//! mine = kind u8 | fields (integers big-endian)
//!   0 request    rate u64                         a worker asks its leader for work
//!   1 range      block header (132) | time u64 | first u64 | last u64
//!                                                 the leader hands a worker a range
//!   2 no         block id (32) | time u64 | first u64 | last u64 | rate u64
//!                                                 none of the range seals the block
//!   3 yes        block id (32) | nonce u64 | time u64 | rate u64
//!                                                 this nonce seals it
//!   4 interrupt  block id (32)                    stop searching for this block
//!   5 sealed     block number u64 | block id (32) | nonce u64 | time u64
//!                                                 the leader's seal, for every server
//! rate = the sender's measured hashes a second (0: not measured yet)
//! ```
//!
//! Like every peer message it travels in a signed envelope, checked before
//! the payload is decoded. What a message claims is checked by whoever acts
//! on it: a leader checks a `yes` against the block before it announces
//! it, and every server checks a `sealed` seal against its own copy of the
//! block before it keeps it. A worker hashes the header a `range` gives it
//! as it is: a dishonest leader can waste its hashing, nothing more.

use crate::block::{BlockHeader, HEADER_LEN};
use crate::error::{Error, Result};
use crate::seal::Seal;
use crate::types::{BlockNumber, Hash, Millis};

/// One message of the nonce search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mining {
    /// ProcessRequest: a worker asks its leader for a range.
    Request { rate: u64 },
    /// A range of nonces to try on `block` (its unsealed header) at seal
    /// time `time`.
    Range {
        block: BlockHeader,
        time: Millis,
        first: u64,
        last: u64,
    },
    /// ProcessAnswerNo: no nonce of the range seals block `block`.
    No {
        block: Hash,
        time: Millis,
        first: u64,
        last: u64,
        rate: u64,
    },
    /// ProcessAnswerYes: `seal` seals block `block`.
    Yes { block: Hash, seal: Seal, rate: u64 },
    /// ProcessInterrupt: stop searching for block `block`.
    Interrupt { block: Hash },
    /// The seal of block `number` (id `block`), announced by its leader.
    Sealed {
        number: BlockNumber,
        block: Hash,
        seal: Seal,
    },
}

impl Mining {
    /// The kind's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Mining::Request { .. } => "request",
            Mining::Range { .. } => "range",
            Mining::No { .. } => "no",
            Mining::Yes { .. } => "yes",
            Mining::Interrupt { .. } => "interrupt",
            Mining::Sealed { .. } => "sealed",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + HEADER_LEN + 24);
        match self {
            Mining::Request { rate } => {
                out.push(0);
                out.extend_from_slice(&rate.to_be_bytes());
            }
            Mining::Range {
                block,
                time,
                first,
                last,
            } => {
                out.push(1);
                out.extend_from_slice(&block.encode());
                for value in [*time, *first, *last] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Mining::No {
                block,
                time,
                first,
                last,
                rate,
            } => {
                out.push(2);
                out.extend_from_slice(&block.0);
                for value in [*time, *first, *last, *rate] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Mining::Yes { block, seal, rate } => {
                out.push(3);
                out.extend_from_slice(&block.0);
                for value in [seal.nonce, seal.time, *rate] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Mining::Interrupt { block } => {
                out.push(4);
                out.extend_from_slice(&block.0);
            }
            Mining::Sealed {
                number,
                block,
                seal,
            } => {
                out.push(5);
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&block.0);
                for value in [seal.nonce, seal.time] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
        }
        out
    }

    /// Decodes a `mine` payload: its kind, then exactly that kind's length.
    pub fn decode(payload: &[u8]) -> Result<Mining> {
        let Some((&kind, body)) = payload.split_first() else {
            return Err(Error::Invalid("mine payload: empty".into()));
        };
        let expected = match kind {
            0 => 8,
            1 => HEADER_LEN + 24,
            2 => 32 + 32,
            3 => 32 + 24,
            4 => 32,
            5 => 8 + 32 + 16,
            other => {
                return Err(Error::Invalid(format!(
                    "mine payload: kind {other} is not 0 to 5"
                )));
            }
        };
        if body.len() != expected {
            return Err(Error::Invalid(format!(
                "mine payload: kind {kind} is {expected} bytes after the kind, got {}",
                body.len()
            )));
        }
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8"));
        let hash_at = |at: usize| Hash(body[at..at + 32].try_into().expect("32"));
        let seal_at = |at: usize| Seal {
            nonce: u64_at(at),
            time: u64_at(at + 8),
        };
        // Nonce 0 is no seal (a round header reads it so): never a yes.
        let zero_nonce = match kind {
            3 => u64_at(32) == 0,
            5 => u64_at(40) == 0,
            _ => false,
        };
        if zero_nonce {
            return Err(Error::Invalid(format!(
                "mine payload: kind {kind} carries a seal of nonce 0"
            )));
        }
        Ok(match kind {
            0 => Mining::Request { rate: u64_at(0) },
            1 => Mining::Range {
                block: BlockHeader::decode(body[..HEADER_LEN].try_into().expect("132")),
                time: u64_at(HEADER_LEN),
                first: u64_at(HEADER_LEN + 8),
                last: u64_at(HEADER_LEN + 16),
            },
            2 => Mining::No {
                block: hash_at(0),
                time: u64_at(32),
                first: u64_at(40),
                last: u64_at(48),
                rate: u64_at(56),
            },
            3 => Mining::Yes {
                block: hash_at(0),
                seal: seal_at(32),
                rate: u64_at(48),
            },
            4 => Mining::Interrupt { block: hash_at(0) },
            _ => Mining::Sealed {
                number: u64_at(0),
                block: hash_at(8),
                seal: seal_at(40),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BlockHeader {
        BlockHeader {
            number: 7,
            previous: Hash([1; 32]),
            slot: 30,
            timestamp: 60_000,
            merkle_root: Hash([2; 32]),
            balance_hash: Hash([3; 32]),
            difficulty: 16,
            nonce: 0,
        }
    }

    #[test]
    fn every_kind_decodes_to_what_was_encoded_and_any_other_length_is_refused() {
        let seal = Seal {
            nonce: 12_345,
            time: 1_700_000_000_000,
        };
        let messages = [
            Mining::Request { rate: 5_000_000 },
            Mining::Range {
                block: header(),
                time: 1_700_000_000_000,
                first: 1,
                last: 100_000,
            },
            Mining::No {
                block: Hash([4; 32]),
                time: 9,
                first: 100_001,
                last: 200_000,
                rate: 7,
            },
            Mining::Yes {
                block: Hash([5; 32]),
                seal,
                rate: 3,
            },
            Mining::Interrupt {
                block: Hash([6; 32]),
            },
            Mining::Sealed {
                number: 7,
                block: Hash([7; 32]),
                seal,
            },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(
                Mining::decode(&bytes).unwrap(),
                message,
                "{}",
                message.name()
            );
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Mining::decode(&longer).is_err(), "{}", message.name());
            assert!(
                Mining::decode(&bytes[..bytes.len() - 1]).is_err(),
                "{}",
                message.name()
            );
        }
        assert!(Mining::decode(&[]).is_err());
        let zero = Seal { nonce: 0, time: 1 };
        for message in [
            Mining::Yes {
                block: Hash([5; 32]),
                seal: zero,
                rate: 3,
            },
            Mining::Sealed {
                number: 7,
                block: Hash([7; 32]),
                seal: zero,
            },
        ] {
            let err = Mining::decode(&message.encode()).unwrap_err().to_string();
            assert!(err.contains("nonce 0"), "{err}");
        }
        assert!(Mining::decode(&[6; 9]).is_err());
    }
}

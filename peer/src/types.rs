//! Domain types shared by every part of rota: keys, hashes, amounts, slots and
//! server identifiers. They are small `Copy` values with hex `Display` so that
//! logs, JSON and error messages all spell them the same way.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// An amount of the currency. The total supply fits a `u32`, so no balance and
/// no payment can exceed it.
pub type Amount = u32;

/// A slot number: `unix milliseconds / slot_ms`, counted from the Unix epoch.
pub type Slot = u64;

/// A block number; the first block is 1 and height 0 means "no blocks yet".
pub type BlockNumber = u64;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = u64;

/// An ed25519 public key: the identity of an account and of a server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// A SHA-256 digest: transaction ids, balance hashes, block hashes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// A transaction id is the SHA-256 of the transaction's 140 bytes.
pub type TxId = Hash;

/// A server's position in the conf's ordered server list, counted from 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ServerId(pub u32);

impl ServerId {
    /// The zero-based index of this server in the server list.
    pub fn index(self) -> usize {
        self.0 as usize - 1
    }

    /// The identifier of the server at zero-based `index`.
    pub fn from_index(index: usize) -> ServerId {
        ServerId(index as u32 + 1)
    }
}

impl serde::Serialize for ServerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Hash {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// SHA-256 applied twice, as used for block hashes and the nonce search.
    pub fn double(data: &[u8]) -> Hash {
        Hash(Sha256::digest(Sha256::digest(data)).into())
    }

    /// The first eight hex digits, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    let mut bytes = [0u8; 32];
    if text.len() != 64 {
        return Err(Error::Invalid(format!(
            "{what} must be 64 hex characters, got {} characters",
            text.len()
        )));
    }
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|e| Error::Invalid(format!("{what} is not hex: {e}")))?;
    Ok(bytes)
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(text: &str) -> Result<PublicKey> {
        parse_hex32(text, "a public key").map(PublicKey)
    }
}

impl FromStr for Hash {
    type Err = Error;
    fn from_str(text: &str) -> Result<Hash> {
        parse_hex32(text, "a hash").map(Hash)
    }
}

macro_rules! hex_display {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_display!(PublicKey);
hex_display!(Hash);

/// Reads a big-endian `u64` from an 8-byte frame, naming the field on error.
pub fn be_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Invalid(format!("{what} must be 8 bytes, got {}", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

/// Reads a 32-byte value from a frame, naming the field on error.
pub fn bytes32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::Invalid(format!("{what} must be 32 bytes, got {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_hex() {
        let key = PublicKey([0xab; 32]);
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
    }

    #[test]
    fn public_key_parse_names_the_problem() {
        let short = "abcd".parse::<PublicKey>().unwrap_err().to_string();
        assert!(short.contains("64 hex characters"), "{short}");
        let bad = "zz"
            .repeat(32)
            .parse::<PublicKey>()
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not hex"), "{bad}");
    }

    #[test]
    fn server_ids_count_from_one() {
        assert_eq!(ServerId::from_index(0), ServerId(1));
        assert_eq!(ServerId(3).index(), 2);
    }

    #[test]
    fn sha256_of_empty_input_is_the_known_digest() {
        assert_eq!(
            Hash::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

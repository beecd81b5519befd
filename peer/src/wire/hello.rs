//! What `register` and `heart` carry both ways besides the certified
//! status: the sender's chain parameters and its clock.
//!
//! ```text
//! hello   = params (68) | clock u64 (8) | echo u64 (8) | flags u8 (1) |
//!           live (ceil(servers / 8)) | certified status
//! flags   = bit 0: the sender sits its alpha slots out (its clock is off);
//!           the other bits are 0
//! live    = the servers the sender counts as live, itself included: server
//!           k (from 1) is bit 7 - (k - 1) mod 8 of byte (k - 1) / 8; the
//!           bits past the servers are 0. `servers` is the count the
//!           parameters name.
//! params  = version u32 | servers u32 | slot_ms u64 | blackout_ms u64 |
//!           tolerance_ms u64 | difficulty u32 | servers digest (16) |
//!           genesis digest (16)
//! ```
//!
//! Servers of one chain must run with the same parameters: a server with
//! others is refused, and the refusal names what differs
//! ([`Params::differences`]). The parameters hash shown in `I` is the
//! SHA-256 of the 68 bytes. The clock, and in an answer the echo of the
//! asker's clock from its request, let each server estimate its offset to
//! every other one from the exact round trip of each answer.

use sha2::{Digest, Sha256};

use crate::block::Shape;
use crate::error::{Error, Result};
use crate::types::{Hash, Millis, PublicKey, ServerId, be_u64};
use crate::wire::ServerList;
use crate::wire::server::{CertifiedStatus, Status};

/// The version of the peer protocol this build speaks (docs/PROTOCOL.md).
pub const PROTOCOL_VERSION: u32 = 3;

/// Length of encoded [`Params`].
pub const PARAMS_LEN: usize = 68;

/// The parameters every server of a chain must share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Params {
    pub version: u32,
    /// How many servers the conf lists.
    pub servers: u32,
    pub slot_ms: u64,
    pub blackout_ms: u64,
    pub tolerance_ms: u64,
    /// The chain's sealing difficulty (0: blocks are not sealed).
    pub difficulty: u32,
    /// The first 16 bytes of the SHA-256 of the servers' public keys, in
    /// the conf's order.
    pub servers_digest: [u8; 16],
    /// The first 16 bytes of the genesis's balance hash.
    pub genesis_digest: [u8; 16],
}

impl Params {
    /// What the chain's blocks take from these parameters.
    pub fn shape(&self) -> Shape {
        Shape {
            slot_ms: self.slot_ms,
            difficulty: self.difficulty,
        }
    }

    /// The parameters of a chain of `keys` (in conf order) with these
    /// timings and genesis.
    pub fn new(
        keys: &[PublicKey],
        (slot_ms, blackout_ms, tolerance_ms): (u64, u64, u64),
        difficulty: u32,
        genesis: &Hash,
    ) -> Params {
        let mut sha = Sha256::new();
        for key in keys {
            sha.update(key.0);
        }
        let digest: [u8; 32] = sha.finalize().into();
        Params {
            version: PROTOCOL_VERSION,
            servers: keys.len() as u32,
            slot_ms,
            blackout_ms,
            tolerance_ms,
            difficulty,
            servers_digest: first16(&digest),
            genesis_digest: first16(&genesis.0),
        }
    }

    pub fn encode(&self) -> [u8; PARAMS_LEN] {
        let mut out = [0u8; PARAMS_LEN];
        out[0..4].copy_from_slice(&self.version.to_be_bytes());
        out[4..8].copy_from_slice(&self.servers.to_be_bytes());
        out[8..16].copy_from_slice(&self.slot_ms.to_be_bytes());
        out[16..24].copy_from_slice(&self.blackout_ms.to_be_bytes());
        out[24..32].copy_from_slice(&self.tolerance_ms.to_be_bytes());
        out[32..36].copy_from_slice(&self.difficulty.to_be_bytes());
        out[36..52].copy_from_slice(&self.servers_digest);
        out[52..68].copy_from_slice(&self.genesis_digest);
        out
    }

    pub fn decode(bytes: &[u8; PARAMS_LEN]) -> Params {
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut servers_digest = [0u8; 16];
        servers_digest.copy_from_slice(&bytes[36..52]);
        let mut genesis_digest = [0u8; 16];
        genesis_digest.copy_from_slice(&bytes[52..68]);
        Params {
            version: u32_at(0),
            servers: u32_at(4),
            slot_ms: u64_at(8),
            blackout_ms: u64_at(16),
            tolerance_ms: u64_at(24),
            difficulty: u32_at(32),
            servers_digest,
            genesis_digest,
        }
    }

    /// The parameters hash: SHA-256 of the encoded parameters.
    pub fn hash(&self) -> Hash {
        Hash(Sha256::digest(self.encode()).into())
    }

    /// What differs between `self` (this server's) and `theirs`, in words,
    /// for a refusal or a log line; empty when nothing does.
    pub fn differences(&self, theirs: &Params) -> Vec<String> {
        let mut out = Vec::new();
        let mut number = |name: &str, here: u64, there: u64| {
            if here != there {
                out.push(format!("{name} {there} there, {here} here"));
            }
        };
        number(
            "protocol version",
            self.version.into(),
            theirs.version.into(),
        );
        number("servers", self.servers.into(), theirs.servers.into());
        number("slot_ms", self.slot_ms, theirs.slot_ms);
        number("blackout_ms", self.blackout_ms, theirs.blackout_ms);
        number("tolerance_ms", self.tolerance_ms, theirs.tolerance_ms);
        number(
            "difficulty",
            self.difficulty.into(),
            theirs.difficulty.into(),
        );
        if self.servers == theirs.servers && self.servers_digest != theirs.servers_digest {
            out.push("the server list (keys or their order)".into());
        }
        if self.genesis_digest != theirs.genesis_digest {
            out.push("the genesis".into());
        }
        out
    }
}

fn first16(bytes: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

/// The payload of `register` and `heart`, and of their answers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Hello {
    pub params: Params,
    /// The sender's clock when it sent this, in Unix milliseconds.
    pub clock: Millis,
    /// In an answer, the clock of the request it answers; 0 in a request.
    pub echo: Millis,
    /// The sender's clock is off the others' by more than the tolerance,
    /// and it sits its alpha slots out: the others do not forward or hold
    /// payments for it.
    pub sitting_out: bool,
    /// The servers the sender counts as live, itself included.
    pub live: Vec<ServerId>,
    pub status: CertifiedStatus,
}

/// Bytes of a hello before its live servers and its certified status.
pub const HELLO_PREFIX_LEN: usize = PARAMS_LEN + 17;

/// The live servers' bitmap of a chain of `servers` servers.
fn live_bitmap(live: &[ServerId], servers: usize) -> Vec<u8> {
    let mut bits = vec![0u8; servers.div_ceil(8)];
    for id in live {
        let i = id.index();
        if i < servers {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
    }
    bits
}

/// The flag bit of a sender that sits its alpha slots out.
const SITTING_OUT: u8 = 1;

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_PREFIX_LEN + 300);
        out.extend_from_slice(&self.params.encode());
        out.extend_from_slice(&self.clock.to_be_bytes());
        out.extend_from_slice(&self.echo.to_be_bytes());
        out.push(if self.sitting_out { SITTING_OUT } else { 0 });
        out.extend_from_slice(&live_bitmap(&self.live, self.params.servers as usize));
        out.extend_from_slice(&self.status.encode());
        out
    }

    /// Decodes a hello on a chain of `servers` servers.
    pub fn decode(bytes: &[u8], servers: usize) -> Result<Hello> {
        if bytes.len() < HELLO_PREFIX_LEN {
            return Err(Error::Invalid(format!(
                "a hello is {PARAMS_LEN} bytes of parameters, an 8-byte clock, an 8-byte echo, a \
                 flags byte and a status, got {} bytes",
                bytes.len()
            )));
        }
        let (params, rest) = bytes.split_at(PARAMS_LEN);
        let (clock, rest) = rest.split_at(8);
        let (echo, rest) = rest.split_at(8);
        let (flags, rest) = rest.split_at(1);
        let params: &[u8; PARAMS_LEN] = params.try_into().expect("split at PARAMS_LEN");
        let params = Params::decode(params);
        let clock = be_u64(clock, "hello clock")?;
        let echo = be_u64(echo, "hello echo")?;
        let sitting_out = match flags[0] {
            0 => false,
            SITTING_OUT => true,
            other => {
                return Err(Error::Invalid(format!(
                    "a hello's flags are 0 or 1, got {other}"
                )));
            }
        };
        // A sender with another server count is refused for its parameters,
        // which name the difference; its live servers and its status, laid
        // out for that count, are not read.
        if params.servers as usize != servers {
            return Ok(Hello {
                params,
                clock,
                echo,
                sitting_out,
                live: Vec::new(),
                status: CertifiedStatus::default(),
            });
        }
        let width = servers.div_ceil(8);
        if rest.len() < width {
            return Err(Error::Invalid(format!(
                "a hello of a chain of {servers} servers carries {width} bytes of live servers, \
                 got {}",
                rest.len()
            )));
        }
        let (bits, status) = rest.split_at(width);
        let live: Vec<ServerId> = (0..servers)
            .filter(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
            .map(ServerId::from_index)
            .collect();
        if live_bitmap(&live, servers) != bits {
            return Err(Error::Invalid(
                "a hello names live servers past the chain's".into(),
            ));
        }
        let status = CertifiedStatus::decode(status, servers)?;
        Ok(Hello {
            params,
            clock,
            echo,
            sitting_out,
            live,
            status,
        })
    }
}

/// A hello whose status checked (its certificate vouches for it): what
/// the receiver acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub params: Params,
    pub clock: Millis,
    pub echo: Millis,
    pub sitting_out: bool,
    pub live: Vec<ServerId>,
    pub status: Status,
}

impl Hello {
    /// The greeting, once the status's certificate checks against the conf
    /// ([`CertifiedStatus::verify`], on the slot length the hello names).
    /// The parameters are compared by the receiver, which knows its own,
    /// and refuses the hello when they differ.
    pub fn verify(&self, chain: &str, servers: &ServerList) -> Result<Greeting> {
        Ok(Greeting {
            params: self.params,
            clock: self.clock,
            echo: self.echo,
            sitting_out: self.sitting_out,
            live: self.live.clone(),
            status: self.status.verify(chain, servers, self.params.shape())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new(
            &[PublicKey([1; 32]), PublicKey([2; 32])],
            (2_000, 500, 250),
            0,
            &Hash([9; 32]),
        )
    }

    #[test]
    fn params_round_trip_and_hash_their_bytes() {
        let p = params();
        assert_eq!(Params::decode(&p.encode()), p);
        assert_eq!(p.hash(), Hash(Sha256::digest(p.encode()).into()));
        assert!(p.differences(&p).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let here = params();
        let mut there = Params::new(
            &[PublicKey([2; 32]), PublicKey([1; 32])],
            (1_000, 500, 250),
            0,
            &Hash([8; 32]),
        );
        assert_eq!(
            here.differences(&there),
            [
                "slot_ms 1000 there, 2000 here",
                "the server list (keys or their order)",
                "the genesis"
            ]
        );
        there = Params {
            version: PROTOCOL_VERSION + 1,
            servers: 3,
            ..here
        };
        assert_eq!(
            here.differences(&there),
            [
                "protocol version 4 there, 3 here",
                "servers 3 there, 2 here"
            ]
        );
    }

    #[test]
    fn a_hello_round_trips_and_a_short_one_is_refused() {
        let hello = Hello {
            params: params(),
            clock: 1_700_000_000_123,
            echo: 1_700_000_000_100,
            sitting_out: false,
            live: vec![ServerId(2)],
            status: CertifiedStatus::default(),
        };
        let bytes = hello.encode();
        assert_eq!(bytes.len(), HELLO_PREFIX_LEN + 1 + 80);
        // Two servers: one byte of live servers, server 2 its second bit.
        assert_eq!(bytes[HELLO_PREFIX_LEN], 0b0100_0000);
        let mut past = bytes.clone();
        past[HELLO_PREFIX_LEN] |= 0b0010_0000;
        let err = Hello::decode(&past, 2).unwrap_err().to_string();
        assert!(err.contains("live servers past the chain's"), "{err}");
        assert_eq!(Hello::decode(&bytes, 2).unwrap(), hello);
        // The flags byte follows the echo: bit 0 says the sender sits out.
        assert_eq!(bytes[HELLO_PREFIX_LEN - 1], 0);
        let sitting = Hello {
            sitting_out: true,
            ..hello.clone()
        };
        let flagged = sitting.encode();
        assert_eq!(flagged[HELLO_PREFIX_LEN - 1], 1);
        assert_eq!(Hello::decode(&flagged, 2).unwrap(), sitting);
        let mut unknown = flagged.clone();
        unknown[HELLO_PREFIX_LEN - 1] = 2;
        let err = Hello::decode(&unknown, 2).unwrap_err().to_string();
        assert!(err.contains("flags are 0 or 1, got 2"), "{err}");
        let err = Hello::decode(&bytes[..70], 2).unwrap_err().to_string();
        assert!(err.contains("got 70 bytes"), "{err}");
        // Decoded on a chain of another size, its parameters are read and
        // its status is not: the receiver refuses it for the parameters.
        let other = Hello::decode(&bytes, 5).unwrap();
        assert_eq!(other.params, hello.params);
        assert_eq!(other.status, CertifiedStatus::default());
    }
}

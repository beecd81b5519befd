//! What servers say to each other: the ten [`PeerCommand`]s and the
//! [`PeerMessage`] each one's payload decodes to, with the [`CertifiedStatus`]
//! carried by `register` and `heart`. The round protocol's messages (`round`,
//! `prevote`, `precommit`, `certified`, `evidence`) carry the values of
//! `wire::consensus`, decoded here and verified there.
//!
//! These are payloads only. They travel inside a signed envelope
//! (`envelope.rs`), and are decoded here only after the envelope's signature
//! has been checked against the trust list (`servers.rs`). Each message's
//! payload encoding ([`PeerMessage::payload`]) and decoding
//! ([`PeerMessage::decode`]) list the commands in the same order.

use crate::block::Shape;
use crate::error::{Error, Result};
use crate::transaction::{AsTransaction, TX_LEN, Transaction};
use crate::types::{BlockNumber, Hash, Slot, be_u64, bytes32};
use crate::wire::ServerList;
use crate::wire::consensus::{Certified, Evidence, Kind, Precommit, Prevote, SignedHeader};
use crate::wire::hello::Hello;
use crate::wire::mining::Mining;

/// The server-to-server commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerCommand {
    /// Registration, answered with the server's signed status.
    Register,
    /// Heartbeat carrying the sender's status, answered with the receiver's.
    Heart,
    /// ROUND(s): the header signed by alpha(s) and its payments.
    Round,
    /// PREVOTE(s, header).
    Prevote,
    /// PRECOMMIT(s, header), with the prevote certificate it rests on.
    Precommit,
    /// A certificate with its header: a lock, or a commit.
    Certified,
    /// Two headers of one slot signed by its alpha.
    Evidence,
    /// A request for a round (header and payments) the sender lacks.
    Want,
    /// A transaction passed on to the alpha that will take it.
    Forward,
    /// A message of the nonce search (`wire::mining`).
    Mine,
}

impl PeerCommand {
    pub const ALL: [PeerCommand; 10] = [
        PeerCommand::Register,
        PeerCommand::Heart,
        PeerCommand::Round,
        PeerCommand::Prevote,
        PeerCommand::Precommit,
        PeerCommand::Certified,
        PeerCommand::Evidence,
        PeerCommand::Want,
        PeerCommand::Forward,
        PeerCommand::Mine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerCommand::Register => "register",
            PeerCommand::Heart => "heart",
            PeerCommand::Round => "round",
            PeerCommand::Prevote => "prevote",
            PeerCommand::Precommit => "precommit",
            PeerCommand::Certified => "certified",
            PeerCommand::Evidence => "evidence",
            PeerCommand::Want => "want",
            PeerCommand::Forward => "forward",
            PeerCommand::Mine => "mine",
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<PeerCommand> {
        PeerCommand::ALL
            .into_iter()
            .find(|c| c.name().as_bytes() == bytes)
    }
}

/// A server's committed state, as reported in registrations and heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// The slot of the last round this server committed.
    pub slot: Slot,
    /// The hash of its committed balance database.
    pub balance_hash: Hash,
    /// Its block height.
    pub height: BlockNumber,
    /// The hash of its last block (zero at height 0).
    pub block_hash: Hash,
}

/// Length of an encoded [`Status`].
pub const STATUS_LEN: usize = 80;

impl Status {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATUS_LEN);
        out.extend_from_slice(&self.slot.to_be_bytes());
        out.extend_from_slice(&self.balance_hash.0);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.block_hash.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Status> {
        if bytes.len() != STATUS_LEN {
            return Err(Error::Invalid(format!(
                "a status is {STATUS_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Status {
            slot: be_u64(&bytes[0..8], "status slot")?,
            balance_hash: Hash(bytes32(&bytes[8..40], "status hash")?),
            height: be_u64(&bytes[40..48], "status height")?,
            block_hash: Hash(bytes32(&bytes[48..80], "status block hash")?),
        })
    }
}

/// A [`Status`] with the commit certificate that vouches for it: what
/// `register` and `heart` carry, both ways. The certificate (a certified
/// header of kind precommit) vouches for the status's slot and balance
/// hash, and for the chain of blocks after that round (the header's base
/// names the chain before it, [`Header::after`]): a status may claim fewer
/// blocks (a server still fetching them), never more, and at that height
/// exactly that block id. Only a status of slot 0 (the genesis, or a
/// server whose database was found damaged and vouches for nothing)
/// carries none.
///
/// [`Header::after`]: crate::wire::consensus::Header::after
///
/// ```text
/// certified status = status (80) | certified (the rest; empty at slot 0)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CertifiedStatus {
    pub status: Status,
    pub certified: Option<Certified>,
}

impl CertifiedStatus {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.status.encode();
        if let Some(certified) = &self.certified {
            out.extend_from_slice(&certified.encode());
        }
        out
    }

    /// Decodes a status and the certificate after it, on a chain of
    /// `servers` servers.
    pub fn decode(bytes: &[u8], servers: usize) -> Result<CertifiedStatus> {
        if bytes.len() < STATUS_LEN {
            return Err(Error::Invalid(format!(
                "a status is {STATUS_LEN} bytes and its certificate, got {}",
                bytes.len()
            )));
        }
        let (status, rest) = bytes.split_at(STATUS_LEN);
        let certified = match rest {
            [] => None,
            rest => Some(Certified::decode(rest, servers)?),
        };
        Ok(CertifiedStatus {
            status: Status::decode(status)?,
            certified,
        })
    }

    /// The status, once its certificate checks against the conf and
    /// vouches for exactly its slot and balance hash and for its blocks
    /// (on a chain of this `shape`); a status of slot 0 must carry none.
    pub fn verify(&self, chain: &str, servers: &ServerList, shape: Shape) -> Result<Status> {
        let status = self.status;
        let Some(certified) = &self.certified else {
            if status.slot == 0 {
                // Vouched for by nothing: no block either.
                if (status.height, status.block_hash) != (0, Hash::default()) {
                    return Err(Error::Invalid(format!(
                        "a status of slot 0 vouches for no block, and claims height {}",
                        status.height
                    )));
                }
                return Ok(status);
            }
            return Err(Error::Invalid(format!(
                "a status of slot {} carries no commit certificate",
                status.slot
            )));
        };
        let certified = certified.verify(chain, servers)?;
        if certified.certificate.kind != Kind::Precommit {
            return Err(Error::Invalid(format!(
                "a status is vouched for by a {} certificate, not a commit certificate",
                certified.certificate.kind.name()
            )));
        }
        let (slot, hash) = (certified.header.slot(), certified.header.header.result);
        if (slot, hash) != (status.slot, status.balance_hash) {
            return Err(Error::Invalid(format!(
                "a status claims slot {} with hash {}, its certificate vouches for slot {slot} with hash {}",
                status.slot,
                status.balance_hash.short(),
                hash.short()
            )));
        }
        let after = certified.header.header.after(shape);
        let block_ok = status.height < after.height
            || (status.height == after.height && status.block_hash == after.block);
        if !block_ok {
            return Err(Error::Invalid(format!(
                "a status claims height {} with block {}, its certificate vouches for height {} \
                 with block {}",
                status.height,
                status.block_hash.short(),
                after.height,
                after.block.short()
            )));
        }
        Ok(status)
    }
}

/// The decoded payload of a peer message. `Tx` is [`Transaction`] as decoded
/// and [`crate::transaction::VerifiedTx`] once signatures are checked. The
/// consensus values inside are as decoded: their signatures are checked by
/// their own `verify` (`wire::consensus`) before anything acts on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage<Tx = Transaction> {
    /// `register`: payload = a hello (parameters, clock, certified status).
    Register(Hello),
    /// `heart`: payload = a hello.
    Heart(Hello),
    /// `round`: payload = header length u32 | signed header | count u32 |
    /// count transactions (140 bytes each).
    Round {
        header: SignedHeader,
        transactions: Vec<Tx>,
    },
    /// `prevote`: payload = a prevote with its signed header.
    Prevote(Prevote),
    /// `precommit`: payload = a precommit with its header and certificate.
    Precommit(Precommit),
    /// `certified`: payload = a signed header and a certificate on it.
    Certified(Certified),
    /// `evidence`: payload = two signed headers of one slot.
    Evidence(Evidence),
    /// `want`: payload = slot u64 | header digest (32): send me that round.
    Want { slot: Slot, digest: Hash },
    /// `forward`: payload = one transaction (140 bytes).
    Forward { transaction: Tx },
    /// `mine`: payload = a message of the nonce search.
    Mine(Mining),
}

impl<Tx> PeerMessage<Tx> {
    pub fn command(&self) -> PeerCommand {
        match self {
            PeerMessage::Register(_) => PeerCommand::Register,
            PeerMessage::Heart(_) => PeerCommand::Heart,
            PeerMessage::Round { .. } => PeerCommand::Round,
            PeerMessage::Prevote(_) => PeerCommand::Prevote,
            PeerMessage::Precommit(_) => PeerCommand::Precommit,
            PeerMessage::Certified(_) => PeerCommand::Certified,
            PeerMessage::Evidence(_) => PeerCommand::Evidence,
            PeerMessage::Want { .. } => PeerCommand::Want,
            PeerMessage::Forward { .. } => PeerCommand::Forward,
            PeerMessage::Mine(_) => PeerCommand::Mine,
        }
    }
}

impl<Tx: AsTransaction> PeerMessage<Tx> {
    /// The payload bytes of this message.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            PeerMessage::Register(hello) | PeerMessage::Heart(hello) => hello.encode(),
            PeerMessage::Round {
                header,
                transactions,
            } => {
                let header = header.encode();
                let mut out = Vec::with_capacity(8 + header.len() + TX_LEN * transactions.len());
                out.extend_from_slice(&(header.len() as u32).to_be_bytes());
                out.extend_from_slice(&header);
                out.extend_from_slice(&(transactions.len() as u32).to_be_bytes());
                for tx in transactions {
                    out.extend_from_slice(tx.transaction().bytes());
                }
                out
            }
            PeerMessage::Prevote(prevote) => prevote.encode(),
            PeerMessage::Precommit(precommit) => precommit.encode(),
            PeerMessage::Certified(certified) => certified.encode(),
            PeerMessage::Evidence(evidence) => evidence.encode(),
            PeerMessage::Want { slot, digest } => {
                let mut out = slot.to_be_bytes().to_vec();
                out.extend_from_slice(&digest.0);
                out
            }
            PeerMessage::Forward { transaction } => transaction.transaction().bytes().to_vec(),
            PeerMessage::Mine(mining) => mining.encode(),
        }
    }
}

impl PeerMessage {
    /// Decodes a payload of `command` on a chain of `servers` servers (the
    /// most signatures a certificate may carry).
    pub fn decode(command: PeerCommand, payload: &[u8], servers: usize) -> Result<PeerMessage> {
        let name = command.name();
        let wrong = |what: String| Error::Invalid(format!("{name} payload: {what}"));
        match command {
            PeerCommand::Register => Hello::decode(payload, servers)
                .map(PeerMessage::Register)
                .map_err(|e| wrong(e.to_string())),
            PeerCommand::Heart => Hello::decode(payload, servers)
                .map(PeerMessage::Heart)
                .map_err(|e| wrong(e.to_string())),
            PeerCommand::Round => decode_round(payload, servers).map_err(|e| wrong(e.to_string())),
            PeerCommand::Prevote => Prevote::decode(payload, servers).map(PeerMessage::Prevote),
            PeerCommand::Precommit => {
                Precommit::decode(payload, servers).map(PeerMessage::Precommit)
            }
            PeerCommand::Certified => {
                Certified::decode(payload, servers).map(PeerMessage::Certified)
            }
            PeerCommand::Evidence => Evidence::decode(payload, servers).map(PeerMessage::Evidence),
            PeerCommand::Want => {
                if payload.len() != 40 {
                    return Err(wrong(format!("40 bytes, got {}", payload.len())));
                }
                Ok(PeerMessage::Want {
                    slot: be_u64(&payload[..8], "want slot")?,
                    digest: Hash(bytes32(&payload[8..], "want digest")?),
                })
            }
            PeerCommand::Forward => Transaction::decode(payload)
                .map(|transaction| PeerMessage::Forward { transaction })
                .map_err(|e| wrong(e.to_string())),
            PeerCommand::Mine => Mining::decode(payload).map(PeerMessage::Mine),
        }
    }
}

/// A `round` payload: the header's length, the signed header, the count and
/// the transactions, each length checked before it is read.
fn decode_round(payload: &[u8], servers: usize) -> Result<PeerMessage> {
    let short = || Error::Invalid(format!("{} bytes is too short", payload.len()));
    let length = payload.get(..4).ok_or_else(short)?;
    let length = u32::from_be_bytes(length.try_into().expect("4")) as usize;
    let rest = &payload[4..];
    if rest.len() < length.saturating_add(4) {
        return Err(Error::Invalid(format!(
            "says its header is {length} bytes but {} bytes follow",
            rest.len()
        )));
    }
    let header = SignedHeader::decode(&rest[..length], servers)?;
    let rest = &rest[length..];
    let count = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
    let body = &rest[4..];
    if (count as u64).checked_mul(TX_LEN as u64) != Some(body.len() as u64) {
        return Err(Error::Invalid(format!(
            "says {count} transactions but carries {} bytes",
            body.len()
        )));
    }
    let transactions = body
        .chunks_exact(TX_LEN)
        .map(Transaction::decode)
        .collect::<Result<_>>()?;
    Ok(PeerMessage::Round {
        header,
        transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_peer_payloads_are_refused() {
        let decode = |command, bytes: &[u8]| PeerMessage::decode(command, bytes, 4);
        assert!(decode(PeerCommand::Round, &[0; 3]).is_err());
        // A header length larger than what follows, and the largest one:
        // refused with no overflow in the check.
        let mut round = vec![0u8; 8];
        round[..4].copy_from_slice(&100u32.to_be_bytes());
        assert!(decode(PeerCommand::Round, &round).is_err());
        round[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(PeerCommand::Round, &round).is_err());
        assert!(decode(PeerCommand::Want, &[0; 39]).is_err());
        assert!(decode(PeerCommand::Prevote, &[0; 10]).is_err());
        assert!(decode(PeerCommand::Certified, &[]).is_err());
        assert!(decode(PeerCommand::Heart, &[0; 79]).is_err());
        assert!(decode(PeerCommand::Forward, &[0; 141]).is_err());
    }

    #[test]
    fn a_want_round_trips_and_names_its_round() {
        let want: PeerMessage = PeerMessage::Want {
            slot: 7,
            digest: Hash([9; 32]),
        };
        let bytes = want.payload();
        assert_eq!(bytes.len(), 40);
        assert_eq!(
            PeerMessage::decode(PeerCommand::Want, &bytes, 3).unwrap(),
            want
        );
    }
}

//! What servers say to each other: the seven [`PeerCommand`]s and the
//! [`PeerMessage`] each one's payload decodes to, with the [`Status`] carried
//! by `register` and `heart` and the beta's [`Decision`] carried by `result`.
//!
//! These are payloads only. They travel inside a signed envelope
//! (`envelope.rs`), and are decoded here only after the envelope's signature
//! has been checked against the trust list (`servers.rs`). Each message's
//! payload encoding ([`PeerMessage::payload`]) and decoding
//! ([`PeerMessage::decode`]) list the commands in the same order.

use crate::error::{Error, Result};
use crate::transaction::{AsTransaction, TX_LEN, Transaction};
use crate::types::{BlockNumber, Hash, Slot, be_u64, bytes32};

/// The server-to-server commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerCommand {
    /// Registration, answered with the server's signed status.
    Register,
    /// Heartbeat carrying the sender's status, answered with the receiver's.
    Heart,
    /// ROUND(s): the beta's transactions and balance hash.
    Round,
    /// VOTE(s): a server's balance hash after applying ROUND(s).
    Vote,
    /// RESULT(s): the beta's decision.
    Result,
    /// The beta's packed database, for servers out of sync.
    Push,
    /// A transaction passed on to the alpha that will take it.
    Forward,
}

impl PeerCommand {
    pub const ALL: [PeerCommand; 7] = [
        PeerCommand::Register,
        PeerCommand::Heart,
        PeerCommand::Round,
        PeerCommand::Vote,
        PeerCommand::Result,
        PeerCommand::Push,
        PeerCommand::Forward,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerCommand::Register => "register",
            PeerCommand::Heart => "heart",
            PeerCommand::Round => "round",
            PeerCommand::Vote => "vote",
            PeerCommand::Result => "result",
            PeerCommand::Push => "push",
            PeerCommand::Forward => "forward",
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

/// The beta's decision on a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The hash a majority reported, if one did.
    pub consensus: Option<Hash>,
    /// How many servers reported the winning (or most common) hash.
    pub agreeing: u32,
    /// How many servers voted, the beta included.
    pub voters: u32,
}

/// The decoded payload of a peer message. `Tx` is [`Transaction`] as decoded
/// and [`crate::transaction::VerifiedTx`] once signatures are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage<Tx = Transaction> {
    /// `register`: payload = status (80 bytes).
    Register(Status),
    /// `heart`: payload = status (80 bytes).
    Heart(Status),
    /// `round`: payload = balance hash (32) | count u32 | count transactions.
    Round { hash: Hash, transactions: Vec<Tx> },
    /// `vote`: payload = balance hash (32).
    Vote { hash: Hash },
    /// `result`: payload = outcome u8 (1 consensus, 0 none) | hash (32) |
    /// agreeing u32 | voters u32. The hash is zero without consensus.
    Result(Decision),
    /// `push`: payload = the packed balance database.
    Push { packed: Vec<u8> },
    /// `forward`: payload = one transaction (140 bytes).
    Forward { transaction: Tx },
}

impl<Tx> PeerMessage<Tx> {
    pub fn command(&self) -> PeerCommand {
        match self {
            PeerMessage::Register(_) => PeerCommand::Register,
            PeerMessage::Heart(_) => PeerCommand::Heart,
            PeerMessage::Round { .. } => PeerCommand::Round,
            PeerMessage::Vote { .. } => PeerCommand::Vote,
            PeerMessage::Result(_) => PeerCommand::Result,
            PeerMessage::Push { .. } => PeerCommand::Push,
            PeerMessage::Forward { .. } => PeerCommand::Forward,
        }
    }
}

impl<Tx: AsTransaction> PeerMessage<Tx> {
    /// The payload bytes of this message.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            PeerMessage::Register(status) | PeerMessage::Heart(status) => status.encode(),
            PeerMessage::Round { hash, transactions } => {
                let mut out = Vec::with_capacity(36 + TX_LEN * transactions.len());
                out.extend_from_slice(&hash.0);
                out.extend_from_slice(&(transactions.len() as u32).to_be_bytes());
                for tx in transactions {
                    out.extend_from_slice(tx.transaction().bytes());
                }
                out
            }
            PeerMessage::Vote { hash } => hash.0.to_vec(),
            PeerMessage::Result(decision) => {
                let mut out = Vec::with_capacity(41);
                out.push(decision.consensus.is_some() as u8);
                out.extend_from_slice(&decision.consensus.unwrap_or_default().0);
                out.extend_from_slice(&decision.agreeing.to_be_bytes());
                out.extend_from_slice(&decision.voters.to_be_bytes());
                out
            }
            PeerMessage::Push { packed } => packed.clone(),
            PeerMessage::Forward { transaction } => transaction.transaction().bytes().to_vec(),
        }
    }
}

impl PeerMessage {
    pub fn decode(command: PeerCommand, payload: &[u8]) -> Result<PeerMessage> {
        let name = command.name();
        let wrong = |what: String| Error::Invalid(format!("{name} payload: {what}"));
        match command {
            PeerCommand::Register => Status::decode(payload)
                .map(PeerMessage::Register)
                .map_err(|e| wrong(e.to_string())),
            PeerCommand::Heart => Status::decode(payload)
                .map(PeerMessage::Heart)
                .map_err(|e| wrong(e.to_string())),
            PeerCommand::Round => {
                if payload.len() < 36 {
                    return Err(wrong(format!("at least 36 bytes, got {}", payload.len())));
                }
                let hash = Hash(bytes32(&payload[..32], "round hash")?);
                let count = u32::from_be_bytes(payload[32..36].try_into().expect("4")) as usize;
                let body = &payload[36..];
                if (count as u64).checked_mul(TX_LEN as u64) != Some(body.len() as u64) {
                    return Err(wrong(format!(
                        "says {count} transactions but carries {} bytes",
                        body.len()
                    )));
                }
                let transactions = body
                    .chunks_exact(TX_LEN)
                    .map(Transaction::decode)
                    .collect::<Result<_>>()?;
                Ok(PeerMessage::Round { hash, transactions })
            }
            PeerCommand::Vote => Ok(PeerMessage::Vote {
                hash: Hash(bytes32(payload, "vote hash")?),
            }),
            PeerCommand::Result => {
                if payload.len() != 41 {
                    return Err(wrong(format!("41 bytes, got {}", payload.len())));
                }
                let hash = Hash(bytes32(&payload[1..33], "result hash")?);
                let consensus = match payload[0] {
                    0 => None,
                    1 => Some(hash),
                    other => return Err(wrong(format!("outcome must be 0 or 1, got {other}"))),
                };
                Ok(PeerMessage::Result(Decision {
                    consensus,
                    agreeing: u32::from_be_bytes(payload[33..37].try_into().expect("4")),
                    voters: u32::from_be_bytes(payload[37..41].try_into().expect("4")),
                }))
            }
            PeerCommand::Push => Ok(PeerMessage::Push {
                packed: payload.to_vec(),
            }),
            PeerCommand::Forward => Transaction::decode(payload)
                .map(|transaction| PeerMessage::Forward { transaction })
                .map_err(|e| wrong(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_peer_payloads_are_refused() {
        assert!(PeerMessage::decode(PeerCommand::Round, &[0; 35]).is_err());
        let mut round = vec![0u8; 36];
        round[35] = 1; // says one transaction, carries none
        assert!(PeerMessage::decode(PeerCommand::Round, &round).is_err());
        // The largest count a round can claim, over a body that is empty or
        // one transaction long: refused, with no overflow in the check.
        round[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(PeerMessage::decode(PeerCommand::Round, &round).is_err());
        round.extend_from_slice(&[0; TX_LEN]);
        assert!(PeerMessage::decode(PeerCommand::Round, &round).is_err());
        assert!(PeerMessage::decode(PeerCommand::Vote, &[0; 31]).is_err());
        let mut result = vec![0u8; 41];
        result[0] = 2;
        assert!(PeerMessage::decode(PeerCommand::Result, &result).is_err());
        assert!(PeerMessage::decode(PeerCommand::Heart, &[0; 79]).is_err());
        assert!(PeerMessage::decode(PeerCommand::Forward, &[0; 141]).is_err());
    }
}

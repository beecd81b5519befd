//! What a client sends and gets back: the [`Request`] a node reads and the
//! [`Reply`] it answers with, with the words a reply uses for what became of
//! a payment ([`Disposition`]) and what a node knows of one ([`TxStatus`]).
//!
//! Server commands arrive through the same two types: their parameters are a
//! signed [`Envelope`], decoded in `envelope.rs`. Every client command's
//! encoding sits next to its decoding in the two `match`es below.

use super::{Envelope, PeerCommand, expect_params, quote};
use crate::error::{Error, Result};
use crate::seal::Seal;
use crate::transaction::Transaction;
use crate::types::{Amount, BlockNumber, Hash, PublicKey, ServerId, Slot, TxId, be_u64, bytes32};

/// Words an `E` reply to `T` contains when the slot's alpha is known to be
/// down, so that a client can wait for the next slot instead of giving up.
pub const ALPHA_DOWN: &str = "alpha down";

/// The reply command of an error.
pub const ERROR: &[u8] = b"E";

/// A request to a node, client query or peer message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `I`: node information as JSON.
    Info,
    /// `N`: block height.
    Height,
    /// `B [number]`: a block.
    Block(BlockNumber),
    /// `H [number]`: a block's hash.
    BlockHash(BlockNumber),
    /// `A [key]`: an account's balance.
    Account(PublicKey),
    /// `T [transaction]`: submit a payment.
    Submit(Transaction),
    /// `S [id]`: a transaction's status.
    Status(TxId),
    /// `D`: the packed balance database.
    Database,
    /// A signed server-to-server message.
    Peer(Envelope),
}

impl Request {
    /// Reads `[chain][command][params...]`, refusing another chain, an unknown
    /// command, and the wrong number or length of parameters.
    pub fn decode(chain: &str, frames: &[&[u8]]) -> Result<Request> {
        let [got_chain, command, params @ ..] = frames else {
            return Err(Error::Invalid(format!(
                "a request is [chain][command][parameters...], got {} frame{}",
                frames.len(),
                if frames.len() == 1 { "" } else { "s" }
            )));
        };
        if *got_chain != chain.as_bytes() {
            return Err(Error::Invalid(format!(
                "wrong chain: this node serves {chain:?}, the request names {}",
                quote(got_chain)
            )));
        }
        match *command {
            b"I" => expect_params("I", params, &[]).map(|_| Request::Info),
            b"N" => expect_params("N", params, &[]).map(|_| Request::Height),
            b"B" => {
                expect_params("B", params, &["block number: 8 bytes"])?;
                Ok(Request::Block(be_u64(
                    params[0],
                    "command B: the block number",
                )?))
            }
            b"H" => {
                expect_params("H", params, &["block number: 8 bytes"])?;
                Ok(Request::BlockHash(be_u64(
                    params[0],
                    "command H: the block number",
                )?))
            }
            b"A" => {
                expect_params("A", params, &["public key: 32 bytes"])?;
                Ok(Request::Account(PublicKey(bytes32(
                    params[0],
                    "command A: the public key",
                )?)))
            }
            b"T" => {
                expect_params("T", params, &["transaction: 140 bytes"])?;
                Transaction::decode(params[0])
                    .map(Request::Submit)
                    .map_err(|e| Error::Invalid(format!("command T: {e}")))
            }
            b"S" => {
                expect_params("S", params, &["transaction id: 32 bytes"])?;
                Ok(Request::Status(Hash(bytes32(
                    params[0],
                    "command S: the transaction id",
                )?)))
            }
            b"D" => expect_params("D", params, &[]).map(|_| Request::Database),
            other => match PeerCommand::from_bytes(other) {
                Some(peer) => Envelope::decode(peer, params).map(Request::Peer),
                None => Err(Error::Invalid(format!(
                    "unknown command {}: client commands are I N B H A T S D, \
                     server commands are {}",
                    quote(other),
                    PeerCommand::ALL.map(|c| c.name()).join(" ")
                ))),
            },
        }
    }

    /// The frames of this request for `chain`.
    pub fn encode(&self, chain: &str) -> Vec<Vec<u8>> {
        let mut frames = vec![
            chain.as_bytes().to_vec(),
            self.command().as_bytes().to_vec(),
        ];
        match self {
            Request::Info | Request::Height | Request::Database => {}
            Request::Block(n) | Request::BlockHash(n) => frames.push(n.to_be_bytes().to_vec()),
            Request::Account(key) => frames.push(key.0.to_vec()),
            Request::Submit(tx) => frames.push(tx.bytes().to_vec()),
            Request::Status(id) => frames.push(id.0.to_vec()),
            Request::Peer(envelope) => frames.extend(envelope.params()),
        }
        frames
    }

    /// The command word or letter.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Info => "I",
            Request::Height => "N",
            Request::Block(_) => "B",
            Request::BlockHash(_) => "H",
            Request::Account(_) => "A",
            Request::Submit(_) => "T",
            Request::Status(_) => "S",
            Request::Database => "D",
            Request::Peer(envelope) => envelope.command.name(),
        }
    }
}

/// What a node did with a submitted transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// This server is the alpha and accepted it into its round.
    Accepted(ServerId),
    /// Sent on to the current alpha.
    Forwarded(ServerId),
    /// Kept through the blackout, to be handed to the next alpha.
    Held(ServerId),
}

impl Disposition {
    pub fn word(&self) -> &'static str {
        match self {
            Disposition::Accepted(_) => "accepted",
            Disposition::Forwarded(_) => "forwarded",
            Disposition::Held(_) => "held",
        }
    }

    /// The server that has, or will have, the transaction.
    pub fn server(&self) -> ServerId {
        match self {
            Disposition::Accepted(s) | Disposition::Forwarded(s) | Disposition::Held(s) => *s,
        }
    }
}

/// What a node knows of a transaction id. `Committed` and `Lost` are
/// certain, and name the slot of the round that decided them, so that a
/// client knows which round to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Accepted, forwarded or held here, and not yet decided.
    Pending,
    /// In block `block`, which the round of slot `slot` committed.
    Committed { block: BlockNumber, slot: Slot },
    /// Seen here, but the round of slot `slot` was decided without it.
    Lost { slot: Slot },
    /// Never seen here.
    Unknown,
}

/// A reply from a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `["I"][json]`
    Info(String),
    /// `["N"][height u64]`
    Height(BlockNumber),
    /// `["B"][seal][block]`: the seal that counts for the block (nonce u64
    /// | seal time u64), or an empty frame while it is not sealed.
    Block { seal: Option<Seal>, block: Vec<u8> },
    /// `["H"][hash 32]`
    BlockHash(Hash),
    /// `["A"][balance u32]`
    Account(Amount),
    /// `["T"][id 32][disposition][server u32]`
    Submitted { id: TxId, disposition: Disposition },
    /// `["S"]["pending"]`, `["S"]["unknown"]`, `["S"]["lost"][slot u64]` or
    /// `["S"]["committed"][block u64][slot u64]`
    Status(TxStatus),
    /// `["D"][hash 32][slot u64][height u64][certified][packed]`: the
    /// committed database with the commit certificate that vouches for it
    /// (a `certified` payload, PROTOCOL.md §11; empty for the anchor).
    Database {
        hash: Hash,
        slot: Slot,
        height: BlockNumber,
        certified: Vec<u8>,
        packed: Vec<u8>,
    },
    /// `[command]`: a peer message was taken.
    Ack(PeerCommand),
    /// `[command][signer][slot][payload][signature]`: a signed answer to
    /// `register` or `heart`.
    Signed(Envelope),
    /// `["E"][message]`
    Error(String),
}

impl Reply {
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }

    pub fn encode(&self) -> Vec<Vec<u8>> {
        match self {
            Reply::Info(json) => vec![b"I".to_vec(), json.as_bytes().to_vec()],
            Reply::Height(n) => vec![b"N".to_vec(), n.to_be_bytes().to_vec()],
            Reply::Block { seal, block } => vec![
                b"B".to_vec(),
                seal.map_or_else(Vec::new, |seal| seal.to_bytes().to_vec()),
                block.clone(),
            ],
            Reply::BlockHash(hash) => vec![b"H".to_vec(), hash.0.to_vec()],
            Reply::Account(balance) => vec![b"A".to_vec(), balance.to_be_bytes().to_vec()],
            Reply::Submitted { id, disposition } => vec![
                b"T".to_vec(),
                id.0.to_vec(),
                disposition.word().as_bytes().to_vec(),
                disposition.server().0.to_be_bytes().to_vec(),
            ],
            Reply::Status(status) => match status {
                TxStatus::Pending => vec![b"S".to_vec(), b"pending".to_vec()],
                TxStatus::Committed { block, slot } => vec![
                    b"S".to_vec(),
                    b"committed".to_vec(),
                    block.to_be_bytes().to_vec(),
                    slot.to_be_bytes().to_vec(),
                ],
                TxStatus::Lost { slot } => {
                    vec![b"S".to_vec(), b"lost".to_vec(), slot.to_be_bytes().to_vec()]
                }
                TxStatus::Unknown => vec![b"S".to_vec(), b"unknown".to_vec()],
            },
            Reply::Database {
                hash,
                slot,
                height,
                certified,
                packed,
            } => vec![
                b"D".to_vec(),
                hash.0.to_vec(),
                slot.to_be_bytes().to_vec(),
                height.to_be_bytes().to_vec(),
                certified.clone(),
                packed.clone(),
            ],
            Reply::Ack(command) => vec![command.name().as_bytes().to_vec()],
            Reply::Signed(envelope) => {
                let mut frames = vec![envelope.command.name().as_bytes().to_vec()];
                frames.extend(envelope.params());
                frames
            }
            Reply::Error(message) => vec![ERROR.to_vec(), message.as_bytes().to_vec()],
        }
    }

    /// Reads a reply. `E` replies decode to [`Reply::Error`]; a reply that is
    /// not one rota sends is an error.
    ///
    /// One piece: a single `match` with an arm per reply command, each a few
    /// lines, so that every reply's layout reads beside its neighbours and
    /// beside [`Reply::encode`].
    pub fn decode(frames: &[&[u8]]) -> Result<Reply> {
        let [command, results @ ..] = frames else {
            return Err(Error::Invalid("an empty reply".into()));
        };
        let shape = |wanted: usize| -> Result<()> {
            if results.len() == wanted {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "reply {} should carry {wanted} frame(s), got {}",
                    quote(command),
                    results.len()
                )))
            }
        };
        match *command {
            b"E" => {
                shape(1)?;
                Ok(Reply::Error(
                    String::from_utf8_lossy(results[0]).into_owned(),
                ))
            }
            b"I" => {
                shape(1)?;
                String::from_utf8(results[0].to_vec())
                    .map(Reply::Info)
                    .map_err(|_| Error::Invalid("info reply is not UTF-8".into()))
            }
            b"N" => {
                shape(1)?;
                Ok(Reply::Height(be_u64(results[0], "the height")?))
            }
            b"B" => {
                shape(2)?;
                let seal = match results[0] {
                    [] => None,
                    seal => Some(Seal::from_bytes(seal.try_into().map_err(|_| {
                        Error::Invalid(format!(
                            "a block's seal is 16 bytes or none, got {}",
                            seal.len()
                        ))
                    })?)),
                };
                if seal.is_some_and(|seal| seal.nonce == 0) {
                    return Err(Error::Invalid("a block's seal has nonce 0".into()));
                }
                Ok(Reply::Block {
                    seal,
                    block: results[1].to_vec(),
                })
            }
            b"H" => {
                shape(1)?;
                Ok(Reply::BlockHash(Hash(bytes32(
                    results[0],
                    "the block hash",
                )?)))
            }
            b"A" => {
                shape(1)?;
                let balance: [u8; 4] = results[0]
                    .try_into()
                    .map_err(|_| Error::Invalid("a balance is 4 bytes".into()))?;
                Ok(Reply::Account(u32::from_be_bytes(balance)))
            }
            b"T" => {
                shape(3)?;
                let id = Hash(bytes32(results[0], "the transaction id")?);
                let server: [u8; 4] = results[2]
                    .try_into()
                    .map_err(|_| Error::Invalid("a server identifier is 4 bytes".into()))?;
                let server = ServerId(u32::from_be_bytes(server));
                let disposition = match results[1] {
                    b"accepted" => Disposition::Accepted(server),
                    b"forwarded" => Disposition::Forwarded(server),
                    b"held" => Disposition::Held(server),
                    other => {
                        return Err(Error::Invalid(format!(
                            "unknown disposition {}",
                            quote(other)
                        )));
                    }
                };
                Ok(Reply::Submitted { id, disposition })
            }
            b"S" => match results {
                [b"pending"] => Ok(Reply::Status(TxStatus::Pending)),
                [b"unknown"] => Ok(Reply::Status(TxStatus::Unknown)),
                [b"lost", slot] => Ok(Reply::Status(TxStatus::Lost {
                    slot: be_u64(slot, "the deciding slot")?,
                })),
                [b"committed", block, slot] => Ok(Reply::Status(TxStatus::Committed {
                    block: be_u64(block, "the block number")?,
                    slot: be_u64(slot, "the deciding slot")?,
                })),
                _ => Err(Error::Invalid(
                    "malformed status reply: S is pending, unknown, lost [slot u64] \
                     or committed [block u64] [slot u64]"
                        .into(),
                )),
            },
            b"D" => {
                shape(5)?;
                Ok(Reply::Database {
                    hash: Hash(bytes32(results[0], "the database hash")?),
                    slot: be_u64(results[1], "the slot")?,
                    height: be_u64(results[2], "the height")?,
                    certified: results[3].to_vec(),
                    packed: results[4].to_vec(),
                })
            }
            other => match PeerCommand::from_bytes(other) {
                Some(peer) if results.is_empty() => Ok(Reply::Ack(peer)),
                Some(peer) => Envelope::decode(peer, results).map(Reply::Signed),
                None => Err(Error::Invalid(format!("unknown reply {}", quote(other)))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    const CHAIN: &str = "test";

    fn frames(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|f| f.as_slice()).collect()
    }

    fn round_trip(request: Request) {
        let encoded = request.encode(CHAIN);
        assert_eq!(Request::decode(CHAIN, &frames(&encoded)).unwrap(), request);
    }

    #[test]
    fn every_client_request_round_trips() {
        let payer = Keypair::from_seed(&[1; 32]);
        round_trip(Request::Info);
        round_trip(Request::Height);
        round_trip(Request::Block(7));
        round_trip(Request::BlockHash(7));
        round_trip(Request::Account(PublicKey([2; 32])));
        round_trip(Request::Submit(Transaction::sign(
            CHAIN,
            &payer,
            PublicKey([2; 32]),
            3,
            4,
        )));
        round_trip(Request::Status(Hash([5; 32])));
        round_trip(Request::Database);
    }

    #[test]
    fn malformed_requests_get_errors_that_name_the_problem() {
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (vec![b"test".to_vec()], "got 1 frame"),
            (vec![b"main".to_vec(), b"I".to_vec()], "wrong chain"),
            (
                vec![b"test".to_vec(), b"Q".to_vec()],
                "unknown command \"Q\"",
            ),
            (
                vec![b"test".to_vec(), b"I".to_vec(), b"x".to_vec()],
                "takes no parameters, got 1",
            ),
            (
                vec![b"test".to_vec(), b"B".to_vec()],
                "takes 1 parameter (block number: 8 bytes), got 0",
            ),
            (
                vec![b"test".to_vec(), b"B".to_vec(), vec![1, 2]],
                "must be 8 bytes, got 2",
            ),
            (
                vec![b"test".to_vec(), b"A".to_vec(), vec![0; 31]],
                "must be 32 bytes, got 31",
            ),
            (
                vec![b"test".to_vec(), b"T".to_vec(), vec![0; 100]],
                "140 bytes, got 100",
            ),
            (
                vec![b"test".to_vec(), b"prevote".to_vec(), vec![0; 32]],
                "command prevote takes 4 parameters",
            ),
        ];
        for (request, expected) in cases {
            let err = Request::decode(CHAIN, &frames(&request))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn an_error_quotes_at_most_a_short_prefix_of_a_huge_frame() {
        let huge: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        for request in [
            vec![huge.clone(), b"I".to_vec()],
            vec![CHAIN.as_bytes().to_vec(), huge.clone()],
        ] {
            let err = Request::decode(CHAIN, &frames(&request))
                .unwrap_err()
                .to_string();
            assert!(err.len() < 1_024, "an error of {} bytes", err.len());
            assert!(err.contains("(8388608 bytes)"), "{err}");
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = vec![
            Reply::Info("{}".into()),
            Reply::Height(9),
            Reply::Block {
                seal: None,
                block: vec![1, 2],
            },
            Reply::Block {
                seal: Some(Seal { nonce: 3, time: 4 }),
                block: vec![1, 2],
            },
            Reply::BlockHash(Hash([1; 32])),
            Reply::Account(77),
            Reply::Submitted {
                id: Hash([2; 32]),
                disposition: Disposition::Held(ServerId(3)),
            },
            Reply::Status(TxStatus::Committed { block: 4, slot: 5 }),
            Reply::Status(TxStatus::Pending),
            Reply::Status(TxStatus::Lost { slot: 6 }),
            Reply::Status(TxStatus::Unknown),
            Reply::Database {
                hash: Hash([3; 32]),
                slot: 1,
                height: 2,
                certified: vec![7; 10],
                packed: vec![0; 36],
            },
            Reply::Ack(PeerCommand::Prevote),
            Reply::Error("no".into()),
        ];
        for reply in replies {
            assert_eq!(Reply::decode(&frames(&reply.encode())).unwrap(), reply);
        }
    }

    #[test]
    fn a_status_reply_has_the_documented_bytes() {
        let cases = [
            (TxStatus::Pending, vec![b"S".to_vec(), b"pending".to_vec()]),
            (TxStatus::Unknown, vec![b"S".to_vec(), b"unknown".to_vec()]),
            (
                TxStatus::Lost { slot: 0x0102 },
                vec![
                    b"S".to_vec(),
                    b"lost".to_vec(),
                    vec![0, 0, 0, 0, 0, 0, 1, 2],
                ],
            ),
            (
                TxStatus::Committed {
                    block: 7,
                    slot: 28_333_333,
                },
                vec![
                    b"S".to_vec(),
                    b"committed".to_vec(),
                    vec![0, 0, 0, 0, 0, 0, 0, 7],
                    vec![0, 0, 0, 0, 0x01, 0xb0, 0x55, 0x15],
                ],
            ),
        ];
        for (status, bytes) in cases {
            assert_eq!(Reply::Status(status).encode(), bytes, "{status:?}");
            assert_eq!(
                Reply::decode(&frames(&bytes)).unwrap(),
                Reply::Status(status)
            );
        }
    }

    #[test]
    fn a_status_reply_without_its_slot_is_refused() {
        let eight = vec![0; 8];
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![b"S".to_vec(), b"lost".to_vec()],
            vec![b"S".to_vec(), b"lost".to_vec(), vec![0; 4]],
            vec![b"S".to_vec(), b"committed".to_vec(), eight.clone()],
            vec![
                b"S".to_vec(),
                b"committed".to_vec(),
                eight.clone(),
                vec![0; 7],
            ],
            vec![b"S".to_vec(), b"pending".to_vec(), eight.clone()],
            vec![b"S".to_vec(), b"decided".to_vec(), eight],
        ];
        for reply in cases {
            assert!(
                Reply::decode(&frames(&reply)).is_err(),
                "{reply:?} should be refused"
            );
        }
    }
}

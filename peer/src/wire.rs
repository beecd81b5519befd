//! The wire protocol: every request and reply rota sends, as ZeroMQ frames.
//!
//! A request is `[chain][command][params...]`; a reply is
//! `[command][result...]` or `["E"][message]`. Client commands are single
//! letters (`I N B H A T S D`); server-to-server commands are lowercase words
//! whose parameters are a signed envelope:
//!
//! ```text
//! [chain][command][signer key (32)][slot (8)][payload][signature (64)]
//! signature = ed25519(signer, "rota peer v1" | len(chain) | chain |
//!                             len(command) | command | slot | sha256(payload))
//! ```
//!
//! Each type's encoding and decoding sit together here; `docs/PROTOCOL.md`
//! describes the same bytes for people writing clients. Decoding checks shape
//! only. Signatures are checked once, by [`ServerList::verify`] and
//! [`crate::transaction::Verifier`], where input enters a node.

use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::transaction::{AsTransaction, TX_LEN, Transaction};
use crate::types::{Amount, BlockNumber, Hash, PublicKey, ServerId, Slot, TxId, be_u64, bytes32};

/// Longest chain name allowed.
pub const MAX_CHAIN_LEN: usize = 32;

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

fn expect_params(command: &str, params: &[&[u8]], wanted: &[&str]) -> Result<()> {
    if params.len() == wanted.len() {
        return Ok(());
    }
    let described = if wanted.is_empty() {
        "no parameters".to_string()
    } else {
        format!(
            "{} parameter{} ({})",
            wanted.len(),
            if wanted.len() == 1 { "" } else { "s" },
            wanted.join("; ")
        )
    };
    Err(Error::Invalid(format!(
        "command {command} takes {described}, got {}",
        params.len()
    )))
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
                "wrong chain: this node serves {chain:?}, the request names {:?}",
                String::from_utf8_lossy(got_chain)
            )));
        }
        let name = String::from_utf8_lossy(command);
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
                    "unknown command {name:?}: client commands are I N B H A T S D, \
                     server commands are {}",
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

/// What a node knows of a transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Accepted, forwarded or held here, and not yet in a committed block.
    Pending,
    /// In the given block.
    Committed(BlockNumber),
    /// Seen here, but its round committed without it.
    Lost,
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
    /// `["B"][block]`
    Block(Vec<u8>),
    /// `["H"][hash 32]`
    BlockHash(Hash),
    /// `["A"][balance u32]`
    Account(Amount),
    /// `["T"][id 32][disposition][server u32]`
    Submitted { id: TxId, disposition: Disposition },
    /// `["S"][status]` or `["S"]["committed"][block u64]`
    Status(TxStatus),
    /// `["D"][hash 32][slot u64][height u64][packed]`
    Database {
        hash: Hash,
        slot: Slot,
        height: BlockNumber,
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
            Reply::Block(bytes) => vec![b"B".to_vec(), bytes.clone()],
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
                TxStatus::Committed(n) => {
                    vec![
                        b"S".to_vec(),
                        b"committed".to_vec(),
                        n.to_be_bytes().to_vec(),
                    ]
                }
                TxStatus::Lost => vec![b"S".to_vec(), b"lost".to_vec()],
                TxStatus::Unknown => vec![b"S".to_vec(), b"unknown".to_vec()],
            },
            Reply::Database {
                hash,
                slot,
                height,
                packed,
            } => vec![
                b"D".to_vec(),
                hash.0.to_vec(),
                slot.to_be_bytes().to_vec(),
                height.to_be_bytes().to_vec(),
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
    pub fn decode(frames: &[&[u8]]) -> Result<Reply> {
        let [command, results @ ..] = frames else {
            return Err(Error::Invalid("an empty reply".into()));
        };
        let shape = |wanted: usize| -> Result<()> {
            if results.len() == wanted {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "reply {:?} should carry {wanted} frame(s), got {}",
                    String::from_utf8_lossy(command),
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
                shape(1)?;
                Ok(Reply::Block(results[0].to_vec()))
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
                            "unknown disposition {:?}",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                Ok(Reply::Submitted { id, disposition })
            }
            b"S" => match results {
                [b"pending"] => Ok(Reply::Status(TxStatus::Pending)),
                [b"lost"] => Ok(Reply::Status(TxStatus::Lost)),
                [b"unknown"] => Ok(Reply::Status(TxStatus::Unknown)),
                [b"committed", block] => Ok(Reply::Status(TxStatus::Committed(be_u64(
                    block,
                    "the block number",
                )?))),
                _ => Err(Error::Invalid("malformed status reply".into())),
            },
            b"D" => {
                shape(4)?;
                Ok(Reply::Database {
                    hash: Hash(bytes32(results[0], "the database hash")?),
                    slot: be_u64(results[1], "the slot")?,
                    height: be_u64(results[2], "the height")?,
                    packed: results[3].to_vec(),
                })
            }
            other => match PeerCommand::from_bytes(other) {
                Some(peer) if results.is_empty() => Ok(Reply::Ack(peer)),
                Some(peer) => Envelope::decode(peer, results).map(Reply::Signed),
                None => Err(Error::Invalid(format!(
                    "unknown reply {:?}",
                    String::from_utf8_lossy(other)
                ))),
            },
        }
    }
}

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

/// A signed server-to-server message, as it travels.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub command: PeerCommand,
    pub signer: PublicKey,
    pub slot: Slot,
    pub payload: Vec<u8>,
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Envelope({} slot {} from {}, {} bytes)",
            self.command.name(),
            self.slot,
            self.signer.to_string().get(..8).unwrap_or_default(),
            self.payload.len()
        )
    }
}

impl Envelope {
    /// The bytes a signer signs: a domain tag, the chain, the command, the
    /// slot and the SHA-256 of the payload.
    pub fn signed_bytes(chain: &str, command: PeerCommand, slot: Slot, payload: &[u8]) -> Vec<u8> {
        let name = command.name();
        let mut out = Vec::with_capacity(16 + chain.len() + name.len() + 8 + 32);
        out.extend_from_slice(b"rota peer v1");
        out.push(chain.len() as u8);
        out.extend_from_slice(chain.as_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&Hash::of(payload).0);
        out
    }

    /// Signs `message` for `slot` on `chain`.
    pub fn sign(keypair: &Keypair, chain: &str, slot: Slot, message: &PeerMessage) -> Envelope {
        Envelope::sign_payload(keypair, chain, slot, message.command(), message.payload())
    }

    /// Signs an encoded payload; [`Envelope::sign`] for a decoded message.
    pub fn sign_payload(
        keypair: &Keypair,
        chain: &str,
        slot: Slot,
        command: PeerCommand,
        payload: Vec<u8>,
    ) -> Envelope {
        let signature = keypair.sign(&Envelope::signed_bytes(chain, command, slot, &payload));
        Envelope {
            command,
            signer: keypair.public(),
            slot,
            payload,
            signature,
        }
    }

    fn params(&self) -> Vec<Vec<u8>> {
        vec![
            self.signer.0.to_vec(),
            self.slot.to_be_bytes().to_vec(),
            self.payload.clone(),
            self.signature.to_vec(),
        ]
    }

    fn decode(command: PeerCommand, params: &[&[u8]]) -> Result<Envelope> {
        let name = command.name();
        expect_params(
            name,
            params,
            &[
                "signer key, 32 bytes",
                "slot, 8 bytes",
                "payload",
                "signature, 64 bytes",
            ],
        )?;
        let signature: [u8; 64] = params[3].try_into().map_err(|_| {
            Error::Invalid(format!(
                "command {name}: the signature must be 64 bytes, got {}",
                params[3].len()
            ))
        })?;
        Ok(Envelope {
            command,
            signer: PublicKey(bytes32(
                params[0],
                &format!("command {name}: the signer key"),
            )?),
            slot: be_u64(params[1], &format!("command {name}: the slot"))?,
            payload: params[2].to_vec(),
            signature,
        })
    }

    /// The message inside, decoded from the payload.
    pub fn message(&self) -> Result<PeerMessage> {
        PeerMessage::decode(self.command, &self.payload)
    }
}

/// The ordered server list of a chain: who may sign peer messages, and the
/// identifier each server has (its position, from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerList {
    keys: Vec<PublicKey>,
}

/// The number of servers, of `servers` in all, that make a majority:
/// floor(N/2) + 1. The one majority rule: every count of servers uses it.
pub fn majority(servers: usize) -> usize {
    servers / 2 + 1
}

impl ServerList {
    pub fn new(keys: Vec<PublicKey>) -> ServerList {
        ServerList { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of servers that make a majority: floor(N/2) + 1.
    pub fn majority(&self) -> usize {
        majority(self.keys.len())
    }

    pub fn id_of(&self, key: &PublicKey) -> Option<ServerId> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(ServerId::from_index)
    }

    pub fn key(&self, id: ServerId) -> Option<PublicKey> {
        self.keys.get(id.index()).copied()
    }

    pub fn ids(&self) -> impl Iterator<Item = ServerId> + '_ {
        (0..self.keys.len()).map(ServerId::from_index)
    }

    /// Checks that the envelope's signer is in the list and its signature
    /// verifies for `chain`; returns the signer's identifier.
    pub fn verify(&self, chain: &str, envelope: &Envelope) -> Result<ServerId> {
        let id = self.id_of(&envelope.signer).ok_or_else(|| {
            Error::Signature(format!(
                "{} signed by {}, which is not in this chain's server list",
                envelope.command.name(),
                envelope.signer
            ))
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&envelope.signer.0).map_err(|_| {
            Error::Signature(format!("server key {} is not valid", envelope.signer))
        })?;
        let signed =
            Envelope::signed_bytes(chain, envelope.command, envelope.slot, &envelope.payload);
        key.verify_strict(
            &signed,
            &ed25519_dalek::Signature::from_bytes(&envelope.signature),
        )
        .map_err(|_| {
            Error::Signature(format!(
                "{} from server {id}: the signature does not verify",
                envelope.command.name()
            ))
        })?;
        Ok(id)
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
                if body.len() != count * TX_LEN {
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
            &payer,
            PublicKey([2; 32]),
            3,
            4,
        )));
        round_trip(Request::Status(Hash([5; 32])));
        round_trip(Request::Database);
    }

    #[test]
    fn every_peer_message_round_trips_and_verifies() {
        let key = Keypair::from_seed(&[1; 32]);
        let list = ServerList::new(vec![PublicKey([9; 32]), key.public()]);
        let tx = Transaction::sign(&key, PublicKey([2; 32]), 3, 4);
        let status = Status {
            slot: 5,
            balance_hash: Hash([6; 32]),
            height: 7,
            block_hash: Hash([8; 32]),
        };
        let messages = vec![
            PeerMessage::Register(status),
            PeerMessage::Heart(status),
            PeerMessage::Round {
                hash: Hash([1; 32]),
                transactions: vec![tx, tx],
            },
            PeerMessage::Vote {
                hash: Hash([2; 32]),
            },
            PeerMessage::Result(Decision {
                consensus: Some(Hash([3; 32])),
                agreeing: 2,
                voters: 3,
            }),
            PeerMessage::Result(Decision {
                consensus: None,
                agreeing: 1,
                voters: 2,
            }),
            PeerMessage::Push {
                packed: vec![1, 2, 3],
            },
            PeerMessage::Forward { transaction: tx },
        ];
        for message in messages {
            let envelope = Envelope::sign(&key, CHAIN, 42, &message);
            let request = Request::Peer(envelope.clone());
            let encoded = request.encode(CHAIN);
            let Request::Peer(back) = Request::decode(CHAIN, &frames(&encoded)).unwrap() else {
                panic!("not a peer request");
            };
            assert_eq!(list.verify(CHAIN, &back).unwrap(), ServerId(2));
            assert_eq!(back.message().unwrap(), message);
            let reply = Reply::Signed(envelope);
            assert_eq!(Reply::decode(&frames(&reply.encode())).unwrap(), reply);
        }
    }

    #[test]
    fn a_signature_binds_chain_command_slot_and_payload() {
        let key = Keypair::from_seed(&[1; 32]);
        let list = ServerList::new(vec![key.public()]);
        let envelope = Envelope::sign(
            &key,
            CHAIN,
            42,
            &PeerMessage::Vote {
                hash: Hash([2; 32]),
            },
        );
        assert!(list.verify("other", &envelope).is_err());
        let mut e = envelope.clone();
        e.slot = 41;
        assert!(list.verify(CHAIN, &e).is_err());
        let mut e = envelope.clone();
        e.payload[0] ^= 1;
        assert!(list.verify(CHAIN, &e).is_err());
        let mut e = envelope.clone();
        e.command = PeerCommand::Heart;
        assert!(list.verify(CHAIN, &e).is_err());
        assert!(list.verify(CHAIN, &envelope).is_ok());
    }

    #[test]
    fn a_signer_outside_the_list_is_refused_by_name() {
        let stranger = Keypair::from_seed(&[7; 32]);
        let list = ServerList::new(vec![PublicKey([9; 32])]);
        let envelope = Envelope::sign(
            &stranger,
            CHAIN,
            1,
            &PeerMessage::Vote {
                hash: Hash([2; 32]),
            },
        );
        let err = list.verify(CHAIN, &envelope).unwrap_err().to_string();
        assert!(err.contains("not in this chain's server list"), "{err}");
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
                vec![b"test".to_vec(), b"vote".to_vec(), vec![0; 32]],
                "command vote takes 4 parameters",
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
    fn malformed_peer_payloads_are_refused() {
        assert!(PeerMessage::decode(PeerCommand::Round, &[0; 35]).is_err());
        let mut round = vec![0u8; 36];
        round[35] = 1; // says one transaction, carries none
        assert!(PeerMessage::decode(PeerCommand::Round, &round).is_err());
        assert!(PeerMessage::decode(PeerCommand::Vote, &[0; 31]).is_err());
        let mut result = vec![0u8; 41];
        result[0] = 2;
        assert!(PeerMessage::decode(PeerCommand::Result, &result).is_err());
        assert!(PeerMessage::decode(PeerCommand::Heart, &[0; 79]).is_err());
        assert!(PeerMessage::decode(PeerCommand::Forward, &[0; 141]).is_err());
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = vec![
            Reply::Info("{}".into()),
            Reply::Height(9),
            Reply::Block(vec![1, 2]),
            Reply::BlockHash(Hash([1; 32])),
            Reply::Account(77),
            Reply::Submitted {
                id: Hash([2; 32]),
                disposition: Disposition::Held(ServerId(3)),
            },
            Reply::Status(TxStatus::Committed(4)),
            Reply::Status(TxStatus::Pending),
            Reply::Status(TxStatus::Lost),
            Reply::Status(TxStatus::Unknown),
            Reply::Database {
                hash: Hash([3; 32]),
                slot: 1,
                height: 2,
                packed: vec![0; 36],
            },
            Reply::Ack(PeerCommand::Vote),
            Reply::Error("no".into()),
        ];
        for reply in replies {
            assert_eq!(Reply::decode(&frames(&reply.encode())).unwrap(), reply);
        }
    }

    #[test]
    fn majority_is_more_than_half_of_all_servers() {
        let list = |n| ServerList::new(vec![PublicKey([0; 32]); n]);
        assert_eq!(list(1).majority(), 1);
        assert_eq!(list(2).majority(), 2);
        assert_eq!(list(3).majority(), 2);
        assert_eq!(list(4).majority(), 3);
        assert_eq!(list(5).majority(), 3);
    }
}

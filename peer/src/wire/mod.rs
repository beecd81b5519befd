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
//! The module is split by audience, one file per job:
//!
//! - `client.rs`: what a client sends and gets back: [`Request`], [`Reply`],
//!   [`Disposition`], [`TxStatus`];
//! - `server.rs`: what servers say to each other inside the envelope:
//!   [`PeerCommand`], [`PeerMessage`], [`Status`];
//! - `envelope.rs`: the signed [`Envelope`] that carries every server
//!   message, and the bytes its signature covers ([`Envelope::signed_bytes`]);
//! - `servers.rs`: the trust list, [`ServerList`]: who may sign, the
//!   identifier each signer has, and the one [`majority`] rule;
//! - `consensus/`: the round protocol's headers, votes and certificates
//!   ([`consensus::SignedHeader`], [`consensus::Prevote`],
//!   [`consensus::Precommit`], [`consensus::Certificate`]), their bytes and
//!   their signature checks, carried by `round`, `prevote`, `precommit`,
//!   `certified` and `evidence`.
//!
//! Where each command is read, and where `docs/PROTOCOL.md` describes it
//! (requests come in through [`Request::decode`], replies through
//! [`Reply::decode`]; both hand a server command's parameters to the envelope):
//!
//! | Command | Type | Decoded by | PROTOCOL.md |
//! |---|---|---|---|
//! | `I` | [`Request::Info`], [`Reply::Info`] | [`Request::decode`], [`Reply::decode`] | §4.1 |
//! | `N` | [`Request::Height`], [`Reply::Height`] | [`Request::decode`], [`Reply::decode`] | §4.2 |
//! | `B` | [`Request::Block`], [`Reply::Block`] | [`Request::decode`], [`Reply::decode`] | §4.3, §9 |
//! | `H` | [`Request::BlockHash`], [`Reply::BlockHash`] | [`Request::decode`], [`Reply::decode`] | §4.4 |
//! | `A` | [`Request::Account`], [`Reply::Account`] | [`Request::decode`], [`Reply::decode`] | §4.5 |
//! | `T` | [`Request::Submit`], [`Reply::Submitted`] with [`Disposition`] | [`Request::decode`], [`Reply::decode`] | §4.6, §5, §7 |
//! | `S` | [`Request::Status`], [`Reply::Status`] with [`TxStatus`] | [`Request::decode`], [`Reply::decode`] | §4.7 |
//! | `D` | [`Request::Database`], [`Reply::Database`] | [`Request::decode`], [`Reply::decode`] | §4.8, §8 |
//! | `E` | [`Reply::Error`] | [`Reply::decode`] | §3.5 |
//! | any server command | [`Request::Peer`], [`Reply::Signed`], [`Reply::Ack`], all carrying an [`Envelope`] | `Envelope::decode`, then [`ServerList::verify`] | §10.1, §10.2 |
//! | `register` | [`PeerMessage::Register`] with [`Status`] | [`PeerMessage::decode`], [`Status::decode`] | §10.3, §10.4, §11.4 |
//! | `heart` | [`PeerMessage::Heart`] with [`Status`] | [`PeerMessage::decode`], [`Status::decode`] | §10.3, §10.4, §11.4 |
//! | `round` | [`PeerMessage::Round`] with [`consensus::SignedHeader`] | [`PeerMessage::decode`], [`consensus::SignedHeader::decode`] | §10.4, §11.1 |
//! | `prevote` | [`PeerMessage::Prevote`] | [`consensus::Prevote::decode`] | §10.4, §11.1 |
//! | `precommit` | [`PeerMessage::Precommit`] | [`consensus::Precommit::decode`] | §10.4, §11.1 |
//! | `certified` | [`PeerMessage::Certified`] | [`consensus::Certified::decode`] | §10.4, §11.1 |
//! | `evidence` | [`PeerMessage::Evidence`] | [`consensus::Evidence::decode`] | §10.4, §11.1 |
//! | `want` | [`PeerMessage::Want`] | [`PeerMessage::decode`] | §10.4, §11.1 |
//! | `forward` | [`PeerMessage::Forward`] | [`PeerMessage::decode`] | §10.4, §11.3 |
//!
//! Each type's encoding and decoding sit together; `docs/PROTOCOL.md`
//! describes the same bytes for people writing clients. Decoding checks shape
//! only. Signatures are checked once, by [`ServerList::verify`] and
//! [`crate::transaction::Verifier`], where input enters a node.

mod client;
pub mod consensus;
mod envelope;
mod hello;
mod mining;
mod server;
mod servers;

pub use client::{ALPHA_DOWN, Disposition, ERROR, Reply, Request, TxStatus};
pub use envelope::Envelope;
pub use hello::{Greeting, HELLO_PREFIX_LEN, Hello, PARAMS_LEN, PROTOCOL_VERSION, Params};
pub use mining::Mining;
pub use server::{CertifiedStatus, PeerCommand, PeerMessage, STATUS_LEN, Status};
pub use servers::{ServerList, majority};

use crate::error::{Error, Result};

/// Longest chain name allowed.
pub const MAX_CHAIN_LEN: usize = 32;

/// The most bytes of a request an error text quotes.
pub const QUOTE_LIMIT: usize = 64;

/// Bytes from outside, fit to quote in an error: escaped, and cut to
/// [`QUOTE_LIMIT`] bytes with the full length when longer, so that an error
/// reply costs the same however large the request that caused it.
pub fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTE_LIMIT)];
    let text = format!("{:?}", String::from_utf8_lossy(shown));
    if shown.len() == bytes.len() {
        text
    } else {
        format!("{text}... ({} bytes)", bytes.len())
    }
}

/// Checks the number of parameters of `command`, naming each one wanted in
/// the refusal. Shared by client commands and the server envelope so that
/// every wrong count reads the same way (PROTOCOL.md §3.5 quotes it).
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

//! The connector's two kinds of failure: what stops it from starting
//! ([`Error`], reported by the node as it exits) and why an answer from
//! another server is not taken ([`Refusal`], logged and handed to the state
//! machine as a refused answer).

use std::net::SocketAddr;

use rota_peer::wire::PeerCommand;
use rota_peer::{ServerId, Slot};

/// Why the connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The DEALER to another server could not be set up (a malformed
    /// address, say; a server that is down is not an error).
    #[error("cannot connect to server {id}'s peering socket at {address}: {source}")]
    Connect {
        id: ServerId,
        address: SocketAddr,
        #[source]
        source: zmq::Error,
    },

    /// The conf gives no peering address for another server (a server conf
    /// that was not validated).
    #[error("server {id} has no peering address; give its [[servers]] entry one")]
    NoPeering { id: ServerId },

    /// Another ZeroMQ call failed (binding the signal pair).
    #[error(transparent)]
    Zmq(#[from] zmq::Error),
}

/// Why an answer from another server was not taken. Servers are not
/// trusted: a status must be signed by the server asked, for this chain and
/// a slot near this server's clock, with a commit certificate that vouches
/// for it, and a block must prove itself.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The signer is not in the list, or the signature does not verify.
    #[error("{0}")]
    Signature(rota_peer::Error),

    /// The answer is signed by a server other than the one asked.
    #[error("an answer from server {from} is signed by server {signer}")]
    WrongSigner { from: ServerId, signer: ServerId },

    /// The answer was signed for a slot more than 2 away from this server's.
    #[error("a status signed for slot {slot} is stale (this server is at slot {current})")]
    Stale { slot: Slot, current: Slot },

    /// The signed payload is not a status of the right shape.
    #[error("{0}")]
    Payload(rota_peer::Error),

    /// A status whose commit certificate does not check, or vouches for
    /// another slot or balance hash.
    #[error("{0}")]
    Uncertified(rota_peer::Error),

    /// A server that runs with other chain parameters.
    #[error(
        "server {from} runs with other chain parameters ({differences}): every server of a \
         chain needs the same server list, schedule, difficulty and genesis"
    )]
    Params { from: ServerId, differences: String },

    /// A signed answer that is not `register` or `heart`.
    #[error("answered with {}", .0.name())]
    NotAStatus(PeerCommand),

    /// A block that does not decode.
    #[error("block: {0}")]
    Block(rota_peer::Error),
}

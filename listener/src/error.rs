//! The listener's two kinds of failure: what stops it from starting
//! ([`Error`], reported by the node as it exits) and why a request is not
//! passed on to the ledger ([`Refusal`], sent back as the `E` reply).
//!
//! They are kept apart because they go to different people: an `Error` is
//! for the operator starting the node; a `Refusal` is for the client or
//! server that sent the request, and its text is part of the protocol.

use std::net::SocketAddr;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request socket could not be bound (the address is in use, say).
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: zmq::Error,
    },

    /// The peering socket could not be bound (the address is in use, say).
    #[error("cannot bind the peering socket (listen.peering) on {address}: {source}")]
    Peering {
        address: SocketAddr,
        #[source]
        source: zmq::Error,
    },

    /// The monitor of a request socket could not be attached.
    #[error("cannot monitor the {name} socket: {source}")]
    Monitor {
        name: &'static str,
        #[source]
        source: zmq::Error,
    },

    /// The event socket could not be bound on a publish address.
    #[error("cannot publish on {address}: {source}")]
    Publish {
        address: SocketAddr,
        #[source]
        source: zmq::Error,
    },

    /// Another ZeroMQ call failed (creating the event socket, binding the
    /// signal pair).
    #[error(transparent)]
    Zmq(#[from] zmq::Error),
}

/// Why a request was answered `E` at the door instead of reaching the
/// ledger. The texts are the `E` messages, quoted in `docs/PROTOCOL.md`
/// §2, §3.5 and §10.2: change neither without the other.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The frames are not a request rota reads (checks 1 to 4 of §3.4).
    #[error("{0}")]
    Malformed(rota_peer::Error),

    /// The client lane holds as many requests as it may
    /// ([`crate::MAX_QUEUED_CLIENT_REQUESTS`]).
    #[error("the node is busy; try again shortly")]
    Busy,

    /// A peering lane holds as many requests as it may
    /// ([`crate::MAX_QUEUED_CONSENSUS`], [`crate::MAX_QUEUED_BULK`]).
    #[error("the peering queue is full; try again shortly")]
    PeeringBusy,

    /// A server command on a client socket.
    #[error(
        "command {0} is a server command: servers send it to the peering socket, not to the \
         client socket"
    )]
    ServerCommand(&'static str),

    /// A client command other than `D` and `B` on the peering socket.
    #[error(
        "command {0} is not taken on the peering socket, which takes the server commands, D \
         and B: send it to the client socket"
    )]
    NotOnPeering(&'static str),

    /// The payment in a `T` does not verify.
    #[error("command T: {0}")]
    Payment(rota_peer::Error),

    /// A server envelope whose signer is not in the list, or whose signature
    /// does not verify.
    #[error("{0}")]
    Signature(rota_peer::Error),

    /// A signed server message whose payload has the wrong shape.
    #[error("{0}")]
    Payload(rota_peer::Error),

    /// The payment inside a `forward` does not verify.
    #[error("forward: {0}")]
    Forward(rota_peer::Error),

    /// A `register` or `heart` from a server that runs with other chain
    /// parameters.
    #[error(
        "server {from} runs with other chain parameters than this server ({differences}): every \
         server of a chain needs the same server list, schedule, difficulty and genesis"
    )]
    Params {
        from: rota_peer::ServerId,
        differences: String,
    },

    /// A header, vote, certificate or evidence whose signatures do not
    /// check, or that says something of itself that is not so.
    #[error("{command}: {error}")]
    Consensus {
        command: &'static str,
        error: rota_peer::Error,
    },

    /// A `round` carrying a payment whose signature does not verify: its
    /// alpha signed a round no honest server may prevote, so it is refused
    /// whole (every server refuses the same rounds).
    #[error("round {slot}: payment {index} does not verify: {error}")]
    RoundPayment {
        slot: u64,
        index: usize,
        error: rota_peer::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_protocol_md_quotes_them() {
        let bad = || rota_peer::Error::Signature("the payer's signature does not verify".into());
        assert_eq!(
            Refusal::Busy.to_string(),
            "the node is busy; try again shortly"
        );
        assert_eq!(
            Refusal::PeeringBusy.to_string(),
            "the peering queue is full; try again shortly"
        );
        assert_eq!(
            Refusal::ServerCommand("round").to_string(),
            "command round is a server command: servers send it to the peering socket, not to \
             the client socket"
        );
        assert_eq!(
            Refusal::NotOnPeering("T").to_string(),
            "command T is not taken on the peering socket, which takes the server commands, D \
             and B: send it to the client socket"
        );
        assert_eq!(
            Refusal::Payment(bad()).to_string(),
            "command T: the payer's signature does not verify"
        );
        assert_eq!(
            Refusal::Forward(bad()).to_string(),
            "forward: the payer's signature does not verify"
        );
        assert_eq!(
            Refusal::Signature(bad()).to_string(),
            "the payer's signature does not verify"
        );
    }
}

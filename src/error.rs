//! The error type of the `rota` library: configuration, storage and network
//! failures, each saying what was wrong and what is allowed.

use std::path::PathBuf;

/// Errors of the node and client library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value that is missing or not allowed.
    #[error("{0}")]
    Config(String),

    /// A shared-format error: decoding, signatures, seed files.
    #[error(transparent)]
    Peer(#[from] rota_peer::Error),

    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The block store failed.
    #[error("block store: {0}")]
    Store(String),

    /// A ZeroMQ call failed.
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),

    /// A node answered with an error.
    #[error("{0}")]
    Remote(String),

    /// A node did not answer in time (down, or not reachable).
    #[error("{0}")]
    NoAnswer(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of the `rota` library.
pub type Result<T> = std::result::Result<T, Error>;

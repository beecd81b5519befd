//! The one error type of the `rota-peer` crate. Every variant carries a message
//! that says what was wrong and, where it helps, what is allowed.

use std::path::PathBuf;

/// Errors from decoding, verifying and loading rota's shared formats.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not follow a rota format (wire frames, records, files).
    #[error("{0}")]
    Invalid(String),

    /// A signature that does not verify, or a signer that is not allowed.
    #[error("{0}")]
    Signature(String),

    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of the `rota-peer` crate.
pub type Result<T> = std::result::Result<T, Error>;

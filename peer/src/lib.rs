//! rota-peer: the shared vocabulary of rota, with no threads and no sockets.
//!
//! Everything two rota processes must agree on byte for byte lives here: key
//! pairs and seed files, the 140-byte transaction and its signature check, the
//! packed balance database and its hash, blocks, the slot schedule, and the
//! wire protocol (`wire/`: client requests and replies, server messages, the
//! signed envelope, and the trust list with its majority rule).

pub mod balances;
pub mod block;
pub mod error;
pub mod keys;
pub mod schedule;
pub mod seal;
pub mod signature;
pub mod transaction;
pub mod types;
pub mod wire;

pub use error::{Error, Result};
pub use types::{Amount, BlockNumber, Hash, Millis, PublicKey, ServerId, Slot, TxId};

//! Sealing blocks: who coordinates the nonce search (`leader.rs`), how the
//! coordinator hands the nonce range out (`coordinator.rs`), and one
//! server's whole part in the search (`miner.rs`): pure state machines on
//! a clock they are given, like the ledger core and the connector machine,
//! so that unit tests and simulations drive them alike (`tests.rs` runs a
//! cluster of them with a hash oracle). The search threads (`worker.rs`)
//! and the miner thread around the machine (`thread.rs`) are the node's.
//!
//! A seal only counts once a committed round carries it (the ledger's
//! `consensus::seal`); the search never holds a round up.

pub mod coordinator;
pub mod leader;
pub mod miner;
pub mod thread;
pub mod worker;

#[cfg(test)]
mod tests;

/// The nonce range the search covers.
pub const FIRST_NONCE: u64 = 1;
pub const LAST_NONCE: u64 = 2_000_000_000;

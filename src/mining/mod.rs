//! Sealing blocks: who coordinates the nonce search (`leader.rs`) and how
//! the coordinator hands the nonce range out (`coordinator.rs`). Both are
//! pure state machines on a clock they are given, like the ledger core
//! and the connector machine, so that unit tests and the cluster simulator
//! drive them alike.
//!
//! Not wired into the node yet (issue 11): the heartbeats do not carry the
//! work requests, nothing seals, and blocks keep difficulty 0.

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

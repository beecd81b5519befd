//! rota: a ZeroMQ peer node for a small signed-ledger currency run by a fixed,
//! ordered set of servers.
//!
//! The library holds everything the `rota` binary does: the configuration,
//! the node (thread wiring, the ledger thread and its pure core, the block
//! store), and the client side (payments, queries, the event watcher, the
//! local network generator, the supervisor of the `rota run` processes that
//! `testnet up`, `bench` and the tests start). The shared formats live in
//! `rota-peer`, the sockets in `rota-listener` and `rota-connector`.

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod genesis;
pub mod info;
pub mod ledger;
pub mod mining;
pub mod node;
pub mod supervisor;
pub mod testnet;
pub mod verify;

pub use error::{Error, Result};

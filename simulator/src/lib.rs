//! rota-simulator: a whole rota cluster in one process, deterministically.
//!
//! The simulator runs one to seven servers' real ledger code (the
//! [`rota::ledger::edge::Edge`] around the pure core, on the real store over
//! a simulated [`rota::ledger::store::MemoryDisk`]) and their real connector
//! state machines ([`rota_connector::machine::Machine`]), with the network,
//! the disks and the clocks simulated. One seeded generator decides every
//! delay, loss, crash and lie, and one event queue in simulated time decides
//! the order of everything; there is no socket, no thread and no wall clock
//! in a run, so a seed replays exactly.
//!
//! Faults are injected at every layer (see [`profile`] for the knobs):
//! the network delays, loses, duplicates and reorders messages and splits
//! the servers; servers crash between any two durable writes, tearing the
//! file being written where the real disk could, and restart from what was
//! durable; clocks are off, drift and jump; one server may be dishonest;
//! clients pay random servers, payments that must be refused among them,
//! and ask after them. After every step the invariants are checked
//! ([`invariants`]); the first one broken ends the run with a report that
//! names the seed, the step and a short trace.
//!
//! | file | what it holds |
//! |---|---|
//! | `rng.rs` | the seeded generator and its streams |
//! | `profile.rs` | every fault rate and bound, with its flag; the presets |
//! | `clock.rs` | true time and each server's drifting clock |
//! | `network.rs` | packets, links, delays, loss, duplicates, partitions |
//! | `server.rs` | one server: edge, machine, disk and clock, wired as the node |
//! | `liar.rs` | the dishonest server's lies; `liar/loose.rs`, its votes that no rule allows |
//! | `listener.rs` | the receivers' signature checks, memoized by the bytes |
//! | `clients.rs` | signed payments, dispositions and status answers |
//! | `invariants.rs` | what must hold, checked after every step |
//! | `world.rs` | one run: the event queue, delivery, the checks |
//! | `faults.rs` | drawing faults and client actions slot by slot; the heal |
//! | `trace.rs` | the trace kept for a failure, printed with `--trace` |
//! | `known.rs` | the faults today's protocol is known to have, each a seed |
//! | `search.rs` | many seeds on every core; shrinking a failing seed |
//!
//! docs/SIMULATOR.md is the guide: how to replay and shrink a seed, how to
//! add a fault or an invariant, and what the simulator does not cover.

pub mod clients;
pub mod clock;
mod faults;
pub mod invariants;
mod judge;
pub mod known;
pub mod liar;
mod listener;
mod mining;
pub mod network;
pub mod profile;
pub mod rng;
pub mod search;
pub mod server;
pub mod trace;
pub mod world;

pub use invariants::Invariant;
pub use profile::Profile;
pub use world::{Report, World};

/// Runs the seed `seed` under profile `p`, printing every line of the
/// trace when `print` is set.
pub fn run(seed: u64, p: &Profile, print: bool) -> Report {
    World::new(seed, p, print).run()
}

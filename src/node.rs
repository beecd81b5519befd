//! Starting and stopping a server: every thread and channel is created here.
//!
//! ```text
//!             requests (batches)              peer messages to send
//!  listener ----------------------> ledger ------------------------> connector
//!           <----------------------        <------------------------
//!             replies and events    |        states, databases, blocks
//!             (+ wake on signal)    |
//!                               shutdown <-- SIGINT / SIGTERM watcher
//! ```
//!
//! The ledger thread decides when the node ends. On SIGINT or SIGTERM it is
//! told to stop; when consensus is lost it stops by itself. Either way this
//! function then stops the listener and the connector through their signal
//! pairs, joins every thread, and returns why the node ended.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Sender, bounded};
use rota_connector::{Connector, ConnectorConfig};
use rota_listener::{Listener, ListenerConfig, Stats, Verifiers, Waker};
use rota_peer::ServerId;
use rota_peer::keys::{Keypair, load_seed_file};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle as SignalHandle, Signals};

use crate::config::{Config, parse_address};
use crate::error::{Error, Result};
use crate::genesis::Genesis;
use crate::ledger::core::Core;
use crate::ledger::store::{Loaded, Store};
use crate::ledger::{Channels, Exit, LedgerThread};

/// Decoded batches queued from the listener to the verifiers; more are
/// refused as busy.
const WORK_QUEUE: usize = 64;
/// Verified batches queued from the verifiers to the ledger.
const REQUEST_QUEUE: usize = 256;
/// Replies and events queued from the ledger to the listener.
const REPLY_QUEUE: usize = 65_536;
/// Messages queued between the ledger and the connector.
const PEER_QUEUE: usize = 4_096;

/// One verifier thread per core: signature checks are most of the work of
/// taking payments.
fn verifier_count() -> usize {
    thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

/// Loads the committed state from the store and builds the core on it.
fn load_core(config: &Config, me: ServerId, store: &Store) -> Result<Core> {
    let servers = config.server_list();
    let genesis = Genesis::load(&config.genesis_file, &config.chain)?.balances()?;
    let committed = match store.load(genesis)? {
        Loaded::Intact(committed) => committed,
        Loaded::Damaged { reason, .. } if servers.len() == 1 => {
            return Err(Error::Store(format!(
                "{reason}; a single server has no one to fetch from: restore balances.db from \
                 the archive by hand (see docs/OPERATIONS.md)"
            )));
        }
        Loaded::Damaged { best, reason } => {
            log::error!(
                "{reason}; starting out of sync: the other servers' database will replace it"
            );
            best
        }
    };
    log::info!(
        "resuming at round {} with balance hash {} ({} accounts)",
        committed.slot,
        committed.hash.short(),
        committed.snapshot.len()
    );
    Ok(Core::new(me, servers, config.schedule(), committed))
}

/// The listener's sockets, from the conf's `listen` section.
fn listener_config(config: &Config) -> Result<ListenerConfig> {
    let listen = config.listen.as_ref().expect("validated server conf");
    let address =
        |key: &str, text: &Option<String>| text.as_ref().map(|t| parse_address(key, t)).transpose();
    Ok(ListenerConfig {
        chain: config.chain.clone(),
        ipv4: address("listen.ipv4", &listen.ipv4)?,
        ipv6: address("listen.ipv6", &listen.ipv6)?,
        publish: listen
            .publish
            .iter()
            .map(|t| parse_address("listen.publish", t))
            .collect::<Result<_>>()?,
        max_message_bytes: listen.max_message_bytes,
        servers: config.server_list(),
    })
}

/// The connector's peers and timings, from the conf's server list.
fn connector_config(config: &Config, keypair: &Keypair, me: ServerId) -> ConnectorConfig {
    let servers = config.server_list();
    ConnectorConfig {
        chain: config.chain.clone(),
        keypair: keypair.clone(),
        me,
        addresses: servers.ids().map(|id| config.server_address(id)).collect(),
        servers,
        slot_ms: config.schedule().slot_ms,
        heartbeat_ms: config.peering.heartbeat_ms,
        missed_heartbeats: config.peering.missed_heartbeats,
    }
}

/// Starts the thread that turns SIGINT and SIGTERM into a message on
/// `shutdown`. The handle closes the signal iterator, ending the thread.
fn watch_signals(shutdown: Sender<()>) -> Result<(SignalHandle, JoinHandle<()>)> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| Error::io("signal handlers", e))?;
    let handle = signals.handle();
    let watcher = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("signal {signal} received: stopping");
                let _ = shutdown.send(());
            }
        })
        .map_err(|e| Error::io("signal thread", e))?;
    Ok((handle, watcher))
}

/// Joins a thread that is ending, logging a panic.
fn join<T>(name: &str, handle: JoinHandle<T>) {
    if handle.join().is_err() {
        log::error!("the {name} thread panicked");
    }
}

/// Runs a server until it is stopped or stops itself. Every channel and
/// thread of the node is created here, in one place, so that the wiring in
/// the module's diagram can be checked against one function.
pub fn run(config: &Config) -> Result<Exit> {
    let keypair = load_seed_file(&config.seed_file)?;
    let me = config.identify(&keypair.public())?;
    let servers = config.server_list();
    log::info!(
        "rota {}: server {me} of {} on chain {:?}, public key {}",
        env!("CARGO_PKG_VERSION"),
        servers.len(),
        config.chain,
        keypair.public()
    );
    let store = Store::open(
        &config.data_dir,
        config.archive.keep,
        config.schedule().slot_ms,
    )?;
    let core = load_core(config, me, &store)?;

    let ctx = zmq::Context::new();
    let (work_tx, work_rx) = bounded(WORK_QUEUE);
    let (requests_tx, requests_rx) = bounded(REQUEST_QUEUE);
    let (replies_tx, replies_rx) = bounded(REPLY_QUEUE);
    let (to_connector_tx, to_connector_rx) = bounded(PEER_QUEUE);
    let (connector_events_tx, connector_events_rx) = bounded(PEER_QUEUE);
    let (shutdown_tx, shutdown_rx) = bounded(1);
    let stats = Arc::new(Stats::default());

    let verifiers = Verifiers {
        chain: config.chain.clone(),
        servers,
        stats: stats.clone(),
    };
    let listener = Listener::bind(
        &ctx,
        listener_config(config)?,
        work_tx,
        replies_rx,
        stats.clone(),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let channels = Channels {
        requests: requests_rx,
        connector_events: connector_events_rx,
        shutdown: shutdown_rx,
        to_listener: replies_tx,
        listener_waker: Waker::connect(&ctx, rota_listener::SIGNAL)?,
        to_connector: to_connector_tx,
        connector_waker: Waker::connect(&ctx, rota_connector::SIGNAL)?,
    };
    let ledger = LedgerThread::new(
        core,
        store,
        keypair.clone(),
        config.chain.clone(),
        channels,
        stats,
    )?;
    let connector = Connector::new(
        &ctx,
        connector_config(config, &keypair, me),
        ledger.status(),
        to_connector_rx,
        connector_events_tx,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let stop_listener = Waker::connect(&ctx, rota_listener::SIGNAL)?;
    let stop_connector = Waker::connect(&ctx, rota_connector::SIGNAL)?;

    let (signal_handle, watcher) = watch_signals(shutdown_tx)?;
    let spawn = |name: &str| thread::Builder::new().name(name.into());
    let listener = spawn("listener")
        .spawn(move || listener.run())
        .map_err(|e| Error::io("listener thread", e))?;
    let mut verifier_threads = Vec::new();
    for i in 0..verifier_count() {
        let (verifiers, work, to_ledger) =
            (verifiers.clone(), work_rx.clone(), requests_tx.clone());
        let handle = spawn(&format!("verify-{i}"))
            .spawn(move || verifiers.run(work, to_ledger))
            .map_err(|e| Error::io("verifier thread", e))?;
        verifier_threads.push(handle);
    }
    drop((work_rx, requests_tx));
    let connector = spawn("connector")
        .spawn(move || connector.run())
        .map_err(|e| Error::io("connector thread", e))?;
    let ledger = spawn("ledger")
        .spawn(move || ledger.run())
        .map_err(|e| Error::io("ledger thread", e))?;

    let exit = ledger
        .join()
        .unwrap_or_else(|_| Exit::Failed("the ledger thread panicked".into()));
    stop_connector.stop();
    stop_listener.stop();
    signal_handle.close();
    join("connector", connector);
    join("listener", listener);
    // The listener's end of the work queue is gone, so the verifiers finish.
    for handle in verifier_threads {
        join("verifier", handle);
    }
    let _ = watcher.join();
    Ok(exit)
}

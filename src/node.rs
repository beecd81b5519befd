//! Starting and stopping a server: every thread and channel is created here.
//!
//! ```text
//!  client     client lane          verify-N
//!  sockets -> listener ---------> (one per core) ---+
//!             <--- replies and events --------------|---+
//!                                                   v   |     peer messages to send
//!  peering -> peering --consensus--> verify-consensus -> ledger ------------------> connector
//!  socket     thread  --bulk-------> verify-bulk ---->   |   <------------------    (DEALERs to
//!             <--- replies ------------------------------+   states, databases,    the peers'
//!                                                        ^   blocks                 peering
//!                                       shutdown <-- SIGINT / SIGTERM watcher       sockets)
//! ```
//!
//! Server messages come in on the peering socket and take their own lanes
//! (`rota_listener::lane`: consensus, and bulk for forwards, `D` and `B`) to
//! verifiers of their own and to the ledger, which takes the consensus lane
//! first; clients' requests take the client lane. Each lane is bounded in
//! requests; what does not fit is refused as busy. A chain of one server
//! without `listen.peering` runs no peering thread.
//!
//! The ledger thread decides when the node ends. On SIGINT or SIGTERM it is
//! told to stop; when consensus is lost it stops by itself. Either way this
//! function then stops the listener, the peering thread and the connector
//! through their signal pairs, joins every thread, and returns why the node
//! ended.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded, never};
use rota_connector::{Connector, ConnectorConfig};
use rota_listener::{
    Batch, Budgets, Lane, LaneSender, Listener, ListenerConfig, Peering, PeeringConfig,
    PeeringLanes, Stats, Verifiers, Waker, Work,
};
use rota_peer::ServerId;
use rota_peer::keys::{Keypair, load_seed_file};
use rota_peer::wire::Params;
use rota_sockets::ClientLimits;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle as SignalHandle, Signals};

use crate::config::{Config, parse_address};
use crate::error::{Error, Result};
use crate::genesis::Genesis;
use crate::ledger::core::Core;
use crate::ledger::store::Store;
use crate::ledger::{Channels, Exit, Inputs, LedgerThread};
use crate::mining::miner::MinerConfig;
use crate::mining::thread::{MINER_QUEUE, MinerThread};

/// Verified batches queued from a lane's verifiers to the ledger; a
/// verifier waits when it is full. (Decoded batches queued to the verifiers
/// are bounded by each lane's budget in requests: see `lane_queue`.)
const REQUEST_QUEUE: usize = 256;
/// Replies and events queued from the ledger to the listener.
const REPLY_QUEUE: usize = 65_536;
/// Replies queued from the ledger to the peering thread: one for each
/// request the peering lanes may hold, so the ledger never waits for it.
const PEERING_REPLY_QUEUE: usize =
    rota_listener::MAX_QUEUED_CONSENSUS + rota_listener::MAX_QUEUED_BULK;
/// Messages queued between the ledger and the connector.
const PEER_QUEUE: usize = 4_096;
/// Verifier threads for each peering lane: a round's payments are checked as
/// one batch by one thread anyway, and the lanes' traffic is small.
const PEERING_VERIFIERS: usize = 1;

/// One verifier thread per core: signature checks are most of the work of
/// taking payments.
fn verifier_count() -> usize {
    thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

/// Loads the committed state and the consensus journal from the store and
/// builds the core on them.
fn load_core(config: &Config, keypair: &Keypair, me: ServerId, store: &Store) -> Result<Core> {
    let genesis = Genesis::load(&config.genesis_file, &config.chain)?.balances()?;
    let consensus = crate::ledger::consensus::Config {
        chain: config.chain.clone(),
        me,
        keypair: keypair.clone(),
        servers: config.server_list(),
        timing: crate::ledger::consensus::Timing::new(config.schedule()),
    };
    crate::ledger::edge::resume(store, genesis, consensus)
}

/// The decoded-work channel of `lane`, as a [`LaneSender`] on its budget and
/// the verifiers' end. It holds the lane's limit in batches, so that a batch
/// the budget admits always fits: the budget, in requests, is the bound.
fn lane_queue(lane: Lane, budgets: &Budgets) -> (LaneSender, Receiver<Work>) {
    let (work_tx, work_rx) = bounded(lane.limit());
    (LaneSender::new(work_tx, budgets.of(lane).clone()), work_rx)
}

/// The peering socket, from `listen.peering` and `[peering]`; `None` on a
/// chain of one server that gives no `listen.peering`.
fn peering_config(config: &Config) -> Option<PeeringConfig> {
    Some(PeeringConfig {
        chain: config.chain.clone(),
        address: config.listen_peering()?,
        max_message_bytes: config.peering.max_message_bytes,
    })
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
        client: client_limits(config),
        max_connections: config.limits.max_connections,
        servers: config.server_list(),
    })
}

/// The options of the client request sockets, from `listen` and `limits`.
fn client_limits(config: &Config) -> ClientLimits {
    let (listen, limits) = (config.listen.as_ref(), &config.limits);
    ClientLimits {
        max_message_bytes: listen.expect("validated server conf").max_message_bytes,
        send_queue: limits.send_queue,
        receive_queue: limits.receive_queue,
        tcp_send_buffer: limits.tcp_send_buffer,
        tcp_receive_buffer: limits.tcp_receive_buffer,
        handshake_ms: limits.handshake_ms,
    }
}

/// The connector's peers and timings, from the conf's server list.
fn connector_config(
    config: &Config,
    keypair: &Keypair,
    me: ServerId,
    params: Params,
) -> ConnectorConfig {
    let servers = config.server_list();
    ConnectorConfig {
        chain: config.chain.clone(),
        keypair: keypair.clone(),
        me,
        addresses: servers.ids().map(|id| config.server_peering(id)).collect(),
        max_message_bytes: config.peering.max_message_bytes,
        servers,
        slot_ms: config.schedule().slot_ms,
        heartbeat_ms: config.peering.heartbeat_ms,
        missed_heartbeats: config.peering.missed_heartbeats,
        tolerance_ms: config.schedule.tolerance_ms,
        params,
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

/// Starts `count` verifier threads named `name-N` for one lane: each takes
/// decoded batches from `work` and sends checked ones on `to_ledger`.
fn spawn_verifiers(
    name: &str,
    count: usize,
    verifiers: &Verifiers,
    work: &Receiver<Work>,
    to_ledger: &Sender<Batch>,
    handles: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    for i in 0..count {
        let (verifiers, work, to_ledger) = (verifiers.clone(), work.clone(), to_ledger.clone());
        let handle = thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || verifiers.run(work, to_ledger))
            .map_err(|e| Error::io("verifier thread", e))?;
        handles.push(handle);
    }
    Ok(())
}

/// A lane's two channels but their first end, the [`LaneSender`] its
/// socket's thread owns: decoded work to the verifiers, and checked batches
/// from them to the ledger.
struct LaneEnds {
    work: Receiver<Work>,
    to_ledger: Sender<Batch>,
    from_verifiers: Receiver<Batch>,
}

/// The channels of `lane`: the socket thread's sending end, and the rest.
fn lane_channels(lane: Lane, budgets: &Budgets) -> (LaneSender, LaneEnds) {
    let (sender, work) = lane_queue(lane, budgets);
    let (to_ledger, from_verifiers) = bounded(REQUEST_QUEUE);
    let ends = LaneEnds {
        work,
        to_ledger,
        from_verifiers,
    };
    (sender, ends)
}

/// Runs a server until it is stopped or stops itself. Every channel and
/// thread of the node is created here, in one place, so that the wiring in
/// the module's diagram can be checked against one function; that is why it
/// is longer than most.
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
    if let Ok(offset) = std::env::var(rota_peer::schedule::CLOCK_OFFSET_VARIABLE) {
        let name = rota_peer::schedule::CLOCK_OFFSET_VARIABLE;
        match offset.trim().parse::<i64>() {
            Ok(ms) => {
                log::warn!("{name}={ms}: this server's clock is set off by {ms} ms (a testing aid)")
            }
            Err(_) => log::warn!("{name}={offset:?} is not a number of milliseconds: ignored"),
        }
    }
    let store = Store::open(
        &config.data_dir,
        config.archive.keep,
        config.schedule().slot_ms,
    )?
    .writing_behind()?;
    let core = load_core(config, &keypair, me, &store)?;

    let ctx = zmq::Context::new();
    let budgets = Budgets::new();
    let (client_lane, client) = lane_channels(Lane::Client, &budgets);
    let (consensus_lane, consensus) = lane_channels(Lane::Consensus, &budgets);
    let (bulk_lane, bulk) = lane_channels(Lane::Bulk, &budgets);
    let (replies_tx, replies_rx) = bounded(REPLY_QUEUE);
    let (peering_replies_tx, peering_replies_rx) = bounded(PEERING_REPLY_QUEUE);
    let (to_connector_tx, to_connector_rx) = bounded(PEER_QUEUE);
    let (connector_events_tx, connector_events_rx) = bounded(PEER_QUEUE);
    let (shutdown_tx, shutdown_rx) = bounded(1);
    let stats = Arc::new(Stats::default());
    let peering_stats = Arc::new(Stats::default());

    let listener = Listener::bind(
        &ctx,
        listener_config(config)?,
        client_lane,
        replies_rx,
        stats.clone(),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let lanes = PeeringLanes {
        consensus: consensus_lane,
        bulk: bulk_lane,
    };
    let peering = peering_config(config)
        .map(|c| Peering::bind(&ctx, c, lanes, peering_replies_rx, peering_stats.clone()))
        .transpose()
        .map_err(|e| Error::Config(e.to_string()))?;
    // Without a peering thread its lanes stay empty; the ledger reads them
    // as channels that never deliver.
    let peering_lane = |lane: &LaneEnds| match peering {
        Some(_) => lane.from_verifiers.clone(),
        None => never(),
    };
    // The miner thread, when the chain is sealed: it sends its messages
    // through the connector, and the ledger shares a view with it.
    let (to_miner, miner, mining_wake) = if config.mining.difficulty_bits > 0 {
        let (to_miner, from_ledger) = bounded(MINER_QUEUE);
        let (wake, woken) = bounded(1);
        let threads = match config.mining.threads {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let miner = MinerThread::new(
            MinerConfig {
                me,
                servers: servers.len(),
                heartbeat_ms: config.peering.heartbeat_ms,
                missed_heartbeats: config.peering.missed_heartbeats,
                difficulty: config.mining.difficulty_bits,
            },
            threads,
            config.schedule.slot_ms,
            from_ledger,
            to_connector_tx.clone(),
            Waker::connect(&ctx, rota_connector::SIGNAL)?,
            wake,
        );
        (Some(to_miner), Some(miner), woken)
    } else {
        (None, None, never())
    };
    let channels = Channels {
        inputs: Inputs {
            consensus: peering_lane(&consensus),
            bulk: peering_lane(&bulk),
            client: client.from_verifiers.clone(),
            connector_events: connector_events_rx,
            mining: mining_wake,
            shutdown: shutdown_rx,
        },
        budgets,
        to_listener: replies_tx,
        listener_waker: Waker::connect(&ctx, rota_listener::SIGNAL)?,
        to_peering: peering_replies_tx,
        peering_waker: Waker::connect(&ctx, rota_listener::PEERING_SIGNAL)?,
        to_connector: to_connector_tx,
        connector_waker: Waker::connect(&ctx, rota_connector::SIGNAL)?,
        to_miner,
    };
    let ledger = LedgerThread::new(
        core,
        store,
        keypair.clone(),
        config.chain.clone(),
        channels,
        stats.clone(),
        peering_stats.clone(),
    )?
    .with_limits(&config.limits);
    let ledger = match &miner {
        Some(miner) => ledger.with_mining(miner.view()),
        None => ledger,
    };
    let connector = Connector::new(
        &ctx,
        connector_config(config, &keypair, me, ledger.params()),
        ledger.status(),
        to_connector_rx,
        connector_events_tx,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let stop_listener = Waker::connect(&ctx, rota_listener::SIGNAL)?;
    let stop_peering = Waker::connect(&ctx, rota_listener::PEERING_SIGNAL)?;
    let stop_connector = Waker::connect(&ctx, rota_connector::SIGNAL)?;

    let (signal_handle, watcher) = watch_signals(shutdown_tx)?;
    let spawn = |name: &str| thread::Builder::new().name(name.into());
    let listener = spawn("listener")
        .spawn(move || listener.run())
        .map_err(|e| Error::io("listener thread", e))?;
    let params = ledger.params();
    let verifiers = |stats: &Arc<Stats>| Verifiers {
        chain: config.chain.clone(),
        servers: servers.clone(),
        params,
        stats: stats.clone(),
    };
    let mut verifier_threads = Vec::new();
    let (client_verifiers, peer_verifiers) = (verifiers(&stats), verifiers(&peering_stats));
    spawn_verifiers(
        "verify",
        verifier_count(),
        &client_verifiers,
        &client.work,
        &client.to_ledger,
        &mut verifier_threads,
    )?;
    let peering = match peering {
        Some(peering) => {
            for (name, lane) in [("verify-consensus", &consensus), ("verify-bulk", &bulk)] {
                spawn_verifiers(
                    name,
                    PEERING_VERIFIERS,
                    &peer_verifiers,
                    &lane.work,
                    &lane.to_ledger,
                    &mut verifier_threads,
                )?;
            }
            Some(
                spawn("peering")
                    .spawn(move || peering.run())
                    .map_err(|e| Error::io("peering thread", e))?,
            )
        }
        None => None,
    };
    // Only the threads hold the lanes' ends now: when the listener or the
    // peering thread ends, its verifiers finish, and the ledger sees them go.
    drop((client, consensus, bulk));
    let connector = spawn("connector")
        .spawn(move || connector.run())
        .map_err(|e| Error::io("connector thread", e))?;
    let ledger = spawn("ledger")
        .spawn(move || ledger.run())
        .map_err(|e| Error::io("ledger thread", e))?;
    // It ends when the ledger ends, and with it the channel it reads.
    let miner = miner
        .map(|miner| spawn("miner").spawn(move || miner.run()))
        .transpose()
        .map_err(|e| Error::io("miner thread", e))?;

    let exit = ledger
        .join()
        .unwrap_or_else(|_| Exit::Failed("the ledger thread panicked".into()));
    stop_connector.stop();
    stop_listener.stop();
    if peering.is_some() {
        stop_peering.stop();
    }
    signal_handle.close();
    join("connector", connector);
    if let Some(miner) = miner {
        join("miner", miner);
    }
    join("listener", listener);
    if let Some(peering) = peering {
        join("peering", peering);
    }
    // The listener's and the peering thread's ends of the work queues are
    // gone, so the verifiers finish.
    for handle in verifier_threads {
        join("verifier", handle);
    }
    let _ = watcher.join();
    Ok(exit)
}

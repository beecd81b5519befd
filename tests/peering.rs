//! Server traffic apart from the clients, on real servers with two-second
//! slots: the servers' messages travel on their peering sockets, a client
//! socket refuses every server command with an `E` that names the peering
//! socket, and a flood of client requests at one server stops no server.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::Net;
use rota::events::{Event, Outcome, Published};
use rota_peer::ServerId;
use rota_peer::keys::Keypair;
use rota_peer::wire::{
    CertifiedStatus, Envelope, Hello, PeerCommand, PeerMessage, Reply, Request, ServerList, Status,
};

const SLOT_MS: u64 = 2_000;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn text(frames: &[Vec<u8>]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn server_commands_travel_on_the_peering_sockets_and_a_client_socket_refuses_them() {
    let net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2, 3], slot + 1, secs(15));

    // Each server took the others' messages on its peering socket: one
    // connection from each of them, and their requests counted there.
    for i in 1..=3 {
        let info = net.typed_info(i).expect("I");
        assert_eq!(info.peering.open, 2, "server {i}: {:?}", info.peering);
        assert!(info.peering.requests > 0, "server {i}: {:?}", info.peering);
        assert_eq!(info.peering.refused, 0, "server {i}: {:?}", info.peering);
    }

    // Every server command, signed by a server of the chain, is refused on a
    // client socket, byte for byte as docs/PROTOCOL.md §2 shows.
    let client_socket = net.client.server_address(ServerId(2));
    let key = net.server_key(1);
    for command in PeerCommand::ALL {
        let envelope = Envelope::sign_payload(&key, "local", net.slot_now(), command, Vec::new());
        let frames = Request::Peer(envelope).encode("local");
        let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let reply = net.raw(client_socket, &parts).expect("an answer");
        assert_eq!(
            text(&reply),
            [
                "E".to_string(),
                format!(
                    "command {} is a server command: servers send it to the peering socket, \
                     not to the client socket",
                    command.name()
                )
            ]
        );
    }

    // The peering socket answers the server commands, D and B, and refuses
    // any other client command naming the client socket.
    let peering = net.peering_address(2);
    let reply = net.raw(peering, &[b"local", b"I"]).expect("an answer");
    assert_eq!(
        text(&reply),
        [
            "E",
            "command I is not taken on the peering socket, which takes the server commands, D \
             and B: send it to the client socket"
        ]
    );
    match net.peer_request(2, &Request::Database).expect("D") {
        Reply::Database { hash, .. } => assert_eq!(
            hash.to_string(),
            net.balance_hash(2).unwrap(),
            "D on the peering socket"
        ),
        other => panic!("{other:?}"),
    }
    let register = Envelope::sign(
        &key,
        "local",
        net.slot_now(),
        &PeerMessage::Register(Hello {
            params: net.params(),
            ..Hello::default()
        }),
    );
    let vouched = match net
        .peer_request(2, &Request::Peer(register))
        .expect("register")
    {
        Reply::Signed(answer) => {
            assert_eq!(answer.signer, net.server_key(2).public());
            assert_eq!(answer.command, PeerCommand::Register);
            // Its status carries the commit certificate of its committed
            // slot, which checks against the conf.
            let servers = ServerList::new((1..=3).map(|i| net.server_key(i).public()).collect());
            let PeerMessage::Register(claim) = answer.message(3).expect("a status") else {
                panic!("not a register");
            };
            assert_eq!(claim.params, net.params());
            assert!(claim.status.certified.is_some(), "{claim:?}");
            let greeting = claim.verify("local", &servers).expect("vouched for");
            assert!(greeting.status.slot > slot, "{greeting:?}");
            claim.status
        }
        other => panic!("{other:?}"),
    };
    // A status its certificate does not vouch for is refused: none carried
    // for a slot above 0, or one about another slot.
    let claimed = |claim: CertifiedStatus| {
        let hello = Hello {
            params: net.params(),
            clock: 0,
            echo: 0,
            sitting_out: false,
            live: Vec::new(),
            status: claim,
        };
        let heart = Envelope::sign(&key, "local", net.slot_now(), &PeerMessage::Heart(hello));
        match net.peer_request(2, &Request::Peer(heart)) {
            Err(refused) => refused.to_string(),
            Ok(taken) => panic!("a lying heart was taken: {taken:?}"),
        }
    };
    let bare = CertifiedStatus {
        status: Status {
            slot: 5,
            ..Status::default()
        },
        certified: None,
    };
    let refused = claimed(bare);
    assert!(
        refused.ends_with(": heart: a status of slot 5 carries no commit certificate"),
        "{refused}"
    );
    let later = CertifiedStatus {
        status: Status {
            slot: vouched.status.slot + 1,
            ..vouched.status
        },
        ..vouched
    };
    let refused = claimed(later);
    assert!(
        refused.contains("its certificate vouches for slot"),
        "{refused}"
    );

    // A payment given to a server that is not the alpha reaches the alpha
    // as a `forward`, which only the peering socket takes.
    let payee = Keypair::from_seed(&[60; 32]).public();
    let forwarded = (0..3).find_map(|_| {
        // The alpha two slots on: `rota pay` may wait out a blackout into
        // the next slot, and neither this slot's alpha nor the next is it.
        let not_alpha = ((net.slot_now() + 2) % 3 + 1) as usize;
        let paid = net.pay(Some(not_alpha), &payee, 3);
        (paid["disposition"] == "forwarded").then_some(paid)
    });
    let paid = forwarded.expect("a payment forwarded within three tries");
    assert_eq!(paid["status"], "committed", "{paid}");
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2, 3], slot, secs(15));
}

/// Replies one flooding client saw.
#[derive(Debug, Default)]
struct Tally {
    replies: u64,
    busy: u64,
}

/// Requests each flooding client keeps in flight.
const WINDOW: u64 = 1_000;

/// One flooding client: `I` and `D` in turn on one DEALER, as fast as the
/// server takes them, [`WINDOW`] in flight, reading every reply, until
/// `stop` is set.
fn flood(address: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_sndhwm(0).expect("sndhwm");
    socket.set_rcvhwm(0).expect("rcvhwm");
    socket
        .connect(&rota::config::endpoint(&address))
        .expect("connect");
    let busy = b"the node is busy; try again shortly".as_slice();
    let (mut sent, mut tally) = (0u64, Tally::default());
    while !stop.load(Ordering::Relaxed) {
        while sent - tally.replies < WINDOW {
            let command: &[u8] = if sent % 2 == 0 { b"I" } else { b"D" };
            if socket
                .send_multipart([b"local".as_slice(), command], zmq::DONTWAIT)
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        if socket.poll(zmq::POLLIN, 10).unwrap_or(0) == 0 {
            continue;
        }
        while let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) {
            tally.replies += 1;
            if frames.first().map(Vec::as_slice) == Some(b"E")
                && frames.get(1).map(Vec::as_slice) == Some(busy)
            {
                tally.busy += 1;
            }
        }
    }
    tally
}

/// Several flooding clients at one address, stopped and counted on
/// [`Flood::stop`].
struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Flood {
    fn start(address: SocketAddr, clients: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || flood(address, stop))
            })
            .collect();
        Flood { stop, threads }
    }

    fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for thread in std::mem::take(&mut self.threads) {
            let tally = thread.join().expect("flooding client");
            total.replies += tally.replies;
            total.busy += tally.busy;
        }
        total
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A round as server 2 published it: slot, outcome, voters.
type Round = (u64, Outcome, u32);

/// Collects the `round` events server 2 publishes until stopped.
struct Rounds {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Round>>>,
    thread: Option<JoinHandle<()>>,
}

impl Rounds {
    fn watch(net: &Net) -> Rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Round>>> = Arc::default();
        let (client, done, rounds) = (net.client.clone(), stop.clone(), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            let collect = |published: &Published| {
                if let Event::Round {
                    slot,
                    outcome,
                    voters,
                    ..
                } = published.event
                {
                    rounds.lock().unwrap().push((slot, outcome, voters));
                }
            };
            let stopped = || done.load(Ordering::Relaxed);
            let topics = ["round".to_string()];
            rota::client::watch(&client, Some(ServerId(2)), &topics, collect, stopped)
                .expect("watch server 2");
        });
        Rounds {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Round> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_flood_of_client_requests_at_the_alpha_stops_no_server_and_rounds_keep_committing() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let rounds = Rounds::watch(&net);
    net.wait_for("a round event from server 2", secs(15), || {
        !rounds.seen().is_empty()
    });

    // Twelve clients flood server 1 for five slots: it is the alpha of at
    // least one of them, and the beta that must read every vote of that
    // round while the flood goes on.
    let flood = Flood::start(net.client.server_address(ServerId(1)), 12);
    let start = net.slot_now();
    net.wait_committed_after(&[2, 3], start + 4, secs(40));
    let flooded_until = net.slot_now();
    let tally = flood.stop();
    eprintln!(
        "flood of slots {start}..{flooded_until}: {} replies, {} of them busy",
        tally.replies, tally.busy
    );
    assert!(tally.replies > 1_000, "the flood was answered: {tally:?}");

    for i in 1..=3 {
        assert!(net.running(i), "server {i} stopped\n{}", net.logs());
    }
    net.wait_committed_after(&[1, 2, 3], flooded_until, secs(15));
    for i in 1..=3 {
        let log = net.log(i);
        assert!(!log.contains("consensus lost"), "server {i}\n{log}");
        let info = net.typed_info(i).expect("I");
        assert_eq!(info.peering.refused, 0, "server {i}: {:?}", info.peering);
    }
    // The committed slot moved past every round of the flood, and every
    // one of those rounds had all three votes: no server message waited
    // behind the flood long enough to miss its round, or was refused.
    assert!(net.committed_slot(1).unwrap() > start + 4);
    // Server 2's round events of those slots may still be on their way
    // when its `I` already says they committed.
    let published = |slot: u64| rounds.seen().iter().any(|(s, _, _)| *s == slot);
    net.wait_for("server 2's round events of the flood", secs(10), || {
        (start + 1..=start + 4).all(published)
    });
    let mut flooded: Vec<Round> = rounds
        .seen()
        .into_iter()
        .filter(|(slot, _, _)| (start + 1..=start + 4).contains(slot))
        .collect();
    flooded.dedup_by_key(|(slot, _, _)| *slot);
    let slots: Vec<u64> = flooded.iter().map(|(slot, _, _)| *slot).collect();
    assert_eq!(slots, (start + 1..=start + 4).collect::<Vec<_>>());
    for (slot, outcome, voters) in flooded {
        assert_eq!(
            (outcome, voters),
            (Outcome::Committed, 3),
            "round {slot} (beta {})\n{}",
            slot % 3 + 1,
            net.logs()
        );
    }
}

#[test]
fn config_test_shows_the_peering_addresses_and_limit() {
    let net = Net::init(3, SLOT_MS);
    let conf = net.conf(2);
    let out = common::rota(&["config-test", "--conf", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peering = json["listen"]["peering"].as_str().expect("listen.peering");
    assert_eq!(peering, net.peering_address(2).to_string());
    assert_eq!(json["peering"]["max_message_bytes"], 67_108_864);
    for (i, server) in json["servers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            server["peering"].as_str(),
            Some(net.peering_address(i + 1).to_string().as_str()),
            "{server}"
        );
    }
    let client = net.client_conf();
    let out = common::rota(&[
        "config-test",
        "--client",
        "--conf",
        client.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("peering").is_none()),
        "{json}"
    );
}

//! The client lane's busy limit, through a real listener socket: it counts
//! requests, not the batches they happen to be read in.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rota_listener::{
    Budgets, LaneSender, Listener, ListenerConfig, MAX_QUEUED_CLIENT_REQUESTS, SIGNAL, Stats, Waker,
};
use rota_peer::wire::ServerList;

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Polls `condition` every millisecond until it holds or `within` passes.
fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    condition()
}

#[test]
fn one_request_batches_are_not_busy_until_the_lane_holds_its_limit_in_requests() {
    let ctx = zmq::Context::new();
    let address = free_address();
    // As the node wires it: the work channel holds the lane's limit in
    // batches, and the budget counts requests. Nothing drains it here, as
    // when the verifiers and the ledger are slow.
    let (work_tx, work_rx) = crossbeam_channel::bounded(MAX_QUEUED_CLIENT_REQUESTS);
    let budgets = Budgets::new();
    let (_replies_tx, replies_rx) = crossbeam_channel::bounded(1);
    let stats = Arc::new(Stats::default());
    let config = ListenerConfig {
        chain: "test".into(),
        ipv4: Some(address),
        ipv6: None,
        publish: Vec::new(),
        client: rota_sockets::ClientLimits {
            max_message_bytes: 1024,
            send_queue: 256,
            receive_queue: 32,
            tcp_send_buffer: 256 * 1024,
            tcp_receive_buffer: 64 * 1024,
            handshake_ms: 5_000,
        },
        max_connections: 16,
        servers: ServerList::new(Vec::new()),
    };
    let lane = LaneSender::new(work_tx, budgets.client.clone());
    let listener = Listener::bind(&ctx, config, lane, replies_rx, stats.clone()).unwrap();
    let stop = Waker::connect(&ctx, SIGNAL).unwrap();
    let thread = std::thread::spawn(move || listener.run());

    let client = ctx.socket(zmq::DEALER).unwrap();
    client.set_linger(0).unwrap();
    client.set_sndhwm(0).unwrap();
    client.connect(&format!("tcp://{address}")).unwrap();
    let info = [b"test".as_slice(), b"I"];

    // 200 requests, each read on its own: three times the 64 batches that
    // once made the node busy.
    for i in 1..=200 {
        client.send_multipart(info, 0).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || work_rx.len() == i),
            "request {i} was not queued as a batch of its own"
        );
    }
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    assert_eq!(budgets.client.queued(), 200);

    // The rest of the limit, and three more: exactly those three are busy.
    for _ in 200..MAX_QUEUED_CLIENT_REQUESTS + 3 {
        client.send_multipart(info, 0).unwrap();
    }
    let mut replies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies.len() < 3 && Instant::now() < deadline {
        if client.poll(zmq::POLLIN, 100).unwrap() > 0 {
            replies.push(client.recv_multipart(0).unwrap());
        }
    }
    let busy = vec![
        b"E".to_vec(),
        b"the node is busy; try again shortly".to_vec(),
    ];
    assert_eq!(replies, vec![busy.clone(), busy.clone(), busy]);
    assert_eq!(budgets.client.queued(), MAX_QUEUED_CLIENT_REQUESTS);
    let queued: usize = work_rx.try_iter().map(|work| work.requests.len()).sum();
    assert_eq!(queued, MAX_QUEUED_CLIENT_REQUESTS);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 3);

    stop.stop();
    thread.join().unwrap();
}

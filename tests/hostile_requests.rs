//! Requests a hostile client sends to stall the network, against three real
//! servers with 2 s slots: none of them may stop a server or a round.

mod common;

use std::time::Duration;

use common::Net;
use rota::config::endpoint;
use rota_peer::schedule::unix_now_ms;
use rota_peer::wire::Reply;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Sleeps until the instant `at` (Unix ms): the attack is aimed at a moment
/// of the schedule, not at a condition to wait for.
fn sleep_until(at: u64) {
    let now = unix_now_ms();
    if at > now {
        std::thread::sleep(Duration::from_millis(at - now));
    }
}

#[test]
fn an_8_mib_chain_frame_sent_to_the_alpha_just_before_its_close_stops_nothing() {
    let net = Net::up(3, 2_000);
    net.wait_in_sync(&[1, 2, 3], secs(30));
    let schedule = net.client.schedule();
    let slot = net.slot_now() + 2;
    let alpha = schedule.alpha(slot);

    // The frame goes to the alpha's client socket, whose frame limit drops
    // the connection at the header, and to its peering socket, whose limit
    // (64 MiB) lets it through to be decoded and refused.
    let ctx = zmq::Context::new();
    let dealer = |address| {
        let socket = ctx.socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket.connect(&endpoint(&address)).unwrap();
        socket
    };
    let client = dealer(net.client.server_address(alpha));
    let peering_address =
        rota::config::Config::load(&net.conf(alpha.0 as usize), rota::config::Role::Server)
            .unwrap()
            .server_peering(alpha)
            .expect("a peering address");
    let peering = dealer(peering_address);
    // 8 MiB of bytes that are no chain's name, from a fixed generator.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let chain: Vec<u8> = (0..8 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    sleep_until(schedule.close(slot) - 100);
    for socket in [&client, &peering] {
        socket
            .send_multipart([chain.as_slice(), b"I"], 0)
            .expect("send the frame");
    }

    // The peering socket answers with a short error that quotes a prefix
    // of the frame; the client socket, if it answers at all, likewise.
    assert!(peering.poll(zmq::POLLIN, 5_000).unwrap() > 0, "no reply");
    for socket in [&peering, &client] {
        if socket.poll(zmq::POLLIN, 100).unwrap() == 0 {
            continue;
        }
        let frames = socket.recv_multipart(0).unwrap();
        let size: usize = frames.iter().map(Vec::len).sum();
        assert!(size < 1_024, "an error reply of {size} bytes");
        let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let Ok(Reply::Error(text)) = Reply::decode(&parts) else {
            panic!("not an error reply: {frames:?}");
        };
        assert!(text.contains("(8388608 bytes)"), "{text}");
    }

    // The round the frame was aimed at, and the next, commit everywhere.
    net.wait_committed_after(&[1, 2, 3], slot + 1, secs(20));
    for i in 1..=3 {
        assert!(
            net.typed_info(i).is_some(),
            "server {i} stopped answering (alpha was {alpha:?})"
        );
    }
}

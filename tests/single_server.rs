//! One real server with one-second slots: payments through the real client,
//! blocks and archive, restart and crash recovery, hostile requests.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Net, rota};
use rota_peer::block::Block;
use rota_peer::keys::Keypair;
use rota_peer::transaction::Transaction;
use rota_peer::wire::{Reply, Request, TxStatus};
use rota_peer::{PublicKey, ServerId};

const SLOT_MS: u64 = 1_000;

fn started(net: &Net) {
    net.wait_in_sync(&[1], Duration::from_secs(10));
}

#[test]
fn a_payment_through_the_client_is_committed_in_a_block_and_archived() {
    let net = Net::up(1, SLOT_MS);
    started(&net);
    let payee = Keypair::from_seed(&[42; 32]).public();
    let paid = net.pay(None, &payee, 25);
    // Sent in the slot's blackout (a third of each 1 s slot), it is held
    // for the next window: taken either way.
    assert!(
        paid["disposition"] == "accepted" || paid["disposition"] == "held",
        "{paid}"
    );
    assert_eq!(paid["status"], "committed");
    let number = paid["block"].as_u64().expect("a block number");

    let out = net.client_command(&["balance", &payee.to_string()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "25");
    assert_eq!(net.balance(1, &net.payer(1).public()), Some(1_000_000 - 25));

    let Ok(Reply::Height(height)) = net.request(1, &Request::Height) else {
        panic!("N")
    };
    assert!(height >= number);
    let Ok(Reply::Block { block: bytes, .. }) = net.request(1, &Request::Block(number)) else {
        panic!("B")
    };
    let block = Block::decode(&bytes).expect("a valid block");
    assert_eq!(block.header.number, number);
    assert_eq!(block.transactions.len(), 1);
    assert_eq!(block.transactions[0].payee(), payee);
    assert_eq!(
        block.transactions[0].id().to_string(),
        paid["id"].as_str().unwrap()
    );
    let Ok(Reply::BlockHash(hash)) = net.request(1, &Request::BlockHash(number)) else {
        panic!("H")
    };
    assert_eq!(hash, block.header.hash());

    // `S` and the client name the round that decided it: the block's slot.
    let slot = block.header.slot;
    assert_eq!(paid["decided_by"], slot, "{paid}");
    assert_eq!(
        net.request(1, &Request::Status(block.transactions[0].id()))
            .unwrap(),
        Reply::Status(TxStatus::Committed {
            block: number,
            slot
        })
    );
    let out = net.client_command(&["status", paid["id"].as_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("committed in block {number} (decided by slot {slot})")
    );

    let hash = net.balance_hash(1).unwrap();
    assert_eq!(block.header.balance_hash.to_string(), hash);
    let archive: Vec<String> = std::fs::read_dir(net.data_dir(1).join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archive
            .iter()
            .any(|name| name.starts_with(&format!("{hash}."))),
        "archive {archive:?} lacks {hash}"
    );
    let Ok(Reply::Database {
        hash: db_hash,
        packed,
        ..
    }) = net.request(1, &Request::Database)
    else {
        panic!("D")
    };
    assert_eq!(db_hash.to_string(), hash);
    let mut balances = rota_peer::balances::Balances::from_packed(&packed).expect("packed");
    assert_eq!(balances.hash(), db_hash);
}

#[test]
fn a_restart_resumes_from_what_was_stored() {
    let mut net = Net::up(1, SLOT_MS);
    started(&net);
    let payee = Keypair::from_seed(&[43; 32]).public();
    net.pay(None, &payee, 10);
    let (height, hash) = (net.height(1).unwrap(), net.balance_hash(1).unwrap());

    let status = net.stop(1);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM stops cleanly\n{}",
        net.logs()
    );
    net.start(1);
    started(&net);
    assert_eq!(net.height(1), Some(height));
    assert_eq!(net.balance_hash(1), Some(hash));
    assert_eq!(net.balance(1, &payee), Some(10));
}

#[test]
fn a_kill_dash_nine_loses_nothing_committed() {
    let mut net = Net::up(1, SLOT_MS);
    started(&net);
    let payee = Keypair::from_seed(&[44; 32]).public();
    let mut heights = Vec::new();
    for amount in 1..=3 {
        let paid = net.pay(None, &payee, amount);
        heights.push(paid["block"].as_u64().unwrap());
    }
    net.kill(1);
    net.start(1);
    started(&net);
    assert_eq!(net.balance(1, &payee), Some(6));
    for number in heights {
        assert!(
            matches!(
                net.request(1, &Request::Block(number)),
                Ok(Reply::Block { .. })
            ),
            "block {number}"
        );
    }
}

/// Sends raw frames on a DEALER and returns the reply frames.
fn raw(net: &Net, frames: &[&[u8]]) -> Vec<Vec<u8>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket
        .connect(&format!("tcp://{}", net.client.server_address(ServerId(1))))
        .unwrap();
    socket.send_multipart(frames, 0).unwrap();
    assert!(
        socket.poll(zmq::POLLIN, 2_000).unwrap() > 0,
        "no reply to {frames:?}"
    );
    socket.recv_multipart(0).unwrap()
}

fn error_of(reply: Vec<Vec<u8>>) -> String {
    assert_eq!(reply[0], b"E", "expected an E reply, got {reply:?}");
    String::from_utf8_lossy(&reply[1]).into_owned()
}

#[test]
fn malformed_requests_get_errors_and_the_node_keeps_serving() {
    let net = Net::up(1, SLOT_MS);
    started(&net);
    let chain = net.client.chain.as_bytes();
    let cases: Vec<(Vec<&[u8]>, &str)> = vec![
        (vec![b"\xff\x00garbage"], "got 1 frame"),
        (vec![b"another-chain", b"I"], "wrong chain"),
        (vec![chain, b"Z"], "unknown command \"Z\""),
        (vec![chain, b"B", b"\x01\x02\x03"], "must be 8 bytes, got 3"),
        (vec![chain, b"B"], "takes 1 parameter"),
        (vec![chain, b"A", &[7; 31]], "must be 32 bytes, got 31"),
        (vec![chain, b"T", &[0; 100]], "140 bytes, got 100"),
        (vec![chain, b"N", b"extra"], "takes no parameters"),
        (vec![chain, b"prevote", &[1; 32]], "takes 4 parameters"),
    ];
    for (frames, expected) in cases {
        let message = error_of(raw(&net, &frames));
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
    // A payment whose signature does not verify.
    let mut tx = *Transaction::sign(
        &net.client.chain,
        &net.payer(1),
        PublicKey([5; 32]),
        1,
        rota_peer::schedule::unix_now_ms(),
    )
    .bytes();
    tx[100] ^= 0xff;
    let message = error_of(raw(&net, &[chain, b"T", &tx]));
    assert!(message.contains("signature does not verify"), "{message}");
    // A request far above the size limit is dropped by the socket, not the node.
    let ctx = zmq::Context::new();
    let big = ctx.socket(zmq::DEALER).unwrap();
    big.set_linger(0).unwrap();
    big.connect(&format!("tcp://{}", net.client.server_address(ServerId(1))))
        .unwrap();
    big.send_multipart([chain, b"T", &vec![0u8; 70 * 1024 * 1024][..]], 0)
        .unwrap();
    // Still serving, and it counted the refusals.
    std::thread::sleep(Duration::from_millis(200));
    let info = net.info(1).expect("still answers I");
    assert!(info["refused"].as_u64().unwrap() >= 10, "{info}");
    assert_eq!(info["chain"], "local");
}

#[test]
fn a_req_socket_and_ipv6_are_served() {
    let net = Net::up(1, SLOT_MS);
    started(&net);
    let conf = std::fs::read_to_string(net.conf(1)).unwrap();
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.connect(&format!("tcp://{}", net.client.server_address(ServerId(1))))
        .unwrap();
    req.send_multipart([b"local".as_slice(), b"N"], 0).unwrap();
    assert!(req.poll(zmq::POLLIN, 2_000).unwrap() > 0);
    let reply = req.recv_multipart(0).unwrap();
    assert_eq!(reply[0], b"N");
    assert_eq!(reply[1].len(), 8);
    if let Some(line) = conf.lines().find(|l| l.starts_with("ipv6 = ")) {
        let address = line.trim_start_matches("ipv6 = ").trim_matches('"');
        let v6 = ctx.socket(zmq::DEALER).unwrap();
        v6.set_linger(0).unwrap();
        v6.set_ipv6(true).unwrap();
        v6.connect(&format!("tcp://{address}")).unwrap();
        v6.send_multipart([b"local".as_slice(), b"I"], 0).unwrap();
        assert!(
            v6.poll(zmq::POLLIN, 2_000).unwrap() > 0,
            "no reply over IPv6"
        );
        assert_eq!(v6.recv_multipart(0).unwrap()[0], b"I");
    }
}

#[test]
fn keygen_creates_a_private_seed_file_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.seed");
    let first = rota(&["keygen", "--seed-file", path.to_str().unwrap()]);
    assert!(first.status.success());
    let key = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert_eq!(key.len(), 64);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let content = std::fs::read_to_string(&path).unwrap();
    let second = rota(&["keygen", "--seed-file", path.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), key);
    assert!(String::from_utf8_lossy(&second.stderr).contains("not overwritten"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
}

#[test]
fn config_test_prints_the_resolved_conf_or_names_the_bad_key() {
    let net = Net::init(1, SLOT_MS);
    let conf = net.conf(1);
    let out = rota(&["config-test", "--conf", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["resolved"]["identifier"], 1);
    assert_eq!(json["schedule"]["slot_ms"], 1000);
    assert_eq!(json["peering"]["missed_heartbeats"], 3);
    assert_eq!(
        json["resolved"]["public_key"].as_str(),
        Some(net.server_key(1).public().to_string().as_str())
    );

    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("blackout_ms = 250", "blackout_ms = 150"),
    )
    .unwrap();
    let out = rota(&["config-test", "--conf", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schedule.blackout_ms") && err.contains("2 x"),
        "{err}"
    );
}

//! Several real servers in consensus, two-second slots: the test list of the
//! consensus description (all up; one stopped; rejoining; two stopped; payments
//! during rounds; catching up through a push or a fetch), and hostile peers.

mod common;

use std::time::Duration;

use common::{Net, rota};
use rota_peer::Hash;
use rota_peer::keys::Keypair;
use rota_peer::schedule::unix_now_ms;
use rota_peer::wire::consensus::{Base, Header, SignedHeader, Verified};
use rota_peer::wire::{Envelope, PeerMessage, Reply, Request, TxStatus};

const SLOT_MS: u64 = 2_000;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Waits until the listed servers hold the same balance hash and height.
fn wait_agree(net: &Net, servers: &[usize], within: Duration) {
    net.wait_for(&format!("servers {servers:?} to agree"), within, || {
        let states: Vec<_> = servers
            .iter()
            .map(|i| (net.balance_hash(*i), net.height(*i)))
            .collect();
        states[0].0.is_some() && states.iter().all(|s| *s == states[0])
    });
}

/// Waits until each observer's connector reports server `down` failed.
fn wait_failed(net: &Net, observers: &[usize], down: usize, within: Duration) {
    net.wait_for(
        &format!("servers {observers:?} to see server {down} failed"),
        within,
        || {
            observers.iter().all(|i| {
                net.field(*i, "peers")
                    .and_then(|p| p.get(down.to_string()).cloned())
                    .is_some_and(|state| state == "failed")
            })
        },
    );
}

fn archive(net: &Net, i: usize) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(net.data_dir(i).join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn one_server_stops_the_others_go_on_and_it_rejoins() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2, 3], slot + 1, secs(15));
    wait_agree(&net, &[1, 2, 3], secs(10));

    assert_eq!(net.stop(3).code(), Some(0));
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2], slot + 3, secs(20));
    assert!(net.running(1) && net.running(2));

    net.start(3);
    net.wait_in_sync(&[3], secs(20));
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2, 3], slot, secs(15));
    wait_agree(&net, &[1, 2, 3], secs(10));
}

#[test]
fn two_servers_stop_and_the_third_stops_itself() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    net.stop(2);
    net.stop(3);
    let status = net.wait_exit(1, secs(30));
    assert_eq!(
        status.code(),
        Some(3),
        "exit code 3 means consensus lost\n{}",
        net.logs()
    );
    let log = net.log(1);
    assert!(log.contains("consensus lost"), "{log}");
}

#[test]
fn payments_during_the_rounds_keep_consensus() {
    let net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let payee = Keypair::from_seed(&[50; 32]).public();
    let mut blocks = Vec::new();
    for (round, server) in [1, 2, 3, 1].into_iter().enumerate() {
        let paid = net.pay(Some(server), &payee, round as u32 + 1);
        assert_eq!(paid["status"], "committed", "{paid}");
        blocks.push(paid["block"].as_u64().unwrap());
    }
    wait_agree(&net, &[1, 2, 3], secs(10));
    for i in 1..=3 {
        assert_eq!(net.balance(i, &payee), Some(10), "server {i}");
        for number in &blocks {
            let hash = net.request(i, &Request::BlockHash(*number)).unwrap();
            assert_eq!(hash, net.request(1, &Request::BlockHash(*number)).unwrap());
        }
    }
}

#[test]
fn a_stopped_server_catches_up_and_its_archive_shows_it() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    net.stop(3);
    wait_failed(&net, &[1, 2], 3, secs(15));
    let before = archive(&net, 3);
    let payee = Keypair::from_seed(&[51; 32]).public();
    net.pay(Some(1), &payee, 7);
    net.pay(Some(2), &payee, 8);
    let hash = net.balance_hash(1).unwrap();

    net.start(3);
    net.wait_in_sync(&[3], secs(20));
    wait_agree(&net, &[1, 2, 3], secs(20));
    assert_eq!(net.balance(3, &payee), Some(15));
    let after = archive(&net, 3);
    assert!(
        after
            .iter()
            .any(|name| name.starts_with(&format!("{hash}."))),
        "archive of server 3 before {before:?}, after {after:?}, expected {hash}"
    );
    let log = net.log(3);
    assert!(
        log.contains("installing the database of slot"),
        "server 3 caught up through a fetch under a commit certificate\n{log}"
    );
}

#[test]
fn a_server_started_with_a_corrupted_database_rejoins() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let payee = Keypair::from_seed(&[52; 32]).public();
    net.pay(Some(1), &payee, 9);
    wait_agree(&net, &[1, 2, 3], secs(10));
    net.stop(3);
    std::fs::write(
        net.data_dir(3).join("balances.db"),
        b"this is not a database",
    )
    .unwrap();
    std::fs::remove_dir_all(net.data_dir(3).join("archive")).unwrap();
    std::fs::create_dir(net.data_dir(3).join("archive")).unwrap();

    net.start(3);
    net.wait_in_sync(&[3], secs(30));
    wait_agree(&net, &[1, 2, 3], secs(20));
    assert_eq!(net.balance(3, &payee), Some(9));
    assert!(net.log(3).contains("starting out of sync"));
}

#[test]
fn a_message_signed_by_a_key_not_in_the_conf_is_refused() {
    let net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let stranger = Keypair::from_seed(&[66; 32]);
    let vote = Envelope::sign(
        &stranger,
        "local",
        net.slot_now(),
        &PeerMessage::Want {
            slot: 1,
            digest: Hash([1; 32]),
        },
    );
    let err = net
        .peer_request(2, &Request::Peer(vote))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in this chain's server list"), "{err}");
    assert!(net.info(2).is_some(), "still serving");
}

#[test]
fn a_round_replayed_from_an_earlier_slot_is_refused() {
    let net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    let slot = net.slot_now();
    net.wait_committed_after(&[2], slot + 1, secs(15));
    // A ROUND for the committed slot, signed by its alpha's own key: a
    // replay, or a second header, comes too late either way.
    let round = net.committed_slot(2).unwrap();
    let alpha = (round % 3) as usize + 1;
    let hash: Hash = net.balance_hash(2).unwrap().parse().unwrap();
    let header = Header {
        slot: round,
        base: Base {
            digest: Hash::default(),
            slot: 0,
            balance: hash,
            chain: Default::default(),
            sealed: 0,
        },
        payments: Hash::default(),
        result: hash,
        seal: None,
    };
    let header =
        Verified::<SignedHeader>::sign_header(&net.server_key(alpha), "local", header, None);
    let replay = Envelope::sign(
        &net.server_key(alpha),
        "local",
        round,
        &PeerMessage::Round {
            header: header.into_inner(),
            transactions: vec![],
        },
    );
    let target = if alpha == 2 { 3 } else { 2 };
    let err = net
        .peer_request(target, &Request::Peer(replay))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already decided"), "{err}");
    wait_agree(&net, &[1, 2, 3], secs(10));
}

#[test]
fn five_servers_keep_going_with_two_down() {
    let mut net = Net::up(5, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3, 4, 5], secs(30));
    net.stop(4);
    net.stop(5);
    wait_failed(&net, &[1, 2, 3], 4, secs(15));
    wait_failed(&net, &[1, 2, 3], 5, secs(15));
    let payee = Keypair::from_seed(&[53; 32]).public();
    for server in [1, 2, 3] {
        let paid = net.pay(Some(server), &payee, 1);
        assert_eq!(paid["status"], "committed", "{paid}");
    }
    let slot = net.slot_now();
    net.wait_committed_after(&[1, 2, 3], slot + 2, secs(30));
    wait_agree(&net, &[1, 2, 3], secs(10));
    assert_eq!(net.balance(3, &payee), Some(3));
}

#[test]
fn a_payment_its_round_leaves_out_is_reported_lost_and_signed_again() {
    let net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], secs(20));
    // A payer without an account: the alpha refuses what a server forwards,
    // and the round commits without it.
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("nobody.seed");
    let seed = seed.to_str().unwrap();
    assert!(rota(&["keygen", "--seed-file", seed]).status.success());
    // Early in a slot, to a server that is the alpha of neither this slot
    // nor the next (the alpha of slot s is server s mod 3 + 1): the first
    // payments are forwarded, not refused at once.
    net.wait_for("the start of a slot", secs(10), || {
        unix_now_ms() % SLOT_MS < 300
    });
    let slot = net.slot_now();
    let server = ((slot + 2) % 3 + 1).to_string();
    let payee = Keypair::from_seed(&[54; 32]).public().to_string();
    let out = net.client_command(&[
        "pay",
        "--to",
        &payee,
        "--amount",
        "5",
        "--seed-file",
        seed,
        "--server",
        &server,
        "--wait",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // "payment <id> was lost (decided by slot <d>); signing a new one"
    let Some(line) = stderr.lines().find(|l| l.contains(" was lost ")) else {
        panic!("no payment reported lost:\n{stderr}\n{}", net.logs())
    };
    assert!(line.ends_with("; signing a new one"), "{line}");
    let words: Vec<&str> = line.split([' ', ')']).collect();
    let id: Hash = words[1].parse().expect("a payment id");
    let decided: u64 = words[7].parse().expect("a slot");
    assert!(
        (slot..=slot + 1).contains(&decided),
        "{line} (signed in {slot})"
    );
    let server: usize = server.parse().unwrap();
    assert_eq!(
        net.request(server, &Request::Status(id)).unwrap(),
        Reply::Status(TxStatus::Lost { slot: decided })
    );
    let out = net.client_command(&["status", "--server", &server.to_string(), &id.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("lost (decided by slot {decided})")
    );
}

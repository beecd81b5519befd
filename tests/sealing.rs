//! Sealed blocks, seen from outside: real servers on loopback seal every
//! block, and a client checks each seal with `B` and `H` alone; a leader
//! killed in the middle of a search is replaced and the block is sealed
//! once.

mod common;

use std::time::Duration;

use common::Net;
use rota::ledger::store::Store;
use rota_peer::block::{Block, BlockHeader};
use rota_peer::keys::Keypair;
use rota_peer::seal::{Seal, zero_bits};
use rota_peer::wire::{Reply, Request};

const SLOT_MS: u64 = 2_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `B n` on server `i`: the block and its seal, if sealed.
fn sealed_block(net: &Net, i: usize, n: u64) -> (BlockHeader, Option<Seal>) {
    match net.request(i, &Request::Block(n)) {
        Ok(Reply::Block { seal, block }) => (Block::decode(&block).expect("a block").header, seal),
        other => panic!("B {n} on server {i}: {other:?}"),
    }
}

/// The mining section of server `i`'s `I`.
fn mining(net: &Net, i: usize) -> Option<serde_json::Value> {
    net.field(i, "mining")
}

fn sealed_height(net: &Net, i: usize) -> u64 {
    mining(net, i)
        .and_then(|m| m["sealed_height"].as_u64())
        .unwrap_or(0)
}

/// Checks block `n` from outside on each of `servers`: `H` names the
/// unsealed header's double SHA-256, every server serves the same seal,
/// and the seal's hash begins with the block's difficulty in zero bits.
fn check_seal(net: &Net, servers: &[usize], n: u64, difficulty: u32) -> Seal {
    let mut seen = None;
    for &i in servers {
        let (header, seal) = sealed_block(net, i, n);
        assert_eq!(header.difficulty, difficulty, "block {n} on server {i}");
        assert_eq!(header.nonce, 0, "the block's own header is unsealed");
        assert_eq!(net.block_hash(i, n), header.hash(), "H {n} on server {i}");
        let seal = seal.unwrap_or_else(|| panic!("block {n} on server {i} is not sealed"));
        let hash = seal.hash(&header);
        assert!(
            zero_bits(&hash) >= difficulty,
            "block {n}: seal hash {hash} has {} zero bits",
            zero_bits(&hash)
        );
        if let Some(first) = seen {
            assert_eq!(seal, first, "block {n}: server {i} keeps another seal");
        }
        seen = Some(seal);
    }
    seen.expect("at least one server")
}

#[test]
fn three_servers_seal_every_block_and_each_seal_checks_from_outside() {
    const DIFFICULTY: u32 = 16;
    let mut net = Net::init_sealed(3, SLOT_MS, DIFFICULTY);
    for i in 1..=3 {
        net.start(i);
    }
    net.wait_in_sync(&[1, 2, 3], secs(30));
    let payee = Keypair::from_seed(&[41; 32]).public();
    for _ in 0..3 {
        let paid = net.pay(None, &payee, 1);
        assert_eq!(paid["status"], "committed", "{paid}");
    }
    let height = net.height(1).unwrap();
    assert!(height >= 3, "three payments, three blocks: {height}");
    net.wait_for("every block sealed on every server", secs(90), || {
        (1..=3).all(|i| sealed_height(&net, i) >= height)
    });
    for n in 1..=height {
        check_seal(&net, &[1, 2, 3], n, DIFFICULTY);
    }
    for i in 1..=3 {
        let m = mining(&net, i).unwrap();
        assert_eq!(m["difficulty"], DIFFICULTY, "{m}");
        assert_eq!(m["leader"], 1, "server {i}: {m}");
        assert_eq!(m["live"], serde_json::json!([1, 2, 3]), "server {i}: {m}");
    }
    // Each heartbeat carries its sender's view of who is live: every
    // server shows the others' views.
    net.wait_for("every server's view of the others", secs(30), || {
        (1..=3).all(|i| {
            mining(&net, i).is_some_and(|m| {
                let views = &m["views"];
                (1..=3)
                    .filter(|j| *j != i)
                    .all(|j| views[j.to_string()] == serde_json::json!([1, 2, 3]))
            })
        })
    });
    // Every server searched: each measured its hash rate.
    net.wait_for("a hash rate on every server", secs(30), || {
        (1..=3).all(|i| mining(&net, i).is_some_and(|m| m["hash_rate"].as_u64() > Some(0)))
    });
    // `rota verify` checks each stored seal against its block: a seal
    // that does not prove block 1, written into stopped server 3's store,
    // is found.
    net.stop(3);
    let (header, good) = {
        let store = Store::open(&net.data_dir(3), 10, SLOT_MS).unwrap();
        let block = Block::decode(&store.block(1).unwrap().unwrap()).unwrap();
        (
            block.header,
            store.seal(1).unwrap().expect("block 1 sealed"),
        )
    };
    let bad = (good.nonce + 1..)
        .map(|nonce| Seal { nonce, ..good })
        .find(|seal| !seal.proves(&header))
        .unwrap();
    let put = |seal| {
        let store = Store::open(&net.data_dir(3), 10, SLOT_MS).unwrap();
        store.put_seal(1, seal).unwrap();
    };
    put(bad);
    let conf = net.conf(3);
    let out = common::rota(&["verify", "--conf", conf.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("block 1") && text.contains("does not prove it"),
        "{text}"
    );
    put(good);
}

#[test]
fn a_leader_killed_in_the_middle_of_a_search_is_replaced_and_the_block_is_sealed_once() {
    // Hard enough that the search lasts a while (about a million hashes).
    const DIFFICULTY: u32 = 20;
    let mut net = Net::init_sealed(3, SLOT_MS, DIFFICULTY);
    for i in 1..=3 {
        net.start(i);
    }
    net.wait_in_sync(&[1, 2, 3], secs(30));
    let payee = Keypair::from_seed(&[42; 32]).public();
    // Server 1 leads the search for a new block; it dies before the block
    // is sealed, and server 2 takes the search over. A search that ends
    // before it can be caught (a lucky nonce), or whose seal server 1
    // announced in the moment before it died, is tried again with the
    // next block, server 1 restarted.
    for _ in 0..5 {
        let paid = net.pay(None, &payee, 1);
        assert_eq!(paid["status"], "committed", "{paid}");
        let n = paid["block"].as_u64().expect("the block it is in");
        let searching =
            |net: &Net| mining(net, 1).is_some_and(|m| m["leader"] == 1 && m["searching"] == n);
        net.wait_for(
            "server 1 leading the search, or the block sealed",
            secs(30),
            || searching(&net) || sealed_height(&net, 2) >= n,
        );
        if !searching(&net) {
            continue;
        }
        net.kill(1);
        net.wait_for("server 2 leading", secs(30), || {
            mining(&net, 2).is_some_and(|m| m["leader"] == 2)
        });
        net.wait_for("block sealed on servers 2 and 3", secs(180), || {
            sealed_height(&net, 2) >= n && sealed_height(&net, 3) >= n
        });
        check_seal(&net, &[2, 3], n, DIFFICULTY);
        let coordinated = format!("coordinating the search for the seal of block {n}");
        if net.log(2).contains(&coordinated) {
            return;
        }
        net.start(1);
        net.wait_in_sync(&[1, 2, 3], secs(60));
        net.wait_for("server 1 leading again", secs(30), || {
            (1..=3).all(|i| mining(&net, i).is_some_and(|m| m["leader"] == 1))
        });
    }
    panic!("server 2 never took over a search from server 1 in five tries");
}

#[test]
fn a_server_whose_data_directory_is_lost_gets_the_seals_back_with_the_blocks() {
    const DIFFICULTY: u32 = 12;
    let mut net = Net::init_sealed(3, SLOT_MS, DIFFICULTY);
    for i in 1..=3 {
        net.start(i);
    }
    net.wait_in_sync(&[1, 2, 3], secs(30));
    let payee = Keypair::from_seed(&[43; 32]).public();
    for _ in 0..2 {
        let paid = net.pay(None, &payee, 1);
        assert_eq!(paid["status"], "committed", "{paid}");
    }
    let height = net.height(1).unwrap();
    net.wait_for("every block sealed on every server", secs(60), || {
        (1..=3).all(|i| sealed_height(&net, i) >= height)
    });
    net.stop(3);
    std::fs::remove_dir_all(net.data_dir(3)).unwrap();
    // Two slots pass before it comes back (docs/OPERATIONS.md).
    let stopped_at = net.slot_now();
    net.wait_for("two slots", secs(10), || net.slot_now() >= stopped_at + 2);
    net.start(3);
    net.wait_in_sync(&[1, 2, 3], secs(60));
    net.wait_for("server 3 holding every block", secs(60), || {
        net.height(3) >= Some(height)
    });
    // It installed the others' database and fetched the blocks: the seals
    // of the blocks sealed before came with them, the same as the others'.
    net.wait_for("server 3 serving every seal", secs(30), || {
        (1..=height).all(|n| sealed_block(&net, 3, n).1.is_some())
    });
    for n in 1..=height {
        check_seal(&net, &[1, 2, 3], n, DIFFICULTY);
    }
}

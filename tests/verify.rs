//! `rota verify`: the audit of a data directory passes on what real servers
//! wrote, names what was tampered with, and refuses a directory in use.

mod common;

use std::time::Duration;

use common::{Net, rota};
use rota::ledger::store::{Disk, FsDisk, TableWrite};
use rota_peer::block::HEADER_LEN;
use rota_peer::keys::Keypair;

const SLOT_MS: u64 = 1_000;

fn verify(net: &Net, i: usize) -> (bool, serde_json::Value, String) {
    let conf = net.conf(i);
    let out = rota(&["verify", "--conf", conf.to_str().unwrap(), "--json"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, text)
}

/// The committed balance hash server `i`'s audit finds.
fn audit_committed(net: &Net, i: usize) -> String {
    let (ok, audit, text) = verify(net, i);
    assert!(ok, "{text}");
    audit["committed"]["balance_hash"]
        .as_str()
        .expect("a committed hash")
        .to_string()
}

#[test]
fn the_audit_passes_on_real_servers_and_names_what_was_tampered_with() {
    let mut net = Net::up(3, SLOT_MS);
    net.wait_in_sync(&[1, 2, 3], Duration::from_secs(30));
    let payee = Keypair::from_seed(&[42; 32]).public();
    for amount in [5, 7] {
        let paid = net.pay(None, &payee, amount);
        assert_eq!(paid["status"], "committed", "{paid}");
    }

    // A data directory in use is refused, and says why.
    let (ok, _, text) = verify(&net, 1);
    assert!(!ok && text.contains("in use by another process"), "{text}");

    net.audit();
    let (ok, audit, text) = verify(&net, 2);
    assert!(ok, "{text}");
    assert!(audit["blocks"].as_u64().unwrap() >= 2, "{audit}");
    assert_eq!(audit["payments"], audit["blocks"], "{audit}");
    assert_eq!(audit["complete"], true, "{audit}");
    assert_eq!(audit["committed"]["certified"], true, "{audit}");
    assert_eq!(audit["database"]["supply"], net.genesis_supply(), "{audit}");
    assert_eq!(
        audit["database"]["balance_hash"], audit["committed"]["balance_hash"],
        "{audit}"
    );

    // One byte of a payment in block 1 changed: its signature no longer
    // checks, and the audit says which block.
    {
        let disk = FsDisk::open(&net.data_dir(2)).unwrap();
        let mut bytes = disk.block(1).unwrap().expect("block 1");
        bytes[HEADER_LEN + 4 + 100] ^= 1;
        disk.transact(&[TableWrite::PutBlock(1, bytes)]).unwrap();
    }
    let (ok, audit, text) = verify(&net, 2);
    assert!(!ok, "{text}");
    let problem = audit["problems"][0].as_str().unwrap_or_default();
    assert!(problem.starts_with("block 1 does not check"), "{text}");

    // A database file an older state of the chain, and no archive copy of
    // the committed state: a kill can leave that, and a start replays the
    // blocks after it. The audit says so, and passes.
    let data = net.data_dir(3);
    let committed = audit_committed(&net, 3);
    let older = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&committed)
        })
        .expect("an archive copy of an older state");
    let mut bytes = std::fs::read(&older).unwrap();
    std::fs::write(data.join("balances.db"), &bytes).unwrap();
    std::fs::remove_dir_all(data.join("archive")).unwrap();
    std::fs::create_dir(data.join("archive")).unwrap();
    let (ok, audit, text) = verify(&net, 3);
    assert!(ok, "{text}");
    let source = audit["database"]["source"].as_str().unwrap_or_default();
    assert!(source.starts_with("the blocks (balances.db is"), "{text}");

    // One balance in it changed: no start could rebuild the committed
    // state from it, and the audit says so.
    bytes[35] ^= 1;
    std::fs::write(data.join("balances.db"), &bytes).unwrap();
    let (ok, audit, text) = verify(&net, 3);
    assert!(!ok, "{text}");
    let problem = audit["problems"][0].as_str().unwrap_or_default();
    assert!(
        problem.starts_with("balances.db holds")
            && problem.contains("neither the archive nor the blocks after it rebuild that"),
        "{text}"
    );

    // Server 1 was left alone, and still checks.
    let (ok, _, text) = verify(&net, 1);
    assert!(ok, "{text}");
}

#[test]
fn a_directory_without_a_block_store_is_refused_clearly() {
    let mut net = Net::init(1, SLOT_MS);
    let (ok, _, text) = verify(&net, 1);
    assert!(!ok && text.contains("holds no block store"), "{text}");
    net.skip_audit();
}

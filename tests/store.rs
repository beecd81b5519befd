//! The block store, the database file and the archive, through the public
//! API only: what a commit leaves on disk, how [`Store::load`] comes back
//! after a crash or a damaged file, and how fetched blocks are appended.
//!
//! Each test works in its own temporary data directory. A "crash" is
//! simulated by putting the files back as a kill between two writes would
//! have left them, then reopening the store, or on a [`MemoryDisk`] that
//! fails every write after a chosen one. The last tests are those of the
//! consensus journal.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rota::ledger::consensus::Record;
use rota::ledger::core::{Committed, CommittedRound, Payments};
use rota::ledger::store::{
    Appended, Disk, Loaded, MemoryDisk, Store, TableWrite, Tip, write_atomic,
};
use rota_peer::balances::Balances;
use rota_peer::block::{Block, BlockHeader, merkle_root};
use rota_peer::keys::Keypair;
use rota_peer::transaction::{Transaction, VerifiedTx};
use rota_peer::wire::consensus::{
    Base, Certified, Header, Kind, Prevote, SignedHeader, Verified, Vote,
};
use rota_peer::{Hash, Millis, PublicKey, ServerId, Slot};

/// A round as these tests commit it: the state after it, its payments, and
/// whether it makes a block.
#[derive(Clone, Debug)]
struct Commit {
    slot: Slot,
    hash: Hash,
    snapshot: Arc<Balances>,
    transactions: Vec<VerifiedTx>,
    block: bool,
    installed: bool,
}

/// The block a node builds for `commit` on `tip`: the one its round's
/// header fixes when the round's base leaves the chain at `tip`.
fn build_block(tip: Tip, commit: &Commit, timestamp: Millis) -> Block {
    let ids: Vec<Hash> = commit.transactions.iter().map(|tx| tx.id()).collect();
    let round = CommittedRound {
        slot: commit.slot,
        hash: commit.hash,
        block: Some(BlockHeader {
            number: tip.height + 1,
            previous: tip.hash,
            slot: commit.slot,
            timestamp,
            merkle_root: merkle_root(&ids),
            balance_hash: commit.hash,
            difficulty: 0,
            nonce: 0,
        }),
        seal: None,
        transactions: commit.transactions.clone(),
        proof: Vec::new(),
    };
    rota::ledger::build_block(&round).expect("a block")
}

/// The slot length: 1.5 s, so that naming archives needs the integer
/// division (slot * 1500 / 1000) to be done right.
const SLOT_MS: u64 = 1_500;

/// A realistic first slot, about the Unix time of 2024 in 1.5 s slots.
const FIRST: Slot = 1_154_000_001;

/// How many archives a test store keeps unless it says otherwise.
const KEEP: usize = 10;

fn keypair(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn key(n: u8) -> PublicKey {
    keypair(n).public()
}

/// Accounts 1 and 2 start with money; others get accounts when paid.
fn genesis() -> Balances {
    Balances::from_accounts(&[(key(1), 1_000), (key(2), 500)]).expect("genesis")
}

fn genesis_hash() -> Hash {
    genesis().hash()
}

/// The Unix seconds an archive of `slot` is named by.
fn seconds(slot: Slot) -> u64 {
    slot * SLOT_MS / 1000
}

/// A round at `slot` applying `payments` (payer, payee, amount) to `before`.
fn round(before: &Balances, slot: Slot, payments: &[(u8, u8, u32)]) -> Commit {
    let mut after = before.clone();
    let transactions = payments
        .iter()
        .enumerate()
        .map(|(i, &(payer, payee, amount))| {
            let tx = Transaction::sign(
                "store",
                &keypair(payer),
                key(payee),
                amount,
                slot * SLOT_MS + i as u64,
            );
            after
                .pay(&key(payer), &key(payee), amount)
                .expect("a valid payment");
            VerifiedTx::from_trusted_store(tx)
        })
        .collect();
    let hash = after.hash();
    Commit {
        slot,
        hash,
        snapshot: Arc::new(after),
        transactions,
        block: !payments.is_empty(),
        installed: false,
    }
}

fn committed(commit: &Commit) -> Committed {
    Committed {
        slot: commit.slot,
        hash: commit.hash,
        snapshot: commit.snapshot.clone(),
    }
}

/// Commits `commit` as the ledger thread does: a block on the current tip
/// when the round asks for one. Returns the block.
fn commit_round(store: &Store, commit: &Commit) -> Option<Block> {
    let block = commit.block.then(|| {
        let tip = store.tip().expect("tip");
        build_block(tip, commit, commit.slot * SLOT_MS)
    });
    store
        .commit(
            &committed(commit),
            block.as_slice(),
            commit.installed,
            None,
            &[],
            &[],
        )
        .expect("commit");
    block
}

fn open(dir: &Path) -> Store {
    open_keeping(dir, KEEP)
}

fn open_keeping(dir: &Path, keep: usize) -> Store {
    Store::open(dir, keep, SLOT_MS).expect("open the store")
}

/// Opens and loads a store, expecting the committed state back whole.
fn load_intact(store: &Store) -> Committed {
    match store.load(genesis()).expect("load") {
        Loaded::Intact(committed) => committed,
        Loaded::Damaged { reason, .. } => panic!("expected an intact load, got damaged: {reason}"),
    }
}

fn archive_path(dir: &Path, hash: Hash, slot: Slot) -> std::path::PathBuf {
    dir.join("archive")
        .join(format!("{hash}.{}", seconds(slot)))
}

/// Every file name in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A chain of `rounds` committed rounds with payments, built in a scratch
/// store, returned as its blocks. Round `i` (from 0) is at slot FIRST + i.
fn chain(rounds: usize) -> Vec<Block> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut state = load_intact(&store).snapshot.as_ref().clone();
    (0..rounds)
        .map(|i| {
            let commit = round(&state, FIRST + i as u64, &[(1, 3, 10 + i as u32)]);
            state = commit.snapshot.as_ref().clone();
            commit_round(&store, &commit).expect("a round with payments has a block")
        })
        .collect()
}

fn tip_of(block: &Block) -> Tip {
    Tip {
        height: block.header.number,
        hash: block.header.hash(),
    }
}

#[test]
fn a_new_store_starts_from_the_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    let committed = load_intact(&store);

    assert_eq!(committed.slot, 0);
    assert_eq!(committed.hash, genesis_hash());
    assert_eq!(*committed.snapshot, genesis());
    assert_eq!(
        fs::read(dir.path().join("balances.db")).unwrap(),
        genesis().pack()
    );
    assert!(archive_path(dir.path(), genesis_hash(), 0).is_file());
    assert_eq!(store.archive(), vec![(genesis_hash().to_string(), 0)]);
    assert_eq!(store.tip().unwrap(), Tip::default());
}

#[test]
fn a_committed_block_is_stored_indexed_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let commit;
    let block;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        commit = round(
            &state.snapshot,
            FIRST,
            &[(1, 3, 100), (2, 1, 50), (3, 4, 7)],
        );
        block = commit_round(&store, &commit).unwrap();

        assert_eq!(block.header.number, 1);
        assert_eq!(block.header.previous, Hash::default());
        assert_eq!(block.header.balance_hash, commit.hash);
        assert_eq!(store.tip().unwrap(), tip_of(&block));
        let bytes = store.block(1).unwrap().expect("block 1 is stored");
        assert_eq!(Block::decode(&bytes).unwrap(), block);
        assert_eq!(store.block_hash(1).unwrap(), Some(block.header.hash()));
        assert_eq!(store.block(2).unwrap(), None);
        assert_eq!(store.block_hash(2).unwrap(), None);
        for tx in &commit.transactions {
            assert_eq!(store.tx_block(&tx.id()).unwrap(), Some(1));
        }
        assert_eq!(store.tx_block(&Hash::of(b"no such payment")).unwrap(), None);
    }

    let store = open(dir.path());
    let loaded = load_intact(&store);
    assert_eq!(loaded.hash, commit.hash);
    assert_eq!(loaded.slot, FIRST);
    assert_eq!(*loaded.snapshot, *commit.snapshot);
    assert_eq!(store.tip().unwrap(), tip_of(&block));
    for tx in &commit.transactions {
        assert_eq!(store.tx_block(&tx.id()).unwrap(), Some(1));
    }
}

#[test]
fn a_crash_between_the_block_store_and_the_database_file_replays_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let second;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        let first = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &first).unwrap();
        let before = fs::read(&balances_db).unwrap();
        second = round(&first.snapshot, FIRST + 2, &[(3, 4, 40), (2, 3, 5)]);
        commit_round(&store, &second).unwrap();

        // The kill came after the block store's commit and before the
        // database file and its archive copy were written.
        fs::write(&balances_db, &before).unwrap();
        fs::remove_file(archive_path(dir.path(), second.hash, second.slot)).unwrap();
    }

    let store = open(dir.path());
    let loaded = load_intact(&store);

    assert_eq!(loaded.hash, second.hash);
    assert_eq!(loaded.slot, second.slot);
    assert_eq!(*loaded.snapshot, *second.snapshot);
    let mut rewritten = Balances::from_packed(&fs::read(&balances_db).unwrap()).unwrap();
    assert_eq!(rewritten.hash(), second.hash);
    assert!(archive_path(dir.path(), second.hash, second.slot).is_file());
    // A second load finds the file already right.
    assert_eq!(load_intact(&store).hash, second.hash);
}

#[test]
fn a_database_file_several_rounds_behind_is_rebuilt_from_the_blocks_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let mut commits = Vec::new();
    let before;
    {
        let store = open(dir.path());
        let mut state = load_intact(&store).snapshot.as_ref().clone();
        let first = round(&state, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &first).unwrap();
        before = fs::read(&balances_db).unwrap();
        state = first.snapshot.as_ref().clone();
        // Three more rounds, one without payments (no block) between them.
        for (i, payments) in [&[(3, 4, 40)][..], &[], &[(2, 3, 5), (4, 1, 1)]]
            .into_iter()
            .enumerate()
        {
            let commit = round(&state, FIRST + 1 + i as u64, payments);
            commit_round(&store, &commit);
            state = commit.snapshot.as_ref().clone();
            commits.push(commit);
        }
    }
    // The files never caught up after the first round: the kill came while
    // the writer was behind.
    fs::write(&balances_db, &before).unwrap();
    for commit in &commits {
        let _ = fs::remove_file(archive_path(dir.path(), commit.hash, commit.slot));
    }

    let store = open(dir.path());
    let loaded = load_intact(&store);
    let last = commits.last().unwrap();
    assert_eq!(loaded.hash, last.hash);
    assert_eq!(loaded.slot, last.slot);
    assert_eq!(*loaded.snapshot, *last.snapshot);
    let mut rewritten = Balances::from_packed(&fs::read(&balances_db).unwrap()).unwrap();
    assert_eq!(rewritten.hash(), last.hash);
}

#[test]
fn a_block_that_does_not_rebuild_its_balance_hash_stops_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let before;
    let second;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        before = fs::read(&balances_db).unwrap();
        let first = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &first).unwrap();
        second = round(&first.snapshot, FIRST + 1, &[(3, 4, 40)]);
        // Its block claims a balance hash its payments do not give.
        let mut block = build_block(store.tip().unwrap(), &second, 0);
        block.header.balance_hash = Hash::of(b"not what the payments give");
        store
            .commit(&committed(&second), &[block], false, None, &[], &[])
            .unwrap();
    }
    fs::write(&balances_db, &before).unwrap();
    fs::remove_dir_all(dir.path().join("archive")).unwrap();
    fs::create_dir(dir.path().join("archive")).unwrap();

    let store = open(dir.path());
    match store.load(genesis()).unwrap() {
        Loaded::Damaged { reason, .. } => {
            assert!(reason.contains(&second.hash.short()), "reason: {reason}")
        }
        Loaded::Intact(c) => panic!("expected damaged, got intact at {}", c.hash),
    }
}

#[test]
fn a_store_writing_behind_has_its_files_current_once_flushed_and_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let file_hash = || {
        Balances::from_packed(&fs::read(&balances_db).unwrap())
            .unwrap()
            .hash()
    };
    let mut state;
    {
        let store = open(dir.path()).writing_behind().unwrap();
        state = load_intact(&store).snapshot.as_ref().clone();
        for i in 0..5 {
            let commit = round(&state, FIRST + i, &[(1, 3, 10 + i as u32)]);
            commit_round(&store, &commit).unwrap();
            state = commit.snapshot.as_ref().clone();
        }
        store.flush();
        assert_eq!(file_hash(), state.hash());
        assert!(archive_path(dir.path(), state.hash(), FIRST + 4).is_file());
        let last = round(&state, FIRST + 5, &[(2, 3, 1)]);
        commit_round(&store, &last).unwrap();
        state = last.snapshot.as_ref().clone();
    }
    assert_eq!(
        file_hash(),
        state.hash(),
        "closing the store wrote the last"
    );
    assert_eq!(load_intact(&open(dir.path())).hash, state.hash());
}

#[test]
fn a_corrupted_database_file_is_restored_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let commit;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        commit = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &commit).unwrap();
    }
    fs::write(&balances_db, b"not a packed database").unwrap();

    let store = open(dir.path());
    let loaded = load_intact(&store);

    assert_eq!(loaded.hash, commit.hash);
    assert_eq!(loaded.slot, FIRST);
    assert_eq!(*loaded.snapshot, *commit.snapshot);
    assert_eq!(fs::read(&balances_db).unwrap(), commit.snapshot.pack());
}

#[test]
fn a_corrupted_database_file_without_an_archive_or_a_block_to_replay_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let commit;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        commit = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &commit).unwrap();
    }
    fs::write(dir.path().join("balances.db"), b"garbage").unwrap();
    for name in file_names(&dir.path().join("archive")) {
        fs::remove_file(dir.path().join("archive").join(name)).unwrap();
    }

    let store = open(dir.path());
    match store.load(genesis()).unwrap() {
        Loaded::Damaged { best, reason } => {
            assert!(
                reason.contains("balances.db is unreadable"),
                "reason: {reason}"
            );
            assert!(reason.contains(&commit.hash.short()), "reason: {reason}");
            // Nothing readable: the best state is the genesis.
            assert_eq!(best.hash, genesis_hash());
            assert_eq!(*best.snapshot, genesis());
            assert_eq!(best.slot, FIRST);
        }
        Loaded::Intact(c) => panic!("expected damaged, got intact at {}", c.hash),
    }
    // The others' database, installed, is the state the record names: the
    // files are written all the same, and the next start finds them whole.
    let installed = Commit {
        slot: FIRST + 3,
        block: false,
        installed: true,
        ..commit.clone()
    };
    assert_eq!(commit_round(&store, &installed), None);
    store.flush();
    drop(store);
    let reopened = load_intact(&open(dir.path()));
    assert_eq!(reopened.hash, commit.hash);
    assert_eq!(reopened.slot, FIRST + 3);
}

#[test]
fn a_database_file_a_round_behind_without_a_block_for_that_round_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let balances_db = dir.path().join("balances.db");
    let first;
    let installed;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        first = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &first).unwrap();
        let before = fs::read(&balances_db).unwrap();
        // A state installed from another server comes without a block.
        installed = Commit {
            block: false,
            installed: true,
            ..round(&first.snapshot, FIRST + 1, &[(2, 4, 9)])
        };
        assert_eq!(commit_round(&store, &installed), None);
        fs::write(&balances_db, &before).unwrap();
        fs::remove_file(archive_path(dir.path(), installed.hash, installed.slot)).unwrap();
    }

    let store = open(dir.path());
    match store.load(genesis()).unwrap() {
        Loaded::Damaged { best, reason } => {
            assert!(reason.contains(&first.hash.short()), "reason: {reason}");
            assert!(reason.contains(&installed.hash.short()), "reason: {reason}");
            // The file parses, so it is the best state found.
            assert_eq!(best.hash, first.hash);
            assert_eq!(best.slot, installed.slot);
        }
        Loaded::Intact(c) => panic!("expected damaged, got intact at {}", c.hash),
    }
}

#[test]
fn a_new_store_killed_before_writing_the_genesis_file_starts_from_the_genesis() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        load_intact(&store);
    }
    // The kill came after the block store recorded the genesis and before
    // the database file and its archive copy were written.
    fs::remove_file(dir.path().join("balances.db")).unwrap();
    fs::remove_file(archive_path(dir.path(), genesis_hash(), 0)).unwrap();

    let store = open(dir.path());
    let loaded = load_intact(&store);

    assert_eq!(loaded.hash, genesis_hash());
    assert_eq!(loaded.slot, 0);
    assert_eq!(
        fs::read(dir.path().join("balances.db")).unwrap(),
        genesis().pack()
    );
}

#[test]
fn the_archive_keeps_the_newest_entries_named_by_hash_and_slot_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_keeping(dir.path(), 3);
    let mut state = load_intact(&store).snapshot.as_ref().clone();
    let mut commits = Vec::new();
    for i in 0..5u64 {
        // Slots two apart, so that the 1.5 s slots land on whole and half
        // seconds alike.
        let commit = round(&state, FIRST + 2 * i + (i % 2), &[(1, 3, 1 + i as u32)]);
        commit_round(&store, &commit).unwrap();
        state = commit.snapshot.as_ref().clone();
        commits.push(commit);
    }

    let expected: Vec<(String, u64)> = commits[2..]
        .iter()
        .map(|c| (c.hash.to_string(), seconds(c.slot)))
        .collect();
    assert_eq!(store.archive(), expected);
    let mut names: Vec<String> = expected
        .iter()
        .map(|(hash, s)| format!("{hash}.{s}"))
        .collect();
    names.sort();
    assert_eq!(file_names(&dir.path().join("archive")), names);
    for c in &commits[2..] {
        let bytes = fs::read(archive_path(dir.path(), c.hash, c.slot)).unwrap();
        assert_eq!(bytes, c.snapshot.pack());
    }
    // FIRST is odd: its start, FIRST * 1.5 s, ends in half a second, which
    // the name drops.
    assert_eq!(seconds(FIRST), 1_731_000_001);
}

#[test]
fn a_commit_that_does_not_change_the_database_writes_no_archive_entry_but_records_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let store = open(dir.path());
        let state = load_intact(&store);
        first = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
        commit_round(&store, &first).unwrap();
        let archive = store.archive();
        let file = fs::read(dir.path().join("balances.db")).unwrap();

        let empty = round(&first.snapshot, FIRST + 5, &[]);
        assert_eq!(empty.hash, first.hash);
        assert_eq!(commit_round(&store, &empty), None);

        assert_eq!(store.archive(), archive);
        assert_eq!(fs::read(dir.path().join("balances.db")).unwrap(), file);
        assert_eq!(store.meta().unwrap().unwrap().slot, FIRST + 5);
    }

    let store = open(dir.path());
    let meta = store.meta().unwrap().expect("meta is recorded");
    assert_eq!(meta.slot, FIRST + 5);
    assert_eq!(meta.hash, first.hash);
    let loaded = load_intact(&store);
    assert_eq!(loaded.slot, FIRST + 5);
    assert_eq!(loaded.hash, first.hash);
}

#[test]
fn an_installed_database_archives_the_one_it_replaces_by_the_hash_of_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let state = load_intact(&store);
    let first = round(&state.snapshot, FIRST, &[(1, 3, 100)]);
    commit_round(&store, &first).unwrap();

    // The file holds something else than the committed state (a server out
    // of sync): the archive copy must be named after what it holds.
    let mut strayed = Balances::from_accounts(&[(key(7), 77)]).unwrap();
    let strayed_bytes = strayed.pack();
    write_atomic(&dir.path().join("balances.db"), &strayed_bytes).unwrap();

    let installed = Commit {
        installed: true,
        block: false,
        ..round(&first.snapshot, FIRST + 4, &[(2, 5, 20)])
    };
    assert_eq!(commit_round(&store, &installed), None);

    let replaced = archive_path(dir.path(), strayed.hash(), first.slot);
    assert_eq!(fs::read(&replaced).unwrap(), strayed_bytes);
    assert!(
        store
            .archive()
            .contains(&(strayed.hash().to_string(), seconds(first.slot)))
    );
    assert_eq!(
        fs::read(archive_path(dir.path(), installed.hash, installed.slot)).unwrap(),
        installed.snapshot.pack()
    );
    assert_eq!(
        fs::read(dir.path().join("balances.db")).unwrap(),
        installed.snapshot.pack()
    );
    assert_eq!(store.tip().unwrap().height, 1);
}

#[test]
fn an_install_over_the_genesis_archives_only_the_installed_state() {
    // A server whose data directory was emptied installs the others'
    // state: the genesis it replaces has its archive copy from the store's
    // first start, and reading, hashing and copying a large genesis again
    // only slowed the catch-up down.
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let state = load_intact(&store);
    assert_eq!(state.slot, 0, "a new store holds the genesis");
    let genesis_copy = archive_path(dir.path(), state.hash, 0);
    let inode = fs::metadata(&genesis_copy).unwrap().ino();
    let installed = Commit {
        installed: true,
        block: false,
        ..round(&state.snapshot, FIRST + 4, &[(2, 5, 20)])
    };
    assert_eq!(commit_round(&store, &installed), None);
    let mut names = file_names(&dir.path().join("archive"));
    names.sort_by_key(|name| name.ends_with(".0"));
    assert_eq!(
        names,
        [
            format!("{}.{}", installed.hash, seconds(installed.slot)),
            format!("{}.0", state.hash)
        ]
    );
    assert_eq!(
        fs::metadata(&genesis_copy).unwrap().ino(),
        inode,
        "the genesis copy is not written again"
    );
    assert_eq!(
        fs::read(dir.path().join("balances.db")).unwrap(),
        installed.snapshot.pack()
    );
    drop(store);
    let reopened = load_intact(&open(dir.path()));
    assert_eq!(
        (reopened.slot, reopened.hash),
        (installed.slot, installed.hash)
    );
}

#[test]
fn fetched_blocks_that_follow_the_tip_are_appended_and_indexed() {
    let blocks = chain(3);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    load_intact(&store);

    assert_eq!(
        store.append_fetched(&blocks[..1]).unwrap(),
        Appended::Tip(tip_of(&blocks[0]))
    );
    assert_eq!(
        store.append_fetched(&blocks[1..]).unwrap(),
        Appended::Tip(tip_of(&blocks[2]))
    );

    for block in &blocks {
        let n = block.header.number;
        assert_eq!(
            Block::decode(&store.block(n).unwrap().unwrap()).unwrap(),
            *block
        );
        assert_eq!(store.block_hash(n).unwrap(), Some(block.header.hash()));
        for tx in &block.transactions {
            assert_eq!(store.tx_block(&tx.id()).unwrap(), Some(n));
        }
    }
    assert_eq!(store.tip().unwrap(), tip_of(&blocks[2]));
}

#[test]
fn a_fetched_block_already_held_is_skipped() {
    let blocks = chain(3);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_fetched(&blocks[..2]).unwrap();

    assert_eq!(
        store.append_fetched(&blocks).unwrap(),
        Appended::Tip(tip_of(&blocks[2]))
    );
    assert_eq!(
        store.append_fetched(&blocks[..2]).unwrap(),
        Appended::Tip(tip_of(&blocks[2]))
    );
    for block in &blocks {
        assert_eq!(
            store.block_hash(block.header.number).unwrap(),
            Some(block.header.hash())
        );
    }
}

#[test]
fn a_fetched_block_that_differs_drops_the_held_blocks_from_there_on_with_their_index() {
    let ours = chain(3);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_fetched(&ours).unwrap();

    // The majority's block 2 carries a different payment on our block 1.
    let mut theirs = ours[1].clone();
    let tx = Transaction::sign("store", &keypair(2), key(6), 3, FIRST * SLOT_MS);
    theirs.transactions = vec![tx];
    theirs.header.merkle_root = rota_peer::block::merkle_root(&[tx.id()]);
    theirs.header.balance_hash = Hash::of(b"their state");
    assert_eq!(theirs.header.previous, ours[0].header.hash());

    assert_eq!(
        store.append_fetched(std::slice::from_ref(&theirs)).unwrap(),
        Appended::Tip(tip_of(&theirs))
    );

    assert_eq!(store.block_hash(1).unwrap(), Some(ours[0].header.hash()));
    assert_eq!(store.block_hash(2).unwrap(), Some(theirs.header.hash()));
    assert_eq!(store.block(3).unwrap(), None);
    for dropped in ours[1..].iter().flat_map(|b| &b.transactions) {
        assert_eq!(store.tx_block(&dropped.id()).unwrap(), None);
    }
    for kept in &ours[0].transactions {
        assert_eq!(store.tx_block(&kept.id()).unwrap(), Some(1));
    }
    assert_eq!(store.tx_block(&tx.id()).unwrap(), Some(2));
}

#[test]
fn a_fetched_block_that_does_not_follow_the_tip_is_a_fork() {
    let ours = chain(2);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_fetched(&ours).unwrap();

    let mut stranger = chain(3).remove(2);
    stranger.header.previous = Hash::of(b"another chain's block 2");
    assert_eq!(stranger.header.number, 3);

    assert_eq!(
        store.append_fetched(&[stranger]).unwrap(),
        Appended::Fork { from: 2 }
    );
    assert_eq!(store.tip().unwrap(), tip_of(&ours[1]));
    assert_eq!(store.block(3).unwrap(), None);
}

#[test]
fn a_fetched_block_past_a_gap_appends_nothing_and_returns_the_tip() {
    let blocks = chain(4);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_fetched(&blocks[..1]).unwrap();

    assert_eq!(
        store.append_fetched(&blocks[2..]).unwrap(),
        Appended::Tip(tip_of(&blocks[0]))
    );
    assert_eq!(store.block(3).unwrap(), None);
    assert_eq!(store.block(4).unwrap(), None);
    for tx in blocks[2..].iter().flat_map(|b| &b.transactions) {
        assert_eq!(store.tx_block(&tx.id()).unwrap(), None);
    }
}

#[test]
fn a_fetched_block_numbered_zero_is_refused() {
    let mut block = chain(1).remove(0);
    block.header.number = 0;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    assert!(store.append_fetched(&[block]).is_err());
    assert_eq!(store.tip().unwrap(), Tip::default());
}

#[test]
fn write_atomic_leaves_no_tmp_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balances.db");

    write_atomic(&path, b"first").unwrap();
    write_atomic(&path, b"second").unwrap();

    assert_eq!(fs::read(&path).unwrap(), b"second");
    assert_eq!(file_names(dir.path()), vec!["balances.db".to_string()]);
}

/// One step of the crash script: a round committed as the ledger thread
/// commits it, or a database installed from another server.
fn crash_script() -> Vec<Commit> {
    let genesis = genesis();
    let first = round(&genesis, FIRST, &[(1, 3, 100)]);
    let quiet = round(&first.snapshot, FIRST + 1, &[]);
    let third = round(&quiet.snapshot, FIRST + 3, &[(3, 4, 40), (2, 3, 5)]);
    let mut installed = round(&third.snapshot, FIRST + 7, &[(4, 1, 1)]);
    installed.block = false;
    installed.installed = true;
    vec![first, quiet, third, installed]
}

/// Runs the crash script on `disk` until its first failed write, as a
/// process dies at its first lost write. Returns the slots of the commits
/// that returned, and the slot of the one that failed, if any.
fn run_until_crash(disk: &MemoryDisk) -> (Vec<Slot>, Option<Slot>) {
    let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
    if store.load(genesis()).is_err() {
        return (Vec::new(), Some(0));
    }
    let mut done = Vec::new();
    for commit in crash_script() {
        let block = commit.block.then(|| {
            let tip = store.tip().expect("reads never fail on a memory disk");
            build_block(tip, &commit, commit.slot * SLOT_MS)
        });
        let result = store.commit(
            &committed(&commit),
            block.as_slice(),
            commit.installed,
            None,
            &[],
            &[],
        );
        if result.is_err() {
            return (done, Some(commit.slot));
        }
        done.push(commit.slot);
    }
    (done, None)
}

#[test]
fn a_crash_between_any_two_writes_loses_nothing_committed() {
    crash_everywhere(|disk, at| disk.crash_after(at));
}

/// A torn temporary file (a record and a bit, or exactly one record, which
/// parses as a database of the wrong hash) is never taken for a state.
#[test]
fn a_file_torn_at_any_crash_point_loses_nothing_committed() {
    for keep in [40, 36] {
        crash_everywhere(|disk, at| disk.crash_after_torn(at, keep));
    }
}

#[test]
fn a_torn_write_leaves_the_first_bytes_in_a_tmp_file_and_the_old_file_whole() {
    let disk = MemoryDisk::new();
    disk.write_file("balances.db", b"old").unwrap();
    disk.crash_after_torn(0, 5);
    assert!(disk.write_file("balances.db", b"new bytes").is_err());
    assert!(disk.crashed());
    assert_eq!(disk.read_file("balances.db").unwrap().unwrap(), b"old");
    assert_eq!(
        disk.read_file("balances.db.tmp").unwrap().unwrap(),
        b"new b"
    );
    // Torn once: the writes after it fail and leave nothing.
    assert!(disk.write_file("other", b"x").is_err());
    assert_eq!(disk.read_file("other.tmp").unwrap(), None);
}

/// Runs the crash script once with `crash` armed at each durable step in
/// turn, restarts, and checks what the store loads.
fn crash_everywhere(crash: impl Fn(&MemoryDisk, u64)) {
    let complete = MemoryDisk::new();
    assert_eq!(run_until_crash(&complete).1, None);
    let steps = complete.writes();
    assert!(steps >= 8, "the script makes {steps} durable steps");
    let script = crash_script();
    let by_slot = |slot: Slot| script.iter().find(|c| c.slot == slot);

    for crash_at in 0..=steps {
        let disk = MemoryDisk::new();
        crash(&disk, crash_at);
        let (done, failed) = run_until_crash(&disk);
        disk.restart();

        let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
        let loaded = match store.load(genesis()).expect("load after a crash") {
            Loaded::Intact(committed) => committed,
            Loaded::Damaged { reason, .. } => {
                panic!("crash after {crash_at} writes left a damaged store: {reason}")
            }
        };
        // What the store says is committed is whole: the database matches.
        assert_eq!(loaded.snapshot.as_ref().clone().hash(), loaded.hash);
        // Every commit that returned is kept; the one cut short is kept
        // whole or not at all.
        let last_done = done.last().copied().unwrap_or(0);
        let allowed: Vec<Slot> = std::iter::once(last_done).chain(failed).collect();
        assert!(
            allowed.contains(&loaded.slot),
            "crash after {crash_at} writes: loaded slot {} is not one of {allowed:?}",
            loaded.slot
        );
        let expected = match by_slot(loaded.slot) {
            Some(commit) => commit.hash,
            None => genesis_hash(),
        };
        assert_eq!(loaded.hash, expected, "crash after {crash_at} writes");
        // Every block in the store is one the script committed, in order.
        let tip = store.tip().unwrap();
        for n in 1..=tip.height {
            let block = Block::decode(&store.block(n).unwrap().expect("no gap")).unwrap();
            assert!(by_slot(block.header.slot).is_some_and(|c| c.block));
        }
    }
}

// The consensus journal: what the round protocol keeps across a crash
// (see `rota::ledger::store::journal`), appended in transactions of their
// own and replaced at each commit point with the commit certificate.

/// The servers whose records the journal tests keep. Server i signs the
/// headers of the slots equal to i modulo their number.
const SERVERS: usize = 3;

fn server_keys() -> Vec<Keypair> {
    (0..SERVERS).map(|i| keypair(50 + i as u8)).collect()
}

/// The header of `commit`'s round, on the genesis, signed by the alpha of
/// its slot: its result is the round's balance hash.
fn header_of(commit: &Commit) -> Verified<SignedHeader> {
    let ids: Vec<Hash> = commit.transactions.iter().map(|tx| tx.id()).collect();
    let header = Header {
        slot: commit.slot,
        base: Base {
            digest: Hash::default(),
            slot: 0,
            balance: genesis_hash(),
            chain: Default::default(),
            sealed: 0,
        },
        payments: merkle_root(&ids),
        result: commit.hash,
        seal: None,
    };
    let alpha = &server_keys()[(commit.slot % SERVERS as u64) as usize];
    Verified::sign_header(alpha, "store", header, None)
}

fn vote(who: usize, kind: Kind, header: &SignedHeader) -> Verified<Vote> {
    let keys = server_keys();
    Verified::sign_vote(
        &keys[who],
        "store",
        ServerId::from_index(who),
        kind,
        header.slot(),
        header.digest(),
    )
}

/// `header` with a certificate of `kind` signed by every server.
fn certified(kind: Kind, header: &Verified<SignedHeader>) -> Certified {
    let votes: Vec<Verified<Vote>> = (0..SERVERS).map(|i| vote(i, kind, header)).collect();
    let certificate = Verified::assemble(&votes, SERVERS / 2 + 1).expect("every server voted");
    Verified::<Certified>::join(header.clone(), certificate)
        .expect("the votes are about the header")
        .into_inner()
}

/// What a server journals about `commit`'s round before it commits: its
/// marks, the round's payments, its prevote, the lock.
fn records_of(commit: &Commit) -> Vec<Record<Payments>> {
    let header = header_of(commit);
    vec![
        Record::Marks {
            voted: Some(commit.slot),
            proposed: None,
        },
        Record::Round {
            header: header.clone().into_inner(),
            payments: commit.transactions.iter().copied().collect(),
        },
        Record::Prevote(Prevote {
            vote: vote(1, Kind::Prevote, &header).into_inner(),
            header: header.clone().into_inner(),
        }),
        Record::Lock(certified(Kind::Prevote, &header)),
    ]
}

/// The commit certificate of `commit`'s round.
fn commit_certificate(commit: &Commit) -> Certified {
    certified(Kind::Precommit, &header_of(commit))
}

/// Commits `commit` as the ledger thread will: with its commit
/// certificate, replacing the journal with `journal`.
fn commit_certified(
    store: &Store,
    commit: &Commit,
    journal: &[Record<Payments>],
) -> rota::Result<()> {
    let block = commit.block.then(|| {
        let tip = store.tip().expect("tip");
        build_block(tip, commit, commit.slot * SLOT_MS)
    });
    store.commit(
        &committed(commit),
        block.as_slice(),
        commit.installed,
        Some(&commit_certificate(commit)),
        journal,
        &[],
    )
}

#[test]
fn journal_appends_survive_a_reopen_in_order() {
    let script = crash_script();
    let (first, third) = (&records_of(&script[0]), &records_of(&script[2]));
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        load_intact(&store);
        assert!(store.journal(SERVERS).unwrap().is_empty());
        store.journal_append(&first[..1]).unwrap();
        store.journal_append(&first[1..]).unwrap();
        store.journal_append(&[]).unwrap();
        store.journal_append(third).unwrap();
    }
    let store = open(dir.path());
    let expected: Vec<Record<Payments>> = first.iter().chain(third).cloned().collect();
    assert_eq!(store.journal(SERVERS).unwrap(), expected);
    // No commit yet: the genesis has no certificate.
    assert_eq!(store.certified(SERVERS).unwrap(), None);
}

#[test]
fn a_commit_replaces_the_journal_and_keeps_its_certificate_across_a_reopen() {
    let script = crash_script();
    let (first, third) = (&script[0], &script[2]);
    let dir = tempfile::tempdir().unwrap();
    let after_commit = vec![Record::Marks {
        voted: Some(first.slot),
        proposed: Some(first.slot - 1),
    }];
    {
        let store = open(dir.path());
        load_intact(&store);
        store.journal_append(&records_of(first)).unwrap();
        commit_certified(&store, first, &after_commit).unwrap();
        // Appends go on after the rewritten journal.
        store.journal_append(&records_of(third)[1..2]).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(load_intact(&store).hash, first.hash);
    assert_eq!(
        store.certified(SERVERS).unwrap(),
        Some(commit_certificate(first))
    );
    let mut expected = after_commit.clone();
    expected.extend_from_slice(&records_of(third)[1..2]);
    assert_eq!(store.journal(SERVERS).unwrap(), expected);

    // A commit without a certificate leaves none standing for the old state.
    commit_round(&store, third);
    assert_eq!(store.certified(SERVERS).unwrap(), None);
    assert!(store.journal(SERVERS).unwrap().is_empty());
}

#[test]
fn a_certificate_that_does_not_vouch_for_the_committed_state_is_refused_before_any_write() {
    let script = crash_script();
    let (first, third) = (&script[0], &script[2]);
    let disk = MemoryDisk::new();
    let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
    load_intact(&store);
    store.journal_append(&records_of(first)).unwrap();
    let header = header_of(first);
    let wrong = [
        // Prevotes lock a round; they do not commit it.
        certified(Kind::Prevote, &header),
        // Another round's commit certificate.
        commit_certificate(third),
    ];
    for certificate in &wrong {
        let writes = disk.writes();
        let err = store
            .commit(&committed(first), &[], false, Some(certificate), &[], &[])
            .expect_err("a certificate for something else");
        assert!(err.to_string().contains("does not vouch"), "{err}");
        assert_eq!(disk.writes(), writes, "nothing was written");
    }
    assert_eq!(store.meta().unwrap().unwrap().hash, genesis_hash());
    assert_eq!(store.journal(SERVERS).unwrap(), records_of(first));
}

#[test]
fn a_damaged_journal_entry_fails_the_whole_read_and_names_the_entry() {
    let disk = MemoryDisk::new();
    let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
    store
        .journal_append(&records_of(&crash_script()[0]))
        .unwrap();
    disk.transact(&[TableWrite::PutJournal(2, vec![4, 0, 0])])
        .unwrap();
    let err = store.journal(SERVERS).expect_err("entry 2 is damaged");
    assert!(err.to_string().contains("journal entry 2"), "{err}");
}

#[test]
fn an_empty_journal_append_takes_no_durable_step() {
    let disk = MemoryDisk::new();
    let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
    store.journal_append(&[]).unwrap();
    assert_eq!(disk.writes(), 0);
    store
        .journal_append(&records_of(&crash_script()[0]))
        .unwrap();
    assert_eq!(disk.writes(), 1, "an append is one transaction");
}

/// One step of the journal's crash script.
enum JournalStep {
    /// Records made durable before a message leaves.
    Append(Vec<Record<Payments>>),
    /// A round committed with its certificate, and the journal after it.
    Commit(Commit, Vec<Record<Payments>>),
}

/// Appends about two rounds, each committed in turn, as a server journals
/// them: some records, a commit that rewrites the journal, more records.
fn journal_script() -> Vec<JournalStep> {
    let script = crash_script();
    let (first, third) = (script[0].clone(), script[2].clone());
    let (a, b) = (records_of(&first), records_of(&third));
    vec![
        JournalStep::Append(a[..2].to_vec()),
        JournalStep::Append(a[2..].to_vec()),
        JournalStep::Commit(first, a[..1].to_vec()),
        JournalStep::Append(b.clone()),
        JournalStep::Commit(third, b[3..].to_vec()),
        JournalStep::Append(b[..1].to_vec()),
    ]
}

/// The journal after the first `steps` steps of the script.
fn journal_after(steps: usize) -> Vec<Record<Payments>> {
    let mut journal = Vec::new();
    for step in journal_script().into_iter().take(steps) {
        match step {
            JournalStep::Append(records) => journal.extend(records),
            JournalStep::Commit(_, records) => journal = records,
        }
    }
    journal
}

/// The certificate standing after the first `steps` steps of the script.
fn certificate_after(steps: usize) -> Option<Certified> {
    journal_script()
        .iter()
        .take(steps)
        .filter_map(|step| match step {
            JournalStep::Commit(commit, _) => Some(commit_certificate(commit)),
            JournalStep::Append(_) => None,
        })
        .next_back()
}

/// Runs the journal script on `disk` until its first failed write. Returns
/// how many steps returned, and whether one failed.
fn run_journal_until_crash(disk: &MemoryDisk) -> (usize, bool) {
    let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
    if store.load(genesis()).is_err() {
        return (0, true);
    }
    for (done, step) in journal_script().iter().enumerate() {
        let result = match step {
            JournalStep::Append(records) => store.journal_append(records),
            JournalStep::Commit(commit, journal) => commit_certified(&store, commit, journal),
        };
        if result.is_err() {
            return (done, true);
        }
    }
    (journal_script().len(), false)
}

/// A crash at every durable step of the script: every append that
/// returned is there whole, the one cut short is not there at all, and the
/// journal and the certificate are always those of the committed state the
/// store loads (a commit replaces them at its commit point, or not at all).
#[test]
fn a_crash_between_any_two_writes_keeps_the_journal_whole_and_in_step_with_the_commit() {
    let complete = MemoryDisk::new();
    assert_eq!(run_journal_until_crash(&complete), (6, false));
    let steps = complete.writes();
    let script = journal_script();

    for crash_at in 0..=steps {
        let disk = MemoryDisk::new();
        disk.crash_after(crash_at);
        let (done, failed) = run_journal_until_crash(&disk);
        disk.restart();

        let store = Store::on_disk(Box::new(disk.clone()), KEEP, SLOT_MS);
        let loaded = load_intact(&store);
        // A commit cut short after its commit point counts as made.
        let made = match script.get(done) {
            Some(JournalStep::Commit(commit, _)) if failed && loaded.slot == commit.slot => {
                done + 1
            }
            _ => done,
        };
        assert_eq!(
            store.journal(SERVERS).unwrap(),
            journal_after(made),
            "crash after {crash_at} writes, {done} steps done"
        );
        assert_eq!(
            store.certified(SERVERS).unwrap(),
            certificate_after(made),
            "crash after {crash_at} writes"
        );
        let slot = certificate_after(made).map_or(0, |c| c.header.slot());
        assert_eq!(loaded.slot, slot, "crash after {crash_at} writes");
    }
}

#[test]
fn a_data_directory_of_another_format_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        load_intact(&store);
        // A new store is stamped with today's format.
        assert_eq!(
            store.recall("format").unwrap(),
            Some(rota::ledger::store::FORMAT.to_be_bytes().to_vec())
        );
        store.remember("format", &7u32.to_be_bytes()).unwrap();
    }
    let store = open(dir.path());
    let err = store.load(genesis()).unwrap_err().to_string();
    assert!(
        err.contains("written by a newer rota (data format 7")
            && err.contains("start this server on an empty data directory"),
        "{err}"
    );
    store.remember("format", &0u32.to_be_bytes()).unwrap();
    let err = store.load(genesis()).unwrap_err().to_string();
    assert!(
        err.contains("written by an older rota (data format 0"),
        "{err}"
    );
}

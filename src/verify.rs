//! `rota verify`: an audit of a server's data directory against its conf.
//!
//! It replays the blocks from the genesis and checks each one as a server
//! checks a block it fetches: its proof (the round's signed header and the
//! commit certificate, against the conf's server list), every payment's
//! signature, its merkle root, its place in the chain (number, previous
//! block's id, slot), and the balance hash its payments leave. Then it
//! checks the committed state the block store records (its slot, balance
//! hash and the commit certificate that vouches for them) and the database
//! file against what the blocks rebuilt.
//!
//! It changes no data: the store is opened as a server opens it (so a data
//! directory in use by a running server is refused), and nothing is
//! repaired. A database file left behind the record by a kill is judged as
//! a start would use it: through the archive copy, or the blocks after its
//! own state.

use std::collections::HashSet;
use std::path::Path;

use rota_peer::balances::Balances;
use rota_peer::block::{Position, Shape};
use rota_peer::wire::ServerList;
use rota_peer::wire::{CertifiedStatus, Status};
use rota_peer::{BlockNumber, Hash, Slot, TxId};
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::genesis::Genesis;
use crate::ledger::store::{MAX_REPLAY, Store};

/// The most problems listed; the count says how many there were.
const MAX_PROBLEMS: usize = 20;

/// What the audit found. `problems` is empty exactly when every check
/// passed.
#[derive(Debug, Serialize)]
pub struct Audit {
    pub data_dir: String,
    pub chain: String,
    pub servers: usize,
    /// Blocks replayed and checked, from 1.
    pub blocks: BlockNumber,
    /// Payments in them.
    pub payments: u64,
    /// Of those blocks, the ones the store keeps a seal for; each seal must
    /// prove its block (docs/PROTOCOL.md §9.6).
    pub sealed: BlockNumber,
    /// The last block checked: number, id, slot, balance hash.
    pub last_block: Option<BlockSummary>,
    /// The committed state the block store records.
    pub committed: Committed,
    /// The database the state was compared with.
    pub database: Option<Database>,
    /// Whether the blocks lead to the committed state. They may stop short
    /// of it when the state was installed from another server and its
    /// blocks are not fetched yet: the state is then vouched for by its
    /// commit certificate alone.
    pub complete: bool,
    pub problems: Vec<String>,
    /// Problems found, listed or not.
    pub problem_count: usize,
}

#[derive(Debug, Serialize)]
pub struct BlockSummary {
    pub number: BlockNumber,
    pub id: Hash,
    pub slot: Slot,
    pub balance_hash: Hash,
}

#[derive(Debug, Serialize)]
pub struct Committed {
    pub slot: Slot,
    pub balance_hash: Hash,
    /// Whether a commit certificate that checks vouches for it (slot 0,
    /// the genesis, needs none).
    pub certified: bool,
}

#[derive(Debug, Serialize)]
pub struct Database {
    /// `balances.db`, or the archive copy a restart would restore.
    pub source: String,
    pub balance_hash: Hash,
    pub accounts: usize,
    pub supply: u64,
}

impl Audit {
    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }

    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }
}

/// Audits the data directory `data_dir` (the conf's by default) of a
/// server of `config`'s chain.
pub fn audit(config: &Config, data_dir: Option<&Path>) -> Result<Audit> {
    let dir = data_dir.unwrap_or(&config.data_dir);
    if !dir.join("blocks.redb").is_file() {
        return Err(Error::Config(format!(
            "{} holds no block store (blocks.redb): not a server's data directory, or one \
             that never started",
            dir.display()
        )));
    }
    let servers = config.server_list();
    let mut genesis = Genesis::load(&config.genesis_file, &config.chain)?.balances()?;
    let (genesis_hash, genesis_supply) = (genesis.hash(), genesis.supply());
    let store = Store::open(dir, config.archive.keep, config.schedule().slot_ms)?;
    store.check_format(false)?;
    let meta = store.meta()?.ok_or_else(|| {
        Error::Store(format!(
            "{}: the block store records no committed state",
            dir.display()
        ))
    })?;
    let mut audit = Audit {
        data_dir: dir.display().to_string(),
        chain: config.chain.clone(),
        servers: servers.len(),
        blocks: 0,
        sealed: 0,
        payments: 0,
        last_block: None,
        committed: Committed {
            slot: meta.slot,
            balance_hash: meta.hash,
            certified: false,
        },
        database: None,
        complete: false,
        problems: Vec::new(),
        problem_count: 0,
    };
    let mut trail = vec![genesis_hash];
    let conf = (config.chain.as_str(), &servers, config.schedule().shape());
    let replayed = replay(&store, conf, genesis, &mut trail, &mut audit)?;
    let vouched = check_committed(&store, conf, &mut audit)?;
    if meta.slot == 0 && meta.hash != genesis_hash {
        audit.problem(format!(
            "the committed state of slot 0 is {}, not the genesis ({})",
            meta.hash.short(),
            genesis_hash.short()
        ));
    }
    let reached = audit.last_block.as_ref().map(|b| (b.slot, b.balance_hash));
    audit.complete = match (vouched, &audit.last_block) {
        // The certificate names the chain after the committed round.
        (Some(after), Some(last)) => after.height == last.number && after.block == last.id,
        (Some(after), None) => after.height == 0,
        (None, _) => match reached {
            Some((slot, hash)) => hash == meta.hash && slot <= meta.slot,
            None => replayed.1 == meta.hash,
        },
    };
    if let Some((slot, _)) = reached
        && slot > meta.slot
    {
        audit.problem(format!(
            "the last block is of slot {slot}, after the committed slot {}",
            meta.slot
        ));
    }
    check_database(&store, &meta.hash, replayed, &trail, &mut audit);
    if let Some(d) = &audit.database
        && d.supply != genesis_supply
    {
        let supply = d.supply;
        audit.problem(format!(
            "the database's balances sum to {supply}, the genesis supply is {genesis_supply}"
        ));
    }
    Ok(audit)
}

/// Replays every block from the genesis, checking each; stops at the first
/// that does not check (the ones after it cannot be replayed on a state
/// that is wrong). Returns the state the blocks leave and its hash.
/// `trail` gets the balance hash each block leaves, after the genesis's.
fn replay(
    store: &Store,
    (chain, servers, shape): (&str, &ServerList, Shape),
    mut balances: Balances,
    trail: &mut Vec<Hash>,
    audit: &mut Audit,
) -> Result<(Balances, Hash)> {
    let tip = store.tip()?;
    let mut previous = Hash::default();
    let mut last_slot: Slot = 0;
    let mut seen: HashSet<TxId> = HashSet::new();
    for number in 1..=tip.height {
        let Some(bytes) = store.block(number)? else {
            audit.problem(format!(
                "block {number} is missing, below the last block {}",
                tip.height
            ));
            break;
        };
        let block = match rota_connector::check_block(chain, servers, shape, &bytes) {
            Ok(block) => block,
            Err(e) => {
                audit.problem(format!("block {number} does not check: {e}"));
                break;
            }
        };
        let header = &block.header;
        let mut wrong = Vec::new();
        if let Some(seal) = store.seal(number)? {
            audit.sealed += 1;
            if !seal.proves(header) {
                wrong.push(format!(
                    "its seal (nonce {}, time {}) does not prove it at difficulty {}",
                    seal.nonce, seal.time, header.difficulty
                ));
            }
        }
        if header.number != number {
            wrong.push(format!("it is numbered {}", header.number));
        }
        if header.previous != previous {
            wrong.push(format!(
                "it names {} as the previous block, not {}",
                header.previous.short(),
                previous.short()
            ));
        }
        if header.slot <= last_slot {
            wrong.push(format!(
                "its slot {} is not after the previous block's {last_slot}",
                header.slot
            ));
        }
        for tx in &block.transactions {
            let id = tx.id();
            if !seen.insert(id) {
                wrong.push(format!("payment {} is in an earlier block too", id.short()));
            } else if store.tx_block(&id)? != Some(number) {
                wrong.push(format!(
                    "the payment index does not place payment {} here",
                    id.short()
                ));
            }
            if let Err(e) = balances.pay(&tx.payer(), &tx.payee(), tx.amount()) {
                wrong.push(format!("payment {} does not apply: {e}", id.short()));
            }
        }
        let hash = balances.hash();
        if hash != header.balance_hash {
            wrong.push(format!(
                "its payments leave {}, its header says {}",
                hash.short(),
                header.balance_hash.short()
            ));
        }
        if !wrong.is_empty() {
            audit.problem(format!("block {number}: {}", wrong.join("; ")));
            break;
        }
        audit.blocks = number;
        trail.push(hash);
        audit.payments += block.transactions.len() as u64;
        previous = header.hash();
        last_slot = header.slot;
        audit.last_block = Some(BlockSummary {
            number,
            id: previous,
            slot: header.slot,
            balance_hash: hash,
        });
    }
    let hash = balances.hash();
    Ok((balances, hash))
}

/// The committed state must be vouched for by the commit certificate kept
/// with it, checked against the conf, and so must the blocks: no more than
/// the certificate's round leaves, and at that height its block id. The
/// genesis (slot 0) needs none. Returns where the certificate says the
/// chain of blocks stands.
fn check_committed(
    store: &Store,
    (chain, servers, shape): (&str, &ServerList, Shape),
    audit: &mut Audit,
) -> Result<Option<Position>> {
    let certified = match store.certified(servers.len()) {
        Ok(certified) => certified,
        Err(e) => {
            audit.problem(format!("the commit certificate is unreadable: {e}"));
            return Ok(None);
        }
    };
    let after = certified.as_ref().map(|c| c.header.header.after(shape));
    let committed = &audit.committed;
    // The blocks up to where the certificate says the chain stands; a
    // block held past it, or another one at its height, is a problem.
    let tip = store.tip()?;
    let status = CertifiedStatus {
        status: Status {
            slot: committed.slot,
            balance_hash: committed.balance_hash,
            height: tip.height,
            block_hash: tip.hash,
        },
        certified,
    };
    match status.verify(chain, servers, shape) {
        Ok(_) => audit.committed.certified = committed.slot > 0,
        Err(e) => {
            audit.problem(format!(
                "the committed state (slot {}, {}) and the blocks are not vouched for: {e}",
                committed.slot,
                committed.balance_hash.short()
            ));
            // A certificate that does not check says nothing.
            return Ok(None);
        }
    }
    Ok(after)
}

/// The database file must hold the committed state, or be one a start
/// rebuilds it from, as `Store::load` does: the archive copy of the
/// committed state, or the blocks replayed after the file's own state (a
/// kill left it behind the record, at most 1,024 blocks). When the blocks
/// lead to the committed state, the database must be exactly what they
/// rebuilt.
fn check_database(
    store: &Store,
    committed: &Hash,
    (replayed, replayed_hash): (Balances, Hash),
    trail: &[Hash],
    audit: &mut Audit,
) {
    let file = store.database_file();
    let (mut balances, source) = match file {
        Ok((balances, hash)) if hash == *committed => (balances, "balances.db".to_string()),
        file => match store.archived(committed) {
            Some(balances) => (
                balances,
                "the archive (balances.db is behind the record)".to_string(),
            ),
            None => {
                // The blocks after the file's state, replayed by a start
                // (`Store::load`: it looks for that state among the last
                // MAX_REPLAY blocks, or at the genesis when there are no
                // more blocks than that).
                let behind = match &file {
                    Ok((_, hash)) => trail.iter().rposition(|h| h == hash).and_then(|at| {
                        let behind = (trail.len() - 1 - at) as u64;
                        let reached = behind < MAX_REPLAY || (at == 0 && behind <= MAX_REPLAY);
                        reached.then_some(behind)
                    }),
                    Err(_) => None,
                };
                match behind {
                    // No file and no archive copy, and no round changed
                    // the genesis: a start restores it.
                    None if *committed == trail[0] => (
                        replayed.clone(),
                        "the genesis (a start restores it)".to_string(),
                    ),
                    Some(behind) if audit.complete => (
                        replayed.clone(),
                        format!(
                            "the blocks (balances.db is {behind} block(s) behind the record; a \
                             start replays them)"
                        ),
                    ),
                    _ => {
                        let file = match file {
                            Ok((_, hash)) => format!("balances.db holds {}", hash.short()),
                            Err(e) => format!("balances.db is unreadable ({e})"),
                        };
                        audit.problem(format!(
                            "{file}, the committed state is {}, and neither the archive nor the \
                             blocks after it rebuild that",
                            committed.short()
                        ));
                        return;
                    }
                }
            }
        },
    };
    let hash = balances.hash();
    audit.database = Some(Database {
        source,
        balance_hash: hash,
        accounts: balances.len(),
        supply: balances.supply(),
    });
    if audit.complete && (hash != replayed_hash || balances.supply() != replayed.supply()) {
        audit.problem(format!(
            "the database ({}) is not what the blocks rebuild ({})",
            hash.short(),
            replayed_hash.short()
        ));
    }
}

/// The audit for people.
pub fn print(audit: &Audit) {
    println!(
        "data directory {} (chain {:?}, {} servers)",
        audit.data_dir, audit.chain, audit.servers
    );
    match &audit.last_block {
        Some(b) => println!(
            "blocks: 1 to {} checked, {} payments; last block {} of slot {}, id {}, leaves {}",
            audit.blocks,
            audit.payments,
            b.number,
            b.slot,
            b.id.short(),
            b.balance_hash.short()
        ),
        None => println!("blocks: none"),
    }
    if audit.sealed > 0 {
        println!("seals: {} of the blocks hold one", audit.sealed);
    }
    let c = &audit.committed;
    println!(
        "committed: slot {}, balance hash {}{}",
        c.slot,
        c.balance_hash.short(),
        if c.certified {
            ", vouched for by its commit certificate"
        } else if c.slot == 0 {
            " (the genesis)"
        } else {
            ""
        }
    );
    if let Some(d) = &audit.database {
        println!(
            "database: {} accounts, supply {}, hash {}, from {}",
            d.accounts,
            d.supply,
            d.balance_hash.short(),
            d.source
        );
    }
    if !audit.complete && audit.ok() {
        println!(
            "note: the blocks stop short of the committed state, which was installed from \
             another server; its certificate vouches for it, and the server fetches the \
             missing blocks while it runs"
        );
    }
    if audit.ok() {
        println!("ok: every block, certificate, signature and balance hash checks");
    } else {
        for problem in &audit.problems {
            println!("problem: {problem}");
        }
        if audit.problem_count > audit.problems.len() {
            println!(
                "... and {} more",
                audit.problem_count - audit.problems.len()
            );
        }
    }
}

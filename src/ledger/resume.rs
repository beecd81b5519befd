//! How a server resumes: the core rebuilt from its store at every start
//! (the node's) and every restart (the simulator's).

use rota_peer::balances::Balances;

use super::consensus;
use super::core::Core;
use super::store::{Loaded, Store};

/// The core a server resumes with: the committed state loaded from its
/// store (from `genesis` on a new one), the commit certificate that vouches
/// for it, and the consensus journal replayed into its machine, as the node
/// does at every start and the simulator at every restart. A damaged store
/// starts the server out of sync, to be replaced from the others, except on
/// a one-server chain, which has no one to fetch from and refuses to start.
/// A certificate or journal that does not check refuses to start: going on
/// without them could make this server sign a second vote for a slot.
pub fn resume(store: &Store, genesis: Balances, config: consensus::Config) -> crate::Result<Core> {
    let servers = config.servers.clone();
    let (committed, damaged) = match store.load(genesis)? {
        Loaded::Intact(committed) => (committed, false),
        Loaded::Damaged { reason, .. } if servers.len() == 1 => {
            return Err(crate::Error::Store(format!(
                "{reason}; a single server has no one to fetch from: restore balances.db from \
                 the archive by hand (see docs/OPERATIONS.md)"
            )));
        }
        Loaded::Damaged { mut best, reason } => {
            log::error!(
                "{reason}; starting out of sync: the other servers' database will replace it"
            );
            // Its state vouches for nothing: the database the others hold
            // replaces it under their commit certificate, whatever its slot.
            best.slot = 0;
            (best, true)
        }
    };
    let refuse = |what: String| crate::Error::Store(format!("{what}; see docs/OPERATIONS.md"));
    let certified = match store.certified(servers.len())? {
        Some(_) if damaged => None,
        None => None,
        Some(certified) => {
            let certified = certified.verify(&config.chain, &servers).map_err(|e| {
                refuse(format!("the stored commit certificate does not check: {e}"))
            })?;
            if certified.header.header.result != committed.hash {
                return Err(refuse(format!(
                    "the stored commit certificate vouches for {}, the database is {}",
                    certified.header.header.result.short(),
                    committed.hash.short()
                )));
            }
            Some(certified)
        }
    };
    let records = store.journal(servers.len())?;
    log::info!(
        "resuming at round {} with balance hash {} ({} accounts, {} consensus records)",
        committed.slot,
        committed.hash.short(),
        committed.snapshot.len(),
        records.len()
    );
    Core::new(config, committed, certified, records)
        .map_err(|e| refuse(format!("the consensus journal does not check: {e}")))
}

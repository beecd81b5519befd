//! The fetch-snapshot state: bring this server to the state a majority holds.
//!
//! It owns the [`Target`] (that state, and the server to fetch it from) and
//! the [`Fetching`] step under way, both carried in `Phase::FetchSnapshot`.
//! The steps: the packed database (skipped when this server holds the
//! balance hash at the target's slot already), then the ledger installing
//! it, then the missing blocks,
//! [`BLOCK_WINDOW`] at a time. The first [`EARLY_WINDOW`] blocks are asked
//! for with the database: they are fetched and checked while it comes and
//! the ledger installs it (the check of a block's payments is most of a
//! catch-up's time), and held until the ledger has installed it, since a
//! server's blocks never go past its committed state. Every request has a deadline; a fetch that
//! times out, or a source that has moved on, sends the machine back to
//! hash-compare, and so does reaching the target. A source that timed out
//! is distrusted for a while (`Machine::distrust`): hash-compare then picks
//! another holder of the majority's state.

use super::{Machine, Output, Phase, Request, State};
use rota_peer::block::Block;
use rota_peer::wire::Status;
use rota_peer::{BlockNumber, Hash, Millis, ServerId, Slot};

/// What a majority holds, and who to fetch it from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) status: Status,
    pub(super) source: ServerId,
}

/// How far a fetch has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fetching {
    /// Waiting for the database; `through` is the last block asked for
    /// with it (this server's height when none was).
    Database { through: BlockNumber },
    /// Waiting for the ledger to install it; `through` as above.
    Installing { through: BlockNumber },
    /// Fetching blocks; `from` to `through` is the window requested.
    Blocks {
        from: BlockNumber,
        through: BlockNumber,
    },
}

/// Blocks requested at once.
const BLOCK_WINDOW: u64 = 16;

/// Blocks requested with the database, and held until it is installed.
/// Few: held blocks wait in memory (a block holds at most 200,000
/// payments, 28 MB).
const EARLY_WINDOW: u64 = 4;

impl Machine {
    /// Enters fetch-snapshot towards `target`: ask for the database, or,
    /// when this server already holds its balance hash at its slot, go on
    /// to blocks. The same hash at a later slot is fetched all the same:
    /// its commit certificate moves this server's committed round there.
    pub(super) fn enter_fetch(&mut self, target: Target, now: Millis, out: &mut Vec<Output>) {
        self.report(State::FetchSnapshot, out);
        self.early.clear();
        let height = self.own.height;
        if self.holds(&target) {
            let fetching = Fetching::Installing { through: height };
            self.phase = Phase::FetchSnapshot { target, fetching };
            self.continue_fetch(target, fetching, now, out);
        } else {
            out.push(Output::Send {
                to: target.source,
                request: Request::Database,
            });
            let through = (height + EARLY_WINDOW).min(target.status.height.max(height));
            for number in height + 1..=through {
                out.push(Output::Send {
                    to: target.source,
                    request: Request::Block(number),
                });
            }
            self.phase = Phase::FetchSnapshot {
                target,
                fetching: Fetching::Database { through },
            };
            self.deadline = now + self.settings.request_timeout();
        }
    }

    /// Moves the fetch on after the ledger reported its state.
    pub(super) fn continue_fetch(
        &mut self,
        target: Target,
        fetching: Fetching,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let through = match fetching {
            // The ledger's state says nothing until the database arrives.
            Fetching::Database { .. } => return,
            Fetching::Installing { through } => {
                if !self.holds(&target) {
                    return;
                }
                // Installed: the blocks that came meanwhile go to the
                // ledger, and the rest of their window is waited for.
                let mut early = std::mem::take(&mut self.early);
                early.sort_by_key(|b| b.header.number);
                if !early.is_empty() {
                    out.push(Output::Blocks(early));
                }
                let (from, through) = (self.own.height + 1, through.max(self.own.height));
                self.phase = Phase::FetchSnapshot {
                    target,
                    fetching: Fetching::Blocks { from, through },
                };
                self.deadline = now + self.settings.request_timeout();
                through
            }
            Fetching::Blocks { through, .. } => through,
        };
        if !self.holds(&target) {
            return;
        }
        if self.matches(&target) {
            self.enter_hash_compare(now, out);
            return;
        }
        let height = target.status.height;
        if self.own.height >= height {
            // As many blocks, but another last one: ask the source for its
            // block at that height, once. The certified one replaces this
            // server's (`Store::append_fetched`); a source that sends none
            // times out and is distrusted, as one that lied about it.
            let asked = matches!(
                self.phase,
                Phase::FetchSnapshot {
                    fetching: Fetching::Blocks { from, .. },
                    ..
                } if from == height
            );
            if !asked {
                self.request_blocks(target, height, now, out);
            }
            return;
        }
        // Ask for the next window once the last block asked for is in.
        if self.own.height >= through {
            self.request_blocks(target, self.own.height + 1, now, out);
        }
    }

    /// Whether block `number`, from a `B` answer, is one this fetch asked
    /// for and still waits for: only those are worth checking (a server
    /// that sends blocks nobody asked for must not cost this one their
    /// signature checks).
    pub fn wants_block(&self, number: BlockNumber) -> bool {
        match self.phase {
            Phase::FetchSnapshot {
                fetching: Fetching::Blocks { from, through },
                ..
            } => (from..=through).contains(&number),
            Phase::FetchSnapshot {
                fetching: Fetching::Database { through } | Fetching::Installing { through },
                ..
            } => number > self.own.height && number <= through,
            Phase::Connecting { .. } | Phase::HashCompare { .. } | Phase::Sampling { .. } => false,
        }
    }

    /// Whether this server holds the target's database: its hash, at its
    /// committed slot or later.
    fn holds(&self, target: &Target) -> bool {
        self.own.balance_hash == target.status.balance_hash && self.own.slot >= target.status.slot
    }

    /// Asks the target's source for one window of blocks from `from` on.
    pub(super) fn request_blocks(
        &mut self,
        target: Target,
        from: BlockNumber,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let through = (from + BLOCK_WINDOW - 1).min(target.status.height.max(from));
        for number in from..=through {
            out.push(Output::Send {
                to: target.source,
                request: Request::Block(number),
            });
        }
        self.phase = Phase::FetchSnapshot {
            target,
            fetching: Fetching::Blocks { from, through },
        };
        self.deadline = now + self.settings.request_timeout();
    }

    /// A database from `from`: handed to the ledger if it is the one asked
    /// for, else the source moved on and the majority must be found again.
    /// A source that moves on twice in a row is distrusted: an honest one
    /// does so only when a round commits between its status and its answer,
    /// and a liar must not send this server back to hash-compare, and to
    /// itself, as fast as it answers. A database from another server (a
    /// late answer to an earlier fetch) changes nothing.
    pub(super) fn on_database(
        &mut self,
        from: ServerId,
        hash: Hash,
        slot: Slot,
        (certified, packed): (Vec<u8>, Vec<u8>),
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        match self.phase {
            Phase::FetchSnapshot {
                target,
                fetching: Fetching::Database { through },
            } if target.source == from => {
                let peer = &mut self.peers[from.index()];
                if target.status.balance_hash == hash {
                    peer.distrust_ms = 0;
                    peer.moved_on = false;
                    log::info!(
                        "connector: fetched the database {} from server {from}",
                        hash.short()
                    );
                    self.phase = Phase::FetchSnapshot {
                        target,
                        fetching: Fetching::Installing { through },
                    };
                    self.deadline = now + self.settings.request_timeout();
                    out.push(Output::Install {
                        slot,
                        hash,
                        certified,
                        packed,
                    });
                } else {
                    let again = std::mem::replace(&mut peer.moved_on, true);
                    log::info!(
                        "connector: server {from} moved on to {}; comparing again",
                        hash.short()
                    );
                    if again {
                        self.distrust(from, now);
                    }
                    self.enter_hash_compare(now, out);
                }
            }
            // Not waiting for a database from this server: a late or
            // unasked answer.
            Phase::FetchSnapshot {
                fetching:
                    Fetching::Database { .. } | Fetching::Installing { .. } | Fetching::Blocks { .. },
                ..
            }
            | Phase::Connecting { .. }
            | Phase::HashCompare { .. }
            | Phase::Sampling { .. } => {}
        }
    }

    /// A block from `from`: handed to the ledger while blocks are being
    /// fetched, if it is one of the window asked for, or held for it while
    /// the database is fetched or installed, if it is one of the early
    /// window; one from the source ends its distrust's doubling.
    pub(super) fn on_block(
        &mut self,
        from: ServerId,
        block: Block,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        match self.phase {
            Phase::FetchSnapshot {
                target,
                fetching:
                    Fetching::Blocks {
                        from: first,
                        through,
                    },
            } => {
                // Only the window asked for: a server that sends blocks
                // nobody asked for must not fill the ledger's queue.
                let number = block.header.number;
                if number < first || number > through {
                    return;
                }
                if from == target.source {
                    self.peers[from.index()].distrust_ms = 0;
                }
                self.deadline = now + self.settings.request_timeout();
                out.push(Output::Blocks(vec![block]));
            }
            Phase::FetchSnapshot {
                target,
                fetching: Fetching::Database { through } | Fetching::Installing { through },
            } => {
                let number = block.header.number;
                let held = self.early.iter().any(|b| b.header.number == number);
                if number <= self.own.height || number > through || held {
                    return;
                }
                if from == target.source {
                    self.peers[from.index()].distrust_ms = 0;
                }
                self.early.push(block);
            }
            // Not waiting for blocks: a late or unasked answer.
            Phase::Connecting { .. } | Phase::HashCompare { .. } | Phase::Sampling { .. } => {}
        }
    }
}

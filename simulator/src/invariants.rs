//! What must hold after every step, and the checks that say it does.
//!
//! The [`Checker`] watches honest servers only: a dishonest server's own
//! state may be anything. It keeps the first version of every block and of
//! every committed state that an honest server showed (the *canonical*
//! chain), and holds every honest server to it; it remembers what honest
//! servers told clients (committed in block n, or lost), and every header
//! and vote an honest server signed.
//!
//! The checks are incremental (a server's blocks are read again only when
//! its tip moves), so they run after every step at little cost. Two
//! invariants are judged by the run itself, since they speak of time and
//! the network: no stop while a quorum can talk ([`Invariant::NoStop`]),
//! and rounds commit again after the heal ([`Invariant::Liveness`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rota::ledger::edge::Edge;
use rota::ledger::store::Tip;
use rota_peer::block::{Block, Shape};
use rota_peer::seal::Seal;
use rota_peer::wire::{ServerList, TxStatus};
use rota_peer::{BlockNumber, Hash, ServerId, Slot, TxId};

use crate::clients::Clients;

/// The invariants, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// A payment reported committed to a client stays committed on every
    /// honest server, and one reported lost is never committed.
    CommittedStays,
    /// The committed chains (blocks and committed states) of honest servers
    /// are prefixes of one another, and never lose a block.
    Prefix,
    /// Balances always sum to the genesis supply.
    Supply,
    /// No honest server signs two headers for one slot as its alpha, or
    /// votes (prevote or precommit) for two headers of one slot.
    OneVote,
    /// No honest server stops while a majority of honest servers can talk.
    NoStop,
    /// Once faults heal, a round closed by an honest server commits on
    /// every honest server within K slots.
    Liveness,
    /// A payment that must be refused is never committed.
    Refused,
    /// No payment is committed twice.
    Once,
    /// A server's store loads intact after any crash, as the store promises.
    Recovery,
    /// After the heal, an honest alpha in sync takes a good payment that a
    /// client with a true clock sends it in the middle of its window.
    Timely,
    /// Every block an honest server holds proves itself against the conf.
    Proven,
    /// Every seal an honest server keeps for a block proves the block, and
    /// every honest server keeps the same seal for it.
    OneSeal,
    /// Once faults heal, every block made before the heal is sealed on
    /// every honest server within K slots.
    Sealed,
    /// After the heal, an honest server in sync says it sits out exactly
    /// when its clock is off the median of the servers up by more than the
    /// tolerance.
    ClockWatch,
    /// The real code panicked.
    Panic,
}

impl Invariant {
    pub const ALL: [Invariant; 15] = [
        Invariant::CommittedStays,
        Invariant::Prefix,
        Invariant::Supply,
        Invariant::OneVote,
        Invariant::NoStop,
        Invariant::Liveness,
        Invariant::Refused,
        Invariant::Once,
        Invariant::Recovery,
        Invariant::Timely,
        Invariant::Proven,
        Invariant::OneSeal,
        Invariant::Sealed,
        Invariant::ClockWatch,
        Invariant::Panic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::CommittedStays => "committed-stays",
            Invariant::Prefix => "prefix",
            Invariant::Supply => "supply",
            Invariant::OneVote => "one-vote",
            Invariant::NoStop => "no-stop",
            Invariant::Liveness => "liveness",
            Invariant::Refused => "refused",
            Invariant::Once => "once",
            Invariant::Recovery => "recovery",
            Invariant::Timely => "timely",
            Invariant::Proven => "proven",
            Invariant::OneSeal => "one-seal",
            Invariant::Sealed => "sealed",
            Invariant::ClockWatch => "clock-watch",
            Invariant::Panic => "panic",
        }
    }

    /// What the invariant says, in a line.
    pub fn meaning(self) -> &'static str {
        match self {
            Invariant::CommittedStays => {
                "a payment reported committed to a client stays committed on every honest server, \
                 and one reported lost is never committed"
            }
            Invariant::Prefix => {
                "the committed chains of honest servers are prefixes of one another"
            }
            Invariant::Supply => "balances always sum to the genesis supply",
            Invariant::OneVote => {
                "no honest server signs two headers for one slot, or votes for two headers of one \
                 slot"
            }
            Invariant::NoStop => {
                "no honest server stops while a majority of honest servers can talk"
            }
            Invariant::Liveness => {
                "once faults heal, a round closed by an honest server commits on every honest \
                 server within K slots"
            }
            Invariant::Refused => "a payment that must be refused is never committed",
            Invariant::Once => "no payment is committed twice",
            Invariant::Recovery => "a store loads intact after any crash",
            Invariant::Timely => {
                "after the heal, an honest alpha in sync takes a good payment sent to it \
                 mid-window by a client with a true clock"
            }
            Invariant::OneSeal => {
                "every seal an honest server keeps proves its block, and honest servers keep the \
                 same seal for each block"
            }
            Invariant::Sealed => {
                "once faults heal, every block made before the heal is sealed on every honest \
                 server within K slots"
            }
            Invariant::Proven => {
                "every block an honest server holds proves itself (its proof checks against the \
                 conf and names its slot, merkle root and balance hash)"
            }
            Invariant::ClockWatch => {
                "after the heal, an honest server in sync sits out its alpha slots, and says so, \
                 when its clock is off the median of the servers up by more than the tolerance, \
                 and takes them when within four fifths of it (100 ms left to the estimate)"
            }
            Invariant::Panic => "the real code does not panic",
        }
    }

    pub fn from_name(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A broken invariant and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

fn broken(invariant: Invariant, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

/// What an honest server signs about a slot: one of each, at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signed {
    /// Its header, as the alpha of the slot.
    Header,
    /// A prevote or a precommit: both name the one header it votes for.
    Vote,
}

impl Signed {
    fn name(self) -> &'static str {
        match self {
            Signed::Header => "signed the header",
            Signed::Vote => "voted for",
        }
    }
}

/// A canonical block: its hash, its payments, and who showed it first.
struct Canonical {
    hash: Hash,
    ids: Vec<TxId>,
    first: ServerId,
}

/// What the checker last saw of one server.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// Its blocks up to this one hold seals the checker has checked.
    sealed: BlockNumber,
    tip: Tip,
    highest: BlockNumber,
    committed: Option<(Slot, Hash)>,
}

/// The incremental checks. See the module documentation.
pub struct Checker {
    supply: u64,
    blocks: BTreeMap<BlockNumber, Canonical>,
    /// The first seal an honest server kept for each block, and whose.
    seals: BTreeMap<BlockNumber, (Seal, ServerId)>,
    states: BTreeMap<Slot, (Hash, ServerId)>,
    /// The balance hash each committed round left, by slot, and who
    /// committed it first.
    rounds: BTreeMap<Slot, (Option<Hash>, ServerId)>,
    committed_ids: BTreeMap<TxId, BlockNumber>,
    signed: BTreeMap<(ServerId, Signed, Slot), Hash>,
    /// Payments an honest server reported committed: in which block, by whom.
    reported: BTreeMap<TxId, (BlockNumber, ServerId)>,
    /// Payments an honest server reported lost: the slot it named as
    /// deciding it, and by whom.
    lost: BTreeMap<TxId, (Slot, ServerId)>,
    seen: Vec<Seen>,
    /// The chain, its servers and its shape, that blocks prove themselves
    /// against.
    chain: String,
    conf: ServerList,
    shape: Shape,
}

impl Checker {
    pub fn new(chain: &str, conf: ServerList, shape: Shape, supply: u64) -> Checker {
        Checker {
            shape,
            seen: vec![Seen::default(); conf.len()],
            chain: chain.into(),
            conf,
            supply,
            blocks: BTreeMap::new(),
            seals: BTreeMap::new(),
            states: BTreeMap::new(),
            rounds: BTreeMap::new(),
            committed_ids: BTreeMap::new(),
            signed: BTreeMap::new(),
            reported: BTreeMap::new(),
            lost: BTreeMap::new(),
        }
    }

    /// An honest server signed `what` naming header `digest` of `slot`.
    pub fn signed(
        &mut self,
        server: ServerId,
        what: Signed,
        slot: Slot,
        digest: Hash,
    ) -> Result<(), Violation> {
        match self.signed.insert((server, what, slot), digest) {
            Some(earlier) if earlier != digest => broken(
                Invariant::OneVote,
                format!(
                    "s{server} {} {} of slot {slot} after {}",
                    what.name(),
                    digest.short(),
                    earlier.short()
                ),
            ),
            Some(_) | None => Ok(()),
        }
    }

    /// An honest server committed the round of `slot`, leaving balance hash
    /// `hash`: every honest server commits the same round there.
    pub fn round(
        &mut self,
        server: ServerId,
        slot: Slot,
        hash: Option<Hash>,
    ) -> Result<(), Violation> {
        let (first, by) = *self.rounds.entry(slot).or_insert((hash, server));
        if first == hash {
            return Ok(());
        }
        let short = |h: Option<Hash>| h.map_or("nothing".to_string(), |h| h.short());
        broken(
            Invariant::Prefix,
            format!(
                "s{server} committed the round of slot {slot} leaving {}; s{by} committed one \
                 leaving {}",
                short(hash),
                short(first)
            ),
        )
    }

    /// An honest server answered `S` for payment `id`.
    pub fn status(
        &mut self,
        server: ServerId,
        id: TxId,
        status: TxStatus,
        edge: &Edge,
    ) -> Result<(), Violation> {
        let earlier = self.reported.get(&id).copied();
        if let TxStatus::Lost { slot: decided } = status {
            self.told_lost(server, id, decided, edge)?;
        }
        if let (TxStatus::Committed { block: n, .. }, Some((decided, by))) =
            (status, self.lost.get(&id))
        {
            return broken(
                Invariant::CommittedStays,
                format!(
                    "s{server} says {} is in block {n}; s{by} said it was lost, decided by slot \
                     {decided}",
                    id.short()
                ),
            );
        }
        match (status, earlier) {
            (TxStatus::Committed { block: n, .. }, None) => {
                let holds = block_ids(edge, n).is_some_and(|ids| ids.contains(&id));
                if !holds {
                    return broken(
                        Invariant::CommittedStays,
                        format!(
                            "s{server} says {} is in block {n}, which lacks it",
                            id.short()
                        ),
                    );
                }
                self.reported.insert(id, (n, server));
                Ok(())
            }
            (TxStatus::Committed { block: n, .. }, Some((m, by))) if n != m => broken(
                Invariant::CommittedStays,
                format!(
                    "s{server} says {} is in block {n}; s{by} said block {m}",
                    id.short()
                ),
            ),
            (TxStatus::Lost { .. }, Some((m, by))) => broken(
                Invariant::CommittedStays,
                format!(
                    "s{server} says {} is lost; s{by} said it is in block {m}",
                    id.short()
                ),
            ),
            (TxStatus::Committed { .. }, Some(_))
            | (TxStatus::Lost { .. }, None)
            | (TxStatus::Pending | TxStatus::Unknown, _) => Ok(()),
        }
    }

    /// An honest server said payment `id` is lost, decided by a commit of
    /// slot `decided`: it must have committed that far, and the payment
    /// must be in no canonical block, now or later.
    fn told_lost(
        &mut self,
        server: ServerId,
        id: TxId,
        decided: Slot,
        edge: &Edge,
    ) -> Result<(), Violation> {
        let committed = edge.core().committed().slot;
        if committed < decided {
            return broken(
                Invariant::CommittedStays,
                format!(
                    "s{server} says {} was lost, decided by slot {decided}, but it has committed \
                     only through slot {committed}",
                    id.short()
                ),
            );
        }
        if let Some(n) = self.committed_ids.get(&id) {
            return broken(
                Invariant::CommittedStays,
                format!(
                    "s{server} says {} was lost, decided by slot {decided}; it is in block {n}",
                    id.short()
                ),
            );
        }
        self.lost.entry(id).or_insert((decided, server));
        Ok(())
    }

    /// Checks an honest server's committed state after a step.
    pub fn server(
        &mut self,
        server: ServerId,
        edge: &Edge,
        clients: &Clients,
    ) -> Result<(), Violation> {
        let seen = self.seen[server.index()];
        let tip = edge.tip();
        if tip != seen.tip {
            self.blocks_of(server, edge, seen, clients)?;
        }
        self.seals_of(server, edge)?;
        let committed = edge.core().committed();
        if seen.committed != Some((committed.slot, committed.hash)) {
            let supply = committed.snapshot.supply();
            if supply != self.supply {
                return broken(
                    Invariant::Supply,
                    format!(
                        "s{server} committed {} at slot {}, whose balances sum to {supply}, not {}",
                        committed.hash.short(),
                        committed.slot,
                        self.supply
                    ),
                );
            }
            let (hash, first) = *self
                .states
                .entry(committed.slot)
                .or_insert((committed.hash, server));
            if hash != committed.hash {
                return broken(
                    Invariant::Prefix,
                    format!(
                        "s{server} committed {} at slot {}; s{first} committed {}",
                        committed.hash.short(),
                        committed.slot,
                        hash.short()
                    ),
                );
            }
        }
        let entry = &mut self.seen[server.index()];
        entry.tip = tip;
        entry.highest = entry.highest.max(tip.height);
        entry.committed = Some((committed.slot, committed.hash));
        Ok(())
    }

    /// Holds the seals a server keeps to the first kept for each block,
    /// from the first it has not been held to; each must prove its block.
    /// A block whose seal the server lacks (it fetched the block from a
    /// server without it) stops the check there until it has it.
    fn seals_of(&mut self, server: ServerId, edge: &Edge) -> Result<(), Violation> {
        let store = edge.store();
        let last = edge.tip().height;
        let mut n = self.seen[server.index()].sealed;
        while n < last {
            let Ok(Some(seal)) = store.seal(n + 1) else {
                break;
            };
            let Some(block) = block_of(edge, n + 1) else {
                break;
            };
            n += 1;
            if !seal.proves(&block.header) {
                return broken(
                    Invariant::OneSeal,
                    format!(
                        "s{server}'s seal of block {n} (nonce {}) does not prove it",
                        seal.nonce
                    ),
                );
            }
            let (first, by) = *self.seals.entry(n).or_insert((seal, server));
            if first != seal {
                return broken(
                    Invariant::OneSeal,
                    format!(
                        "s{server} keeps nonce {} (time {}) as block {n}'s seal; s{by} keeps \
                         nonce {} (time {})",
                        seal.nonce, seal.time, first.nonce, first.time
                    ),
                );
            }
        }
        self.seen[server.index()].sealed = n;
        Ok(())
    }

    /// Holds a server's blocks to the canonical chain, from the first one
    /// that may have changed.
    fn blocks_of(
        &mut self,
        server: ServerId,
        edge: &Edge,
        seen: Seen,
        clients: &Clients,
    ) -> Result<(), Violation> {
        let tip = edge.tip();
        if tip.height < seen.highest {
            return broken(
                Invariant::Prefix,
                format!(
                    "s{server} dropped its blocks above {}; it had {}",
                    tip.height, seen.highest
                ),
            );
        }
        let unchanged = seen.tip.height > 0
            && seen.tip.height <= tip.height
            && block_of(edge, seen.tip.height).is_some_and(|b| b.header.hash() == seen.tip.hash);
        let from = if unchanged { seen.tip.height + 1 } else { 1 };
        for n in from..=tip.height {
            let Some(block) = block_of(edge, n) else {
                return broken(
                    Invariant::Prefix,
                    format!("s{server} has no block {n} below its tip {}", tip.height),
                );
            };
            self.block(server, n, &block, clients)?;
        }
        Ok(())
    }

    /// Holds a server's block `n` to the canonical one, or makes it the
    /// canonical one if it is the first seen.
    fn block(
        &mut self,
        server: ServerId,
        n: BlockNumber,
        block: &Block,
        clients: &Clients,
    ) -> Result<(), Violation> {
        let hash = block.header.hash();
        if let Some(canonical) = self.blocks.get(&n) {
            if canonical.hash == hash {
                return Ok(());
            }
            let gone = canonical
                .ids
                .iter()
                .find(|id| self.reported.get(id).is_some_and(|(m, _)| *m == n));
            if let Some(id) = gone {
                let by = self.reported[id].1;
                return broken(
                    Invariant::CommittedStays,
                    format!(
                        "s{server}'s block {n} lacks {}, which s{by} reported committed in it",
                        id.short()
                    ),
                );
            }
            return broken(
                Invariant::Prefix,
                format!(
                    "s{server}'s block {n} is {}; s{}'s is {}",
                    hash.short(),
                    canonical.first,
                    canonical.hash.short()
                ),
            );
        }
        if let Err(e) = block.verify(&self.chain, &self.conf, self.shape) {
            return broken(
                Invariant::Proven,
                format!("s{server}'s block {n} does not prove itself: {e}"),
            );
        }
        let ids: Vec<TxId> = block.transactions.iter().map(|tx| tx.id()).collect();
        for id in &ids {
            if let Some(bad) = clients.must_refuse(id) {
                return broken(
                    Invariant::Refused,
                    format!(
                        "s{server}'s block {n} holds {} ({})",
                        id.short(),
                        bad.name()
                    ),
                );
            }
            if let Some((decided, by)) = self.lost.get(id) {
                return broken(
                    Invariant::CommittedStays,
                    format!(
                        "s{server}'s block {n} holds {}, which s{by} said was lost, decided by \
                         slot {decided}",
                        id.short()
                    ),
                );
            }
            if let Some(earlier) = self.committed_ids.insert(*id, n) {
                return broken(
                    Invariant::Once,
                    format!(
                        "s{server}'s block {n} holds {}, already in block {earlier}",
                        id.short()
                    ),
                );
            }
        }
        let first = server;
        self.blocks.insert(n, Canonical { hash, ids, first });
        Ok(())
    }

    /// The highest canonical block.
    pub fn height(&self) -> BlockNumber {
        self.blocks.keys().next_back().copied().unwrap_or(0)
    }

    /// Payments reported committed so far.
    pub fn reported(&self) -> usize {
        self.reported.len()
    }

    /// The ids of the canonical chain's payments.
    pub fn committed_ids(&self) -> BTreeSet<TxId> {
        self.committed_ids.keys().copied().collect()
    }
}

fn block_of(edge: &Edge, n: BlockNumber) -> Option<Block> {
    let bytes = edge.store().block(n).ok()??;
    Block::decode(&bytes).ok()
}

fn block_ids(edge: &Edge, n: BlockNumber) -> Option<Vec<TxId>> {
    block_of(edge, n).map(|b| b.transactions.iter().map(|tx| tx.id()).collect())
}

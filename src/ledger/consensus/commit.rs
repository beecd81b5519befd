//! Rules 3 (commit), 5 and 6: a commit certificate commits its round and
//! every round of its header chain, and decides every slot since the last
//! commit.
//!
//! A commit certificate is taken from wherever it comes: assembled here
//! from q precommits (then relayed once to every server, the RESULT of
//! the old protocol), relayed by another server at any age, or carried as
//! the base certificate of a later header. It becomes the pending commit
//! (the highest one) and moves the lock. It commits when this server holds
//! the whole chain from the committed round up to it, headers and
//! payments; until then the rounds it lacks are asked for.
//!
//! Committing decides the slots from the one after the last commit up to
//! the certificate's: a slot whose round is in the chain is committed, any
//! other is lost, and that is certain, since no later chain can differ
//! below the certificate's slot. A slot with no commit certificate of its
//! own decides nothing by itself.
//!
//! A commit certificate whose chain leaves the committed round, or whose
//! rounds apply here to another result than their headers', is proof that
//! this server's ledger, or more than the protocol tolerates, went wrong:
//! the machine halts rather than go on.

use rota_peer::wire::consensus::{Certified, Verified};

use super::chain::Walk;
use super::output::{Commit, CommittedRound, Message, Output};
use super::prevote::Applied;
use super::{Committed, Ledger, Machine};

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// Takes a commit certificate; `assembled` when this server made it
    /// from precommits, and relays it.
    pub(super) fn take_commit(
        &mut self,
        certified: Verified<Certified>,
        assembled: bool,
        out: &mut Vec<Output<P>>,
    ) {
        let slot = certified.header.slot();
        if slot <= self.committed.base.slot {
            return;
        }
        self.lock_on(certified.clone(), out);
        let votes = self.slots.entry(slot).or_default();
        if assembled && !votes.commit_relayed {
            votes.commit_relayed = true;
            out.push(Output::Send(Message::Certified(
                certified.clone().into_inner(),
            )));
        }
        if self
            .pending_commit
            .as_ref()
            .is_none_or(|p| p.header.slot() < slot)
        {
            self.pending_commit = Some(certified);
        }
    }

    /// Commits the pending commit certificate if its whole chain is here.
    pub(super) fn try_commit(
        &mut self,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        let Some(certified) = self.pending_commit.clone() else {
            return;
        };
        let slot = certified.header.slot();
        if slot <= self.committed.base.slot {
            self.pending_commit = None;
            return;
        }
        let digests = match self.rounds.walk(
            &certified.header,
            &self.committed.base,
            self.config.timing.schedule.shape(),
        ) {
            Walk::Chain(digests) => digests,
            Walk::Missing { slot, digest } => return self.ask(slot, digest, out),
            Walk::Off(reason) => {
                let reason = format!(
                    "a commit certificate of slot {slot} conflicts with the committed round of \
                     slot {}: {reason}",
                    self.committed.base.slot
                );
                return self.halt(reason, out);
            }
        };
        match self.apply_chain(&digests, ledger, out) {
            Applied::Done => {}
            Applied::Missing => return,
            Applied::Mismatch { slot: bad, .. } => {
                let reason = format!(
                    "the committed round of slot {bad} gives another result here than its header's"
                );
                return self.halt(reason, out);
            }
        }
        let mut rounds = Vec::with_capacity(digests.len());
        for digest in &digests {
            let Some(round) = self.rounds.get(digest) else {
                return;
            };
            let Some(payments) = round.payments.clone() else {
                return self.ask(round.header.slot(), *digest, out);
            };
            rounds.push(CommittedRound {
                header: round.header.clone(),
                payments,
            });
        }
        let from = self.committed.base.slot.saturating_add(1);
        log::info!(
            "slot {slot}: committed {} ({} rounds), slots {from} to {slot} decided",
            certified.header.digest().short(),
            rounds.len()
        );
        out.push(Output::Commit(Commit {
            certified: certified.clone(),
            rounds,
            from,
        }));
        self.committed = Committed::round(certified, self.config.timing.schedule.shape());
        self.pending_commit = None;
        self.prune();
    }

    /// Takes a committed state from elsewhere: a database fetched from
    /// another server with the commit certificate that vouches for it. The
    /// machine moves its committed round there if it is above its own, and
    /// drops what that decided; its marks and lock stay (a lock only moves
    /// up). The certificate becomes the lock, durably, so that what this
    /// server votes next builds on it. Returns `None` when the state is not
    /// above the committed one here (nothing to do).
    pub fn install(&mut self, committed: Committed) -> Option<Vec<Output<P>>> {
        if committed.base.slot <= self.committed.base.slot {
            return None;
        }
        let mut out = Vec::new();
        self.committed = committed;
        if let Some(certified) = self.committed.certified.clone() {
            self.lock_on(certified, &mut out);
        }
        if self
            .pending_commit
            .as_ref()
            .is_some_and(|p| p.header.slot() <= self.committed.base.slot)
        {
            self.pending_commit = None;
        }
        self.prune();
        Some(out)
    }

    /// Drops what the commit decided: rounds, votes and own votes up to
    /// its slot. The lock stays (it only moves up), as do the marks.
    fn prune(&mut self) {
        let slot = self.committed.base.slot;
        self.rounds.prune_through(slot);
        self.slots = self.slots.split_off(&slot.saturating_add(1));
        self.own.retain(|(s, _), _| *s > slot);
    }
}

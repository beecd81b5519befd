//! Rule 4's durability: what a server keeps across a crash, and how its
//! machine is rebuilt from it.
//!
//! Every step's outputs put a [`Record`] before the message it vouches for:
//! its own header before ROUND(s), a round's payments and the prevote
//! before PREVOTE(s), the precommit before PRECOMMIT(s), the lock and the
//! payments of its locked chain as the lock moves, evidence of an
//! equivocating alpha (so that a restart does not forget it before P(s)).
//! The edge appends them to a journal, in order, and makes each durable
//! before it carries out what follows. [`Machine::restore`] replays that journal on top of the
//! committed state: the highest voted slot, the highest proposed slot, the
//! lock and the kept rounds come back, so a restarted server never signs a
//! second vote or header for a slot, and can still build on its lock.
//!
//! Records come from this server's own disk, and are verified again all
//! the same: a journal that does not verify is refused as a whole rather
//! than half trusted, since forgetting a vote is how a server would sign
//! two. [`Machine::journal`] gives the records that matter now (for the
//! edge to rewrite the journal after a commit); [`Machine::resend`] the
//! messages to send again after a restart (the same bytes, since ed25519
//! signatures are deterministic).

use rota_peer::wire::consensus::{Kind, SignedHeader, Verified};

use super::output::{Message, Output, Record};
use super::{Committed, Config, Machine};

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// The machine a server's records rebuild, on top of its committed
    /// state. Refuses records whose signatures do not check.
    pub fn restore(
        config: Config,
        committed: Committed,
        records: impl IntoIterator<Item = Record<P>>,
    ) -> rota_peer::Result<Machine<P>> {
        let mut machine = Machine::new(config, committed);
        for record in records {
            machine.replay(record)?;
        }
        Ok(machine)
    }

    fn replay(&mut self, record: Record<P>) -> rota_peer::Result<()> {
        let (chain, servers) = (&self.config.chain, &self.config.servers);
        match record {
            Record::Marks { voted, proposed } => {
                self.voted = self.voted.max(voted);
                self.proposed = self.proposed.max(proposed);
            }
            Record::Proposal { header, payments } => {
                let header = header.verify(chain, servers)?;
                self.proposed = self.proposed.max(Some(header.slot()));
                self.keep_round(header, payments);
            }
            Record::Round { header, payments } => {
                let header = header.verify(chain, servers)?;
                self.keep_round(header, payments);
            }
            Record::Prevote(prevote) => {
                let prevote = prevote.verify(chain, servers)?;
                let (vote, header) = prevote.parts();
                let slot = vote.slot;
                self.own_vote(slot, Kind::Prevote, Message::Prevote(prevote.into_inner()));
                self.remember(&header);
                if slot > self.committed.base.slot {
                    self.slots.entry(slot).or_default().add(vote);
                }
            }
            Record::Precommit(precommit) => {
                let precommit = precommit.verify(chain, servers)?;
                let (vote, header, certificate) = precommit.parts();
                let slot = vote.slot;
                self.own_vote(
                    slot,
                    Kind::Precommit,
                    Message::Precommit(precommit.into_inner()),
                );
                self.remember(&header);
                if slot > self.committed.base.slot {
                    let votes = self.slots.entry(slot).or_default();
                    votes.add(vote);
                    votes.certificates.insert(certificate.digest, certificate);
                }
            }
            Record::Evidence(evidence) => {
                let evidence = evidence.verify(chain, servers)?;
                for header in evidence.headers() {
                    self.remember(&header);
                }
                let slot = evidence.slot();
                if slot > self.committed.base.slot {
                    self.slots.entry(slot).or_default().evidence = Some(evidence);
                }
            }
            Record::Lock(certified) => {
                let certified = certified.verify(chain, servers)?;
                let slot = certified.header.slot();
                if self.lock.as_ref().is_none_or(|l| l.header.slot() < slot) {
                    self.lock = Some(certified);
                }
            }
        }
        Ok(())
    }

    /// Raises the voted mark and keeps an own vote to send again.
    fn own_vote(&mut self, slot: rota_peer::Slot, kind: Kind, message: Message<P>) {
        self.voted = self.voted.max(Some(slot));
        if slot > self.committed.base.slot {
            self.own.insert((slot, kind), message);
        }
    }

    /// Learns a header from this server's records, without outputs.
    fn remember(&mut self, header: &Verified<SignedHeader>) {
        if header.slot() > self.committed.base.slot {
            self.slots
                .entry(header.slot())
                .or_default()
                .see(header.digest());
            self.rounds.learn(header);
        }
    }

    /// Keeps a round read back from the records, durable and not applied
    /// (the ledger restarts from its committed state).
    fn keep_round(&mut self, header: Verified<SignedHeader>, payments: P) {
        self.remember(&header);
        if let Some(round) = self.rounds.get_mut(&header.digest()) {
            round.payments = Some(payments);
            round.durable = true;
        }
    }

    /// The records that rebuild this machine as it stands: the marks, the
    /// kept rounds above the committed one, its own votes, its lock.
    pub fn journal(&self) -> Vec<Record<P>> {
        let mut records = vec![Record::Marks {
            voted: self.voted,
            proposed: self.proposed,
        }];
        for (_, round) in self.rounds.iter() {
            if let (true, Some(payments)) = (round.durable, &round.payments) {
                let header = round.header.clone().into_inner();
                let payments = payments.clone();
                let own = self.config.timing.alpha(header.slot()) == self.config.me;
                records.push(if own {
                    Record::Proposal { header, payments }
                } else {
                    Record::Round { header, payments }
                });
            }
        }
        for message in self.own.values() {
            match message {
                Message::Prevote(p) => records.push(Record::Prevote(p.clone())),
                Message::Precommit(p) => records.push(Record::Precommit(p.clone())),
                Message::Round { .. } | Message::Certified(_) | Message::Evidence(_) => {}
            }
        }
        for votes in self.slots.values() {
            if let Some(evidence) = &votes.evidence {
                records.push(Record::Evidence(evidence.clone().into_inner()));
            }
        }
        if let Some(lock) = &self.lock {
            records.push(Record::Lock(lock.clone().into_inner()));
        }
        records
    }

    /// What to send again after a restart: this server's own votes above
    /// the committed slot, and its lock.
    pub fn resend(&self) -> Vec<Output<P>> {
        let mut out: Vec<Output<P>> = self.own.values().cloned().map(Output::Send).collect();
        if let Some(lock) = &self.lock {
            out.push(Output::Send(Message::Certified(lock.clone().into_inner())));
        }
        out
    }
}

//! Rule 3: headers and votes as they arrive, certificates, the lock, and
//! the precommit (the fast path, and the P(s) path).
//!
//! Every header seen (in a ROUND, a vote, a certificate, evidence) is
//! tracked for its slot ([`Machine::see_header`]); a second one for a slot
//! is evidence that its alpha equivocated, published at once. Every vote is
//! counted ([`Machine::add_vote`]): q prevotes on one header are a prevote
//! certificate, which moves the lock up ([`Machine::lock_on`]); N prevotes
//! before P(s) are the fast path to a precommit; q precommits are a commit
//! certificate (`commit.rs`). At P(s) ([`Machine::precommit_deadlines`]) a
//! server precommits on a certificate it holds, unless it saw a second
//! header; a certificate that comes later moves the lock and nothing else.

use rota_peer::wire::consensus::{
    Certificate, Certified, Evidence, Kind, Precommit, SignedHeader, Verified, Vote,
};
use rota_peer::{Hash, Millis, Slot};

use super::chain::Walk;
use super::output::{Message, Output, Record};
use super::prevote::Applied;
use super::slot::Seen;
use super::{Ledger, Machine};

impl<P: Clone + std::fmt::Debug> Machine<P> {
    /// Learns a header: tracks it for its slot, publishes evidence if it is
    /// the slot's second, and takes the certificate of its base.
    pub(super) fn see_header(&mut self, header: &Verified<SignedHeader>, out: &mut Vec<Output<P>>) {
        let slot = header.slot();
        if slot <= self.committed.base.slot {
            return;
        }
        let digest = header.digest();
        let votes = self.slots.entry(slot).or_default();
        let seen = votes.see(digest);
        let first = votes.headers.first().copied();
        match seen {
            Seen::Beyond => return,
            Seen::Known | Seen::First => {}
            Seen::Second => {
                let evidence = first
                    .and_then(|d| self.rounds.get(&d))
                    .and_then(|r| Verified::<Evidence>::of(&r.header, header));
                if let Some(evidence) = evidence {
                    self.publish_evidence(evidence, out);
                }
            }
        }
        if !self.rounds.learn(header) {
            return;
        }
        if let Some(certificate) = header.base_certificate() {
            self.take_certificate(certificate, out);
        }
        // A certificate that came before its header moves the lock now.
        let waiting = self
            .slots
            .get(&slot)
            .and_then(|v| v.certificates.get(&digest))
            .cloned();
        if let Some(certificate) = waiting
            && let Some(certified) = Verified::<Certified>::join(header.clone(), certificate)
        {
            self.lock_on(certified, out);
        }
    }

    /// Keeps (durably: a restarted server must not forget it before P(s))
    /// and publishes the proof that an alpha signed two headers for one
    /// slot, once a slot.
    fn publish_evidence(&mut self, evidence: Verified<Evidence>, out: &mut Vec<Output<P>>) {
        let slot = evidence.slot();
        let votes = self.slots.entry(slot).or_default();
        if votes.evidence.is_some() {
            return;
        }
        votes.evidence = Some(evidence.clone());
        log::warn!(
            "slot {slot}: its alpha, server {}, signed two headers ({} and {}); \
             this server precommits neither",
            self.config.timing.alpha(slot),
            evidence.first.digest().short(),
            evidence.second.digest().short()
        );
        out.push(Output::Persist(Record::Evidence(
            evidence.clone().into_inner(),
        )));
        out.push(Output::Send(Message::Evidence(
            evidence.clone().into_inner(),
        )));
        out.push(Output::Evidence(evidence));
    }

    /// Counts a vote on a tracked header, and acts on the counts it makes:
    /// a prevote certificate, the fast path, a commit certificate.
    pub(super) fn add_vote(
        &mut self,
        vote: Verified<Vote>,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        let (kind, slot, digest) = (vote.kind, vote.slot, vote.digest);
        if slot <= self.committed.base.slot {
            return;
        }
        let majority = self.majority();
        let votes = self.slots.entry(slot).or_default();
        let Some(count) = votes.add(vote) else {
            return;
        };
        if count < majority {
            return;
        }
        let certificate = Verified::<Certificate>::assemble(votes.votes(kind, &digest), majority);
        match kind {
            Kind::Prevote => {
                let known = votes.certificates.contains_key(&digest);
                if let Some(certificate) = certificate.filter(|_| !known) {
                    self.take_certificate(certificate, out);
                }
                let fast = count == self.config.servers.len()
                    && now < self.config.timing.precommit_at(slot);
                if fast {
                    self.precommit(slot, digest, now, ledger, out);
                }
            }
            Kind::Precommit => {
                let header = self.rounds.get(&digest).map(|r| r.header.clone());
                if let Some(certified) = certificate
                    .zip(header)
                    .and_then(|(c, h)| Verified::<Certified>::join(h, c))
                {
                    self.take_commit(certified, true, out);
                }
            }
            Kind::Header => {}
        }
    }

    /// Takes a certificate, whatever its age: a prevote certificate is kept
    /// for its slot and moves the lock once its header is known; a commit
    /// certificate commits.
    pub(super) fn take_certificate(
        &mut self,
        certificate: Verified<Certificate>,
        out: &mut Vec<Output<P>>,
    ) {
        let (slot, digest) = (certificate.slot, certificate.digest);
        if slot <= self.committed.base.slot {
            return;
        }
        let header = self.rounds.get(&digest).map(|r| r.header.clone());
        match certificate.kind {
            Kind::Header => {}
            Kind::Precommit => {
                match header.and_then(|h| Verified::<Certified>::join(h, certificate)) {
                    Some(certified) => self.take_commit(certified, false, out),
                    None => self.ask(slot, digest, out),
                }
            }
            Kind::Prevote => {
                self.slots
                    .entry(slot)
                    .or_default()
                    .certificates
                    .entry(digest)
                    .or_insert_with(|| certificate.clone());
                match header.and_then(|h| Verified::<Certified>::join(h, certificate)) {
                    Some(certified) => self.lock_on(certified, out),
                    None => self.ask(slot, digest, out),
                }
            }
        }
    }

    /// Moves the lock up to `certified` if it is above the lock's slot,
    /// durably, with the payments of the locked chain held here.
    pub(super) fn lock_on(&mut self, certified: Verified<Certified>, out: &mut Vec<Output<P>>) {
        let slot = certified.header.slot();
        if self.lock.as_ref().is_some_and(|l| l.header.slot() >= slot) {
            return;
        }
        let chain = self
            .rounds
            .ancestry(&certified.header, self.committed.base.slot);
        for digest in chain.iter().rev() {
            self.persist_round(digest, out);
        }
        log::debug!(
            "slot {slot}: locked on {} ({} certificate)",
            certified.header.digest().short(),
            certified.certificate.kind.name()
        );
        out.push(Output::Persist(Record::Lock(
            certified.clone().into_inner(),
        )));
        self.lock = Some(certified);
    }

    /// Makes a round's payments durable, once.
    pub(super) fn persist_round(&mut self, digest: &Hash, out: &mut Vec<Output<P>>) {
        if let Some(round) = self.rounds.get_mut(digest)
            && !round.durable
            && let Some(payments) = &round.payments
        {
            round.durable = true;
            out.push(Output::Persist(Record::Round {
                header: round.header.clone().into_inner(),
                payments: payments.clone(),
            }));
        }
    }

    /// The P(s) moments passed by `now`, each handled once; a late tick
    /// (after the cutoff) precommits nothing.
    pub(super) fn precommit_deadlines(
        &mut self,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        let t = self.config.timing;
        let current = t.slot_at(now);
        let mut slot = self
            .p_done
            .map_or(current.saturating_sub(1), |p| p.saturating_add(1))
            .max(current.saturating_sub(2));
        while slot <= current && t.precommit_at(slot) <= now {
            if now < t.precommit_cutoff(slot) {
                self.precommit_on_certificate(slot, now, ledger, out);
            }
            self.p_done = Some(slot);
            slot += 1;
        }
    }

    /// At P(s): precommit on the certificate held, if the slot has one
    /// header only.
    fn precommit_on_certificate(
        &mut self,
        slot: Slot,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        let Some(votes) = self.slots.get(&slot) else {
            return;
        };
        if votes.equivocated() {
            log::info!("slot {slot}: two headers seen, no precommit");
            return;
        }
        let Some(digest) = votes.headers.first().copied() else {
            return;
        };
        if votes.certificates.contains_key(&digest) {
            self.precommit(slot, digest, now, ledger, out);
        }
    }

    /// PRECOMMIT(s, header), if this server voted in no later slot and
    /// holds the round (applied here, so that it can commit it).
    fn precommit(
        &mut self,
        slot: Slot,
        digest: Hash,
        now: Millis,
        ledger: &mut impl Ledger<Payments = P>,
        out: &mut Vec<Output<P>>,
    ) {
        if slot <= self.committed.base.slot
            || self.voted.is_some_and(|v| v > slot)
            || self.own.contains_key(&(slot, Kind::Precommit))
        {
            return;
        }
        let certificate = self
            .slots
            .get(&slot)
            .and_then(|v| v.certificates.get(&digest))
            .cloned();
        let header = self.rounds.get(&digest).map(|r| r.header.clone());
        let (Some(certificate), Some(header)) = (certificate, header) else {
            return;
        };
        let digests = match self.rounds.walk(
            &header,
            &self.committed.base,
            self.config.timing.schedule.shape(),
        ) {
            Walk::Chain(digests) => digests,
            Walk::Missing { slot, digest } => return self.ask(slot, digest, out),
            Walk::Off(_) => return,
        };
        if self.apply_chain(&digests, ledger, out) != Applied::Done {
            return;
        }
        self.persist_round(&digest, out);
        let c = &self.config;
        let vote = Verified::sign_vote(&c.keypair, &c.chain, c.me, Kind::Precommit, slot, digest);
        let Some(precommit) = Verified::<Precommit>::join(vote.clone(), header, certificate) else {
            return;
        };
        let precommit = precommit.into_inner();
        out.push(Output::Persist(Record::Precommit(precommit.clone())));
        let message = Message::Precommit(precommit);
        self.voted = self.voted.max(Some(slot));
        self.own.insert((slot, Kind::Precommit), message.clone());
        log::debug!("slot {slot}: precommit on {}", digest.short());
        out.push(Output::Send(message));
        self.add_vote(vote, now, ledger, out);
    }
}

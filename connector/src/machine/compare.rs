//! The hash-compare state: ask every server for its committed state,
//! asking again the ones that stay silent, and decide what a majority
//! holds: sampling when this server holds it too, fetch-snapshot when it
//! does not, another round when no majority shows.

use rota_peer::wire::{Status, majority};
use rota_peer::{Hash, Millis, ServerId};

use super::fetch::Target;
use super::{Machine, Output, Phase, Request, State};

impl Machine {
    /// Starts a hash-compare round, entering the state if the machine is
    /// elsewhere: ask every server for its status.
    pub(super) fn enter_hash_compare(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.report(State::HashCompare, out);
        self.early.clear();
        for id in self.others() {
            out.push(Output::Send {
                to: id,
                request: Request::Heart(self.own),
            });
        }
        self.wait_for_answers(now, self.settings.first_retry(), now);
        if self.settings.servers == 1 {
            self.compare(now, now, out);
        }
    }

    /// Within a hash-compare round, asks the servers that have not answered
    /// it again: a request sent before a connection was up is lost, and
    /// the round must not wait a whole heartbeat for it. Asked again after
    /// `retry`, doubling, until the round is due.
    pub(super) fn ask_silent(
        &mut self,
        asked_at: Millis,
        retry: u64,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let answered: Vec<ServerId> = self
            .statuses_since(asked_at)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in self.others().filter(|id| !answered.contains(id)) {
            out.push(Output::Send {
                to: id,
                request: Request::Heart(self.own),
            });
        }
        self.wait_for_answers(asked_at, retry.saturating_mul(2), now);
    }

    /// The hash-compare round asked at `asked_at` waits: until the silent
    /// servers are asked again after `retry`, or until the round is due.
    pub(super) fn wait_for_answers(&mut self, asked_at: Millis, retry: u64, now: Millis) {
        self.phase = Phase::HashCompare { asked_at, retry };
        let due = asked_at + self.settings.heartbeat_ms;
        self.deadline = (now + retry).min(due);
    }

    /// Statuses received at or after `since`.
    pub(super) fn statuses_since(&self, since: Millis) -> Vec<(ServerId, Status)> {
        self.others()
            .filter_map(|id| {
                let (status, at) = self.peers[id.index()].status?;
                (at >= since).then_some((id, status))
            })
            .collect()
    }

    /// The state a majority holds, if any: the balance hash held by a
    /// majority (this server counted), with the highest height among the
    /// holders trusted at `now` and a server to fetch from. A distrusted
    /// holder counts towards the majority (its certificate vouches for its
    /// hash) but its height is not believed.
    pub(super) fn majority_state(
        &self,
        statuses: &[(ServerId, Status)],
        now: Millis,
    ) -> Option<Target> {
        let mut hashes: Vec<Hash> = statuses.iter().map(|(_, s)| s.balance_hash).collect();
        hashes.push(self.own.balance_hash);
        hashes.sort();
        hashes.dedup();
        let needed = majority(self.settings.servers);
        for hash in hashes {
            let holders: Vec<(ServerId, Status)> = statuses
                .iter()
                .filter(|(_, s)| s.balance_hash == hash)
                .copied()
                .collect();
            let count = holders.len() + usize::from(self.own.balance_hash == hash);
            if count < needed {
                continue;
            }
            let best = holders
                .iter()
                .filter(|(id, _)| self.trusted(*id, now))
                .max_by_key(|(id, s)| (s.height, s.slot, std::cmp::Reverse(*id)))
                .copied();
            return match best {
                Some((source, status)) => Some(Target { status, source }),
                // Only this server holds it, and it is a majority (N = 1),
                // or every other holder is distrusted: nothing to fetch.
                None if self.own.balance_hash == hash => Some(Target {
                    status: self.own,
                    source: self.settings.me,
                }),
                None => None,
            };
        }
        None
    }

    /// Decides the hash-compare round asked at `asked_at`.
    pub(super) fn compare(&mut self, asked_at: Millis, now: Millis, out: &mut Vec<Output>) {
        let statuses = self.statuses_since(asked_at);
        match self.majority_state(&statuses, now) {
            Some(target) if self.matches(&target) => self.enter_sampling(now, out),
            Some(target) => {
                log::info!(
                    "connector: a majority holds {} at height {}, this server {} at height {}",
                    target.status.balance_hash.short(),
                    target.status.height,
                    self.own.balance_hash.short(),
                    self.own.height
                );
                self.enter_fetch(target, now, out);
            }
            // Decided early, when every server has answered: ask again only
            // when the round is due, or the servers would be asked as fast as
            // they answer.
            None if now < asked_at + self.settings.heartbeat_ms => {}
            None => {
                log::info!(
                    "connector: no majority state among {} answers; asking again",
                    statuses.len()
                );
                self.enter_hash_compare(now, out);
            }
        }
    }

    /// Whether this server holds the target's state: its hash, and as many
    /// blocks (the same last block at the same height) and as late a
    /// committed slot. The slot matters on its own:
    /// rounds without payments change neither hash nor height, and a
    /// server that missed them cannot commit the rounds built on them
    /// until it installs the state under their commit certificate.
    pub(super) fn matches(&self, target: &Target) -> bool {
        let (own, target) = (&self.own, &target.status);
        let blocks = own.height > target.height
            || (own.height == target.height && own.block_hash == target.block_hash);
        target.balance_hash == own.balance_hash && blocks && own.slot >= target.slot
    }
}

//! A testing aid, read once at start: `ROTA_CRASH_AT=<point>[:<count>]`
//! makes the ledger thread abort (`std::process::abort`, which ends the
//! process as `kill -9` does: nothing more is written or sent) the
//! `count`-th time (the first by default) it carries out the core's actions
//! past a named point:
//!
//! - `vote-durable`: a journal append holding this server's prevote or
//!   precommit is durable, and nothing after it is carried out: the vote is
//!   kept and not sent;
//! - `certificate-held`: a commit certificate assembled here has committed
//!   (the commit persisted), and its `certified` relay is not sent;
//! - `result-to-one`: that relay has gone to one server only (the first
//!   other server of the conf), and nothing after it is carried out: the
//!   commit, which the machine orders after the relay, is not persisted.
//!
//! The crash tests (tests/crash.rs) kill servers there, and check that no
//! payment reported committed is lost; docs/OPERATIONS.md documents the
//! variable. [`CrashAt::cut`] is the one place it acts, on the ledger
//! thread, outside the pure core and the edge the simulator shares.

use std::fmt;
use std::str::FromStr;

use rota_peer::ServerId;
use rota_peer::wire::PeerMessage;
use rota_peer::wire::consensus::Kind;

use super::consensus::Record;
use super::core::{Action, Persist, Target};

/// The environment variable that arms a crash.
pub const VARIABLE: &str = "ROTA_CRASH_AT";

/// Where the ledger thread aborts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    VoteDurable,
    CertificateHeld,
    ResultToOne,
}

impl Point {
    const ALL: [Point; 3] = [
        Point::VoteDurable,
        Point::CertificateHeld,
        Point::ResultToOne,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::VoteDurable => "vote-durable",
            Point::CertificateHeld => "certificate-held",
            Point::ResultToOne => "result-to-one",
        }
    }
}

/// An armed crash: the point, the time it fires, and how often the point
/// was reached so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashAt {
    pub point: Point,
    pub count: u32,
    reached: u32,
}

impl FromStr for CrashAt {
    type Err = String;

    fn from_str(text: &str) -> Result<CrashAt, String> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let shown: String = text.chars().take(64).collect();
        let point = Point::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "{VARIABLE}={shown:?}: the point is one of {}, optionally followed by \
                     :<count> (from 1)",
                    Point::ALL.map(Point::name).join(", ")
                )
            })?;
        let count = match count {
            None => 1,
            Some(count) => count
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{VARIABLE}={shown:?}: the count is a number from 1"))?,
        };
        Ok(CrashAt {
            point,
            count,
            reached: 0,
        })
    }
}

impl fmt::Display for CrashAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VARIABLE}={}:{}", self.point.name(), self.count)
    }
}

impl CrashAt {
    /// The crash `ROTA_CRASH_AT` arms, if set; a value that names no point
    /// is an error, so that a test never runs unarmed by a typo.
    pub fn from_env() -> crate::Result<Option<CrashAt>> {
        match std::env::var(VARIABLE) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(crate::Error::Config(format!(
                "{VARIABLE} is not UTF-8 text"
            ))),
            Ok(text) => text.parse().map(Some).map_err(crate::Error::Config),
        }
    }

    /// Cuts a step's `actions` down to what is carried out before the
    /// abort, when they reach the point for the `count`-th time; returns
    /// whether the ledger thread must then abort. `one` is the server a
    /// `result-to-one` relay goes to. Left unchanged otherwise.
    ///
    /// A commit certificate assembled here is told apart by its relay: a
    /// `certified` of precommits sent in the same step as the commit of
    /// its slot (a certificate taken from another server is not relayed).
    pub fn cut(&mut self, actions: &mut Vec<Action>, one: ServerId) -> bool {
        let Some(end) = self.point_in(actions) else {
            return false;
        };
        self.reached += 1;
        if self.reached < self.count {
            return false;
        }
        match self.point {
            Point::VoteDurable => actions.truncate(end),
            Point::CertificateHeld => {
                actions.truncate(end);
                actions.retain(|a| relayed_commit(a).is_none());
            }
            Point::ResultToOne => {
                if let Some(Action::Send { to, .. }) = actions.get_mut(end - 1) {
                    *to = Target::Only(vec![one]);
                }
                actions.truncate(end);
            }
        }
        true
    }

    /// How many of `actions` are carried out up to the point, if they
    /// reach it.
    fn point_in(&self, actions: &[Action]) -> Option<usize> {
        match self.point {
            Point::VoteDurable => {
                let first = actions.iter().position(|a| {
                    matches!(
                        a,
                        Action::Persist(Persist::Consensus(
                            Record::Prevote(_) | Record::Precommit(_)
                        ))
                    )
                })?;
                // The edge writes consecutive records in one append.
                let group = actions[first..]
                    .iter()
                    .take_while(|a| matches!(a, Action::Persist(Persist::Consensus(_))))
                    .count();
                Some(first + group)
            }
            Point::CertificateHeld => actions
                .iter()
                .position(|a| {
                    matches!(a, Action::Persist(Persist::Commit(c))
                        if actions.iter().any(|r| relayed_commit(r) == Some(c.slot)))
                })
                .map(|commit| commit + 1),
            Point::ResultToOne => actions
                .iter()
                .position(|a| {
                    relayed_commit(a).is_some_and(|slot| {
                        actions.iter().any(
                            |c| matches!(c, Action::Persist(Persist::Commit(c)) if c.slot == slot),
                        )
                    })
                })
                .map(|relay| relay + 1),
        }
    }
}

/// The slot of a commit certificate this action relays to every server.
fn relayed_commit(action: &Action) -> Option<rota_peer::Slot> {
    match action {
        Action::Send {
            to: Target::All,
            message: PeerMessage::Certified(certified),
            ..
        } if certified.certificate.kind == Kind::Precommit => Some(certified.header.slot()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rota_peer::balances::Balances;
    use rota_peer::wire::consensus::{
        Base, Certificate, Certified, Header, Precommit, Prevote, SignedHeader, Vote,
    };
    use rota_peer::{Hash, Slot};

    use super::*;
    use crate::events::Event;
    use crate::ledger::core::Commit;

    fn header(slot: Slot) -> SignedHeader {
        SignedHeader {
            header: Header {
                slot,
                base: Base {
                    digest: Hash::default(),
                    slot: slot - 1,
                    balance: Hash::default(),
                    chain: Default::default(),
                    sealed: 0,
                },
                payments: Hash::default(),
                result: Hash::default(),
                seal: None,
            },
            signature: [0; 64],
            base_certificate: None,
        }
    }

    fn vote(kind: Kind, slot: Slot) -> Vote {
        Vote {
            kind,
            slot,
            digest: header(slot).digest(),
            signer: ServerId(1),
            signature: [0; 64],
        }
    }

    fn certificate(kind: Kind, slot: Slot) -> Certificate {
        Certificate {
            kind,
            slot,
            digest: header(slot).digest(),
            signatures: Vec::new(),
        }
    }

    fn record(record: Record<crate::ledger::core::Payments>) -> Action {
        Action::Persist(Persist::Consensus(record))
    }

    fn prevote(slot: Slot) -> Record<crate::ledger::core::Payments> {
        Record::Prevote(Prevote {
            vote: vote(Kind::Prevote, slot),
            header: header(slot),
        })
    }

    fn precommit(slot: Slot) -> Record<crate::ledger::core::Payments> {
        Record::Precommit(Precommit {
            vote: vote(Kind::Precommit, slot),
            header: header(slot),
            certificate: certificate(Kind::Prevote, slot),
        })
    }

    fn send(message: PeerMessage<rota_peer::transaction::VerifiedTx>, slot: Slot) -> Action {
        Action::Send {
            to: Target::All,
            slot,
            message,
        }
    }

    fn certified(kind: Kind, slot: Slot) -> Action {
        send(
            PeerMessage::Certified(Certified {
                header: header(slot),
                certificate: certificate(kind, slot),
            }),
            slot,
        )
    }

    fn commit(slot: Slot) -> Action {
        Action::Persist(Persist::Commit(Commit {
            slot,
            hash: Hash::default(),
            snapshot: Arc::new(Balances::from_accounts(&[]).unwrap()),
            rounds: Vec::new(),
            installed: false,
            certified: None,
            journal: Vec::new(),
        }))
    }

    fn publish() -> Action {
        Action::Publish(Event::Evidence {
            slot: 1,
            alpha: ServerId(1),
        })
    }

    /// What a list of actions is, in a word each, to compare cuts.
    fn words(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Send { to, message, .. } => {
                    format!("send {} {to:?}", message.command().name())
                }
                Action::Persist(Persist::Consensus(r)) => match r {
                    Record::Prevote(_) => "keep prevote".into(),
                    Record::Precommit(_) => "keep precommit".into(),
                    Record::Lock(_) => "keep lock".into(),
                    _ => "keep other".into(),
                },
                Action::Persist(Persist::Commit(c)) => format!("commit {}", c.slot),
                Action::Publish(_) => "publish".into(),
                Action::OutOfSync | Action::Stop(_) => "other".into(),
            })
            .collect()
    }

    fn lock(slot: Slot) -> Action {
        record(Record::Lock(Certified {
            header: header(slot),
            certificate: certificate(Kind::Precommit, slot),
        }))
    }

    #[test]
    fn the_variable_names_a_point_and_a_count() {
        let parsed: CrashAt = "certificate-held:3".parse().unwrap();
        assert_eq!((parsed.point, parsed.count), (Point::CertificateHeld, 3));
        let parsed: CrashAt = "vote-durable".parse().unwrap();
        assert_eq!((parsed.point, parsed.count), (Point::VoteDurable, 1));
        assert_eq!(parsed.to_string(), "ROTA_CRASH_AT=vote-durable:1");
        let unknown = "vote-sent".parse::<CrashAt>().unwrap_err();
        assert!(
            unknown.contains("one of vote-durable, certificate-held, result-to-one"),
            "{unknown}"
        );
        for bad in ["result-to-one:0", "result-to-one:x", "result-to-one:"] {
            let error = bad.parse::<CrashAt>().unwrap_err();
            assert!(error.contains("the count is a number from 1"), "{error}");
        }
        let long = "x".repeat(10_000).parse::<CrashAt>().unwrap_err();
        assert!(long.len() < 300, "the text quoted is bounded: {long}");
    }

    #[test]
    fn vote_durable_keeps_the_append_and_drops_what_follows() {
        let mut crash: CrashAt = "vote-durable:2".parse().unwrap();
        let step = || {
            vec![
                publish(),
                record(Record::Marks {
                    voted: None,
                    proposed: None,
                }),
                record(prevote(7)),
                send(
                    PeerMessage::Prevote(Prevote {
                        vote: vote(Kind::Prevote, 7),
                        header: header(7),
                    }),
                    7,
                ),
                record(precommit(7)),
            ]
        };
        let mut first = step();
        assert!(
            !crash.cut(&mut first, ServerId(2)),
            "the first time is counted"
        );
        assert_eq!(first.len(), 5, "and changes nothing");
        let mut none = vec![publish(), commit(6)];
        assert!(!crash.cut(&mut none, ServerId(2)), "no vote, no count");
        let mut second = step();
        assert!(crash.cut(&mut second, ServerId(2)));
        assert_eq!(words(&second), ["publish", "keep other", "keep prevote"]);
    }

    #[test]
    fn certificate_held_commits_and_drops_the_relay() {
        let mut crash: CrashAt = "certificate-held".parse().unwrap();
        // A commit taken from another server's relay is not one assembled here.
        let mut taken = vec![lock(8), commit(8), publish()];
        assert!(!crash.cut(&mut taken, ServerId(2)));
        // A lock of precommits sent for a refusal, with no commit of its slot.
        let mut refusal = vec![certified(Kind::Precommit, 5), commit(8)];
        assert!(!crash.cut(&mut refusal, ServerId(2)));
        let mut assembled = vec![
            record(precommit(9)),
            send(
                PeerMessage::Want {
                    slot: 9,
                    digest: Hash::default(),
                },
                9,
            ),
            lock(9),
            certified(Kind::Precommit, 9),
            commit(9),
            publish(),
            certified(Kind::Prevote, 10),
        ];
        assert!(crash.cut(&mut assembled, ServerId(2)));
        assert_eq!(
            words(&assembled),
            ["keep precommit", "send want All", "keep lock", "commit 9"]
        );
    }

    #[test]
    fn result_to_one_sends_the_relay_to_one_server_and_stops_there() {
        let mut crash: CrashAt = "result-to-one".parse().unwrap();
        let mut assembled = vec![lock(9), certified(Kind::Precommit, 9), commit(9), publish()];
        assert!(crash.cut(&mut assembled, ServerId(3)));
        assert_eq!(
            words(&assembled),
            ["keep lock", "send certified Only([ServerId(3)])"]
        );
    }
}

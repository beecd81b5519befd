//! Faults the simulator found, each a seed under a narrow profile: those
//! the round protocol fixed, kept as plain regression tests that must break
//! nothing ([`FIXED`]), and those still open, which must go on failing as
//! listed until they are fixed ([`KNOWN`]).
//!
//! **History.** Issue 8 built the simulator against the old decision (the
//! beta's simple majority of one round, RESULT, push) and listed its
//! faults: six kinds (1 to 6 below), each a narrow profile and a seed, and,
//! from a 20,000-seed search of its `ci` profile, the further findings
//! marked *found in issue 8*. Issue 9 replaced the decision with the round
//! protocol of docs/CONSENSUS.md; every one of those seeds now breaks
//! nothing, and runs on here as a regression test, its profile as it was
//! (the commands it drops renamed to the protocol's: a RESULT is now a
//! `certified` commit certificate, a vote a `prevote` or `precommit`).
//! Issue 9's own search found more (*found in issue 9*), each fixed and
//! kept here too. Fault 4, catch-up that trusted one server, is fixed: a
//! fetched block must prove itself, and a server whose fetch fails is
//! distrusted for a while. The long searches of stops 17 and 18 found
//! two more, `blockless-commit` and `torn-fork`, fixed since and kept in
//! [`FIXED`].
//!
//! A finding of issue 8's search replays on that issue's `ci` profile,
//! [`ISSUE_8_CI`] (today's `ci` is the full fault profile); a fault of the
//! six, on the quiet profile plus its fault.
//!
//! `cargo test` runs every entry: a fixed one must break nothing, a known
//! one must break the invariant listed; the day a known one passes (or
//! breaks another invariant), the test says so, and the entry moves to
//! [`FIXED`].

use crate::invariants::Invariant;
use crate::profile::Profile;
use crate::world::Report;

/// The `ci` profile of issue 8 (what the old decision survived), as flags
/// on top of the quiet profile: the findings of its search replay on it.
pub const ISSUE_8_CI: &[(&str, &str)] = &[
    ("servers-min", "3"),
    ("servers-max", "5"),
    ("duplicate-rate", "0.01"),
    ("duplicate-max-ms", "200"),
    ("reorder-rate", "0.01"),
    ("crash-rate", "0.03"),
    ("crash-in-vote", "false"),
    ("crash-max-behind", "1"),
    ("torn-rate", "0.5"),
    ("skew-max-ms", "100"),
    ("drift-max-ppm", "100"),
];

/// A known fault. See the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// The profile's name (`--profile <name>`).
    pub name: &'static str,
    /// The fault, as the issue that found it describes it.
    pub fault: &'static str,
    /// Whether the flags go on top of issue 8's `ci` profile
    /// ([`ISSUE_8_CI`]) rather than the quiet one.
    pub on_issue_8_ci: bool,
    /// The knobs set on top of the quiet profile (or issue 8's `ci`).
    pub flags: &'static [(&'static str, &'static str)],
    pub seed: u64,
    /// The invariant it breaks (a known fault), or broke before its fix.
    pub breaks: Invariant,
}

impl Known {
    /// The quiet profile (or issue 8's `ci`) with this fault's knobs.
    pub fn profile(&self) -> Profile {
        let mut p = Profile::quiet();
        let base = if self.on_issue_8_ci { ISSUE_8_CI } else { &[] };
        for (flag, value) in base.iter().chain(self.flags) {
            p.set(flag, value).expect("known-fault flags are valid");
        }
        p
    }

    /// The command that replays it.
    pub fn command(&self) -> String {
        format!("--profile {} --seed {}", self.name, self.seed)
    }

    /// Runs the seed and says how it went.
    pub fn check(&self) -> (Verdict, Report) {
        let report = crate::run(self.seed, &self.profile(), false);
        let verdict = match &report.failure {
            Some(f) if f.violation.invariant == self.breaks => Verdict::StillFailing,
            Some(f) => Verdict::FailsOtherwise(f.violation.invariant),
            None => Verdict::Passes,
        };
        (verdict, report)
    }
}

/// How a known fault's seed went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It broke the invariant expected: the fault is still there.
    StillFailing,
    /// It broke another invariant: look again.
    FailsOtherwise(Invariant),
    /// It passed: the fault is fixed, or the seed no longer reaches it.
    Passes,
}

/// Faults the round protocol fixed, and those found and fixed since:
/// each seed, under its narrow profile, must now break nothing.
pub const FIXED: &[Known] = &[
    Known {
        name: "forged-result",
        fault: "1. A decision on one server's word: a dishonest alpha's round minting a \
                million, with a commit certificate of its own signature alone",
        on_issue_8_ci: false,
        flags: &[("dishonest", "true"), ("lie-forge-result", "1")],
        seed: 1,
        breaks: Invariant::Supply,
    },
    Known {
        name: "forged-no-majority",
        fault: "1. A decision on one server's word: a forged 'no majority' stopped every \
                server; now an alpha that withholds its round stops no one",
        on_issue_8_ci: false,
        flags: &[("dishonest", "true"), ("lie-fail-result", "1")],
        seed: 4,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "replayed-round",
        fault: "2. A ROUND delivered again after its receiver restarted was applied a second \
                time on top of the state that already held it",
        on_issue_8_ci: false,
        flags: &[
            ("duplicate-rate", "0.3"),
            ("duplicate-max-ms", "4000"),
            ("crash-rate", "0.3"),
            ("crash-writes-max", "0"),
            ("restart-min-ms", "100"),
            ("restart-max-ms", "1000"),
        ],
        seed: 0,
        breaks: Invariant::OneVote,
    },
    Known {
        name: "votes-not-durable",
        fault: "3. Votes were not durable: the beta committed, its RESULT was lost, the voters \
                restarted, and a payment S reported committed was gone",
        on_issue_8_ci: false,
        flags: &[
            ("drop-only", "certified,precommit"),
            ("drop-rate", "0.9"),
            ("crash-rate", "0.5"),
            ("crash-writes-max", "0"),
            ("restart-min-ms", "100"),
            ("restart-max-ms", "500"),
            ("queries", "20"),
        ],
        seed: 10,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "beta-restart",
        fault: "3. A beta that restarted before its RESULT reached anyone rolled its own \
                committed round back (found in issue 8)",
        on_issue_8_ci: false,
        flags: &[
            ("drop-only", "certified,precommit"),
            ("drop-rate", "0.9"),
            ("crash-rate", "0.5"),
            ("crash-writes-max", "0"),
            ("restart-min-ms", "100"),
            ("restart-max-ms", "500"),
            ("queries", "20"),
        ],
        seed: 1,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "lost-message",
        fault: "5. One lost message stopped the network: lost votes and rounds must stop no \
                one",
        on_issue_8_ci: false,
        flags: &[("drop-only", "prevote,round"), ("drop-rate", "0.1")],
        seed: 1,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "clock-skew",
        fault: "6. Clock skew beyond the blackout made the next alpha refuse the round every \
                rotation; rounds no longer read a clock, and an alpha whose own clock is off \
                beyond the tolerance refuses payments saying by how much",
        on_issue_8_ci: false,
        flags: &[("skew-one-ms", "1500"), ("payments", "10")],
        seed: 0,
        breaks: Invariant::Timely,
    },
    Known {
        name: "clock-a-slot-off",
        fault: "6. With a skew of a whole slot the old beta closed its round after the next \
                one was applied, and stopped every rotation (found in issue 8)",
        on_issue_8_ci: false,
        flags: &[("skew-one-ms", "5000"), ("payments", "10")],
        seed: 1,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "equivocating-beta",
        fault: "1. An equivocating beta stopped the network: honest servers voted different \
                hashes and its failed RESULT stopped everyone (found in issue 8)",
        on_issue_8_ci: false,
        flags: &[("dishonest", "true"), ("lie-equivocate", "1")],
        seed: 2,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "stale-voter-two",
        fault: "A server catching up still voted, on its stale state: with two servers every \
                round failed and both stopped (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("servers-min", "2"), ("servers-max", "2")],
        seed: 25,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "stale-voters-four",
        fault: "Two stale servers of four split the vote two to two and the beta stopped \
                everyone (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("crash-max-behind", "7")],
        seed: 60,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "stale-voter-and-down",
        fault: "One server down and one voting a stale state stopped everyone (found in issue \
                8)",
        on_issue_8_ci: true,
        flags: &[],
        seed: 11120,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "no-majority-state-two",
        fault: "Without a majority on one state no server synced again: two servers one round \
                apart stayed in hash-compare forever (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("servers-min", "2"), ("servers-max", "2")],
        seed: 11,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "no-majority-state-four",
        fault: "Four servers split two and two after restarts stayed in hash-compare forever \
                (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("crash-in-vote", "true"), ("crash-max-behind", "7")],
        seed: 174,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "result-by-hash",
        fault: "A RESULT was matched by balance hash alone: a server that missed a round whose \
                payments cancel out committed it without its block, numbering its blocks one \
                lower (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[],
        seed: 2472,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "result-by-hash-cancel",
        fault: "A pays B 39 and B pays A 39 in one slot: the same fault (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[],
        seed: 18592,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "crash-inside-commit",
        fault: "A crash inside a commit lost a committed round: the majority crashed after its \
                vote and before its commit point (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("crash-in-vote", "true"), ("crash-max-behind", "7")],
        seed: 115,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "beta-cut-off",
        fault: "A partition that cut the beta off after it decided rolled its round back \
                (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("partition-rate", "0.1")],
        seed: 44,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "older-database",
        fault: "An older database was installed over a newer commit: fetched from a majority \
                not yet told of the round (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[],
        seed: 3227,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "older-database-late",
        fault: "The same, with late RESULTs (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("late-rate", "0.03"), ("late-max-ms", "1500")],
        seed: 390,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "beta-clock-behind",
        fault: "A beta whose clock jumped behind by more than a blackout closed its round \
                after the next one was applied, and stopped (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("jump-rate", "0.05"), ("jump-max-ms", "3000")],
        seed: 24,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "late-links",
        fault: "A link held up for more than three heartbeats looked dead and the servers \
                stopped (found in issue 8)",
        on_issue_8_ci: true,
        flags: &[("late-rate", "0.02")],
        seed: 1,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "fetched-block-twice",
        fault: "A payment in two blocks: a round whose block was fetched while catching up got \
                a second block at its commit (found in issue 9, fixed in src/ledger/edge/commit.rs)",
        on_issue_8_ci: true,
        flags: &[],
        seed: 256,
        breaks: Invariant::Once,
    },
    Known {
        name: "held-then-lost",
        fault: "An alpha that refused a payment it had held for itself (catching up after a \
                restart) said it was lost before any commit decided its slot (found in issue \
                9, fixed in src/ledger/core/accept.rs)",
        on_issue_8_ci: false,
        flags: &[
            ("servers-min", "2"),
            ("servers-max", "2"),
            ("slots", "6"),
            ("crash-rate", "0.03"),
        ],
        seed: 62,
        breaks: Invariant::CommittedStays,
    },
    Known {
        name: "stalled-apart",
        fault: "Servers left on different committed rounds by a crash inside a commit, with \
                no majority on either, never synced again: no alpha opened, no round came to \
                carry the certificates (found in issue 9, fixed in src/ledger/consensus)",
        on_issue_8_ci: false,
        flags: &[
            ("servers-min", "2"),
            ("servers-max", "2"),
            ("slots", "3"),
            ("crash-rate", "0.03"),
        ],
        seed: 20,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "empty-round-unfetchable",
        fault: "A server behind an empty round that every server holding it had restarted \
                past (so none could answer its want) stalled, and with it the rounds that \
                needed its vote (found in issue 9, fixed in src/ledger/consensus)",
        on_issue_8_ci: false,
        flags: &[
            ("servers-min", "4"),
            ("servers-max", "4"),
            ("slots", "6"),
            ("drop-rate", "0.01"),
            ("partition-rate", "0.05"),
            ("crash-rate", "0.03"),
            ("dishonest", "true"),
            ("lie-forge-result", "0.05"),
            ("lie-fail-result", "0.05"),
            ("lie-equivocate", "0.1"),
            ("lie-vote", "0.1"),
            ("lie-replay", "0.2"),
            ("bad-payments", "0"),
            ("resubmit", "0"),
        ],
        seed: 34684,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "blockless-commit",
        fault: "A server that committed a round while it was catching up (after a restart) \
                built no block for it; when no server it could reach showed that block's \
                height, its connector found it in step and its next block took that number \
                (found in issue 9's long search; now a server whose last block left its \
                committed state builds the blocks of what it commits, in sync or not)",
        on_issue_8_ci: false,
        flags: &[
            ("reorder-rate", "0.005"),
            ("drop-rate", "0.01"),
            ("crash-rate", "0.03"),
            ("torn-rate", "0.5"),
            ("jump-max-ms", "3000"),
            ("bound-share", "0.5"),
            ("bad-payments", "0"),
            ("resubmit", "0"),
        ],
        seed: 62663,
        breaks: Invariant::Prefix,
    },
    Known {
        name: "lying-status",
        fault: "4. Catch-up trusted one server: one that claimed more blocks and never \
                answered kept everyone out of sampling (now a source whose fetch times out is \
                distrusted, and another holder of the majority's state is fetched from)",
        on_issue_8_ci: false,
        flags: &[
            ("dishonest", "true"),
            ("lie-status", "1"),
            ("lie-withhold", "1"),
        ],
        seed: 0,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "forged-blocks",
        fault: "4. Catch-up trusted one server: its made-up blocks were appended (now a fetched \
                block must prove itself), and its lying status kept a lagging server asking it \
                alone (now it is distrusted once a fetch from it times out)",
        on_issue_8_ci: false,
        flags: &[
            ("dishonest", "true"),
            ("lie-status", "1"),
            ("lie-blocks", "1"),
            ("crash-rate", "0.2"),
        ],
        seed: 4,
        breaks: Invariant::Liveness,
    },
    Known {
        name: "torn-fork",
        fault: "A restarted server installed the majority's database, and its only source of \
                the blocks (the dishonest server) sent a made-up one; with that source \
                distrusted and no other holder reachable, its connector found it in step one \
                block short, and its next block took the missing one's number (found by the \
                long search of stop 18; now blocks are built only when the last block left \
                the committed state, in sync or not)",
        on_issue_8_ci: false,
        flags: &[
            ("slots", "6"),
            ("crash-rate", "0.03"),
            ("torn-rate", "0.5"),
            ("jump-max-ms", "3000"),
            ("dishonest", "true"),
            ("bound-share", "0.5"),
            ("lie-replay", "0.2"),
            ("lie-blocks", "0.1"),
        ],
        seed: 99566,
        breaks: Invariant::Prefix,
    },
];

/// The faults still open: each seed must break the invariant listed; a
/// fault the long search finds is kept here until fixed.
pub const KNOWN: &[Known] = &[];

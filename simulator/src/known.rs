//! The faults the protocol is known to have, each as a seed that fails
//! ([`KNOWN`]), and those the round protocol fixed, each kept as a plain
//! regression seed that must break nothing ([`FIXED`]).
//!
//! The four faults of the old single-beta decision (a RESULT on one
//! server's word, a replayed ROUND applied twice, votes that were not
//! durable, one lost message stopping the network) were fixed when the
//! round protocol of docs/CONSENSUS.md replaced it; their seeds and narrow
//! profiles run on as regression tests, with the commands they drop renamed
//! to the protocol's (a RESULT is now a `certified` commit certificate, a
//! vote a `prevote` or `precommit`). The catch-up and clock faults remain.
//!
//! Each entry is a narrow profile (the quiet one, plus the one fault), a
//! seed, and the invariant the run must break. `cargo test` runs them all
//! and passes while every one still fails as expected; the day one passes
//! (or breaks another invariant), the test fails and says which, so the
//! protocol's next version turns it into a plain regression test (move the
//! entry to the passing list in the test, or drop it here).
//!
//! Because each profile carries only its fault, an entry keeps failing for
//! its own reason even as unrelated code changes move a seed's course; the
//! seed is one the search found for that profile, and most seeds of the
//! profile fail the same way.

use crate::invariants::Invariant;
use crate::profile::Profile;
use crate::world::Report;

/// A known fault. See the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// The profile's name (`--profile <name>`).
    pub name: &'static str,
    /// The fault, as the issue that found it describes it.
    pub fault: &'static str,
    /// The knobs set on top of the quiet profile.
    pub flags: &'static [(&'static str, &'static str)],
    pub seed: u64,
    pub breaks: Invariant,
}

impl Known {
    /// The quiet profile with this fault's knobs.
    pub fn profile(&self) -> Profile {
        let mut p = Profile::quiet();
        for (flag, value) in self.flags {
            p.set(flag, value).expect("known-fault flags are valid");
        }
        p
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

/// Faults of the old protocol the round protocol fixed: each seed, under
/// its narrow profile, must now break nothing.
pub const FIXED: &[Known] = &[
    Known {
        name: "forged-result",
        fault: "1. A decision on one server's word: a dishonest alpha's round minting money, \
                with a commit certificate of its own signature alone",
        flags: &[("dishonest", "true"), ("lie-forge-result", "1")],
        seed: 1,
        breaks: Invariant::Supply,
    },
    Known {
        name: "forged-no-majority",
        fault: "1. A decision on one server's word: an alpha that withholds its round stops \
                no one",
        flags: &[("dishonest", "true"), ("lie-fail-result", "1")],
        seed: 4,
        breaks: Invariant::NoStop,
    },
    Known {
        name: "replayed-round",
        fault: "2. A ROUND delivered again after its receiver restarted is applied a second \
                time on top of the state that already holds it",
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
        fault: "3. Votes are not durable: commit certificates are lost, the voters restart, \
                and a payment S reported committed must still be there",
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
        name: "lost-message",
        fault: "5. One lost message stops the network: lost votes and rounds must stop no one",
        flags: &[("drop-only", "prevote,round"), ("drop-rate", "0.1")],
        seed: 1,
        breaks: Invariant::NoStop,
    },
];

/// The known faults.
pub const KNOWN: &[Known] = &[
    Known {
        name: "lying-status",
        fault: "4. Catch-up trusts one server: one that claims more blocks and never answers \
                keeps everyone out of sampling",
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
        fault: "4. Catch-up trusts one server: blocks from it are checked only for shape, \
                chaining and merkle root",
        flags: &[
            ("dishonest", "true"),
            ("lie-status", "1"),
            ("lie-blocks", "1"),
            ("crash-rate", "0.2"),
        ],
        seed: 4,
        // Under the round protocol the lying status keeps the others out
        // of sampling first, so the run fails on liveness before a forged
        // block can matter (issue 10).
        breaks: Invariant::Liveness,
    },
    Known {
        name: "clock-skew",
        fault: "6. Clock skew beyond the blackout makes the next alpha refuse the round \
                every rotation, and nothing says why",
        flags: &[("skew-one-ms", "1500"), ("payments", "10")],
        seed: 0,
        breaks: Invariant::Timely,
    },
];

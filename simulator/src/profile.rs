//! The fault profile: every rate and bound of a run, each with its flag.
//!
//! A [`Profile`] is a plain struct of knobs. The [`knobs!`] list below is the
//! one place a knob is declared: its field, its flag, its default in the
//! quiet profile and its one-line meaning, from which the command line
//! (`--<flag> <value>`), `--help` and the table in docs/SIMULATOR.md are
//! kept (a test checks the guide names every flag). Named presets start
//! from the quiet profile ([`Profile::quiet`], no faults at all) and turn
//! faults on:
//!
//! - `full`: every fault at once, the dishonest server included, for the
//!   long search;
//! - `ci`: the same on one to five servers; `cargo test` runs a window of it;
//! - each regression seed's and open fault's profile (`known.rs`): quiet,
//!   plus the fault (or issue 8's `ci` profile plus its flags).
//!
//! Rates are probabilities per opportunity (per message, per server and
//! slot, per slot); bounds are in simulated milliseconds.

use std::fmt::Write as _;

/// Declares the knobs: field, type, flag, quiet default, and meaning.
macro_rules! knobs {
    ($( $field:ident : $ty:ty = $default:expr, $flag:literal, $doc:literal; )*) => {
        /// Every rate and bound of a run. See the module documentation.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Profile {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl Profile {
            /// No faults at all: three honest servers, a reliable network,
            /// true clocks, clients paying.
            pub fn quiet() -> Profile {
                Profile { $( $field: $default, )* }
            }

            /// Every knob's flag and meaning, in declaration order.
            pub const FLAGS: &'static [(&'static str, &'static str)] = &[ $( ($flag, $doc), )* ];

            /// Sets the knob named by `flag` from its text.
            pub fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
                match flag {
                    $( $flag => self.$field = Knob::parse(value)
                        .ok_or_else(|| format!("--{flag}: cannot read {value:?}"))?, )*
                    _ => return Err(format!("unknown flag --{flag}; see --help")),
                }
                Ok(())
            }

            /// Every knob as `(flag, value)`, in declaration order.
            pub fn values(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($flag, Knob::show(&self.$field)), )* ]
            }
        }
    };
}

/// A knob's value type: read from and shown as text.
pub trait Knob: Sized {
    fn parse(text: &str) -> Option<Self>;
    fn show(&self) -> String;
}

macro_rules! plain_knob {
    ($($ty:ty),*) => {$(
        impl Knob for $ty {
            fn parse(text: &str) -> Option<Self> {
                text.parse().ok()
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

plain_knob!(u64, u32, usize, f64, bool);

impl Knob for String {
    fn parse(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

knobs! {
    servers_min: usize = 3, "servers-min", "Fewest servers in a run (1 to 7); each run draws its count between this and --servers-max.";
    servers_max: usize = 3, "servers-max", "Most servers in a run (1 to 7).";
    slots: u64 = 12, "slots", "Slots of the fault phase; then every fault heals.";
    heal_slots: u64 = 8, "heal-slots", "Slots after the heal within which rounds must commit again on every honest server (K).";
    slot_ms: u64 = 5_000, "slot-ms", "Slot length, as in the conf.";
    blackout_ms: u64 = 1_250, "blackout-ms", "Blackout at the end of each slot, as in the conf.";
    tolerance_ms: u64 = 500, "tolerance-ms", "Payment timestamp tolerance, as in the conf.";
    heartbeat_ms: u64 = 1_250, "heartbeat-ms", "Heartbeat interval, as in the conf.";
    missed_heartbeats: u32 = 3, "missed-heartbeats", "Heartbeats missed before a server is failed, as in the conf.";
    difficulty: u32 = 6, "difficulty", "The chain's seal difficulty, as mining.difficulty_bits in the conf (0: blocks are not sealed). Low, so that the real search the simulated search threads run is cheap.";
    delay_min_ms: u64 = 1, "delay-min-ms", "Shortest one-way delay of a message.";
    delay_max_ms: u64 = 30, "delay-max-ms", "Longest ordinary one-way delay of a message.";
    late_rate: f64 = 0.0, "late-rate", "Chance a message is late: held up to --late-max-ms more (its link stays in order behind it).";
    late_max_ms: u64 = 5_000, "late-max-ms", "Longest extra delay of a late message.";
    reorder_rate: f64 = 0.0, "reorder-rate", "Chance a message overtakes the ones sent before it on its link.";
    drop_rate: f64 = 0.0, "drop-rate", "Chance a server-to-server message is lost.";
    drop_only: String = String::new(), "drop-only", "Commands that may be lost, comma-separated (round,prevote,precommit,certified,evidence,want,forward,register,heart,query,reply); empty for all.";
    duplicate_rate: f64 = 0.0, "duplicate-rate", "Chance a message is delivered twice, the copy up to --duplicate-max-ms later.";
    duplicate_max_ms: u64 = 5_000, "duplicate-max-ms", "Longest delay of a duplicate after the original.";
    partition_rate: f64 = 0.0, "partition-rate", "Chance per slot that the servers split in two groups that cannot talk.";
    partition_max_ms: u64 = 12_000, "partition-max-ms", "Longest partition before it heals.";
    crash_rate: f64 = 0.0, "crash-rate", "Chance per server and slot of a crash.";
    crash_writes_max: u64 = 4, "crash-writes-max", "A crash falls before one of the server's next 0..=this durable writes (0: at once).";
    torn_rate: f64 = 0.0, "torn-rate", "Chance a crash at a file write tears it (a .tmp with its first bytes is left).";
    crash_in_vote: bool = true, "crash-in-vote", "Whether a crash may fall between a server's vote and the commit of its slot (false: a crash waits; one armed on later writes may still fall inside the commit).";
    crash_max_behind: usize = 7, "crash-max-behind", "A crash is taken only while fewer than this many servers are down or catching up (not sampling).";
    restart_min_ms: u64 = 500, "restart-min-ms", "Shortest time a crashed server stays down.";
    restart_max_ms: u64 = 10_000, "restart-max-ms", "Longest time a crashed server stays down.";
    skew_max_ms: u64 = 0, "skew-max-ms", "Largest starting clock offset of a server, either way.";
    skew_one_ms: u64 = 0, "skew-one-ms", "One server's clock is off by exactly this, either way (0: none).";
    drift_max_ppm: u64 = 0, "drift-max-ppm", "Largest clock drift of a server, in parts per million, either way.";
    jump_rate: f64 = 0.0, "jump-rate", "Chance per server and slot that its clock jumps.";
    jump_max_ms: u64 = 0, "jump-max-ms", "Largest clock jump, either way.";
    dishonest: bool = false, "dishonest", "Whether one server (of 3 or more) is dishonest; the lie rates below say what it does.";
    bound_share: f64 = 1.0, "bound-share", "With a dishonest server and an odd number of servers: the share of runs that keep the honest servers within the timing bound odd-N safety rests on (no loss, late message, partition, clock jump or crash among them), in which alone it equivocates and ignores its lock.";
    lie_beyond_bound: bool = false, "lie-beyond-bound", "Let the dishonest server equivocate and ignore its lock in odd-N runs outside the bound too: what the bound buys (safety can then break, docs/CONSENSUS.md §5.3).";
    lie_forge_result: f64 = 0.0, "lie-forge-result", "Chance the dishonest alpha signs its round with a result minting a million, and sends a commit certificate of its own signature alone.";
    lie_fail_result: f64 = 0.0, "lie-fail-result", "Chance the dishonest alpha withholds its round from everyone.";
    lie_equivocate: f64 = 0.0, "lie-equivocate", "Chance the dishonest alpha signs a second header for its slot, sends each header to part of the servers, and votes for each there.";
    lie_ignore_lock: f64 = 0.0, "lie-ignore-lock", "Chance per slot of another alpha that the dishonest server prevotes every header it sees, whatever its lock, and precommits every one it holds a prevote certificate for.";
    lie_vote: f64 = 0.0, "lie-vote", "Chance the dishonest server's prevote carries a signature on a made-up header.";
    lie_replay: f64 = 0.0, "lie-replay", "Chance per slot the dishonest server replays one of its old messages, of any kind, to a server.";
    lie_status: f64 = 0.0, "lie-status", "Chance the dishonest server's status claims 1000 blocks more than it has.";
    lie_withhold: f64 = 0.0, "lie-withhold", "Chance the dishonest server never answers a D or B request.";
    lie_blocks: f64 = 0.0, "lie-blocks", "Chance the dishonest server answers B with a made-up block that chains on its own.";
    lie_clock: f64 = 0.0, "lie-clock", "Chance the dishonest server's answer to a register or heart gives a clock up to ten tolerances off its own, and says it sits its slots out or not at random.";
    accounts: usize = 4, "accounts", "Client accounts in the genesis.";
    balance: u32 = 1_000, "balance", "Each account's genesis balance.";
    payments: f64 = 2.0, "payments", "Payments submitted per slot, on average, each to a random server.";
    bad_payments: f64 = 0.2, "bad-payments", "Share of payments that must be refused (zero, to oneself, unknown payer, more than the supply, stale).";
    resubmit: f64 = 0.1, "resubmit", "Share of submissions that send an earlier payment again, to a random server.";
    queries: f64 = 3.0, "queries", "S queries per slot, on average, for a random earlier payment at a random server.";
    client_skew_ms: u64 = 100, "client-skew-ms", "Largest offset of a client's clock, either way.";
}

impl Profile {
    /// A preset by name: `quiet`, `ci`, `full`, or a known fault's.
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "quiet" => Some(Profile::quiet()),
            "ci" => Some(Profile::ci()),
            "full" => Some(Profile::full()),
            other => crate::known::KNOWN
                .iter()
                .chain(crate::known::FIXED)
                .find(|k| k.name == other)
                .map(|k| k.profile()),
        }
    }

    /// The full fault profile on small clusters, for `cargo test`: one to
    /// five servers, every fault of [`Profile::full`] at its rates but the
    /// catch-up lies.
    pub fn ci() -> Profile {
        let mut p = Profile::full();
        p.servers_max = 5;
        // The catch-up lies, on in the full profile since catch-up stopped
        // trusting one server, stay off here so that the seeds the tests
        // keep replay as they did; the known-fault seeds `lying-status` and
        // `forged-blocks` tell them in CI.
        p.lie_status = 0.0;
        p.lie_withhold = 0.0;
        p.lie_blocks = 0.0;
        p.lie_clock = 0.0;
        p
    }

    /// Every fault at once, for the long search: one to seven servers;
    /// messages late, reordered, lost and duplicated; partitions; crashes
    /// between any two durable writes, tearing files; clocks off, drifting
    /// and jumping; one dishonest server telling every lie of the round
    /// protocol and of catch-up (a status claiming blocks it lacks, `D` and
    /// `B` withheld, made-up blocks).
    pub fn full() -> Profile {
        let mut p = Profile::quiet();
        p.servers_min = 1;
        p.servers_max = 7;
        p.late_rate = 0.005;
        p.reorder_rate = 0.005;
        p.drop_rate = 0.01;
        p.duplicate_rate = 0.01;
        p.partition_rate = 0.05;
        p.crash_rate = 0.03;
        p.torn_rate = 0.5;
        p.skew_max_ms = 300;
        p.drift_max_ppm = 200;
        p.jump_rate = 0.01;
        p.jump_max_ms = 3_000;
        p.dishonest = true;
        p.bound_share = 0.5;
        p.lie_forge_result = 0.05;
        p.lie_fail_result = 0.05;
        p.lie_equivocate = 0.1;
        p.lie_ignore_lock = 0.1;
        p.lie_vote = 0.1;
        p.lie_replay = 0.2;
        p.lie_status = 0.1;
        p.lie_withhold = 0.1;
        p.lie_blocks = 0.1;
        p.lie_clock = 0.1;
        p
    }

    /// The same profile once faults heal: no more loss, lateness,
    /// reordering, duplicates, partitions, crashes or clock jumps. Clocks
    /// keep their offsets and drift, and the dishonest server its lies.
    pub fn healed(&self) -> Profile {
        let mut p = self.clone();
        p.late_rate = 0.0;
        p.reorder_rate = 0.0;
        p.drop_rate = 0.0;
        p.duplicate_rate = 0.0;
        p.partition_rate = 0.0;
        p.crash_rate = 0.0;
        p.jump_rate = 0.0;
        p
    }

    /// Whether a message of `command` may be lost.
    pub fn may_drop(&self, command: &str) -> bool {
        self.drop_only.is_empty() || self.drop_only.split(',').any(|c| c.trim() == command)
    }

    /// Checks the bounds that the simulator relies on.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.servers_min) || !(1..=7).contains(&self.servers_max) {
            return Err("--servers-min and --servers-max must be 1 to 7".into());
        }
        if self.servers_min > self.servers_max {
            return Err("--servers-min must not exceed --servers-max".into());
        }
        if self.slot_ms < 100 || self.blackout_ms >= self.slot_ms {
            return Err("--slot-ms must be at least 100 and above --blackout-ms".into());
        }
        if self.blackout_ms <= 2 * self.tolerance_ms {
            return Err("--blackout-ms must exceed twice --tolerance-ms".into());
        }
        if self.slot_ms / 4 <= self.tolerance_ms {
            return Err(
                "--slot-ms / 4 must exceed --tolerance-ms: the votes' deadlines are a quarter \
                 slot apart and each must hold a message's travel plus the clock bound"
                    .into(),
            );
        }
        if self.heartbeat_ms == 0 || self.missed_heartbeats == 0 {
            return Err("--heartbeat-ms and --missed-heartbeats must be above 0".into());
        }
        if self.delay_min_ms > self.delay_max_ms || self.restart_min_ms > self.restart_max_ms {
            return Err("each minimum must not exceed its maximum".into());
        }
        if self.accounts < 2 || self.accounts > 64 {
            return Err("--accounts must be 2 to 64".into());
        }
        if self.slots == 0 || self.heal_slots == 0 {
            return Err("--slots and --heal-slots must be above 0".into());
        }
        Ok(())
    }

    /// The knobs that differ from `base`, as flags to reproduce them.
    pub fn flags_from(&self, base: &Profile) -> String {
        let mut out = String::new();
        for ((flag, value), (_, was)) in self.values().into_iter().zip(base.values()) {
            if value != was {
                let _ = write!(out, " --{flag} {value}");
            }
        }
        out
    }

    /// The flags' help, for `--help`.
    pub fn help() -> String {
        let mut out = String::new();
        let quiet = Profile::quiet().values();
        for ((flag, doc), (_, default)) in Profile::FLAGS.iter().zip(quiet) {
            let _ = writeln!(out, "  --{flag} <{default}>\n      {doc}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_flags_round_trip() {
        for name in ["quiet", "ci", "full"] {
            let p = Profile::named(name).unwrap();
            p.validate().unwrap();
            let mut back = Profile::quiet();
            let flags = p.flags_from(&Profile::quiet());
            let words: Vec<&str> = flags.split_whitespace().collect();
            for pair in words.chunks(2) {
                back.set(pair[0].trim_start_matches("--"), pair[1]).unwrap();
            }
            assert_eq!(back, p, "{name}");
        }
    }

    #[test]
    fn an_unknown_flag_or_value_is_refused() {
        let mut p = Profile::quiet();
        assert!(p.set("no-such", "1").is_err());
        assert!(p.set("drop-rate", "lots").is_err());
    }
}

//! The simulator in CI: a few hundred seeds under the profile today's
//! protocol survives, the known faults still failing as expected, exact
//! replay, shrinking, and the guide kept in step with the flags.
//!
//! Seeds are fixed, so the tests are deterministic; `ROTA_SIM_SEEDS=<first>`
//! moves the window of seeds to try others (docs/SIMULATOR.md).

use rota_simulator::known::{FIXED, KNOWN, Verdict};
use rota_simulator::profile::Profile;
use rota_simulator::search::{search, shrink};
use rota_simulator::{Invariant, run};

/// The first seed of the CI window.
fn first_seed() -> u64 {
    std::env::var("ROTA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Fails with every broken invariant and the seeds that broke it.
fn assert_holds(profile: &str, p: &Profile, seeds: u64) {
    let summary = search(p, first_seed(), seeds, threads());
    let mut broken = String::new();
    for (invariant, (count, seeds)) in &summary.failures {
        broken.push_str(&format!("\n{invariant}: {count} seeds"));
        for (seed, detail) in seeds {
            broken.push_str(&format!(
                "\n  cargo run -p rota-simulator -- --profile {profile} --seed {seed}: {detail}"
            ));
        }
    }
    assert!(broken.is_empty(), "{broken}");
    assert_eq!(summary.seeds, seeds);
    assert!(summary.rounds > seeds * 10, "{} rounds", summary.rounds);
}

#[test]
fn the_ci_profile_holds_on_three_hundred_seeds() {
    let p = Profile::ci();
    assert_holds("ci", &p, 300);
}

/// One and two servers: two survive no crash (docs/SIMULATOR.md), so the
/// small clusters run the CI profile without crashes.
#[test]
fn one_and_two_servers_survive_the_ci_profile_without_crashes() {
    let mut p = Profile::ci();
    p.servers_min = 1;
    p.servers_max = 2;
    p.crash_rate = 0.0;
    assert_holds("ci --servers-min 1 --servers-max 2 --crash-rate 0", &p, 60);
}

#[test]
fn every_known_fault_still_fails_as_expected() {
    let mut surprises = Vec::new();
    for known in KNOWN {
        let (verdict, report) = known.check();
        match verdict {
            Verdict::StillFailing => {}
            Verdict::FailsOtherwise(other) => surprises.push(format!(
                "{} (--profile {} --seed {}) now breaks {other}, not {}: {:?}",
                known.fault,
                known.name,
                known.seed,
                known.breaks,
                report.failure.map(|f| f.violation.detail)
            )),
            Verdict::Passes => surprises.push(format!(
                "{} (--profile {} --seed {}) passes: if the protocol fixed it, make it a \
                 regression test and drop it from known.rs",
                known.fault, known.name, known.seed
            )),
        }
    }
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}

#[test]
fn every_fixed_fault_stays_fixed() {
    let mut broken = Vec::new();
    for fixed in FIXED {
        let (verdict, report) = fixed.check();
        if verdict != Verdict::Passes {
            broken.push(format!(
                "{} (--profile {} --seed {}) breaks {:?}",
                fixed.fault,
                fixed.name,
                fixed.seed,
                report.failure.map(|f| f.violation.detail)
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_known_and_fixed_faults_cover_the_issue_s_six() {
    for item in 1..=6 {
        let prefix = format!("{item}. ");
        assert!(
            KNOWN
                .iter()
                .chain(FIXED)
                .any(|k| k.fault.starts_with(&prefix)),
            "fault {item} has no seed"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let p = Profile::full();
    for seed in [3, 17] {
        let first = format!("{:?}", run(seed, &p, false));
        let second = format!("{:?}", run(seed, &p, false));
        assert_eq!(first, second, "seed {seed}");
    }
    let a = run(3, &p, false);
    let b = run(4, &p, false);
    assert_ne!((a.steps, a.faults), (b.steps, b.faults), "seeds differ");
}

#[test]
fn a_failure_names_its_seed_step_invariant_and_trace() {
    let known = KNOWN.iter().find(|k| k.name == "lying-status").unwrap();
    let report = run(known.seed, &known.profile(), false);
    let failure = report.failure.expect("the lying status breaks liveness");
    assert_eq!(report.seed, known.seed);
    assert_eq!(failure.violation.invariant, Invariant::Liveness);
    assert!(failure.step > 0);
    assert!(!failure.trace.is_empty() && failure.trace.len() <= 41);
}

#[test]
fn shrinking_keeps_the_invariant_and_drops_the_faults_that_do_not_matter() {
    let known = KNOWN.iter().find(|k| k.name == "lying-status").unwrap();
    // The lying status, buried in every other fault.
    let mut p = Profile::full();
    p.servers_min = 3;
    p.servers_max = 3;
    p.lie_status = 1.0;
    p.lie_withhold = 1.0;
    let seed = (0..50)
        .find(|seed| {
            run(*seed, &p, false)
                .failure
                .is_some_and(|f| f.violation.invariant == known.breaks)
        })
        .expect("some seed shows the lying status");
    let (smallest, report) = shrink(seed, &p).expect("the seed fails");
    assert_eq!(report.failure.unwrap().violation.invariant, known.breaks);
    assert_eq!(smallest.lie_status, 1.0);
    assert_eq!(smallest.drop_rate, 0.0, "loss does not matter here");
    assert_eq!(
        smallest.partition_rate, 0.0,
        "partitions do not matter here"
    );
    assert!(smallest.slots <= p.slots);
}

#[test]
fn the_guide_documents_every_flag_invariant_and_known_fault() {
    let guide = include_str!("../../docs/SIMULATOR.md");
    for (flag, _) in Profile::FLAGS {
        assert!(
            guide.contains(&format!("`--{flag}`")),
            "--{flag} is not in the guide"
        );
    }
    for invariant in Invariant::ALL {
        assert!(
            guide.contains(&format!("`{}`", invariant.name())),
            "invariant {invariant} is not in the guide"
        );
    }
    for known in KNOWN.iter().chain(FIXED) {
        assert!(
            guide.contains(&format!("`{}`", known.name)),
            "known fault {} is not in the guide",
            known.name
        );
    }
}

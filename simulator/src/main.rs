//! The simulator's command line: replay a seed, search many, shrink one,
//! or check the known faults. See `--help` and docs/SIMULATOR.md.

use std::process::ExitCode;

use rota_simulator::known::{FIXED, KNOWN, Known, Verdict};
use rota_simulator::profile::Profile;
use rota_simulator::search::{search, shrink};
use rota_simulator::world::Report;

const USAGE: &str = "\
rota-simulator: a rota cluster in one process, deterministically

usage:
  rota-simulator --seed S [--trace] [--shrink] [profile options]
  rota-simulator [--seeds N] [--from S] [--threads T] [profile options]
  rota-simulator --known

  --seed S        run seed S and report it; exits 1 if an invariant breaks
  --trace         with --seed: print every message, event and fault
  --shrink        with --seed: turn faults off while the same invariant
                  still breaks, and print the smallest profile as flags
  --seeds N       run N seeds (default 100) on every core, from --from
                  (default 0), and print the seeds, simulated rounds and
                  faults run, and every invariant broken with its seeds
  --threads T     threads for --seeds (default: every core)
  --known         run each known fault's seed and say whether it still
                  fails, and each fixed one's and say whether it passes
  --profile NAME  quiet, ci, full (the default) or a known fault's name;
                  the options below change it

profile options, each with the quiet profile's value:
";

/// What the command line asks for.
struct Command {
    seed: Option<u64>,
    seeds: u64,
    from: u64,
    threads: usize,
    trace: bool,
    shrink: bool,
    known: bool,
    profile: Profile,
    base: Profile,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let profile_name = args
        .iter()
        .position(|a| a == "--profile")
        .map(|i| args.get(i + 1).cloned().ok_or("--profile needs a name"))
        .transpose()?
        .unwrap_or_else(|| "full".into());
    let base = Profile::named(&profile_name)
        .ok_or_else(|| format!("no profile {profile_name:?}: quiet, ci, full or a known fault"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut command = Command {
        seed: None,
        seeds: 100,
        from: 0,
        threads,
        trace: false,
        shrink: false,
        known: false,
        profile: base.clone(),
        base,
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let Some(flag) = word.strip_prefix("--") else {
            return Err(format!("unexpected {word:?}; see --help"));
        };
        let mut value = || {
            words
                .next()
                .cloned()
                .ok_or_else(|| format!("--{flag} needs a value"))
        };
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("--{flag}: {text:?} is not a number"))
        };
        match flag {
            "help" => return Err(String::new()),
            "trace" => command.trace = true,
            "shrink" => command.shrink = true,
            "known" => command.known = true,
            "profile" => {
                value()?;
            }
            "seed" => command.seed = Some(number(value()?)?),
            "seeds" => command.seeds = number(value()?)?,
            "from" => command.from = number(value()?)?,
            "threads" => command.threads = number(value()?)?.max(1) as usize,
            knob => command.profile.set(knob, &value()?)?,
        }
    }
    command.profile.validate()?;
    Ok(command)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("{error}\n");
            }
            eprint!("{USAGE}{}", Profile::help());
            return ExitCode::from(2);
        }
    };
    if command.known {
        return known();
    }
    if let Some(seed) = command.seed {
        return replay(&command, seed);
    }
    std::panic::set_hook(Box::new(|_| {}));
    let summary = search(
        &command.profile,
        command.from,
        command.seeds,
        command.threads,
    );
    let flags = command.profile.flags_from(&command.base);
    println!("profile: {}{flags}", profile_name(&args));
    summary.print(command.threads);
    if summary.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn profile_name(args: &[String]) -> String {
    args.iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "full".into())
}

/// Runs one seed, and shrinks it when asked.
fn replay(command: &Command, seed: u64) -> ExitCode {
    if command.trace {
        trace_logs();
    } else {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let report = rota_simulator::run(seed, &command.profile, command.trace);
    print_report(&report);
    if report.failure.is_none() {
        return ExitCode::SUCCESS;
    }
    if command.shrink {
        std::panic::set_hook(Box::new(|_| {}));
        if let Some((smallest, report)) = shrink(seed, &command.profile) {
            println!(
                "\nsmallest profile found: --profile quiet{} --seed {seed}",
                smallest.flags_from(&Profile::quiet())
            );
            print_report(&report);
        }
    }
    ExitCode::FAILURE
}

/// With `--trace`, the nodes' own log lines (warnings and errors, or
/// what `RUST_LOG` asks for) are printed among the trace's, in order: the
/// run is one thread, so each one follows the step that wrote it.
fn trace_logs() {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stdout)
        .format(|out, record| {
            let level = record.level().as_str().to_lowercase();
            writeln!(out, "                  log {level}: {}", record.args())
        })
        .init();
}

fn print_report(report: &Report) {
    let dishonest = report.dishonest.map_or("none dishonest".to_string(), |id| {
        format!("s{id} dishonest")
    });
    println!(
        "seed {}: {} servers ({dishonest}), {} steps, {} slots decided ({} committed, {} lost), \
         {} faults, {} payments ({} committed)",
        report.seed,
        report.servers,
        report.steps,
        report.rounds.decided(),
        report.rounds.committed,
        report.rounds.lost,
        report.faults.total(),
        report.payments,
        report.committed
    );
    match &report.failure {
        None => println!("every invariant held"),
        Some(failure) => {
            println!(
                "BROKEN at step {} ({}): {}: {}\n  ({})\nlast lines of the trace:",
                failure.step,
                rota_simulator::trace::stamp(failure.time),
                failure.violation.invariant,
                failure.violation.detail,
                failure.violation.invariant.meaning()
            );
            for line in &failure.trace {
                println!("  {line}");
            }
        }
    }
}

/// Runs each known fault and says whether it still fails, then each fixed
/// one and says whether it still passes.
fn known() -> ExitCode {
    std::panic::set_hook(Box::new(|_| {}));
    let mut all = true;
    for known in KNOWN {
        let (verdict, report) = known.check();
        let said = match verdict {
            Verdict::StillFailing => "still failing".to_string(),
            Verdict::FailsOtherwise(other) => {
                all = false;
                format!("FAILS OTHERWISE: {other}, expected {}", known.breaks)
            }
            Verdict::Passes => {
                all = false;
                "PASSES: fixed? move it to FIXED in known.rs".to_string()
            }
        };
        print_verdict(known, &said, &report);
    }
    for fixed in FIXED {
        let (verdict, report) = fixed.check();
        let said = match verdict {
            Verdict::Passes => "fixed: passes".to_string(),
            Verdict::StillFailing | Verdict::FailsOtherwise(_) => {
                all = false;
                "FAILS AGAIN".to_string()
            }
        };
        print_verdict(fixed, &said, &report);
    }
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_verdict(known: &Known, said: &str, report: &Report) {
    let detail = report
        .failure
        .as_ref()
        .map(|f| {
            format!(
                " (step {}: {}: {})",
                f.step, f.violation.invariant, f.violation.detail
            )
        })
        .unwrap_or_default();
    println!(
        "{:<24} --seed {:<6} {:<16} {said}{detail}",
        known.name, known.seed, known.breaks
    );
}

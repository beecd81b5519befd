//! Child `rota run` processes, for everything that starts servers: `rota
//! testnet up`, `rota bench` and the integration tests' harness.
//!
//! A [`Supervisor`] owns the servers of one network. Server N runs with the
//! N-th conf it was given and appends its stdout and stderr to `node.log`
//! beside that conf. It is stopped the way an operator stops it, with
//! SIGTERM, and killed (SIGKILL) if it has not exited by a deadline. Every
//! process still running when its [`Server`] is dropped is killed, so a
//! failed test or an aborted bench leaves no server behind. [`Exit`] says
//! what a server's exit status means.
//!
//! The two helpers every caller of a running network needs live here too:
//! [`wait_until`], a condition polled against a deadline, and [`info`], a
//! server's `I` reply as JSON.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rota_peer::wire::{Reply, Request};

use crate::cli::EXIT_CONSENSUS_LOST;
use crate::client::Connection;
use crate::error::{Error, Result};
use crate::info::Info;

/// How often a process is checked while waiting for it to exit.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How a server's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit(ExitStatus);

impl Exit {
    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.0.code()
    }

    pub fn status(&self) -> ExitStatus {
        self.0
    }

    /// What the exit code of `rota run` means (see `rota --help`).
    pub fn meaning(&self) -> &'static str {
        match self.code() {
            Some(0) => "stopped",
            Some(1) => "failed",
            Some(EXIT_CONSENSUS_LOST) => "stopped: consensus lost",
            Some(_) => "exited",
            None => "killed by a signal",
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code(), self.0.signal()) {
            (Some(code), _) => write!(f, "{} (exit code {code})", self.meaning()),
            (None, Some(signal)) => write!(f, "{} ({signal})", self.meaning()),
            (None, None) => f.write_str(self.meaning()),
        }
    }
}

/// What stopping a server came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself after SIGTERM, within the deadline.
    Exited(Exit),
    /// It had not exited by the deadline and was killed with SIGKILL.
    Killed(Exit),
}

/// One running `rota run` process; killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Runs `exe run --conf CONF` with `RUST_LOG=filter`, appending its
    /// stdout and stderr to `log`.
    pub fn spawn(exe: &Path, conf: &Path, log: &Path, filter: &str) -> Result<Server> {
        Server::spawn_with(exe, conf, log, filter, &[])
    }

    /// [`Server::spawn`] with more environment variables (the crash tests'
    /// `ROTA_CRASH_AT`, say).
    pub fn spawn_with(
        exe: &Path,
        conf: &Path,
        log: &Path,
        filter: &str,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        let child = Command::new(exe)
            .args(["run", "--conf"])
            .arg(conf)
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(exe, e))?;
        Ok(Server { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has; does not block.
    pub fn try_exit(&mut self) -> Result<Option<Exit>> {
        let status = self
            .child
            .try_wait()
            .map_err(|e| Error::io("rota run", e))?;
        Ok(status.map(Exit))
    }

    /// Sends SIGTERM, unless the process has already ended. The process is
    /// not reaped until this `Server` sees it exit, so its pid cannot have
    /// been given to another process in between.
    pub fn terminate(&mut self) -> Result<()> {
        if self.try_exit()?.is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)
            .map_err(|errno| Error::io("rota run", errno.into()))
    }

    /// Polls until the process exits; `None` if it is still running when
    /// `within` has passed.
    pub fn wait(&mut self, within: Duration) -> Result<Option<Exit>> {
        let mut outcome = Ok(None);
        // `outcome` says whether it exited; the deadline needs no word of its own.
        let _ = wait_until(within, EXIT_POLL, || {
            outcome = self.try_exit();
            !matches!(outcome, Ok(None))
        });
        outcome
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) -> Result<Exit> {
        if let Some(exit) = self.try_exit()? {
            return Ok(exit);
        }
        self.child.kill().map_err(|e| Error::io("rota run", e))?;
        self.child
            .wait()
            .map(Exit)
            .map_err(|e| Error::io("rota run", e))
    }

    /// SIGTERM, then up to `within` for the process to exit, then SIGKILL.
    pub fn stop(&mut self, within: Duration) -> Result<Stopped> {
        // A failed SIGTERM leaves the deadline to the SIGKILL below.
        let _ = self.terminate();
        match self.wait(within)? {
            Some(exit) => Ok(Stopped::Exited(exit)),
            None => self.kill().map(Stopped::Killed),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The servers of one network, numbered from 1 in the order of their confs.
pub struct Supervisor {
    exe: PathBuf,
    confs: Vec<PathBuf>,
    filter: String,
    /// Server N at N - 1: `Some` from its start until it is seen to exit.
    servers: Vec<Option<Server>>,
}

impl Supervisor {
    /// A supervisor for servers run as `exe run --conf CONF`, logging at
    /// `info`; starts nothing.
    pub fn new(exe: impl Into<PathBuf>, confs: Vec<PathBuf>) -> Supervisor {
        let servers = confs.iter().map(|_| None).collect();
        Supervisor {
            exe: exe.into(),
            confs,
            filter: "info".into(),
            servers,
        }
    }

    /// The `RUST_LOG` filter the servers run with.
    pub fn log_filter(mut self, filter: impl Into<String>) -> Supervisor {
        self.filter = filter.into();
        self
    }

    /// How many servers the network has.
    pub fn len(&self) -> usize {
        self.confs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confs.is_empty()
    }

    pub fn conf(&self, i: usize) -> &Path {
        &self.confs[i - 1]
    }

    /// Where server `i` logs: `node.log` beside its conf.
    pub fn log(&self, i: usize) -> PathBuf {
        self.conf(i).with_file_name("node.log")
    }

    /// Starts server `i` and returns its pid.
    ///
    /// Panics if server `i` is running: starting it twice is a bug in the
    /// caller, and two processes on the same ports would hide it.
    pub fn start(&mut self, i: usize) -> Result<u32> {
        self.start_with(i, &[])
    }

    /// [`Supervisor::start`] with more environment variables for this run
    /// of server `i` only.
    pub fn start_with(&mut self, i: usize, env: &[(&str, &str)]) -> Result<u32> {
        assert!(
            self.servers[i - 1].is_none(),
            "server {i} is already running"
        );
        let server = Server::spawn_with(&self.exe, self.conf(i), &self.log(i), &self.filter, env)?;
        let pid = server.pid();
        self.servers[i - 1] = Some(server);
        Ok(pid)
    }

    /// Whether server `i` has been started and not yet seen to exit.
    pub fn running(&mut self, i: usize) -> bool {
        match &mut self.servers[i - 1] {
            Some(server) => matches!(server.try_exit(), Ok(None)),
            None => false,
        }
    }

    /// Whether no server is running (as of the last [`Supervisor::reap`]).
    pub fn all_exited(&self) -> bool {
        self.servers.iter().all(Option::is_none)
    }

    fn take(&mut self, i: usize) -> Server {
        self.servers[i - 1]
            .take()
            .unwrap_or_else(|| panic!("server {i} is not running"))
    }

    /// Stops server `i`: SIGTERM, then SIGKILL if it has not exited within
    /// `within`. Panics if it is not running.
    pub fn stop(&mut self, i: usize, within: Duration) -> Result<Stopped> {
        self.take(i).stop(within)
    }

    /// Kills server `i` with SIGKILL, as a crash would. Panics if it is not
    /// running.
    pub fn kill(&mut self, i: usize) -> Result<Exit> {
        self.take(i).kill()
    }

    /// Waits up to `within` for server `i` to exit by itself; `None` (and
    /// still running) if it has not. Panics if it was not started.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Result<Option<Exit>> {
        let server = self.servers[i - 1]
            .as_mut()
            .unwrap_or_else(|| panic!("server {i} is not running"));
        let exit = server.wait(within)?;
        if exit.is_some() {
            self.servers[i - 1] = None;
        }
        Ok(exit)
    }

    /// The servers that have exited since the last look, and how.
    pub fn reap(&mut self) -> Vec<(usize, Exit)> {
        let mut exited = Vec::new();
        for (index, slot) in self.servers.iter_mut().enumerate() {
            let Some(server) = slot else { continue };
            if let Ok(Some(exit)) = server.try_exit() {
                exited.push((index + 1, exit));
                *slot = None;
            }
        }
        exited
    }

    /// Stops every running server: SIGTERM to all at once, then one
    /// deadline for all of them, then SIGKILL for what is left.
    pub fn stop_all(&mut self, within: Duration) -> Vec<(usize, Result<Stopped>)> {
        for server in self.servers.iter_mut().flatten() {
            let _ = server.terminate();
        }
        let deadline = Instant::now() + within;
        let mut stopped = Vec::new();
        for (index, slot) in self.servers.iter_mut().enumerate() {
            if let Some(mut server) = slot.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                stopped.push((index + 1, server.stop(left)));
            }
        }
        stopped
    }
}

/// Calls `condition` every `every` until it holds (`true`) or `within` has
/// passed (`false`). The condition is always asked once more at the
/// deadline, so a zero `within` asks exactly once.
#[must_use]
pub fn wait_until(within: Duration, every: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(every.min(deadline - now));
    }
}

/// The `I` reply of the server at `address` on `chain`, as JSON; `None` when
/// it does not answer within `timeout_ms` or answers something else.
pub fn info(ctx: &zmq::Context, chain: &str, address: SocketAddr, timeout_ms: u64) -> Option<Info> {
    let mut connection = Connection::open(ctx, chain, address, timeout_ms).ok()?;
    match connection.call(&Request::Info).ok()? {
        Reply::Info(text) => Info::from_json(&text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_stops_at_the_deadline_and_at_success() {
        let mut asked = 0;
        let held = wait_until(Duration::from_millis(30), Duration::from_millis(5), || {
            asked += 1;
            false
        });
        assert!(!held);
        assert!(asked >= 2, "asked {asked} times");

        let mut asked = 0;
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                asked += 1;
                asked == 3
            }
        ));
        assert_eq!(asked, 3);
    }

    #[test]
    fn exit_meanings_follow_the_exit_codes() {
        let exit = |code: i32| Exit(ExitStatus::from_raw(code << 8));
        assert_eq!(exit(0).meaning(), "stopped");
        assert_eq!(exit(1).meaning(), "failed");
        assert_eq!(exit(3).meaning(), "stopped: consensus lost");
        assert_eq!(exit(3).to_string(), "stopped: consensus lost (exit code 3)");
        let killed = Exit(ExitStatus::from_raw(9));
        assert_eq!(killed.code(), None);
        assert_eq!(killed.meaning(), "killed by a signal");
    }

    /// A stand-in for `rota` that ignores `run --conf FILE` and sleeps,
    /// ignoring SIGTERM if `stubborn`.
    fn fake_rota(dir: &Path, stubborn: bool) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(if stubborn { "stubborn" } else { "rota" });
        // `$3` is the conf; `$3.ready` says the trap is in place.
        let trap = if stubborn {
            "trap '' TERM\necho > \"$3.ready\"\n"
        } else {
            ""
        };
        fs::write(&path, format!("#!/bin/sh\n{trap}exec sleep 60\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn stop_sends_sigterm_then_kills_what_ignores_it() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("rota.toml");
        let log = dir.path().join("node.log");
        let mut server = Server::spawn(&fake_rota(dir.path(), false), &conf, &log, "info").unwrap();
        let Stopped::Exited(exit) = server.stop(Duration::from_secs(10)).unwrap() else {
            panic!("sleep ends on SIGTERM");
        };
        assert_eq!(exit.status().signal(), Some(15));

        let mut server = Server::spawn(&fake_rota(dir.path(), true), &conf, &log, "info").unwrap();
        let ready = dir.path().join("rota.toml.ready");
        assert!(wait_until(Duration::from_secs(10), EXIT_POLL, || ready.exists()));
        let stopped = server.stop(Duration::from_millis(300)).unwrap();
        assert!(matches!(stopped, Stopped::Killed(exit) if exit.status().signal() == Some(9)));
    }

    #[test]
    fn a_dropped_supervisor_kills_its_servers() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("node-1/rota.toml");
        fs::create_dir_all(conf.parent().unwrap()).unwrap();
        let mut servers = Supervisor::new(fake_rota(dir.path(), true), vec![conf]);
        let pid = Pid::from_raw(servers.start(1).unwrap() as i32);
        assert!(servers.running(1));
        assert!(dir.path().join("node-1/node.log").exists());
        drop(servers);
        // Killed and reaped: signal 0 finds no such process.
        assert!(kill(pid, None).is_err());
    }
}

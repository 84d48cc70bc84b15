//! The built binary, run as an operator would run it, or spawned in the background.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{daemon, send_signal, StateFile};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Run {
    /// The JSON summary on stdout (the run must have used `--output json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON object ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Every record of the JSON summary as `(game_id, result, error_code)`, in order.
    pub fn outcomes(&self) -> Vec<(String, String, Option<String>)> {
        self.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| {
                (
                    record["game_id"].as_str().unwrap().to_owned(),
                    record["result"].as_str().unwrap().to_owned(),
                    record["error_code"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The result of a game in the JSON summary.
    pub fn result_of(&self, game: &str) -> String {
        let json = self.json();
        let record = json["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|record| record["game_id"] == game)
            .unwrap_or_else(|| panic!("{game} is not in the summary:\n{}", self.stdout));
        record["result"].as_str().unwrap().to_owned()
    }

    /// Asserts the exit status, showing the output when it differs.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The built binary, or the one `RT_CLEANUP_TEST_BINARY` names (to show that a regression test
/// fails on an earlier build).
pub fn binary() -> String {
    std::env::var("RT_CLEANUP_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rt-cleanup").to_owned())
}

/// A command for the built binary with a clean environment: no `RT_CLEANUP_*` or `DOCKER_HOST`
/// of the caller leaks in, and `DOCKER_HOST` points at the test daemon.
pub fn command(args: &[&str]) -> Command {
    with_clean_environment(Command::new(binary()), args)
}

/// A command for the built binary as [`command`] makes it, started as process 1 of a new pid
/// namespace (`unshare --pid --fork`, which needs root): its process id is known before it
/// starts, as in a container, where every run is pid 1. `--kill-child` ends it with `unshare`.
pub fn command_as_pid_1(args: &[&str]) -> Command {
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(binary());
    with_clean_environment(unshare, args)
}

/// A command for the built binary as [`command`] makes it, started as a systemd service with
/// `StandardOutput=journal` and `StandardError=journal` is: `systemd-cat -t rt-cleanup` connects
/// its stdout and stderr to journald's stream socket (`sd_journal_stream_fd`, which systemd uses
/// for a service's stream too), and `JOURNAL_STREAM` names that socket's device and inode as
/// systemd sets it (`st_dev:st_ino` in decimal, read with `stat` from the process's own stderr;
/// systemd-cat does not set it). The process keeps the pid of the spawned command (each program
/// `exec`s the next), which journald records as `_PID` of its entries.
pub fn command_on_journal(args: &[&str]) -> Command {
    let mut cat = Command::new("systemd-cat");
    cat.args([
        "-t",
        "rt-cleanup",
        "sh",
        "-c",
        r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$0" "$@""#,
    ])
    .arg(binary());
    with_clean_environment(cat, args)
}

/// A command for the built binary as [`command`] makes it, run on a terminal: `script` gives it
/// a pseudo-terminal of 160 columns as its stdin, stdout and stderr, and copies what it writes
/// there, as a terminal receives it, to its own stdout; its exit status is the binary's.
pub fn command_on_terminal(args: &[&str]) -> Command {
    let quoted: Vec<String> = std::iter::once(binary())
        .chain(args.iter().map(|arg| (*arg).to_owned()))
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect();
    let mut script = Command::new("script");
    script.args([
        "--quiet",
        "--flush",
        "--return",
        "--command",
        &format!("stty cols 160 rows 50 && exec {}", quoted.join(" ")),
        "/dev/null",
    ]);
    // `args` are in the command line above; the environment is cleaned all the same.
    with_clean_environment(script, &[])
}

fn with_clean_environment(mut command: Command, args: &[&str]) -> Command {
    command.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("RT_CLEANUP_") || key == "DOCKER_HOST" || key == "RUST_LOG" {
            command.env_remove(key.as_ref());
        }
    }
    command
}

/// Runs the binary against the test daemon and waits for it.
pub fn run(args: &[&str]) -> Run {
    run_with_env(args, &[])
}

/// Runs the binary against the test daemon with extra environment variables.
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = command(args);
    command.env("DOCKER_HOST", &daemon().host);
    command.envs(env.iter().copied());
    finish(&command.output().expect("the built binary runs"))
}

/// Runs the binary with no Docker daemon configured at all (for tests that never reach Docker).
pub fn run_without_docker(args: &[&str]) -> Run {
    let mut command = command(args);
    command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    finish(&command.output().expect("the built binary runs"))
}

/// Turns a finished process into a [`Run`].
pub fn finish(output: &Output) -> Run {
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The standard arguments of a pass over a state file, as owned strings.
pub fn pass_args(state: &StateFile, extra: &[&str]) -> Vec<String> {
    pass_args_with_retention(state, "7d", extra)
}

/// The standard arguments of a pass over a state file with another retention than 7 days.
pub fn pass_args_with_retention(state: &StateFile, retention: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--retention".to_owned(),
        retention.to_owned(),
        "--state".to_owned(),
        state.path().display().to_string(),
        "--output".to_owned(),
        "json".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Starts a JSON pass over a state file against the daemon at `host` in the background.
pub fn spawn_pass(state: &StateFile, host: &str, extra: &[&str]) -> Spawned {
    spawn_pass_with_retention(state, host, "7d", extra)
}

/// Starts a JSON pass with another retention than 7 days, as [`spawn_pass`] does.
pub fn spawn_pass_with_retention(
    state: &StateFile,
    host: &str,
    retention: &str,
    extra: &[&str],
) -> Spawned {
    let args = pass_args_with_retention(state, retention, extra);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", host);
    Spawned::start(command)
}

/// Runs a JSON pass over a state file against the test daemon.
pub fn pass(state: &StateFile, extra: &[&str]) -> Run {
    let args = pass_args(state, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// Writes a plan of `state` with `--dry-run --plan-out` and returns its path (in `dir`) and its
/// JSON.
pub fn plan_of(state: &StateFile, dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let plan = dir.join("plan.json").display().to_string();
    let mut args = vec!["--dry-run", "--plan-out", plan.as_str()];
    args.extend_from_slice(extra);
    let dry = pass(state, &args);
    assert!(
        matches!(dry.code, Some(0 | 1)),
        "the dry run writes the plan\n{}",
        dry.stderr
    );
    let json = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    (plan, json)
}

/// Writes a plan's JSON, as a reviewer who edited it would.
pub fn write_plan(path: &str, plan: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(plan).unwrap()).unwrap();
}

/// The request log lines of the running test's daemon that mention `needle` (dockerd's
/// `--debug` log, `Calling DELETE /v1.41/containers/…`, or Podman's request log,
/// `"DELETE /v1.41/containers/… HTTP/1.1" 204`). Every line that logs a request names it as
/// `METHOD /path?query`, whatever the engine's version (see [`with_the_request_named`]).
pub fn daemon_log_lines(needle: &str) -> Vec<String> {
    let daemon = daemon();
    let path = daemon.log.as_ref().unwrap_or_else(|| {
        panic!(
            "this test reads the private {} test daemon's request log: run it through \
             scripts/test.sh without {} so that the private daemon is used",
            daemon.engine.describe(),
            daemon.engine.host_variable()
        )
    });
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
        .lines()
        .map(with_the_request_named)
        .filter(|line| line.contains(needle))
        .collect()
}

/// A daemon's log line, led by `Calling METHOD /path?query` where dockerd 28 logs a request as
/// `msg="handling METHOD request" … request-url="/path?query"` (dockerd 20.10 and 26 write
/// `msg="Calling METHOD /path?query"`, and Podman `"METHOD /path?query HTTP/1.1"`, which are
/// kept as they are).
fn with_the_request_named(line: &str) -> String {
    let request = || {
        let method = line.split("msg=\"handling ").nth(1)?.split(' ').next()?;
        let url = line.split(" request-url=").nth(1)?;
        let url = match url.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => url.split(' ').next()?,
        };
        Some(format!("Calling {method} {url} | {line}"))
    };
    request().unwrap_or_else(|| line.to_owned())
}

// ------------------------------------------------------------------------------------------------
// Fault-suite helpers (docs/fault-suite.md: crashes, signals, races, locks and hostile input).
//
// A private dockerd per test for the cases that freeze or kill a daemon, a fault proxy that holds
// chosen Docker requests on their way to a daemon so that a test can act at an exact point of a
// pass, a spawned binary whose stderr can be watched while it runs, signals by pid, a state file in a
// directory of the test's choosing, and a small seeded random generator.
// ------------------------------------------------------------------------------------------------

/// The built binary running in the background, with its stdout and stderr collected as it goes.
pub struct Spawned {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr_lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    stderr: Option<JoinHandle<()>>,
}

impl Spawned {
    /// Starts a command (from [`command`] or [`PrivateDaemon::command`]).
    pub fn start(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the built binary starts");
        let mut stdout_pipe = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout_pipe.read_to_string(&mut text);
            text
        });
        let stderr_lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr_pipe = child.stderr.take().unwrap();
        let lines = Arc::clone(&stderr_lines);
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                lines.0.lock().unwrap().push(line);
                lines.1.notify_all();
            }
        });
        Self {
            child,
            stdout: Some(stdout),
            stderr_lines,
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        assert!(send_signal(self.pid(), signal), "kill -s {signal}");
    }

    /// Waits until a line of stderr contains `needle`; false after `timeout`, or as soon as the
    /// process closed its stderr (it ended) without writing it.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.stderr_lines;
        let mut lines = lines.lock().unwrap();
        loop {
            // Seen closed before the lines are searched, so that every line was in by then.
            let closed = self.stderr_closed();
            if lines.iter().any(|line| line.contains(needle)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || closed {
                return false;
            }
            // The reader notifies each line but not the end of the pipe: look again at least
            // every 20 ms.
            let nap = left.min(Duration::from_millis(20));
            lines = changed.wait_timeout(lines, nap).unwrap().0;
        }
    }

    /// Whether the process closed its stderr and every line of it was read: it ended (or
    /// closed stderr, which rt-cleanup never does before it ends).
    pub fn stderr_closed(&self) -> bool {
        self.stderr.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the exit; kills the process and panics when it takes longer than `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let run = self.collect(None);
                panic!(
                    "rt-cleanup did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    run.stdout, run.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.collect(status.code())
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(mut self) -> Run {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.collect(status.code())
    }

    fn collect(&mut self, code: Option<i32>) -> Run {
        let stdout = self.stdout.take().unwrap().join().unwrap_or_default();
        let _ = self.stderr.take().unwrap().join();
        let stderr = self.stderr_lines.0.lock().unwrap().join("\n");
        Run {
            code,
            stdout,
            stderr,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A test that failed before waiting for its pass must not leave the process running.
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

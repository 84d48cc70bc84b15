//! Helpers of the integration tests: a real state file in a temp dir, real containers on the
//! test daemon (labelled with this run and this test, and removed with the test), and the built
//! binary run as an operator would run it.
//!
//! The daemon comes from `scripts/test.sh` (which starts a private dockerd when none is given)
//! through `RT_CLEANUP_TEST_DOCKER_HOST`. Without it the Docker tests fail with a message that
//! says what to run; they never pass silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Value;
use rusqlite::{params, Connection, ToSql};
use tempfile::TempDir;

/// The label every container of this test run carries, with the run's id as its value.
pub const RUN_LABEL: &str = "rt-cleanup-test.run";
/// The label that names the test case that created a container.
pub const CASE_LABEL: &str = "rt-cleanup-test.case";
/// The label the tests use for `--owner-label`.
pub const OWNER_LABEL: &str = "rt-cleanup-test.game";

const DAY_MS: i64 = 86_400_000;

/// The test daemon, as `scripts/test-daemon.sh` announced it.
#[derive(Debug)]
pub struct Daemon {
    /// `unix:///…` or `tcp://…`.
    pub host: String,
    /// The image containers are made from.
    pub image: String,
    /// The private daemon's log (it runs with `--debug`), where one was started.
    pub log: Option<PathBuf>,
    /// The private daemon's pid file, where one was started.
    pub pidfile: Option<PathBuf>,
    /// This test run's id, the value of [`RUN_LABEL`].
    pub run_id: String,
}

/// The test daemon; panics with what to do when there is none.
pub fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let host = std::env::var("RT_CLEANUP_TEST_DOCKER_HOST").unwrap_or_else(|_| {
            panic!(
                "no Docker daemon for the integration tests: RT_CLEANUP_TEST_DOCKER_HOST is not \
                 set. Run the tests with scripts/test.sh, which installs and starts a private \
                 dockerd, or set RT_CLEANUP_TEST_DOCKER_HOST (and RT_CLEANUP_TEST_IMAGE) to a \
                 daemon of your own."
            )
        });
        let image = std::env::var("RT_CLEANUP_TEST_IMAGE")
            .unwrap_or_else(|_| "rt-cleanup-test/busybox:1".to_owned());
        let run_id = std::env::var("RT_CLEANUP_TEST_RUN").unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            format!("{}-{nanos}", std::process::id())
        });
        let daemon = Daemon {
            host,
            image,
            log: std::env::var_os("RT_CLEANUP_TEST_DAEMON_LOG").map(PathBuf::from),
            pidfile: std::env::var_os("RT_CLEANUP_TEST_DAEMON_PIDFILE").map(PathBuf::from),
            run_id,
        };
        let version = docker_cli(
            &daemon.host,
            &["version", "--format", "{{.Server.APIVersion}}"],
        );
        assert!(
            version.status.success(),
            "the test Docker daemon at {} does not answer: {}. Start it with \
             scripts/test-daemon.sh start, or run scripts/test.sh.",
            daemon.host,
            String::from_utf8_lossy(&version.stderr).trim()
        );
        daemon
    })
}

fn docker_cli(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run the docker CLI ({error}); is docker.io installed?")
        })
}

/// Runs the docker CLI against the test daemon and returns its trimmed stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let output = docker_cli(&daemon().host, args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A name no other test of any run uses: the prefix, this process and a counter.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Makes files immutable (`chattr +i`) so that even root cannot write them, until dropped.
pub struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// Sets the immutable attribute; panics with the reason when the filesystem refuses.
    pub fn new(paths: &[&Path]) -> Self {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        for path in &paths {
            let output = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .expect("chattr runs");
            assert!(
                output.status.success(),
                "cannot make {} immutable (this test needs root and chattr support): {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Self(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(path).output();
        }
    }
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Epoch milliseconds `days` days ago.
pub fn days_ago(days: i64) -> i64 {
    now_ms() - days * DAY_MS
}

/// Containers made by one test case, force-removed when it ends (and only those).
pub struct Containers {
    case: String,
}

impl Containers {
    /// Containers for the named test case.
    pub fn new(case: &str) -> Self {
        Self {
            case: unique_name(case),
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Vec<String> {
        let daemon = daemon();
        let mut args = vec![
            "--label".to_owned(),
            format!("{RUN_LABEL}={}", daemon.run_id),
            "--label".to_owned(),
            format!("{CASE_LABEL}={}", self.case),
        ];
        for (key, value) in extra {
            args.push("--label".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }

    /// Creates a stopped (never started) container; returns its full id.
    pub fn create(&self, extra_labels: &[(&str, &str)]) -> String {
        self.make("create", None, extra_labels)
    }

    /// Creates a stopped container with a name; returns its full id.
    pub fn create_named(&self, name: &str, extra_labels: &[(&str, &str)]) -> String {
        self.make("create", Some(name), extra_labels)
    }

    /// Starts a running container; returns its full id.
    pub fn run(&self, extra_labels: &[(&str, &str)]) -> String {
        self.make("run", None, extra_labels)
    }

    /// Starts a container running `command` (in the test image); returns its full id.
    pub fn run_command(&self, command: &[&str]) -> String {
        let mut args: Vec<String> =
            vec!["run".into(), "-d".into(), "--network".into(), "none".into()];
        args.extend(self.labels(&[]));
        args.push(daemon().image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }

    fn make(&self, verb: &str, name: Option<&str>, extra_labels: &[(&str, &str)]) -> String {
        let mut args: Vec<String> = vec![verb.to_owned()];
        if verb == "run" {
            args.push("-d".to_owned());
        }
        args.extend(["--network".to_owned(), "none".to_owned()]);
        if let Some(name) = name {
            args.extend(["--name".to_owned(), name.to_owned()]);
        }
        args.extend(self.labels(extra_labels));
        args.push(daemon().image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }
}

/// Whether a container exists on the test daemon.
pub fn exists(reference: &str) -> bool {
    exists_on(&daemon().host, reference)
}

/// A container's state (`created`, `running`, …) on the test daemon, or `None` when it does not
/// exist.
pub fn container_state(reference: &str) -> Option<String> {
    container_state_on(&daemon().host, reference)
}

fn exists_on(host: &str, reference: &str) -> bool {
    docker_cli(host, &["container", "inspect", reference])
        .status
        .success()
}

fn container_state_on(host: &str, reference: &str) -> Option<String> {
    let output = docker_cli(
        host,
        &[
            "container",
            "inspect",
            "--format",
            "{{.State.Status}}",
            reference,
        ],
    );
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("label={CASE_LABEL}={}", self.case);
        let ids = docker_cli(&daemon().host, &["ps", "-aq", "--filter", &filter]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker_cli(&daemon().host, &args);
        }
    }
}

/// The journal mode a test state file is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// SQLite's default rollback journal.
    Rollback,
    /// Write-ahead log.
    Wal,
}

/// The contract's schema (shared with the demo and the benchmark), plus a column the runtime
/// manager keeps that rt-cleanup must not touch.
pub const SCHEMA: &str = concat!(
    include_str!("../../examples/state-schema.sql"),
    "ALTER TABLE runtime_records ADD COLUMN rtmanager_note TEXT DEFAULT 'untouched';"
);

/// One `operation_log` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// `game_id`.
    pub game_id: String,
    /// `op_kind`.
    pub op_kind: String,
    /// `op_source`.
    pub op_source: String,
    /// `outcome`.
    pub outcome: String,
    /// `error_code`.
    pub error_code: Option<String>,
    /// `error_message`.
    pub error_message: Option<String>,
    /// `container_id`.
    pub container_id: Option<String>,
    /// `started_at`.
    pub started_at: i64,
    /// `finished_at`.
    pub finished_at: i64,
}

/// A record as it is in the state file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `status`.
    pub status: String,
    /// `container_id`.
    pub container_id: Value,
    /// `last_op_at`.
    pub last_op_at: Value,
    /// The column rt-cleanup does not know.
    pub rtmanager_note: Value,
}

/// A state file in its own temp dir.
pub struct StateFile {
    dir: TempDir,
    path: PathBuf,
}

impl StateFile {
    /// A new state file of contract version 1.
    pub fn new(journal: Journal) -> Self {
        Self::create(tempfile::tempdir().unwrap(), journal)
    }

    fn create(dir: TempDir, journal: Journal) -> Self {
        let path = dir.path().join("state.db");
        let connection = Connection::open(&path).unwrap();
        if journal == Journal::Wal {
            let mode: String = connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        connection.execute_batch(SCHEMA).unwrap();
        Self { dir, path }
    }

    /// The file's journal mode and `user_version`, which rt-cleanup must never change.
    pub fn journal_and_version(&self) -> (String, i64) {
        let connection = self.connect();
        let mode = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        let version = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        (mode, version)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temp dir holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection of the test's own, as the runtime manager would have.
    pub fn connect(&self) -> Connection {
        let connection = Connection::open(&self.path).unwrap();
        connection.busy_timeout(Duration::from_secs(30)).unwrap();
        connection
    }

    /// Inserts a record.
    pub fn insert(
        &self,
        game: &str,
        container: Option<&str>,
        status: &str,
        last_op_at: &dyn ToSql,
    ) {
        self.connect()
            .execute(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![game, container, status, last_op_at],
            )
            .unwrap();
    }

    /// Inserts a stopped record that expired `days` days ago.
    pub fn stopped(&self, game: &str, container: Option<&str>, days: i64) {
        self.insert(game, container, "stopped", &days_ago(days));
    }

    /// Inserts a lease.
    pub fn lease(&self, game: &str, holder: &str, expires_at: i64) {
        self.connect()
            .execute(
                "INSERT OR REPLACE INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
                params![game, holder, expires_at],
            )
            .unwrap();
    }

    /// The leases, as `(game_id, holder, expires_at)`.
    pub fn leases(&self) -> Vec<(String, String, i64)> {
        let connection = self.connect();
        let mut statement = connection
            .prepare("SELECT game_id, holder, expires_at FROM game_leases ORDER BY 1")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A record, or `None`.
    pub fn record(&self, game: &str) -> Option<Record> {
        let connection = self.connect();
        connection
            .query_row(
                "SELECT status, container_id, last_op_at, rtmanager_note FROM runtime_records \
                 WHERE game_id = ?1",
                [game],
                |row| {
                    Ok(Record {
                        status: row.get(0)?,
                        container_id: row.get(1)?,
                        last_op_at: row.get(2)?,
                        rtmanager_note: row.get(3)?,
                    })
                },
            )
            .ok()
    }

    /// A record's status; panics when the record is missing.
    pub fn status(&self, game: &str) -> String {
        self.record(game)
            .unwrap_or_else(|| panic!("no record {game}"))
            .status
    }

    /// The `operation_log` rows of a game, oldest first.
    pub fn log(&self, game: &str) -> Vec<LogRow> {
        self.log_where("game_id = ?1", &[&game])
    }

    /// Every `operation_log` row, oldest first.
    pub fn all_log(&self) -> Vec<LogRow> {
        self.log_where("1", &[])
    }

    fn log_where(&self, condition: &str, parameters: &[&dyn ToSql]) -> Vec<LogRow> {
        let connection = self.connect();
        let mut statement = connection
            .prepare(&format!(
                "SELECT game_id, op_kind, op_source, outcome, error_code, error_message, \
                 container_id, started_at, finished_at FROM operation_log WHERE {condition} \
                 ORDER BY id"
            ))
            .unwrap();
        statement
            .query_map(parameters, |row| {
                Ok(LogRow {
                    game_id: row.get(0)?,
                    op_kind: row.get(1)?,
                    op_source: row.get(2)?,
                    outcome: row.get(3)?,
                    error_code: row.get(4)?,
                    error_message: row.get(5)?,
                    container_id: row.get(6)?,
                    started_at: row.get(7)?,
                    finished_at: row.get(8)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The file's bytes, to prove that a run changed nothing.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    /// `PRAGMA integrity_check`.
    pub fn integrity(&self) -> String {
        self.connect()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap()
    }
}

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

/// The built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rt-cleanup")
}

/// A command for the built binary with a clean environment: no `RT_CLEANUP_*` or `DOCKER_HOST`
/// of the caller leaks in, and `DOCKER_HOST` points at the test daemon.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
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
    let mut args = vec![
        "--retention".to_owned(),
        "7d".to_owned(),
        "--state".to_owned(),
        state.path().display().to_string(),
        "--output".to_owned(),
        "json".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Runs a JSON pass over a state file against the test daemon.
pub fn pass(state: &StateFile, extra: &[&str]) -> Run {
    let args = pass_args(state, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// The daemon's log lines that mention `needle` (needs the private daemon's `--debug` log).
pub fn daemon_log_lines(needle: &str) -> Vec<String> {
    let path = daemon().log.as_ref().expect(
        "this test reads the private test daemon's --debug log: run it through scripts/test.sh \
         without RT_CLEANUP_TEST_DOCKER_HOST so that the private daemon is used",
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Fault-suite helpers (issue 5: crashes, signals, races, locks and hostile input).
//
// A private dockerd per test for the cases that freeze or kill a daemon, a gate that holds chosen
// Docker requests on their way to a daemon so that a test can act at an exact point of a pass, a
// spawned binary whose stderr can be watched while it runs, signals by pid, a state file in a
// directory of the test's choosing, and a small seeded random generator.
// ------------------------------------------------------------------------------------------------

use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ExitStatus};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Sends a signal (`STOP`, `CONT`, `KILL`, `TERM`, `INT`, …) to one process by its pid.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn test_daemon_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-daemon.sh")
}

/// A dockerd of one test's own, on its own socket, data root and exec root under a short dir in
/// `/tmp`, started by `scripts/test-daemon.sh`. A test may freeze, kill and restart it without
/// disturbing the shared test daemon. Dropping it removes every container on it and stops it.
#[derive(Debug)]
pub struct PrivateDaemon {
    /// The daemon's root directory (`RT_CLEANUP_TEST_ROOT`).
    pub root: PathBuf,
    /// `unix:///…/docker.sock`.
    pub host: String,
    /// The image containers are made from.
    pub image: String,
    /// The daemon's `--debug` log.
    pub log: PathBuf,
    pidfile: PathBuf,
}

impl PrivateDaemon {
    /// Starts a fresh private daemon; panics with the script's output when it cannot.
    pub fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Socket paths must stay under 108 bytes, so the root is short and in /tmp.
        let root = PathBuf::from(format!(
            "/tmp/rtc-f-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let exports = Self::launch(&root);
        let get = |key: &str| {
            exports.iter().find(|(k, _)| k == key).map_or_else(
                || panic!("scripts/test-daemon.sh did not print {key}"),
                |(_, v)| v.clone(),
            )
        };
        Self {
            host: get("RT_CLEANUP_TEST_DOCKER_HOST"),
            image: get("RT_CLEANUP_TEST_IMAGE"),
            log: PathBuf::from(get("RT_CLEANUP_TEST_DAEMON_LOG")),
            pidfile: PathBuf::from(get("RT_CLEANUP_TEST_DAEMON_PIDFILE")),
            root,
        }
    }

    fn launch(root: &Path) -> Vec<(String, String)> {
        // Without RT_CLEANUP_TEST_DOCKER_HOST the script starts a daemon of its own under the
        // root instead of reusing the shared one.
        let output = Command::new(test_daemon_script())
            .arg("start")
            .env_remove("RT_CLEANUP_TEST_DOCKER_HOST")
            .env_remove("RT_CLEANUP_TEST_DAEMON_LOG")
            .env_remove("RT_CLEANUP_TEST_DAEMON_PIDFILE")
            .env("RT_CLEANUP_TEST_ROOT", root)
            .stdin(Stdio::null())
            .output()
            .expect("scripts/test-daemon.sh runs");
        assert!(
            output.status.success(),
            "cannot start a private dockerd under {} for a fault test (it needs root and \
             docker.io): {}",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
                Some((key.to_owned(), value.trim_matches('\'').to_owned()))
            })
            .collect()
    }

    /// Starts the daemon again on the same data root (after [`PrivateDaemon::kill`]); the
    /// containers it had are still there.
    pub fn restart(&self) {
        // dockerd refuses to start while its pid file names a process that still shows in
        // /proc, and a killed daemon can linger there as a zombie until it is reaped.
        // The same holds for the containerd it started, which dies with it. (Nobody waits for
        // the script's `setsid` children, so a zombie may stay a while.)
        let containerd_pidfile = self.root.join("exec/containerd/containerd.pid");
        for pidfile in [&self.pidfile, &containerd_pidfile] {
            let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
            if !pid_alive(pid.trim()) {
                let _ = std::fs::remove_file(pidfile);
            }
        }
        let exports = Self::launch(&self.root);
        assert!(
            exports
                .iter()
                .any(|(k, v)| k == "RT_CLEANUP_TEST_DOCKER_HOST" && *v == self.host),
            "the restarted daemon is on another socket: {exports:?}"
        );
    }

    /// The socket path, for a [`Gate`] in front of the daemon.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.host.trim_start_matches("unix://"))
    }

    /// The daemon's pid, from its pid file.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", self.pidfile.display()))
    }

    /// Freezes the daemon (SIGSTOP): it accepts nothing more and answers nothing.
    pub fn freeze(&self) {
        assert!(
            send_signal(self.pid(), "STOP"),
            "SIGSTOP to the private dockerd"
        );
    }

    /// Lets a frozen daemon go on (SIGCONT).
    pub fn thaw(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// Kills the daemon (SIGKILL), frozen or not, and waits until it is gone.
    pub fn kill(&self) {
        let pid = self.pid();
        assert!(send_signal(pid, "KILL"), "SIGKILL to the private dockerd");
        let deadline = Instant::now() + Duration::from_secs(10);
        // A killed daemon stays a zombie (nobody reaps the script's `setsid` child), which
        // counts as gone.
        while pid_alive(&pid.to_string()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        docker_cli(&self.host, args)
    }

    /// Runs the docker CLI against this daemon; panics on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "docker {} against {} failed: {}",
            args.join(" "),
            self.host,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Creates a stopped container with these labels; returns its full id.
    pub fn create(&self, labels: &[(&str, &str)]) -> String {
        let mut args: Vec<String> = ["create", "--network", "none"].map(str::to_owned).to_vec();
        for (key, value) in labels {
            args.push("--label".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.push(self.image.clone());
        self.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Creates a stopped container with a name; returns its full id.
    pub fn create_named(&self, name: &str) -> String {
        self.docker(&["create", "--network", "none", "--name", name, &self.image])
    }

    /// Whether a container exists on this daemon (which must be answering).
    pub fn exists(&self, reference: &str) -> bool {
        exists_on(&self.host, reference)
    }

    /// A container's state, or `None` when it does not exist.
    pub fn state(&self, reference: &str) -> Option<String> {
        container_state_on(&self.host, reference)
    }

    /// The length of the daemon's log now, to read only what a later run caused.
    pub fn log_len(&self) -> usize {
        std::fs::read(&self.log).map_or(0, |bytes| bytes.len())
    }

    /// The requests (`METHOD /path?query`) the daemon logged after `offset`.
    pub fn requests_since(&self, offset: usize) -> Vec<String> {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes[offset.min(bytes.len())..])
            .lines()
            .filter_map(|line| {
                let start = line.find("msg=\"Calling ")? + "msg=\"Calling ".len();
                let rest = &line[start..];
                Some(rest[..rest.find('"').unwrap_or(rest.len())].to_owned())
            })
            .collect()
    }

    /// A command for the built binary against this daemon.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = command(args);
        command.env("DOCKER_HOST", &self.host);
        command
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        self.thaw();
        let ids = self.cli(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.cli(&args);
        }
        let _ = Command::new(test_daemon_script())
            .arg("stop")
            .env("RT_CLEANUP_TEST_ROOT", &self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // dockerd bind-mounts its data root onto itself; a killed daemon leaves that mount behind.
        // It is taken down once the daemon is gone, and only an unmounted tree is deleted: a
        // mount under the root must never be walked into.
        let data = self.root.join("data").display().to_string();
        let mounted = || {
            std::fs::read_to_string("/proc/self/mounts")
                .unwrap_or_default()
                .lines()
                .any(|line| line.split_whitespace().nth(1) == Some(data.as_str()))
        };
        let pid = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
        if !pid_alive(pid.trim()) {
            for _ in 0..4 {
                if !mounted() {
                    break;
                }
                let _ = Command::new("umount").arg(&data).status();
            }
        }
        if !mounted() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Whether a pid (as text) names a live process: not missing, and not a zombie.
fn pid_alive(pid: &str) -> bool {
    if pid.is_empty() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    matches!(state, Some(Some(state)) if state != 'Z')
}

/// A proxy on its own Unix socket in front of a daemon's socket that holds every request whose
/// bytes contain a needle (e.g. `DELETE ` or `/containers/json`) until [`Gate::open`]. A test
/// points rt-cleanup at [`Gate::host`], waits with [`Gate::wait_held`] until the pass reached
/// that request, acts (a signal, a change of the state file, a frozen daemon), then opens it:
/// the exact point of the pass, every time, instead of a race against a timer.
pub struct Gate {
    path: PathBuf,
    shared: Arc<GateShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct GateShared {
    needle: Vec<u8>,
    open: Mutex<bool>,
    opened: Condvar,
    held: Mutex<usize>,
    held_changed: Condvar,
    stop: AtomicBool,
    requests: Mutex<Vec<String>>,
}

impl Gate {
    /// A closed gate in front of the daemon listening on `upstream` (a socket path).
    pub fn new(upstream: &Path, needle: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = PathBuf::from(format!(
            "/tmp/rtc-g-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("the gate's socket binds");
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(GateShared {
            needle: needle.as_bytes().to_vec(),
            open: Mutex::new(false),
            opened: Condvar::new(),
            held: Mutex::new(0),
            held_changed: Condvar::new(),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let upstream = upstream.to_owned();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            Gate::serve(client, &upstream, &shared);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            path,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// A gate in front of the shared test daemon.
    pub fn in_front_of_test_daemon(needle: &str) -> Self {
        let socket = daemon()
            .host
            .strip_prefix("unix://")
            .expect("the gate needs the test daemon on a unix socket")
            .to_owned();
        Self::new(Path::new(&socket), needle)
    }

    fn serve(client: UnixStream, upstream: &Path, shared: &Arc<GateShared>) {
        // A daemon that is gone (killed) refuses the connection: the client's connection is
        // simply closed, as a dead daemon's would be.
        let Ok(server) = UnixStream::connect(upstream) else {
            return;
        };
        let (mut client_reader, mut server_writer) = (client.try_clone().unwrap(), server);
        let (mut server_reader, mut client_writer) = (server_writer.try_clone().unwrap(), client);
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            let mut buffer = vec![0_u8; 65_536];
            loop {
                let n = match client_reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buffer[..n];
                if let Some(line) = chunk.split(|b| *b == b'\n').next() {
                    if line.windows(6).any(|w| w == b" HTTP/") {
                        let line = String::from_utf8_lossy(line).trim().to_owned();
                        shared.requests.lock().unwrap().push(line);
                    }
                }
                if chunk
                    .windows(shared.needle.len())
                    .any(|w| w == shared.needle)
                {
                    let mut open = shared.open.lock().unwrap();
                    if !*open {
                        *shared.held.lock().unwrap() += 1;
                        shared.held_changed.notify_all();
                        while !*open {
                            open = shared.opened.wait(open).unwrap();
                        }
                    }
                }
                if server_writer.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = server_writer.shutdown(std::net::Shutdown::Write);
        });
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_reader, &mut client_writer);
            let _ = client_writer.shutdown(std::net::Shutdown::Both);
        });
    }

    /// `unix:///…`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Waits until at least `count` requests are held; false after `timeout`.
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut held = self.shared.held.lock().unwrap();
        while *held < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self.shared.held_changed.wait_timeout(held, left).unwrap().0;
        }
        true
    }

    /// How many requests have been held so far.
    pub fn held(&self) -> usize {
        *self.shared.held.lock().unwrap()
    }

    /// Lets every held request and every later one through.
    pub fn open(&self) {
        *self.shared.open.lock().unwrap() = true;
        self.shared.opened.notify_all();
    }

    /// The request lines that went through the gate so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

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

    /// Waits until a line of stderr contains `needle`; false after `timeout`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.stderr_lines;
        let mut lines = lines.lock().unwrap();
        loop {
            if lines.iter().any(|line| line.contains(needle)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = changed.wait_timeout(lines, left).unwrap().0;
        }
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

impl StateFile {
    /// A new state file of contract version 1 in a temp dir made under `parent` (e.g. a small
    /// tmpfs that a test fills up).
    pub fn new_in(parent: &Path, journal: Journal) -> Self {
        Self::create(tempfile::tempdir_in(parent).unwrap(), journal)
    }

    /// Moves every lease of rt-cleanup's own into the past. This simulates their expiry (a lease
    /// is free once `expires_at <= now`) without waiting out `--lease-ttl`; returns how many.
    pub fn expire_own_leases(&self) -> usize {
        self.connect()
            .execute(
                "UPDATE game_leases SET expires_at = ?1 WHERE holder LIKE 'rt-cleanup/%'",
                [now_ms() - 1],
            )
            .unwrap()
    }
}

/// A small seeded random generator (SplitMix64): the fault tests print their seed, and a seed
/// given in `RT_CLEANUP_FAULT_SEED` replays a run.
pub struct Rng(u64);

impl Rng {
    /// From `RT_CLEANUP_FAULT_SEED`, else from the clock; prints the seed for a replay.
    pub fn seeded(test: &str) -> Self {
        let seed = std::env::var("RT_CLEANUP_FAULT_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: seed {seed} (RT_CLEANUP_FAULT_SEED={seed} replays it)");
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// A TCP listener on loopback that forwards every connection to the test daemon's Unix socket,
/// so that `--docker-host tcp://…` can be tested against the real daemon.
pub struct TcpBridge {
    /// The loopback port.
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpBridge {
    /// Starts forwarding to the test daemon (which must listen on a `unix://` socket).
    pub fn to_test_daemon() -> Self {
        let socket = PathBuf::from(
            daemon()
                .host
                .strip_prefix("unix://")
                .expect("the TCP test needs the test daemon on a unix:// socket"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let upstream = UnixStream::connect(&socket).unwrap();
                    let (mut client_read, mut upstream_write) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let (mut upstream_read, mut client_write) = (upstream, client);
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut upstream_write);
                        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
                    });
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut upstream_read, &mut client_write);
                        let _ = client_write.shutdown(std::net::Shutdown::Write);
                    });
                }
            })
        };
        Self {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

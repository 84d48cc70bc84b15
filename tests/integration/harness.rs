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
    docker_cli(&daemon().host, &["container", "inspect", reference])
        .status
        .success()
}

/// A container's state (`created`, `running`, …), or `None` when it does not exist.
pub fn container_state(reference: &str) -> Option<String> {
    let output = docker_cli(
        &daemon().host,
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

/// The contract's schema, plus a column the runtime manager keeps that rt-cleanup must not touch.
pub const SCHEMA: &str = "
    CREATE TABLE runtime_records (
        game_id      TEXT    PRIMARY KEY NOT NULL,
        container_id TEXT,
        status       TEXT    NOT NULL,
        last_op_at   INTEGER NOT NULL,
        rtmanager_note TEXT DEFAULT 'untouched'
    );
    CREATE INDEX runtime_records_status_last_op_at ON runtime_records (status, last_op_at);
    CREATE TABLE game_leases (
        game_id    TEXT    PRIMARY KEY NOT NULL,
        holder     TEXT    NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE operation_log (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        game_id       TEXT    NOT NULL,
        op_kind       TEXT    NOT NULL,
        op_source     TEXT    NOT NULL,
        outcome       TEXT    NOT NULL,
        error_code    TEXT,
        error_message TEXT,
        container_id  TEXT,
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER NOT NULL
    );
    PRAGMA user_version = 1;
";

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
        let dir = tempfile::tempdir().unwrap();
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

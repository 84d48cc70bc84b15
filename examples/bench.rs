//! The benchmark: rt-cleanup against Docker itself, the sqlite3 CLI and a bare SQLite client.
//!
//! Run it with `scripts/bench.sh`, which starts a private test daemon, builds the release binary
//! and this program, and stops the daemon again. Each part runs alternately with its
//! comparisons over several rounds, reporting medians and ratios:
//!
//! 1. **Removal**: N expired records whose containers exist (created, never started), against
//!    `docker container prune --filter label=…` on an identical set of N containers and against a
//!    bare client that sends the same N `DELETE /v1.41/containers/{id}` calls 4 at a time over
//!    keep-alive connections.
//! 2. **Scan**: state files of `--scan-sizes` records in three shapes (90 % and 10 % of the
//!    records stopped with 10,000 expired, 30 % stopped with 100,000 expired), NULL, text, blob
//!    and real `last_op_at` values among the expired; `--dry-run` with its text summary and with
//!    `--output json` against the sqlite3 CLI running what an operator would type, as text and
//!    with `-json`, with peak RSS from `/usr/bin/time`.
//! 3. **Start-up**: a real pass with nothing expired on a small state file, preflight included.
//! 4. **Engines**: the same nothing-to-do pass on each engine given (Docker, and Podman's
//!    Docker-compatible service, of each Debian release `scripts/bench.sh` starts), alternately,
//!    side by side (target: at most 30 ms on each).
//! 5. **Backlog**: a real pass over N expired records without a container in each journal mode,
//!    against a bare SQLite client doing the contract's protocol per record 64 to a batch, on
//!    fresh copies of one prepared file; and a dry run over it, with peak RSS.
//! 6. **Orphans**: a pass with and without `--orphans report`, alternately, on 1,000 labelled
//!    containers of which 900 are claimed by records.
//! 7. **History**: `rt-cleanup history` on a log of 10,000,000 rows over a year, against the
//!    sqlite3 CLI running the obvious query for the same rows: the log's last day (`--since`;
//!    target at most 0.1 x sqlite3) and one game's rows (`--game`; target at most 1.2 x).
//! 8. **Space**: a dry run with and without `--measure-space`, alternately, over expired records
//!    whose containers each wrote some MiB into their writable layer: what measuring costs per
//!    container (one inspection with `size=true`, for which the daemon walks the layer).
//!
//! The scan's, the backlog's and the history's state files are made once and kept under
//! `--files`.
//!
//! Everything it creates carries the label `rtc-bench=1` and is removed at the end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use futures_util::stream::{self, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use rusqlite::{params, Connection};

/// The label every container of the benchmark carries.
const BENCH_LABEL: &str = "rtc-bench";
/// The label that names the set of containers one contender works on.
const SET_LABEL: &str = "rtc-bench.set";
/// The API version of the oldest supported daemon; the bare client speaks it.
const WIRE: &str = "/v1.41";
const DAY_MS: i64 = 86_400_000;

/// The contract's schema (shared with the demo and the tests) without its index, which is made
/// after the bulk insert (see [`build_scan_state`]), and with two columns a runtime manager could
/// keep.
const TABLES: &str = concat!(
    include_str!("state-schema.sql"),
    "DROP INDEX runtime_records_status_last_op_at;
     ALTER TABLE runtime_records ADD COLUMN node TEXT;
     ALTER TABLE runtime_records ADD COLUMN image TEXT;"
);
const INDEX: &str =
    "CREATE INDEX runtime_records_status_last_op_at ON runtime_records (status, last_op_at);";

/// Options of the benchmark; `scripts/bench.sh` passes the daemon through the environment.
#[derive(Debug, Parser)]
#[command(about = "rt-cleanup's benchmark against Docker and sqlite3 (see scripts/bench.sh)")]
struct Options {
    /// The Docker daemon, `unix:///path/to/docker.sock`.
    #[arg(long, env = "RT_CLEANUP_TEST_DOCKER_HOST")]
    docker_host: String,
    /// The image containers are created from.
    #[arg(
        long,
        env = "RT_CLEANUP_TEST_IMAGE",
        default_value = "rt-cleanup-test/busybox:1"
    )]
    image: String,
    /// The other engines of the engines part, besides `--docker-host`: `unix://` sockets of
    /// Podman services and other Dockers, comma-separated.
    #[arg(long, env = "RT_CLEANUP_BENCH_ENGINE_HOSTS", value_delimiter = ',')]
    engine_hosts: Vec<String>,
    /// The rt-cleanup binary under test.
    #[arg(long, default_value = "target/release/rt-cleanup")]
    binary: PathBuf,
    /// Which parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "startup,engines,scan,removal,backlog,orphans,history,space"
    )]
    parts: Vec<String>,
    /// Rows of the history part's `operation_log`.
    #[arg(long, default_value_t = 10_000_000)]
    history_rows: usize,
    /// Rounds of the history part, per contender and case.
    #[arg(long, default_value_t = 7)]
    history_rounds: usize,
    /// Runs of the orphans part, per contender.
    #[arg(long, default_value_t = 7)]
    orphan_rounds: usize,
    /// Containers of the space part.
    #[arg(long, default_value_t = 100)]
    space_containers: usize,
    /// MiB each container of the space part writes into its writable layer.
    #[arg(long, default_value_t = 8)]
    space_mib: usize,
    /// The files each container of the space part writes its MiB into, one set of containers
    /// per count: the daemon's walk of a layer costs by the file.
    #[arg(long, value_delimiter = ',', default_value = "1,1024")]
    space_files: Vec<usize>,
    /// Runs of the space part, per contender.
    #[arg(long, default_value_t = 7)]
    space_rounds: usize,
    /// Removal sizes and their rounds, `N:ROUNDS`.
    #[arg(long, value_delimiter = ',', default_value = "300:5,100:3,1000:2")]
    sizes: Vec<String>,
    /// Rounds of the scan, per state file.
    #[arg(long, default_value_t = 7)]
    scan_rounds: usize,
    /// Runs of the start-up part.
    #[arg(long, default_value_t = 20)]
    startup_runs: usize,
    /// Passes `--concurrency` to rt-cleanup (default: rt-cleanup's own default).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Records of the scan's state files, one file per size and shape.
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    scan_sizes: Vec<usize>,
    /// Shapes of the scan's state files: `stoppedP` has P % of the records stopped and
    /// `--scan-expired` of them expired, `stoppedP:N` has N expired. `stopped90` is a manager
    /// that keeps its stopped games, `stopped10` one that removes most, and `stopped30:100000`
    /// a large backlog of expired records, where printing the summary is much of the work.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "stopped90,stopped10,stopped30:100000"
    )]
    scan_shapes: Vec<String>,
    /// Expired stopped records in each scan file whose shape does not give its own (hostile rows
    /// included).
    #[arg(long, default_value_t = 10_000)]
    scan_expired: usize,
    /// Backlog sizes and their rounds, `N:ROUNDS`: N expired stopped records without a container.
    #[arg(long, value_delimiter = ',', default_value = "100000:5")]
    backlog_sizes: Vec<String>,
    /// The journal modes of the backlog's state files.
    #[arg(long, value_delimiter = ',', default_value = "wal,rollback")]
    backlog_journals: Vec<String>,
    /// The journal mode of the removal and start-up state files: `rollback` (SQLite's default)
    /// or `wal`.
    #[arg(long, default_value = "rollback")]
    journal: String,
    /// Where the prepared state files of the scan and the backlog are kept and reused, across
    /// rounds and runs (a 3,000,000-record file takes a minute or two to make).
    #[arg(
        long,
        env = "RT_CLEANUP_BENCH_FILES",
        default_value = "/tmp/rtc-bench-files"
    )]
    files: PathBuf,
}

fn main() {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let socket = PathBuf::from(
        options
            .docker_host
            .strip_prefix("unix://")
            .expect("the benchmark speaks to a unix:// daemon"),
    );
    let docker = Docker::new(socket);
    let work = tempfile::tempdir().expect("a temp dir");
    runtime.block_on(async {
        docker.remove_leftovers().await;
        let mut report = String::new();
        for part in &options.parts {
            match part.as_str() {
                "startup" => startup(&options, &docker, work.path(), &mut report).await,
                "engines" => engines(&options, &docker, work.path(), &mut report).await,
                "scan" => scan(&options, &docker, &mut report).await,
                "backlog" => backlog(&options, work.path(), &mut report),
                "orphans" => orphans(&options, &docker, work.path(), &mut report).await,
                "history" => history(&options, &mut report),
                "space" => space(&options, &docker, work.path(), &mut report).await,
                "removal" => {
                    for size in &options.sizes {
                        let (n, rounds) = size.split_once(':').expect("sizes are N:ROUNDS");
                        let n = n.parse().expect("N is a number");
                        let rounds = rounds.parse().expect("ROUNDS is a number");
                        removal(&options, &docker, work.path(), n, rounds, &mut report).await;
                    }
                }
                other => {
                    panic!(
                        "unknown part {other}: use startup, engines, scan, removal, backlog, \
                         orphans, history, space"
                    )
                }
            }
        }
        docker.remove_leftovers().await;
        println!("\n==================== summary ====================\n{report}");
    });
}

/// A minimal Docker client over the unix socket with keep-alive: the bare client of the
/// comparison, and the fast way to create containers.
struct Docker {
    socket: PathBuf,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl Docker {
    fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: fresh_client(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, Bytes) {
        call(&self.client, &self.socket, method, path, body).await
    }

    /// Creates `n` containers (created, not started) labelled with `set`; returns their ids.
    async fn create(&self, image: &str, set: &str, n: usize) -> Vec<String> {
        self.create_owned(image, set, SET_LABEL, |_| set.to_owned(), n)
            .await
    }

    /// Creates `n` containers (created, not started) labelled with `set` and, the n-th, with
    /// `key=value(n)`; returns their ids in order.
    async fn create_owned(
        &self,
        image: &str,
        set: &str,
        key: &str,
        value: impl Fn(usize) -> String,
        n: usize,
    ) -> Vec<String> {
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "Image": image,
                    "Labels": { BENCH_LABEL: "1", SET_LABEL: set, key: value(i) },
                    "HostConfig": { "NetworkMode": "none" },
                })
                .to_string()
            })
            .collect();
        stream::iter(bodies)
            .map(|body| async move {
                let (status, answer) = self
                    .call(Method::POST, "/containers/create", Some(body))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "create: {answer:?}");
                let value: serde_json::Value =
                    serde_json::from_slice(&answer).expect("create answers JSON");
                value["Id"]
                    .as_str()
                    .expect("create answers an Id")
                    .to_owned()
            })
            .buffered(8)
            .collect()
            .await
    }

    /// Creates one container per name (created, not started) labelled with `set`.
    async fn create_named(&self, image: &str, set: &str, names: &[String]) {
        let body = serde_json::json!({
            "Image": image,
            "Labels": { BENCH_LABEL: "1", SET_LABEL: set },
            "HostConfig": { "NetworkMode": "none" },
        })
        .to_string();
        for name in names {
            let path = format!("/containers/create?name={}", percent(name));
            let (status, answer) = self.call(Method::POST, &path, Some(body.clone())).await;
            assert_eq!(status, StatusCode::CREATED, "create {name}: {answer:?}");
        }
    }

    /// Creates `n` containers labelled with `set` that each write `mib` MiB into their writable
    /// layer, in `files` files, runs each to its exit, 8 at a time; returns their ids in order.
    async fn create_filled(
        &self,
        image: &str,
        set: &str,
        n: usize,
        mib: usize,
        files: usize,
    ) -> Vec<String> {
        let kib = mib * 1024 / files.max(1);
        let script = format!(
            "mkdir /fill && i=0 && while [ $i -lt {files} ]; do \
             dd if=/dev/zero of=/fill/$i bs={kib}k count=1 2>/dev/null; i=$((i+1)); done"
        );
        let body = serde_json::json!({
            "Image": image,
            "Cmd": ["sh", "-c", script],
            "Labels": { BENCH_LABEL: "1", SET_LABEL: set },
            "HostConfig": { "NetworkMode": "none" },
        })
        .to_string();
        stream::iter(0..n)
            .map(|_| {
                let body = body.clone();
                async move {
                    let (status, answer) = self
                        .call(Method::POST, "/containers/create", Some(body))
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "create: {answer:?}");
                    let value: serde_json::Value =
                        serde_json::from_slice(&answer).expect("create answers JSON");
                    let id = value["Id"]
                        .as_str()
                        .expect("create answers an Id")
                        .to_owned();
                    let (status, answer) = self
                        .call(Method::POST, &format!("/containers/{id}/start"), None)
                        .await;
                    assert_eq!(status, StatusCode::NO_CONTENT, "start: {answer:?}");
                    let (status, answer) = self
                        .call(Method::POST, &format!("/containers/{id}/wait"), None)
                        .await;
                    assert_eq!(status, StatusCode::OK, "wait: {answer:?}");
                    id
                }
            })
            .buffered(8)
            .collect()
            .await
    }

    /// The ids of the containers labelled with `set`.
    async fn list(&self, set: &str) -> Vec<String> {
        let filters = serde_json::json!({ "label": [format!("{SET_LABEL}={set}")] }).to_string();
        let path = format!("/containers/json?all=1&filters={}", percent(&filters));
        let (status, answer) = self.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "list: {answer:?}");
        let value: serde_json::Value = serde_json::from_slice(&answer).expect("list answers JSON");
        value
            .as_array()
            .expect("list answers an array")
            .iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Force-removes every container of the benchmark, from this run or an interrupted one.
    async fn remove_leftovers(&self) {
        let filters = serde_json::json!({ "label": [BENCH_LABEL] }).to_string();
        let path = format!("/containers/json?all=1&filters={}", percent(&filters));
        let (_, answer) = self.call(Method::GET, &path, None).await;
        let value: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let ids: Vec<String> = value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Id"].as_str().map(str::to_owned))
            .collect();
        stream::iter(ids)
            .map(|id| async move {
                self.call(Method::DELETE, &format!("/containers/{id}?force=1"), None)
                    .await
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
    }
}

fn fresh_client() -> Client<UnixConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(UnixConnector)
}

async fn call(
    client: &Client<UnixConnector, Full<Bytes>>,
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, Bytes) {
    let uri: hyper::Uri = hyperlocal::Uri::new(socket, &format!("{WIRE}{path}")).into();
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a valid request");
    let response = client.request(request).await.expect("the daemon answers");
    let status = response.status();
    // Reading the body to its end is what lets the connection go back to the pool.
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    (status, body)
}

fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos()
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        f64::midpoint(sorted[middle - 1], sorted[middle])
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

fn list_ms(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one run of a program took and used.
struct Measured {
    wall_ms: f64,
    max_rss_kib: u64,
    stdout: Vec<u8>,
    status: i32,
}

/// Runs a program under `/usr/bin/time` (for its peak RSS) and times its wall clock.
fn measure(program: &Path, args: &[String], env: &[(&str, String)]) -> Measured {
    let rss_file = tempfile::NamedTempFile::new().expect("a temp file");
    let mut command = Command::new("/usr/bin/time");
    command
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().expect("/usr/bin/time runs");
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rss = std::fs::read_to_string(rss_file.path()).unwrap_or_default();
    let max_rss_kib = rss
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    Measured {
        wall_ms,
        max_rss_kib,
        stdout: output.stdout,
        status: output.status.code().unwrap_or(-1),
    }
}

fn rt_cleanup_args(options: &Options, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--retention".to_owned(),
        "7d".to_owned(),
        "--state".to_owned(),
        state.display().to_string(),
        "--docker-host".to_owned(),
        options.docker_host.clone(),
    ];
    if let Some(concurrency) = options.concurrency {
        args.push("--concurrency".to_owned());
        args.push(concurrency.to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn counts(stdout: &[u8]) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_slice(stdout).expect("rt-cleanup prints its JSON summary");
    summary["counts"].clone()
}

/// A small pseudo-random generator, so that the data is the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let _ = write!(out, "{:016x}", self.next());
        }
        out.truncate(len);
        out
    }
}

/// A state file with the schema and the index, and the given records.
fn small_state(path: &Path, journal: &str, records: &[(String, Option<String>, &str, i64)]) {
    let mut connection = Connection::open(path).expect("the state file opens");
    if journal == "wal" {
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .expect("WAL mode");
        assert_eq!(mode, "wal");
    }
    connection.execute_batch(TABLES).expect("the schema");
    connection.execute_batch(INDEX).expect("the index");
    let transaction = connection.transaction().expect("a transaction");
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .expect("the insert");
        for (game, container, status, last_op_at) in records {
            insert
                .execute(params![game, container, status, last_op_at])
                .expect("a record");
        }
    }
    transaction.commit().expect("the commit");
}

// ------------------------------------------------------------------------------------------
// Part 3: start-up.

/// 200 records of a running manager, none of them expired at a 7-day retention: the state file
/// of a pass with nothing to do, made the same for every `seed`.
fn nothing_expired(seed: u64) -> Vec<(String, Option<String>, &'static str, i64)> {
    let now = now_ms();
    let mut rng = Rng(seed);
    (0..200)
        .map(|i| {
            let status = ["running", "stopped", "removed", "removed"][i % 4];
            let age = rng.below(6 * DAY_MS as u64) as i64;
            (format!("game-{i:05}"), Some(rng.hex(64)), status, now - age)
        })
        .collect()
}

async fn startup(options: &Options, docker: &Docker, work: &Path, report: &mut String) {
    println!(
        "== start-up: a pass with nothing expired, {} runs",
        options.startup_runs
    );
    let state = work.join("startup.db");
    small_state(&state, &options.journal, &nothing_expired(7));
    // One container on the daemon besides, so that the daemon is not empty.
    docker.create(&options.image, "startup", 1).await;
    let args = rt_cleanup_args(options, &state, &["--output", "json"]);
    let mut walls = Vec::new();
    for run in 0..=options.startup_runs {
        let measured = measure(&options.binary, &args, &[]);
        assert_eq!(measured.status, 0, "rt-cleanup exits 0");
        assert_eq!(counts(&measured.stdout)["expired"], 0);
        // The first run warms the page cache and is not counted.
        if run > 0 {
            walls.push(measured.wall_ms);
        }
    }
    let wall = median(&walls);
    println!("  rt-cleanup walls (ms): {}", list_ms(&walls));
    let _ = writeln!(
        report,
        "start-up (200 records, none expired, {} runs): median {wall:.1} ms, min {:.1} ms; \
         target <= 30 ms: {}",
        walls.len(),
        walls.iter().copied().fold(f64::INFINITY, f64::min),
        verdict(wall <= 30.0)
    );
}

// ------------------------------------------------------------------------------------------
// Part 4: engines.

/// The socket of a `unix://` daemon address.
fn socket_of(host: &str) -> PathBuf {
    PathBuf::from(
        host.strip_prefix("unix://")
            .expect("the benchmark speaks to unix:// daemons"),
    )
}

/// The engine's name and version, from `GET /version` (the benchmark can afford it; rt-cleanup
/// reads them from the ping).
async fn engine_name(daemon: &Docker) -> String {
    let (status, answer) = daemon.call(Method::GET, "/version", None).await;
    assert_eq!(status, StatusCode::OK, "version: {answer:?}");
    let value: serde_json::Value = serde_json::from_slice(&answer).expect("version answers JSON");
    let podman = value["Components"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|component| component["Name"] == "Podman Engine");
    let name = if podman { "Podman" } else { "Docker" };
    format!("{name} {}", value["Version"].as_str().unwrap_or("?"))
}

/// A nothing-to-do pass on each engine (`--docker-host` and `--engine-hosts`), run alternately,
/// the engine that goes first rotating from round to round; the first round only warms the page
/// cache.
async fn engines(options: &Options, docker: &Docker, work: &Path, report: &mut String) {
    assert!(
        !options.engine_hosts.is_empty(),
        "the engines part needs the other engines: --engine-hosts or RT_CLEANUP_BENCH_ENGINE_HOSTS \
         (scripts/bench.sh starts a private Podman service, Docker 26 and Podman 5)"
    );
    let others: Vec<Docker> = options
        .engine_hosts
        .iter()
        .map(|host| Docker::new(socket_of(host)))
        .collect();
    let hosts: Vec<&String> = std::iter::once(&options.docker_host)
        .chain(&options.engine_hosts)
        .collect();
    let daemons: Vec<&Docker> = std::iter::once(docker).chain(&others).collect();
    let mut names = Vec::new();
    for daemon in &daemons {
        daemon.remove_leftovers().await;
        // One container on each daemon, so that none is empty.
        daemon.create(&options.image, "engines", 1).await;
        names.push(engine_name(daemon).await);
    }
    println!(
        "== engines: a pass with nothing expired on {}, {} runs each",
        names.join(", "),
        options.startup_runs
    );
    let state = work.join("engines.db");
    small_state(&state, &options.journal, &nothing_expired(11));
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
    for run in 0..=options.startup_runs {
        for turn in 0..daemons.len() {
            let engine = (run + turn) % daemons.len();
            let mut args = rt_cleanup_args(options, &state, &["--output", "json"]);
            // rt_cleanup_args names the Docker daemon; this run's engine replaces it.
            let host_at = args
                .iter()
                .position(|arg| arg == "--docker-host")
                .expect("rt_cleanup_args passes --docker-host")
                + 1;
            args[host_at].clone_from(hosts[engine]);
            let measured = measure(&options.binary, &args, &[]);
            assert_eq!(
                measured.status, 0,
                "rt-cleanup exits 0 on {}",
                names[engine]
            );
            assert_eq!(counts(&measured.stdout)["expired"], 0);
            if run > 0 {
                walls[engine].push(measured.wall_ms);
            }
        }
    }
    for other in &others {
        other.remove_leftovers().await;
    }
    let medians: Vec<f64> = walls.iter().map(|wall| median(wall)).collect();
    let mut each = Vec::new();
    for (engine, name) in names.iter().enumerate() {
        println!("  {name} walls (ms): {}", list_ms(&walls[engine]));
        each.push(format!(
            "{name} median {:.1} ms (min {:.1})",
            medians[engine],
            walls[engine].iter().copied().fold(f64::INFINITY, f64::min)
        ));
    }
    let _ = writeln!(
        report,
        "nothing to do (200 records, none expired, {} runs each, alternately): {}; target <= 30 \
         ms on each: {}",
        walls[0].len(),
        each.join(", "),
        verdict(medians.iter().all(|median| *median <= 30.0))
    );
}

// ------------------------------------------------------------------------------------------
// Part 2: scan.

/// Every this many expired records of a scan file, one of each hostile kind (see
/// [`build_scan_state`]).
const HOSTILE_EVERY: usize = 1_000;
/// Expired records of a scan file that name a container which exists, by name.
const SCAN_EXISTING: usize = 20;

/// What a prepared scan file holds, as written next to it (`<file>.json`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ScanFacts {
    /// When it was made, epoch milliseconds: its records' ages count from then.
    built_at: i64,
    /// Records with `status = 'stopped'`.
    stopped: u64,
    /// Candidates at a 7-day retention.
    expired: u64,
    /// Candidates whose `last_op_at` is NULL, text or a blob: the operator's query
    /// (`last_op_at < T`) does not return them.
    hidden: u64,
}

/// The name of the `i`-th container that a scan file's records point at.
fn scan_container(i: usize) -> String {
    format!("rtc-bench-scan-{i}")
}

/// The shape of a scan file: which share of its records is stopped and how many are expired.
#[derive(Debug, Clone)]
struct ScanShape {
    /// `stoppedP`, the name its file is kept under.
    name: String,
    /// The share of stopped records, in percent.
    percent: u64,
    /// The expired stopped records (hostile rows included).
    expired: usize,
}

impl ScanShape {
    /// Reads `stoppedP` (with `default_expired` expired records) or `stoppedP:N`.
    fn parse(text: &str, default_expired: usize) -> Self {
        let (name, expired) = match text.split_once(':') {
            Some((name, expired)) => (
                name,
                expired
                    .parse()
                    .unwrap_or_else(|_| panic!("scan shape {text}: N of stoppedP:N is a number")),
            ),
            None => (text, default_expired),
        };
        let percent = name
            .strip_prefix("stopped")
            .and_then(|percent| percent.parse().ok())
            .filter(|percent| (1..=100).contains(percent))
            .unwrap_or_else(|| {
                panic!("unknown scan shape {text}: use stoppedP or stoppedP:N, P a percent")
            });
        Self {
            name: name.to_owned(),
            percent,
            expired,
        }
    }
}

/// Builds a scan file: `records` records of which `percent` % are stopped and `expired` are
/// stopped longer than the retention (7 days) ago, in one transaction with one prepared statement;
/// the index is made afterwards, as a bulk load would.
///
/// Among the expired records, every [`HOSTILE_EVERY`]-th has a `last_op_at` of each hostile kind:
/// NULL, text, a blob, and a real below the threshold (all `invalid_record` candidates); a few
/// records stopped within the retention have a real `last_op_at` (not candidates). The stopped
/// records within the retention are at most 3 days old, so the file stays valid for 4 days. The
/// column is declared without `NOT NULL` here: a manager that wrote NULLs had no such constraint.
fn build_scan_state(path: &Path, records: usize, percent: u64, expired: usize) -> ScanFacts {
    let now = now_ms();
    let _ = std::fs::remove_file(path);
    let mut connection = Connection::open(path).expect("the state file opens");
    // A large page cache keeps the random inserts into the primary-key index in memory; the
    // file is the benchmark's own, so it needs no journal while it is being made.
    connection
        .execute_batch("PRAGMA cache_size = -524288; PRAGMA journal_mode = OFF;")
        .expect("the bulk-load settings");
    let nullable = TABLES.replace(
        "last_op_at   INTEGER NOT NULL",
        "last_op_at   INTEGER         ",
    );
    assert_ne!(
        nullable, TABLES,
        "the schema declares last_op_at as expected"
    );
    connection.execute_batch(&nullable).expect("the schema");
    let mut rng = Rng(0x5eed ^ records as u64 ^ percent);
    let stopped_total = (records as u64 * percent / 100).max(expired as u64);
    // The chance, in millionths, that a record which is not expired is stopped.
    let others = (records - expired).max(1) as u64;
    let stopped_chance = (stopped_total - expired as u64) * 1_000_000 / others;
    let mut facts = ScanFacts {
        built_at: now,
        stopped: 0,
        expired: 0,
        hidden: 0,
    };
    let transaction = connection.transaction().expect("a transaction");
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO runtime_records \
                   (game_id, container_id, status, last_op_at, node, image) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .expect("the insert");
        let stride = records / expired.max(1);
        let mut fresh_stopped = 0_u64;
        for i in 0..records {
            let game = format!(
                "{}-{}-{}-{}",
                rng.hex(8),
                rng.hex(4),
                rng.hex(4),
                rng.hex(12)
            );
            let mut container = rng.hex(64);
            let (status, last_op_at) = if i % stride == 0 && (facts.expired as usize) < expired {
                facts.expired += 1;
                let k = facts.expired as usize;
                if k <= SCAN_EXISTING {
                    container = scan_container(k - 1);
                }
                expired_value(k, &mut rng, now, &mut facts)
            } else if rng.below(1_000_000) < stopped_chance {
                fresh_stopped += 1;
                let age = rng.below(3 * DAY_MS as u64) as i64;
                if fresh_stopped % 100_000 == 1 {
                    ("stopped", ((now - age) as f64 + 0.25).into())
                } else {
                    ("stopped", (now - age).into())
                }
            } else {
                match rng.below(100) {
                    0..=69 => (
                        "removed",
                        (now - rng.below(90 * DAY_MS as u64) as i64).into(),
                    ),
                    70..=97 => ("running", (now - rng.below(DAY_MS as u64) as i64).into()),
                    _ => ("creating", (now - rng.below(60_000) as i64).into()),
                }
            };
            if status == "stopped" {
                facts.stopped += 1;
            }
            insert
                .execute(params![
                    game,
                    container,
                    status,
                    last_op_at,
                    format!("node-{}", rng.below(40)),
                    "registry.example/game-server:2026.11"
                ])
                .expect("a record");
        }
    }
    transaction.commit().expect("the commit");
    connection.execute_batch(INDEX).expect("the index");
    connection.execute_batch("ANALYZE").expect("analyze");
    facts
}

/// The status and `last_op_at` of the `k`-th expired record of a scan file: a hostile value
/// every [`HOSTILE_EVERY`] records (NULL, text, a blob, a real), otherwise an integer 8 to 88
/// days old.
fn expired_value(
    k: usize,
    rng: &mut Rng,
    now: i64,
    facts: &mut ScanFacts,
) -> (&'static str, rusqlite::types::Value) {
    let age = 8 * DAY_MS + rng.below(80 * DAY_MS as u64) as i64;
    let hostile = k % HOSTILE_EVERY;
    if matches!(hostile, 1..=3) {
        facts.hidden += 1;
    }
    let value = match hostile {
        1 => rusqlite::types::Value::Null,
        2 => "yesterday".to_owned().into(),
        3 => vec![0_u8, 0xff].into(),
        4 => ((now - age) as f64 + 0.5).into(),
        _ => (now - age).into(),
    };
    ("stopped", value)
}

/// A prepared scan file, made once and reused while its records are still as old as they were
/// made to be (3 days).
fn scan_state(options: &Options, records: usize, shape: &ScanShape) -> (PathBuf, ScanFacts) {
    std::fs::create_dir_all(&options.files).expect("the files directory");
    let path = options.files.join(format!(
        "scan-{}-{records}-{}.db",
        shape.name, shape.expired
    ));
    let facts_path = path.with_extension("json");
    let cached = std::fs::read(&facts_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ScanFacts>(&bytes).ok())
        .filter(|facts| now_ms() - facts.built_at < 3 * DAY_MS && path.exists());
    if let Some(facts) = cached {
        println!("  reusing {}", path.display());
        return (path, facts);
    }
    let started = Instant::now();
    let _ = std::fs::remove_file(&facts_path);
    let facts = build_scan_state(&path, records, shape.percent, shape.expired);
    std::fs::write(
        &facts_path,
        serde_json::to_vec(&facts).expect("the facts serialise"),
    )
    .expect("the facts are written");
    println!(
        "  built {} in {:.1} s ({} MiB)",
        path.display(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&path).map_or(0, |m| m.len() >> 20)
    );
    (path, facts)
}

async fn scan(options: &Options, docker: &Docker, report: &mut String) {
    let names: Vec<String> = (0..SCAN_EXISTING).map(scan_container).collect();
    docker.create_named(&options.image, "scan", &names).await;
    for &records in &options.scan_sizes {
        for shape in &options.scan_shapes {
            let shape = ScanShape::parse(shape, options.scan_expired);
            scan_one(options, records, &shape, report);
        }
    }
}

/// The four programs of the scan: rt-cleanup's dry run in each output form, and the sqlite3 CLI
/// printing what an operator would ask for instead, as text and as JSON.
const SCAN_CONTENDERS: [&str; 4] = [
    "rt-cleanup --dry-run",
    "rt-cleanup --dry-run --output json",
    "sqlite3",
    "sqlite3 -json",
];

/// One scan file: rt-cleanup's dry run, with its default text summary and with `--output json`,
/// against the sqlite3 CLI running what an operator would type instead, as text and with
/// `-json`; in turn, the program that goes first rotating from round to round, the first round
/// only warming the cache.
fn scan_one(options: &Options, records: usize, shape: &ScanShape, report: &mut String) {
    println!(
        "== scan: {records} records, {}, {} expired, {} rounds",
        shape.name, shape.expired, options.scan_rounds
    );
    let (state, facts) = scan_state(options, records, shape);
    let sqlite3 = which(Path::new("sqlite3"));
    let mut walls: [Vec<f64>; 4] = Default::default();
    let mut rss: [Vec<f64>; 4] = Default::default();
    let rt_text_args = rt_cleanup_args(options, &state, &["--dry-run"]);
    let rt_json_args = rt_cleanup_args(options, &state, &["--dry-run", "--output", "json"]);
    for round in 0..=options.scan_rounds {
        for step in 0..SCAN_CONTENDERS.len() {
            let contender = (round + step) % SCAN_CONTENDERS.len();
            let measured = match contender {
                0 => {
                    let measured = measure(&options.binary, &rt_text_args, &[]);
                    check_text_summary(&measured.stdout, &facts);
                    measured
                }
                1 => {
                    let measured = measure(&options.binary, &rt_json_args, &[]);
                    let counts = counts(&measured.stdout);
                    assert_eq!(counts["expired"].as_u64(), Some(facts.expired), "{counts}");
                    assert_eq!(counts["stopped"].as_u64(), Some(facts.stopped), "{counts}");
                    measured
                }
                _ => sqlite3_scan(&sqlite3, &state, contender == 3, &facts),
            };
            if round > 0 {
                walls[contender].push(measured.wall_ms);
                rss[contender].push(measured.max_rss_kib as f64 / 1024.0);
            }
        }
    }
    let [text, json, sqlite3_text, sqlite3_json] = walls.each_ref().map(|walls| median(walls));
    let [text_peak, json_peak, ..] = rss
        .each_ref()
        .map(|rss| rss.iter().copied().fold(0.0, f64::max));
    for (contender, walls) in SCAN_CONTENDERS.iter().zip(&walls) {
        println!("  {contender:<36} walls (ms): {}", list_ms(walls));
    }
    println!(
        "  peak RSS (MiB): rt-cleanup {text_peak:.1} (text), {json_peak:.1} (json); sqlite3 \
         {:.1}, sqlite3 -json {:.1}",
        rss[2].iter().copied().fold(0.0, f64::max),
        rss[3].iter().copied().fold(0.0, f64::max)
    );
    // The targets are set for 1,000,000 records; other sizes show how the cost grows. The JSON
    // summary against `sqlite3 -json` has its target on the shape with 100,000 expired records
    // (issue 20), where printing is much of the work.
    let target = |ok: bool| {
        if records == 1_000_000 {
            format!(" (target: {})", verdict(ok))
        } else {
            String::new()
        }
    };
    let json_target = |ok: bool| {
        if records == 1_000_000 && shape.expired == 100_000 {
            format!(" (target: {})", verdict(ok))
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        report,
        "scan {}, {records} records ({} stopped, {} expired, {} of them NULL/text/blob), {} \
         rounds: rt-cleanup --dry-run median {text:.1} ms (text), {json:.1} ms (--output json); \
         sqlite3 CLI median {sqlite3_text:.1} ms, sqlite3 -json median {sqlite3_json:.1} ms; \
         text/sqlite3 {:.2}{}, json/sqlite3 {:.2}{}, json/sqlite3 -json {:.2}{}; rt-cleanup peak \
         RSS {text_peak:.1} MiB (text), {json_peak:.1} MiB (json){}",
        shape.name,
        facts.stopped,
        facts.expired,
        facts.hidden,
        walls[0].len(),
        text / sqlite3_text,
        target(text / sqlite3_text <= 1.2),
        json / sqlite3_text,
        target(json / sqlite3_text <= 1.2),
        json / sqlite3_json,
        json_target(json / sqlite3_json <= 1.0),
        target(text_peak.max(json_peak) <= 64.0),
    );
}

/// What an operator would type instead of a dry run: the count of stopped records and the
/// expired ones, oldest first, with the threshold rt-cleanup computes for 7d, printed as text or,
/// with `json`, by `sqlite3 -json`. It does not return the rows whose `last_op_at` is NULL, text
/// or a blob. Either form prints a line per row after the count's line (`-json` a row of its
/// array per line).
fn sqlite3_scan(sqlite3: &Path, state: &Path, json: bool, facts: &ScanFacts) -> Measured {
    let threshold = now_ms() - 7 * DAY_MS;
    let script = format!(
        "SELECT count(*) FROM runtime_records WHERE status = 'stopped';\n\
         SELECT game_id, container_id, last_op_at FROM runtime_records \
         WHERE status = 'stopped' AND last_op_at < {threshold} \
         ORDER BY last_op_at;\n"
    );
    let mut args = vec!["-readonly".to_owned()];
    if json {
        args.push("-json".to_owned());
    }
    args.extend([state.display().to_string(), script]);
    let measured = measure(sqlite3, &args, &[]);
    assert_eq!(measured.status, 0, "sqlite3 runs the queries");
    let lines = measured.stdout.split(|b| *b == b'\n').count() - 1;
    assert_eq!(
        lines as u64,
        facts.expired - facts.hidden + 1,
        "sqlite3's rows (-json: {json})"
    );
    measured
}

/// Checks rt-cleanup's text summary of a scan: a line per expired record, then the closing line
/// with the counts.
fn check_text_summary(stdout: &[u8], facts: &ScanFacts) {
    let text = std::str::from_utf8(stdout).expect("the text summary is UTF-8");
    let lines = text.lines().count() as u64;
    assert_eq!(
        lines,
        facts.expired + 1,
        "a line per record and the count line"
    );
    let closing = text.lines().next_back().unwrap_or_default();
    let counts = format!(
        "rt-cleanup dry run: {} expired of {} stopped",
        facts.expired, facts.stopped
    );
    assert!(closing.starts_with(&counts), "{closing}");
}

fn which(program: &Path) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{} is not on PATH", program.display()))
}

// ------------------------------------------------------------------------------------------
// Part 1: removal.

#[derive(Debug, Clone, Copy)]
enum Contender {
    RtCleanup,
    Prune,
    Bare,
}

async fn removal(
    options: &Options,
    docker: &Docker,
    work: &Path,
    n: usize,
    rounds: usize,
    report: &mut String,
) {
    println!("== removal: N = {n}, {rounds} rounds");
    let contenders = [Contender::RtCleanup, Contender::Prune, Contender::Bare];
    let mut walls: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        // Each round starts with another contender, so none always runs first.
        for step in 0..3 {
            let which = (round + step) % 3;
            let set = unique("set");
            let ids = docker.create(&options.image, &set, n).await;
            // Let the daemon settle after the burst of creations.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let wall = match contenders[which] {
                Contender::RtCleanup => run_rt_cleanup(options, work, &ids),
                Contender::Prune => run_prune(options, &set),
                Contender::Bare => bare_client(docker, &ids).await,
            };
            let left = docker.list(&set).await;
            assert!(
                left.is_empty(),
                "{:?} left {} containers",
                contenders[which],
                left.len()
            );
            println!("  round {round}: {:?} {wall:.0} ms", contenders[which]);
            walls[which].push(wall);
        }
    }
    let [rt, prune, bare] = [median(&walls[0]), median(&walls[1]), median(&walls[2])];
    let _ = writeln!(
        report,
        "removal N={n} ({rounds} rounds, {} journal): rt-cleanup {rt:.0} ms ({:.1} ms/container), \
         docker container prune {prune:.0} ms, bare client x4 {bare:.0} ms; \
         rt/prune {:.2} (target <= 0.8: {}), rt/bare {:.2} (target <= 1.25: {})\n  \
         rounds (ms): rt-cleanup [{}], prune [{}], bare [{}]",
        options.journal,
        rt / n as f64,
        rt / prune,
        verdict(rt / prune <= 0.8),
        rt / bare,
        verdict(rt / bare <= 1.25),
        list_ms(&walls[0]),
        list_ms(&walls[1]),
        list_ms(&walls[2]),
    );
}

/// A state file whose `ids.len()` expired records name these containers (by full id, as the
/// runtime manager stores them), among twice as many other records; then one timed real pass.
fn run_rt_cleanup(options: &Options, work: &Path, ids: &[String]) -> f64 {
    let state = work.join(format!("{}.db", unique("removal")));
    let now = now_ms();
    let mut rng = Rng(11);
    let mut records: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let age = 8 * DAY_MS + rng.below(30 * DAY_MS as u64) as i64;
            (
                format!("game-{i:05}"),
                Some(id.clone()),
                "stopped",
                now - age,
            )
        })
        .collect();
    for i in 0..ids.len() * 2 {
        let status = ["running", "removed"][i % 2];
        records.push((
            format!("other-{i:05}"),
            Some(rng.hex(64)),
            status,
            now - DAY_MS,
        ));
    }
    small_state(&state, &options.journal, &records);
    let args = rt_cleanup_args(options, &state, &["--output", "json"]);
    let measured = measure(&options.binary, &args, &[]);
    let counts = counts(&measured.stdout);
    assert_eq!(measured.status, 0, "rt-cleanup exits 0: {counts}");
    assert_eq!(
        counts["removed"].as_u64(),
        Some(ids.len() as u64),
        "{counts}"
    );
    let _ = std::fs::remove_file(&state);
    measured.wall_ms
}

fn run_prune(options: &Options, set: &str) -> f64 {
    let started = Instant::now();
    let output = Command::new("docker")
        .args(["container", "prune", "--force", "--filter"])
        .arg(format!("label={SET_LABEL}={set}"))
        .env("DOCKER_HOST", &options.docker_host)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs");
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert!(output.status.success(), "docker container prune fails");
    wall
}

/// The floor for any client of the daemon: the same DELETE calls, 4 at a time, over keep-alive
/// connections of a client made for the purpose (its connection set-up is counted).
async fn bare_client(docker: &Docker, ids: &[String]) -> f64 {
    let client = fresh_client();
    let started = Instant::now();
    let statuses: Vec<StatusCode> = stream::iter(ids)
        .map(|id| {
            let client = &client;
            async move {
                call(
                    client,
                    &docker.socket,
                    Method::DELETE,
                    &format!("/containers/{id}"),
                    None,
                )
                .await
                .0
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
        "every DELETE answers 204"
    );
    wall
}

// ------------------------------------------------------------------------------------------
// Part 4: backlog.

/// A prepared backlog file: `n` expired stopped records without a container (all
/// `replay_no_op`, no Docker call) among `n` running and removed ones, in the given journal mode.
/// Its records only grow older, so it is made once and reused.
fn backlog_state(options: &Options, n: usize, journal: &str) -> PathBuf {
    std::fs::create_dir_all(&options.files).expect("the files directory");
    let path = options.files.join(format!("backlog-{n}-{journal}.db"));
    if path.exists() {
        return path;
    }
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let now = now_ms();
    let mut rng = Rng(0xbac ^ n as u64);
    let records: Vec<_> = (0..2 * n)
        .map(|i| {
            let game = format!("game-{i:07}-{}", rng.hex(12));
            if i % 2 == 0 {
                let age = 8 * DAY_MS + rng.below(80 * DAY_MS as u64) as i64;
                (game, None, "stopped", now - age)
            } else {
                let status = ["running", "removed"][i / 2 % 2];
                let age = rng.below(30 * DAY_MS as u64) as i64;
                (game, Some(rng.hex(64)), status, now - age)
            }
        })
        .collect();
    small_state(&partial, journal, &records);
    std::fs::rename(&partial, &path).expect("the prepared file is kept");
    path
}

/// A fresh copy of a prepared state file, for one contender of one round.
fn copy_state(prepared: &Path, work: &Path, name: &str) -> PathBuf {
    let copy = work.join(format!("{}.db", unique(name)));
    std::fs::copy(prepared, &copy).expect("the prepared file copies");
    copy
}

/// Removes a state file and the journal files SQLite may have left next to it.
fn remove_state(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Checks that `n` records were moved to `removed`, with one log row each and no lease left.
fn check_backlog_done(path: &Path, n: usize, who: &str) {
    let connection = Connection::open(path).expect("the state file opens");
    let count = |sql: &str| -> i64 {
        connection
            .query_row(sql, [], |row| row.get(0))
            .expect("a count")
    };
    assert_eq!(
        count("SELECT count(*) FROM runtime_records WHERE status = 'stopped'"),
        0,
        "{who} left stopped records"
    );
    assert_eq!(
        count("SELECT count(*) FROM operation_log WHERE outcome = 'success'"),
        n as i64,
        "{who}'s log rows"
    );
    assert_eq!(
        count("SELECT count(*) FROM game_leases"),
        0,
        "{who} left leases"
    );
}

fn backlog(options: &Options, work: &Path, report: &mut String) {
    for size in &options.backlog_sizes {
        let (n, rounds) = size.split_once(':').expect("backlog sizes are N:ROUNDS");
        let n: usize = n.parse().expect("N is a number");
        let rounds: usize = rounds.parse().expect("ROUNDS is a number");
        for journal in &options.backlog_journals {
            backlog_one(options, work, n, rounds, journal, report);
        }
    }
}

/// One backlog size in one journal mode: a real pass against the bare client, alternately, each
/// on a fresh copy of the same prepared file; then a dry run over it, for its peak RSS.
fn backlog_one(
    options: &Options,
    work: &Path,
    n: usize,
    rounds: usize,
    journal: &str,
    report: &mut String,
) {
    println!(
        "== backlog: {n} expired records without a container, {journal} journal, {rounds} rounds"
    );
    let prepared = backlog_state(options, n, journal);
    let mut rt_walls = Vec::new();
    let mut rt_rss = Vec::new();
    let mut bare_walls = Vec::new();
    for round in 0..rounds {
        for contender in 0..2 {
            // Each round starts with the other contender.
            if (contender == 0) == (round % 2 == 0) {
                let state = copy_state(&prepared, work, "backlog-rt");
                let args = rt_cleanup_args(options, &state, &["--output", "json"]);
                let measured = measure(&options.binary, &args, &[]);
                let counts = counts(&measured.stdout);
                assert_eq!(measured.status, 0, "rt-cleanup exits 0: {counts}");
                assert_eq!(counts["replay_no_op"].as_u64(), Some(n as u64), "{counts}");
                check_backlog_done(&state, n, "rt-cleanup");
                remove_state(&state);
                println!(
                    "  round {round}: rt-cleanup {:.0} ms, peak RSS {:.1} MiB",
                    measured.wall_ms,
                    measured.max_rss_kib as f64 / 1024.0
                );
                rt_walls.push(measured.wall_ms);
                rt_rss.push(measured.max_rss_kib as f64 / 1024.0);
            } else {
                let state = copy_state(&prepared, work, "backlog-bare");
                let wall = bare_sqlite_client(&state);
                check_backlog_done(&state, n, "the bare client");
                remove_state(&state);
                println!("  round {round}: bare client {wall:.0} ms");
                bare_walls.push(wall);
            }
        }
    }
    let mut dry_rss = Vec::new();
    let mut dry_walls = Vec::new();
    for _ in 0..2 {
        let args = rt_cleanup_args(options, &prepared, &["--dry-run", "--output", "json"]);
        let measured = measure(&options.binary, &args, &[]);
        assert_eq!(
            counts(&measured.stdout)["replay_no_op"].as_u64(),
            Some(n as u64)
        );
        dry_walls.push(measured.wall_ms);
        dry_rss.push(measured.max_rss_kib as f64 / 1024.0);
    }
    let (rt, bare) = (median(&rt_walls), median(&bare_walls));
    let peak = rt_rss.iter().copied().fold(0.0, f64::max);
    let dry_peak = dry_rss.iter().copied().fold(0.0, f64::max);
    // The targets are set for 100,000 records; other sizes show how the cost grows.
    let target = |ok: bool| {
        if n == 100_000 {
            format!(" (target: {})", verdict(ok))
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        report,
        "backlog N={n} ({rounds} rounds, {journal} journal): rt-cleanup {rt:.0} ms \
         ({:.1} us/record), bare SQLite client {bare:.0} ms, ratio {:.2}{}; peak RSS: real pass \
         {peak:.1} MiB{}, dry run {dry_peak:.1} MiB{} (dry run {:.0} ms)\n  \
         rounds (ms): rt-cleanup [{}], bare [{}]",
        rt * 1000.0 / n as f64,
        rt / bare,
        target(rt / bare <= 1.5),
        target(peak <= 64.0),
        target(dry_peak <= 64.0),
        median(&dry_walls),
        list_ms(&rt_walls),
        list_ms(&bare_walls),
    );
}

/// The bare client of the backlog: what an operator would write with a SQLite library to do the
/// contract's protocol per record, written without rt-cleanup's code. It selects the expired
/// stopped records, then per batch of 64: one transaction that takes each game's lease and
/// re-reads its record under it, then one that moves each claimed record to `removed` with a
/// compare-and-set, appends its `operation_log` row and releases its lease. SQLite's default
/// full syncing, in the file's own journal mode. Returns the wall time in milliseconds,
/// connection opening included.
fn bare_sqlite_client(path: &Path) -> f64 {
    const BATCH: usize = 64;
    let started = Instant::now();
    let mut connection = Connection::open(path).expect("the state file opens");
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("a busy timeout");
    let synchronous: i64 = connection
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("the synchronous setting");
    assert_eq!(
        synchronous, 2,
        "the bare client syncs fully, as SQLite does by default"
    );
    let holder = format!("bare-client/{}", std::process::id());
    let threshold = now_ms() - 7 * DAY_MS;
    let expired: Vec<BareRecord> = connection
        .prepare(
            "SELECT game_id, container_id, last_op_at FROM runtime_records \
             WHERE status = 'stopped' AND last_op_at < ?1 ORDER BY last_op_at",
        )
        .expect("the selection")
        .query_map([threshold], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .and_then(Iterator::collect)
        .expect("the expired records");
    for batch in expired.chunks(BATCH) {
        let claimed = bare_claims(&mut connection, &holder, batch);
        bare_results(&mut connection, &holder, claimed);
    }
    started.elapsed().as_secs_f64() * 1000.0
}

/// `(game_id, container_id, last_op_at)` as the bare client selects them.
type BareRecord = (String, Option<String>, i64);

/// One transaction: each record's lease, then its re-read under the lease. Returns the records
/// claimed unchanged, with the time of their claim.
fn bare_claims<'a>(
    connection: &mut Connection,
    holder: &str,
    batch: &'a [BareRecord],
) -> Vec<(&'a BareRecord, i64)> {
    let mut claimed = Vec::with_capacity(batch.len());
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("the claims' transaction");
    {
        let mut take = transaction
            .prepare_cached(
                "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (game_id) DO UPDATE \
                   SET holder = excluded.holder, expires_at = excluded.expires_at \
                   WHERE game_leases.expires_at <= ?4",
            )
            .expect("the lease statement");
        let mut reread = transaction
            .prepare_cached(
                "SELECT status, container_id, last_op_at FROM runtime_records WHERE game_id = ?1",
            )
            .expect("the re-read");
        let mut give_back = transaction
            .prepare_cached("DELETE FROM game_leases WHERE game_id = ?1 AND holder = ?2")
            .expect("the release");
        for record in batch {
            let (game, container, last_op_at) = record;
            let now = now_ms();
            let taken = take
                .execute(params![game, holder, now + 300_000, now])
                .expect("the lease claim");
            if taken == 0 {
                continue;
            }
            let current: (String, Option<String>, i64) = reread
                .query_row([game], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .expect("the record");
            if current.0 == "stopped" && current.1 == *container && current.2 == *last_op_at {
                claimed.push((record, now));
            } else {
                give_back
                    .execute(params![game, holder])
                    .expect("the release");
            }
        }
    }
    transaction.commit().expect("the claims commit");
    claimed
}

/// One transaction: each claimed record moved to `removed` with a compare-and-set, its log row,
/// the release of its lease.
fn bare_results(connection: &mut Connection, holder: &str, claimed: Vec<(&BareRecord, i64)>) {
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("the results' transaction");
    {
        let mut move_record = transaction
            .prepare_cached(
                "UPDATE runtime_records SET status = 'removed', last_op_at = ?1 \
                 WHERE game_id = ?2 AND status = 'stopped' AND last_op_at = ?3 \
                   AND container_id IS ?4",
            )
            .expect("the compare-and-set");
        let mut log = transaction
            .prepare_cached(
                "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
                   error_message, container_id, started_at, finished_at) \
                 VALUES (?1, 'cleanup_container', 'auto_ttl', 'success', 'replay_no_op', \
                   'no container to remove', ?2, ?3, ?4)",
            )
            .expect("the log statement");
        let mut release = transaction
            .prepare_cached("DELETE FROM game_leases WHERE game_id = ?1 AND holder = ?2")
            .expect("the release");
        for ((game, container, last_op_at), claimed_at) in claimed {
            let now = now_ms();
            let moved = move_record
                .execute(params![now, game, last_op_at, container])
                .expect("the compare-and-set");
            assert_eq!(moved, 1, "nobody else writes the bench's file");
            log.execute(params![game, container, claimed_at, now])
                .expect("the log row");
            release.execute(params![game, holder]).expect("the release");
        }
    }
    transaction.commit().expect("the results commit");
}

// ------------------------------------------------------------------------------------------
// Part 6: orphans.

/// The owner label of the orphans part.
const ORPHAN_KEY: &str = "rtc-bench.game";

/// A pass with and without `--orphans report`, alternately, on a daemon with 1,000 containers
/// labelled with a game, 900 of them claimed by records: what looking for orphans adds (one
/// listing filtered by the daemon, one read of the named records, one inspection for each of
/// the 100 containers no record claims).
async fn orphans(options: &Options, docker: &Docker, work: &Path, report: &mut String) {
    const LABELLED: usize = 1_000;
    const CLAIMED: usize = 900;
    println!(
        "== orphans: {LABELLED} labelled containers, {CLAIMED} claimed, {} rounds",
        options.orphan_rounds
    );
    let ids = docker
        .create_owned(
            &options.image,
            "orphans",
            ORPHAN_KEY,
            |i| format!("g-orphan-{i:04}"),
            LABELLED,
        )
        .await;
    // The claiming records are running, or stopped in the future: none is a candidate.
    let later = now_ms() + DAY_MS;
    let records: Vec<_> = ids
        .iter()
        .enumerate()
        .take(CLAIMED)
        .map(|(i, id)| {
            let (status, reference) = if i % 2 == 0 {
                ("running", id.clone())
            } else {
                ("stopped", id[..12].to_owned())
            };
            (format!("g-orphan-{i:04}"), Some(reference), status, later)
        })
        .collect();
    let state = work.join("orphans.db");
    small_state(&state, &options.journal, &records);
    // Older than the one-second retention the passes run with.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let args = |extra: &[&str]| {
        let mut args = rt_cleanup_args(options, &state, &["--output", "json"]);
        "1s".clone_into(&mut args[1]);
        args.extend(["--owner-label".to_owned(), ORPHAN_KEY.to_owned()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let without = args(&[]);
    let with = args(&["--orphans", "report"]);
    let (mut without_walls, mut with_walls) = (Vec::new(), Vec::new());
    for round in 0..=options.orphan_rounds {
        for contender in 0..2 {
            let looking = (contender == 0) == (round % 2 == 0);
            let measured = measure(&options.binary, if looking { &with } else { &without }, &[]);
            assert_eq!(measured.status, 0, "rt-cleanup exits 0");
            let summary: serde_json::Value =
                serde_json::from_slice(&measured.stdout).expect("the JSON summary");
            if looking {
                assert_eq!(
                    summary["orphan_counts"]["found"],
                    LABELLED - CLAIMED,
                    "the unclaimed containers are the orphans"
                );
            }
            // The first round warms the caches and is not counted.
            if round > 0 {
                if looking {
                    with_walls.push(measured.wall_ms);
                } else {
                    without_walls.push(measured.wall_ms);
                }
            }
        }
    }
    let (plain, looking) = (median(&without_walls), median(&with_walls));
    println!(
        "  without --orphans (ms):       {}",
        list_ms(&without_walls)
    );
    println!("  with --orphans report (ms):   {}", list_ms(&with_walls));
    let _ = writeln!(
        report,
        "orphans ({LABELLED} labelled containers, {CLAIMED} claimed by records, {} orphans, \
         {} rounds): a pass without --orphans median {plain:.1} ms, with --orphans report \
         {looking:.1} ms: {:.1} ms more, {:.2} ms per orphan inspected",
        LABELLED - CLAIMED,
        with_walls.len(),
        looking - plain,
        (looking - plain) / (LABELLED - CLAIMED) as f64
    );
}

// ------------------------------------------------------------------------------------------------
// Part 8: space.

/// A dry run with and without `--measure-space`, alternately, over `--space-containers` expired
/// records whose containers (exited) each wrote `--space-mib` MiB into their writable layer, in
/// one set of containers per `--space-files` count: what measuring adds per container, one
/// inspection with `size=true` each, which the daemon answers by walking the container's layer.
/// A real run makes the same inspection of each container before it removes it; dry runs are
/// timed so that every round works on the same containers, with the same layers.
async fn space(options: &Options, docker: &Docker, work: &Path, report: &mut String) {
    for &files in &options.space_files {
        space_shape(options, docker, work, files, report).await;
    }
}

/// One set of the space part: containers whose MiB are in `files` files each.
async fn space_shape(
    options: &Options,
    docker: &Docker,
    work: &Path,
    files: usize,
    report: &mut String,
) {
    let (n, mib) = (options.space_containers, options.space_mib);
    println!(
        "== space: {n} containers with {mib} MiB each in {files} file{} of their writable \
         layer, {} rounds",
        if files == 1 { "" } else { "s" },
        options.space_rounds
    );
    let ids = docker
        .create_filled(&options.image, &unique("space"), n, mib, files)
        .await;
    let now = now_ms();
    let records: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                format!("g-space-{i:04}"),
                Some(id.clone()),
                "stopped",
                now - 8 * DAY_MS,
            )
        })
        .collect();
    let state = work.join(format!("space-{files}.db"));
    small_state(&state, &options.journal, &records);
    let without = rt_cleanup_args(options, &state, &["--dry-run", "--output", "json"]);
    let with = rt_cleanup_args(
        options,
        &state,
        &["--dry-run", "--output", "json", "--measure-space"],
    );
    let written = (n * mib) as u64 * (1 << 20);
    let (mut without_walls, mut with_walls) = (Vec::new(), Vec::new());
    let mut measured_bytes = 0;
    for round in 0..=options.space_rounds {
        for contender in 0..2 {
            let measuring = (contender == 0) == (round % 2 == 0);
            let measured = measure(
                &options.binary,
                if measuring { &with } else { &without },
                &[],
            );
            assert_eq!(measured.status, 0, "rt-cleanup exits 0");
            let summary: serde_json::Value =
                serde_json::from_slice(&measured.stdout).expect("the JSON summary");
            assert_eq!(
                summary["counts"]["removed"], n,
                "every container predicted removed"
            );
            if measuring {
                measured_bytes = summary["freed"]["size_rw_bytes"]
                    .as_u64()
                    .expect("every size measured");
                assert!(
                    measured_bytes >= written,
                    "the layers hold what was written: {measured_bytes} < {written}"
                );
            }
            // The first round warms the caches and is not counted.
            if round > 0 {
                if measuring {
                    with_walls.push(measured.wall_ms);
                } else {
                    without_walls.push(measured.wall_ms);
                }
            }
        }
    }
    let (plain, measuring) = (median(&without_walls), median(&with_walls));
    println!(
        "  dry run (ms):                   {}",
        list_ms(&without_walls)
    );
    println!("  dry run --measure-space (ms):   {}", list_ms(&with_walls));
    let _ = writeln!(
        report,
        "space ({n} containers of {mib} MiB written each in {files} file{}, {} rounds): a dry \
         run without --measure-space median {plain:.1} ms, with it {measuring:.1} ms: {:.1} ms \
         more, {:.2} ms per container measured ({:.1} MiB measured in all)",
        if files == 1 { "" } else { "s" },
        with_walls.len(),
        measuring - plain,
        (measuring - plain) / n as f64,
        measured_bytes as f64 / f64::from(1 << 20)
    );
}

// ------------------------------------------------------------------------------------------------
// Part 7: history.

/// A prepared log: `rows` rows of `operation_log` over a year, the runtime manager's and
/// rt-cleanup's, with what the benchmark compares against.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LogFacts {
    /// When the file was made, epoch milliseconds.
    built_at: i64,
    /// The `started_at` of the log's last row.
    last_started_at: i64,
    /// The game the `--game` comparison asks for.
    game: String,
}

/// How many games the prepared log's rows are spread over.
const LOG_GAMES: u64 = 20_000;

/// The prepared log of `rows` rows, made once and kept under `--files` (its rows' times do not
/// move with the clock: the window compared is the last day of the log).
fn history_state(options: &Options, rows: usize) -> (PathBuf, LogFacts) {
    std::fs::create_dir_all(&options.files).expect("the files directory");
    let path = options.files.join(format!("history-{rows}.db"));
    let facts_path = path.with_extension("json");
    let cached = std::fs::read(&facts_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<LogFacts>(&bytes).ok())
        .filter(|_| path.exists());
    if let Some(facts) = cached {
        println!("  reusing {}", path.display());
        return (path, facts);
    }
    let started = Instant::now();
    let _ = std::fs::remove_file(&facts_path);
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let facts = build_history_state(&partial, rows);
    std::fs::rename(&partial, &path).expect("the prepared file is kept");
    std::fs::write(
        &facts_path,
        serde_json::to_vec(&facts).expect("the facts serialise"),
    )
    .expect("the facts are written");
    println!(
        "  built {} in {:.1} s ({} MiB)",
        path.display(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&path).map_or(0, |m| m.len() >> 20)
    );
    (path, facts)
}

/// Writes a state file whose `operation_log` has `rows` rows appended in time order over the
/// year before now, one every 3.15 s on average: four in five the runtime manager's own
/// operations, one in five rt-cleanup's; one in twenty failed, with a code and a message; one
/// in twenty appended up to two minutes late (a long operation's row, out of `started_at`
/// order).
fn build_history_state(path: &Path, rows: usize) -> LogFacts {
    let mut connection = Connection::open(path).expect("the state file opens");
    connection
        .execute_batch(&format!("{TABLES}{INDEX}"))
        .expect("the schema");
    let now = now_ms();
    let year = 365 * DAY_MS;
    let mut rng = Rng(0x1095);
    let mut last_started_at = 0;
    let transaction = connection.transaction().expect("a transaction");
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
                 error_message, container_id, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .expect("the insert");
        for i in 0..rows as i64 {
            let game = format!("g-{:05}", rng.below(LOG_GAMES));
            let (kind, source) = match rng.below(5) {
                0 => ("cleanup_container", "auto_ttl"),
                1 => ("create_container", "rtmanager"),
                2 => ("start_game", "rtmanager"),
                3 => ("stop_game", "rtmanager"),
                _ => ("heartbeat", "rtmanager"),
            };
            let failed = rng.below(20) == 0;
            let (outcome, code, message) = if failed {
                (
                    "failure",
                    Some("docker_error"),
                    Some(format!("the daemon answered 500: {}", rng.hex(24))),
                )
            } else {
                ("success", None, None)
            };
            let late = if rng.below(20) == 0 {
                rng.below(120_000) as i64
            } else {
                0
            };
            // Evenly over the year, the last row at `now`.
            let at = i128::from(i + 1) * i128::from(year) / rows as i128;
            let started = now - year + i64::try_from(at).expect("within the year") - late;
            last_started_at = last_started_at.max(started);
            insert
                .execute(params![
                    game,
                    kind,
                    source,
                    outcome,
                    code,
                    message,
                    rng.hex(64),
                    started,
                    started + rng.below(2_000) as i64
                ])
                .expect("a row");
        }
    }
    transaction.commit().expect("the commit");
    LogFacts {
        built_at: now,
        last_started_at,
        game: "g-01234".to_owned(),
    }
}

/// One contender's runs: its walls (the first round only warms the caches) and how many rows
/// it printed.
struct HistoryContender {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    walls: Vec<f64>,
}

impl HistoryContender {
    /// Runs once; the number of rows printed (lines, less rt-cleanup's closing line).
    fn run(&mut self, round: usize) -> usize {
        let measured = measure(&self.program, &self.args, &[]);
        assert_eq!(measured.status, 0, "{} exits 0", self.name);
        let lines = measured.stdout.split(|b| *b == b'\n').count() - 1;
        if round > 0 {
            self.walls.push(measured.wall_ms);
        }
        if self.program.ends_with("sqlite3") {
            lines
        } else {
            lines - 1
        }
    }
}

/// `rt-cleanup history` against the sqlite3 CLI running the obvious query for the same rows,
/// alternately: the last day of a 10,000,000-row log (`--since`), and one game's rows
/// (`--game`), both printed whole (`--limit` raised above their counts).
fn history(options: &Options, report: &mut String) {
    let rows = options.history_rows;
    println!(
        "== history: {rows} rows over a year, {} rounds",
        options.history_rounds
    );
    let (state, facts) = history_state(options, rows);
    let sqlite3 = which(Path::new("sqlite3"));
    let columns = "id, game_id, op_kind, op_source, outcome, error_code, error_message, \
                   container_id, started_at, finished_at";
    let since_ms = facts.last_started_at - DAY_MS;
    let since =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(since_ms as u64))
            .to_string();
    let state_arg = state.display().to_string();
    let rt = |extra: &[&str]| {
        let mut args = vec![
            "history".to_owned(),
            "--state".to_owned(),
            state_arg.clone(),
        ];
        args.extend(["--limit".to_owned(), "1000000".to_owned()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let sql = |condition: &str| {
        vec![
            "-readonly".to_owned(),
            state_arg.clone(),
            format!("SELECT {columns} FROM operation_log WHERE {condition} ORDER BY id DESC;"),
        ]
    };
    let cases = [
        (
            format!("--since {since} (the log's last day)"),
            rt(&["--since", &since]),
            sql(&format!("started_at >= {since_ms}")),
            0.1,
        ),
        (
            format!("--game {}", facts.game),
            rt(&["--game", &facts.game]),
            sql(&format!("game_id = '{}'", facts.game)),
            1.2,
        ),
    ];
    for (name, rt_args, sql_args, target) in cases {
        let mut contenders = [
            HistoryContender {
                name: "rt-cleanup history".to_owned(),
                program: options.binary.clone(),
                args: rt_args,
                walls: Vec::new(),
            },
            HistoryContender {
                name: "sqlite3".to_owned(),
                program: sqlite3.clone(),
                args: sql_args,
                walls: Vec::new(),
            },
        ];
        let mut printed = [0, 0];
        for round in 0..=options.history_rounds {
            // Each round starts with the other program.
            for turn in 0..2 {
                let which = (turn + round) % 2;
                printed[which] = contenders[which].run(round);
            }
            assert_eq!(
                printed[0], printed[1],
                "{name}: rt-cleanup and sqlite3 print the same rows"
            );
        }
        let (rt, sq) = (median(&contenders[0].walls), median(&contenders[1].walls));
        println!("  {name}: {} rows", printed[0]);
        println!(
            "    rt-cleanup walls (ms): {}",
            list_ms(&contenders[0].walls)
        );
        println!(
            "    sqlite3 walls (ms):    {}",
            list_ms(&contenders[1].walls)
        );
        let _ = writeln!(
            report,
            "history {name}, {rows} rows, {} printed, {} rounds: rt-cleanup history median \
             {rt:.1} ms, sqlite3 CLI median {sq:.1} ms, ratio {:.3} (target: at most {target}: \
             {})",
            printed[0],
            contenders[0].walls.len(),
            rt / sq,
            verdict(rt / sq <= target)
        );
    }
}

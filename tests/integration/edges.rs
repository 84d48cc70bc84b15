//! The edges where v1 broke when others tried it: hand-edited plans, a closed stderr, bytes that
//! are not UTF-8, a directory with other permissions than its file, a dry run on a WAL file,
//! absurd settings, a second signal, and messages. Each test failed on the build before its fix
//! (run them against another build with `RT_CLEANUP_TEST_BINARY`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::types::Value;

use crate::harness::{
    binary, command, daemon, days_ago, directory_listing, exists, finish, now_ms, pass, pass_args,
    plan_of, rfc3339_ms, run_with_env, run_without_docker, write_plan, Containers, FaultProxy,
    Immutable, Journal, Match, Run, Spawned, StateFile, TcpBridge, OWNER_LABEL,
};

/// A planned entry for a record exactly as it is in the state file now.
fn entry_as_it_is(state: &StateFile, game: &str) -> serde_json::Value {
    let record = state.record(game).unwrap();
    let value = |value: &Value| match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(n) => serde_json::json!(n),
        Value::Real(n) => serde_json::json!(n),
        Value::Text(text) => serde_json::json!(text),
        Value::Blob(bytes) => serde_json::json!(bytes),
    };
    serde_json::json!({
        "game_id": game,
        "container_id": value(&record.container_id),
        "last_op_at": value(&record.last_op_at),
        "predicted": "removed",
        "predicted_message": null,
    })
}

// ------------------------------------------------------------------------------------------------
// Plans never widen the selection
// ------------------------------------------------------------------------------------------------

#[test]
fn a_plan_entry_added_by_hand_for_a_record_that_is_not_expired_is_a_conflict() {
    let containers = Containers::new("plan-widened");
    let state = StateFile::new(Journal::Wal);
    let expired = containers.create(&[]);
    let recent = containers.create(&[]);
    state.stopped("g-expired", Some(&expired), 8);
    state.insert(
        "g-recent",
        Some(&recent),
        "stopped",
        &(now_ms() - 3_600_000),
    );
    let plans = tempfile::tempdir().unwrap();
    let (plan, mut json) = plan_of(&state, plans.path(), &[]);
    assert_eq!(json["records"].as_array().unwrap().len(), 1);
    // The reviewer adds a record stopped an hour ago, with its current row values.
    json["records"]
        .as_array_mut()
        .unwrap()
        .push(entry_as_it_is(&state, "g-recent"));
    write_plan(&plan, &json);

    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(0);
    assert_eq!(applied.result_of("g-expired"), "removed");
    assert_eq!(applied.result_of("g-recent"), "conflict");
    assert!(
        exists(&recent),
        "a record younger than the retention keeps its container"
    );
    assert_eq!(state.status("g-recent"), "stopped");
    let log = state.log("g-recent");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].error_code.as_deref(), Some("conflict"));
    assert!(
        log[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("not expired"),
        "{log:?}"
    );
    assert!(state.leases().is_empty());
}

#[test]
fn a_plan_made_with_an_owner_label_applies_it_whatever_the_command_line_says() {
    let containers = Containers::new("plan-owner");
    let state = StateFile::new(Journal::Rollback);
    let mine = containers.create(&[(OWNER_LABEL, "g-mine")]);
    let theirs = containers.create(&[(OWNER_LABEL, "g-other-game")]);
    state.stopped("g-mine", Some(&mine), 9);
    state.stopped("g-theirs", Some(&theirs), 8);
    let plans = tempfile::tempdir().unwrap();
    let (plan, json) = plan_of(&state, plans.path(), &["--owner-label", OWNER_LABEL]);
    assert_eq!(json["owner_label"], OWNER_LABEL);

    let other_label = pass(&state, &["--apply-plan", &plan, "--owner-label", "other"]);
    other_label.assert_code(2);
    assert!(
        other_label.stderr.contains("--owner-label"),
        "{}",
        other_label.stderr
    );
    assert!(exists(&mine) && exists(&theirs));
    assert!(state.all_log().is_empty(), "nothing changed");

    // Without --owner-label, the plan's own label still protects another game's container.
    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(1);
    assert_eq!(applied.result_of("g-mine"), "removed");
    assert_eq!(applied.result_of("g-theirs"), "failed");
    assert!(exists(&theirs), "another game's container is never removed");
    assert_eq!(
        state.log("g-theirs")[0].error_code.as_deref(),
        Some("ownership_mismatch")
    );
}

#[test]
fn a_plan_listing_a_record_twice_is_refused_and_changes_nothing() {
    let containers = Containers::new("plan-twice");
    let state = StateFile::new(Journal::Rollback);
    let container = containers.create(&[]);
    state.stopped("g", Some(&container), 8);
    let plans = tempfile::tempdir().unwrap();
    let (plan, mut json) = plan_of(&state, plans.path(), &[]);
    let first = json["records"][0].clone();
    json["records"].as_array_mut().unwrap().push(first);
    write_plan(&plan, &json);

    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(2);
    assert!(applied.stderr.contains("twice"), "{}", applied.stderr);
    assert!(exists(&container));
    assert!(state.all_log().is_empty());
}

#[test]
fn plan_entries_with_a_real_timestamp_or_for_a_missing_game_are_reread_under_their_lease() {
    let state = StateFile::new(Journal::Rollback);
    state.insert("g-real", None, "stopped", &(days_ago(9) as f64 + 0.5));
    state.insert(
        "g-real-restarted",
        None,
        "stopped",
        &(days_ago(9) as f64 + 0.25),
    );
    let plans = tempfile::tempdir().unwrap();
    let (plan, mut json) = plan_of(&state, plans.path(), &[]);
    let records = json["records"].as_array_mut().unwrap();
    assert_eq!(
        records.len(),
        2,
        "expired real timestamps are planned: {records:?}"
    );
    // An entry for a game the state file does not have, with a real timestamp too.
    let mut ghost = records[0].clone();
    ghost["game_id"] = serde_json::json!("g-not-in-the-file");
    records.push(ghost);
    write_plan(&plan, &json);
    // After the review, the manager restarts one of the planned games.
    state
        .connect()
        .execute(
            "UPDATE runtime_records SET status = 'running' WHERE game_id = 'g-real-restarted'",
            [],
        )
        .unwrap();

    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(1);
    // Re-read under its lease: still the same unusable row, so it fails.
    assert_eq!(applied.result_of("g-real"), "failed");
    assert_eq!(
        state.log("g-real")[0].error_code.as_deref(),
        Some("invalid_record")
    );
    // Re-read under their leases: one changed, one has no record; neither qualifies.
    for game in ["g-real-restarted", "g-not-in-the-file"] {
        assert_eq!(applied.result_of(game), "conflict", "{game}");
        let log = state.log(game);
        assert_eq!(log[0].outcome, "success", "{game}: {log:?}");
        assert_eq!(log[0].error_code.as_deref(), Some("conflict"), "{game}");
    }
    assert_eq!(state.status("g-real-restarted"), "running");
    assert!(state.leases().is_empty());
}

#[test]
fn a_plan_whose_threshold_was_moved_forward_is_refused() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let plans = tempfile::tempdir().unwrap();
    let (plan, mut json) = plan_of(&state, plans.path(), &[]);
    json["threshold_ms"] = serde_json::json!(now_ms());
    write_plan(&plan, &json);
    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(2);
    assert!(applied.stderr.contains("threshold"), "{}", applied.stderr);
    assert_eq!(state.status("g"), "stopped");
}

// ------------------------------------------------------------------------------------------------
// A closed stderr or stdout
// ------------------------------------------------------------------------------------------------

/// Runs a real text pass over four expired records with stderr (or stdout) a pipe whose reader
/// is already gone, as in `rt-cleanup … 2>&1 | head -3`, and checks that nothing of the pass was
/// lost: every container removed, every record moved and logged, no lease left, the metrics
/// written with exit status 0. Returns what reached the other stream.
fn a_pass_with_a_closed(stream: &str) -> String {
    let containers = Containers::new(&format!("closed-{stream}"));
    let state = StateFile::new(Journal::Rollback);
    let ids: Vec<String> = (0..4).map(|_| containers.create(&[])).collect();
    for (index, id) in ids.iter().enumerate() {
        state.stopped(&format!("g-{index}"), Some(id), 8);
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let path = state.path().display().to_string();
    let metrics = state.dir().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();
    let mut command = command(&[
        "--retention",
        "7d",
        "--state",
        &path,
        "--metrics-file",
        &metrics_arg,
    ]);
    command.env("DOCKER_HOST", &daemon().host);
    if stream == "stderr" {
        command.stderr(writer).stdout(Stdio::piped());
    } else {
        command.stdout(writer).stderr(Stdio::piped());
    }
    let output = command.output().unwrap();

    assert_eq!(output.status.code(), Some(0), "no panic, no abort");
    for (index, id) in ids.iter().enumerate() {
        let game = format!("g-{index}");
        assert!(!exists(id));
        assert_eq!(state.status(&game), "removed");
        assert_eq!(state.log(&game).len(), 1, "every row is written");
    }
    assert!(state.leases().is_empty(), "no lease left behind");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("\nrt_cleanup_last_run_exit_status 0\n"),
        "{text}"
    );
    let other = if stream == "stderr" {
        &output.stdout
    } else {
        &output.stderr
    };
    String::from_utf8_lossy(other).into_owned()
}

#[test]
fn a_closed_stderr_never_aborts_a_pass_or_changes_its_result() {
    let summary = a_pass_with_a_closed("stderr");
    assert!(summary.contains("4 removed"), "{summary}");
}

#[test]
fn a_closed_stdout_never_aborts_a_pass_or_changes_its_result() {
    let logs = a_pass_with_a_closed("stdout");
    assert!(
        logs.contains("cannot write the summary to stdout"),
        "the lost summary is logged: {logs}"
    );
}

#[test]
fn a_summary_written_to_a_pipe_gets_a_pipe_of_a_mebibyte() {
    // A summary of 10,000 records is 3.6 MB: through Linux's default 64 KiB pipe the pass and
    // its reader took turns 55 times (docs/benchmark.md).
    let state = StateFile::new(Journal::Rollback);
    for index in 0..3 {
        state.stopped(&format!("g-{index}"), None, 8);
    }
    let (mut reader, writer) = std::io::pipe().unwrap();
    let path = state.path().display().to_string();
    let mut command = command(&[
        "--retention",
        "7d",
        "--state",
        &path,
        "--dry-run",
        "--output",
        "json",
    ]);
    command
        .env("DOCKER_HOST", &daemon().host)
        .stdout(writer)
        .stderr(Stdio::null());
    let status = command.status().unwrap();
    // The command holds the pipe's other end until it is dropped.
    drop(command);

    let size = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
    assert_eq!(size, 1 << 20, "the pipe was widened to 1 MiB");
    let mut summary = String::new();
    reader.read_to_string(&mut summary).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["counts"]["expired"], 3, "{summary}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_signal_while_the_summary_waits_for_a_reader_ends_the_run_and_the_metrics_are_written() {
    // A summary of 10,000 records is 3.6 MB, more than the widened pipe holds: with nobody
    // reading stdout, the run waits in its write.
    let state = StateFile::new(Journal::Wal);
    {
        let mut connection = state.connect();
        let transaction = connection.transaction().unwrap();
        for index in 0..10_000 {
            transaction
                .execute(
                    "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                     VALUES (?1, NULL, 'stopped', ?2)",
                    rusqlite::params![format!("g-{index}"), days_ago(8)],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    let metrics = state.dir().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();
    let args = pass_args(&state, &["--metrics-file", &metrics_arg]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_unread, writer) = std::io::pipe().unwrap();
    let stderr = state.dir().join("stderr.log");
    let mut child = command(&args)
        .env("DOCKER_HOST", &daemon().host)
        .stdout(writer)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !metrics.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended although nobody read its summary"
        );
        assert!(
            Instant::now() < deadline,
            "no metrics file within 120 s: a run waiting for a reader of its summary must have \
             written them first"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "waiting for a reader");
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("still waiting for a reader 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    let logs = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        logs.contains("received SIGTERM while writing to stdout: the work was done and recorded"),
        "{logs}"
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "rt_cleanup_last_run_records{result=\"replay_no_op\"} 10000",
        "rt_cleanup_last_run_exit_status 0",
    ] {
        assert!(
            text.lines().any(|shown| shown == line),
            "the pass's own figures, written before its summary: {line}\n{text}"
        );
    }
    assert_eq!(state.all_log().len(), 10_000, "every result was written");
}

#[test]
fn a_closed_stderr_does_not_turn_a_refusal_into_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command(&["--retention", "0s"])
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

// ------------------------------------------------------------------------------------------------
// Bytes that are not UTF-8
// ------------------------------------------------------------------------------------------------

/// A temp dir whose name holds a byte that is not UTF-8.
fn non_utf8_dir() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let odd = parent.path().join(OsStr::from_bytes(b"st\xff"));
    std::fs::create_dir(&odd).unwrap();
    (parent, odd)
}

#[test]
fn a_state_path_that_is_not_utf8_is_reported_and_planned_without_a_panic() {
    let containers = Containers::new("odd-path");
    let (_parent, odd) = non_utf8_dir();
    let state = StateFile::new_in(&odd, Journal::Rollback);
    let first = containers.create(&[]);
    let second = containers.create(&[]);
    state.stopped("g-1", Some(&first), 8);
    state.stopped("g-2", Some(&second), 9);
    let plan = odd.join("plan.json");
    let run = |extra: &[&OsStr]| -> Run {
        let mut command = command(&["--retention", "7d", "--output", "json"]);
        command.env("DOCKER_HOST", &daemon().host);
        command.arg("--state").arg(state.path()).args(extra);
        finish(&command.output().unwrap())
    };

    let dry = run(&[
        OsStr::new("--dry-run"),
        OsStr::new("--max-removals"),
        OsStr::new("1"),
        OsStr::new("--plan-out"),
        plan.as_os_str(),
    ]);
    dry.assert_code(0);
    let state_shown = dry.json()["state"].as_str().unwrap().to_owned();
    assert!(state_shown.contains("st\\xFF"), "{state_shown}");
    let applied = run(&[OsStr::new("--apply-plan"), plan.as_os_str()]);
    applied.assert_code(0);
    assert_eq!(
        applied.result_of("g-2"),
        "removed",
        "the plan matched the path's bytes"
    );
    let real = run(&[]);
    real.assert_code(0);
    assert_eq!(real.result_of("g-1"), "removed");
    assert!(!exists(&first) && !exists(&second));
}

#[test]
fn a_game_id_that_is_not_utf8_is_handled_under_its_exact_key_once() {
    let containers = Containers::new("odd-game");
    let state = StateFile::new(Journal::Wal);
    let container = containers.create(&[]);
    state
        .connect()
        .execute(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
             VALUES (CAST(X'672DFF' AS TEXT), ?1, 'stopped', ?2)",
            rusqlite::params![container, days_ago(8)],
        )
        .unwrap();

    let first = pass(&state, &[]);
    first.assert_code(0);
    assert_eq!(first.result_of("g-\\xFF"), "removed");
    assert!(!exists(&container));
    let connection = state.connect();
    let status: String = connection
        .query_row(
            "SELECT status FROM runtime_records WHERE game_id = CAST(X'672DFF' AS TEXT)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(status, "removed", "moved under the exact key");
    let logged: i64 = connection
        .query_row(
            "SELECT count(*) FROM operation_log WHERE game_id = CAST(X'672DFF' AS TEXT)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(logged, 1, "logged under the exact key");
    let leases: i64 = connection
        .query_row("SELECT count(*) FROM game_leases", [], |row| row.get(0))
        .unwrap();
    assert_eq!(leases, 0, "no lease under any other key");

    let second = pass(&state, &[]);
    second.assert_code(0);
    assert_eq!(
        second.json()["counts"]["expired"],
        0,
        "no perpetual conflict"
    );
}

in_both_journal_modes!(a_record_without_a_game_is_reported_without_a_lease_or_a_log_row);
fn a_record_without_a_game_is_reported_without_a_lease_or_a_log_row(journal: Journal) {
    let containers = Containers::new("null-game");
    let state = StateFile::new(journal);
    // A table made by hand without the contract's NOT NULL on game_id.
    state
        .connect()
        .execute_batch(
            "DROP TABLE runtime_records;
             CREATE TABLE runtime_records (game_id TEXT PRIMARY KEY, container_id TEXT,
                 status TEXT NOT NULL, last_op_at INTEGER NOT NULL);",
        )
        .unwrap();
    let container = containers.create(&[]);
    state
        .connect()
        .execute(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
             VALUES (NULL, ?1, 'stopped', ?2)",
            rusqlite::params![container, days_ago(9)],
        )
        .unwrap();
    state.stopped("after", None, 8);

    let null_game = |run: &Run| -> serde_json::Value {
        let records = run.json()["records"].as_array().unwrap().clone();
        assert_eq!(records.len(), 2, "{}", run.stdout);
        let record = records[0].clone();
        assert_eq!(record["game_id"], serde_json::Value::Null, "{record}");
        record
    };
    let dry = pass(&state, &["--dry-run"]);
    dry.assert_code(1);
    let real = pass(&state, &[]);
    real.assert_code(1);
    let (predicted, given) = (null_game(&dry), null_game(&real));
    assert_eq!(given["result"], "failed");
    assert_eq!(given["error_code"], "invalid_record");
    assert!(
        given["error_message"]
            .as_str()
            .unwrap()
            .starts_with("game_id is NULL: no lease can be taken on it"),
        "{given}"
    );
    assert_eq!(predicted, given, "the dry run predicts the real run");
    assert_eq!(real.result_of("after"), "replay_no_op", "the pass goes on");
    assert!(exists(&container), "never sent to Docker");
    let connection = state.connect();
    let count = |sql: &str| -> i64 { connection.query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM game_leases"),
        0,
        "no lease left"
    );
    assert_eq!(
        count("SELECT count(*) FROM runtime_records WHERE game_id IS NULL AND status = 'stopped'"),
        1,
        "the record is left as it is"
    );
    assert_eq!(
        count("SELECT count(*) FROM operation_log"),
        1,
        "one row, the other record's: none can name a NULL game"
    );
}

// ------------------------------------------------------------------------------------------------
// A directory with other permissions than its file
// ------------------------------------------------------------------------------------------------

/// Runs the binary as `nobody`, whose only way to Docker is `bridge`.
fn as_nobody(bridge: &TcpBridge, args: &[String]) -> Run {
    as_nobody_with_threads(bridge, args, None)
}

/// Runs the binary as `nobody`, allowed at most `tasks` processes and threads where given
/// (`prlimit --nproc`: nobody runs nothing else here).
fn as_nobody_with_threads(bridge: &TcpBridge, args: &[String], tasks: Option<u32>) -> Run {
    let mut command = match tasks {
        Some(tasks) => {
            let mut command = Command::new("prlimit");
            command.arg(format!("--nproc={tasks}")).arg("setpriv");
            command
        }
        None => Command::new("setpriv"),
    };
    let output = command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary())
        .args(args)
        .env_clear()
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", bridge.port))
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs the binary as nobody");
    finish(&output)
}

#[test]
fn a_process_that_can_start_no_thread_counts_on_its_own_and_changes_nothing() {
    // One task for nobody: the pass's own. The count beside the selection falls back to the
    // main connection; the state writer cannot start, so the real run stops before any lease,
    // with exit 75 (try again), and a dry run still predicts.
    let bridge = TcpBridge::to_test_daemon();
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    std::fs::set_permissions(state.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = state.bytes();

    let dry = as_nobody_with_threads(&bridge, &pass_args(&state, &["--dry-run"]), Some(1));
    dry.assert_code(0);
    assert_eq!(
        dry.json()["counts"]["stopped"],
        1,
        "counted without a thread"
    );
    assert_eq!(dry.result_of("g"), "replay_no_op");

    let real = as_nobody_with_threads(&bridge, &pass_args(&state, &[]), Some(1));
    real.assert_code(75);
    assert!(
        real.stderr
            .contains("cannot start the writer of state file"),
        "{}",
        real.stderr
    );
    assert!(real.stdout.is_empty(), "no pass ran: {}", real.stdout);
    assert_eq!(state.bytes(), before, "nothing was changed");
}

#[test]
fn a_writable_state_file_in_a_directory_that_is_not_refuses_a_real_run_at_the_start() {
    let containers = Containers::new("ro-dir");
    let bridge = TcpBridge::to_test_daemon();
    for journal in [Journal::Rollback, Journal::Wal] {
        let state = StateFile::new(journal);
        let container = containers.create(&[]);
        state.stopped("g", Some(&container), 8);
        // As /var/lib/rtmanager is often: the directory 0755 of its owner, the file writable by
        // the cleanup user's group. Here nobody may write the file, not the directory.
        std::fs::set_permissions(state.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let before = state.bytes();

        let real = as_nobody(&bridge, &pass_args(&state, &[]));
        real.assert_code(2);
        let directory = state.dir().display().to_string();
        // The state file's own path names the directory too: the message must say that it is
        // the directory that cannot be written.
        assert!(
            real.stderr.contains(&format!(
                "write access to the file and to its directory {directory}"
            )),
            "{journal:?}: the message names the directory {directory}: {}",
            real.stderr
        );
        assert!(real.stdout.is_empty(), "no pass ran: {}", real.stdout);
        assert!(exists(&container), "nothing was touched");
        assert_eq!(state.bytes(), before);

        let dry = as_nobody(&bridge, &pass_args(&state, &["--dry-run"]));
        dry.assert_code(0);
        assert_eq!(
            dry.result_of("g"),
            "removed",
            "{journal:?}: a dry run still predicts"
        );
        assert_eq!(
            std::fs::read_dir(state.dir()).unwrap().count(),
            1,
            "{journal:?}: the directory holds only the state file"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// A dry run changes nothing, the directory included, and never predicts from stale data
// ------------------------------------------------------------------------------------------------

#[test]
fn a_dry_run_on_a_closed_wal_file_leaves_no_wal_or_shm_behind() {
    let containers = Containers::new("dry-wal");
    let state = StateFile::new(Journal::Wal);
    let container = containers.create(&[]);
    state.stopped("g", Some(&container), 8);
    assert_eq!(
        directory_listing(state.dir()),
        ["state.db"],
        "closed cleanly"
    );
    let before = state.bytes();

    let dry = pass(&state, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(dry.result_of("g"), "removed");
    assert_eq!(
        directory_listing(state.dir()),
        ["state.db"],
        "nothing was created"
    );
    assert_eq!(state.bytes(), before);
}

/// Leaves a WAL file as a writer that died leaves it: committed changes in `-wal`, no `-shm`.
fn crash_with_changes_in_the_wal(state: &StateFile, changes: &str) {
    let writer = state.connect();
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0;")
        .unwrap();
    writer.execute_batch(changes).unwrap();
    let wal = state.dir().join("state.db-wal");
    let kept_db = state.bytes();
    let kept_wal = std::fs::read(&wal).unwrap();
    drop(writer);
    std::fs::write(state.path(), kept_db).unwrap();
    std::fs::write(&wal, kept_wal).unwrap();
    let _ = std::fs::remove_file(state.dir().join("state.db-shm"));
}

#[test]
fn a_dry_run_never_predicts_from_a_main_file_whose_wal_holds_newer_data() {
    let state = StateFile::new(Journal::Wal);
    state.stopped("g-restarted", None, 8);
    crash_with_changes_in_the_wal(
        &state,
        &format!(
            "UPDATE runtime_records SET status = 'running' WHERE game_id = 'g-restarted';
             INSERT INTO runtime_records (game_id, container_id, status, last_op_at)
               VALUES ('g-new', NULL, 'stopped', {});",
            days_ago(9)
        ),
    );
    assert_eq!(directory_listing(state.dir()), ["state.db", "state.db-wal"]);
    for read_only in [true, false] {
        let guard = read_only.then(|| Immutable::new(&[state.dir()]));
        let dry = pass(&state, &["--dry-run"]);
        drop(guard);
        dry.assert_code(2);
        assert!(dry.stdout.is_empty(), "no prediction: {}", dry.stdout);
        assert!(dry.stderr.contains("state.db-wal"), "{}", dry.stderr);
        assert_eq!(
            directory_listing(state.dir()),
            ["state.db", "state.db-wal"],
            "read-only directory: {read_only}"
        );
    }
    // A real run, which may create the WAL index, sees the committed state.
    let real = pass(&state, &[]);
    real.assert_code(0);
    assert_eq!(real.json()["counts"]["expired"], 1);
    assert_eq!(real.result_of("g-new"), "replay_no_op");
    assert_eq!(state.status("g-restarted"), "running");
}

// ------------------------------------------------------------------------------------------------
// Absurd settings and the environment
// ------------------------------------------------------------------------------------------------

#[test]
fn absurd_durations_are_refused_with_exit_2_and_one_line() {
    for (args, says) in [
        (
            &[
                "--retention",
                "7d",
                "--lock-wait",
                "25d",
                "--lease-ttl",
                "30d",
            ][..],
            "--lock-wait",
        ),
        (&["--retention", "1000y"], "before 1970"),
        (&["--retention", "500ms"], "whole seconds"),
        (&["--retention", "-1d"], "negative"),
        (&["--retention", "7d", "--lease-ttl", "-5m"], "negative"),
    ] {
        let run = run_without_docker(args);
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let containers = Containers::new("empty-env");
    let state = StateFile::new(Journal::Rollback);
    let container = containers.create(&[]);
    state.stopped("g", Some(&container), 8);
    let path = state.path().display().to_string();
    let run = run_with_env(
        &[],
        &[
            ("RT_CLEANUP_RETENTION", "7d"),
            ("RT_CLEANUP_STATE", &path),
            ("RT_CLEANUP_OUTPUT", "json"),
            ("RT_CLEANUP_MAX_REMOVALS", ""),
            ("RT_CLEANUP_OWNER_LABEL", ""),
            ("RT_CLEANUP_DRY_RUN", ""),
            ("RT_CLEANUP_METRICS_FILE", ""),
            ("RT_CLEANUP_LOCK_WAIT", ""),
        ],
    );
    run.assert_code(0);
    assert_eq!(
        run.result_of("g"),
        "removed",
        "a real run, no limit, no owner check"
    );
}

// ------------------------------------------------------------------------------------------------
// A second signal
// ------------------------------------------------------------------------------------------------

#[test]
fn a_second_signal_abandons_the_removals_in_flight_after_a_short_grace() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("second-signal");
        let state = StateFile::new(journal);
        let held = containers.create(&[]);
        let later = containers.create(&[]);
        state.stopped("g-held", Some(&held), 9);
        state.stopped("g-later", Some(&later), 8);
        let gate = FaultProxy::holding(Match::removal());
        let args = pass_args(&state, &["--concurrency", "1"]);
        let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("DOCKER_HOST", gate.host());
        let running = Spawned::start(command);
        assert!(
            gate.wait_held(1, Duration::from_secs(20)),
            "the removal never came"
        );

        running.signal("TERM");
        assert!(running.wait_for_stderr("received SIGTERM", Duration::from_secs(5)));
        running.signal("TERM");
        let second = Instant::now();
        assert!(
            running.wait_for_stderr("received SIGTERM again", Duration::from_secs(5)),
            "the second signal is logged"
        );
        let run = running.wait(Duration::from_secs(20));
        let took = second.elapsed();
        // The proxy never lets the removal through: only the abandonment ends the wait.
        run.assert_code(143);
        assert!(
            took < Duration::from_secs(6),
            "{journal:?}: took {took:?} after the second signal"
        );
        assert_eq!(run.result_of("g-held"), "failed");
        assert_eq!(run.result_of("g-later"), "deferred");
        assert_eq!(state.status("g-held"), "stopped", "not verifiably gone");
        let log = state.log("g-held");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].error_code.as_deref(), Some("docker_error"));
        let message = log[0].error_message.as_deref().unwrap();
        assert!(
            message.contains("abandoned") && message.contains("may still"),
            "{journal:?}: {message}"
        );
        assert!(state.log("g-later").is_empty());
        // The abandoned removal was sent: the daemon may still carry it out, so its lease stays
        // until it expires, and the summary says so.
        let leases = state.leases();
        assert_eq!(leases.len(), 1, "{journal:?}: {leases:?}");
        assert_eq!(leases[0].0, "g-held");
        assert_eq!(
            run.json()["leases_kept"],
            serde_json::json!([{"game_id": "g-held", "until": rfc3339_ms(leases[0].2)}]),
            "{journal:?}"
        );
        drop(gate);
    }
}

// ------------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------------

#[test]
fn a_directory_given_as_the_state_file_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let run = run_without_docker(&["--retention", "7d", "--state", &path]);
    run.assert_code(2);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
    assert!(!run.stderr.contains("disk I/O error"), "{}", run.stderr);
}

#[test]
fn docker_advice_to_force_stays_in_the_log_row_but_not_in_our_own_lines() {
    let containers = Containers::new("force-advice");
    let state = StateFile::new(Journal::Rollback);
    let running = containers.run(&[]);
    state.stopped("g", Some(&running), 8);
    let path = state.path().display().to_string();
    let text = run_with_env(&["--retention", "7d", "--state", &path], &[]);
    text.assert_code(1);
    assert!(text.stdout.contains("container_running"), "{}", text.stdout);
    assert!(
        !text.stdout.contains("force remove"),
        "summary: {}",
        text.stdout
    );
    assert!(
        !text.stderr.contains("force remove"),
        "logs: {}",
        text.stderr
    );
    assert!(exists(&running));
    let log = state.log("g");
    assert!(log[0]
        .error_message
        .as_deref()
        .unwrap()
        .contains("force remove"));
}

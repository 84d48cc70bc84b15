//! `rt-cleanup history` against real state files: every row whoever wrote it, newest first, the
//! filters, a time window found by its binary search (rows out of order at its edges included),
//! the limit, the escaping, and the promises of a dry run (nothing written or created, a read
//! that a held lock makes wait and then exit 75). History needs no daemon: it is never asked.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rusqlite::params;
use serde_json::Value;

use crate::harness::{
    command, directory_listing, finish, now_ms, pass, rfc3339_ms, run_without_docker, Containers,
    Immutable, Journal, Run, StateFile,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Appends an `operation_log` row as its writer (rt-cleanup or the runtime manager) would.
fn log(state: &StateFile, game: &[u8], kind: &str, outcome: &str, code: Option<&str>, at: i64) {
    state
        .connect()
        .execute(
            "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
             error_message, container_id, started_at, finished_at) \
             VALUES (CAST(?1 AS TEXT), ?2, ?3, ?4, ?5, ?6, 'c-1', ?7, ?8)",
            params![
                game,
                kind,
                if kind.starts_with("cleanup_") {
                    "auto_ttl"
                } else {
                    "rtmanager"
                },
                outcome,
                code,
                code.map(|code| format!("because {code}")),
                at,
                at + 250
            ],
        )
        .unwrap();
}

/// Runs `rt-cleanup history` over `state` with `--output json` and more arguments.
fn history(state: &StateFile, extra: &[&str]) -> Run {
    let state_path = state.path().display().to_string();
    let mut args = vec!["history", "--state", &state_path, "--output", "json"];
    args.extend_from_slice(extra);
    run_without_docker(&args)
}

/// The ids of the rows of a JSON history, in order.
fn ids(run: &Run) -> Vec<i64> {
    run.assert_code(0);
    run.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect()
}

fn every_row_whoever_wrote_it_newest_first_as_stored(journal: Journal) {
    let state = StateFile::new(journal);
    let containers = Containers::new("history-rows");
    let id = containers.create(&[]);
    state.stopped("g-removed", Some(&id), 9);
    state.stopped("g-none", None, 8);
    let started = now_ms();
    log(
        &state,
        b"g-run",
        "start_game",
        "success",
        None,
        started - HOUR,
    );
    pass(&state, &[]).assert_code(0);
    log(
        &state,
        b"g-run",
        "stop_game",
        "failure",
        Some("E_STOP"),
        now_ms(),
    );

    let run = history(&state, &[]);
    let json = run.json();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(ids(&run), [4, 3, 2, 1], "newest first, by id");
    let row_of = |game: &str| {
        rows.iter()
            .find(|row| row["game_id"] == game)
            .unwrap_or_else(|| panic!("no row of {game}: {}", run.stdout))
    };
    // The pass appended its two rows in the order its records finished.
    assert_eq!(rows[0]["game_id"], "g-run");
    assert_eq!(rows[3]["game_id"], "g-run");
    assert_eq!(json["more"], false);
    assert_eq!(json["limit"], 50);
    let removed = row_of("g-removed");
    let stored = &state.log("g-removed")[0];
    assert_eq!(removed["op_kind"], "cleanup_container");
    assert_eq!(removed["op_source"], "auto_ttl");
    assert_eq!(removed["outcome"], "success");
    assert_eq!(removed["error_code"], Value::Null);
    assert_eq!(removed["container_id"], id.as_str());
    assert_eq!(removed["started_at"], stored.started_at);
    assert_eq!(removed["finished_at"], stored.finished_at);
    assert_eq!(removed["started_at_rfc3339"], rfc3339_ms(stored.started_at));
    assert_eq!(
        removed["finished_at_rfc3339"],
        rfc3339_ms(stored.finished_at)
    );
    assert_eq!(removed["result"], "removed");
    assert_eq!(row_of("g-none")["result"], "replay_no_op");
    assert_eq!(
        rows[0]["result"],
        Value::Null,
        "a row of the runtime manager's"
    );
    assert_eq!(rows[0]["error_message"], "because E_STOP");

    let text = run_without_docker(&["history", "--state", &state.path().display().to_string()]);
    text.assert_code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", text.stdout);
    let removed_id = removed["id"].as_i64().unwrap();
    assert!(
        lines[usize::try_from(4 - removed_id).unwrap()].contains(&format!(
            "id={removed_id} game_id=g-removed op_kind=cleanup_container op_source=auto_ttl \
             outcome=success container_id={id}"
        )),
        "{}",
        text.stdout
    );
    assert!(lines[0].contains("error_code=E_STOP"), "{}", text.stdout);
    assert_eq!(lines[4], "rt-cleanup history: 4 rows, newest first");
}
in_both_journal_modes!(every_row_whoever_wrote_it_newest_first_as_stored);

#[test]
fn the_filters_select_by_game_result_kind_and_source() {
    let state = StateFile::new(Journal::Rollback);
    let at = now_ms() - 10 * MINUTE;
    log(&state, b"g-1", "cleanup_container", "success", None, at); // 1
    log(
        &state,
        b"g-2",
        "cleanup_container",
        "failure",
        Some("container_running"),
        at,
    ); // 2
    log(
        &state,
        b"g-1",
        "cleanup_orphan",
        "success",
        Some("conflict"),
        at,
    ); // 3
    log(&state, b"g-2", "start_game", "failure", Some("E"), at); // 4
    log(
        &state,
        b"g-3",
        "cleanup_container",
        "success",
        Some("replay_no_op"),
        at,
    ); // 5
    log(&state, b"g-1", "start_game", "success", None, at); // 6

    assert_eq!(ids(&history(&state, &["--game", "g-1"])), [6, 3, 1]);
    assert_eq!(
        ids(&history(&state, &["--game", "g-1", "--game", "g-3"])),
        [6, 5, 3, 1]
    );
    assert_eq!(ids(&history(&state, &["--result", "removed"])), [1]);
    assert_eq!(ids(&history(&state, &["--result", "failed"])), [2]);
    assert_eq!(ids(&history(&state, &["--result", "failure"])), [4, 2]);
    assert_eq!(
        ids(&history(&state, &["--result", "conflict,replay_no_op"])),
        [5, 3]
    );
    assert_eq!(
        ids(&history(&state, &["--result", "success", "--game", "g-1"])),
        [6, 3, 1]
    );
    assert_eq!(ids(&history(&state, &["--op-kind", "start_game"])), [6, 4]);
    assert_eq!(
        ids(&history(
            &state,
            &["--op-kind", "cleanup_orphan", "--op-kind", "start_game"]
        )),
        [6, 4, 3]
    );
    assert_eq!(
        ids(&history(
            &state,
            &["--op-source", "rtmanager", "--game", "g-2"]
        )),
        [4]
    );
    assert!(ids(&history(&state, &["--game", "g-9"])).is_empty());
    let none = run_without_docker(&[
        "history",
        "--state",
        &state.path().display().to_string(),
        "--game",
        "g-9",
    ]);
    none.assert_code(0);
    assert_eq!(none.stdout, "rt-cleanup history: no row matches\n");
}

#[test]
fn the_limit_keeps_the_newest_rows_and_says_that_more_match() {
    let state = StateFile::new(Journal::Wal);
    for n in 0..7 {
        log(
            &state,
            b"g",
            "cleanup_container",
            "success",
            None,
            now_ms() - (7 - n) * MINUTE,
        );
    }
    let run = history(&state, &["--limit", "3"]);
    assert_eq!(ids(&run), [7, 6, 5]);
    assert_eq!(run.json()["more"], true);
    assert_eq!(run.json()["limit"], 3);
    let all = history(&state, &["--limit", "7"]);
    assert_eq!(all.json()["more"], false);
    let text = run_without_docker(&[
        "history",
        "--state",
        &state.path().display().to_string(),
        "--limit",
        "3",
    ]);
    assert!(
        text.stdout.ends_with(
            "rt-cleanup history: 3 rows, newest first; more rows match: raise --limit (3) to \
             see them\n"
        ),
        "{}",
        text.stdout
    );
}

/// A log of a row a minute over `minutes` minutes up to now, `late` of them appended out of
/// order: `(index, minutes earlier than its place)`. Returns each row's start, by id from 1.
fn minute_log(state: &StateFile, minutes: i64, late: &[(i64, i64)]) -> Vec<i64> {
    let now = now_ms();
    let mut connection = state.connect();
    let transaction = connection.transaction().unwrap();
    let mut starts = Vec::new();
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, started_at, \
                 finished_at) VALUES ('g', 'cleanup_container', 'auto_ttl', 'success', ?1, ?1)",
            )
            .unwrap();
        for n in 0..minutes {
            let earlier = late
                .iter()
                .find(|(index, _)| *index == n)
                .map_or(0, |(_, earlier)| *earlier);
            let started = now - (minutes - n) * MINUTE - earlier * MINUTE;
            insert.execute([started]).unwrap();
            starts.push(started);
        }
    }
    transaction.commit().unwrap();
    starts
}

fn rows_out_of_order_at_a_windows_edges_are_found(journal: Journal) {
    let state = StateFile::new(journal);
    // 3 days of rows, one a minute; around the edges of the window [now - 1d, now - 12h), rows
    // appended up to 58 minutes after rows that started after them (less than the hour of slack).
    let minutes = 3 * 24 * 60;
    let since_index = minutes - 24 * 60;
    let until_index = minutes - 12 * 60;
    let late = [
        (since_index + 30, 29), // inside: started 1 minute after the window's start
        (since_index + 58, 58), // inside: started as the window starts, 58 rows late
        (since_index + 40, 45), // outside: started 5 minutes before the window
        (until_index + 50, 51), // inside: started 1 minute before the window's end
        (until_index + 3, 2),   // outside: started 1 minute after the end
    ];
    let starts = minute_log(&state, minutes, &late);
    let now = now_ms();
    let since = rfc3339_ms(starts[usize::try_from(since_index).unwrap()]);
    let until = rfc3339_ms(starts[usize::try_from(until_index).unwrap()]);
    let run = history(
        &state,
        &["--since", &since, "--until", &until, "--limit", "1000000"],
    );
    let found = ids(&run);
    let (from, to) = (
        starts[usize::try_from(since_index).unwrap()],
        starts[usize::try_from(until_index).unwrap()],
    );
    let mut expected: Vec<i64> = starts
        .iter()
        .enumerate()
        .filter(|(_, started)| (from..to).contains(*started))
        .map(|(n, _)| n as i64 + 1)
        .collect();
    expected.reverse();
    assert_eq!(
        found.len(),
        expected.len(),
        "{} rows of the window",
        expected.len()
    );
    assert_eq!(found, expected);
    for (index, _) in [late[0], late[1], late[3]] {
        assert!(
            found.contains(&(index + 1)),
            "row {} (late) is found",
            index + 1
        );
    }
    for (index, _) in [late[2], late[4]] {
        assert!(
            !found.contains(&(index + 1)),
            "row {} is outside",
            index + 1
        );
    }
    // The same window as durations ago, each edge half a minute before the row it is beside, so
    // that the few milliseconds between this `now` and the command's move it past no row.
    let ago = |ms: i64| format!("{}ms", now - (ms - 30_000));
    let by_duration = history(
        &state,
        &[
            "--since",
            &ago(from),
            "--until",
            &ago(to),
            "--limit",
            "1000000",
        ],
    );
    assert_eq!(ids(&by_duration), expected);
}
in_both_journal_modes!(rows_out_of_order_at_a_windows_edges_are_found);

fn history_writes_nothing_and_creates_nothing_beside_the_file(journal: Journal) {
    let state = StateFile::new(journal);
    log(&state, b"g", "cleanup_container", "success", None, now_ms());
    state.lease("g-other", "rtmanager/h/1", now_ms() + HOUR);
    let bytes = state.bytes();
    let listing = directory_listing(state.dir());
    let leases = state.leases();

    assert_eq!(ids(&history(&state, &["--since", "1h"])), [1]);
    assert_eq!(
        state.bytes(),
        bytes,
        "the state file is byte for byte the same"
    );
    assert_eq!(
        directory_listing(state.dir()),
        listing,
        "no -wal, -shm or journal"
    );
    assert_eq!(state.leases(), leases, "no lease taken");

    // On a file and a directory that even root cannot write.
    let read_only = Immutable::new(&[state.path(), state.dir()]);
    let run = history(&state, &["--game", "g"]);
    drop(read_only);
    assert_eq!(ids(&run), [1]);
    assert_eq!(state.bytes(), bytes);
}
in_both_journal_modes!(history_writes_nothing_and_creates_nothing_beside_the_file);

#[test]
fn a_lock_held_past_the_wait_is_exit_75_and_prints_nothing() {
    let state = StateFile::new(Journal::Rollback);
    log(&state, b"g", "cleanup_container", "success", None, now_ms());
    let lock = state.lock_exclusive();
    let started = std::time::Instant::now();
    let run = history(&state, &["--lock-wait", "1s"]);
    drop(lock);
    run.assert_code(75);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        run.stderr.contains("operation_log") || run.stderr.contains("locked"),
        "{}",
        run.stderr
    );
}

#[test]
fn game_ids_are_matched_byte_for_byte_and_shown_escaped() {
    let state = StateFile::new(Journal::Rollback);
    log(
        &state,
        b"g-\xff\nFORGED",
        "cleanup_container",
        "success",
        None,
        now_ms(),
    );
    log(
        &state,
        b"g-plain",
        "cleanup_container",
        "success",
        None,
        now_ms(),
    );
    let state_path = state.path().display().to_string();
    let mut by_bytes = command(&["history", "--state", &state_path, "--game"]);
    by_bytes.arg(OsStr::from_bytes(b"g-\xff\nFORGED"));
    let text = finish(&by_bytes.output().unwrap());
    text.assert_code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(
        lines[0].contains(r#"game_id="g-\\xFF\nFORGED""#),
        "{}",
        text.stdout
    );
    let json = history(&state, &[]).json();
    assert_eq!(json["rows"][1]["game_id"], "g-\\xFF\nFORGED");
}

#[test]
fn the_environment_twins_of_history_set_its_options() {
    let state = StateFile::new(Journal::Rollback);
    log(
        &state,
        b"g-1",
        "cleanup_container",
        "success",
        None,
        now_ms() - 3 * HOUR,
    );
    log(
        &state,
        b"g-1",
        "start_game",
        "failure",
        Some("E"),
        now_ms() - MINUTE,
    );
    log(
        &state,
        b"g-2",
        "cleanup_container",
        "failure",
        Some("docker_error"),
        now_ms(),
    );
    let state_path = state.path().display().to_string();
    let mut history = command(&["history"]);
    history.envs([
        ("RT_CLEANUP_STATE", state_path.as_str()),
        ("RT_CLEANUP_OUTPUT", "json"),
        ("RT_CLEANUP_HISTORY_GAME", "g-1"),
        ("RT_CLEANUP_HISTORY_SINCE", "2h"),
        ("RT_CLEANUP_HISTORY_RESULT", "failure"),
        ("RT_CLEANUP_HISTORY_OP_KIND", "start_game"),
        ("RT_CLEANUP_HISTORY_OP_SOURCE", "rtmanager"),
        ("RT_CLEANUP_HISTORY_LIMIT", "1"),
        ("RT_CLEANUP_HISTORY_UNTIL", ""),
        // The pass's own settings are not history's: a service's environment file leaves it
        // listing every row.
        ("RT_CLEANUP_RETENTION", "7d"),
        ("RT_CLEANUP_OP_SOURCE", "auto_ttl"),
        ("RT_CLEANUP_DRY_RUN", "true"),
    ]);
    let run = finish(&history.output().unwrap());
    assert_eq!(ids(&run), [2]);
}

#[test]
fn bad_history_invocations_exit_2_and_name_the_option() {
    let state = StateFile::new(Journal::Rollback);
    let path = state.path().display().to_string();
    for (args, needle) in [
        (&["--limit", "0"][..], "--limit"),
        (&["--limit", "1000001"], "--limit"),
        (&["--since", "yesterday"], "--since"),
        (&["--until", "-1h"], "--until"),
        (&["--since", "1h", "--until", "2h"], "--since"),
        (&["--result", "gone"], "--result"),
        (&["--op-kind", ""], "--op-kind"),
        (&["--retention", "7d"], "--retention"),
        (&["--dry-run"], "--dry-run"),
    ] {
        let mut all = vec!["history", "--state", path.as_str()];
        all.extend_from_slice(args);
        let run = run_without_docker(&all);
        run.assert_code(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    let missing = run_without_docker(&["history", "--state", "/nonexistent/state.db"]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    let before_the_command = run_without_docker(&["--state", &path, "history"]);
    before_the_command.assert_code(2);
}

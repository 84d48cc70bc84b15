//! `rt-cleanup explain GAME…` against real state files and the real daemons: it agrees with the
//! dry run on every candidate (on each engine, in both journal modes), gives each verdict with
//! its reason, answers from the state file when the daemon cannot be reached (exit 69), keeps
//! every promise of a dry run, reads the pass's environment variables, and escapes game ids.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde_json::Value;

use crate::harness::{
    command, daemon, days_ago, directory_listing, exists, finish, now_ms, pass, rfc3339_ms, run,
    run_with_env, run_without_docker, Containers, Immutable, Journal, Run, StateFile, OWNER_LABEL,
};

const DAY: i64 = 86_400_000;

/// Runs `rt-cleanup explain GAMES… --retention 7d --state STATE --output json` and more.
fn explain(state: &StateFile, games: &[&str], extra: &[&str]) -> Run {
    let path = state.path().display().to_string();
    let mut args = vec!["explain"];
    args.extend_from_slice(games);
    args.extend_from_slice(&["--retention", "7d", "--state", &path, "--output", "json"]);
    args.extend_from_slice(extra);
    run(&args)
}

/// The explanation of one game in a JSON answer.
fn game<'a>(json: &'a Value, game: &str) -> &'a Value {
    json["games"]
        .as_array()
        .unwrap()
        .iter()
        .find(|explained| explained["game_id"] == game)
        .unwrap_or_else(|| panic!("{game} is not explained: {json}"))
}

fn explain_agrees_with_the_dry_run_on_every_candidate(journal: Journal) {
    let containers = Containers::new("explain-agrees");
    let state = StateFile::new(journal);
    let removable = containers.create(&[(OWNER_LABEL, "g-removable")]);
    let running = containers.run(&[(OWNER_LABEL, "g-running")]);
    let leased = containers.create(&[(OWNER_LABEL, "g-leased")]);
    let foreign = containers.create(&[(OWNER_LABEL, "g-someone-else")]);
    let later = containers.create(&[(OWNER_LABEL, "g-deferred")]);
    state.stopped("g-removable", Some(&removable), 10);
    state.stopped("g-running", Some(&running), 10);
    state.stopped("g-gone", Some("rt-cleanup-test-no-such-container"), 10);
    state.stopped("g-leased", Some(&leased), 10);
    state.lease("g-leased", "rtmanager/host/1", now_ms() + 3_600_000);
    state.stopped("g-invalid", Some("../x"), 9);
    state.stopped("g-none", None, 9);
    state.stopped("g-mismatch", Some(&foreign), 9);
    state.stopped("g-deferred", Some(&later), 8);
    state.stopped("g-deferred-none", None, 8);
    state.stopped("g-young", Some(&removable), 2);
    state.insert("g-live", Some(&running), "running", &days_ago(20));
    let bytes = state.bytes();
    let listing = directory_listing(state.dir());
    let options = ["--max-removals", "7", "--owner-label", OWNER_LABEL];

    let dry = pass(&state, &[&["--dry-run"][..], &options].concat());
    dry.assert_code(1);
    let candidates: Vec<String> = dry
        .outcomes()
        .into_iter()
        .map(|(game, _, _)| game)
        .collect();
    assert_eq!(candidates.len(), 9, "{}", dry.stdout);
    let mut games: Vec<&str> = candidates.iter().map(String::as_str).collect();
    games.extend(["g-young", "g-live", "g-unknown"]);
    let explained = explain(&state, &games, &options);
    explained.assert_code(0);

    let json = explained.json();
    assert_eq!(json["candidates"], 9);
    let records = dry.json()["records"].as_array().unwrap().clone();
    for (position, record) in records.iter().enumerate() {
        let name = record["game_id"].as_str().unwrap();
        let explained = game(&json, name);
        assert_eq!(explained["verdict"], "expired", "{name}: {explained}");
        for key in ["result", "error_code", "error_message"] {
            assert_eq!(explained[key], record[key], "{name}: {key}");
        }
        assert_eq!(explained["position"], position + 1, "{name}");
    }
    let results: Vec<&str> = records
        .iter()
        .map(|record| record["result"].as_str().unwrap())
        .collect();
    for expected in ["removed", "replay_no_op", "conflict", "failed", "deferred"] {
        assert!(
            results.contains(&expected),
            "the candidates cover {expected}: {results:?}"
        );
    }
    assert_eq!(game(&json, "g-young")["verdict"], "not_expired");
    assert_eq!(game(&json, "g-live")["verdict"], "not_stopped");
    assert_eq!(game(&json, "g-unknown")["verdict"], "no_record");

    assert_eq!(
        state.bytes(),
        bytes,
        "explain changed nothing in the state file"
    );
    assert_eq!(
        directory_listing(state.dir()),
        listing,
        "and created nothing beside it"
    );
    assert_eq!(state.leases().len(), 1, "no lease taken");
    for id in [&removable, &running, &leased, &foreign, &later] {
        assert!(exists(id), "no container removed");
    }
}
on_each_engine_in_both_journal_modes!(explain_agrees_with_the_dry_run_on_every_candidate);

#[test]
fn each_verdict_comes_with_its_reason_in_json_and_text() {
    let containers = Containers::new("explain-verdicts");
    let state = StateFile::new(Journal::Rollback);
    let expiring = containers.create(&[(OWNER_LABEL, "g-expired")]);
    state.stopped("g-expired", Some(&expiring), 8);
    let young_since = days_ago(5);
    state.insert("g-young", None, "stopped", &young_since);
    let live_since = days_ago(1);
    state.insert("g-live", Some(&expiring), "running", &live_since);
    state.stopped("g-done", None, 9);
    pass(&state, &["--max-removals", "1"]).assert_code(0);
    assert_eq!(state.status("g-done"), "removed");
    state.stopped("g-later", None, 8);

    let run = explain(
        &state,
        &["g-expired", "g-young", "g-live", "g-done", "g-ghost"],
        &[],
    );
    run.assert_code(0);
    let json = run.json();
    let expired = game(&json, "g-expired");
    assert_eq!(expired["verdict"], "expired");
    assert_eq!(expired["result"], "removed");
    assert_eq!(expired["container"]["id"], expiring.as_str());
    assert_eq!(expired["container"]["state"], "created");
    assert!(expired["reason"]
        .as_str()
        .unwrap()
        .contains("a pass now removes"));
    let young = game(&json, "g-young");
    assert_eq!(young["verdict"], "not_expired");
    assert_eq!(young["expires_at"], rfc3339_ms(young_since + 7 * DAY));
    let left = young["expires_in_seconds"].as_i64().unwrap();
    assert!((2 * 86_400 - 60..=2 * 86_400).contains(&left), "{left}");
    let live = game(&json, "g-live");
    assert_eq!(live["verdict"], "not_stopped");
    assert!(
        live["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("running since {}", rfc3339_ms(live_since))),
        "{live}"
    );
    let done = game(&json, "g-done");
    assert_eq!(done["verdict"], "removed");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("by op_source auto_ttl"),
        "{done}"
    );
    assert_eq!(done["log"][0]["op_kind"], "cleanup_container");
    assert_eq!(done["log"][0]["error_code"], "replay_no_op");
    assert_eq!(game(&json, "g-ghost")["verdict"], "no_record");
    assert_eq!(game(&json, "g-ghost")["record"], Value::Null);

    let path = state.path().display().to_string();
    let text = crate::harness::run(&[
        "explain",
        "g-young",
        "g-expired",
        "--retention",
        "7d",
        "--state",
        &path,
    ]);
    text.assert_code(0);
    assert!(
        text.stdout.starts_with("g-young: not_expired\n"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(", in 1 day 23 h;"), "{}", text.stdout);
    assert!(
        text.stdout.contains("\ng-expired: expired removed\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&format!("  container: id={expiring} state=created")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.ends_with(" 2 candidates)\n")
            && text
                .stdout
                .contains("rt-cleanup explain: 2 games (retention 7days"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_game_without_a_record_shows_its_labelled_containers_and_what_orphans_would_do() {
    let containers = Containers::new("explain-orphan");
    let state = StateFile::new(Journal::Wal);
    let leaked = containers.create(&[(OWNER_LABEL, "g-ghost")]);
    let claimed = containers.create(&[(OWNER_LABEL, "g-kept")]);
    state.insert("g-kept", Some(&claimed), "running", &now_ms());
    // Orphans are containers stopped (or created) longer than the retention ago.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let path = state.path().display().to_string();
    let args = |mode: &'static str| {
        vec![
            "explain",
            "g-ghost",
            "g-kept",
            "--retention",
            "1s",
            "--state",
            &path,
            "--output",
            "json",
            "--owner-label",
            OWNER_LABEL,
            "--orphans",
            mode,
        ]
    };
    let run_mode = |mode| {
        let run = run(&args(mode));
        run.assert_code(0);
        run.json()
    };
    let report = run_mode("report");
    let ghost = game(&report, "g-ghost");
    assert_eq!(ghost["verdict"], "no_record");
    assert!(ghost["reason"]
        .as_str()
        .unwrap()
        .contains("one container is labelled for it"));
    let labelled = ghost["labelled"].as_array().unwrap();
    assert_eq!(labelled.len(), 1, "{ghost}");
    assert_eq!(labelled[0]["container"]["id"], leaked.as_str());
    assert_eq!(labelled[0]["orphan"], "yes");
    assert_eq!(labelled[0]["remove"]["result"], "removed");
    assert!(labelled[0]["reason"]
        .as_str()
        .unwrap()
        .contains("--orphans report"));
    let kept = game(&report, "g-kept")["labelled"][0].clone();
    assert_eq!(kept["orphan"], "no");
    assert_eq!(kept["reason"], "no: the game's record names it");
    assert!(exists(&leaked), "explain removes nothing");
    // The real pass with --orphans remove does what explain said.
    let real = run(&[
        "--retention",
        "1s",
        "--state",
        &path,
        "--output",
        "json",
        "--owner-label",
        OWNER_LABEL,
        "--orphans",
        "remove",
    ]);
    let orphans = real.json()["orphans"].clone();
    let removed = orphans
        .as_array()
        .unwrap()
        .iter()
        .find(|orphan| orphan["container_id"] == leaked.as_str())
        .unwrap_or_else(|| panic!("{orphans}"))
        .clone();
    assert_eq!(removed["result"], "removed");
    assert!(!exists(&leaked));
}

#[test]
fn without_the_daemon_it_answers_from_the_state_file_and_exits_69() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-none", None, 9);
    state.stopped("g-container", Some("some-container"), 9);
    state.stopped("g-leased", Some("other-container"), 9);
    state.lease("g-leased", "rtmanager/host/1", now_ms() + 3_600_000);
    let path = state.path().display().to_string();
    let run = run_without_docker(&[
        "explain",
        "g-none",
        "g-container",
        "g-leased",
        "--retention",
        "7d",
        "--state",
        &path,
        "--output",
        "json",
    ]);
    run.assert_code(69);
    let json = run.json();
    assert_eq!(json["daemon"]["engine"], Value::Null);
    assert!(json["daemon"]["error"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/docker.sock"));
    assert_eq!(game(&json, "g-none")["result"], "replay_no_op");
    assert_eq!(game(&json, "g-leased")["result"], "conflict");
    let unknown = game(&json, "g-container");
    assert_eq!(unknown["verdict"], "expired");
    assert_eq!(unknown["result"], Value::Null);
    assert!(unknown["reason"]
        .as_str()
        .unwrap()
        .contains("could not be asked"));
    assert_eq!(unknown["container_error"], "the daemon could not be asked");
    assert!(
        run.stderr.contains("explained from the state file alone"),
        "{}",
        run.stderr
    );
}

fn explain_writes_nothing_and_creates_nothing_beside_the_file(journal: Journal) {
    let state = StateFile::new(journal);
    state.stopped("g", None, 9);
    state.lease("g-other", "rtmanager/h/1", now_ms() + 60_000);
    let bytes = state.bytes();
    let listing = directory_listing(state.dir());
    let leases = state.leases();
    explain(&state, &["g", "g-other"], &[]).assert_code(0);
    assert_eq!(state.bytes(), bytes);
    assert_eq!(
        directory_listing(state.dir()),
        listing,
        "no -wal, -shm or journal"
    );
    assert_eq!(state.leases(), leases);
    let read_only = Immutable::new(&[state.path(), state.dir()]);
    let run = explain(&state, &["g"], &[]);
    drop(read_only);
    run.assert_code(0);
    assert_eq!(game(&run.json(), "g")["result"], "replay_no_op");
    assert_eq!(state.bytes(), bytes);
    assert!(state.all_log().is_empty(), "no operation_log row");
}
in_both_journal_modes!(explain_writes_nothing_and_creates_nothing_beside_the_file);

#[test]
fn the_pass_environment_variables_configure_explain() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-1", None, 10);
    state.stopped("g-2", None, 9);
    let path = state.path().display().to_string();
    let run = run_with_env(
        &["explain", "g-1", "g-2"],
        &[
            ("RT_CLEANUP_RETENTION", "8d"),
            ("RT_CLEANUP_STATE", &path),
            ("RT_CLEANUP_OUTPUT", "json"),
            ("RT_CLEANUP_MAX_REMOVALS", "1"),
            ("RT_CLEANUP_OWNER_LABEL", OWNER_LABEL),
            ("RT_CLEANUP_ORPHANS", "report"),
            // A real run's settings, as the service's environment file has them: not explain's.
            ("RT_CLEANUP_DRY_RUN", "false"),
            ("RT_CLEANUP_LEASE_TTL", "1s"),
            (
                "RT_CLEANUP_METRICS_FILE",
                "/nonexistent/dir/rt_cleanup.prom",
            ),
            ("RT_CLEANUP_OP_SOURCE", ""),
        ],
    );
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["retention_seconds"], 8 * 86_400);
    assert_eq!(json["max_removals"], 1);
    assert_eq!(json["owner_label"], OWNER_LABEL);
    assert_eq!(json["orphans"], "report");
    assert_eq!(game(&json, "g-1")["result"], "replay_no_op");
    assert_eq!(game(&json, "g-2")["result"], "deferred");
    assert!(game(&json, "g-2")["reason"]
        .as_str()
        .unwrap()
        .contains("--max-removals 1"));
}

#[test]
fn game_ids_are_taken_byte_for_byte_and_shown_escaped() {
    let state = StateFile::new(Journal::Rollback);
    state
        .connect()
        .execute(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
             VALUES (CAST(?1 AS TEXT), NULL, 'stopped', ?2)",
            rusqlite::params![&b"g-\xff\nFORGED"[..], days_ago(9)],
        )
        .unwrap();
    let path = state.path().display().to_string();
    let mut text = command(&["explain", "--retention", "7d", "--state", &path]);
    text.arg(OsStr::from_bytes(b"g-\xff\nFORGED"));
    text.env("DOCKER_HOST", &daemon().host);
    let text = finish(&text.output().unwrap());
    text.assert_code(0);
    assert!(
        text.stdout
            .starts_with("\"g-\\\\xFF\\nFORGED\": expired replay_no_op "),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.lines().all(|line| !line.starts_with("FORGED")),
        "{}",
        text.stdout
    );
    let mut json = command(&[
        "explain",
        "--retention",
        "7d",
        "--state",
        &path,
        "--output",
        "json",
    ]);
    json.arg(OsStr::from_bytes(b"g-\xff\nFORGED"));
    json.env("DOCKER_HOST", &daemon().host);
    let json = finish(&json.output().unwrap());
    assert_eq!(json.json()["games"][0]["game_id"], "g-\\xFF\nFORGED");
    assert_eq!(json.json()["games"][0]["verdict"], "expired");
}

#[test]
fn bad_explain_invocations_exit_2() {
    let state = StateFile::new(Journal::Rollback);
    let path = state.path().display().to_string();
    for args in [
        &["explain", "--retention", "7d", "--state", &path][..],
        &["explain", "g", "--state", &path],
        &["explain", "g", "--retention", "0s", "--state", &path],
        &[
            "explain",
            "g",
            "--retention",
            "7d",
            "--state",
            &path,
            "--dry-run",
        ],
        &[
            "explain",
            "g",
            "--retention",
            "7d",
            "--state",
            &path,
            "--plan-out",
            "/tmp/p",
        ],
        &[
            "explain",
            "g",
            "--retention",
            "7d",
            "--state",
            &path,
            "--orphans",
            "remove",
        ],
        &["--retention", "7d", "explain", "g", "--state", &path],
        &[
            "explain",
            "g",
            "--retention",
            "7d",
            "--state",
            "/nonexistent/state.db",
        ],
    ] {
        let run = run_without_docker(args);
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn a_lock_held_past_the_wait_is_exit_75() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 9);
    let lock = state.lock_exclusive();
    let run = explain(&state, &["g"], &["--lock-wait", "1s"]);
    drop(lock);
    run.assert_code(75);
    assert!(run.stdout.is_empty());
}

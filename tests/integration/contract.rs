//! Contract §1 to §6 against a real daemon and real state files: every per-record result, the
//! log rows, the lease, the summary, and every exit status that does not need a fault.

use rusqlite::types::Value;

use crate::harness::{
    container_state, daemon, daemon_log_lines, days_ago, engine, exists, now_ms, on_engine, pass,
    run, unique_name, Containers, Engine, Immutable, Journal, StateFile, OWNER_LABEL,
};

fn removes_an_expired_container_and_records_it(journal: Journal) {
    let containers = Containers::new("removes");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g-old", Some(&id), 8);
    let before = now_ms();
    let journal_and_version = state.journal_and_version();
    let schema = state.schema();

    let run = pass(&state, &[]);
    run.assert_code(0);
    let after = now_ms();

    assert!(!exists(&id), "the container is gone from Docker");
    let record = state.record("g-old").unwrap();
    assert_eq!(record.status, "removed");
    let Value::Integer(moved_at) = record.last_op_at else {
        panic!("{record:?}")
    };
    assert!(
        moved_at >= before && moved_at <= now_ms(),
        "last_op_at is the transition's now"
    );
    assert_eq!(
        record.rtmanager_note,
        Value::Text("untouched".into()),
        "unknown columns kept"
    );
    assert_eq!(
        state.journal_and_version(),
        journal_and_version,
        "the journal mode and user_version are left as they were"
    );
    let expected_mode = if journal == Journal::Wal {
        "wal"
    } else {
        "delete"
    };
    assert_eq!(journal_and_version.0, expected_mode);
    let log = state.log("g-old");
    assert_eq!(log.len(), 1, "exactly one operation_log row");
    assert_eq!(log[0].op_kind, "cleanup_container");
    assert_eq!(log[0].op_source, "auto_ttl");
    assert_eq!(log[0].outcome, "success");
    assert_eq!(log[0].error_code, None);
    assert_eq!(log[0].container_id.as_deref(), Some(id.as_str()));
    assert!(
        before <= log[0].started_at
            && log[0].started_at <= log[0].finished_at
            && log[0].finished_at <= after,
        "started_at and finished_at are epoch milliseconds of this run: {:?}",
        log[0]
    );
    assert_eq!(state.schema(), schema, "the schema is left as it was");
    assert!(state.leases().is_empty(), "the lease is released");
    assert_eq!(run.result_of("g-old"), "removed");
    let json = run.json();
    assert_eq!(json["counts"]["removed"], 1);
    assert_eq!(json["counts"]["expired"], 1);
    assert_eq!(json["counts"]["stopped"], 1);
    assert_eq!(json["dry_run"], false);
}
on_each_engine_in_both_journal_modes!(removes_an_expired_container_and_records_it);

fn a_container_already_gone_is_a_replay_no_op(journal: Journal) {
    let state = StateFile::new(journal);
    state.stopped("g-gone", Some("rt-cleanup-test-no-such-container"), 9);
    state.stopped("g-none", None, 9);

    let run = pass(&state, &[]);
    run.assert_code(0);

    for game in ["g-gone", "g-none"] {
        assert_eq!(run.result_of(game), "replay_no_op");
        assert_eq!(state.status(game), "removed");
        let log = state.log(game);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, "success");
        assert_eq!(log[0].error_code.as_deref(), Some("replay_no_op"));
    }
    assert_eq!(run.json()["counts"]["replay_no_op"], 2);
}
on_each_engine_in_both_journal_modes!(a_container_already_gone_is_a_replay_no_op);

fn a_game_leased_by_someone_else_is_a_conflict(journal: Journal) {
    let containers = Containers::new("leased");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g-leased", Some(&id), 8);
    let expires_at = now_ms() + 3_600_000;
    state.lease("g-leased", "rtmanager/host-a/77", expires_at);

    let run = pass(&state, &[]);
    run.assert_code(0);

    assert_eq!(run.result_of("g-leased"), "conflict");
    assert!(exists(&id), "the container is untouched");
    assert_eq!(state.status("g-leased"), "stopped");
    assert_eq!(
        state.leases(),
        [(
            "g-leased".to_owned(),
            "rtmanager/host-a/77".to_owned(),
            expires_at
        )],
        "the other holder's lease is untouched"
    );
    let log = state.log("g-leased");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].outcome.as_str(), log[0].error_code.as_deref()),
        ("success", Some("conflict"))
    );
}
on_each_engine_in_both_journal_modes!(a_game_leased_by_someone_else_is_a_conflict);

fn an_expired_lease_is_taken_over() {
    let containers = Containers::new("expired-lease");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    state.lease("g", "rtmanager/host-a/77", now_ms() - 1);

    pass(&state, &[]).assert_code(0);

    assert!(!exists(&id));
    assert_eq!(state.status("g"), "removed");
    assert!(state.leases().is_empty());
}
on_each_engine!(an_expired_lease_is_taken_over);

fn a_running_container_is_never_removed(journal: Journal) {
    let containers = Containers::new("running");
    let state = StateFile::new(journal);
    let id = containers.run(&[]);
    state.stopped("g-running", Some(&id), 8);

    let run = pass(&state, &[]);
    run.assert_code(1);

    assert_eq!(container_state(&id).as_deref(), Some("running"));
    assert_eq!(
        state.status("g-running"),
        "stopped",
        "left for the next run"
    );
    let log = state.log("g-running");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, "failure");
    assert_eq!(log[0].error_code.as_deref(), Some("container_running"));
    assert!(log[0]
        .error_message
        .as_deref()
        .unwrap_or_default()
        .contains("running"));
    assert_eq!(run.result_of("g-running"), "failed");
    assert!(state.leases().is_empty());
}
on_each_engine_in_both_journal_modes!(a_running_container_is_never_removed);

/// Docker refuses a paused container 409 "You cannot remove a paused container …", Podman 500
/// "… as it is paused - … container state improper": both are `container_running`, and a dry
/// run predicts it from the listed state.
fn a_paused_container_is_never_removed_and_the_dry_run_says_so() {
    let containers = Containers::new("paused");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.run(&[]);
    crate::harness::docker(&["pause", &id]);
    state.stopped("g-paused", Some(&id), 8);

    let dry = pass(&state, &["--dry-run"]);
    let real = pass(&state, &[]);
    crate::harness::docker(&["unpause", &id]);

    dry.assert_code(1);
    real.assert_code(1);
    assert_eq!(dry.outcomes(), real.outcomes(), "the dry run predicted it");
    assert_eq!(
        real.outcomes(),
        [(
            "g-paused".to_owned(),
            "failed".to_owned(),
            Some("container_running".to_owned())
        )]
    );
    assert!(exists(&id));
    assert_eq!(state.status("g-paused"), "stopped");
    let message = state.log("g-paused")[0].error_message.clone().unwrap();
    assert!(message.contains("paused"), "the engine's words: {message}");
}
on_each_engine!(a_paused_container_is_never_removed_and_the_dry_run_says_so);

fn the_owner_label_must_name_the_game() {
    let containers = Containers::new("owner");
    let state = StateFile::new(Journal::Rollback);
    let mine = containers.create(&[(OWNER_LABEL, "g-mine")]);
    let other = containers.create(&[(OWNER_LABEL, "g-someone-else")]);
    let unlabelled = containers.create(&[]);
    state.stopped("g-mine", Some(&mine), 8);
    state.stopped("g-other", Some(&other), 8);
    state.stopped("g-unlabelled", Some(&unlabelled), 8);

    let run = pass(&state, &["--owner-label", OWNER_LABEL]);
    run.assert_code(1);

    assert!(!exists(&mine));
    assert_eq!(state.status("g-mine"), "removed");
    for (game, id) in [("g-other", &other), ("g-unlabelled", &unlabelled)] {
        assert!(exists(id), "{game}'s container stays");
        assert_eq!(state.status(game), "stopped");
        let log = state.log(game);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, "failure");
        assert_eq!(log[0].error_code.as_deref(), Some("ownership_mismatch"));
        assert_eq!(run.result_of(game), "failed");
    }
}
on_each_engine!(the_owner_label_must_name_the_game);

fn a_container_named_by_name_is_removed() {
    let containers = Containers::new("by-name");
    let state = StateFile::new(Journal::Rollback);
    let name = unique_name("rt-cleanup-test-named");
    let id = containers.create_named(&name, &[(OWNER_LABEL, "g")]);
    state.stopped("g", Some(&name), 8);

    pass(&state, &["--owner-label", OWNER_LABEL]).assert_code(0);

    assert!(!exists(&id));
    assert_eq!(state.status("g"), "removed");
}
on_each_engine!(a_container_named_by_name_is_removed);

fn hostile_container_ids_never_reach_docker(journal: Journal) {
    let containers = Containers::new("hostile");
    let state = StateFile::new(journal);
    let sentinel_name = unique_name("rt-cleanup-test-sentinel");
    let sentinel = containers.create_named(&sentinel_name, &[]);
    let hostile = [
        format!("../containers/{sentinel_name}"),
        format!("x/../{sentinel_name}"),
        format!("{sentinel_name}?force=true"),
        format!("{sentinel_name}#"),
        format!("%2e%2e/{sentinel_name}"),
        format!(" {sentinel_name}"),
        format!("{sentinel_name}\n"),
        format!(".{sentinel_name}"),
        format!("-{sentinel_name}"),
        String::new(),
        "a".repeat(256),
        "../../images/busybox".to_owned(),
        "../../../_ping".to_owned(),
    ];
    for (index, container_id) in hostile.iter().enumerate() {
        state.stopped(&format!("g-hostile-{index:02}"), Some(container_id), 8);
    }
    // A blob and a real in the TEXT column, which SQLite keeps as they are.
    state
        .connect()
        .execute_batch(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
             VALUES ('g-blob', X'2E2E2F', 'stopped', 1), ('g-real', 1.5, 'stopped', 1);",
        )
        .unwrap();

    let run = pass(&state, &[]);
    run.assert_code(1);

    assert_eq!(
        container_state(&sentinel).as_deref(),
        Some("created"),
        "the sentinel survives"
    );
    let json = run.json();
    for record in json["records"].as_array().unwrap() {
        let game = record["game_id"].as_str().unwrap();
        if game == "g-real" {
            // A real stored in a TEXT column reads back as the text "1.5": a valid reference to
            // a container that does not exist.
            assert_eq!(record["result"], "replay_no_op", "{record}");
            continue;
        }
        assert_eq!(record["result"], "failed", "{record}");
        assert_eq!(record["error_code"], "invalid_record", "{record}");
        assert_eq!(state.status(game), "stopped");
        let log = state.log(game);
        assert_eq!(log.len(), 1, "{game}");
        assert_eq!(log[0].error_code.as_deref(), Some("invalid_record"));
    }
    if daemon().log.is_some() {
        assert!(
            daemon_log_lines(&sentinel_name)
                .iter()
                .all(|line| !line.contains("DELETE")),
            "no removal request ever named the sentinel"
        );
    }
}
on_each_engine_in_both_journal_modes!(hostile_container_ids_never_reach_docker);

fn non_integer_timestamps_are_invalid_records_and_future_ones_are_not_expired() {
    let containers = Containers::new("timestamps");
    let state = StateFile::new(Journal::Rollback);
    let text_ts = containers.create(&[]);
    let future = containers.create(&[]);
    let recent = containers.create(&[]);
    state.insert("g-text", Some(&text_ts), "stopped", &"last tuesday");
    state.insert(
        "g-future",
        Some(&future),
        "stopped",
        &(now_ms() + 86_400_000),
    );
    state.stopped("g-recent", Some(&recent), 1);

    let run = pass(&state, &[]);
    run.assert_code(1);

    let json = run.json();
    assert_eq!(json["counts"]["stopped"], 3);
    assert_eq!(
        json["counts"]["expired"], 1,
        "only the non-integer row is a candidate"
    );
    assert_eq!(json["records"][0]["game_id"], "g-text");
    assert_eq!(json["records"][0]["last_op_at"], serde_json::Value::Null);
    assert_eq!(json["records"][0]["error_code"], "invalid_record");
    for id in [&text_ts, &future, &recent] {
        assert!(exists(id));
    }
    assert!(state.log("g-future").is_empty() && state.log("g-recent").is_empty());
    assert_eq!(
        state.log("g-text")[0].error_code.as_deref(),
        Some("invalid_record")
    );
}
on_each_engine!(non_integer_timestamps_are_invalid_records_and_future_ones_are_not_expired);

fn records_in_other_states_are_never_candidates() {
    let containers = Containers::new("other-states");
    let state = StateFile::new(Journal::Rollback);
    let mut ids = Vec::new();
    for status in ["running", "creating", "removed", "paused-by-ops", "STOPPED"] {
        let id = containers.create(&[]);
        state.insert(&format!("g-{status}"), Some(&id), status, &days_ago(30));
        ids.push(id);
    }

    let run = pass(&state, &[]);
    run.assert_code(0);

    assert_eq!(run.json()["counts"]["expired"], 0);
    assert!(ids.iter().all(|id| exists(id)));
    assert!(state.all_log().is_empty());
}
on_each_engine!(records_in_other_states_are_never_candidates);

fn max_removals_acts_on_the_oldest_and_defers_the_rest() {
    let containers = Containers::new("max-removals");
    let state = StateFile::new(Journal::Rollback);
    let oldest = containers.create(&[]);
    let middle = containers.create(&[]);
    let newest = containers.create(&[]);
    state.stopped("g-newest", Some(&newest), 8);
    state.stopped("g-oldest", Some(&oldest), 30);
    state.stopped("g-middle", Some(&middle), 20);

    let run = pass(&state, &["--max-removals", "2"]);
    run.assert_code(0);

    let json = run.json();
    let order: Vec<_> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["g-oldest", "g-middle", "g-newest"], "oldest first");
    assert_eq!(run.result_of("g-newest"), "deferred");
    assert_eq!(json["counts"]["deferred"], 1);
    assert_eq!(json["counts"]["removed"], 2);
    assert!(!exists(&oldest) && !exists(&middle));
    assert!(exists(&newest));
    assert_eq!(state.status("g-newest"), "stopped");
    assert!(
        state.log("g-newest").is_empty(),
        "a deferred record gets no log row"
    );
}
on_each_engine!(max_removals_acts_on_the_oldest_and_defers_the_rest);

fn op_source_is_written_to_the_log() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    pass(&state, &["--op-source", "manual_sweep"]).assert_code(0);
    assert_eq!(state.log("g")[0].op_source, "manual_sweep");
}
on_each_engine!(op_source_is_written_to_the_log);

fn nothing_to_do_exits_0_with_a_summary() {
    let state = StateFile::new(Journal::Rollback);
    let run = pass(&state, &[]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["counts"]["expired"], 0);
    assert_eq!(json["records"], serde_json::json!([]));
}
on_each_engine!(nothing_to_do_exits_0_with_a_summary);

fn the_json_summary_has_the_contract_shape() {
    let containers = Containers::new("json-shape");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);

    let run = pass(&state, &[]);
    run.assert_code(0);

    let json = run.json();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "counts",
            "dry_run",
            "finished_at",
            "leases_kept",
            "records",
            "retention_seconds",
            "started_at",
            "state",
            "threshold"
        ]
    );
    assert_eq!(json["leases_kept"], serde_json::json!([]));
    assert_eq!(json["retention_seconds"], 604_800);
    assert_eq!(json["state"], state.path().display().to_string());
    for key in ["threshold", "started_at", "finished_at"] {
        let time = json[key].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{key}={time}"
        );
        assert_eq!(
            time.len(),
            "2026-11-27T12:00:00.000Z".len(),
            "milliseconds: {time}"
        );
    }
    let record = &json["records"][0];
    let mut keys: Vec<_> = record.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "container_id",
            "error_code",
            "error_message",
            "game_id",
            "last_op_at",
            "result"
        ]
    );
    let counts = &json["counts"];
    let sum: u64 = ["removed", "replay_no_op", "conflict", "failed", "deferred"]
        .iter()
        .map(|k| counts[*k].as_u64().unwrap())
        .sum();
    assert_eq!(counts["expired"].as_u64().unwrap(), sum);
}
on_each_engine!(the_json_summary_has_the_contract_shape);

fn the_text_summary_has_a_line_per_record_and_a_count_line_and_logs_stay_on_stderr() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-a", None, 8);
    state.stopped("g-b", None, 9);
    let path = state.path().display().to_string();

    let run = run(&["--retention", "7d", "--state", &path]);
    run.assert_code(0);

    let lines: Vec<_> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("replay_no_op") && lines[0].contains("game_id=g-b"));
    assert!(lines[1].contains("game_id=g-a"));
    assert!(lines[2].contains("2 expired of 2 stopped") && lines[2].contains("2 replay_no_op"));
    assert!(
        run.stderr.contains("preflight"),
        "logs go to stderr: {}",
        run.stderr
    );
    assert!(!run.stdout.contains("INFO"), "no log line on stdout");
}
on_each_engine!(the_text_summary_has_a_line_per_record_and_a_count_line_and_logs_stay_on_stderr);

fn the_negotiated_api_version_is_used_on_the_wire_and_logged() {
    let containers = Containers::new("wire-version");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);

    let run = pass(&state, &[]);
    run.assert_code(0);

    let server_api = crate::harness::docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let server_version = crate::harness::docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        run.stderr
            .contains(&format!("requests use API {server_api}")),
        "the version is logged: {}",
        run.stderr
    );
    let engine_logged = format!("engine={} {server_version}", engine().name());
    assert!(
        run.stderr.contains(&engine_logged),
        "the engine is logged with its version ({engine_logged}): {}",
        run.stderr
    );
    let deletes: Vec<_> = daemon_log_lines(&id)
        .into_iter()
        .filter(|line| line.contains("DELETE"))
        .collect();
    assert_eq!(deletes.len(), 1, "one removal request: {deletes:?}");
    assert!(
        deletes[0].contains(&format!("DELETE /v{server_api}/containers/{id}")),
        "the request carries the version prefix: {}",
        deletes[0]
    );
    assert!(
        deletes[0].contains("force=false"),
        "never force: {}",
        deletes[0]
    );
    if engine().is_podman() {
        // Podman's request log shows the client; dockerd's debug log does not.
        assert!(
            deletes[0].contains(&format!("\"rt-cleanup/{}\"", env!("CARGO_PKG_VERSION"))),
            "rt-cleanup names itself in User-Agent: {}",
            deletes[0]
        );
    }
}
on_each_engine!(the_negotiated_api_version_is_used_on_the_wire_and_logged);

fn a_dry_run_changes_nothing_and_predicts_the_real_run(journal: Journal) {
    let containers = Containers::new("dry-run");
    let state = StateFile::new(journal);
    let removable = containers.create(&[]);
    let running = containers.run(&[]);
    let leased = containers.create(&[]);
    state.stopped("g-removable", Some(&removable), 10);
    state.stopped("g-running", Some(&running), 10);
    state.stopped("g-gone", Some("rt-cleanup-test-no-such-container"), 10);
    state.stopped("g-leased", Some(&leased), 10);
    state.stopped("g-invalid", Some("../x"), 10);
    state.stopped("g-deferred", None, 9);
    state.lease("g-leased", "rtmanager/host/1", now_ms() + 3_600_000);
    let before = state.bytes();

    let dry = pass(&state, &["--dry-run", "--max-removals", "5"]);
    dry.assert_code(1);

    assert_eq!(
        state.bytes(),
        before,
        "the state file is byte for byte the same"
    );
    assert!(state.all_log().is_empty());
    for id in [&removable, &running, &leased] {
        assert!(exists(id));
    }
    assert_eq!(dry.json()["dry_run"], true);
    let real = pass(&state, &["--max-removals", "5"]);
    real.assert_code(1);
    assert_eq!(
        dry.outcomes(),
        real.outcomes(),
        "the dry run predicted the real run"
    );
    assert_eq!(dry.result_of("g-deferred"), "deferred");
}
on_each_engine_in_both_journal_modes!(a_dry_run_changes_nothing_and_predicts_the_real_run);

fn a_dry_run_works_on_a_read_only_state_file_that_a_real_run_refuses() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let state = StateFile::new(journal);
        state.stopped("g", None, 8);
        let before = state.bytes();
        // Immutable, the file and its directory are read-only even for root.
        let read_only = Immutable::new(&[state.path(), state.dir()]);

        let dry = pass(&state, &["--dry-run"]);
        let real = pass(&state, &[]);
        drop(read_only);

        dry.assert_code(0);
        assert_eq!(dry.result_of("g"), "replay_no_op", "{journal:?}");
        real.assert_code(2);
        assert!(
            real.stderr.contains("not writable"),
            "{journal:?}: {}",
            real.stderr
        );
        assert_eq!(state.bytes(), before, "{journal:?}: nothing changed");
        assert_eq!(state.status("g"), "stopped");
    }
}
on_each_engine!(a_dry_run_works_on_a_read_only_state_file_that_a_real_run_refuses);

fn environment_variables_are_twins_of_the_options() {
    let containers = Containers::new("env-twins");
    let state = StateFile::new(Journal::Rollback);
    let mine = containers.create(&[(OWNER_LABEL, "g-1")]);
    let second = containers.create(&[(OWNER_LABEL, "g-2")]);
    state.stopped("g-1", Some(&mine), 9);
    state.stopped("g-2", Some(&second), 8);
    let path = state.path().display().to_string();
    let env = [
        ("RT_CLEANUP_RETENTION", "7d"),
        ("RT_CLEANUP_STATE", path.as_str()),
        ("RT_CLEANUP_OUTPUT", "json"),
        ("RT_CLEANUP_MAX_REMOVALS", "1"),
        ("RT_CLEANUP_OWNER_LABEL", OWNER_LABEL),
        ("RT_CLEANUP_OP_SOURCE", "from_env"),
    ];

    let dry = crate::harness::run_with_env(
        &[],
        &[env.as_slice(), &[("RT_CLEANUP_DRY_RUN", "true")]].concat(),
    );
    dry.assert_code(0);
    assert_eq!(dry.json()["dry_run"], true);
    assert!(exists(&mine));

    let real = crate::harness::run_with_env(
        &[],
        &[env.as_slice(), &[("RT_CLEANUP_DRY_RUN", "false")]].concat(),
    );
    real.assert_code(0);
    let json = real.json();
    assert_eq!(json["dry_run"], false);
    assert_eq!(json["counts"]["removed"], 1);
    assert_eq!(json["counts"]["deferred"], 1);
    assert!(!exists(&mine));
    assert_eq!(state.log("g-1")[0].op_source, "from_env");
}
on_each_engine!(environment_variables_are_twins_of_the_options);

fn two_runs_at_once_remove_and_log_each_container_once() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("two-runs");
        let state = StateFile::new(journal);
        let ids: Vec<String> = (0..12).map(|_| containers.create(&[])).collect();
        for (index, id) in ids.iter().enumerate() {
            state.stopped(&format!("g-{index:02}"), Some(id), 8);
        }
        let args = crate::harness::pass_args(&state, &["--concurrency", "2"]);
        let spawn = || {
            let mut command =
                crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
            command.env("DOCKER_HOST", &daemon().host);
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        };
        let (first, second) = (spawn(), spawn());
        let first = crate::harness::finish(&first.wait_with_output().unwrap());
        let second = crate::harness::finish(&second.wait_with_output().unwrap());
        first.assert_code(0);
        second.assert_code(0);

        for (index, id) in ids.iter().enumerate() {
            let game = format!("g-{index:02}");
            assert!(!exists(id));
            assert_eq!(state.status(&game), "removed");
            let log = state.log(&game);
            let removals = log.iter().filter(|row| row.error_code.is_none()).count();
            assert_eq!(
                removals, 1,
                "{journal:?} {game}: logged as removed once: {log:?}"
            );
            assert!(
                log.iter()
                    .all(|row| row.error_code.is_none()
                        || row.error_code.as_deref() == Some("conflict")),
                "{log:?}"
            );
            let results = [first.result_of(&game), second.result_of(&game)];
            assert_eq!(
                results.iter().filter(|r| *r == "removed").count(),
                1,
                "{results:?}"
            );
        }
        assert_eq!(state.integrity(), "ok");
        assert!(state.leases().is_empty());
    }
}
on_each_engine!(two_runs_at_once_remove_and_log_each_container_once);

fn a_tcp_docker_host_is_spoken_to_like_a_unix_one() {
    let containers = Containers::new("tcp-host");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[(OWNER_LABEL, "g-tcp")]);
    state.stopped("g-tcp", Some(&id), 8);
    let bridge = crate::harness::TcpBridge::to_test_daemon();
    let host = format!("tcp://127.0.0.1:{}", bridge.port);

    let run = pass(
        &state,
        &["--docker-host", &host, "--owner-label", OWNER_LABEL],
    );
    run.assert_code(0);

    assert!(
        run.stderr.contains(&host),
        "the daemon is named in the log: {}",
        run.stderr
    );
    assert!(!exists(&id));
    assert_eq!(state.status("g-tcp"), "removed");
    let deletes: Vec<_> = daemon_log_lines(&id)
        .into_iter()
        .filter(|l| l.contains("DELETE"))
        .collect();
    assert!(
        deletes.iter().all(|line| line.contains("DELETE /v1.")),
        "{deletes:?}"
    );
}
on_each_engine!(a_tcp_docker_host_is_spoken_to_like_a_unix_one);

/// A container with tens of thousands of files in its writable layer: Docker and Podman take a
/// second or more to remove it, long enough for rt-cleanup to ask while the engine is still at
/// it.
fn slow_to_remove(containers: &Containers, files: u32) -> String {
    let script = format!(
        "mkdir /d && cd /d && /bin/busybox seq 1 {files} | /bin/busybox xargs /bin/busybox touch"
    );
    let id = containers.run_command(&["/bin/busybox", "sh", "-c", &script]);
    crate::harness::docker(&["wait", &id]);
    id
}

fn removal_by_the_cli(id: &str) -> std::process::Child {
    std::process::Command::new("docker")
        .args(["rm", id])
        .env("DOCKER_HOST", &daemon().host)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Docker: a removal already in progress is refused 409 "removal of container … is already in
/// progress" while the container shows as `removing`: a `conflict`, left for a later run, and
/// predicted so by a dry run from that state. The same on Docker 20.10, 26 and 28.
fn a_removal_already_in_progress_is_a_conflict() {
    let containers = Containers::new("in-progress");
    let state = StateFile::new(Journal::Rollback);
    let id = slow_to_remove(&containers, 60_000);
    state.stopped("g-busy", Some(&id), 8);
    let mut removal = removal_by_the_cli(&id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while container_state(&id).as_deref() != Some("removing") {
        assert!(
            exists(&id),
            "Docker removed the container before the test could see it removing"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the container never showed as removing"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let dry = pass(&state, &["--dry-run"]);
    let real = pass(&state, &[]);
    let still_removing = container_state(&id).as_deref() == Some("removing");
    removal.wait().unwrap();

    assert!(
        still_removing,
        "the window closed before rt-cleanup asked; the test proves nothing"
    );
    dry.assert_code(0);
    assert_eq!(dry.result_of("g-busy"), "conflict");
    real.assert_code(0);
    assert_eq!(real.result_of("g-busy"), "conflict", "{}", real.stdout);
    assert_eq!(state.status("g-busy"), "stopped", "left for a later run");
    let log = state.log("g-busy");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].outcome.as_str(), log[0].error_code.as_deref()),
        ("success", Some("conflict"))
    );
    assert!(
        log[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("in progress"),
        "{log:?}"
    );
}

#[test]
fn a_removal_already_in_progress_is_a_conflict_on_docker() {
    on_engine(Engine::Docker, a_removal_already_in_progress_is_a_conflict);
}

engine_test!(
    a_removal_already_in_progress_is_a_conflict_on_docker26,
    Docker26,
    a_removal_already_in_progress_is_a_conflict()
);

engine_test!(@unstable
    a_removal_already_in_progress_is_a_conflict_on_docker_unstable,
    DockerUnstable,
    a_removal_already_in_progress_is_a_conflict()
);

/// Podman differs here, as section 3 of docs/contract.md allows: it holds the container's lock
/// for the whole removal, so a second removal waits for the first. Podman 4.3 then finds no such
/// container and answers 404: a `replay_no_op` (the container is verifiably gone), not Docker's
/// `conflict`. Podman 5 (5.4 and 5.8 alike) answers 204 to the second as to the first: `removed`.
/// Either way the record is moved to `removed` once, with one row. A dry run's listing waits for
/// the lock as well, then lists no such container, and predicts a `replay_no_op`: on Podman 5 the
/// real run says `removed` instead, the same end for the record under another name.
fn a_removal_already_in_progress_is_waited_for_on_podman() {
    let containers = Containers::new("in-progress");
    let state = StateFile::new(Journal::Rollback);
    let id = slow_to_remove(&containers, 200_000);
    state.stopped("g-busy", Some(&id), 8);
    let mut removal = removal_by_the_cli(&id);
    // Podman shows no `removing` state (its listing and inspection wait for the container's
    // lock), so the CLI's request is given time to reach the service and take the lock.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let cli_still_running = removal.try_wait().unwrap().is_none();
    let started = std::time::Instant::now();
    let spawn = |extra: &[&str]| {
        let args = crate::harness::pass_args(&state, extra);
        let mut command =
            crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("DOCKER_HOST", &daemon().host);
        crate::harness::Spawned::start(command)
    };
    // The real run starts once the dry run has read the leases: started together, the real
    // run's lease could be read by the dry run, which then rightly predicts a conflict.
    let dry = spawn(&["--dry-run"]);
    assert!(
        dry.wait_for_stderr(
            "selected the expired stopped records",
            std::time::Duration::from_secs(30)
        ),
        "the dry run read the state file"
    );
    let real = spawn(&[]);
    let timeout = std::time::Duration::from_secs(60);
    let (dry, real) = (dry.wait(timeout), real.wait(timeout));
    let waited = started.elapsed();
    let cli = removal.wait().unwrap();

    assert!(
        cli_still_running && cli.success(),
        "the CLI's removal ended before rt-cleanup asked ({cli}); the test proves nothing"
    );
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "rt-cleanup did not wait for the other removal ({waited:?}); the test proves nothing"
    );
    assert!(!exists(&id));
    dry.assert_code(0);
    real.assert_code(0);
    let (answer, result, error_code) = if podman_answers_every_removal_204() {
        ("204", "removed", None)
    } else {
        ("404", "replay_no_op", Some("replay_no_op"))
    };
    assert_eq!(dry.result_of("g-busy"), "replay_no_op", "{}", dry.stdout);
    assert_eq!(real.result_of("g-busy"), result, "{}", real.stdout);
    assert_eq!(state.status("g-busy"), "removed");
    let log = state.log("g-busy");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].outcome.as_str(), log[0].error_code.as_deref()),
        ("success", error_code)
    );
    let api = crate::harness::docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let answers: Vec<_> = daemon_log_lines(&format!("DELETE /v{api}/containers/{id}"));
    assert!(
        answers
            .iter()
            .any(|line| line.contains(&format!("\" {answer} ")) && line.contains("rt-cleanup/")),
        "Podman answered rt-cleanup's removal {answer}: {answers:#?}"
    );
}

/// Whether the running test's Podman answers 204 to each of several removals of one container at
/// once, as Podman 5 does (5.4 and 5.8 alike), rather than 404 to all but the first, as Podman 4.3
/// does.
fn podman_answers_every_removal_204() -> bool {
    let version = crate::harness::docker(&["version", "--format", "{{.Server.Version}}"]);
    let major = version.split('.').next().unwrap_or_default();
    major.parse::<u32>().is_ok_and(|major| major >= 5)
}

#[test]
fn a_removal_already_in_progress_is_waited_for_and_a_replay_no_op_on_podman() {
    on_engine(
        Engine::Podman,
        a_removal_already_in_progress_is_waited_for_on_podman,
    );
}

engine_test!(
    a_removal_already_in_progress_is_waited_for_on_podman5,
    Podman5,
    a_removal_already_in_progress_is_waited_for_on_podman()
);

engine_test!(@unstable
    a_removal_already_in_progress_is_waited_for_on_podman_unstable,
    PodmanUnstable,
    a_removal_already_in_progress_is_waited_for_on_podman()
);

//! Leaked containers against the real daemon: every way a container becomes an orphan and every
//! way it does not, the lease and the re-check under it, hostile labels, plans, the separate
//! `--max-removals` budget, the metrics, and what the search costs in requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    command, daemon, docker, exists, finish, now_ms, run, run_without_docker, Containers,
    FaultProxy, Journal, Match, Run, Spawned, StateFile, OWNER_LABEL,
};

/// An owner label key of the test's own: the daemon is shared with every other test, whose
/// labelled containers must never look like this test's orphans (nor be removed by it).
fn owner_key() -> String {
    crate::harness::unique_name(&format!("{OWNER_LABEL}.orphans"))
}

/// A JSON pass with `--owner-label KEY` and `--orphans MODE` and a retention of `retention`.
fn args(state: &StateFile, key: &str, retention: &str, mode: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--retention",
        retention,
        "--state",
        &state.path().display().to_string(),
        "--output",
        "json",
        "--owner-label",
        key,
        "--orphans",
        mode,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn orphan_pass(state: &StateFile, key: &str, mode: &str, extra: &[&str]) -> Run {
    let args = args(state, key, "1s", mode, extra);
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Waits until the containers made so far are older than a one-second retention.
fn older_than_the_retention() {
    std::thread::sleep(Duration::from_millis(1_200));
}

/// The orphans of a summary by container id: `(game_id, result)`.
fn orphans(run: &Run) -> BTreeMap<String, (String, Value)> {
    run.json()["orphans"]
        .as_array()
        .unwrap_or_else(|| panic!("no orphans in {}", run.stdout))
        .iter()
        .map(|orphan| {
            (
                orphan["container_id"].as_str().unwrap().to_owned(),
                (
                    orphan["game_id"].as_str().unwrap().to_owned(),
                    orphan["result"].clone(),
                ),
            )
        })
        .collect()
}

/// A record that is not a candidate (stopped in the future, or not stopped), naming `container`.
fn claiming(state: &StateFile, game: &str, status: &str, container: &str) {
    state.insert(game, Some(container), status, &(now_ms() + 86_400_000));
}

/// Runs the binary with `args` through a fault proxy that passes every request; returns the run
/// and the request lines that went through.
fn through_an_open_proxy(args: &[String]) -> (Run, Vec<String>) {
    let proxy = FaultProxy::in_front_of_test_daemon();
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", proxy.host());
    let run = finish(&command.output().unwrap());
    (run, proxy.requests())
}

/// The request lines that list containers (`GET …/containers/json?…`).
fn listings(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|line| line.contains("/containers/json?"))
        .collect()
}

/// The ids of the containers inspected, in the order of the request lines.
fn inspected(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|line| {
            let path = line.strip_prefix("GET ")?.split(' ').next()?;
            let rest = path.split_once("/containers/")?.1;
            rest.strip_suffix("/json").map(str::to_owned)
        })
        .collect()
}

#[test]
fn each_way_a_container_becomes_an_orphan_is_found_predicted_and_removed() {
    let containers = Containers::new("orphans-become");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Wal);
    // Containers the records name instead, without the owner label.
    let other_by_id = containers.create(&[]);
    let other_by_prefix = containers.create(&[]);
    let other_by_name = containers.create_named(&crate::harness::unique_name("other"), &[]);
    let other_name = docker(&["inspect", "--format", "{{.Name}}", &other_by_name])
        .trim_start_matches('/')
        .to_owned();
    let no_record = containers.create(&[(key, "g-no-record")]);
    let record_removed = containers.create(&[(key, "g-removed")]);
    let named_other_by_id = containers.create(&[(key, "g-other-id")]);
    let named_other_by_prefix = containers.create(&[(key, "g-other-prefix")]);
    let named_other_by_name = containers.create(&[(key, "g-other-name")]);
    state.insert("g-removed", Some(&record_removed), "removed", &now_ms());
    claiming(&state, "g-other-id", "running", &other_by_id);
    claiming(&state, "g-other-prefix", "stopped", &other_by_prefix[..12]);
    claiming(&state, "g-other-name", "creating", &other_name);
    let records_before: Vec<_> = ["g-removed", "g-other-id", "g-other-prefix", "g-other-name"]
        .iter()
        .map(|game| state.record(game))
        .collect();
    older_than_the_retention();

    let report = orphan_pass(&state, key, "report", &[]);
    report.assert_code(0);
    let expected: BTreeMap<String, String> = [
        (&no_record, "g-no-record"),
        (&record_removed, "g-removed"),
        (&named_other_by_id, "g-other-id"),
        (&named_other_by_prefix, "g-other-prefix"),
        (&named_other_by_name, "g-other-name"),
    ]
    .iter()
    .map(|(id, game)| ((*id).clone(), (*game).to_owned()))
    .collect();
    let reported = orphans(&report);
    assert_eq!(
        reported
            .iter()
            .map(|(id, (game, _))| (id.clone(), game.clone()))
            .collect::<BTreeMap<_, _>>(),
        expected
    );
    assert!(
        reported.values().all(|(_, result)| result.is_null()),
        "report attempts nothing"
    );
    assert_eq!(report.json()["orphan_counts"]["found"], 5);
    assert!(state.all_log().is_empty(), "report writes no row");

    let dry = orphan_pass(&state, key, "remove", &["--dry-run"]);
    dry.assert_code(0);
    let real = orphan_pass(&state, key, "remove", &[]);
    real.assert_code(0);
    assert_eq!(
        orphans(&dry),
        orphans(&real),
        "the dry run predicted the real run"
    );
    assert_eq!(
        real.json()["orphan_counts"]["removed"],
        5,
        "{}",
        real.stdout
    );
    for (id, game) in &expected {
        assert!(!exists(id), "{game}'s leaked container is removed");
        let log = state.log(game);
        assert_eq!(log.len(), 1, "{game}: {log:?}");
        assert_eq!(log[0].op_kind, "cleanup_orphan");
        assert_eq!(log[0].outcome, "success");
        assert_eq!(
            log[0].container_id.as_deref(),
            Some(id.as_str()),
            "the full id"
        );
    }
    for id in [&other_by_id, &other_by_prefix, &other_by_name] {
        assert!(exists(id), "a container a record names is never an orphan");
    }
    let records_after: Vec<_> = ["g-removed", "g-other-id", "g-other-prefix", "g-other-name"]
        .iter()
        .map(|game| state.record(game))
        .collect();
    assert_eq!(
        records_after, records_before,
        "orphan handling never changes a record"
    );
    assert!(state.leases().is_empty());
}

#[test]
fn each_way_a_container_is_not_an_orphan_leaves_it_alone() {
    let containers = Containers::new("orphans-not");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let by_id = containers.create(&[(key, "g-by-id")]);
    let by_prefix = containers.create(&[(key, "g-by-prefix")]);
    let name = crate::harness::unique_name("claimed");
    let by_name = containers.create_named(&name, &[(key, "g-by-name")]);
    claiming(&state, "g-by-id", "stopped", &by_id);
    claiming(&state, "g-by-prefix", "running", &by_prefix[..16]);
    claiming(&state, "g-by-name", "creating", &name);
    let running = containers.run(&[(key, "g-running")]);
    let paused = containers.run(&[(key, "g-paused")]);
    docker(&["pause", &paused]);
    let other_key = containers.create(&[("some.other.key", "g-other-key")]);
    older_than_the_retention();

    for mode in ["report", "remove"] {
        let run = orphan_pass(&state, key, mode, &[]);
        run.assert_code(0);
        assert_eq!(
            run.json()["orphan_counts"]["found"],
            0,
            "{mode}: {}",
            run.stdout
        );
    }
    for id in [&by_id, &by_prefix, &by_name, &running, &paused, &other_key] {
        assert!(exists(id));
    }
    assert!(state.all_log().is_empty());
    docker(&["unpause", &paused]);
}

#[test]
fn a_container_younger_than_the_retention_is_not_an_orphan_yet() {
    let containers = Containers::new("orphans-young");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let young = containers.create(&[(key, "g-young")]);
    let args = args(&state, key, "1h", "remove", &[]);
    let young_run = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    young_run.assert_code(0);
    assert_eq!(
        young_run.json()["orphan_counts"]["found"],
        0,
        "created just now"
    );
    assert!(exists(&young));
}

#[test]
fn a_container_that_ran_counts_its_age_from_when_it_stopped() {
    let containers = Containers::new("orphans-finished");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let ran = containers.run_labelled_command(&[(key, "g-ran")], &["sleep", "3"]);
    docker(&["wait", &ran]);
    let report = |retention: &str| {
        let run = run(&args(&state, key, retention, "report", &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        run.assert_code(0);
        orphans(&run)
    };
    // Created more than 2 s ago, stopped just now: not older than a 2 s retention yet.
    assert!(!report("2s").contains_key(&ran));
    std::thread::sleep(Duration::from_millis(2_100));
    let found = report("2s");
    assert_eq!(
        found.get(&ran).map(|(game, _)| game.as_str()),
        Some("g-ran")
    );
}

#[test]
fn a_record_that_claims_the_container_after_the_listing_makes_it_a_conflict() {
    let containers = Containers::new("orphans-late-claim");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Wal);
    let leaked = containers.create(&[(key, "g-late")]);
    older_than_the_retention();
    // Hold the pass at the inspection, after the listing and before the lease.
    let gate = FaultProxy::holding(Match::inspection_of(&leaked));
    let args = args(&state, key, "1s", "remove", &[]);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", gate.host());
    let running = Spawned::start(command);
    assert!(
        gate.wait_held(1, Duration::from_secs(20)),
        "the inspection never came"
    );
    claiming(&state, "g-late", "creating", &leaked);
    gate.open();
    let run = running.wait(Duration::from_secs(30));

    run.assert_code(0);
    assert_eq!(orphans(&run)[&leaked].1, "conflict");
    assert!(
        exists(&leaked),
        "the container its record now claims is kept"
    );
    let log = state.log("g-late");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].op_kind, "cleanup_orphan");
    assert_eq!(log[0].error_code.as_deref(), Some("conflict"));
    assert_eq!(
        state.status("g-late"),
        "creating",
        "the record is left as it is"
    );
    assert!(state.leases().is_empty());
}

#[test]
fn a_lease_held_by_the_manager_keeps_the_orphan_as_a_conflict() {
    let containers = Containers::new("orphans-leased");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let leaked = containers.create(&[(key, "g-leased")]);
    state.lease("g-leased", "rtmanager/host-a/7", now_ms() + 60_000);
    older_than_the_retention();
    let dry = orphan_pass(&state, key, "remove", &["--dry-run"]);
    let real = orphan_pass(&state, key, "remove", &[]);
    real.assert_code(0);
    assert_eq!(orphans(&dry), orphans(&real));
    assert_eq!(orphans(&real)[&leaked].1, "conflict");
    assert!(exists(&leaked));
    assert_eq!(
        state.leases()[0].1,
        "rtmanager/host-a/7",
        "the manager's lease is untouched"
    );
}

#[test]
fn hostile_labels_are_reported_but_never_used_unchecked_as_a_key() {
    let containers = Containers::new("orphans-hostile");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let values = [
        String::new(),
        "g".repeat(300),
        "g\nforged=1".to_owned(),
        "../../etc".to_owned(),
        "g-\\xff".to_owned(),
        "g-\u{FFFD}".to_owned(),
        "' OR 1=1 --".to_owned(),
    ];
    let ids = containers.create_many(values.len(), |n| vec![(key.to_owned(), values[n].clone())]);
    older_than_the_retention();

    let report = orphan_pass(&state, key, "report", &[]);
    report.assert_code(0);
    assert_eq!(orphans(&report).len(), values.len(), "every one is listed");

    let removed = orphan_pass(&state, key, "remove", &[]);
    removed.assert_code(1);
    let found = orphans(&removed);
    for (id, value) in ids.iter().zip(&values) {
        let (game, result) = &found[id];
        assert_eq!(game, value, "reported as it is");
        let names_a_game = !value.is_empty() && value.len() <= 255 && !value.contains('\n');
        if names_a_game {
            assert_eq!(result, "removed", "{value:?}");
            assert!(!exists(id));
            let log = state.log(value);
            assert_eq!(log.len(), 1, "{value:?} is logged under its own key");
        } else {
            assert_eq!(result, "failed", "{value:?}");
            assert!(
                exists(id),
                "{value:?}: a label that names no game keeps its container"
            );
        }
    }
    let json = removed.json();
    let failed: Vec<&Value> = json["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|orphan| orphan["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 3);
    assert!(failed
        .iter()
        .all(|orphan| orphan["error_code"] == "invalid_record"));
    assert_eq!(
        state.all_log().len(),
        4,
        "no row for a label that names no game"
    );
    assert!(state.leases().is_empty());
    assert!(
        state
            .all_log()
            .iter()
            .all(|row| values.contains(&row.game_id)),
        "{:?}",
        state.all_log()
    );
}

#[test]
fn orphans_have_a_max_removals_budget_of_their_own_after_the_records() {
    let containers = Containers::new("orphans-budget");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let record_container = containers.create(&[(key, "g-record")]);
    state.insert(
        "g-record",
        Some(&record_container),
        "stopped",
        &(now_ms() - 60_000),
    );
    let first = containers.create(&[(key, "g-orphan-1")]);
    std::thread::sleep(Duration::from_millis(20));
    let second = containers.create(&[(key, "g-orphan-2")]);
    older_than_the_retention();

    let run = orphan_pass(&state, key, "remove", &["--max-removals", "1"]);
    run.assert_code(0);
    assert_eq!(run.result_of("g-record"), "removed", "the record first");
    let found = orphans(&run);
    assert_eq!(
        found[&first].1, "removed",
        "the oldest orphan within its own budget"
    );
    assert_eq!(found[&second].1, "deferred");
    assert!(exists(&second));
    assert_eq!(run.json()["orphan_counts"]["deferred"], 1);
}

#[test]
fn a_plan_removes_exactly_its_orphans_each_rechecked() {
    let containers = Containers::new("orphans-plan");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Wal);
    let planned = containers.create(&[(key, "g-planned")]);
    let claimed_later = containers.create(&[(key, "g-claimed-later")]);
    older_than_the_retention();
    let plans = tempfile::tempdir().unwrap();
    let plan = plans.path().join("plan.json").display().to_string();
    orphan_pass(&state, key, "remove", &["--dry-run", "--plan-out", &plan]).assert_code(0);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(written["orphan_mode"], "remove");
    assert_eq!(written["orphans"].as_array().unwrap().len(), 2, "{written}");

    // After the review: a new orphan appears, and a planned one is claimed by its record.
    let unreviewed = containers.create(&[(key, "g-unreviewed")]);
    claiming(&state, "g-claimed-later", "creating", &claimed_later);
    older_than_the_retention();
    let path = state.path().display().to_string();
    let other_mode = run(&[
        "--retention",
        "1s",
        "--state",
        &path,
        "--apply-plan",
        &plan,
        "--orphans",
        "report",
    ]);
    other_mode.assert_code(2);
    assert!(
        other_mode.stderr.contains("--orphans"),
        "{}",
        other_mode.stderr
    );

    let applied = run(&[
        "--retention",
        "1s",
        "--state",
        &path,
        "--output",
        "json",
        "--apply-plan",
        &plan,
    ]);
    applied.assert_code(0);
    let found = orphans(&applied);
    assert_eq!(found.len(), 2, "exactly the planned orphans");
    assert_eq!(found[&planned].1, "removed");
    assert_eq!(found[&claimed_later].1, "conflict");
    assert!(!exists(&planned));
    assert!(exists(&claimed_later) && exists(&unreviewed));
    assert!(state.log("g-unreviewed").is_empty());
}

#[test]
fn applying_a_plan_inspects_only_its_orphans_and_one_no_longer_an_orphan_gets_no_lease_nor_row() {
    let containers = Containers::new("orphans-plan-inspections");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let planned = containers.create(&[(key, "g-planned")]);
    let gone_later = containers.create(&[(key, "g-gone-later")]);
    let claimed_later = containers.create(&[(key, "g-claimed-later")]);
    // Claimed by their records when the plan is made, so not in it.
    let released_later: Vec<String> = (0..3)
        .map(|n| {
            let game = format!("g-released-{n}");
            let id = containers.create(&[(key, &game)]);
            claiming(&state, &game, "running", &id);
            id
        })
        .collect();
    older_than_the_retention();
    let plans = tempfile::tempdir().unwrap();
    let plan = plans.path().join("plan.json").display().to_string();
    orphan_pass(&state, key, "remove", &["--dry-run", "--plan-out", &plan]).assert_code(0);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(written["orphans"].as_array().unwrap().len(), 3, "{written}");

    // After the review: someone removes one, its record claims another, the records of others
    // are moved to `removed` (their containers are orphans now, but were not reviewed), and
    // more containers leak.
    docker(&["rm", &gone_later]);
    claiming(&state, "g-claimed-later", "creating", &claimed_later);
    state
        .connect()
        .execute(
            "UPDATE runtime_records SET status = 'removed' WHERE game_id LIKE 'g-released-%'",
            [],
        )
        .unwrap();
    let unreviewed: Vec<String> = (0..3)
        .map(|n| containers.create(&[(key, &format!("g-unreviewed-{n}"))]))
        .chain(released_later)
        .collect();
    older_than_the_retention();
    let args: Vec<String> = [
        "--retention",
        "1s",
        "--state",
        &state.path().display().to_string(),
        "--output",
        "json",
        "--apply-plan",
        &plan,
    ]
    .map(str::to_owned)
    .to_vec();
    let (applied, requests) = through_an_open_proxy(&args);
    applied.assert_code(0);

    assert_eq!(
        inspected(&requests),
        [planned.as_str()],
        "only a planned orphan that is still unclaimed is inspected: {requests:#?}"
    );
    let found = orphans(&applied);
    assert_eq!(found.len(), 3, "exactly the planned orphans");
    assert_eq!(found[&planned].1, "removed");
    assert_eq!(found[&gone_later].1, "conflict");
    assert_eq!(found[&claimed_later].1, "conflict");
    assert_eq!(state.log("g-planned").len(), 1);
    for game in ["g-gone-later", "g-claimed-later"] {
        assert!(
            state.log(game).is_empty(),
            "{game}: no longer an orphan, nothing is attempted: no row"
        );
    }
    assert!(state.leases().is_empty(), "and no lease is left");
    assert_eq!(state.status("g-claimed-later"), "creating");
    assert!(exists(&claimed_later));
    for id in &unreviewed {
        assert!(exists(id), "an unreviewed container is never acted on");
    }
}

#[test]
fn a_dry_run_lists_the_containers_once_for_its_records_and_its_orphans() {
    let containers = Containers::new("orphans-one-listing");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let own = containers.create(&[(key, "g-record")]);
    state.stopped("g-record", Some(&own), 8);
    let leaked = containers.create(&[(key, "g-leaked")]);
    older_than_the_retention();

    let (run, requests) = through_an_open_proxy(&args(&state, key, "1s", "remove", &["--dry-run"]));
    run.assert_code(0);
    assert_eq!(run.result_of("g-record"), "removed");
    let found = orphans(&run);
    assert_eq!(found[&leaked].1, "removed", "{}", run.stdout);
    assert!(!found.contains_key(&own), "its record claims it");
    assert_eq!(listings(&requests).len(), 1, "{requests:#?}");
    assert_eq!(inspected(&requests), [leaked], "{requests:#?}");
}

#[test]
fn an_immutable_dry_run_reads_again_when_the_state_file_is_written_during_its_orphan_search() {
    let containers = Containers::new("orphans-reread");
    let key = owner_key();
    let key = key.as_str();
    // A WAL file that no writer has open: a dry run reads it as immutable, without locks.
    let state = StateFile::new(Journal::Wal);
    state.stopped("g-record", None, 8);
    let leaked = containers.create(&[(key, "g-leaked")]);
    older_than_the_retention();
    let gate = FaultProxy::holding(Match::listing());
    let args = args(&state, key, "1s", "remove", &["--dry-run"]);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", gate.host());
    let running = Spawned::start(command);
    assert!(
        gate.wait_held(1, Duration::from_secs(20)),
        "the listing never came"
    );
    // The runtime manager writes once, after the records were read and before the orphans'.
    state.insert("g-written", None, "running", &now_ms());
    gate.open();
    let run = running.wait(Duration::from_secs(30));

    run.assert_code(0);
    assert!(
        run.stderr.contains("reading it again"),
        "the whole file is read again: {}",
        run.stderr
    );
    assert_eq!(run.result_of("g-record"), "replay_no_op");
    assert_eq!(orphans(&run)[&leaked].1, "removed");
    let leftovers: Vec<_> = std::fs::read_dir(state.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-wal") || name.ends_with("-shm"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a dry run creates nothing: {leftovers:?}"
    );
}

#[test]
fn an_orphan_search_that_gets_no_answer_reports_no_orphans_no_counts_and_why() {
    let containers = Containers::new("orphans-no-answer");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Wal);
    state.stopped("g-none", None, 8);
    let leaked = containers.create(&[(key, "g-leaked")]);
    older_than_the_retention();
    let metrics = state.dir().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();
    for extra in [&["--dry-run"][..], &["--metrics-file", &metrics_arg][..]] {
        // The labelled listing is held past the Docker timeout.
        let gate = FaultProxy::holding(Match::target("filters="));
        let mut extra = extra.to_vec();
        extra.extend(["--docker-timeout", "1s"]);
        let args = args(&state, key, "1s", "remove", &extra);
        let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("DOCKER_HOST", gate.host());
        let run = finish(&command.output().unwrap());

        run.assert_code(1);
        let json = run.json();
        assert_eq!(json["orphans"], Value::Null, "{}", run.stdout);
        assert_eq!(json["orphan_counts"], Value::Null);
        let error = json["orphan_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("cannot list the containers labelled {key}"))
                && error.contains("no answer within 1s"),
            "{error}"
        );
        assert_eq!(
            run.result_of("g-none"),
            "replay_no_op",
            "the records are handled"
        );
        assert!(exists(&leaked));
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("\nrt_cleanup_last_run_exit_status 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("orphan"),
        "no orphan count is claimed: {text}"
    );
    assert!(state
        .all_log()
        .iter()
        .all(|row| row.op_kind == "cleanup_container"));
}

#[test]
fn a_state_file_locked_past_the_wait_during_the_orphan_search_exits_75() {
    let containers = Containers::new("orphans-locked");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    let leaked = containers.create(&[(key, "g-leaked")]);
    older_than_the_retention();
    // The orphan search's labelled listing is held; the state file is locked before it is
    // answered and stays locked past the one-second wait of the read that follows it.
    let gate = FaultProxy::holding(Match::target("filters="));
    let args = args(&state, key, "1s", "remove", &["--lock-wait", "1s"]);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", gate.host());
    let running = Spawned::start(command);
    assert!(
        gate.wait_held(1, Duration::from_secs(20)),
        "the labelled listing never came"
    );
    let lock = state.lock_exclusive();
    gate.open();
    let run = running.wait(Duration::from_secs(30));
    drop(lock);

    run.assert_code(75);
    let json = run.json();
    assert_eq!(json["orphans"], Value::Null, "{}", run.stdout);
    let error = json["orphan_error"].as_str().unwrap_or_default();
    assert!(error.contains("--lock-wait"), "{error}");
    assert!(exists(&leaked), "nothing was removed");
    assert!(state.all_log().is_empty());
    assert!(state.leases().is_empty());
}

#[test]
fn orphans_need_an_owner_label() {
    let run = run_without_docker(&["--retention", "7d", "--orphans", "report"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--owner-label"), "{}", run.stderr);
}

#[test]
fn the_metrics_count_orphans_and_the_age_of_the_oldest() {
    let containers = Containers::new("orphans-metrics");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Rollback);
    containers.create(&[(key, "g-metrics-1")]);
    containers.create(&[(key, "g-metrics-2")]);
    older_than_the_retention();
    let metrics = state.dir().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();
    orphan_pass(&state, key, "remove", &["--metrics-file", &metrics_arg]).assert_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("\nrt_cleanup_last_run_orphans_found 2\n"),
        "{text}"
    );
    assert!(
        text.contains("\nrt_cleanup_last_run_orphans_removed 2\n"),
        "{text}"
    );
    let age: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("rt_cleanup_oldest_orphan_age_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.0..60.0).contains(&age), "{age}");
}

#[test]
fn looking_for_orphans_costs_one_listing_and_one_inspection_per_unclaimed_container() {
    let containers = Containers::new("orphans-cost");
    let key = owner_key();
    let key = key.as_str();
    let state = StateFile::new(Journal::Wal);
    let ids = containers.create_many(1_000, |n| vec![(key.to_owned(), format!("g-cost-{n}"))]);
    {
        let connection = state.connect();
        let transaction = connection.unchecked_transaction().unwrap();
        for (n, id) in ids.iter().enumerate().take(900) {
            // Claimed by id, by prefix or by a record of another status, none of them expired.
            let (status, reference) = match n % 3 {
                0 => ("running", id.as_str()),
                1 => ("creating", &id[..12]),
                _ => ("stopped", id.as_str()),
            };
            transaction
                .execute(
                    "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        format!("g-cost-{n}"),
                        reference,
                        status,
                        now_ms() + 86_400_000
                    ],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    older_than_the_retention();
    let requests_of = |extra: &[&str]| {
        let mut args = vec![
            "--retention".to_owned(),
            "1s".to_owned(),
            "--state".to_owned(),
            state.path().display().to_string(),
            "--output".to_owned(),
            "json".to_owned(),
            "--owner-label".to_owned(),
            key.to_owned(),
            "--dry-run".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let (run, requests) = through_an_open_proxy(&args);
        run.assert_code(0);
        (run, requests)
    };
    let (_, without) = requests_of(&[]);
    let (with_run, with) = requests_of(&["--orphans", "report"]);
    assert_eq!(with_run.json()["orphan_counts"]["found"], 100);
    let added: Vec<String> = with
        .iter()
        .filter(|line| !without.contains(line))
        .cloned()
        .collect();
    let listings = listings(&added);
    let inspections = inspected(&added).len();
    assert_eq!(listings.len(), 1, "{listings:?}");
    assert!(
        listings[0].contains("filters="),
        "filtered by the daemon: {}",
        listings[0]
    );
    assert_eq!(inspections, 100, "one per unclaimed container");
    assert_eq!(added.len(), 101, "nothing else: {added:#?}");
    let _ = daemon();
}

// Every test above once more on the other engines, Podman's Docker-compatible service and the
// newer Dockers (docs/contract.md, "Engines"): their listings filtered by label, their
// `State.FinishedAt` and their refusals must give the same orphans and results as Debian 12's
// Docker. A test added above belongs here too.
also_on_the_other_engines!(
    each_way_a_container_becomes_an_orphan_is_found_predicted_and_removed,
    each_way_a_container_is_not_an_orphan_leaves_it_alone,
    a_container_younger_than_the_retention_is_not_an_orphan_yet,
    a_container_that_ran_counts_its_age_from_when_it_stopped,
    a_record_that_claims_the_container_after_the_listing_makes_it_a_conflict,
    a_lease_held_by_the_manager_keeps_the_orphan_as_a_conflict,
    hostile_labels_are_reported_but_never_used_unchecked_as_a_key,
    orphans_have_a_max_removals_budget_of_their_own_after_the_records,
    a_plan_removes_exactly_its_orphans_each_rechecked,
    orphans_need_an_owner_label,
    the_metrics_count_orphans_and_the_age_of_the_oldest,
    looking_for_orphans_costs_one_listing_and_one_inspection_per_unclaimed_container,
    applying_a_plan_inspects_only_its_orphans_and_one_no_longer_an_orphan_gets_no_lease_nor_row,
    a_dry_run_lists_the_containers_once_for_its_records_and_its_orphans,
    an_immutable_dry_run_reads_again_when_the_state_file_is_written_during_its_orphan_search,
    an_orphan_search_that_gets_no_answer_reports_no_orphans_no_counts_and_why,
);

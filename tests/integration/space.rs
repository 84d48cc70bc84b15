//! What a pass frees, against the real engines: the writable layer of each container it removes
//! (`--measure-space`) and the anonymous volumes that go with it (`--remove-volumes`), in the
//! dry run and the real run, which must agree; a size that cannot be measured, which never fails
//! or delays a removal beyond one timeout; and a volume another container uses, which stays.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::{
    daemon_log_lines, docker, docker_succeeds, engine, exists, pass, plan_of, run, spawn_pass,
    Containers, Fault, FaultProxy, Journal, Match, StateFile, Which,
};

/// What `dd` writes into the writable layer of the big container: 3 MiB.
const WRITTEN: u64 = 3 << 20;

/// The record of `game` in a JSON summary.
fn record<'a>(summary: &'a serde_json::Value, game: &str) -> &'a serde_json::Value {
    summary["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["game_id"] == game)
        .unwrap_or_else(|| panic!("{game} is not in the summary: {summary}"))
}

/// The names of a record's `volumes_removed`, as a set.
fn volumes_of(record: &serde_json::Value) -> BTreeSet<String> {
    record["volumes_removed"]
        .as_array()
        .unwrap_or_else(|| panic!("volumes_removed is a list: {record}"))
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// Whether a volume exists on the test daemon.
fn volume_exists(name: &str) -> bool {
    docker_succeeds(&["volume", "inspect", name])
}

/// The name of the volume a container mounts at `destination`.
fn volume_at(id: &str, destination: &str) -> String {
    let format = format!(
        "{{{{range .Mounts}}}}{{{{if eq .Destination \"{destination}\"}}}}{{{{.Name}}}}\
         {{{{end}}}}{{{{end}}}}"
    );
    let name = docker(&["container", "inspect", "--format", &format, id]);
    assert!(!name.is_empty(), "{id} mounts no volume at {destination}");
    name
}

/// The daemon's request log lines of the removal of a container: its `DELETE` with its query.
fn removal_requests(id: &str) -> Vec<String> {
    daemon_log_lines(&format!("containers/{id}?"))
        .into_iter()
        .filter(|line| line.contains("DELETE"))
        .collect()
}

fn measure_space_reports_each_writable_layer_and_what_the_pass_freed(journal: Journal) {
    let containers = Containers::new("measure");
    let state = StateFile::new(journal);
    let big = containers.run_to_exit(
        &[],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=3 2>/dev/null",
        ],
    );
    let small = containers.create(&[]);
    let running = containers.run(&[]);
    state.stopped("g-big", Some(&big), 8);
    state.stopped("g-small", Some(&small), 8);
    state.stopped("g-running", Some(&running), 8);

    let dry = pass(&state, &["--dry-run", "--measure-space"]);
    dry.assert_code(1);
    let dry = dry.json();
    let big_size = record(&dry, "g-big")["size_rw_bytes"].as_u64().unwrap();
    assert!(
        (WRITTEN..WRITTEN + (256 << 10)).contains(&big_size),
        "the 3 MiB written, and little else: {big_size}"
    );
    let small_size = record(&dry, "g-small")["size_rw_bytes"].as_u64().unwrap();
    assert!(
        small_size < 64 << 10,
        "a container never started: {small_size}"
    );
    assert_eq!(
        record(&dry, "g-running")["size_rw_bytes"],
        serde_json::Value::Null,
        "a container predicted not removed is not looked at"
    );
    assert_eq!(
        dry["freed"],
        serde_json::json!({"containers": 2, "size_rw_bytes": big_size + small_size,
                           "unmeasured": 0})
    );
    let args = [
        "--retention",
        "7d",
        "--state",
        state.path().to_str().unwrap(),
        "--dry-run",
        "--measure-space",
    ];
    let text = run(&args);
    let last = text.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("; would free ≈ 3.0 MiB: the writable layers of 2 containers, image layers"),
        "{last}"
    );

    let metrics = state.dir().join("rt_cleanup.prom");
    let real = pass(
        &state,
        &[
            "--measure-space",
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    real.assert_code(1);
    let real = real.json();
    for (game, size) in [("g-big", big_size), ("g-small", small_size)] {
        assert_eq!(record(&real, game)["result"], "removed");
        assert_eq!(
            record(&real, game)["size_rw_bytes"],
            size,
            "the real run measures what the dry run measured"
        );
    }
    assert!(!exists(&big) && !exists(&small));
    assert_eq!(record(&real, "g-running")["result"], "failed");
    assert!(
        record(&real, "g-running")["size_rw_bytes"].is_u64(),
        "measured before the removal was refused"
    );
    assert_eq!(
        real["freed"], dry["freed"],
        "freed counts the containers removed only, as the dry run predicted"
    );
    let metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        metrics.contains(&format!(
            "\nrt_cleanup_last_run_freed_bytes {}\n",
            big_size + small_size
        )),
        "{metrics}"
    );
    assert!(metrics.contains("\nrt_cleanup_last_run_unmeasured_containers 0\n"));
    let sized: Vec<String> = daemon_log_lines(&format!("containers/{big}/json?size=true"));
    assert_eq!(
        sized.len(),
        3,
        "one sized inspection per run (two dry runs, the real run): {sized:?}"
    );
}
on_each_engine_in_both_journal_modes!(
    measure_space_reports_each_writable_layer_and_what_the_pass_freed
);

/// The per-call timeout of the fault test, which a sized inspection exceeds: long enough that
/// the other calls never reach it (a Podman 4.3 listing on a loaded CI machine, beside the
/// other tests' containers, took over 2 s, and once over 5 s).
const TIMEOUT: Duration = Duration::from_secs(10);
/// [`TIMEOUT`] as `--docker-timeout` takes it.
const TIMEOUT_ARG: &str = "10s";

fn a_size_that_cannot_be_measured_never_fails_or_delays_a_removal_beyond_one_timeout() {
    let containers = Containers::new("unmeasured");
    let state = StateFile::new(Journal::Wal);
    let id = containers.create(&[]);
    state.stopped("g-1", Some(&id), 8);
    // Every sized inspection reaches the daemon and is never answered.
    let proxy = FaultProxy::in_front_of_test_daemon().with(
        Match::new("GET", "size=true"),
        Which::Every,
        Fault::Swallow,
    );
    for dry_run in [true, false] {
        let extra: &[&str] = if dry_run {
            &[
                "--dry-run",
                "--measure-space",
                "--docker-timeout",
                TIMEOUT_ARG,
            ]
        } else {
            &["--measure-space", "--docker-timeout", TIMEOUT_ARG]
        };
        let started = Instant::now();
        let run = spawn_pass(&state, &proxy.host(), extra).wait(TIMEOUT * 4);
        let took = started.elapsed();
        run.assert_code(0);
        let json = run.json();
        assert_eq!(record(&json, "g-1")["result"], "removed");
        assert_eq!(
            record(&json, "g-1")["size_rw_bytes"],
            serde_json::Value::Null
        );
        assert_eq!(json["freed"]["unmeasured"], 1);
        assert!(
            took < TIMEOUT * 2,
            "one timeout at most, not {took:?} (dry run: {dry_run})"
        );
    }
    assert!(!exists(&id), "removed all the same");
    let seen = proxy.seen();
    let sized = seen
        .iter()
        .rfind(|seen| seen.target.contains("size=true"))
        .expect("the real run asked for the size");
    let removal = seen
        .iter()
        .find(|seen| seen.method == "DELETE")
        .expect("the real run removed the container");
    let waited = removal.arrived - sized.arrived;
    assert!(
        (TIMEOUT..TIMEOUT + Duration::from_secs(1)).contains(&waited),
        "the removal was sent one timeout after the size was asked for, not {waited:?}"
    );
}
on_each_engine!(a_size_that_cannot_be_measured_never_fails_or_delays_a_removal_beyond_one_timeout);

fn remove_volumes_takes_the_anonymous_volumes_and_never_a_named_one(journal: Journal) {
    let containers = Containers::new("volumes");
    let state = StateFile::new(journal);
    let named = containers.named_volume("rt-cleanup-test-named");
    let image = containers.image_with_volume("/data");
    let id = containers.create_with(
        Some(&image),
        &[
            "-v",
            "/anon",
            "-v",
            &format!("{named}:/named"),
            "--mount",
            "type=volume,dst=/m",
        ],
    );
    let anonymous: BTreeSet<String> = ["/data", "/anon", "/m"]
        .iter()
        .map(|destination| volume_at(&id, destination))
        .collect();
    assert_eq!(volume_at(&id, "/named"), named);
    state.stopped("g-1", Some(&id), 8);

    let dry = pass(&state, &["--dry-run", "--remove-volumes"]);
    dry.assert_code(0);
    let dry = dry.json();
    assert_eq!(
        volumes_of(record(&dry, "g-1")),
        anonymous,
        "the image's VOLUME, -v /path and an unnamed --mount; never the named one"
    );
    assert_eq!(
        dry["freed"],
        serde_json::json!({"containers": 1, "volumes": 3})
    );

    let real = pass(&state, &["--remove-volumes"]);
    real.assert_code(0);
    let real = real.json();
    assert_eq!(record(&real, "g-1")["result"], "removed");
    assert_eq!(
        volumes_of(record(&real, "g-1")),
        anonymous,
        "what went is what the dry run listed"
    );
    assert_eq!(real["freed"], dry["freed"]);
    for volume in &anonymous {
        assert!(!volume_exists(volume), "{volume} went with the container");
    }
    assert!(volume_exists(&named), "a named volume is never removed");
    let removals = removal_requests(&id);
    assert!(
        removals.len() == 1
            && removals[0].contains("v=true")
            && removals[0].contains("force=false"),
        "one DELETE with v=true, never forced: {removals:?}"
    );
}
on_each_engine_in_both_journal_modes!(
    remove_volumes_takes_the_anonymous_volumes_and_never_a_named_one
);

fn without_remove_volumes_the_anonymous_volumes_stay_as_they_always_did() {
    let containers = Containers::new("keeps");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create_with(None, &["-v", "/anon"]);
    let anonymous = volume_at(&id, "/anon");
    containers.forget_volume_at_the_end(&anonymous);
    state.stopped("g-1", Some(&id), 8);

    let run = pass(&state, &[]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(record(&json, "g-1")["result"], "removed");
    let keys: Vec<&String> = record(&json, "g-1").as_object().unwrap().keys().collect();
    assert!(
        !keys
            .iter()
            .any(|key| *key == "volumes_removed" || *key == "size_rw_bytes"),
        "{keys:?}"
    );
    assert!(json.get("freed").is_none(), "{json}");
    assert!(!exists(&id));
    assert!(volume_exists(&anonymous), "v=false keeps it, dangling");
    let removals = removal_requests(&id);
    assert!(
        removals.len() == 1 && removals[0].contains("v=false"),
        "{removals:?}"
    );
}
on_each_engine!(without_remove_volumes_the_anonymous_volumes_stay_as_they_always_did);

fn a_volume_another_container_uses_stays_until_its_last_container_goes() {
    let containers = Containers::new("shared");
    let state = StateFile::new(Journal::Wal);
    let first = containers.create_with(None, &["-v", "/shared"]);
    let shared = volume_at(&first, "/shared");
    let second = containers.create_with(None, &["--volumes-from", &first]);
    assert_eq!(volume_at(&second, "/shared"), shared);
    state.stopped("g-first", Some(&first), 8);

    let dry = pass(&state, &["--dry-run", "--remove-volumes"]);
    dry.assert_code(0);
    assert_eq!(
        volumes_of(record(&dry.json(), "g-first")),
        BTreeSet::new(),
        "the other container uses it"
    );
    let real = pass(&state, &["--remove-volumes"]);
    real.assert_code(0);
    assert_eq!(record(&real.json(), "g-first")["result"], "removed");
    assert_eq!(volumes_of(record(&real.json(), "g-first")), BTreeSet::new());
    assert!(volume_exists(&shared), "the daemon keeps a volume in use");
    assert_eq!(volume_at(&second, "/shared"), shared);

    // Its last container: both engines remove the volume with it. Podman marks it anonymous,
    // and the dry run lists it; Docker's rule goes by the container's own configuration, which
    // says nothing of a volume it took from another container, so the dry run does not judge
    // it (null) rather than risk listing a volume named there.
    state.stopped("g-second", Some(&second), 8);
    let dry = pass(&state, &["--dry-run", "--remove-volumes"]);
    dry.assert_code(0);
    let predicted = record(&dry.json(), "g-second")["volumes_removed"].clone();
    if engine().is_podman() {
        assert_eq!(predicted, serde_json::json!([shared]));
    } else {
        assert_eq!(predicted, serde_json::Value::Null);
    }
    let real = pass(&state, &["--remove-volumes"]);
    real.assert_code(0);
    assert_eq!(
        record(&real.json(), "g-second")["volumes_removed"],
        serde_json::json!([shared]),
        "the real run reports what went"
    );
    assert!(!volume_exists(&shared));
}
on_each_engine!(a_volume_another_container_uses_stays_until_its_last_container_goes);

fn explain_says_what_the_dry_run_says_a_removal_would_free() {
    let containers = Containers::new("explain-space");
    let state = StateFile::new(Journal::Wal);
    let id = containers.run_to_exit(
        &["-v", "/anon"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=1 2>/dev/null",
        ],
    );
    let other = containers.create(&[]);
    state.stopped("g-1", Some(&id), 8);
    state.stopped("g-2", Some(&other), 9);
    let options = ["--measure-space", "--remove-volumes"];

    let dry = pass(&state, &[&["--dry-run"][..], &options].concat());
    dry.assert_code(0);
    let dry = dry.json();
    let state_path = state.path().to_str().unwrap().to_owned();
    let explained = run(&[
        &[
            "explain",
            "g-1",
            "--retention",
            "7d",
            "--state",
            &state_path,
            "--output",
            "json",
        ][..],
        &options,
    ]
    .concat());
    explained.assert_code(0);
    let game = &explained.json()["games"][0];
    assert_eq!(game["verdict"], "expired");
    assert_eq!(game["result"], "removed");
    for key in ["size_rw_bytes", "volumes_removed"] {
        assert_eq!(game[key], record(&dry, "g-1")[key], "{key}");
    }
    assert_eq!(
        game["volumes_removed"],
        serde_json::json!([volume_at(&id, "/anon")])
    );
    assert_eq!(
        daemon_log_lines(&format!("containers/{other}/json?size=true")).len(),
        1,
        "the dry run measured the other game's container; explain measures the named games' only"
    );
}
on_each_engine!(explain_says_what_the_dry_run_says_a_removal_would_free);

#[test]
fn a_plan_made_with_remove_volumes_removes_them_as_reviewed_and_one_made_without_refuses_it() {
    let containers = Containers::new("plan-volumes");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create_with(None, &["-v", "/anon"]);
    let anonymous = volume_at(&id, "/anon");
    state.stopped("g-1", Some(&id), 8);
    let dir = tempfile::tempdir().unwrap();

    let (plan, json) = plan_of(&state, dir.path(), &[]);
    assert!(json.get("remove_volumes").is_none(), "{json}");
    let refused = pass(&state, &["--apply-plan", &plan, "--remove-volumes"]);
    refused.assert_code(2);
    assert!(
        refused.stderr.contains("was made without --remove-volumes"),
        "{}",
        refused.stderr
    );
    assert!(exists(&id), "nothing was done");

    let (plan, json) = plan_of(&state, dir.path(), &["--remove-volumes"]);
    assert_eq!(json["remove_volumes"], true);
    assert_eq!(
        json["records"][0]["predicted_volumes"],
        serde_json::json!([anonymous])
    );
    // Applied without the option: the plan's applies, as reviewed.
    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(0);
    assert_eq!(
        record(&applied.json(), "g-1")["volumes_removed"],
        serde_json::json!([anonymous])
    );
    assert!(!exists(&id) && !volume_exists(&anonymous));
}

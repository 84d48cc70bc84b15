//! The files of `examples/` as an operator uses them: the settings of the environment file and
//! the arguments of the cron line are fed to the built binary, which must accept them and do a
//! real pass, and the sample JSON summary must have exactly the shape of docs/contract.md (the shape
//! a real run prints).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use clap::CommandFactory;
use rt_cleanup::cli::Arguments;
use serde_json::Value;

use crate::harness::{daemon, exists, run, run_with_env, Containers, Journal, StateFile};

/// The log filter is read by `main.rs` directly, not through clap, so it has no option twin.
const EXTRA_SETTINGS: &[&str] = &["RT_CLEANUP_LOG"];

/// The settings of the reviewed-plan workflow, which the environment file documents for runs
/// started by hand; a run of the timer never uses them.
const PLAN_SETTINGS: &[&str] = &["RT_CLEANUP_PLAN_OUT", "RT_CLEANUP_APPLY_PLAN"];

/// The settings that name a file: a test run keeps the file name but moves it into the test's
/// own directory, so that nothing outside it is read or written.
const PATH_SETTINGS: &[&str] = &[
    "RT_CLEANUP_STATE",
    "RT_CLEANUP_METRICS_FILE",
    "RT_CLEANUP_PLAN_OUT",
    "RT_CLEANUP_APPLY_PLAN",
];

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The settings of `examples/rt-cleanup.env` in file order: each `# NAME=value` line (the file
/// ships them commented out), uncommented, and any `NAME=value` line already active. Prose
/// comments never match, because a setting's name is upper case, digits and underscores.
fn env_settings() -> Vec<(String, String)> {
    example("rt-cleanup.env")
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            // systemd's EnvironmentFile= strips one pair of double quotes around a value.
            let value = value
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or(value);
            is_name.then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], name: &str) -> &'a str {
    settings.iter().find(|(key, _)| key == name).map_or_else(
        || panic!("examples/rt-cleanup.env has no {name}"),
        |(_, value)| value.as_str(),
    )
}

/// The environment file's settings as a test run needs them: files moved into the state file's
/// temp dir, `DOCKER_HOST` pointed at the test daemon, then `overrides` applied. Every other
/// value is used exactly as the file gives it.
fn test_environment(
    settings: &[(String, String)],
    state: &StateFile,
    overrides: &[(&str, &str)],
) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(name, value)| {
            let value = if let Some((_, value)) = overrides.iter().find(|(key, _)| key == name) {
                (*value).to_owned()
            } else if name == "RT_CLEANUP_STATE" {
                state.path().display().to_string()
            } else if PATH_SETTINGS.contains(&name.as_str()) {
                let file = Path::new(value).file_name().unwrap();
                state.dir().join(file).display().to_string()
            } else if name == "DOCKER_HOST" {
                daemon().host.clone()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

fn run_with_settings(environment: &[(String, String)]) -> crate::harness::Run {
    let environment: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // No arguments at all: the unit's ExecStart= is the bare binary.
    run_with_env(&[], &environment)
}

/// The settings a timer run uses: all of them but the plan workflow's.
fn timer_settings() -> Vec<(String, String)> {
    env_settings()
        .into_iter()
        .filter(|(name, _)| !PLAN_SETTINGS.contains(&name.as_str()))
        .collect()
}

/// A stopped record 30 days old (older than any sensible retention) whose container carries the
/// owner label the environment file names, as the runtime manager would have labelled it.
fn expired_game(containers: &Containers, state: &StateFile, label: &str, game: &str) -> String {
    let id = containers.create(&[(label, game)]);
    state.stopped(game, Some(&id), 30);
    id
}

#[test]
fn the_environment_file_documents_every_setting_once() {
    let settings = env_settings();
    let names: Vec<&str> = settings.iter().map(|(name, _)| name.as_str()).collect();
    let documented: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        documented.len(),
        names.len(),
        "a setting is listed twice: {names:?}"
    );
    let command = Arguments::command();
    let mut expected: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    expected.extend(EXTRA_SETTINGS.iter().map(|name| (*name).to_owned()));
    let documented: BTreeSet<String> = documented.into_iter().map(str::to_owned).collect();
    assert_eq!(
        documented, expected,
        "examples/rt-cleanup.env must list every environment variable of src/cli.rs (and \
         RT_CLEANUP_LOG), each as a commented `# NAME=value` line"
    );
    for (name, _) in &settings {
        let active = example("rt-cleanup.env")
            .lines()
            .any(|line| line.starts_with(&format!("{name}=")));
        assert!(
            !active,
            "{name} is set in the example; every setting ships commented out"
        );
    }
}

#[test]
fn the_environment_file_as_the_timer_runs_it_removes_an_expired_container() {
    let settings = timer_settings();
    assert_eq!(setting(&settings, "RT_CLEANUP_OUTPUT"), "text");
    let containers = Containers::new("examples-env-text");
    let state = StateFile::new(Journal::Wal);
    let label = setting(&settings, "RT_CLEANUP_OWNER_LABEL");
    let id = expired_game(&containers, &state, label, "g-env-text");

    let run = run_with_settings(&test_environment(&settings, &state, &[]));
    run.assert_code(0);

    assert!(!exists(&id), "the container is removed");
    assert_eq!(state.status("g-env-text"), "removed");
    let log = state.log("g-env-text");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].op_source, setting(&settings, "RT_CLEANUP_OP_SOURCE"));
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("g-env-text") && line.contains("removed")),
        "the text summary names the record and its result:\n{}",
        run.stdout
    );
    let metrics = Path::new(setting(&settings, "RT_CLEANUP_METRICS_FILE"))
        .file_name()
        .unwrap();
    assert!(
        state.dir().join(metrics).is_file(),
        "the metrics file is written"
    );
}

/// `rt-cleanup explain GAME` under the service's environment file reads the timer's settings
/// (its owner label, its cap, its orphan mode) and predicts what the timer's next run does.
#[test]
fn explain_under_the_environment_file_predicts_what_the_timer_does() {
    let settings = timer_settings();
    let containers = Containers::new("examples-env-explain");
    let state = StateFile::new(Journal::Rollback);
    let label = setting(&settings, "RT_CLEANUP_OWNER_LABEL");
    let id = expired_game(&containers, &state, label, "g-env-explain");
    let environment = test_environment(&settings, &state, &[("RT_CLEANUP_OUTPUT", "json")]);
    let pairs: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();

    let explained = run_with_env(&["explain", "g-env-explain"], &pairs);
    explained.assert_code(0);
    let json = explained.json();
    assert_eq!(json["owner_label"], label);
    assert_eq!(
        json["max_removals"].to_string(),
        setting(&settings, "RT_CLEANUP_MAX_REMOVALS")
    );
    assert_eq!(json["orphans"], setting(&settings, "RT_CLEANUP_ORPHANS"));
    let game = &json["games"][0];
    assert_eq!(game["verdict"], "expired", "{game}");
    assert!(exists(&id), "explain removes nothing");

    let timer = run_with_settings(&environment);
    timer.assert_code(0);
    assert_eq!(
        timer.result_of("g-env-explain"),
        game["result"].as_str().unwrap()
    );
    assert!(!exists(&id));
}

#[test]
fn the_environment_file_with_json_output_prints_the_contract_summary() {
    let settings = timer_settings();
    let containers = Containers::new("examples-env-json");
    let state = StateFile::new(Journal::Rollback);
    let label = setting(&settings, "RT_CLEANUP_OWNER_LABEL");
    let id = expired_game(&containers, &state, label, "g-env-json");

    let environment = test_environment(&settings, &state, &[("RT_CLEANUP_OUTPUT", "json")]);
    let run = run_with_settings(&environment);
    run.assert_code(0);

    assert!(!exists(&id), "the container is removed");
    assert_eq!(run.result_of("g-env-json"), "removed");
    let summary = run.json();
    check_summary_shape(&summary);
    let sample = sample_summary();
    // The environment file looks for orphans (report); none is older than its retention here,
    // so the run's orphan list is empty and has no item keys to compare.
    let without_orphan_items = |value: &Value| -> BTreeSet<String> {
        key_paths(value)
            .into_iter()
            .filter(|path| !path.starts_with("orphans[]"))
            .collect()
    };
    assert_eq!(
        without_orphan_items(&summary),
        without_orphan_items(&sample),
        "examples/summary.json and a real run's summary have the same keys"
    );
    assert_eq!(summary["orphans"], serde_json::json!([]), "{summary}");
}

#[test]
fn the_environment_file_plan_settings_review_then_apply_exactly_the_plan() {
    let settings = env_settings();
    let containers = Containers::new("examples-env-plan");
    let state = StateFile::new(Journal::Wal);
    let label = setting(&settings, "RT_CLEANUP_OWNER_LABEL");
    let id = expired_game(&containers, &state, label, "g-env-plan");

    let mut review = test_environment(&settings, &state, &[("RT_CLEANUP_DRY_RUN", "true")]);
    review.retain(|(name, _)| name != "RT_CLEANUP_APPLY_PLAN");
    run_with_settings(&review).assert_code(0);
    let plan = Path::new(setting(&settings, "RT_CLEANUP_PLAN_OUT"))
        .file_name()
        .unwrap();
    assert!(state.dir().join(plan).is_file(), "the dry run wrote a plan");
    assert!(exists(&id), "the dry run removed nothing");
    assert_eq!(state.status("g-env-plan"), "stopped");

    assert_eq!(
        Path::new(setting(&settings, "RT_CLEANUP_APPLY_PLAN")).file_name(),
        Some(plan),
        "the example applies the plan it writes"
    );
    let mut apply = test_environment(&settings, &state, &[]);
    apply.retain(|(name, _)| name != "RT_CLEANUP_PLAN_OUT");
    run_with_settings(&apply).assert_code(0);
    assert!(!exists(&id), "the applied plan removed the container");
    assert_eq!(state.status("g-env-plan"), "removed");
}

/// The command of the one job in `examples/cron` (`/etc/cron.d` format: five schedule fields,
/// the user, then the command).
fn cron_job() -> (String, String) {
    let text = example("cron");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@'))
        .collect();
    assert_eq!(jobs.len(), 1, "examples/cron has one job: {jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    assert!(fields.len() > 6, "{}", jobs[0]);
    (fields[5].to_owned(), fields[6..].join(" "))
}

/// The arguments the cron job gives rt-cleanup: the words after the binary, up to the first
/// shell operator or redirection.
fn cron_arguments(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let binary = words
        .iter()
        .position(|word| *word == "/usr/local/bin/rt-cleanup")
        .unwrap_or_else(|| panic!("the cron job runs /usr/local/bin/rt-cleanup: {command}"));
    words[binary + 1..]
        .iter()
        .take_while(|word| {
            !matches!(**word, "||" | "|" | "&&" | ";")
                && !word.starts_with(['>', '<'])
                && !word.starts_with("2>")
        })
        .map(|word| (*word).to_owned())
        .collect()
}

#[test]
fn the_cron_job_is_valid_shell_and_skips_overlapping_runs_with_flock() {
    let (user, command) = cron_job();
    assert_eq!(user, "rt-cleanup", "the job runs as the dedicated user");
    assert!(
        !command.contains('%'),
        "cron turns % into a newline: {command}"
    );
    assert!(
        command.contains("flock --nonblock") && command.contains("/run/lock/rt-cleanup.lock"),
        "the job takes the lock that skips overlapping runs: {command}"
    );
    let status = Command::new("sh")
        .args(["-n", "-c", &command])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "sh -n rejects the cron command: {command}"
    );
}

#[test]
fn the_cron_job_arguments_are_accepted_and_do_a_real_pass() {
    let (_, command) = cron_job();
    let mut arguments = cron_arguments(&command);
    assert!(
        arguments.iter().any(|argument| argument == "--retention"),
        "{arguments:?}"
    );
    let containers = Containers::new("examples-cron");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g-cron", Some(&id), 30);
    // The state file is the one thing a test must not share with the host: point --state (or a
    // new one) at the test's own file.
    let state_path = state.path().display().to_string();
    if let Some(at) = arguments.iter().position(|argument| argument == "--state") {
        arguments[at + 1].clone_from(&state_path);
    } else {
        arguments.extend(["--state".to_owned(), state_path]);
    }
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();

    let run = run(&arguments);
    run.assert_code(0);
    assert!(!exists(&id), "the container is removed");
    assert_eq!(state.status("g-cron"), "removed");
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("g-cron") && line.contains("removed")),
        "{}",
        run.stdout
    );
}

fn sample_summary() -> Value {
    serde_json::from_str(&example("summary.json"))
        .unwrap_or_else(|error| panic!("examples/summary.json is not JSON: {error}"))
}

#[test]
fn the_sample_summary_has_the_contract_shape() {
    check_summary_shape(&sample_summary());
}

/// Every key path of a JSON value (`counts.removed`, `records[].game_id`, …).
fn key_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, paths: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    paths.insert(path.clone());
                    walk(value, &path, paths);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}[]"), paths);
                }
            }
            _ => {}
        }
    }
    let mut paths = BTreeSet::new();
    walk(value, "", &mut paths);
    paths
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// An RFC 3339 UTC time with milliseconds (`2026-11-27T12:00:00.000Z`), as a point in time.
fn contract_time(value: &Value) -> SystemTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(
        text.len() == 24 && text.as_bytes()[19] == b'.' && text.ends_with('Z'),
        "{text} is not RFC 3339 UTC with milliseconds"
    );
    humantime::parse_rfc3339(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

const RESULTS: [&str; 5] = ["removed", "replay_no_op", "conflict", "failed", "deferred"];

/// Contract §5: the keys, the times, the counts and how they add up, and the records.
fn check_summary_shape(summary: &Value) {
    let mut expected = BTreeSet::from([
        "dry_run",
        "state",
        "retention_seconds",
        "threshold",
        "started_at",
        "finished_at",
        "counts",
        "records",
    ]);
    // Both present or both absent: absent when --orphans is off.
    if summary.get("orphans").is_some() || summary.get("orphan_counts").is_some() {
        expected.extend(["orphans", "orphan_counts"]);
        check_orphans(summary);
    }
    // The leases a real run keeps; a dry run takes none.
    if summary["dry_run"] == false {
        expected.insert("leases_kept");
        for lease in summary["leases_kept"].as_array().unwrap() {
            assert_eq!(keys(lease), BTreeSet::from(["game_id", "until"]), "{lease}");
            contract_time(&lease["until"]);
        }
    }
    assert_eq!(keys(summary), expected, "{summary}");
    assert!(summary["dry_run"].is_boolean());
    assert!(summary["state"].is_string());
    let retention = summary["retention_seconds"].as_u64().unwrap();
    assert!(retention > 0);
    let threshold = contract_time(&summary["threshold"]);
    let started = contract_time(&summary["started_at"]);
    let finished = contract_time(&summary["finished_at"]);
    assert_eq!(
        threshold + std::time::Duration::from_secs(retention),
        started,
        "threshold is the start minus the retention"
    );
    assert!(started <= finished);

    let counts = &summary["counts"];
    let mut count_keys = BTreeSet::from(["stopped", "expired"]);
    count_keys.extend(RESULTS);
    assert_eq!(keys(counts), count_keys, "{counts}");
    let count = |name: &str| counts[name].as_u64().unwrap();
    let expired = count("expired");
    assert_eq!(
        RESULTS.iter().map(|result| count(result)).sum::<u64>(),
        expired,
        "counts.expired is the sum of the five result counts: {counts}"
    );
    assert!(count("stopped") >= expired, "{counts}");

    let records = summary["records"].as_array().unwrap();
    assert_eq!(
        records.len() as u64,
        expired,
        "records lists every expired candidate"
    );
    let mut previous: Option<SystemTime> = None;
    for record in records {
        check_record(record, threshold);
        if !record["last_op_at"].is_null() {
            let at = contract_time(&record["last_op_at"]);
            assert!(
                previous.is_none_or(|previous| previous <= at),
                "oldest first"
            );
            previous = Some(at);
        }
    }
    for result in RESULTS {
        let listed = records
            .iter()
            .filter(|record| record["result"] == result)
            .count() as u64;
        assert_eq!(listed, count(result), "counts.{result} matches the records");
    }
}

/// The orphan section: each orphan's keys and result, and counts that match the list.
fn check_orphans(summary: &Value) {
    let orphans = summary["orphans"].as_array().unwrap();
    let counts = &summary["orphan_counts"];
    assert_eq!(
        keys(counts),
        BTreeSet::from(["found", "removed", "conflict", "failed", "deferred"]),
        "{counts}"
    );
    assert_eq!(counts["found"].as_u64().unwrap(), orphans.len() as u64);
    for orphan in orphans {
        assert_eq!(
            keys(orphan),
            BTreeSet::from([
                "container_id",
                "game_id",
                "state",
                "finished_at",
                "result",
                "error_code",
                "error_message",
            ]),
            "{orphan}"
        );
        assert!(
            orphan["finished_at"].is_null()
                || contract_time(&orphan["finished_at"]) > SystemTime::UNIX_EPOCH
        );
        let result = &orphan["result"];
        assert!(
            result.is_null()
                || ["removed", "conflict", "failed", "deferred"]
                    .contains(&result.as_str().unwrap()),
            "{orphan}"
        );
    }
    for result in ["removed", "conflict", "failed", "deferred"] {
        let listed = orphans
            .iter()
            .filter(|orphan| orphan["result"] == result)
            .count() as u64;
        assert_eq!(
            listed,
            counts[result].as_u64().unwrap(),
            "orphan_counts.{result}"
        );
    }
}

fn check_record(record: &Value, threshold: SystemTime) {
    assert_eq!(
        keys(record),
        BTreeSet::from([
            "game_id",
            "container_id",
            "last_op_at",
            "result",
            "error_code",
            "error_message",
        ]),
        "{record}"
    );
    assert!(record["game_id"].is_string(), "{record}");
    assert!(
        record["container_id"].is_string() || record["container_id"].is_null(),
        "{record}"
    );
    if !record["last_op_at"].is_null() {
        assert!(
            contract_time(&record["last_op_at"]) < threshold,
            "a listed record expired: {record}"
        );
    }
    let result = record["result"].as_str().unwrap();
    let error_code = record["error_code"].as_str();
    let expected_codes: &[Option<&str>] = match result {
        "removed" | "deferred" => &[None],
        "replay_no_op" => &[Some("replay_no_op")],
        "conflict" => &[Some("conflict")],
        "failed" => &[
            Some("container_running"),
            Some("docker_error"),
            Some("ownership_mismatch"),
            Some("invalid_record"),
        ],
        other => panic!("{other} is not a result of docs/contract.md: {record}"),
    };
    assert!(
        expected_codes.contains(&error_code),
        "error_code of a {result} record: {record}"
    );
    assert!(
        record["error_message"].is_string() || record["error_message"].is_null(),
        "{record}"
    );
}

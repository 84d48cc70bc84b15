//! Contract §1's lease protocol where it meets odd values and odd neighbours: leases whose
//! columns hold what the schema did not mean them to (one rule, shared by the dry run and the
//! real run, decides whether a lease is in force), two runs that share a hostname and a pid
//! (each run's holder name is its own), and a record changed in one column under the lease
//! while its removal is in flight (each of the compare-and-set's conditions on its own). Each
//! test of the first two failed on the build before its fix (run them against another build
//! with `RT_CLEANUP_TEST_BINARY`); each of the last three fails on a build whose
//! compare-and-set lacks its one condition (docs/fault-suite.md, "Mutation testing").

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::types::Value;

use crate::harness::{
    command_as_pid_1, exists, now_ms, pass, pass_args, spawn_pass, Containers, FaultProxy, Journal,
    Match, Run, Spawned, StateFile,
};

/// Every record of a JSON summary as `game_id -> (result, error_message)`.
fn results(run: &Run) -> BTreeMap<String, (String, Option<String>)> {
    run.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            (
                record["game_id"].as_str().unwrap().to_owned(),
                (
                    record["result"].as_str().unwrap().to_owned(),
                    record["error_message"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect()
}

/// Every lease row as SQLite quotes its values: `(game_id, holder, expires_at)`.
fn lease_rows(state: &StateFile) -> Vec<(String, String, String)> {
    let connection = state.connect();
    let mut statement = connection
        .prepare("SELECT game_id, quote(holder), quote(expires_at) FROM game_leases ORDER BY 1")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Stopped records without a container, each leased with odd values in a `game_leases` that
/// declares no types: returns, per game, the result a real run must give it now.
fn records_with_odd_leases(state: &StateFile) -> BTreeMap<String, String> {
    state.loosen_leases();
    let now = now_ms();
    let hour = 3_600_000;
    let manager = || Value::Text("rtmanager".to_owned());
    let leases: [(&str, Value, Value, &str); 9] = [
        (
            "int-past",
            manager(),
            Value::Integer(now - 60_000),
            "replay_no_op",
        ),
        (
            "int-future",
            manager(),
            Value::Integer(now + hour),
            "conflict",
        ),
        ("null-expiry", manager(), Value::Null, "conflict"),
        (
            "text-expiry",
            manager(),
            Value::Text("soon".to_owned()),
            "conflict",
        ),
        ("blob-expiry", manager(), Value::Blob(vec![1]), "conflict"),
        (
            "real-past",
            manager(),
            Value::Real((now - 60_000) as f64 + 0.5),
            "replay_no_op",
        ),
        (
            "real-future",
            manager(),
            Value::Real((now + hour) as f64 + 0.5),
            "conflict",
        ),
        (
            "null-holder",
            Value::Null,
            Value::Integer(now + hour),
            "conflict",
        ),
        (
            "holder-newline",
            Value::Text("evil\nERROR forged line".to_owned()),
            Value::Integer(now + hour),
            "conflict",
        ),
    ];
    for (game, holder, expires_at, _) in &leases {
        state.stopped(game, None, 8);
        state.lease_of_values(game, holder, expires_at);
    }
    leases
        .iter()
        .map(|(game, _, _, result)| ((*game).to_owned(), (*result).to_owned()))
        .collect()
}

in_both_journal_modes!(the_dry_run_and_the_real_run_agree_on_leases_with_odd_values);
fn the_dry_run_and_the_real_run_agree_on_leases_with_odd_values(journal: Journal) {
    let state = StateFile::new(journal);
    let expected = records_with_odd_leases(&state);
    let in_force_before: Vec<_> = lease_rows(&state)
        .into_iter()
        .filter(|(game, _, _)| expected[game] == "conflict")
        .collect();

    let dry = pass(&state, &["--dry-run"]);
    dry.assert_code(0);
    let real = pass(&state, &[]);
    real.assert_code(0);
    let (predicted, given) = (results(&dry), results(&real));
    let kinds = |results: &BTreeMap<String, (String, Option<String>)>| -> BTreeMap<String, String> {
        results
            .iter()
            .map(|(game, (result, _))| (game.clone(), result.clone()))
            .collect()
    };
    assert_eq!(kinds(&given), expected, "the real run");
    assert_eq!(
        kinds(&predicted),
        expected,
        "the dry run predicts the real run"
    );
    assert_eq!(predicted, given, "with the same messages");

    let message = |game: &str| given[game].1.clone().unwrap();
    assert_eq!(
        message("null-expiry"),
        "the game is leased by \"rtmanager\" with an expires_at that is not a time, so it \
         never expires; only its holder can release it"
    );
    assert!(
        message("null-holder").starts_with("the game is leased by NULL until "),
        "{}",
        message("null-holder")
    );
    assert!(
        message("holder-newline")
            .starts_with("the game is leased by \"evil\\nERROR forged line\" until "),
        "the holder is a value of the state file, shown escaped: {}",
        message("holder-newline")
    );
    for run in [&dry, &real] {
        assert!(
            !run.stdout.contains("\nERROR forged") && !run.stderr.contains("\nERROR forged"),
            "no line is forged by a holder:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert_eq!(
        lease_rows(&state),
        in_force_before,
        "the leases in force are untouched; the free ones were taken and released"
    );
}

/// Runs a real pass as process 1 of a pid namespace of its own (as a run in a container is),
/// against `docker_host`, in the background.
fn spawn_as_pid_1(state: &StateFile, docker_host: &str) -> Spawned {
    let args = pass_args(state, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = command_as_pid_1(&args);
    command.env("DOCKER_HOST", docker_host);
    Spawned::start(command)
}

in_both_journal_modes!(two_runs_with_one_hostname_and_one_pid_never_share_a_lease);
/// Two runs on hosts of one name, each pid 1 (containers): the first's removal hangs past its
/// lease, the second takes the expired lease over and starts its own removal. When the first
/// one's removal returns, its compare-and-set must not accept the second's lease, nor its
/// release delete it.
fn two_runs_with_one_hostname_and_one_pid_never_share_a_lease(journal: Journal) {
    let containers = Containers::new("holder-unique");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    let first_gate = FaultProxy::holding(Match::removal());
    let second_gate = FaultProxy::holding(Match::removal());
    let wait = Duration::from_secs(30);

    let first = spawn_as_pid_1(&state, &first_gate.host());
    assert!(
        first_gate.wait_held(1, wait),
        "the first run reaches its removal"
    );
    let first_holder = state.leases()[0].1.clone();
    // The first run's lease runs out while its removal hangs.
    assert_eq!(state.expire_own_leases(), 1);
    let second = spawn_as_pid_1(&state, &second_gate.host());
    assert!(
        second_gate.wait_held(1, wait),
        "the second run takes the expired lease over and reaches its removal"
    );
    let second_holder = state.leases()[0].1.clone();
    assert_ne!(
        first_holder, second_holder,
        "two runs with one hostname and one pid have holder names of their own"
    );

    first_gate.open();
    let first = first.wait(Duration::from_secs(60));
    first.assert_code(0);
    assert_eq!(first.result_of("g"), "conflict");
    assert_eq!(state.status("g"), "stopped", "the first run moved nothing");
    let leases = state.leases();
    assert_eq!(
        leases.len(),
        1,
        "the second run's lease is kept: {leases:?}"
    );
    assert_eq!(leases[0].1, second_holder);

    second_gate.open();
    let second = second.wait(Duration::from_secs(60));
    second.assert_code(0);
    assert_eq!(second.result_of("g"), "replay_no_op");
    assert_eq!(state.status("g"), "removed");
    assert!(state.leases().is_empty());
    let codes: Vec<Option<String>> = state
        .log("g")
        .into_iter()
        .map(|row| row.error_code)
        .collect();
    assert_eq!(
        codes,
        [Some("conflict".to_owned()), Some("replay_no_op".to_owned())]
    );
}

/// A real pass whose removal of game `g`'s container the proxy holds while a runtime manager
/// that ignores the lease changes the record by `change` (an SQL `SET` list): the removal goes
/// through, but the record must not move to `removed`. The result is a `conflict` that says the
/// record changed, with one `conflict` row; the record is left exactly as the manager wrote it;
/// the lease, still this run's, is released.
fn a_record_changed_during_its_removal_is_left_as_it_is(journal: Journal, change: &str) {
    let containers = Containers::new("one-column-changed");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    let gate = FaultProxy::holding(Match::removal());
    let running = spawn_pass(&state, &gate.host(), &[]);
    assert!(
        gate.wait_held(1, Duration::from_secs(20)),
        "{journal:?}: the removal is asked for within 20 s"
    );
    let leases = state.leases();
    assert!(
        leases.len() == 1 && leases[0].1.starts_with("rt-cleanup/"),
        "{journal:?}: the removal is under this run's lease: {leases:?}"
    );
    let updated = state
        .connect()
        .execute(
            &format!("UPDATE runtime_records SET {change} WHERE game_id = 'g'"),
            [],
        )
        .unwrap();
    assert_eq!(updated, 1);
    let changed = state.record("g").unwrap();
    gate.open();
    let run = running.wait(Duration::from_secs(60));

    run.assert_code(0);
    assert_eq!(
        results(&run)["g"],
        (
            "conflict".to_owned(),
            Some(
                "the record changed while its container was being handled; it was left as it is"
                    .to_owned()
            )
        ),
        "{journal:?} {change}"
    );
    assert!(
        !exists(&id),
        "{journal:?}: the removal, sent before the change, went through"
    );
    assert_eq!(
        state.record("g").unwrap(),
        changed,
        "{journal:?} {change}: the record is as the manager left it, not removed"
    );
    let log = state.log("g");
    assert_eq!(log.len(), 1, "{journal:?}: {log:?}");
    assert_eq!(
        (
            log[0].op_kind.as_str(),
            log[0].outcome.as_str(),
            log[0].error_code.as_deref(),
            log[0].container_id.as_deref()
        ),
        (
            "cleanup_container",
            "success",
            Some("conflict"),
            Some(id.as_str())
        ),
        "{journal:?}"
    );
    assert!(
        state.leases().is_empty(),
        "{journal:?}: the lease is released"
    );
    assert_eq!(state.integrity(), "ok");
}

in_both_journal_modes!(a_record_restarted_during_its_removal_is_left_as_it_is);
/// Only `status`: the game was started again (its container, removed meanwhile, is the manager's
/// to recreate).
fn a_record_restarted_during_its_removal_is_left_as_it_is(journal: Journal) {
    a_record_changed_during_its_removal_is_left_as_it_is(journal, "status = 'running'");
}

in_both_journal_modes!(a_record_stopped_again_during_its_removal_is_left_as_it_is);
/// Only `last_op_at`: the manager recorded another operation; the record is still stopped and
/// still expired.
fn a_record_stopped_again_during_its_removal_is_left_as_it_is(journal: Journal) {
    a_record_changed_during_its_removal_is_left_as_it_is(journal, "last_op_at = last_op_at + 1");
}

in_both_journal_modes!(a_record_given_another_container_during_its_removal_is_left_as_it_is);
/// Only `container_id`: the record now names another container; still stopped, same
/// `last_op_at`.
fn a_record_given_another_container_during_its_removal_is_left_as_it_is(journal: Journal) {
    a_record_changed_during_its_removal_is_left_as_it_is(
        journal,
        "container_id = 'another-container'",
    );
}

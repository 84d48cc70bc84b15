//! docs/fault-suite.md: the pass survives crashes, signals, Docker faults, races with the runtime manager,
//! concurrent runs, locks and failing storage, with nothing lost.
//!
//! Every case checks the same invariants against the real daemon and the real state file:
//!
//! * no record is `removed` while its container exists;
//! * no container is removed unless its record was stopped and expired;
//! * the `operation_log` never claims a removal that did not happen, and claims each at most once;
//! * `PRAGMA integrity_check` is ok;
//! * after a clean run, every expired record is `removed` and its container is gone.
//!
//! To act at an exact point of a pass, the tests put a [`FaultProxy`] between rt-cleanup and the daemon
//! that holds a chosen request (the removal, or the container listing that follows the
//! selection) until the test has done its part. Cases that freeze or kill a daemon use a
//! [`PrivateDaemon`] of their own, never the shared one.
//!
//! These run on Docker only: the private daemons they freeze, kill and restart are dockerds
//! (`scripts/test-daemon.sh`), and their invariants are about rt-cleanup and the state file, not
//! about the engine. What differs between engines is pinned in `contract.rs`, on both.

mod soak;
mod timing;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use rusqlite::types::Value;

use crate::harness::{
    daemon, days_ago, docker, existing_on_test_daemon, now_ms, pass, removal_claim_violations,
    rfc3339_ms, spawn_pass, Containers, Fault, FaultProxy, Immutable, Journal, Match,
    PrivateDaemon, Rng, Run, Spawned, StateFile, Which, OWNER_LABEL,
};

/// How long a test waits for a pass to reach a gated request before it gives up.
const REACH: Duration = Duration::from_secs(20);

/// A record a test made, and what it knows of it.
#[derive(Debug, Clone)]
struct Game {
    id: String,
    container: String,
    /// Stopped and older than the retention when it was made: a container rt-cleanup may remove.
    candidate: bool,
}

/// Runs a JSON pass over the state file against `host` and waits for it.
fn pass_via(state: &StateFile, host: &str, extra: &[&str]) -> Run {
    spawn_pass(state, host, extra).wait(Duration::from_secs(60))
}

/// Checks the invariants of the module over the games a test made; `existing` holds the ids of
/// the containers that exist now: those of [`removal_claim_violations`], no container is gone
/// unless its record was an expired stopped one, and the file's integrity.
fn assert_invariants(state: &StateFile, games: &[Game], existing: &HashSet<String>, when: &str) {
    let made = games
        .iter()
        .map(|game| (game.id.as_str(), game.container.as_str()));
    let violations = removal_claim_violations(state, made, existing);
    assert!(violations.is_empty(), "{when}: {violations:#?}");
    for game in games {
        assert!(
            game.candidate || existing.contains(&game.container),
            "{when}: the container of {} was removed but it was never an expired stopped record",
            game.id
        );
    }
    assert_eq!(state.integrity(), "ok", "{when}: integrity_check");
}

/// Checks that a clean run finished the job: every candidate removed and its container gone,
/// every other record and container untouched, no lease left.
fn assert_all_done(state: &StateFile, games: &[Game], existing: &HashSet<String>) {
    assert_invariants(state, games, existing, "after the clean run");
    for game in games {
        if game.candidate {
            assert_eq!(state.status(&game.id), "removed", "{}", game.id);
            assert!(!existing.contains(&game.container), "{}", game.id);
        } else {
            assert_ne!(state.status(&game.id), "removed", "{}", game.id);
            assert!(existing.contains(&game.container), "{}", game.id);
        }
    }
    assert!(
        state.leases().is_empty(),
        "leases left: {:?}",
        state.leases()
    );
}

/// Makes `count` expired stopped records, each with a container on the shared daemon, in the
/// order a pass takes them (the first is the oldest).
fn expired_games(
    state: &StateFile,
    containers: &Containers,
    prefix: &str,
    count: usize,
) -> Vec<Game> {
    (0..count)
        .map(|index| {
            let id = format!("{prefix}-{index:02}");
            let container = containers.create(&[(OWNER_LABEL, &id)]);
            let last_op_at = days_ago(9) + index as i64 * 1000;
            state.insert(&id, Some(&container), "stopped", &last_op_at);
            Game {
                id,
                container,
                candidate: true,
            }
        })
        .collect()
}

/// Records that are not candidates, whose containers must survive every run: a recent stopped
/// record, a running game and a record in an unknown state.
fn bystanders(state: &StateFile, containers: &Containers, prefix: &str) -> Vec<Game> {
    let recent = containers.create(&[]);
    state.stopped(&format!("{prefix}-recent"), Some(&recent), 1);
    let running = containers.run(&[]);
    state.insert(
        &format!("{prefix}-running"),
        Some(&running),
        "running",
        &1_i64,
    );
    let creating = containers.create(&[]);
    state.insert(
        &format!("{prefix}-creating"),
        Some(&creating),
        "creating",
        &1_i64,
    );
    vec![
        Game {
            id: format!("{prefix}-recent"),
            container: recent,
            candidate: false,
        },
        Game {
            id: format!("{prefix}-running"),
            container: running,
            candidate: false,
        },
        Game {
            id: format!("{prefix}-creating"),
            container: creating,
            candidate: false,
        },
    ]
}

// ------------------------------------------------------------------------------------------------
// 1. Crashes
// ------------------------------------------------------------------------------------------------

/// SIGKILLs that land on a live pass, per journal mode; 20 in all.
const KILLS_PER_MODE: usize = 10;

/// Fresh candidates added before each attempt, so that every kill can land among removals.
const FRESH_PER_ATTEMPT: usize = 4;

fn sigkill_at_random_moments_loses_nothing(journal: Journal) {
    let mut rng = Rng::seeded(&format!("sigkill {journal:?}"));
    let containers = Containers::new("sigkill");
    let state = StateFile::new(journal);
    let mut games = expired_games(&state, &containers, "g-init", 8);
    games.extend(bystanders(&state, &containers, "g-by"));
    let (mut kills, mut attempts, mut holding_leases, mut after_results) = (0, 0, 0, 0);
    // A kill that comes after the pass already ended proves nothing, so attempts go on until
    // enough kills landed on a live process (with a bound, so that a pass that never runs long
    // enough fails instead of looping).
    // Kills come at a random moment up to this many milliseconds after the start; a kill that
    // misses the pass lowers it, so that a faster machine still gets its kills in.
    let mut ceiling = 300;
    while kills < KILLS_PER_MODE {
        attempts += 1;
        assert!(
            attempts <= KILLS_PER_MODE * 5,
            "only {kills} of {attempts} kills landed on a live pass; passes end too fast"
        );
        let prefix = format!("g-a{attempts:02}");
        games.extend(expired_games(
            &state,
            &containers,
            &prefix,
            FRESH_PER_ATTEMPT,
        ));
        let concurrency = rng.between(1, 4).to_string();
        let delay = Duration::from_millis(rng.between(0, ceiling));
        let before = state.all_log().len();
        let running = spawn_pass(&state, &daemon().host, &["--concurrency", &concurrency]);
        let holder_suffix = format!("/{}", running.pid());
        std::thread::sleep(delay);
        let run = running.kill();
        if run.code.is_some() {
            // The pass had already finished: not a crash.
            ceiling = (ceiling * 3 / 4).max(40);
            continue;
        }
        kills += 1;
        let logged = state.all_log().len() - before;
        let leases = state
            .leases()
            .iter()
            .filter(|(_, holder, _)| holder.ends_with(&holder_suffix))
            .count();
        holding_leases += usize::from(leases > 0);
        after_results += usize::from(logged > 0);
        println!(
            "{journal:?} kill {kills}: after {delay:?} (concurrency {concurrency}), {logged} \
             results written, {leases} of its leases left behind"
        );
        let when = format!("kill {kills}");
        assert_invariants(&state, &games, &existing_on_test_daemon(), &when);
    }
    println!(
        "{journal:?}: {kills} kills of a live pass in {attempts} attempts; {holding_leases} left \
         leases behind, {after_results} came after some results were written"
    );

    // The leases the killed runs left are what a later run must wait out.
    let expired = state.expire_own_leases();
    let clean = pass(&state, &[]);
    clean.assert_code(0);
    println!(
        "{journal:?}: {expired} leases expired, {} records, clean run: {}",
        games.len(),
        clean.json()["counts"]
    );
    assert_all_done(&state, &games, &existing_on_test_daemon());
}

#[test]
fn sigkill_at_random_moments_loses_nothing_rollback_journal() {
    sigkill_at_random_moments_loses_nothing(Journal::Rollback);
}

#[test]
fn sigkill_at_random_moments_loses_nothing_wal() {
    sigkill_at_random_moments_loses_nothing(Journal::Wal);
}

// ------------------------------------------------------------------------------------------------
// 2. Signals
// ------------------------------------------------------------------------------------------------

fn a_signal_mid_pass_finishes_the_removals_in_flight_and_defers_the_rest(
    signal: &str,
    code: i32,
    in_flight: usize,
) {
    let containers = Containers::new("signal");
    let state = StateFile::new(Journal::Wal);
    let games = expired_games(&state, &containers, "g-sig", 6);
    let gate = FaultProxy::holding(Match::removal());
    let concurrency = in_flight.to_string();
    let running = spawn_pass(&state, &gate.host(), &["--concurrency", &concurrency]);
    assert!(
        gate.wait_held(in_flight, REACH),
        "the pass never sent {in_flight} removals (held {})",
        gate.held()
    );

    let signalled = Instant::now();
    running.signal(signal);
    assert!(
        running.wait_for_stderr(&format!("received SIG{signal}"), Duration::from_secs(5)),
        "rt-cleanup did not notice SIG{signal}"
    );
    gate.open();
    let run = running.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    println!("SIG{signal}: exit {:?} {took:?} after the signal", run.code);

    run.assert_code(code);
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} after SIG{signal}"
    );
    let json = run.json();
    assert_eq!(json["counts"]["removed"], in_flight, "{json}");
    assert_eq!(
        json["counts"]["deferred"],
        games.len() - in_flight,
        "{json}"
    );
    assert_eq!(json["counts"]["expired"], games.len(), "{json}");
    let existing = existing_on_test_daemon();
    for game in &games {
        match run.result_of(&game.id).as_str() {
            "removed" => {
                assert!(!existing.contains(&game.container));
                assert_eq!(state.status(&game.id), "removed");
                assert_eq!(
                    state.log(&game.id).len(),
                    1,
                    "the in-flight removal is recorded"
                );
            }
            "deferred" => {
                assert!(existing.contains(&game.container));
                assert_eq!(state.status(&game.id), "stopped");
                assert!(state.log(&game.id).is_empty(), "a deferral is not logged");
            }
            other => panic!("{}: {other}", game.id),
        }
    }
    assert!(
        state.leases().is_empty(),
        "no lease left: {:?}",
        state.leases()
    );
    assert_invariants(&state, &games, &existing, "after the signal");
}

#[test]
fn sigterm_mid_pass_exits_143_after_finishing_the_removal_in_flight() {
    a_signal_mid_pass_finishes_the_removals_in_flight_and_defers_the_rest("TERM", 143, 1);
}

#[test]
fn sigint_mid_pass_exits_130_after_finishing_the_removals_in_flight() {
    a_signal_mid_pass_finishes_the_removals_in_flight_and_defers_the_rest("INT", 130, 2);
}

// ------------------------------------------------------------------------------------------------
// 3. Docker faults
// ------------------------------------------------------------------------------------------------

#[test]
fn a_frozen_then_killed_daemon_fails_records_with_docker_error_and_a_later_run_finishes() {
    let private = PrivateDaemon::start();
    let state = StateFile::new(Journal::Rollback);
    let games: Vec<Game> = (0..6)
        .map(|index| {
            let id = format!("g-frozen-{index}");
            let container = private.create(&[]);
            state.insert(
                &id,
                Some(&container),
                "stopped",
                &(days_ago(9) + index * 1000),
            );
            Game {
                id,
                container,
                candidate: true,
            }
        })
        .collect();
    let gate = FaultProxy::new(&private.socket()).with(Match::removal(), Which::Every, Fault::Hold);
    let running = spawn_pass(
        &state,
        &gate.host(),
        &[
            "--docker-timeout",
            "1s",
            "--lock-wait",
            "1s",
            "--concurrency",
            "2",
        ],
    );
    // Both first removals wait at the proxy; they reach the daemon only once it is frozen.
    assert!(gate.wait_held(2, REACH), "the pass never sent its removals");
    private.freeze();
    gate.open();
    // Long enough for the first calls to time out against the frozen daemon, then it dies.
    std::thread::sleep(Duration::from_millis(1500));
    private.kill();
    let run = running.wait(Duration::from_secs(30));

    assert_eq!(run.code, Some(1), "non-zero exit\nstderr:\n{}", run.stderr);
    let json = run.json();
    assert_eq!(json["counts"]["failed"], games.len(), "{json}");
    let records = json["records"].as_array().unwrap();
    let timed_out = records
        .iter()
        .filter(|r| {
            r["error_message"]
                .as_str()
                .unwrap_or("")
                .contains("no answer within 1s")
        })
        .count();
    assert!(
        timed_out >= 2,
        "the per-call timeout fired for the frozen calls: {json}"
    );
    for record in records {
        assert_eq!(record["error_code"], "docker_error", "{record}");
    }
    for game in &games {
        assert_eq!(state.status(&game.id), "stopped");
        let log = state.log(&game.id);
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].outcome.as_str(), log[0].error_code.as_deref()),
            ("failure", Some("docker_error"))
        );
    }
    // Every removal was sent (to the frozen daemon, or on a connection that broke) and never
    // answered: each game keeps its lease until it expires, and the summary names it.
    assert_eq!(
        json["leases_kept"].as_array().map(Vec::len),
        Some(games.len()),
        "{json}"
    );
    let leases = state.leases();
    assert_eq!(leases.len(), games.len(), "{leases:?}");
    assert!(leases
        .iter()
        .all(|(_, holder, _)| holder.starts_with("rt-cleanup/")));

    private.restart();
    let existing: HashSet<String> = games
        .iter()
        .filter(|game| private.exists(&game.container))
        .map(|game| game.container.clone())
        .collect();
    assert_eq!(
        existing.len(),
        games.len(),
        "no container was removed by the frozen daemon"
    );
    assert_invariants(&state, &games, &existing, "after the daemon died");

    state.expire_own_leases();
    let later = pass_via(&state, &private.host, &["--docker-timeout", "5s"]);
    later.assert_code(0);
    assert_eq!(later.json()["counts"]["removed"], games.len());
    let existing: HashSet<String> = games
        .iter()
        .filter(|game| private.exists(&game.container))
        .map(|game| game.container.clone())
        .collect();
    assert_all_done(&state, &games, &existing);
}

// ------------------------------------------------------------------------------------------------
// 4. Races with the runtime manager
// ------------------------------------------------------------------------------------------------

#[test]
fn changes_by_the_runtime_manager_between_selection_and_removal_are_conflicts() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("race");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-race", 4);
        let [restarted, leased, touched, plain] = [0, 1, 2, 3].map(|i| games[i].clone());
        // With --owner-label the pass lists the containers right after the selection and before
        // it takes any lease: holding that listing holds the pass between the two.
        let gate = FaultProxy::holding(Match::listing());
        let running = spawn_pass(&state, &gate.host(), &["--owner-label", OWNER_LABEL]);
        assert!(
            gate.wait_held(1, REACH),
            "the pass never listed the containers"
        );

        let manager = state.connect();
        manager
            .execute(
                "UPDATE runtime_records SET status = 'running', last_op_at = ?1 WHERE game_id = ?2",
                rusqlite::params![now_ms(), restarted.id],
            )
            .unwrap();
        docker(&["start", &restarted.container]);
        let lease_until = now_ms() + 3_600_000;
        state.lease(&leased.id, "rtmanager/host-b/42", lease_until);
        manager
            .execute(
                "UPDATE runtime_records SET last_op_at = last_op_at + 1 WHERE game_id = ?1",
                [&touched.id],
            )
            .unwrap();
        gate.open();
        let run = running.wait(Duration::from_secs(30));

        run.assert_code(0);
        for game in [&restarted, &leased, &touched] {
            assert_eq!(
                run.result_of(&game.id),
                "conflict",
                "{journal:?} {}",
                game.id
            );
            let log = state.log(&game.id);
            assert_eq!(log.len(), 1);
            assert_eq!(log[0].error_code.as_deref(), Some("conflict"));
        }
        assert_eq!(run.result_of(&plain.id), "removed");
        assert_eq!(
            crate::harness::container_state(&restarted.container).as_deref(),
            Some("running"),
            "the restarted game keeps its running container"
        );
        assert_eq!(state.status(&restarted.id), "running");
        assert_eq!(state.status(&touched.id), "stopped");
        assert_eq!(
            state.leases(),
            [(
                leased.id.clone(),
                "rtmanager/host-b/42".to_owned(),
                lease_until
            )],
            "the other holder's lease is untouched and ours are released"
        );
        let existing = existing_on_test_daemon();
        for game in [&restarted, &leased, &touched] {
            assert!(existing.contains(&game.container), "{}", game.id);
        }
        assert_invariants(&state, &games, &existing, "after the race");
    }
}

#[test]
fn a_game_restarted_while_its_removal_is_in_flight_is_refused_by_docker() {
    let containers = Containers::new("race-late");
    let state = StateFile::new(Journal::Rollback);
    let games = expired_games(&state, &containers, "g-late", 1);
    let game = &games[0];
    let removal = FaultProxy::holding(Match::removal());
    let running = spawn_pass(&state, &removal.host(), &[]);
    assert!(
        removal.wait_held(1, REACH),
        "the pass never sent the removal"
    );

    // A runtime manager that ignores the lease restarts the game while the removal is on its
    // way: Docker's refusal to remove a running container is the last guard.
    state
        .connect()
        .execute(
            "UPDATE runtime_records SET status = 'running', last_op_at = ?1 WHERE game_id = ?2",
            rusqlite::params![now_ms(), game.id],
        )
        .unwrap();
    docker(&["start", &game.container]);
    removal.open();
    let run = running.wait(Duration::from_secs(30));

    run.assert_code(1);
    let json = run.json();
    assert_eq!(json["records"][0]["result"], "failed", "{json}");
    assert_eq!(
        json["records"][0]["error_code"], "container_running",
        "{json}"
    );
    assert_eq!(
        crate::harness::container_state(&game.container).as_deref(),
        Some("running")
    );
    assert_eq!(state.status(&game.id), "running");
    assert!(state.leases().is_empty());
    assert_invariants(
        &state,
        &games,
        &existing_on_test_daemon(),
        "after the late restart",
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Concurrency
// ------------------------------------------------------------------------------------------------

/// Rounds of four simultaneous runs per journal mode.
const CONCURRENT_ROUNDS: usize = 2;

#[test]
fn four_runs_at_once_remove_and_log_each_container_exactly_once() {
    for journal in [Journal::Rollback, Journal::Wal] {
        for round in 0..CONCURRENT_ROUNDS {
            let containers = Containers::new("four-runs");
            let state = StateFile::new(journal);
            let mut games = expired_games(&state, &containers, "g-four", 16);
            games.extend(bystanders(&state, &containers, "g-by"));
            let runs: Vec<Spawned> = (0..4)
                .map(|index| {
                    let concurrency = (1 + index % 4).to_string();
                    spawn_pass(&state, &daemon().host, &["--concurrency", &concurrency])
                })
                .collect();
            let runs: Vec<Run> = runs
                .into_iter()
                .map(|running| running.wait(Duration::from_secs(60)))
                .collect();

            let when = format!("{journal:?} round {round}");
            for run in &runs {
                run.assert_code(0);
            }
            let existing = existing_on_test_daemon();
            assert_all_done(&state, &games, &existing);
            for game in games.iter().filter(|game| game.candidate) {
                // A run that started after the record was removed did not select it at all.
                let results: Vec<String> = runs
                    .iter()
                    .filter_map(|run| result_in(run, &game.id))
                    .collect();
                let removed_by = results.iter().filter(|r| *r == "removed").count();
                assert_eq!(removed_by, 1, "{when}: {} removed by {results:?}", game.id);
                let log = state.log(&game.id);
                assert_eq!(
                    log.len(),
                    results.len(),
                    "{when}: one row per run that selected it"
                );
                assert!(
                    log.iter().all(|row| row.error_code.is_none()
                        || row.error_code.as_deref() == Some("conflict")),
                    "{when}: {log:?}"
                );
            }
        }
    }
}

/// A game's result in a run's JSON summary, if the run selected it.
fn result_in(run: &Run, game: &str) -> Option<String> {
    run.json()["records"]
        .as_array()?
        .iter()
        .find(|record| record["game_id"] == game)
        .map(|record| record["result"].as_str().unwrap_or_default().to_owned())
}

// ------------------------------------------------------------------------------------------------
// 6. Locks and storage
// ------------------------------------------------------------------------------------------------

/// Starts a pass through a proxy that holds its first removal, with one candidate.
fn hold_first_removal(state: &StateFile, games: &[Game], extra: &[&str]) -> (FaultProxy, Spawned) {
    assert!(!games.is_empty());
    let gate = FaultProxy::holding(Match::removal());
    let mut args = vec!["--concurrency", "1"];
    args.extend_from_slice(extra);
    let running = spawn_pass(state, &gate.host(), &args);
    assert!(gate.wait_held(1, REACH), "the pass never sent a removal");
    (gate, running)
}

#[test]
fn a_writer_holding_the_state_file_mid_pass_for_a_few_seconds_is_waited_out() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("lock-short");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-lock", 3);
        let (gate, running) = hold_first_removal(&state, &games, &["--lock-wait", "8s"]);

        let writer = state.connect();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        gate.open();
        std::thread::sleep(Duration::from_secs(2));
        writer.execute_batch("COMMIT").unwrap();
        let run = running.wait(Duration::from_secs(30));

        run.assert_code(0);
        assert_eq!(run.json()["counts"]["removed"], games.len(), "{journal:?}");
        assert_all_done(&state, &games, &existing_on_test_daemon());
    }
}

#[test]
fn a_writer_holding_the_state_file_past_the_lock_wait_mid_pass_exits_75_and_the_next_run_replays() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("lock-long");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-lock", 3);
        let (gate, running) = hold_first_removal(&state, &games, &["--lock-wait", "1s"]);

        let lock = state.lock_exclusive();
        gate.open();
        let run = running.wait(Duration::from_secs(30));
        drop(lock);

        run.assert_code(75);
        let json = run.json();
        // The first record's container is gone but its result could not be written, even
        // after the retries; the others were never started.
        assert_eq!(json["counts"]["failed"], 1, "{journal:?} {json}");
        assert_eq!(
            json["counts"]["deferred"],
            games.len() - 1,
            "{journal:?} {json}"
        );
        assert!(
            state.all_log().is_empty(),
            "nothing was written, not half of it"
        );
        for game in &games {
            assert_eq!(state.status(&game.id), "stopped");
        }
        // Its lease could not be released either: the summary and the logs say until when.
        let leases = state.leases();
        assert_eq!(leases.len(), 1, "{journal:?} {leases:?}");
        let until = crate::harness::rfc3339_ms(leases[0].2);
        assert_eq!(
            json["leases_kept"],
            serde_json::json!([{"game_id": games[0].id, "until": until}]),
            "{journal:?} {json}"
        );
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains(&games[0].id) && line.contains(&until)),
            "{journal:?}: the logs name the kept lease: {}",
            run.stderr
        );
        assert_invariants(&state, &games, &existing_on_test_daemon(), "after exit 75");
        assert_replayed_after_lease_expiry(&state, &games, &games[0]);
    }
}

/// After a pass that removed `lost`'s container but could not write it: the lease it could not
/// give back is ours; once it expires, a run replays the record and finishes the rest.
fn assert_replayed_after_lease_expiry(state: &StateFile, games: &[Game], lost: &Game) {
    let leases = state.leases();
    assert!(
        leases
            .iter()
            .all(|(game, holder, _)| game == &lost.id && holder.starts_with("rt-cleanup/")),
        "only the unwritten record's own lease is left: {leases:?}"
    );
    state.expire_own_leases();
    let next = pass(state, &[]);
    next.assert_code(0);
    assert_eq!(next.result_of(&lost.id), "replay_no_op");
    let log = state.log(&lost.id);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].error_code.as_deref(), Some("replay_no_op"));
    assert_all_done(state, games, &existing_on_test_daemon());
}

/// The directory and the files of the state file that SQLite writes with `write()`: the
/// database, and the rollback journal or the WAL. The WAL index (`-shm`) is left out: SQLite
/// writes it through a shared memory map, see the next test.
fn written_files(state: &StateFile) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(state.dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.to_string_lossy().ends_with("-shm"))
        .collect();
    paths.push(state.dir().to_owned());
    paths
}

#[test]
fn a_state_dir_turning_read_only_before_the_commit_leaves_the_record_stopped_for_a_replay() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("read-only");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-ro", 2);
        let (gate, running) = hold_first_removal(&state, &games, &[]);

        let paths = written_files(&state);
        let refs: Vec<&std::path::Path> = paths.iter().map(std::path::PathBuf::as_path).collect();
        let read_only = Immutable::new(&refs);
        gate.open();
        let run = running.wait(Duration::from_secs(30));
        drop(read_only);

        assert_storage_failure(&run, &state, &games, journal);
    }
}

#[test]
fn a_wal_index_turning_read_only_before_the_commit_kills_the_process_but_loses_nothing() {
    let containers = Containers::new("read-only-shm");
    let state = StateFile::new(Journal::Wal);
    let games = expired_games(&state, &containers, "g-shm", 2);
    let (gate, running) = hold_first_removal(&state, &games, &[]);

    // SQLite writes the WAL index through a shared memory map of the `-shm` file; once that file
    // is immutable, the kernel answers the write with SIGBUS, which no program can turn into an
    // error. The process dies as if killed: what matters is that nothing is lost.
    let mut paths = written_files(&state);
    paths.push(state.path().with_extension("db-shm"));
    let refs: Vec<&std::path::Path> = paths.iter().map(std::path::PathBuf::as_path).collect();
    let read_only = Immutable::new(&refs);
    gate.open();
    let run = running.wait(Duration::from_secs(30));
    drop(read_only);

    if run.code.is_some() {
        // A kernel or SQLite that reports the failure instead: the graceful path must hold.
        assert_storage_failure(&run, &state, &games, Journal::Wal);
        return;
    }
    for game in &games {
        assert_eq!(state.status(&game.id), "stopped");
    }
    assert!(state.all_log().is_empty());
    assert_invariants(&state, &games, &existing_on_test_daemon(), "after SIGBUS");
    assert_replayed_after_lease_expiry(&state, &games, &games[0]);
}

/// The pass over two records where the state file stopped taking writes after the first
/// removal: that record failed with `state_write_failed` and stays stopped, the second was not
/// started, the run exits 1, and the next run replays the first.
fn assert_storage_failure(run: &Run, state: &StateFile, games: &[Game], journal: Journal) {
    run.assert_code(1);
    let json = run.json();
    assert_eq!(
        json["records"][0]["error_code"], "state_write_failed",
        "{journal:?} {json}"
    );
    assert_eq!(json["counts"]["deferred"], 1, "{journal:?} {json}");
    for game in games {
        assert_eq!(state.status(&game.id), "stopped", "{journal:?}");
    }
    assert!(state.all_log().is_empty(), "{journal:?}");
    assert_invariants(
        state,
        games,
        &existing_on_test_daemon(),
        "after the failed commit",
    );
    assert_replayed_after_lease_expiry(state, games, &games[0]);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallFilesystem(std::path::PathBuf);

impl SmallFilesystem {
    fn mount() -> Self {
        let path = std::path::PathBuf::from(format!(
            "/tmp/rtc-m-{}-{}",
            std::process::id(),
            crate::harness::unique_name("fs")
        ));
        std::fs::create_dir_all(&path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "cannot mount a 1 MiB tmpfs at {} to fill it up (this test needs root and mount \
             permission): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self(path)
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0xA5_u8; 4096];
        while filler
            .write_all(&block)
            .and_then(|()| filler.sync_all())
            .is_ok()
        {}
    }

    fn empty(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_state_filesystem_before_the_commit_leaves_the_record_stopped_for_a_replay() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let filesystem = SmallFilesystem::mount();
        let containers = Containers::new("full");
        let state = StateFile::new_in(&filesystem.0, journal);
        let games = expired_games(&state, &containers, "g-full", 2);
        let (gate, running) = hold_first_removal(&state, &games, &[]);

        filesystem.fill();
        gate.open();
        let run = running.wait(Duration::from_secs(30));
        filesystem.empty();

        assert!(run.stderr.contains("full"), "{journal:?}: {}", run.stderr);
        assert_storage_failure(&run, &state, &games, journal);
    }
}

// ------------------------------------------------------------------------------------------------
// 8. Daemon versions
// ------------------------------------------------------------------------------------------------

#[test]
fn the_debian_daemon_is_spoken_to_at_api_1_41_on_every_request() {
    let private = PrivateDaemon::start();
    let api = private.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let engine = private.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(
        api, "1.41",
        "this test pins Debian's docker.io 20.10 (API 1.41); the daemon is {engine}"
    );
    let state = StateFile::new(Journal::Rollback);
    let id = private.create(&[(OWNER_LABEL, "g-version")]);
    state.stopped("g-version", Some(&id), 8);
    state.stopped("g-gone", Some("rt-cleanup-test-no-such-container"), 8);

    let offset = private.log_len();
    let run = pass_via(&state, &private.host, &["--owner-label", OWNER_LABEL]);
    let requests = private.requests_since(offset);

    run.assert_code(0);
    assert!(
        run.stderr.contains("requests use API 1.41"),
        "the version is logged: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&engine),
        "the engine version is logged: {}",
        run.stderr
    );
    assert!(!private.exists(&id));
    let versioned: Vec<&String> = requests
        .iter()
        .filter(|request| {
            !matches!(
                request.as_str(),
                "HEAD /_ping" | "GET /_ping" | "GET /version"
            )
        })
        .collect();
    assert!(
        versioned.len() >= 3,
        "list, removal and inspection or removal: {requests:?}"
    );
    for request in &versioned {
        let path = request.split_once(' ').map_or("", |(_, path)| path);
        assert!(
            path.starts_with("/v1.41/"),
            "{request} carries /v1.41/ ({requests:?})"
        );
    }
    assert!(versioned
        .iter()
        .any(|r| r.starts_with(&format!("DELETE /v1.41/containers/{id}"))));
    assert_eq!(
        state.record("g-version").map(|r| r.status),
        Some("removed".to_owned())
    );
    assert!(matches!(
        state.record("g-gone").map(|r| r.last_op_at),
        Some(Value::Integer(_))
    ));
}

/// A removal that gets no answer within `--docker-timeout` is decided by an inspection: a
/// container that is gone makes the record `removed`, one that is still there makes it `failed`
/// with `docker_error` and leaves the record `stopped`.
#[test]
fn a_removal_without_answer_is_decided_by_an_inspection() {
    let containers = Containers::new("unanswered");
    let state = StateFile::new(Journal::Rollback);
    let vanishing = containers.create(&[]);
    let staying = containers.create(&[]);
    state.stopped("g-vanishing", Some(&vanishing), 9);
    state.stopped("g-staying", Some(&staying), 8);
    let socket = daemon()
        .host
        .strip_prefix("unix://")
        .expect("a unix:// test daemon")
        .to_owned();
    // The proxy holds both removals; inspections pass through to the daemon.
    let gate = FaultProxy::new(std::path::Path::new(&socket)).with(
        Match::removal(),
        Which::Every,
        Fault::Hold,
    );
    let running = spawn_pass(
        &state,
        &gate.host(),
        &["--docker-timeout", "1s", "--concurrency", "2"],
    );
    assert!(gate.wait_held(2, REACH), "the pass never sent its removals");
    // Someone else removes one container while rt-cleanup waits for Docker's answer.
    docker(&["rm", &vanishing]);
    let run = running.wait(Duration::from_secs(30));
    drop(gate);

    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert_eq!(run.result_of("g-vanishing"), "removed");
    assert_eq!(state.status("g-vanishing"), "removed");
    assert_eq!(run.result_of("g-staying"), "failed");
    assert_eq!(state.status("g-staying"), "stopped");
    let log = state.log("g-staying");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].error_code.as_deref(), Some("docker_error"));
    let message = log[0].error_message.as_deref().unwrap_or_default();
    assert!(
        message.contains("no answer within 1s") && message.contains("still exists"),
        "{message}"
    );
    // The one whose removal may still be carried out keeps its lease; the other's is released.
    let leases = state.leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].0, "g-staying");
    assert_eq!(
        run.json()["leases_kept"],
        serde_json::json!([{"game_id": "g-staying", "until": rfc3339_ms(leases[0].2)}])
    );
}

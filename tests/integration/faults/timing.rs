//! Late answers, locks that outlast the wait, and signals during every wait (docs/contract.md,
//! sections 1 and 9; docs/fault-suite.md, "Late answers and waits").
//!
//! Each case puts the [`FaultProxy`] in front of the shared daemon and scripts the request it is
//! about (the ping, the listing, an inspection, the removal), or holds the state file's write
//! lock from a connection of the test's own, and runs in both journal modes. A case that waits
//! bounds every wait and fails with what it waited for.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{assert_all_done, assert_invariants, existing_on_test_daemon, expired_games, REACH};
use crate::harness::{
    command, exists, pass, rfc3339_ms, spawn_pass, unique_name, Containers, Fault, FaultProxy,
    Journal, Match, Run, Spawned, StateFile, Which, OWNER_LABEL,
};

/// How late a scripted late answer comes: well past the `--docker-timeout` of these cases.
const LATE: Duration = Duration::from_secs(6);

/// The runtime manager's holder name in these cases.
const MANAGER: &str = "rtmanager/host-a/7";

/// The summary's `leases_kept`, which every real run has.
fn leases_kept(run: &Run) -> Value {
    let json = run.json();
    assert!(
        json["leases_kept"].is_array(),
        "a real run's summary names the leases it keeps (leases_kept): {json}"
    );
    json["leases_kept"].clone()
}

/// Sends `signal` twice, the second once the first was noticed; returns when the second was
/// sent.
fn signal_twice(running: &Spawned, signal: &str) -> Instant {
    running.signal(signal);
    assert!(
        running.wait_for_stderr(&format!("received SIG{signal}"), Duration::from_secs(5)),
        "rt-cleanup did not notice SIG{signal}"
    );
    running.signal(signal);
    Instant::now()
}

/// The bound on an exit after a second signal: the 2 s grace, and time to write the results.
const AFTER_SECOND_SIGNAL: Duration = Duration::from_secs(5);

/// The bound on an exit after a signal during a wait that nothing is in flight for.
const AFTER_SIGNAL: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------------------------------------
// A removal whose answer never came (contract section 1)
// ------------------------------------------------------------------------------------------------

/// What a scripted removal fault leads to.
struct LateCase {
    fault: Fault,
    /// Whether the daemon removes the container at all (a dropped request never reaches it).
    reaches_daemon: bool,
    /// Whether the inspection after the missing answer still finds the container, so that the
    /// removal's fate is unknown and the lease must stay.
    unknown: bool,
    /// What the result's message says of the missing answer.
    says: &'static str,
}

const LATE_CASES: [LateCase; 4] = [
    // The daemon gets the removal only after the run gave up on it.
    LateCase {
        fault: Fault::Delay(LATE),
        reaches_daemon: true,
        unknown: true,
        says: "no answer within 2s",
    },
    // The client's connection is closed after the request was written: for all it knows, the
    // daemon has it.
    LateCase {
        fault: Fault::Drop,
        reaches_daemon: false,
        unknown: true,
        says: "lost",
    },
    // The daemon removes it at once; the answer comes after the client timed out.
    LateCase {
        fault: Fault::AnswerLate(LATE),
        reaches_daemon: true,
        unknown: false,
        says: "",
    },
    // The daemon removes it at once and the answer never comes.
    LateCase {
        fault: Fault::Swallow,
        reaches_daemon: true,
        unknown: false,
        says: "",
    },
];

fn an_unanswered_removal_keeps_its_lease_while_its_fate_is_unknown(journal: Journal) {
    for case in &LATE_CASES {
        let when = format!("{journal:?} {:?}", case.fault);
        let containers = Containers::new("unanswered");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-late", 1);
        let game = &games[0];
        let proxy =
            FaultProxy::in_front_of_test_daemon().with(Match::removal(), Which::Nth(1), case.fault);
        let started = Instant::now();
        let run = spawn_pass(&state, &proxy.host(), &["--docker-timeout", "2s"])
            .wait(Duration::from_secs(30));
        let took = started.elapsed();
        println!("{when}: exit {:?} after {took:?}", run.code);
        assert!(took < LATE, "{when}: the run waited for the late answer");

        if !case.unknown {
            // The inspection after the missing answer found the container gone.
            run.assert_code(0);
            assert_eq!(run.result_of(&game.id), "removed", "{when}");
            assert_eq!(state.status(&game.id), "removed", "{when}");
            assert!(state.leases().is_empty(), "{when}: {:?}", state.leases());
            assert_eq!(leases_kept(&run), json!([]), "{when}");
            assert_all_done(&state, &games, &existing_on_test_daemon());
            continue;
        }
        run.assert_code(1);
        let record = run.json()["records"][0].clone();
        assert_eq!(record["result"], "failed", "{when}: {record}");
        assert_eq!(record["error_code"], "docker_error", "{when}: {record}");
        // The removal may still be carried out: the lease stays, and the manager cannot take
        // the game meanwhile.
        let leases = state.leases();
        assert_eq!(leases.len(), 1, "{when}: the lease stays: {leases:?}");
        let (leased_game, holder, expires_at) = leases[0].clone();
        assert_eq!(leased_game, game.id, "{when}");
        assert!(holder.starts_with("rt-cleanup/"), "{when}: {holder}");
        assert!(
            !state.acquire_lease(&game.id, MANAGER, 60_000),
            "{when}: the manager took the game while its removal could still be carried out"
        );
        let until = rfc3339_ms(expires_at);
        let message = record["error_message"].as_str().unwrap_or_default();
        assert!(message.contains(case.says), "{when}: {message}");
        assert!(
            message.contains("may still") && message.contains(&until),
            "{when}: the message says why the lease stays, and until when: {message}"
        );
        assert_eq!(
            leases_kept(&run),
            json!([{"game_id": game.id, "until": until}]),
            "{when}"
        );
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains(&game.id) && line.contains(&until)),
            "{when}: the logs name the kept lease: {}",
            run.stderr
        );
        assert_eq!(state.status(&game.id), "stopped", "{when}");
        let log = state.log(&game.id);
        assert_eq!(log.len(), 1, "{when}: {log:?}");
        assert_eq!(log[0].error_code.as_deref(), Some("docker_error"));

        if case.reaches_daemon {
            // The late removal reaches the daemon after the run ended, under the run's lease.
            assert!(
                proxy.wait_answered_by_daemon(&Match::removal(), 1, Duration::from_secs(20)),
                "{when}: the late removal never reached the daemon"
            );
            assert!(!exists(&game.container), "{when}");
        } else {
            assert!(exists(&game.container), "{when}");
        }
        assert_invariants(&state, &games, &existing_on_test_daemon(), &when);
        // Once the lease expired, the next run settles the record.
        state.expire_own_leases();
        let next = pass(&state, &[]);
        next.assert_code(0);
        let expected = if case.reaches_daemon {
            "replay_no_op"
        } else {
            "removed"
        };
        assert_eq!(next.result_of(&game.id), expected, "{when}");
        assert_all_done(&state, &games, &existing_on_test_daemon());
    }
}

#[test]
fn an_unanswered_removal_keeps_its_lease_while_its_fate_is_unknown_rollback_journal() {
    an_unanswered_removal_keeps_its_lease_while_its_fate_is_unknown(Journal::Rollback);
}

#[test]
fn an_unanswered_removal_keeps_its_lease_while_its_fate_is_unknown_wal() {
    an_unanswered_removal_keeps_its_lease_while_its_fate_is_unknown(Journal::Wal);
}

// ------------------------------------------------------------------------------------------------
// A lock held past --lock-wait while a removal is in flight (contract section 1)
// ------------------------------------------------------------------------------------------------

#[test]
fn a_lock_held_past_the_wait_during_a_removal_is_outlasted_and_the_result_written() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("lock-outlasted");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-outlast", 3);
        let proxy = FaultProxy::holding(Match::removal());
        let running = spawn_pass(
            &state,
            &proxy.host(),
            &["--concurrency", "1", "--lock-wait", "3s"],
        );
        assert!(proxy.wait_held(1, REACH), "the pass never sent a removal");
        // Another program holds the write lock for 8 s, while the removal is in flight.
        let lock = state.lock_exclusive();
        let locked = Instant::now();
        let released = lock.release_after(Duration::from_secs(8));
        proxy.open();
        let run = running.wait(Duration::from_secs(40));
        println!(
            "{journal:?}: exit {:?} {:?} after the lock was taken",
            run.code,
            locked.elapsed()
        );
        released.join().unwrap();

        // The pass stopped at the lock (exit 75, the rest deferred), but the result of the
        // removal it had made was written once the lock was free, and its lease released.
        run.assert_code(75);
        let first = &games[0];
        assert_eq!(run.result_of(&first.id), "removed", "{journal:?}");
        assert_eq!(state.status(&first.id), "removed", "{journal:?}");
        let log = state.log(&first.id);
        assert_eq!(log.len(), 1, "{journal:?}: {log:?}");
        assert_eq!(log[0].outcome, "success");
        for game in &games[1..] {
            assert_eq!(run.result_of(&game.id), "deferred", "{journal:?}");
            assert!(state.log(&game.id).is_empty());
        }
        assert!(
            state.leases().is_empty(),
            "{journal:?}: {:?}",
            state.leases()
        );
        assert_eq!(leases_kept(&run), json!([]), "{journal:?}");
        assert_invariants(&state, &games, &existing_on_test_daemon(), "after exit 75");
    }
}

// ------------------------------------------------------------------------------------------------
// A second signal cuts short every Docker call; the first starts none (contract section 9)
// ------------------------------------------------------------------------------------------------

/// One Docker call of a pass to hold, with what the pass needs to make it.
struct HeldCall {
    name: &'static str,
    matcher: Match,
    extra: &'static [&'static str],
}

fn held_calls() -> [HeldCall; 2] {
    [
        HeldCall {
            name: "the ping",
            matcher: Match::ping(),
            extra: &[],
        },
        HeldCall {
            name: "the listing",
            matcher: Match::listing(),
            extra: &["--owner-label", OWNER_LABEL],
        },
    ]
}

#[test]
fn a_second_signal_cuts_short_a_held_ping_or_listing_and_defers_every_record() {
    for journal in [Journal::Rollback, Journal::Wal] {
        for call in held_calls() {
            for dry_run in [false, true] {
                let when = format!("{journal:?}, {}, dry run {dry_run}", call.name);
                let containers = Containers::new("held-call");
                let state = StateFile::new(journal);
                let games = expired_games(&state, &containers, "g-held", 2);
                let proxy = FaultProxy::holding(call.matcher.clone());
                let mut extra = vec!["--docker-timeout", "20s"];
                extra.extend_from_slice(call.extra);
                if dry_run {
                    extra.push("--dry-run");
                }
                let running = spawn_pass(&state, &proxy.host(), &extra);
                assert!(proxy.wait_held(1, REACH), "{when}: never sent");
                let second = signal_twice(&running, "TERM");
                let run = running.wait(Duration::from_secs(40));
                let took = second.elapsed();
                println!(
                    "{when}: exit {:?} {took:?} after the second signal",
                    run.code
                );

                run.assert_code(143);
                assert!(took < AFTER_SECOND_SIGNAL, "{when}: took {took:?}");
                for game in &games {
                    assert_eq!(run.result_of(&game.id), "deferred", "{when}");
                    assert!(exists(&game.container), "{when}");
                }
                assert!(state.all_log().is_empty(), "{when}");
                assert!(state.leases().is_empty(), "{when}");
            }
        }
    }
}

/// Containers that are orphans under a fresh owner key and a retention of 1 s.
fn orphans(containers: &Containers, count: usize) -> (String, Vec<String>) {
    let key = unique_name(&format!("{OWNER_LABEL}.timing"));
    let ids = (0..count)
        .map(|n| containers.create(&[(key.as_str(), &format!("g-orphan-{n}"))]))
        .collect();
    // Older than a one-second retention (the listing's creation times are whole seconds).
    std::thread::sleep(Duration::from_millis(2_100));
    (key, ids)
}

/// A JSON pass over `state` looking for orphans under `key`, through the proxy.
fn spawn_orphan_pass(state: &StateFile, proxy: &FaultProxy, key: &str, extra: &[&str]) -> Spawned {
    let path = state.path().display().to_string();
    let mut args = vec![
        "--retention",
        "1s",
        "--state",
        &path,
        "--output",
        "json",
        "--owner-label",
        key,
        "--orphans",
        "remove",
        "--docker-timeout",
        "20s",
    ];
    args.extend_from_slice(extra);
    let mut command = command(&args);
    command.env("DOCKER_HOST", proxy.host());
    Spawned::start(command)
}

#[test]
fn a_second_signal_cuts_short_a_held_orphan_inspection() {
    for journal in [Journal::Rollback, Journal::Wal] {
        for dry_run in [false, true] {
            let when = format!("{journal:?}, dry run {dry_run}");
            let containers = Containers::new("orphan-held");
            let state = StateFile::new(journal);
            let (key, ids) = orphans(&containers, 1);
            let proxy = FaultProxy::holding(Match::inspection_of(&ids[0]));
            let extra: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
            let running = spawn_orphan_pass(&state, &proxy, &key, extra);
            assert!(
                proxy.wait_held(1, REACH),
                "{when}: the inspection never came"
            );
            let second = signal_twice(&running, "TERM");
            let run = running.wait(Duration::from_secs(40));
            let took = second.elapsed();
            println!(
                "{when}: exit {:?} {took:?} after the second signal",
                run.code
            );

            run.assert_code(143);
            assert!(took < AFTER_SECOND_SIGNAL, "{when}: took {took:?}");
            assert!(exists(&ids[0]), "{when}");
            assert!(state.all_log().is_empty(), "{when}");
            assert!(state.leases().is_empty(), "{when}");
        }
    }
}

#[test]
fn the_first_signal_starts_no_more_orphan_inspections() {
    for journal in [Journal::Rollback, Journal::Wal] {
        for dry_run in [false, true] {
            let when = format!("{journal:?}, dry run {dry_run}");
            let containers = Containers::new("orphan-first-signal");
            let state = StateFile::new(journal);
            let (key, ids) = orphans(&containers, 3);
            // One inspection at a time, whichever comes first is held.
            let proxy = FaultProxy::in_front_of_test_daemon();
            for id in &ids {
                proxy.script(Match::inspection_of(id), Which::Every, Fault::Hold);
            }
            let mut extra = vec!["--concurrency", "1"];
            if dry_run {
                extra.push("--dry-run");
            }
            let running = spawn_orphan_pass(&state, &proxy, &key, &extra);
            assert!(proxy.wait_held(1, REACH), "{when}: no inspection came");
            running.signal("TERM");
            assert!(
                running.wait_for_stderr("received SIGTERM", Duration::from_secs(5)),
                "{when}: rt-cleanup did not notice SIGTERM"
            );
            proxy.open();
            let run = running.wait(Duration::from_secs(40));

            run.assert_code(143);
            let inspections: Vec<String> = proxy
                .seen()
                .into_iter()
                .filter(|seen| ids.iter().any(|id| seen.target.contains(id.as_str())))
                .map(|seen| seen.line)
                .collect();
            assert_eq!(
                inspections.len(),
                1,
                "{when}: the one in flight is finished, none is started after the signal: \
                 {inspections:?}"
            );
            for id in &ids {
                assert!(exists(id), "{when}");
            }
            assert!(state.all_log().is_empty(), "{when}");
            assert!(state.leases().is_empty(), "{when}");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// A signal ends every lock wait (contract section 9)
// ------------------------------------------------------------------------------------------------

#[test]
fn a_signal_ends_the_start_up_lock_wait_with_its_status_and_nothing_changed() {
    for (journal, dry_run, signal, code) in [
        (Journal::Rollback, false, "TERM", 143),
        (Journal::Wal, false, "TERM", 143),
        (Journal::Rollback, false, "INT", 130),
        // A dry run waits for the lock only where readers wait for a writer: rollback journal.
        (Journal::Rollback, true, "TERM", 143),
    ] {
        let when = format!("{journal:?}, dry run {dry_run}, SIG{signal}");
        let containers = Containers::new("startup-lock");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-startup", 1);
        let before = state.bytes();
        let lock = state.lock_exclusive();
        let mut extra = vec!["--lock-wait", "20s"];
        if dry_run {
            extra.push("--dry-run");
        }
        let running = spawn_pass(&state, &crate::harness::daemon().host, &extra);
        // Long enough for the run to be waiting for the lock.
        std::thread::sleep(Duration::from_millis(700));
        let signalled = Instant::now();
        running.signal(signal);
        let run = running.wait(Duration::from_secs(40));
        let took = signalled.elapsed();
        drop(lock);
        println!("{when}: exit {:?} {took:?} after the signal", run.code);

        run.assert_code(code);
        assert!(took < AFTER_SIGNAL, "{when}: took {took:?}");
        assert!(
            run.stdout.is_empty(),
            "{when}: nothing was selected, so no summary: {}",
            run.stdout
        );
        assert!(
            run.stderr.contains(&format!("interrupted by SIG{signal}"))
                && run.stderr.contains("nothing was read or changed"),
            "{when}: {}",
            run.stderr
        );
        assert_eq!(state.bytes(), before, "{when}");
        assert!(exists(&games[0].container), "{when}");
        assert!(state.leases().is_empty(), "{when}");
    }
}

#[test]
fn the_first_signal_ends_a_lease_claim_waiting_for_the_lock() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("claim-lock");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-claim", 2);
        // With --owner-label the pass lists the containers between its read and its first
        // claim: the lock is taken there.
        let proxy = FaultProxy::holding(Match::listing());
        let running = spawn_pass(
            &state,
            &proxy.host(),
            &["--owner-label", OWNER_LABEL, "--lock-wait", "20s"],
        );
        assert!(
            proxy.wait_held(1, REACH),
            "{journal:?}: the listing never came"
        );
        let lock = state.lock_exclusive();
        proxy.open();
        // Long enough for the claims to wait for the lock.
        std::thread::sleep(Duration::from_millis(700));
        let signalled = Instant::now();
        running.signal("TERM");
        let run = running.wait(Duration::from_secs(40));
        let took = signalled.elapsed();
        drop(lock);
        println!("{journal:?}: exit {:?} {took:?} after the signal", run.code);

        run.assert_code(143);
        assert!(took < AFTER_SIGNAL, "{journal:?}: took {took:?}");
        for game in &games {
            assert_eq!(run.result_of(&game.id), "deferred", "{journal:?}");
            assert!(exists(&game.container), "{journal:?}");
        }
        assert!(state.all_log().is_empty(), "{journal:?}");
        assert!(
            state.leases().is_empty(),
            "{journal:?}: {:?}",
            state.leases()
        );
    }
}

#[test]
fn a_second_signal_ends_a_result_waiting_for_the_lock_and_names_the_lease_it_keeps() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("result-lock");
        let state = StateFile::new(journal);
        let games = expired_games(&state, &containers, "g-result", 1);
        let game = &games[0];
        let proxy = FaultProxy::holding(Match::removal());
        let running = spawn_pass(&state, &proxy.host(), &["--lock-wait", "20s"]);
        assert!(
            proxy.wait_held(1, REACH),
            "{journal:?}: the removal never came"
        );
        let lock = state.lock_exclusive();
        proxy.open();
        assert!(
            proxy.wait_answered_by_daemon(&Match::removal(), 1, REACH),
            "{journal:?}: the removal never reached the daemon"
        );
        // Long enough for the result to wait for the lock.
        std::thread::sleep(Duration::from_millis(700));
        let second = signal_twice(&running, "TERM");
        let run = running.wait(Duration::from_secs(40));
        let took = second.elapsed();
        drop(lock);
        println!(
            "{journal:?}: exit {:?} {took:?} after the second signal",
            run.code
        );

        run.assert_code(143);
        assert!(took < AFTER_SECOND_SIGNAL, "{journal:?}: took {took:?}");
        assert!(!exists(&game.container), "{journal:?}");
        let record = run.json()["records"][0].clone();
        assert_eq!(record["error_code"], "state_write_failed", "{journal:?}");
        let leases = state.leases();
        assert_eq!(leases.len(), 1, "{journal:?}: {leases:?}");
        assert_eq!(
            leases_kept(&run),
            json!([{"game_id": game.id, "until": rfc3339_ms(leases[0].2)}]),
            "{journal:?}"
        );
        assert_eq!(state.status(&game.id), "stopped", "{journal:?}");
        assert!(state.all_log().is_empty(), "{journal:?}");
        assert_invariants(
            &state,
            &games,
            &existing_on_test_daemon(),
            "after the signal",
        );
        state.expire_own_leases();
        let next = pass(&state, &[]);
        next.assert_code(0);
        assert_eq!(next.result_of(&game.id), "replay_no_op", "{journal:?}");
        assert_all_done(&state, &games, &existing_on_test_daemon());
    }
}

// ------------------------------------------------------------------------------------------------
// The proxy itself
// ------------------------------------------------------------------------------------------------

#[test]
fn the_fault_proxy_reads_each_request_of_a_keep_alive_connection_whole() {
    let containers = Containers::new("proxy-keep-alive");
    let state = StateFile::new(Journal::Rollback);
    let games = expired_games(&state, &containers, "g-proxy", 3);
    let proxy = FaultProxy::in_front_of_test_daemon();
    let run = spawn_pass(
        &state,
        &proxy.host(),
        &["--owner-label", OWNER_LABEL, "--concurrency", "1"],
    )
    .wait(Duration::from_secs(30));
    run.assert_code(0);
    let seen = proxy.seen();
    let lines: Vec<&str> = seen.iter().map(|seen| seen.line.as_str()).collect();
    assert_eq!(
        seen.iter()
            .filter(|seen| Match::removal().matches(&seen.method, &seen.target))
            .count(),
        games.len(),
        "{lines:#?}"
    );
    assert!(
        seen.iter()
            .all(|seen| seen.status.is_some() && seen.answered.is_some()),
        "every request answered: {seen:#?}"
    );
    assert!(
        seen.iter().all(|seen| !seen.chunked),
        "rt-cleanup sends no chunked body: {lines:#?}"
    );
    let connections: std::collections::HashSet<usize> =
        seen.iter().map(|seen| seen.connection).collect();
    assert!(
        connections.len() < seen.len(),
        "several requests on one keep-alive connection: {seen:#?}"
    );
    assert_all_done(&state, &games, &existing_on_test_daemon());
}

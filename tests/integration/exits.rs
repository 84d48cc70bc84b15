//! Contract §6: the exit statuses of a pass that cannot start, and that nothing changed then.

use std::time::{Duration, Instant};

use crate::harness::{exists, pass, pass_args, run_without_docker, Containers, Journal, StateFile};

fn args_for(path: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--retention", "7d", "--state", path, "--output", "json"]
        .map(str::to_owned)
        .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn run_args(args: &[String]) -> crate::harness::Run {
    crate::harness::run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_missing_state_file_exits_2_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    for extra in [&[][..], &["--dry-run"][..]] {
        let run = run_args(&args_for(&path.display().to_string(), extra));
        run.assert_code(2);
        assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&path.display().to_string()),
            "names the path: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
        assert!(!path.exists(), "the state file is never created");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file of any kind appeared"
    );
}

#[test]
fn a_junk_state_file_exits_2_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    let junk = b"this is not a database, it is a text file that is long enough to look like one\n"
        .repeat(100);
    std::fs::write(&path, &junk).unwrap();
    for extra in [&[][..], &["--dry-run"][..]] {
        let run = run_args(&args_for(&path.display().to_string(), extra));
        run.assert_code(2);
        assert!(run.stderr.contains("not a database"), "{}", run.stderr);
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }
}

#[test]
fn an_empty_file_has_no_schema_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let run = run_args(&args_for(&path.display().to_string(), &[]));
    run.assert_code(2);
    assert!(run.stderr.contains("user_version 0"), "{}", run.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[test]
fn another_user_version_exits_2_naming_both_versions() {
    for version in [0, 2, 7] {
        let state = StateFile::new(Journal::Rollback);
        state.stopped("g", None, 8);
        state
            .connect()
            .execute_batch(&format!("PRAGMA user_version = {version}"))
            .unwrap();
        let before = state.bytes();
        let run = pass(&state, &[]);
        run.assert_code(2);
        let message = run.stderr.lines().last().unwrap_or_default();
        assert!(
            message.contains(&format!("user_version {version}")),
            "{message}"
        );
        assert!(message.contains("expected 1"), "{message}");
        assert_eq!(state.bytes(), before);
        assert_eq!(state.status("g"), "stopped");
    }
}

#[test]
fn a_missing_table_or_column_exits_2() {
    for (sql, missing) in [
        ("DROP TABLE game_leases", "table game_leases"),
        (
            "ALTER TABLE operation_log DROP COLUMN error_message",
            "column operation_log.error_message",
        ),
    ] {
        let state = StateFile::new(Journal::Rollback);
        state.connect().execute_batch(sql).unwrap();
        let before = state.bytes();
        let run = pass(&state, &[]);
        run.assert_code(2);
        assert!(run.stderr.contains(missing), "{}", run.stderr);
        assert_eq!(state.bytes(), before);
    }
}

#[test]
fn an_unreachable_docker_daemon_exits_69_and_changes_nothing() {
    let containers = Containers::new("unreachable");
    let id = containers.create(&[]);
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"] {
        let state = StateFile::new(Journal::Rollback);
        state.stopped("g", Some(&id), 8);
        // Records that need no Docker call are settled without one: not before the preflight.
        state.stopped("g-none", None, 8);
        state.stopped("g-bad", Some("../x"), 8);
        let before = state.bytes();
        let args = pass_args(&state, &["--docker-timeout", "2s"]);
        let mut command =
            crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("DOCKER_HOST", host);
        let run = crate::harness::finish(&command.output().unwrap());
        run.assert_code(69);
        assert!(
            run.stderr.contains("cannot reach the Docker daemon"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(host),
            "names the daemon: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
        assert_eq!(state.bytes(), before, "nothing changed");
        assert!(exists(&id));
    }
}

#[test]
fn a_state_file_locked_past_the_wait_exits_75_and_changes_nothing() {
    for journal in [Journal::Rollback, Journal::Wal] {
        let containers = Containers::new("locked");
        let state = StateFile::new(journal);
        let id = containers.create(&[]);
        state.stopped("g", Some(&id), 8);
        let holder = state.connect();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

        let started = Instant::now();
        let run = pass(&state, &["--lock-wait", "1s"]);
        let waited = started.elapsed();

        run.assert_code(75);
        assert!(
            waited >= Duration::from_millis(900),
            "it waited for the lock: {waited:?}"
        );
        assert!(run.stderr.contains("locked"), "{}", run.stderr);
        holder.execute_batch("ROLLBACK").unwrap();
        assert!(exists(&id), "{journal:?}: nothing was removed");
        assert_eq!(state.status("g"), "stopped");
        assert!(state.all_log().is_empty());
    }
}

#[test]
fn a_short_write_lock_is_waited_out() {
    let containers = Containers::new("short-lock");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    let holder = state.connect();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        holder.execute_batch("COMMIT").unwrap();
    });

    let run = pass(&state, &["--lock-wait", "10s"]);
    release.join().unwrap();

    run.assert_code(0);
    assert!(!exists(&id));
    assert_eq!(state.status("g"), "removed");
}

#[test]
fn bad_invocations_exit_2_before_touching_anything() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let before = state.bytes();
    let path = state.path().display().to_string();
    for extra in [
        &["--concurrency", "0"][..],
        &["--lease-ttl", "1s"][..],
        &["--op-source", ""][..],
    ] {
        run_without_docker(
            &args_for(&path, extra)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .assert_code(2);
    }
    assert_eq!(state.bytes(), before);
}

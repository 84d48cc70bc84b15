//! Contract §9: the files rt-cleanup writes and what it reads. An output path that leads back to
//! the state file, a symlink planted where a temporary file would go, a state path that is a
//! FIFO, a crashed writer's journal, a plan that names one game twice. Each test failed on the
//! build before its fix (run them against another build with `RT_CLEANUP_TEST_BINARY`).

use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    command, command_as_pid_1, daemon, directory_listing, exists, finish, pass, pass_args, plan_of,
    write_plan, Containers, Journal, Run, Spawned, StateFile,
};

/// The line of a refused invocation (`rt-cleanup: error: …`).
fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|line| line.starts_with("rt-cleanup: error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr))
}

// ------------------------------------------------------------------------------------------------
// Output files that lead back to the state file
// ------------------------------------------------------------------------------------------------

in_both_journal_modes!(
    an_output_file_that_leads_to_the_state_file_is_refused_before_anything_is_opened
);
fn an_output_file_that_leads_to_the_state_file_is_refused_before_anything_is_opened(
    journal: Journal,
) {
    let containers = Containers::new("output-leads-to-state");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    let dir = state.dir();
    let path = state.path().display().to_string();
    let dir_name = dir.file_name().unwrap().to_str().unwrap();
    symlink(state.path(), dir.join("link.json")).unwrap();
    symlink(dir, dir.join("dir-link")).unwrap();
    std::fs::hard_link(state.path(), dir.join("hard.prom")).unwrap();
    let (bytes, listing) = (state.bytes(), directory_listing(dir));
    let resolved = state.path().canonicalize().unwrap().display().to_string();
    let cases = [
        ("--plan-out", path.clone(), resolved.clone()),
        (
            "--plan-out",
            format!("{}/../{dir_name}/./state.db", dir.display()),
            resolved.clone(),
        ),
        (
            "--plan-out",
            format!("{}/link.json", dir.display()),
            resolved.clone(),
        ),
        (
            "--metrics-file",
            format!("{}/hard.prom", dir.display()),
            resolved.clone(),
        ),
        ("--metrics-file", path.clone(), resolved.clone()),
        (
            "--metrics-file",
            format!("{path}-wal"),
            format!("{resolved}-wal"),
        ),
        (
            "--metrics-file",
            format!("{path}-journal"),
            format!("{resolved}-journal"),
        ),
        (
            "--metrics-file",
            format!("{}/dir-link/state.db-shm", dir.display()),
            format!("{resolved}-shm"),
        ),
    ];
    for (option, output, target) in cases {
        let dry_run: &[&str] = if option == "--plan-out" {
            &["--dry-run"]
        } else {
            &[]
        };
        let mut args = dry_run.to_vec();
        args.extend([option, output.as_str()]);
        let run = pass(&state, &args);
        run.assert_code(2);
        let what = match target.rsplit_once("state.db").unwrap().1 {
            "" => "the state file",
            "-wal" => "the state file's write-ahead log",
            "-shm" => "the state file's shared-memory index",
            _ => "the state file's rollback journal",
        };
        assert_eq!(
            error_line(&run),
            format!(
                "rt-cleanup: error: {option} {output} resolves to {target}, {what} (--state \
                 {path}); rt-cleanup would replace it with its own output: name another file"
            ),
        );
        assert!(run.stdout.is_empty(), "no pass ran: {}", run.stdout);
        assert!(
            state.bytes() == bytes,
            "{option} {output}: the file is as it was"
        );
        assert_eq!(
            directory_listing(dir),
            listing,
            "{option} {output}: nothing was created beside it"
        );
        assert!(exists(&id), "{option} {output}: no container was touched");
    }
    assert_eq!(state.integrity(), "ok");
    assert_eq!(state.status("g"), "stopped");
    assert!(state.all_log().is_empty());
}

#[test]
fn an_output_file_that_a_new_file_cannot_replace_is_refused_at_the_start() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let elsewhere = tempfile::tempdir().unwrap();
    let directory = elsewhere.path().display().to_string();
    let missing = format!("{directory}/no-such-dir/rt_cleanup.prom");
    for (output, says) in [
        (
            directory.as_str(),
            format!("--metrics-file {directory} is a directory, not a regular file"),
        ),
        (
            "/dev/null",
            "--metrics-file /dev/null is a character device, not a regular file".to_owned(),
        ),
        (
            missing.as_str(),
            format!(
                "--metrics-file {missing} cannot be written: its directory \
                 {directory}/no-such-dir cannot be used"
            ),
        ),
    ] {
        let run = pass(&state, &["--metrics-file", output]);
        run.assert_code(2);
        assert!(
            error_line(&run).starts_with(&format!("rt-cleanup: error: {says}")),
            "{}",
            run.stderr
        );
        assert_eq!(state.status("g"), "stopped", "{output}: nothing ran");
    }
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device(),
        "/dev/null is still the device"
    );
}

// ------------------------------------------------------------------------------------------------
// Temporary files that nobody can predict
// ------------------------------------------------------------------------------------------------

/// Plants, in `dir`, a symlink to `victim` at every name a predictable temporary file for
/// `name` could have: the scheme `.NAME.tmp.<pid>` for pid 1 (the process id of a run that is
/// pid 1, as in a container) and names without a random part at all.
fn plant_symlinks(dir: &Path, name: &str, victim: &Path) -> Vec<String> {
    let planted = vec![
        format!(".{name}.tmp.1"),
        format!("{name}.tmp.1"),
        format!(".{name}.tmp"),
        format!("{name}.tmp"),
        format!(".{name}.new"),
        format!("{name}.new"),
        format!("{name}~"),
    ];
    for link in &planted {
        symlink(victim, dir.join(link)).unwrap();
    }
    planted
}

/// Runs the binary as process 1 of a pid namespace of its own, against the test daemon.
fn run_as_pid_1(args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = command_as_pid_1(&args);
    command.env("DOCKER_HOST", &daemon().host);
    finish(
        &command
            .output()
            .expect("unshare (util-linux) runs the binary"),
    )
}

in_both_journal_modes!(a_symlink_planted_where_a_temporary_file_would_go_is_never_followed);
fn a_symlink_planted_where_a_temporary_file_would_go_is_never_followed(journal: Journal) {
    let containers = Containers::new("planted-symlink");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);
    // node_exporter's textfile directory, writable by another user, who planted symlinks to
    // the state file there.
    let textfiles = tempfile::tempdir().unwrap();
    let mut planted = plant_symlinks(textfiles.path(), "rt_cleanup.prom", state.path());
    planted.extend(plant_symlinks(textfiles.path(), "plan.json", state.path()));
    let bytes = state.bytes();
    let plan = textfiles.path().join("plan.json");

    let dry = run_as_pid_1(&pass_args(
        &state,
        &["--dry-run", "--plan-out", plan.to_str().unwrap()],
    ));
    dry.assert_code(0);
    assert!(state.bytes() == bytes, "the plan went to its own file");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(written["records"][0]["game_id"], "g");

    let metrics = textfiles.path().join("rt_cleanup.prom");
    let real = run_as_pid_1(&pass_args(
        &state,
        &["--metrics-file", metrics.to_str().unwrap()],
    ));
    real.assert_code(0);
    assert_eq!(real.result_of("g"), "removed");
    assert_eq!(
        state.integrity(),
        "ok",
        "the state file is a database still"
    );
    assert_eq!(state.status("g"), "removed");
    assert_eq!(state.log("g").len(), 1);
    let file = std::fs::symlink_metadata(&metrics).unwrap();
    assert!(file.is_file(), "the metrics file is a file of its own");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.lines()
            .any(|line| line == "rt_cleanup_last_run_exit_status 0"),
        "{text}"
    );
    let mut expected: Vec<String> = planted;
    expected.extend(["plan.json".to_owned(), "rt_cleanup.prom".to_owned()]);
    expected.sort();
    assert_eq!(
        directory_listing(textfiles.path()),
        expected,
        "every symlink is left as it was, and no temporary file is left behind"
    );
}

// ------------------------------------------------------------------------------------------------
// A state path that is not a regular file
// ------------------------------------------------------------------------------------------------

#[test]
fn a_state_path_that_is_not_a_regular_file_is_refused_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("state.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let socket = dir.path().join("state.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for (path, kind) in [
        (fifo.as_path(), "a FIFO (named pipe)"),
        (socket.as_path(), "a socket"),
        (Path::new("/dev/null"), "a character device"),
    ] {
        for dry_run in [true, false] {
            let mut args = vec![
                "--retention",
                "7d",
                "--state",
                path.to_str().unwrap(),
                "--output",
                "json",
            ];
            if dry_run {
                args.push("--dry-run");
            }
            let mut command: Command = command(&args);
            command.env("DOCKER_HOST", &daemon().host);
            // A FIFO opened for reading waits for a writer, deaf to SIGTERM: the wait is
            // bounded, and a run that hangs is killed and fails the test.
            let run = Spawned::start(command).wait(Duration::from_secs(20));
            run.assert_code(2);
            let line = run
                .stderr
                .lines()
                .find(|line| line.contains("ERROR"))
                .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr));
            assert!(
                line.ends_with(&format!(
                    "state file {} is {kind}, not a regular file, and was not opened; point \
                     --state (RT_CLEANUP_STATE) at the runtime manager's SQLite file (or a \
                     symlink to it)",
                    path.display()
                )),
                "dry run {dry_run}: {line}"
            );
        }
    }
    // A symlink to a regular state file is fine.
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let link = dir.path().join("state-link.db");
    symlink(state.path(), &link).unwrap();
    let mut args = pass_args(&state, &["--dry-run"]);
    args[3] = link.display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = crate::harness::run(&args);
    run.assert_code(0);
    assert_eq!(run.result_of("g"), "replay_no_op");
}

#[test]
fn a_plan_or_tls_file_that_is_a_fifo_is_refused_without_being_read() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let fifo = state.dir().join("input.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = fifo.to_str().unwrap();
    let tls = [
        "--docker-host",
        "tcp://127.0.0.1:9",
        "--tlsverify",
        "--tlscacert",
        fifo,
    ];
    for (extra, option) in [
        (&["--apply-plan", fifo][..], "--apply-plan"),
        (&tls[..], "--tlscacert"),
    ] {
        let args = pass_args(&state, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command: Command = command(&args);
        command.env("DOCKER_HOST", &daemon().host);
        // Reading a FIFO waits for a writer, deaf to SIGTERM: the wait is bounded, and a run
        // that hangs is killed and fails the test.
        let run = Spawned::start(command).wait(Duration::from_secs(20));
        run.assert_code(2);
        assert!(
            run.stderr.contains(&format!(
                "rt-cleanup: error: {option} {fifo} is a FIFO (named pipe), not a regular file, \
                 and was not opened"
            )),
            "{option}: {}",
            run.stderr
        );
    }
    assert_eq!(state.status("g"), "stopped", "nothing was done");
}

// ------------------------------------------------------------------------------------------------
// A crashed writer's journal
// ------------------------------------------------------------------------------------------------

in_both_journal_modes!(a_dry_run_after_a_writer_crashed_mid_transaction_changes_nothing);
/// A rollback journal left by a crashed writer is hot: SQLite must roll it back before anyone
/// reads, which a read-only dry run cannot. It says so and exits 75 (try again later), never
/// calling it a schema problem, and leaves the file and the journal as they are; a real run
/// rolls it back and works. In WAL mode a crashed writer's uncommitted frames are simply not
/// read: the dry run predicts from what was committed.
fn a_dry_run_after_a_writer_crashed_mid_transaction_changes_nothing(journal: Journal) {
    let state = StateFile::new(journal);
    state.stopped("g", None, 8);
    state.crash_mid_transaction();
    let listing = directory_listing(state.dir());
    let files: Vec<Vec<u8>> = listing
        .iter()
        .filter(|name| !name.ends_with("-shm"))
        .map(|name| std::fs::read(state.dir().join(name)).unwrap())
        .collect();

    let dry = pass(&state, &["--dry-run"]);
    match journal {
        Journal::Rollback => {
            assert_eq!(listing, ["state.db", "state.db-journal"]);
            dry.assert_code(75);
            let line = dry
                .stderr
                .lines()
                .find(|line| line.contains("ERROR"))
                .unwrap_or_else(|| panic!("no error line:\n{}", dry.stderr));
            let path = state.path().display();
            assert!(
                line.contains(&format!(
                    "state file {path} has a hot rollback journal {path}-journal: a writer \
                     crashed in the middle of a transaction"
                )),
                "{line}"
            );
            assert!(
                line.contains("a real run, rolls it back; nothing was read or changed"),
                "{line}"
            );
            assert!(!line.contains("schema"), "{line}");
        }
        Journal::Wal => {
            dry.assert_code(0);
            assert_eq!(
                dry.outcomes(),
                [(
                    "g".to_owned(),
                    "replay_no_op".to_owned(),
                    Some("replay_no_op".to_owned())
                )],
                "only what was committed is read"
            );
        }
    }
    assert_eq!(
        directory_listing(state.dir()),
        listing,
        "nothing created or removed"
    );
    let after: Vec<Vec<u8>> = listing
        .iter()
        .filter(|name| !name.ends_with("-shm"))
        .map(|name| std::fs::read(state.dir().join(name)).unwrap())
        .collect();
    assert!(
        after == files,
        "the file and its journal or -wal are as they were"
    );

    // A real run, a writer, rolls the crashed transaction back and acts on what was committed.
    let real = pass(&state, &[]);
    real.assert_code(0);
    assert_eq!(real.result_of("g"), "replay_no_op");
    assert_eq!(real.json()["counts"]["stopped"], 1);
    assert_eq!(state.integrity(), "ok");
    assert_eq!(state.status("g"), "removed");
}

// ------------------------------------------------------------------------------------------------
// A plan that names one game twice
// ------------------------------------------------------------------------------------------------

in_both_journal_modes!(a_plan_that_names_one_game_as_text_and_as_a_number_is_refused);
fn a_plan_that_names_one_game_as_text_and_as_a_number_is_refused(journal: Journal) {
    let containers = Containers::new("plan-number-id");
    let state = StateFile::new(journal);
    let id = containers.create(&[]);
    state.stopped("1", Some(&id), 8);
    let plans = tempfile::tempdir().unwrap();
    let (plan, mut json) = plan_of(&state, plans.path(), &[]);
    let records = json["records"].as_array_mut().unwrap();
    assert_eq!(records.len(), 1);
    // The integer 1 names the TEXT record '1' to SQLite (column affinity).
    let mut as_number = records[0].clone();
    as_number["game_id"] = serde_json::json!(1);
    records.push(as_number);
    write_plan(&plan, &json);
    let bytes = state.bytes();

    let applied = pass(&state, &["--apply-plan", &plan]);
    applied.assert_code(2);
    assert!(
        applied
            .stderr
            .contains("names game 1 as an integer; a game id is text"),
        "{}",
        applied.stderr
    );
    assert!(applied.stdout.is_empty(), "{}", applied.stdout);
    assert!(state.bytes() == bytes, "nothing changed");
    assert!(state.all_log().is_empty());
    assert_eq!(state.status("1"), "stopped");
    assert!(exists(&id));
}

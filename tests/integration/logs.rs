//! The logs: values from the state file and the daemon escaped in every line of every format;
//! the journal spoken to natively where stderr is the journal (a real systemd-journald, read
//! back with journalctl); a progress line on a terminal, and nowhere else.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    command, command_on_journal, command_on_terminal, daemon, journal_entries, now_ms, pass_args,
    require_journald, spawn_pass, unique_name, Containers, FakeAnswer, FakeDaemon, Journal,
    JournalEntry, Run, Spawned, StateFile,
};

/// How long any run of these tests may take before it is killed and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The ping of Debian 12's Docker, for the fake daemon.
const DOCKER_PING: &[(&str, &str)] = &[
    ("Api-Version", "1.41"),
    ("Server", "Docker/20.10.24+dfsg1 (linux)"),
];

/// A game id that would forge a whole log line, timestamp and level included, were it written
/// as it is.
const FORGING_GAME: &str =
    "g-1\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE from a game id";
/// A game id that returns to the start of the line and drives a terminal.
const TERMINAL_GAME: &str = "g-2\r\u{1b}[31mred\u{1b}[0m\u{8}\u{85}";
/// A game leased by a holder that would forge a line.
const LEASED_GAME: &str = "g-3\u{7}";
const FORGING_HOLDER: &str = "evil\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE \
                              from a holder\u{1b}]0;title\u{7}";
/// The daemon's answer to the removal of the first game's container.
const FORGING_DAEMON_MESSAGE: &str =
    "boom\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE from the daemon\r\u{1b}[2K";
/// The owner label of a container that the fifth game's record names.
const FORGING_LABEL: &str = "g-5\nERROR rt_cleanup: FORGED LINE from a label";
/// An orphan's owner label, name and state.
const ORPHAN_LABEL: &str = "g-orphan\u{1b}[1m";
const ORPHAN_STATE: &str = "exited\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE \
                            from a state";
/// The names of a listed container whose id is unusable.
const FORGING_NAME: &str =
    "n\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE from a name";

/// A container id of 64 characters made of one letter.
fn full_id(letter: char) -> String {
    letter.to_string().repeat(64)
}

/// A Docker that answers with hostile values: names, labels, states and error messages with
/// newlines, carriage returns, escapes and other control characters. It lists the containers
/// of the games of [`hostile_state`] (and removes one, after which it no longer lists it), an
/// unlabelled entry whose id is unusable, and two orphans, which it answers inspections of.
fn hostile_daemon() -> FakeDaemon {
    let (c1, c2, c5, orphan) = (full_id('a'), full_id('b'), full_id('e'), full_id('f'));
    let created = 1_600_000_000;
    let entry = |id: &str, name: &str, state: &str, label: Option<&str>| {
        let mut entry = serde_json::json!({
            "Id": id, "Names": [format!("/{name}")], "State": state, "Created": created,
        });
        if let Some(label) = label {
            entry["Labels"] = serde_json::json!({ "owner": label });
        }
        entry
    };
    let labelled = [
        (c1.clone(), entry(&c1, "c1", "exited", Some(FORGING_GAME))),
        (c2.clone(), entry(&c2, "c2", "exited", Some(TERMINAL_GAME))),
        (c5.clone(), entry(&c5, "c5", "exited", Some(FORGING_LABEL))),
        (
            orphan.clone(),
            entry(&orphan, "orphan", ORPHAN_STATE, Some(ORPHAN_LABEL)),
        ),
    ];
    let unusable = entry("bad\nid", FORGING_NAME, "exited", None);
    let inspection = |id: &str, state: &str, label: &str| {
        serde_json::json!({
            "Id": id, "Name": "/x", "Created": "2020-09-13T12:26:40Z",
            "State": { "Status": state, "FinishedAt": "2020-09-13T12:26:40Z" },
            "Config": { "Labels": { "owner": label } },
        })
        .to_string()
    };
    let inspections = [
        (c5.clone(), inspection(&c5, "exited", FORGING_LABEL)),
        (
            orphan.clone(),
            inspection(&orphan, ORPHAN_STATE, ORPHAN_LABEL),
        ),
    ];
    let removed = Arc::new(Mutex::new(HashSet::<String>::new()));
    FakeDaemon::serving(DOCKER_PING, None, move |method, path| {
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let reference = route.strip_prefix("/containers/").unwrap_or_default();
        let gone = removed.lock().unwrap().clone();
        match method {
            "GET" if route == "/containers/json" => {
                let mut listed: Vec<Value> = labelled
                    .iter()
                    .filter(|(id, _)| !gone.contains(id))
                    .map(|(_, entry)| entry.clone())
                    .collect();
                // Like a real daemon, a listing filtered on the label leaves out the unlabelled.
                if !query.contains("filters") {
                    listed.push(unusable.clone());
                }
                Some(FakeAnswer::json(Value::Array(listed).to_string()))
            }
            "GET" => inspections
                .iter()
                .find(|(id, _)| route == format!("/containers/{id}/json") && !gone.contains(id))
                .map(|(_, body)| FakeAnswer::json(body.clone())),
            "DELETE" if reference == c1 => Some(FakeAnswer::error(500, FORGING_DAEMON_MESSAGE)),
            "DELETE" if reference == c2 => {
                removed.lock().unwrap().insert(c2.clone());
                Some(FakeAnswer::no_content())
            }
            _ => None,
        }
    })
}

/// A state file whose records, with [`hostile_daemon`] and `--owner-label owner`, end as:
/// the first failed (the daemon's hostile refusal), the second removed, the third in conflict
/// (a hostile holder's lease), the fourth failed (a hostile container id), the fifth failed (a
/// hostile owner label).
fn hostile_state(journal: Journal) -> StateFile {
    let state = StateFile::new(journal);
    state.stopped(FORGING_GAME, Some("c1"), 8);
    state.stopped(TERMINAL_GAME, Some("c2"), 8);
    state.stopped(LEASED_GAME, Some("c3"), 8);
    state.lease(LEASED_GAME, FORGING_HOLDER, now_ms() + 3_600_000);
    state.stopped(
        "g-4",
        Some("c4\n2026-01-01T00:00:00Z ERROR rt_cleanup: FORGED LINE"),
        8,
    );
    state.stopped("g-5", Some("c5"), 8);
    state
}

/// The arguments of a pass over [`hostile_state`] with [`hostile_daemon`].
const HOSTILE_OPTIONS: &[&str] = &["--owner-label", "owner", "--orphans", "report"];

/// The results [`hostile_state`]'s records end with.
fn expected_hostile_results() -> Vec<(String, String, Option<String>)> {
    let mut expected: Vec<(String, String, Option<String>)> = [
        (FORGING_GAME, "failed", Some("docker_error")),
        (TERMINAL_GAME, "removed", None),
        (LEASED_GAME, "conflict", Some("conflict")),
        ("g-4", "failed", Some("invalid_record")),
        ("g-5", "failed", Some("ownership_mismatch")),
    ]
    .iter()
    .map(|(game, result, code)| {
        (
            (*game).to_owned(),
            (*result).to_owned(),
            code.map(str::to_owned),
        )
    })
    .collect();
    expected.sort();
    expected
}

/// The lines a hostile pass logs: the preflight, the selection, the listed container left out,
/// one per record, one per orphan found.
const HOSTILE_LOG_LINES: usize = 2 + 1 + 5 + 2;

/// Whether a text log line begins as the text format begins one: a timestamp, a level, a target
/// of rt-cleanup's.
fn begins_as_a_log_line(line: &str) -> bool {
    let Some((timestamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let shape_ok = timestamp.len() == 27
        && timestamp.ends_with('Z')
        && timestamp.char_indices().all(|(at, c)| match at {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            26 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    let rest = rest.trim_start();
    shape_ok
        && ["INFO ", "WARN ", "ERROR ", "DEBUG "]
            .iter()
            .any(|level| rest.starts_with(level))
        && rest
            .split_once(' ')
            .is_some_and(|(_, target)| target.starts_with("rt_cleanup"))
}

fn has_control_character(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn sorted_outcomes(run: &Run) -> Vec<(String, String, Option<String>)> {
    let mut outcomes = run.outcomes();
    outcomes.sort();
    outcomes
}

fn a_hostile_value_forges_no_log_line_in_either_format(journal: Journal) {
    // A daemon for each run: each removes a container.
    let daemon = hostile_daemon();
    let state = hostile_state(journal);
    let text = spawn_pass(&state, &daemon.host, HOSTILE_OPTIONS).wait(RUN_TIMEOUT);
    text.assert_code(1);
    assert_eq!(
        sorted_outcomes(&text),
        expected_hostile_results(),
        "{}",
        text.stderr
    );
    assert_eq!(state.status(TERMINAL_GAME), "removed");
    assert_eq!(state.status(FORGING_GAME), "stopped");
    let lines: Vec<&str> = text.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        HOSTILE_LOG_LINES,
        "one line per event, none forged:\n{}",
        text.stderr
    );
    for line in &lines {
        assert!(
            begins_as_a_log_line(line) && !has_control_character(line),
            "a whole log line, without a control character: {line:?}"
        );
    }
    let failed = lines
        .iter()
        .find(|line| line.contains("result=failed") && line.contains("docker_error"))
        .unwrap_or_else(|| panic!("no line for the refused removal:\n{}", text.stderr));
    assert!(
        failed.contains(" INFO rt_cleanup::worker: record handled ")
            && failed.contains(
                r#"game_id="g-1\n2026-01-01T00:00:00.000000Z ERROR rt_cleanup: FORGED LINE from a game id""#
            )
            && failed.contains(r"FORGED LINE from the daemon\r\u{1b}[2K"),
        "the game id quoted and escaped, the daemon's message escaped: {failed}"
    );

    let daemon = hostile_daemon();
    let state = hostile_state(journal);
    let mut options = HOSTILE_OPTIONS.to_vec();
    options.extend(["--log-format", "json"]);
    let json = spawn_pass(&state, &daemon.host, &options).wait(RUN_TIMEOUT);
    json.assert_code(1);
    assert_eq!(
        sorted_outcomes(&json),
        expected_hostile_results(),
        "{}",
        json.stderr
    );
    let events: Vec<Value> = json
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    assert_eq!(events.len(), HOSTILE_LOG_LINES, "{}", json.stderr);
    let field_values = |field: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|event| event[field].as_str().map(str::to_owned))
            .collect()
    };
    for event in &events {
        let message = event["message"]
            .as_str()
            .expect("every event has a message");
        assert!(!has_control_character(message), "message {message:?}");
    }
    let games = field_values("game_id");
    for game in [
        FORGING_GAME,
        TERMINAL_GAME,
        LEASED_GAME,
        "g-5",
        ORPHAN_LABEL,
        FORGING_LABEL,
    ] {
        assert_eq!(
            games.iter().filter(|logged| *logged == game).count(),
            1,
            "the game id {game:?} is logged once, exactly as it is: {games:?}"
        );
    }
    assert!(field_values("state").contains(&ORPHAN_STATE.to_owned()));
    assert!(field_values("names").contains(&FORGING_NAME.to_owned()));
    let messages = field_values("error_message");
    assert!(
        messages
            .iter()
            .any(|message| message.contains(FORGING_DAEMON_MESSAGE)),
        "the daemon's message, exactly as it came: {messages:?}"
    );
}

in_both_journal_modes!(a_hostile_value_forges_no_log_line_in_either_format);

/// The journal's entries of a finished run: waits for its closing event.
fn entries_of_run(pid: u32) -> Vec<JournalEntry> {
    journal_entries(pid, &[], |entries| {
        entries.iter().any(|entry| {
            entry
                .text("MESSAGE")
                .is_some_and(|message| message.starts_with("pass finished"))
        })
    })
}

/// The entries of the native protocol (rt-cleanup's events), not its stdout's lines.
fn native(entries: &[JournalEntry]) -> Vec<&JournalEntry> {
    entries
        .iter()
        .filter(|entry| entry.text("_TRANSPORT").as_deref() == Some("journal"))
        .collect()
}

fn events_reach_the_journal_at_their_priority_with_their_fields(journal: Journal) {
    require_journald();
    let containers = Containers::new("journal-fields");
    let unique = unique_name("journal");
    let game = |what: &str| format!("g-{what}-{unique}");
    let (removed, running, leased) = (game("removed"), game("running"), game("leased"));
    let hostile = format!("g-hostile-{unique}\n2026-01-01T00:00:00Z ERROR forged\u{1b}[31m");
    let state = StateFile::new(journal);
    let gone = containers.create(&[]);
    let alive = containers.run(&[]);
    state.stopped(&removed, Some(&gone), 8);
    state.stopped(&running, Some(&alive), 8);
    state.stopped(&leased, None, 8);
    state.lease(&leased, "rtmanager/journal-test", now_ms() + 3_600_000);
    state.stopped(&hostile, None, 8);

    let mut args = pass_args(&state, &[]);
    args.retain(|arg| arg != "--output" && arg != "json");
    let (run, pid) = run_on_journal(&args);
    run.assert_code(1);
    assert!(run.stderr.is_empty(), "systemd-cat said: {}", run.stderr);
    assert_eq!(state.status(&removed), "removed");
    assert_eq!(state.status(&running), "stopped");

    let entries = entries_of_run(pid);
    let events = native(&entries);
    let holder = events[0].field("HOLDER");
    assert!(holder.starts_with("rt-cleanup/"), "{holder}");
    for event in &events {
        assert_eq!(event.field("SYSLOG_IDENTIFIER"), "rt-cleanup");
        assert_eq!(
            event.field("HOLDER"),
            holder,
            "one holder name for the whole run"
        );
        assert!(!has_control_character(&event.message()), "{:?}", event.0);
    }
    let of_game = |game: &str| -> &JournalEntry {
        let found: Vec<_> = events
            .iter()
            .filter(|event| event.bytes("GAME_ID").as_deref() == Some(game.as_bytes()))
            .collect();
        assert_eq!(found.len(), 1, "one event of {game:?}: {events:#?}");
        found[0]
    };
    for (game, priority, result, code, container) in [
        (&removed, "6", "removed", "-", gone.as_str()),
        (&running, "3", "failed", "container_running", alive.as_str()),
        (&leased, "4", "conflict", "conflict", "-"),
        (&hostile, "6", "replay_no_op", "replay_no_op", "-"),
    ] {
        let event = of_game(game);
        assert_eq!(event.field("PRIORITY"), priority, "{game:?}: {:?}", event.0);
        assert_eq!(event.field("RESULT"), result, "{game:?}");
        assert_eq!(event.field("ERROR_CODE"), code, "{game:?}");
        assert_eq!(event.field("CONTAINER_ID"), container, "{game:?}");
        assert_eq!(event.field("OP_KIND"), "cleanup_container", "{game:?}");
        let says = format!("record {}: {result}", game.escape_debug());
        assert!(
            event.message().starts_with(&says),
            "the message says what happened ({says}): {}",
            event.message()
        );
    }
    assert!(
        of_game(&running)
            .message()
            .contains(": failed (container_running): "),
        "{}",
        of_game(&running).message()
    );
    let end = events.last().expect("the run logged events");
    assert!(end
        .message()
        .starts_with("pass finished: 4 expired of 4 stopped: 1 removed"));
    assert_eq!(end.field("PRIORITY"), "3", "the run exits 1: an error");
    for (field, value) in [
        ("EXPIRED", "4"),
        ("REMOVED", "1"),
        ("REPLAY_NO_OP", "1"),
        ("CONFLICT", "1"),
        ("FAILED", "1"),
        ("DEFERRED", "0"),
        ("EXIT_STATUS", "1"),
        ("DRY_RUN", "false"),
    ] {
        assert_eq!(end.field(field), value, "{field}");
    }

    // The summary on stdout reaches the journal through the stream, as it did before; no log
    // line does.
    let lines: Vec<String> = entries
        .iter()
        .filter(|entry| entry.text("_TRANSPORT").as_deref() == Some("stdout"))
        .map(JournalEntry::message)
        .collect();
    assert_eq!(
        lines.len(),
        5,
        "four records and the closing line: {lines:#?}"
    );
    assert!(
        lines[4].starts_with("rt-cleanup: 4 expired of 4 stopped"),
        "{lines:#?}"
    );

    the_operators_queries_answer(pid, &removed);
}

/// What an on-call engineer types (docs/operations.md) answers: `-p err` shows the failed
/// record and the pass's end, `GAME_ID=` one game's event.
fn the_operators_queries_answer(pid: u32, removed_game: &str) {
    let errors = journal_entries(pid, &["-p", "err"], |entries| entries.len() >= 2);
    let errors: Vec<String> = errors.iter().map(JournalEntry::message).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains(": failed (container_running): "),
        "{errors:#?}"
    );
    assert!(errors[1].starts_with("pass finished"), "{errors:#?}");
    let by_game = journal_entries(pid, &[&format!("GAME_ID={removed_game}")], |found| {
        !found.is_empty()
    });
    assert_eq!(by_game.len(), 1);
    assert_eq!(by_game[0].field("RESULT"), "removed");
}

/// Runs the binary with `args` against the test daemon, its stdout and stderr on the journal
/// (see [`command_on_journal`]); the run, and the pid that journald records for it.
fn run_on_journal(args: &[String]) -> (Run, u32) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = command_on_journal(&args);
    run.env("DOCKER_HOST", &daemon().host);
    let spawned = Spawned::start(run);
    let pid = spawned.pid();
    (spawned.wait(RUN_TIMEOUT), pid)
}

in_both_journal_modes!(events_reach_the_journal_at_their_priority_with_their_fields);

#[test]
fn json_logs_under_the_journal_stay_json_lines_on_stderr() {
    require_journald();
    let state = StateFile::new(Journal::Wal);
    let game = unique_name("g-json-journal");
    state.stopped(&game, None, 8);
    let (run, pid) = run_on_journal(&pass_args(&state, &["--log-format", "json"]));
    run.assert_code(0);
    let entries = journal_entries(pid, &[], |entries| {
        entries
            .iter()
            .any(|entry| entry.message().contains("record handled"))
    });
    assert!(native(&entries).is_empty(), "no native event: {entries:#?}");
    let handled: Vec<Value> = entries
        .iter()
        .map(JournalEntry::message)
        .filter(|message| message.contains("record handled"))
        .map(|message| serde_json::from_str(&message).expect("a JSON log line"))
        .collect();
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0]["game_id"], game.as_str());
}

#[test]
fn a_bad_invocation_under_the_journal_is_an_error_there() {
    require_journald();
    // clap's refusal (a missing option), then rt-cleanup's own (a value out of range).
    for (args, first_line) in [
        (&["--state", "/nonexistent/state.db"][..], "error: "),
        (
            &["--retention", "0s"][..],
            "rt-cleanup: error: invalid --retention",
        ),
    ] {
        let spawned = Spawned::start(command_on_journal(args));
        let pid = spawned.pid();
        spawned.wait(RUN_TIMEOUT).assert_code(2);
        let errors = journal_entries(pid, &["-p", "err"], |entries| !entries.is_empty());
        assert_eq!(errors.len(), 1, "{args:?}: {errors:#?}");
        assert!(
            errors[0].message().starts_with(first_line),
            "{args:?}: {:?}",
            errors[0].0
        );
    }
}

#[test]
fn a_journal_stream_that_is_not_stderr_changes_nothing() {
    require_journald();
    let other = tempfile::NamedTempFile::new().unwrap();
    let stat = nix_free_stat(other.path());
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-piped", None, 8);
    let args = pass_args(&state, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = command(&args);
    run.env("DOCKER_HOST", &daemon().host)
        .env("JOURNAL_STREAM", stat);
    let spawned = Spawned::start(run);
    let pid = spawned.pid();
    let run = spawned.wait(RUN_TIMEOUT);
    run.assert_code(0);
    assert_eq!(run.stderr.lines().count(), 3, "{}", run.stderr);
    assert!(
        run.stderr.lines().all(begins_as_a_log_line),
        "{}",
        run.stderr
    );
    assert!(
        journal_entries(pid, &[], <[JournalEntry]>::is_empty).is_empty(),
        "nothing of this run is in the journal"
    );
}

/// `<device>:<inode>` of a file, as `JOURNAL_STREAM` names a file.
fn nix_free_stat(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    format!("{}:{}", metadata.dev(), metadata.ino())
}

#[test]
fn an_unusable_journal_socket_leaves_the_logs_on_stderr_saying_so() {
    // stderr is a file that JOURNAL_STREAM names, as if it were the journal's stream, and the
    // run sees a /run of its own (a tmpfs in a mount namespace of its own), without journald's
    // socket.
    let daemon = FakeDaemon::start(DOCKER_PING, None);
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-fallback", None, 8);
    let stderr_path = state.dir().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let args = pass_args(&state, &[]);
    let mut run = std::process::Command::new("unshare");
    run.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs rt-cleanup-test /run && exec "$0" "$@""#)
        .arg(crate::harness::binary())
        .args(&args)
        .env_remove("RT_CLEANUP_LOG")
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", &daemon.host)
        .env("JOURNAL_STREAM", nix_free_stat(&stderr_path))
        .stdin(std::process::Stdio::null())
        .stderr(stderr);
    let output = run.output().expect("unshare runs (the tests run as root)");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let logged = std::fs::read_to_string(&stderr_path).unwrap();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 4, "{logged}");
    assert!(
        lines[0].contains(
            " WARN rt_cleanup::logging: stderr is the journal, but journald's \
                           socket cannot be used ("
        ) && lines[0].ends_with("): logging text to stderr"),
        "{logged}"
    );
    assert!(
        lines.iter().all(|line| begins_as_a_log_line(line)),
        "{logged}"
    );
    assert!(lines[3].contains("record handled"), "{logged}");
}

/// Removes ANSI CSI sequences (colours, clearing a line).
fn without_csi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// What a terminal shows of each line a run wrote to it, and what it drew and took away:
/// each line (up to `\n`) as it stays on screen (what follows the last clearing of the line,
/// `\r` and `ESC [2K`), and everything that was cleared (where something was).
fn screen_of(output: &str) -> (Vec<String>, Vec<String>) {
    let mut shown = Vec::new();
    let mut cleared = Vec::new();
    for line in output.split('\n') {
        let mut parts: Vec<&str> = line.split("\r\u{1b}[2K").collect();
        let last = parts.pop().unwrap_or_default();
        cleared.extend(
            parts
                .iter()
                .map(|part| without_csi(part).trim_end().to_owned())
                .filter(|part| !part.is_empty()),
        );
        let last = without_csi(last.trim_end_matches('\r'));
        if !last.is_empty() {
            shown.push(last);
        }
    }
    (shown, cleared)
}

/// A state file of `records` records without a container (each a `replay_no_op`) and two
/// with an exited container (each `removed`).
fn state_for_progress(containers: &Containers, records: usize) -> StateFile {
    let state = StateFile::new(Journal::Rollback);
    for n in 0..records {
        state.stopped(&format!("g-{n:03}"), None, 8);
    }
    for n in 0..2 {
        let id = containers.create(&[]);
        state.stopped(&format!("g-container-{n}"), Some(&id), 8);
    }
    state
}

#[test]
fn a_terminal_shows_one_progress_line_below_whole_log_lines() {
    let containers = Containers::new("progress-terminal");
    let state = state_for_progress(&containers, 20);
    let mut args = pass_args(&state, &[]);
    args.retain(|arg| arg != "--output" && arg != "json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = command_on_terminal(&args);
    run.env("DOCKER_HOST", &daemon().host);
    let run = Spawned::start(run).wait(RUN_TIMEOUT);
    run.assert_code(0);
    let (shown, cleared) = screen_of(&run.stdout);
    let progress: Vec<&String> = cleared
        .iter()
        .filter(|line| line.starts_with('[') && line.contains("/22 done, "))
        .collect();
    assert!(
        !progress.is_empty() && progress.len() == cleared.len(),
        "a progress line was drawn, and nothing else was taken away: {cleared:#?}"
    );
    for line in &progress {
        let (counts, rest) = line.split_once(" done, ").unwrap();
        let done: usize = counts
            .rsplit(' ')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(done <= 22, "{line}");
        assert!(
            rest.contains(" removed, ")
                && rest.contains(" failed, ")
                && rest.contains("/s, ")
                && rest.ends_with(" left"),
            "done/total, removed and failed, the rate, the time left: {line}"
        );
    }
    assert!(
        progress
            .iter()
            .any(|line| line.contains(" 1 removed") || line.contains(" 2 removed")),
        "the removals are counted: {progress:#?}"
    );
    let logs: Vec<&String> = shown
        .iter()
        .filter(|line| begins_as_a_log_line(line))
        .collect();
    let handled = logs
        .iter()
        .filter(|line| line.contains(" record handled op_kind=\"cleanup_container\" game_id="))
        .count();
    assert_eq!(handled, 22, "each record's line, whole: {shown:#?}");
    assert_eq!(logs.len(), 24, "{shown:#?}");
    for line in logs.iter().filter(|line| line.contains("record handled")) {
        assert!(
            !line.contains(" done, ") && line.ends_with("lease_kept_until=\"-\""),
            "no log line holds a piece of the progress line: {line}"
        );
    }
    let summary: Vec<&String> = shown
        .iter()
        .filter(|line| !begins_as_a_log_line(line))
        .collect();
    assert_eq!(
        summary.len(),
        23,
        "the summary, after the progress line was taken away: {summary:#?}"
    );
    assert!(summary[22].starts_with("rt-cleanup: 22 expired of 22 stopped"));
}

#[test]
fn json_logs_on_a_terminal_draw_no_progress_line() {
    let containers = Containers::new("progress-json");
    let state = state_for_progress(&containers, 3);
    let args = pass_args(&state, &["--log-format", "json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = command_on_terminal(&args);
    run.env("DOCKER_HOST", &daemon().host);
    let run = Spawned::start(run).wait(RUN_TIMEOUT);
    run.assert_code(0);
    assert!(!run.stdout.contains(" done, "), "{}", run.stdout);
    let logs: Vec<Value> = run
        .stdout
        .split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| line.starts_with("{\"timestamp\""))
        .map(|line| serde_json::from_str(line).expect("a whole JSON line"))
        .collect();
    assert_eq!(logs.len(), 2 + 5, "{}", run.stdout);
}

#[test]
fn a_piped_run_prints_what_it_printed_before() {
    let containers = Containers::new("progress-pipe");
    let state = state_for_progress(&containers, 3);
    let mut args = pass_args(&state, &[]);
    args.retain(|arg| arg != "--output" && arg != "json");
    let run = spawn_pass_text(&args).wait(RUN_TIMEOUT);
    run.assert_code(0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2 + 5, "{}", run.stderr);
    let after_timestamp = |line: &str| line.split_once(' ').map(|(_, rest)| rest.to_owned());
    assert!(
        lines.iter().all(|line| begins_as_a_log_line(line)),
        "{}",
        run.stderr
    );
    assert!(
        after_timestamp(lines[1]).unwrap().starts_with(
            " INFO rt_cleanup: selected the expired stopped records stopped=5 expired=5 \
             dry_run=false from_plan=false"
        ),
        "{}",
        run.stderr
    );
    for (line, game) in lines[2..5].iter().zip(["g-000", "g-001", "g-002"]) {
        assert_eq!(
            after_timestamp(line).unwrap(),
            format!(
                " INFO rt_cleanup::worker: record handled op_kind=\"cleanup_container\" \
                 game_id={game} container_id=\"-\" result=replay_no_op \
                 error_code=\"replay_no_op\" error_message=the record names no container \
                 lease_kept_until=\"-\""
            )
        );
    }
    assert!(
        !run.stderr.contains('\r')
            && !run.stderr.contains('\u{1b}')
            && !run.stderr.contains(" done, "),
        "no progress line and no colour: {:?}",
        run.stderr
    );
}

/// Starts a pass with `args` (text summary) against the test daemon in the background.
fn spawn_pass_text(args: &[String]) -> Spawned {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = command(&args);
    run.env("DOCKER_HOST", &daemon().host);
    Spawned::start(run)
}

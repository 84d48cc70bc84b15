//! Hostile and broken input: property tests over the command line, one end-to-end run of hostile
//! rows against a daemon whose request log is read back, and a database with corrupted pages.
//! (The property tests of the rows a state file may hold are beside the code, in
//! `src/candidate.rs`.)

use std::collections::HashSet;
use std::time::Duration;

use clap::Parser;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rt_cleanup::cli::Arguments;
use rt_cleanup::config::Config;
use rusqlite::types::Value;

use crate::harness::{days_ago, pass, Journal, PrivateDaemon, Rng, StateFile};

/// The contract's reference syntax, written out independently of the code under test:
/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`.
fn is_valid_reference(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && text.len() <= 255
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are shown with their minimal input; no regression file is written into the
        // source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A duration as an operator or a typo might write it, from tiny to overflowing.
fn duration_text() -> impl Strategy<Value = String> {
    // The edges: a third of u64::MAX seconds is the first that three Docker timeouts overflow.
    let number = prop_oneof![
        3 => 0..100_u64,
        2 => any::<u64>(),
        2 => prop::sample::select(vec![u64::MAX / 3 + 1, u64::MAX / 2, u64::MAX / 1000, u64::MAX]),
    ];
    let unit = prop::sample::select(vec![
        "s", "s", "s", "ms", "m", "h", "d", "w", "years", "", "ns", " days", "x",
    ]);
    (number, unit).prop_map(|(n, unit)| format!("{n}{unit}"))
}

fn option_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => duration_text(),
        1 => any::<String>(),
        1 => "[a-z0-9:/._-]{0,24}",
        1 => Just("unix:///var/run/docker.sock".to_owned()),
        1 => Just("tcp://127.0.0.1:2375".to_owned()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just(String::new()),
    ]
}

fn command_line() -> impl Strategy<Value = Vec<String>> {
    let with = |options: Vec<&'static str>, values: BoxedStrategy<String>| {
        (prop::sample::select(options), values)
            .prop_map(|(option, value)| format!("{option}={value}"))
    };
    // Values are mostly of the option's own kind, so that most command lines get past clap and
    // reach the checks of Config::try_from; the rest are anything at all.
    let durations = with(
        vec![
            "--retention",
            "--docker-timeout",
            "--lock-wait",
            "--lease-ttl",
        ],
        prop_oneof![4 => duration_text(), 1 => option_value()].boxed(),
    );
    let numbers = with(
        vec!["--max-removals", "--concurrency"],
        prop_oneof![3 => any::<u64>().prop_map(|n| n.to_string()), 1 => option_value()].boxed(),
    );
    let formats = with(
        vec!["--output", "--log-format"],
        prop_oneof![
            3 => prop::sample::select(vec!["text".to_owned(), "json".to_owned()]),
            1 => option_value(),
        ]
        .boxed(),
    );
    let texts = with(
        vec!["--state", "--owner-label", "--op-source", "--docker-host"],
        option_value().boxed(),
    );
    let pair = prop_oneof![
        6 => durations,
        1 => numbers,
        1 => formats,
        1 => texts,
        1 => Just("--dry-run".to_owned()),
        1 => any::<String>(),
    ];
    // The retention is checked first, so it is mostly a valid one: the options after it must
    // be reached too.
    let retention = prop_oneof![
        3 => Just("7d".to_owned()),
        1 => duration_text(),
    ];
    (retention, prop::collection::vec(pair, 0..6)).prop_map(|(retention, mut rest)| {
        rest.insert(0, format!("--retention={retention}"));
        rest
    })
}

proptest! {
    #![proptest_config(proptest_config(1_000))]

    #[test]
    fn any_command_line_is_parsed_or_refused_without_panicking(arguments in command_line()) {
        let line = std::iter::once("rt-cleanup".to_owned()).chain(arguments);
        if let Ok(arguments) = Arguments::try_parse_from(line) {
            // Either a configuration or a message that names an option; never a panic.
            if let Err(error) = Config::try_from(arguments) {
                prop_assert!(error.to_string().starts_with("invalid --"), "{error}");
            }
        }
    }
}

#[test]
fn a_docker_timeout_too_long_to_triple_is_refused_not_a_panic() {
    // 7e18 seconds parses (it fits in a u64), but three of them do not fit in a Duration: such a
    // value is refused as too long, before any arithmetic on it.
    for (option, value) in [
        ("--docker-timeout", "7000000000000000000s"),
        ("--lock-wait", "18000000000000000000s"),
    ] {
        let arguments =
            Arguments::try_parse_from(["rt-cleanup", "--retention", "7d", option, value]).unwrap();
        let outcome = std::panic::catch_unwind(|| Config::try_from(arguments));
        let result = outcome.unwrap_or_else(|_| {
            panic!("Config::try_from panicked on {option} {value} instead of refusing it")
        });
        let error = result.expect_err("no lease can outlast three such timeouts");
        assert!(error.to_string().contains(option), "{error}");
    }
}

// ------------------------------------------------------------------------------------------------
// End to end: hostile rows through the binary, against a daemon whose request log is read back.
// ------------------------------------------------------------------------------------------------

/// Rows written by a hostile or broken runtime manager: every column of every type.
const HOSTILE_ROWS: usize = 40;

fn hostile_value(rng: &mut Rng, sentinel: &str, sentinel_id: &str, index: usize) -> Value {
    let junk: String = (0..rng.between(0, 12))
        .map(|_| char::from_u32(rng.between(1, 0x2FF) as u32).unwrap_or('?'))
        .collect();
    match rng.between(0, 21) {
        0 => Value::Text(format!("../{sentinel}")),
        1 => Value::Text(format!("{sentinel}/../../images/json")),
        2 => Value::Text(format!("{sentinel}?force=true")),
        3 => Value::Text(format!("{sentinel}#")),
        4 => Value::Text(format!("%2e%2e/{sentinel}")),
        5 => Value::Text(format!(" {sentinel}")),
        6 => Value::Text(format!("{sentinel}\n")),
        7 => Value::Text(format!("{}/", &sentinel_id[..12])),
        8 => Value::Text(format!("-{sentinel}")),
        9 => Value::Text("a".repeat(256)),
        10 => Value::Text(junk),
        11 => Value::Blob(sentinel.as_bytes().to_vec()),
        12 => Value::Real(1.5),
        13 => Value::Null,
        14 => Value::Text(format!("{sentinel}\u{0}")),
        // Valid references to containers that do not exist; "zz" is no hex prefix of any id.
        15 | 18 | 19 => Value::Text(format!("zz-missing-{index}")),
        16 | 20 => Value::Text(format!("zz.missing_{index}.{}", "x".repeat(200))),
        _ => Value::Integer(rng.next_u64() as i64),
    }
}

fn hostile_timestamp(rng: &mut Rng) -> Value {
    match rng.between(0, 9) {
        0 => Value::Text("last tuesday".to_owned()),
        1 => Value::Real(1.0e12),
        2 => Value::Blob(vec![0, 1, 2]),
        3 => Value::Integer(-1),
        4 => Value::Integer(i64::MAX),
        5 => Value::Integer(i64::MIN),
        _ => Value::Integer(days_ago(8 + rng.between(0, 100) as i64)),
    }
}

fn hostile_status(rng: &mut Rng) -> Value {
    match rng.between(0, 9) {
        0 => Value::Text("running".to_owned()),
        1 => Value::Text("STOPPED".to_owned()),
        2 => Value::Text("stopped ".to_owned()),
        3 => Value::Blob(b"stopped".to_vec()),
        _ => Value::Text("stopped".to_owned()),
    }
}

/// Whether a request that rt-cleanup sent is one it may send: the preflight, the listing, or the
/// removal or inspection of a well-formed reference.
fn is_allowed_request(request: &str) -> bool {
    let Some((method, target)) = request.split_once(' ') else {
        return false;
    };
    if matches!(request, "HEAD /_ping" | "GET /_ping" | "GET /version") {
        return true;
    }
    let Some(rest) = target.strip_prefix("/v1.") else {
        return false;
    };
    let Some((minor, rest)) = rest.split_once('/') else {
        return false;
    };
    if minor.is_empty() || !minor.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let (path, _query) = rest.split_once('?').unwrap_or((rest, ""));
    let Some(container) = path.strip_prefix("containers/") else {
        return false;
    };
    match (method, container.strip_suffix("/json")) {
        ("GET", None) => container == "json",
        ("GET", Some(reference)) => is_valid_reference(reference),
        ("DELETE", None) => is_valid_reference(container),
        _ => false,
    }
}

#[test]
fn hostile_rows_of_every_type_never_reach_any_endpoint_but_a_valid_container_path() {
    let mut rng = Rng::seeded("hostile rows");
    let private = PrivateDaemon::start();
    let sentinel = format!("rtcsentinel{}", std::process::id());
    let sentinel_id = private.create_named(&sentinel);
    let state = StateFile::new(Journal::Wal);
    let connection = state.connect();
    for index in 0..HOSTILE_ROWS {
        let game_id = match rng.between(0, 5) {
            0 => Value::Blob(format!("g-{index}").into_bytes()),
            1 => Value::Integer(index as i64),
            _ => Value::Text(format!("g-{index}-\u{1F47E}'\"; DROP TABLE x;--")),
        };
        let container = hostile_value(&mut rng, &sentinel, &sentinel_id, index);
        let status = hostile_status(&mut rng);
        let last_op_at = hostile_timestamp(&mut rng);
        connection
            .execute(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![game_id, container, status, last_op_at],
            )
            .unwrap();
    }
    drop(connection);

    let offset = private.log_len();
    let mut runs = Vec::new();
    for extra in [&["--dry-run"][..], &[][..]] {
        let args = crate::harness::pass_args(&state, extra);
        let command = private.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        runs.push(crate::harness::Spawned::start(command).wait(Duration::from_secs(60)));
    }
    let requests = private.requests_since(offset);

    for run in &runs {
        assert!(
            matches!(run.code, Some(0 | 1)),
            "a pass over hostile rows ends normally: {run:?}"
        );
        for record in run.json()["records"].as_array().unwrap() {
            let result = record["result"].as_str().unwrap();
            let container = record["container_id"].as_str();
            if matches!(result, "removed" | "replay_no_op") {
                assert!(container.is_none_or(is_valid_reference), "{record}");
            }
            if container.is_some_and(|c| !is_valid_reference(c)) {
                assert_eq!(record["error_code"], "invalid_record", "{record}");
            }
        }
    }
    let verdicts = |run: &crate::harness::Run| -> Vec<(String, String, String)> {
        run.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let text = |key: &str| r[key].to_string();
                (text("game_id"), text("result"), text("error_code"))
            })
            .collect()
    };
    assert_eq!(
        verdicts(&runs[0]),
        verdicts(&runs[1]),
        "the dry run predicted the real run"
    );
    assert_eq!(
        private.state(&sentinel_id).as_deref(),
        Some("created"),
        "the sentinel survives"
    );
    assert!(
        !requests.is_empty(),
        "the daemon log shows the passes' requests"
    );
    let refused: Vec<&String> = requests.iter().filter(|r| !is_allowed_request(r)).collect();
    assert!(
        refused.is_empty(),
        "requests outside the allowed paths: {refused:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| !r.starts_with("DELETE") || !r.contains(&sentinel)),
        "no removal named the sentinel"
    );
    assert_eq!(state.integrity(), "ok");
    let distinct: HashSet<&String> = requests.iter().collect();
    println!(
        "hostile rows: {HOSTILE_ROWS} rows, {} requests ({} distinct), all allowed: {distinct:?}",
        requests.len(),
        distinct.len()
    );
    for run in &runs {
        println!("hostile rows: {}", run.json()["counts"]);
    }
}

// ------------------------------------------------------------------------------------------------
// The text summary of a large dry run over hostile values, line by line against its JSON.
// ------------------------------------------------------------------------------------------------

/// Expired records of the large text dry run: enough for several of the summary's 256 KiB writes.
const TEXT_RECORDS: usize = 4_000;

/// Pieces of the hostile game ids: everything the text summary must quote or escape, and what
/// it must leave as it is.
const GAME_PIECES: [&str; 18] = [
    "g",
    "-",
    ".",
    "\"",
    "'",
    "\\",
    "\n",
    "\t",
    "\u{0}",
    "\u{7f}",
    " ",
    "=",
    "é",
    "\u{301}",
    "\u{200b}",
    "\u{202e}",
    "\u{1F47E}",
    "x:y/z_1",
];

/// A value of the text summary as docs/contract.md describes it, written out independently of
/// the code under test: plain (ASCII letters and digits, `-`, `_`, `.`, `:`, `/`) as it is, any
/// other value, the empty one included, quoted with Rust's `escape_debug`.
fn shown_in_text(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
    if plain {
        value.to_owned()
    } else {
        format!("\"{}\"", value.escape_debug())
    }
}

/// The text line of a record of the JSON summary.
fn text_line(record: &serde_json::Value) -> String {
    let text = |key: &str| record[key].as_str();
    let mut line = format!(
        "{:<12} game_id={} container_id={} last_op_at={}",
        text("result").unwrap(),
        shown_in_text(text("game_id").unwrap()),
        text("container_id").map_or("-".to_owned(), shown_in_text),
        text("last_op_at").unwrap_or("-"),
    );
    if let Some(code) = text("error_code") {
        line.push_str(" error_code=");
        line.push_str(code);
    }
    if let Some(message) = text("error_message") {
        assert!(!message.contains("force remove"), "a dry run's own words");
        line.push_str(" message=");
        line.push_str(&shown_in_text(message));
    }
    line
}

/// A hostile state file for the text dry run: [`TEXT_RECORDS`] expired records whose game ids
/// are made of [`GAME_PIECES`] (some stored as blobs, numbers or bytes that are not UTF-8),
/// whose containers are missing, invalid, absent or real, with hostile `last_op_at` values
/// among them, and leases held by hostile holders.
fn hostile_text_state(journal: Journal, rng: &mut Rng, real: &[String]) -> StateFile {
    let state = StateFile::new(journal);
    let mut connection = state.connect();
    let transaction = connection.transaction().unwrap();
    for index in 0..TEXT_RECORDS {
        let pieces: String = (0..rng.between(0, 5))
            .map(|_| GAME_PIECES[rng.between(0, GAME_PIECES.len() as u64 - 1) as usize])
            .collect();
        let game = match (index, rng.between(0, 39)) {
            (0, _) => Value::Text(String::new()),
            (_, 0) => Value::Blob(format!("{pieces}{index}").into_bytes()),
            (_, 1) => Value::Integer(index as i64),
            _ => Value::Text(format!("{pieces}{index}")),
        };
        let container = match rng.between(0, 19) {
            0..=3 => Value::Null,
            4 => Value::Text(format!("../{index}")),
            5 => Value::Text(format!("a b\n{index}\"'\\")),
            6 => Value::Text("c".repeat(300)),
            7 if index < real.len() * 50 => Value::Text(real[index % real.len()].clone()),
            _ => Value::Text(format!("zz-missing-{index}")),
        };
        // Distinct ages, so that the order of the records is the same in every run.
        let last_op_at = match rng.between(0, 49) {
            0 => Value::Real(1.0e12 + index as f64),
            1 => Value::Text(format!("last tuesday {index}")),
            2 => Value::Blob(vec![0, 0xff, (index % 256) as u8]),
            3 => Value::Integer(-1 - index as i64),
            _ => Value::Integer(days_ago(8) - index as i64 * 60_000),
        };
        transaction
            .execute(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, 'stopped', ?3)",
                rusqlite::params![game, container, last_op_at],
            )
            .unwrap();
        if let (Value::Text(game), 0) = (&game, rng.between(0, 19)) {
            let holder = format!("rt\"mgr\n{}", GAME_PIECES[index % GAME_PIECES.len()]);
            let expires_at = if index % 2 == 0 {
                i64::MAX
            } else {
                days_ago(-1)
            };
            transaction
                .execute(
                    "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![game, holder, expires_at],
                )
                .unwrap();
        }
    }
    // Game ids whose bytes are not UTF-8, which the summaries show as \xNN.
    transaction
        .execute_batch(&format!(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) VALUES \
             (CAST(X'67ff0a22' AS TEXT), NULL, 'stopped', {0}), \
             (CAST(X'c3' AS TEXT), 'zz-missing', 'stopped', {0});",
            days_ago(9)
        ))
        .unwrap();
    transaction.commit().unwrap();
    state
}

/// The text summary is the default output, and an operator reads it during an incident: over
/// thousands of hostile records it shows each record exactly as the JSON summary does, every
/// value quoted and escaped where it must be, a line each, and the closing count line.
fn a_large_text_dry_run_shows_every_hostile_record_as_the_json_does(journal: Journal) {
    let mut rng = Rng::seeded("large text dry run");
    let containers = crate::harness::Containers::new("large-text-dry-run");
    let real: Vec<String> = (0..3).map(|_| containers.create(&[])).collect();
    let state = hostile_text_state(journal, &mut rng, &real);
    let path = state.path().display().to_string();

    let text = crate::harness::run(&["--retention", "7d", "--state", &path, "--dry-run"]);
    let json = pass(&state, &["--dry-run"]);
    assert_eq!(text.code, json.code, "{}", text.stderr);
    assert!(matches!(text.code, Some(0 | 1)), "{}", text.stderr);
    let summary = json.json();
    let records = summary["records"].as_array().unwrap();
    assert_eq!(records.len(), TEXT_RECORDS + 2, "every record is expired");
    let results: HashSet<&str> = records
        .iter()
        .map(|record| record["result"].as_str().unwrap())
        .collect();
    assert!(
        ["removed", "replay_no_op", "conflict", "failed"]
            .iter()
            .all(|result| results.contains(result)),
        "every prediction a dry run makes here: {results:?}"
    );

    let lines: Vec<&str> = text.stdout.split_terminator('\n').collect();
    assert_eq!(
        lines.len(),
        records.len() + 1,
        "a line per record and the count line"
    );
    for (n, (line, record)) in lines.iter().zip(records).enumerate() {
        assert_eq!(*line, text_line(record), "line {n}, of {record}");
    }
    let counts = &summary["counts"];
    let threshold = lines[records.len()]
        .split_once("threshold ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or_else(
            || panic!("the count line names the threshold: {}", text.stdout),
            |(threshold, _)| threshold,
        );
    assert!(humantime::parse_rfc3339(threshold).is_ok(), "{threshold}");
    let count = |key: &str| counts[key].as_u64().unwrap();
    assert_eq!(
        lines[records.len()],
        format!(
            "rt-cleanup dry run: {} expired of {} stopped (retention 7days, threshold {threshold}): \
             {} removed, {} replay_no_op, {} conflict, {} failed, {} deferred",
            count("expired"),
            count("stopped"),
            count("removed"),
            count("replay_no_op"),
            count("conflict"),
            count("failed"),
            count("deferred"),
        )
    );
    println!(
        "large text dry run: {} records, {} bytes of text, counts {counts}",
        records.len(),
        text.stdout.len()
    );
}
in_both_journal_modes!(a_large_text_dry_run_shows_every_hostile_record_as_the_json_does);

// ------------------------------------------------------------------------------------------------
// A database with corrupted pages.
// ------------------------------------------------------------------------------------------------

#[test]
fn a_state_file_with_corrupted_pages_exits_2_with_one_clear_line_and_is_left_as_it_was() {
    let state = StateFile::new(Journal::Rollback);
    {
        let connection = state.connect();
        let padding = "p".repeat(600);
        for index in 0..300 {
            connection
                .execute(
                    "INSERT INTO runtime_records \
                     (game_id, container_id, status, last_op_at, rtmanager_note) \
                     VALUES (?1, NULL, 'stopped', ?2, ?3)",
                    rusqlite::params![format!("g-{index:04}"), days_ago(9), padding],
                )
                .unwrap();
        }
    }
    let mut bytes = state.bytes();
    let page_size = 4096;
    let pages = bytes.len() / page_size;
    assert!(pages > 30, "a multi-page file: {pages} pages");
    println!("corrupted pages: {} of {pages} pages", pages / 3);
    // The b-tree headers of the middle third of the pages become garbage.
    for page in pages / 3..2 * pages / 3 {
        let start = page * page_size;
        bytes[start..start + 64].fill(0xA7);
    }
    std::fs::write(state.path(), &bytes).unwrap();

    for extra in [&[][..], &["--dry-run"][..]] {
        let run = pass(&state, extra);
        run.assert_code(2);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|line| line.contains("ERROR"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line: {}", run.stderr);
        assert!(
            errors[0].contains("malformed")
                && errors[0].contains(&state.path().display().to_string()),
            "the line names the file and the damage: {}",
            errors[0]
        );
        assert!(run.stdout.is_empty(), "no summary: {}", run.stdout);
        assert_eq!(
            state.bytes(),
            bytes,
            "{extra:?}: the file is left as it was"
        );
    }
}

//! Creates the demo state file of `scripts/demo.sh`, and shows what a pass did to it.
//!
//! ```text
//! cargo run --example demo-state -- create STATE EXITED RUNNING GONE_REF LEASED
//! cargo run --example demo-state -- show STATE
//! ```
//!
//! `create` writes a contract-version-1 state file whose records exercise every result: an
//! expired game whose container exited (`removed`), one whose container still runs (`failed`,
//! `container_running`), one whose container is already gone (`replay_no_op`), one leased by the
//! runtime manager (`conflict`), one with an unusable container id (`failed`, `invalid_record`),
//! one stopped only yesterday (not expired), and one running game.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

/// The contract's schema, shared with the tests and the benchmark.
const SCHEMA: &str = include_str!("state-schema.sql");

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970");
    i64::try_from(since_epoch.as_millis()).expect("epoch milliseconds fit in i64")
}

fn create(
    path: &Path,
    exited: &str,
    running: &str,
    gone: &str,
    leased: &str,
) -> rusqlite::Result<()> {
    if path.exists() {
        std::fs::remove_file(path).expect("the old demo state file can be removed");
    }
    let connection = Connection::open(path)?;
    connection.execute_batch(SCHEMA)?;
    let now = now_ms();
    let records: [(&str, Option<&str>, &str, i64); 7] = [
        ("demo-exited", Some(exited), "stopped", now - 10 * DAY_MS),
        (
            "demo-still-running",
            Some(running),
            "stopped",
            now - 9 * DAY_MS,
        ),
        ("demo-already-gone", Some(gone), "stopped", now - 8 * DAY_MS),
        ("demo-leased", Some(leased), "stopped", now - 12 * DAY_MS),
        (
            "demo-bad-id",
            Some("../../images/busybox"),
            "stopped",
            now - 11 * DAY_MS,
        ),
        ("demo-yesterday", None, "stopped", now - DAY_MS),
        ("demo-live", Some(running), "running", now - 20 * DAY_MS),
    ];
    for (game, container, status, last_op_at) in records {
        connection.execute(
            "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![game, container, status, last_op_at],
        )?;
    }
    connection.execute(
        "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
        params!["demo-leased", "rtmanager/demo-host/4242", now + 3_600_000],
    )?;
    println!(
        "created {} with 7 records (6 stopped, 5 of them expired at --retention 7d)",
        path.display()
    );
    Ok(())
}

fn show(path: &Path) -> rusqlite::Result<()> {
    let connection = Connection::open(path)?;
    println!("runtime_records:");
    let mut records = connection.prepare(
        "SELECT game_id, status, last_op_at, coalesce(substr(container_id, 1, 12), '-') \
         FROM runtime_records ORDER BY game_id",
    )?;
    let rows = records.query_map([], |row| {
        Ok(format!(
            "  {:<20} {:<8} last_op_at={} container={}",
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?
        ))
    })?;
    for row in rows {
        println!("{}", row?);
    }
    println!("operation_log:");
    let mut log = connection.prepare(
        "SELECT id, game_id, outcome, coalesce(error_code, '-'), op_source FROM operation_log \
         ORDER BY id",
    )?;
    let rows = log.query_map([], |row| {
        Ok(format!(
            "  #{} {:<20} {:<8} error_code={} op_source={}",
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?
        ))
    })?;
    for row in rows {
        println!("{}", row?);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["create", path, exited, running, gone, leased] => {
            create(Path::new(path), exited, running, gone, leased)
        }
        ["show", path] => show(Path::new(path)),
        _ => {
            eprintln!("usage: demo-state create STATE EXITED RUNNING GONE_REF LEASED | show STATE");
            std::process::exit(2);
        }
    };
    if let Err(error) = result {
        eprintln!("demo-state: {error}");
        std::process::exit(1);
    }
}

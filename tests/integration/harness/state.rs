//! A real state file in a temp dir, and what is in it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, Connection, ToSql};
use tempfile::TempDir;

use super::{days_ago, now_ms};

/// The journal mode a test state file is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// SQLite's default rollback journal.
    Rollback,
    /// Write-ahead log.
    Wal,
}

/// The contract's schema (shared with the demo and the benchmark), plus a column the runtime
/// manager keeps that rt-cleanup must not touch.
pub const SCHEMA: &str = concat!(
    include_str!("../../../examples/state-schema.sql"),
    "ALTER TABLE runtime_records ADD COLUMN rtmanager_note TEXT DEFAULT 'untouched';"
);

/// One `operation_log` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// `game_id`.
    pub game_id: String,
    /// `op_kind`.
    pub op_kind: String,
    /// `op_source`.
    pub op_source: String,
    /// `outcome`.
    pub outcome: String,
    /// `error_code`.
    pub error_code: Option<String>,
    /// `error_message`.
    pub error_message: Option<String>,
    /// `container_id`.
    pub container_id: Option<String>,
    /// `started_at`.
    pub started_at: i64,
    /// `finished_at`.
    pub finished_at: i64,
}

/// A record as it is in the state file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `status`.
    pub status: String,
    /// `container_id`.
    pub container_id: Value,
    /// `last_op_at`.
    pub last_op_at: Value,
    /// The column rt-cleanup does not know.
    pub rtmanager_note: Value,
}

/// A state file in its own temp dir.
pub struct StateFile {
    dir: TempDir,
    path: PathBuf,
}

impl StateFile {
    /// A new state file of contract version 1.
    pub fn new(journal: Journal) -> Self {
        Self::create(tempfile::tempdir().unwrap(), journal)
    }

    fn create(dir: TempDir, journal: Journal) -> Self {
        let path = dir.path().join("state.db");
        let connection = Connection::open(&path).unwrap();
        if journal == Journal::Wal {
            let mode: String = connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        connection.execute_batch(SCHEMA).unwrap();
        Self { dir, path }
    }

    /// The file's journal mode and `user_version`, which rt-cleanup must never change.
    pub fn journal_and_version(&self) -> (String, i64) {
        let connection = self.connect();
        let mode = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        let version = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        (mode, version)
    }

    /// Every schema object (tables, indexes, triggers, views) as `type name sql`, in order:
    /// the contract forbids rt-cleanup to change any.
    pub fn schema(&self) -> Vec<String> {
        let connection = self.connect();
        let mut statement = connection
            .prepare("SELECT type || ' ' || name || ' ' || ifnull(sql, '') FROM sqlite_schema ORDER BY name")
            .expect("the schema query prepares");
        statement
            .query_map([], |row| row.get(0))
            .expect("the schema query runs")
            .collect::<Result<_, _>>()
            .expect("the schema reads")
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temp dir holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection of the test's own, as the runtime manager would have.
    pub fn connect(&self) -> Connection {
        let connection = Connection::open(&self.path).unwrap();
        connection.busy_timeout(Duration::from_secs(30)).unwrap();
        connection
    }

    /// Inserts a record.
    pub fn insert(
        &self,
        game: &str,
        container: Option<&str>,
        status: &str,
        last_op_at: &dyn ToSql,
    ) {
        self.connect()
            .execute(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![game, container, status, last_op_at],
            )
            .unwrap();
    }

    /// Inserts a stopped record that expired `days` days ago.
    pub fn stopped(&self, game: &str, container: Option<&str>, days: i64) {
        self.insert(game, container, "stopped", &days_ago(days));
    }

    /// Inserts a lease.
    pub fn lease(&self, game: &str, holder: &str, expires_at: i64) {
        self.connect()
            .execute(
                "INSERT OR REPLACE INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
                params![game, holder, expires_at],
            )
            .unwrap();
    }

    /// Takes a game's lease as the runtime manager does (contract section 1: one statement that
    /// inserts the row, or takes it over only where it expired), for `ttl_ms`; whether it was
    /// taken.
    pub fn acquire_lease(&self, game: &str, holder: &str, ttl_ms: i64) -> bool {
        let now = now_ms();
        let taken = self
            .connect()
            .execute(
                "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (game_id) DO UPDATE \
                   SET holder = excluded.holder, expires_at = excluded.expires_at \
                   WHERE game_leases.expires_at <= ?4",
                params![game, holder, now + ttl_ms, now],
            )
            .unwrap();
        taken == 1
    }

    /// Gives a lease back as its holder does (contract section 1: it deletes its own row);
    /// whether the row was still that holder's.
    pub fn release_lease(&self, game: &str, holder: &str) -> bool {
        let released = self
            .connect()
            .execute(
                "DELETE FROM game_leases WHERE game_id = ?1 AND holder = ?2",
                params![game, holder],
            )
            .unwrap();
        released == 1
    }

    /// Sets a record's container, status and `last_op_at`, as the runtime manager does under
    /// the game's lease.
    pub fn set_record(&self, game: &str, container: &str, status: &str, last_op_at: i64) {
        let changed = self
            .connect()
            .execute(
                "UPDATE runtime_records SET container_id = ?2, status = ?3, last_op_at = ?4 \
                 WHERE game_id = ?1",
                params![game, container, status, last_op_at],
            )
            .unwrap();
        assert_eq!(changed, 1, "record {game} exists");
    }

    /// Takes the file's write lock (`BEGIN EXCLUSIVE`) on a connection of the test's own, as a
    /// runtime manager in a long transaction would; it is held until the lock is released or
    /// dropped.
    pub fn lock_exclusive(&self) -> ExclusiveLock {
        let connection = self.connect();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        ExclusiveLock(Some(connection))
    }

    /// The leases, as `(game_id, holder, expires_at)`.
    pub fn leases(&self) -> Vec<(String, String, i64)> {
        let connection = self.connect();
        let mut statement = connection
            .prepare("SELECT game_id, holder, expires_at FROM game_leases ORDER BY 1")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A record, or `None`.
    pub fn record(&self, game: &str) -> Option<Record> {
        let connection = self.connect();
        connection
            .query_row(
                "SELECT status, container_id, last_op_at, rtmanager_note FROM runtime_records \
                 WHERE game_id = ?1",
                [game],
                |row| {
                    Ok(Record {
                        status: row.get(0)?,
                        container_id: row.get(1)?,
                        last_op_at: row.get(2)?,
                        rtmanager_note: row.get(3)?,
                    })
                },
            )
            .ok()
    }

    /// A record's status; panics when the record is missing.
    pub fn status(&self, game: &str) -> String {
        self.record(game)
            .unwrap_or_else(|| panic!("no record {game}"))
            .status
    }

    /// The `operation_log` rows of a game, oldest first.
    pub fn log(&self, game: &str) -> Vec<LogRow> {
        self.log_where("game_id = ?1", &[&game])
    }

    /// Every `operation_log` row, oldest first.
    pub fn all_log(&self) -> Vec<LogRow> {
        self.log_where("1", &[])
    }

    fn log_where(&self, condition: &str, parameters: &[&dyn ToSql]) -> Vec<LogRow> {
        let connection = self.connect();
        let mut statement = connection
            .prepare(&format!(
                "SELECT game_id, op_kind, op_source, outcome, error_code, error_message, \
                 container_id, started_at, finished_at FROM operation_log WHERE {condition} \
                 ORDER BY id"
            ))
            .unwrap();
        statement
            .query_map(parameters, |row| {
                Ok(LogRow {
                    game_id: row.get(0)?,
                    op_kind: row.get(1)?,
                    op_source: row.get(2)?,
                    outcome: row.get(3)?,
                    error_code: row.get(4)?,
                    error_message: row.get(5)?,
                    container_id: row.get(6)?,
                    started_at: row.get(7)?,
                    finished_at: row.get(8)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The file's bytes, to prove that a run changed nothing.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    /// `PRAGMA integrity_check`.
    pub fn integrity(&self) -> String {
        self.connect()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap()
    }
}

impl StateFile {
    /// A new state file of contract version 1 in a temp dir made under `parent` (e.g. a small
    /// tmpfs that a test fills up).
    pub fn new_in(parent: &Path, journal: Journal) -> Self {
        Self::create(tempfile::tempdir_in(parent).unwrap(), journal)
    }

    /// Moves every lease of rt-cleanup's own into the past. This simulates their expiry (a lease
    /// is free once `expires_at <= now`) without waiting out `--lease-ttl`; returns how many.
    pub fn expire_own_leases(&self) -> usize {
        self.connect()
            .execute(
                "UPDATE game_leases SET expires_at = ?1 WHERE holder LIKE 'rt-cleanup/%'",
                [now_ms() - 1],
            )
            .unwrap()
    }
}

/// The state file's write lock, held by a connection of the test's own (see
/// [`StateFile::lock_exclusive`]); released (committed) when dropped.
pub struct ExclusiveLock(Option<Connection>);

impl ExclusiveLock {
    /// Releases the lock after `delay`, from a thread of its own.
    pub fn release_after(mut self, delay: Duration) -> std::thread::JoinHandle<()> {
        let connection = self.0.take().expect("the lock is held");
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            connection.execute_batch("COMMIT").unwrap();
        })
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            connection.execute_batch("COMMIT").unwrap();
        }
    }
}

impl StateFile {
    /// Leaves the file as a writer killed in the middle of a transaction leaves it. A copy of
    /// the file runs a transaction too large for a one-page cache, so that SQLite spills it into
    /// the copy's main file (rollback journal) or its `-wal` (WAL); while it is open, the copy
    /// and the files beside it are copied over this file's, as a crash would leave them; then
    /// the copy rolls back. Here, in rollback-journal mode, a hot journal is left beside the
    /// file (its main file holds part of the transaction); in WAL mode, a `-wal` with frames of
    /// a transaction that never committed. The transaction inserts 2,000 stopped records
    /// `crash-0001`… that no reader may ever see.
    pub fn crash_mid_transaction(&self) {
        let scratch = tempfile::tempdir().unwrap();
        let copy = scratch.path().join("state.db");
        std::fs::copy(&self.path, &copy).unwrap();
        let writer = Connection::open(&copy).unwrap();
        writer
            .execute_batch(
                "PRAGMA cache_size = 1;
                 BEGIN;
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO runtime_records (game_id, container_id, status, last_op_at)
                 SELECT printf('crash-%04d-%.200c', i, 'x'), NULL, 'stopped', 1 FROM n;",
            )
            .unwrap();
        let beside = |suffix: &str| {
            let mut name = copy.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        std::fs::copy(&copy, &self.path).unwrap();
        let mut left = 0;
        for suffix in ["-journal", "-wal", "-shm"] {
            if beside(suffix).exists() {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                std::fs::copy(beside(suffix), PathBuf::from(name)).unwrap();
                left += 1;
            }
        }
        assert!(
            left > 0,
            "the writer left a journal or a -wal beside the file"
        );
        writer.execute_batch("ROLLBACK").unwrap();
    }

    /// Makes `game_leases` declare no `NOT NULL` and no types, keeping its column names (which
    /// is all the contract's check of the schema looks at), so that a lease row can hold any
    /// value, as a runtime manager with a looser schema could have written it.
    pub fn loosen_leases(&self) {
        self.connect()
            .execute_batch(
                "DROP TABLE game_leases;
                 CREATE TABLE game_leases (game_id TEXT PRIMARY KEY, holder, expires_at);",
            )
            .unwrap();
    }

    /// Inserts a lease with any values (after [`StateFile::loosen_leases`] for odd ones).
    pub fn lease_of_values(&self, game: &str, holder: &dyn ToSql, expires_at: &dyn ToSql) {
        self.connect()
            .execute(
                "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
                params![game, holder, expires_at],
            )
            .unwrap();
    }
}

/// The names in a directory, sorted: to prove that a run created or removed nothing there.
pub fn directory_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

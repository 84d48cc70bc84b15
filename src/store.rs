//! The runtime manager's SQLite state file: the only module that speaks SQL.
//!
//! [`Store`] opens and checks the file and reads the selection of a pass. For a real run it then
//! becomes a [`StateWriter`]: a thread that owns the connection and applies lease claims and
//! results in grouped transactions (one transaction for every request waiting at that moment, a
//! savepoint each), so that Docker calls overlap with state-file work and a pass of hundreds of
//! records needs far fewer commits than records. No transaction is ever open across a Docker
//! call: the thread only sees requests whose Docker part is already done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, ErrorCode as SqliteCode, OpenFlags, OptionalExtension};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::candidate::{FieldValue, StoppedRow};
use crate::outcome::{LiveLease, Outcome};
use crate::summary::epoch_ms;

/// The `user_version` of contract version 1.
pub const CONTRACT_USER_VERSION: i64 = 1;

/// `operation_log.op_kind` of every row this tool writes.
pub const OP_KIND: &str = "cleanup_container";

/// The count of stopped records (`counts.stopped`). Public so that the benchmark runs the very
/// same query in the sqlite3 CLI.
pub const SELECT_STOPPED_COUNT: &str =
    "SELECT count(*) FROM runtime_records WHERE status = 'stopped'";

/// The candidates at threshold `?1`, oldest first: stopped rows older than the threshold, and
/// stopped rows whose `last_op_at` is not an integer (they fail with `invalid_record`).
pub const SELECT_CANDIDATES: &str =
    "SELECT game_id, container_id, last_op_at FROM runtime_records \
     WHERE status = 'stopped' \
       AND (last_op_at < ?1 OR typeof(last_op_at) <> 'integer') \
     ORDER BY last_op_at, game_id";

/// The most requests applied in one transaction.
const MAX_BATCH: usize = 64;

/// The columns this tool relies on, per table; the runtime manager may have more.
const REQUIRED_COLUMNS: [(&str, &[&str]); 3] = [
    (
        "runtime_records",
        &["game_id", "container_id", "status", "last_op_at"],
    ),
    ("game_leases", &["game_id", "holder", "expires_at"]),
    (
        "operation_log",
        &[
            "id",
            "game_id",
            "op_kind",
            "op_source",
            "outcome",
            "error_code",
            "error_message",
            "container_id",
            "started_at",
            "finished_at",
        ],
    ),
];

/// How the state file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only, for `--dry-run`: works on a read-only file and changes nothing.
    ReadOnly,
    /// Read and write, for a real run. The file is never created.
    ReadWrite,
}

/// A failure of the state file, one variant per operation.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The path does not exist.
    #[error(
        "state file {0} does not exist; point --state (RT_CLEANUP_STATE) at the runtime \
         manager's state file (rt-cleanup never creates one)"
    )]
    Missing(PathBuf),
    /// SQLite could not open the file.
    #[error("cannot open state file {path}: {source}")]
    Open {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading `user_version` or the schema failed: not SQLite, corrupt, or locked.
    #[error("cannot read the schema of state file {path}: {source}")]
    Inspect {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is of another contract version.
    #[error(
        "state file {path} has user_version {found}, expected {CONTRACT_USER_VERSION} \
         (rt-cleanup speaks contract version 1); nothing was changed"
    )]
    Version {
        /// The state file.
        path: PathBuf,
        /// The `user_version` found.
        found: i64,
    },
    /// A table or column of the contract is missing.
    #[error("state file {path} has no {missing}; is it the runtime manager's state file?")]
    Schema {
        /// The state file.
        path: PathBuf,
        /// What is missing, e.g. `table game_leases`.
        missing: String,
    },
    /// A real run cannot write the file.
    #[error(
        "state file {path} is not writable ({source}); a real run needs write access to it and \
         to its directory (use --dry-run to audit)"
    )]
    NotWritable {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading the candidates failed.
    #[error("cannot read the stopped records of state file {path}: {source}")]
    Select {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Applying a lease claim or a result failed.
    #[error("cannot write {operation} to the state file: {source}")]
    Write {
        /// What was being written.
        operation: &'static str,
        /// SQLite's error, shared by every request of a failed transaction.
        source: Arc<rusqlite::Error>,
    },
    /// The writer thread is gone (it panicked); nothing more can be written.
    #[error("the state-file writer stopped unexpectedly")]
    WriterGone,
}

impl StoreError {
    /// Whether the error is a lock held by someone else past the wait (exit 75).
    #[must_use]
    pub fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. }
            | StoreError::Inspect { source, .. }
            | StoreError::NotWritable { source, .. }
            | StoreError::Select { source, .. } => source,
            StoreError::Write { source, .. } => source.as_ref(),
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(SqliteCode::DatabaseBusy | SqliteCode::DatabaseLocked)
        )
    }
}

/// The stopped records of the state file as read at the start of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Every record with `status = 'stopped'`.
    pub stopped: u64,
    /// The stopped rows older than the threshold, and those whose `last_op_at` is no integer.
    pub rows: Vec<StoppedRow>,
}

/// An open, checked state file.
#[derive(Debug)]
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens the state file without ever creating it and checks `user_version` and the schema
    /// before anything else. A real run also checks that it can take the write lock.
    pub fn open(path: &Path, access: Access, lock_wait: Duration) -> Result<Self, StoreError> {
        if std::fs::metadata(path).is_err() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        // No SQLITE_OPEN_CREATE: a path that vanishes after the check fails instead of becoming
        // a new, empty database.
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
            | match access {
                Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
                Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
            };
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let connection = Connection::open_with_flags(path, flags).map_err(open_error)?;
        connection.busy_timeout(lock_wait).map_err(open_error)?;
        let mut store = Self {
            connection,
            path: path.to_owned(),
        };
        match store.check_schema() {
            Err(StoreError::Inspect { source, .. })
                if access == Access::ReadOnly
                    && source.sqlite_error_code() == Some(SqliteCode::CannotOpen) =>
            {
                // A WAL-mode file whose `-shm` cannot be created (a read-only directory, and no
                // writer has the file open, or the `-shm` would exist). Reading it as immutable
                // is then the only way to read it at all.
                tracing::warn!(
                    path = %path.display(),
                    "the state file's WAL index cannot be created; reading it as immutable"
                );
                store.connection = open_immutable(path).map_err(open_error)?;
                store.check_schema()?;
            }
            Err(StoreError::Inspect { source, .. })
                if access == Access::ReadWrite
                    && store.connection.is_readonly("main").unwrap_or(false) =>
            {
                // SQLite fell back to read-only and then could not read a WAL-mode file: the
                // cause is the missing write access, so say that.
                return Err(StoreError::NotWritable {
                    path: path.to_owned(),
                    source,
                });
            }
            checked => checked?,
        }
        if access == Access::ReadWrite {
            store.check_writable()?;
        }
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let inspect_error = |source| StoreError::Inspect {
            path: self.path.clone(),
            source,
        };
        let found: i64 = self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(inspect_error)?;
        if found != CONTRACT_USER_VERSION {
            return Err(StoreError::Version {
                path: self.path.clone(),
                found,
            });
        }
        let mut statement = self
            .connection
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(inspect_error)?;
        for (table, columns) in REQUIRED_COLUMNS {
            let present: Vec<String> = statement
                .query_map([table], |row| row.get(0))
                .and_then(Iterator::collect)
                .map_err(inspect_error)?;
            if present.is_empty() {
                return Err(StoreError::Schema {
                    path: self.path.clone(),
                    missing: format!("table {table}"),
                });
            }
            if let Some(column) = columns.iter().find(|c| !present.iter().any(|p| p == *c)) {
                return Err(StoreError::Schema {
                    path: self.path.clone(),
                    missing: format!("column {table}.{column}"),
                });
            }
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            path: self.path.clone(),
            source,
        };
        if self.connection.is_readonly("main").map_err(not_writable)? {
            return Err(not_writable(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("the file is read-only".into()),
            )));
        }
        // Taking the write lock and giving it back proves that a write can start now, and waits
        // out (up to --lock-wait) a writer that holds the file.
        self.connection
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(not_writable)
    }

    /// Reads, in one read transaction, the count of stopped records and the stopped rows that
    /// are candidates at `threshold_ms`.
    pub fn select(&mut self, threshold_ms: i64) -> Result<Selection, StoreError> {
        let select_error = |source| StoreError::Select {
            path: self.path.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(select_error)?;
        let stopped: i64 = transaction
            .query_row(SELECT_STOPPED_COUNT, [], |row| row.get(0))
            .map_err(select_error)?;
        let rows = {
            let mut statement = transaction
                .prepare(SELECT_CANDIDATES)
                .map_err(select_error)?;
            statement
                .query_map([threshold_ms], |row| {
                    Ok(StoppedRow {
                        game_id: field(row.get_ref(0)?),
                        container_id: field(row.get_ref(1)?),
                        last_op_at: field(row.get_ref(2)?),
                    })
                })
                .and_then(Iterator::collect)
                .map_err(select_error)?
        };
        transaction.commit().map_err(select_error)?;
        Ok(Selection {
            stopped: stopped as u64,
            rows,
        })
    }

    /// Counts the stopped records (for a pass over a plan, which selects nothing itself).
    pub fn count_stopped(&self) -> Result<u64, StoreError> {
        self.connection
            .query_row(SELECT_STOPPED_COUNT, [], |row| row.get::<_, i64>(0))
            .map(|count| count as u64)
            .map_err(|source| StoreError::Select {
                path: self.path.clone(),
                source,
            })
    }

    /// The leases in force at `now_ms`, by game, for a dry run's prediction of conflicts.
    pub fn live_leases(&self, now_ms: i64) -> Result<HashMap<String, LiveLease>, StoreError> {
        let select_error = |source| StoreError::Select {
            path: self.path.clone(),
            source,
        };
        let mut statement = self
            .connection
            .prepare("SELECT game_id, holder, expires_at FROM game_leases WHERE expires_at > ?1")
            .map_err(select_error)?;
        statement
            .query_map([now_ms], |row| {
                let game = field(row.get_ref(0)?).to_text().unwrap_or_default();
                let holder = field(row.get_ref(1)?).to_text().unwrap_or_default();
                let expires_at = match field(row.get_ref(2)?) {
                    FieldValue::Integer(ms) => ms,
                    _ => i64::MAX,
                };
                Ok((game, LiveLease { holder, expires_at }))
            })
            .and_then(Iterator::collect)
            .map_err(select_error)
    }

    /// Hands the connection to a writer thread for the real run.
    #[must_use]
    pub fn into_writer(self, op_source: String) -> StateWriter {
        StateWriter::spawn(self.connection, op_source)
    }
}

/// Opens a file read-only with SQLite's `immutable` URI parameter (no locks, no `-shm`).
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            other => uri.push(other),
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(uri, flags)
}

fn field(value: ValueRef<'_>) -> FieldValue {
    match value {
        ValueRef::Null => FieldValue::Null,
        ValueRef::Integer(v) => FieldValue::Integer(v),
        ValueRef::Real(v) => FieldValue::Real(v),
        ValueRef::Text(bytes) => FieldValue::Text(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => FieldValue::Blob(bytes.to_vec()),
    }
}

fn sql_value(value: &FieldValue) -> Value {
    match value {
        FieldValue::Null => Value::Null,
        FieldValue::Integer(v) => Value::Integer(*v),
        FieldValue::Real(v) => Value::Real(*v),
        FieldValue::Text(v) => Value::Text(v.clone()),
        FieldValue::Blob(v) => Value::Blob(v.clone()),
    }
}

/// A request to take a game's lease and re-read its record under it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The game.
    pub game_id: String,
    /// This run's holder name.
    pub holder: String,
    /// How long the lease lasts from the moment it is taken.
    pub lease_ttl: Duration,
    /// The row as selected; the record must still be exactly this.
    pub selected: StoppedRow,
}

/// The answer to a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// The lease is ours and the record is still the row that was selected.
    Claimed,
    /// Someone else holds the lease.
    HeldBy(LiveLease),
    /// The record changed since it was selected; the lease was given back at once.
    Changed(String),
}

/// A record's result to be written: the transition (when the container is gone), the log row,
/// and the release of the lease.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The game.
    pub game_id: String,
    /// The container reference as stored, for the log.
    pub container_id: Option<String>,
    /// The row as selected; the transition only applies if the record is still this row.
    pub selected: StoppedRow,
    /// The holder whose lease is released, if the lease was taken.
    pub holder: Option<String>,
    /// The result.
    pub outcome: Outcome,
    /// When work on the record began, epoch milliseconds.
    pub started_at_ms: i64,
}

enum Request {
    Claim(Claim),
    Settle(Settlement),
}

enum Answer {
    Claim(ClaimResult),
    Settle(Outcome),
}

enum Responder {
    Claim(oneshot::Sender<Result<ClaimResult, StoreError>>),
    Settle(oneshot::Sender<Result<Outcome, StoreError>>),
}

impl Responder {
    fn send(self, answer: Result<Answer, StoreError>) {
        // A caller that stopped waiting (the pass was dropped) needs no answer.
        match (self, answer) {
            (Responder::Claim(sender), Ok(Answer::Claim(result))) => {
                let _ = sender.send(Ok(result));
            }
            (Responder::Settle(sender), Ok(Answer::Settle(outcome))) => {
                let _ = sender.send(Ok(outcome));
            }
            (Responder::Claim(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            (Responder::Settle(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            // Answers are made from their own request, so the kinds always match.
            (_, Ok(_)) => unreachable!("an answer of another kind than its request"),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Responder::Claim(_) => "a lease claim",
            Responder::Settle(_) => "a result",
        }
    }
}

/// A result queued with [`StateWriter::settle_later`], not yet known to be written.
#[derive(Debug)]
pub struct PendingSettlement(Result<oneshot::Receiver<Result<Outcome, StoreError>>, StoreError>);

impl PendingSettlement {
    /// Waits until the result is written (or failed) and returns the outcome as written.
    pub async fn written(self) -> Result<Outcome, StoreError> {
        self.0?.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The writer thread of a real run. Requests sent while a transaction is being applied are
/// grouped into the next one.
#[derive(Debug)]
pub struct StateWriter {
    jobs: Option<mpsc::UnboundedSender<(Request, Responder)>>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    fn spawn(connection: Connection, op_source: String) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(connection, &op_source, receiver))
            // Spawning fails only when the process is out of threads or memory.
            .expect("the state-writer thread starts");
        Self {
            jobs: Some(sender),
            thread: Some(thread),
        }
    }

    /// Takes the game's lease where it is free, and re-reads the record under it.
    pub async fn claim(&self, claim: Claim) -> Result<ClaimResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Claim(claim), Responder::Claim(reply))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues a result to be written: the compare-and-set transition where the outcome moves the
    /// record (a record that changed meanwhile makes the outcome a `conflict`), one
    /// `operation_log` row, and the release of the lease. It returns at once, so that the caller
    /// can go on with Docker work while the writer commits it (grouped with whatever else is
    /// waiting); the outcome as written is read from the returned [`PendingSettlement`].
    #[must_use]
    pub fn settle_later(&self, settlement: Settlement) -> PendingSettlement {
        let (reply, answer) = oneshot::channel();
        PendingSettlement(
            self.send(Request::Settle(settlement), Responder::Settle(reply))
                .map(|()| answer),
        )
    }

    fn send(&self, request: Request, responder: Responder) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        jobs.send((request, responder))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Waits for every request to be written and closes the state file.
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // A panic of the writer has already failed every request it held (WriterGone).
            let _ = thread.join();
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn write_loop(
    mut connection: Connection,
    op_source: &str,
    mut jobs: mpsc::UnboundedReceiver<(Request, Responder)>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut requests = vec![first.0];
        let mut responders = vec![first.1];
        while requests.len() < MAX_BATCH {
            let Ok((request, responder)) = jobs.try_recv() else {
                break;
            };
            requests.push(request);
            responders.push(responder);
        }
        let batch = requests.len();
        let began = std::time::Instant::now();
        match apply_batch(&mut connection, op_source, requests) {
            Ok(answers) => {
                tracing::debug!(
                    requests = batch,
                    micros = began.elapsed().as_micros() as u64,
                    "state-file transaction committed"
                );
                for (responder, answer) in responders.into_iter().zip(answers) {
                    let operation = responder.operation();
                    responder.send(answer.map_err(|e| write_error(operation, Arc::new(e))));
                }
            }
            Err(error) => {
                tracing::warn!(requests = responders.len(), %error, "state-file transaction failed");
                let shared = Arc::new(error);
                for responder in responders {
                    let operation = responder.operation();
                    responder.send(Err(write_error(operation, Arc::clone(&shared))));
                }
            }
        }
    }
}

/// Applies a batch in one transaction, a savepoint per request so that one failing request does
/// not undo the others. Fails as a whole when the transaction cannot start or commit.
fn apply_batch(
    connection: &mut Connection,
    op_source: &str,
    requests: Vec<Request>,
) -> rusqlite::Result<Vec<rusqlite::Result<Answer>>> {
    let mut transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let savepoint = transaction.savepoint()?;
        let answer = match request {
            Request::Claim(claim) => apply_claim(&savepoint, &claim).map(Answer::Claim),
            Request::Settle(settlement) => {
                apply_settlement(&savepoint, op_source, settlement).map(Answer::Settle)
            }
        };
        if answer.is_ok() {
            savepoint.commit()?;
        } else {
            // Rolls back to the savepoint and releases it (its drop behaviour is Rollback).
            savepoint.finish()?;
        }
        answers.push(answer);
    }
    transaction.commit()?;
    Ok(answers)
}

fn write_error(operation: &'static str, source: Arc<rusqlite::Error>) -> StoreError {
    StoreError::Write { operation, source }
}

fn apply_claim(connection: &Connection, claim: &Claim) -> rusqlite::Result<ClaimResult> {
    let now_ms = epoch_ms(SystemTime::now());
    // A TTL too long for i64 milliseconds saturates instead of wrapping into the past.
    let ttl_ms = i64::try_from(claim.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now_ms.saturating_add(ttl_ms);
    let taken = connection.execute(
        "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (game_id) DO UPDATE \
           SET holder = excluded.holder, expires_at = excluded.expires_at \
           WHERE game_leases.expires_at <= ?4",
        params![claim.game_id, claim.holder, expires_at, now_ms],
    )?;
    if taken == 0 {
        let lease = connection.query_row(
            "SELECT holder, expires_at FROM game_leases WHERE game_id = ?1",
            [&claim.game_id],
            |row| {
                Ok(LiveLease {
                    holder: field(row.get_ref(0)?).to_text().unwrap_or_default(),
                    expires_at: match field(row.get_ref(1)?) {
                        FieldValue::Integer(ms) => ms,
                        _ => i64::MAX,
                    },
                })
            },
        )?;
        return Ok(ClaimResult::HeldBy(lease));
    }
    let current = connection
        .query_row(
            "SELECT status, container_id, last_op_at FROM runtime_records WHERE game_id = ?1",
            [&claim.game_id],
            |row| {
                Ok((
                    field(row.get_ref(0)?),
                    field(row.get_ref(1)?),
                    field(row.get_ref(2)?),
                ))
            },
        )
        .optional()?;
    let change = match current {
        None => Some("the record was deleted since it was selected".to_owned()),
        Some((status, container_id, last_op_at)) => {
            let unchanged = status == FieldValue::Text("stopped".into())
                && container_id == claim.selected.container_id
                && last_op_at == claim.selected.last_op_at;
            (!unchanged).then(|| {
                format!(
                    "the record changed since it was selected: now status {status}, \
                     container_id {container_id}, last_op_at {last_op_at}"
                )
            })
        }
    };
    match change {
        None => Ok(ClaimResult::Claimed),
        Some(description) => {
            release(connection, &claim.game_id, &claim.holder)?;
            Ok(ClaimResult::Changed(description))
        }
    }
}

fn apply_settlement(
    connection: &Connection,
    op_source: &str,
    settlement: Settlement,
) -> rusqlite::Result<Outcome> {
    let now_ms = epoch_ms(SystemTime::now());
    let mut outcome = settlement.outcome;
    if outcome.moves_record() {
        let moved = connection.execute(
            "UPDATE runtime_records SET status = 'removed', last_op_at = ?1 \
             WHERE game_id = ?2 AND status = 'stopped' \
               AND last_op_at IS ?3 AND container_id IS ?4",
            params![
                now_ms,
                settlement.game_id,
                sql_value(&settlement.selected.last_op_at),
                sql_value(&settlement.selected.container_id),
            ],
        )?;
        if moved == 0 {
            outcome = Outcome::conflict(
                "the record changed while its container was being handled; it was left as it is",
            );
        }
    }
    if let Some(log_outcome) = outcome.log_outcome() {
        connection.execute(
            "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
               error_message, container_id, started_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                settlement.game_id,
                OP_KIND,
                op_source,
                log_outcome,
                outcome.error_code.map(crate::outcome::ErrorCode::as_str),
                outcome.error_message,
                settlement.container_id,
                settlement.started_at_ms,
                now_ms,
            ],
        )?;
    }
    if let Some(holder) = &settlement.holder {
        release(connection, &settlement.game_id, holder)?;
    }
    Ok(outcome)
}

fn release(connection: &Connection, game_id: &str, holder: &str) -> rusqlite::Result<()> {
    connection.execute(
        "DELETE FROM game_leases WHERE game_id = ?1 AND holder = ?2",
        params![game_id, holder],
    )?;
    Ok(())
}

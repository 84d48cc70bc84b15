//! The runtime manager's SQLite state file: the only module that speaks SQL.
//!
//! * [`open`](Store::open) opens the file without ever creating it and checks its
//!   `user_version`, its schema and, for a real run, that it can be written.
//! * `read` selects the candidates of a pass and what a dry run needs besides, and reads
//!   `operation_log` for `history` and `explain`.
//! * `protocol` holds the lease protocol's statements: the claim (lease, then a re-read of the
//!   record under it) and the settlement (the compare-and-set, the `operation_log` row, the
//!   release).
//! * `writer` runs those statements for a real run on a thread of its own, in grouped
//!   transactions, so that Docker calls overlap with state-file work. No transaction is ever
//!   open across a Docker call: the thread only sees requests whose Docker part is done.

mod open;
mod protocol;
mod read;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode as SqliteCode, ToSql};
use thiserror::Error;

use crate::outcome::LiveLease;
use crate::value::{FieldValue, Text};

pub use open::Access;
pub use protocol::{Claim, ClaimAndSettle, ClaimResult, Settlement};
pub use read::{LogFilter, LogRow, STARTED_AT_SLACK_MS};
pub use writer::{PendingSettlement, StateWriter};

/// The `user_version` of contract version 1.
pub const CONTRACT_USER_VERSION: i64 = 1;

/// A failure of the state file, one variant per operation.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The path does not exist.
    #[error(
        "state file {} does not exist; point --state (RT_CLEANUP_STATE) at the runtime \
         manager's state file (rt-cleanup never creates one)", .0.display()
    )]
    Missing(PathBuf),
    /// The path is not a regular file (a directory, a FIFO, a socket, a device).
    #[error(
        "state file {} is {kind}, not a regular file, and was not opened; point --state \
         (RT_CLEANUP_STATE) at the runtime manager's SQLite file (or a symlink to it)",
        path.display()
    )]
    NotAFile {
        /// The state file.
        path: PathBuf,
        /// What it is, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },
    /// SQLite could not open the file.
    #[error("cannot open state file {}: {source}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading `user_version` or the schema failed: not SQLite, corrupt, or locked.
    #[error("cannot read the schema of state file {}: {source}", path.display())]
    Inspect {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is of another contract version.
    #[error(
        "state file {} has user_version {found}, expected {CONTRACT_USER_VERSION} \
         (rt-cleanup speaks contract version 1); nothing was changed", path.display()
    )]
    Version {
        /// The state file.
        path: PathBuf,
        /// The `user_version` found.
        found: i64,
    },
    /// A table or column of the contract is missing.
    #[error(
        "state file {} has no {missing}; is it the runtime manager's state file?", path.display()
    )]
    Schema {
        /// The state file.
        path: PathBuf,
        /// What is missing, e.g. `table game_leases`.
        missing: String,
    },
    /// A real run cannot write the file, or cannot create its journal next to it.
    #[error(
        "state file {} is not writable ({source}); a real run needs write access to the file \
         and to its directory {} (SQLite creates its journal there); use --dry-run to audit",
        path.display(), directory.display()
    )]
    NotWritable {
        /// The state file.
        path: PathBuf,
        /// The directory that holds it.
        directory: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A dry run cannot read the committed state without changing the directory.
    #[error(
        "state file {} cannot be read without changing its directory: {reason}; nothing was \
         read or changed", path.display()
    )]
    Unreadable {
        /// The state file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A dry run found a crashed writer's rollback journal, which only a writer may roll back.
    #[error(
        "state file {} has a hot rollback journal {}: a writer crashed in the middle of a \
         transaction, and the file holds part of it until the journal is rolled back; a dry run \
         never writes, so it neither rolls it back nor predicts from the half-written file; the \
         runtime manager's next write, or a real run, rolls it back; nothing was read or \
         changed; try again after that", path.display(), journal.display()
    )]
    HotJournal {
        /// The state file.
        path: PathBuf,
        /// Its `-journal` file.
        journal: PathBuf,
    },
    /// A dry run's read without locks met a writer each time it tried.
    #[error(
        "state file {} was written during each of {attempts} attempts to read it (a dry run \
         takes no locks on a file no writer has open); nothing was changed; try again",
        path.display()
    )]
    ChangedWhileRead {
        /// The state file.
        path: PathBuf,
        /// How many reads were made.
        attempts: usize,
    },
    /// Reading the candidates failed.
    #[error("cannot read the stopped records of state file {}: {source}", path.display())]
    Select {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading `operation_log` failed.
    #[error("cannot read the operation_log of state file {}: {source}", path.display())]
    ReadLog {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Applying a lease claim or a result failed.
    #[error("the state file refused {operation}: {source}{}", busy_hint(source))]
    Write {
        /// What was being written.
        operation: &'static str,
        /// SQLite's error, shared by every request of a failed transaction.
        source: Arc<rusqlite::Error>,
    },
    /// The writer thread could not be started (the system is out of threads or memory).
    #[error(
        "cannot start the writer of state file {}: {source}; nothing was changed; try again \
         when the system has threads to spare", path.display()
    )]
    WriterStart {
        /// The state file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The writer thread is gone (it panicked); nothing more can be written.
    #[error("the state-file writer stopped unexpectedly")]
    WriterGone,
}

/// Whether SQLite's error is a lock held by someone else past the wait.
fn is_locked(source: &rusqlite::Error) -> bool {
    matches!(
        source.sqlite_error_code(),
        Some(SqliteCode::DatabaseBusy | SqliteCode::DatabaseLocked)
    )
}

/// What to do about a refusal that is a lock held past the wait, said after SQLite's words.
fn busy_hint(source: &rusqlite::Error) -> &'static str {
    if is_locked(source) {
        " (another process held it past --lock-wait; try again later, or raise --lock-wait)"
    } else {
        ""
    }
}

impl StoreError {
    /// Whether the error is a lock held by someone else past the wait, or a file written during
    /// every read (exit 75).
    #[must_use]
    pub fn is_busy(&self) -> bool {
        let source = match self {
            // Written by someone else each time it was read, no thread to spare, or a crashed
            // writer's journal that the next writer rolls back: as busy as a held lock, and as
            // worth trying again later.
            StoreError::ChangedWhileRead { .. }
            | StoreError::WriterStart { .. }
            | StoreError::HotJournal { .. } => return true,
            StoreError::Open { source, .. }
            | StoreError::Inspect { source, .. }
            | StoreError::NotWritable { source, .. }
            | StoreError::Select { source, .. }
            | StoreError::ReadLog { source, .. } => source,
            StoreError::Write { source, .. } => source.as_ref(),
            _ => return false,
        };
        is_locked(source)
    }
}

/// An open, checked state file.
#[derive(Debug)]
pub struct Store {
    connection: Connection,
    path: PathBuf,
    /// How the connection was opened, so that a second one can be opened the same way.
    opened: open::Opened,
    /// For a dry run's immutable read: the file as it was when opened.
    immutable: Option<open::Fingerprint>,
}

/// Reads a column value exactly as stored.
fn field(value: ValueRef<'_>) -> FieldValue {
    match value {
        ValueRef::Null => FieldValue::Null,
        ValueRef::Integer(v) => FieldValue::Integer(v),
        ValueRef::Real(v) => FieldValue::Real(v),
        ValueRef::Text(bytes) => FieldValue::Text(Text::from_bytes(bytes.to_vec())),
        ValueRef::Blob(bytes) => FieldValue::Blob(bytes.to_vec()),
    }
}

/// Binds a column value exactly as it was read, text that is not UTF-8 included.
struct Exact<'a>(&'a FieldValue);

impl ToSql for Exact<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            FieldValue::Null => ValueRef::Null,
            FieldValue::Integer(v) => ValueRef::Integer(*v),
            FieldValue::Real(v) => ValueRef::Real(*v),
            FieldValue::Text(text) => ValueRef::Text(text.as_bytes()),
            FieldValue::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

/// A lease in force, as read from its `holder` and `expires_at` columns, for the message of a
/// conflict. The holder is a value of the state file: it is shown quoted and escaped, never as
/// raw bytes that could break a log line. An `expires_at` that is a real is shown rounded up to
/// the millisecond at which the lease is free; NULL, text or a blob is "never" (`i64::MAX`).
fn live_lease(holder: ValueRef<'_>, expires_at: ValueRef<'_>) -> LiveLease {
    LiveLease {
        holder: field(holder).to_string(),
        expires_at: match expires_at {
            ValueRef::Integer(ms) => ms,
            // Saturating: a real beyond i64 is as good as never.
            ValueRef::Real(ms) if ms.is_finite() => ms.ceil() as i64,
            _ => i64::MAX,
        },
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A state file in memory, made from the schema every test and the demo share.

    use rusqlite::Connection;

    use super::{field, Exact};
    use crate::value::FieldValue;

    /// The contract's schema.
    pub const SCHEMA: &str = include_str!("../../examples/state-schema.sql");

    /// A new in-memory state file of contract version 1.
    pub fn memory() -> Connection {
        let connection = Connection::open_in_memory().expect("SQLite opens a memory database");
        connection
            .execute_batch(SCHEMA)
            .expect("the shared schema is valid SQL");
        connection
    }

    /// Inserts a record with any values.
    pub fn insert(
        connection: &Connection,
        game: &FieldValue,
        container: &FieldValue,
        status: &str,
        last_op_at: &FieldValue,
    ) {
        connection
            .execute(
                "INSERT INTO runtime_records (game_id, container_id, status, last_op_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![Exact(game), Exact(container), status, Exact(last_op_at)],
            )
            .expect("the record inserts");
    }

    /// Writes an in-memory state file to a file of its own, for the code that opens one.
    pub fn to_file(connection: &Connection) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("state.db");
        connection
            .execute(
                "VACUUM INTO ?1",
                [path.to_str().expect("temp paths are UTF-8")],
            )
            .expect("the state file is written");
        (dir, path)
    }

    /// A record's `(status, container_id, last_op_at)`, if it exists.
    pub fn record(
        connection: &Connection,
        game: &FieldValue,
    ) -> Option<(FieldValue, FieldValue, FieldValue)> {
        connection
            .query_row(
                "SELECT status, container_id, last_op_at FROM runtime_records WHERE game_id = ?1",
                [Exact(game)],
                |row| {
                    Ok((
                        field(row.get_ref(0)?),
                        field(row.get_ref(1)?),
                        field(row.get_ref(2)?),
                    ))
                },
            )
            .ok()
    }

    /// An `operation_log` row as `(game_id, op_kind, outcome, error_code, container_id)`.
    pub type LogRow = (FieldValue, String, String, Option<String>, Option<String>);

    /// Every `operation_log` row.
    pub fn log(connection: &Connection) -> Vec<LogRow> {
        let mut statement = connection
            .prepare(
                "SELECT game_id, op_kind, outcome, error_code, container_id FROM operation_log \
                 ORDER BY id",
            )
            .expect("the log query prepares");
        statement
            .query_map([], |row| {
                Ok((
                    field(row.get_ref(0)?),
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .expect("the log query runs")
            .collect::<Result<_, _>>()
            .expect("the log rows read")
    }

    /// Every lease as `(game_id, holder, expires_at)`.
    pub fn leases(connection: &Connection) -> Vec<(FieldValue, String, i64)> {
        let mut statement = connection
            .prepare("SELECT game_id, holder, expires_at FROM game_leases ORDER BY game_id")
            .expect("the lease query prepares");
        statement
            .query_map([], |row| {
                Ok((field(row.get_ref(0)?), row.get(1)?, row.get(2)?))
            })
            .expect("the lease query runs")
            .collect::<Result<_, _>>()
            .expect("the leases read")
    }
}

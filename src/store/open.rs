//! Opening the state file: never creating it, checking its contract version and schema first,
//! and proving that a real run can write it and a dry run can read it without changing anything.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags};

use super::{Store, StoreError, CONTRACT_USER_VERSION};
use crate::config::file_kind;
use crate::stop::Stop;

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

/// How often a wait for a lock held by someone else tries again, and looks whether a signal
/// ended it.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// How the state file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only, for `--dry-run`: works on a read-only file and changes nothing, not even the
    /// directory.
    ReadOnly,
    /// Read and write, for a real run. The file is never created.
    ReadWrite,
}

/// What a dry run must do to read a write-ahead-log state file without changing its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalRead {
    /// The file is not in WAL mode, or a writer has it open (its `-wal` and `-shm` exist): read
    /// it as usual.
    Shared,
    /// Every committed change is in the main file and no writer has it open (no `-wal`, or an
    /// empty one without a `-shm`): read it as immutable, which creates no `-wal` or `-shm`, and check afterwards that nobody wrote it
    /// meanwhile.
    Immutable,
}

/// How a connection to the state file was opened: what another connection needs to read the
/// same file the same way (the checks made on the first are not repeated).
#[derive(Debug, Clone)]
pub(super) struct Opened {
    access: Access,
    wal_read: WalRead,
    /// `--lock-wait`.
    pub(super) lock_wait: Duration,
    /// The pass's signals: a lock wait before anything is done ends at the first one.
    pub(super) stop: Arc<Stop>,
}

impl Opened {
    /// Opens a connection to `path` in this way. Its waits for a lock held by someone else last
    /// `--lock-wait`, or end at the first signal: nothing has been done yet that they could be
    /// finishing.
    pub(super) fn open(&self, path: &Path) -> rusqlite::Result<Connection> {
        let mut connection = match self.wal_read {
            WalRead::Shared => open_plain(path, self.access),
            WalRead::Immutable => open_immutable(path),
        }?;
        let stop = Arc::clone(&self.stop);
        wait_out_locks(&mut connection, self.lock_wait, move || {
            stop.signalled().is_some()
        })?;
        Ok(connection)
    }
}

/// Makes the connection wait for a lock held by someone else (SQLite's busy handler) for at most
/// `limit` per lock, trying again every [`LOCK_POLL`], and give up at once when `give_up` says so
/// (a signal). A wait given up fails as SQLite's "database is locked".
///
/// SQLite's own busy timeout sleeps in C where nothing can end it: a signal would be seen only
/// after the whole `--lock-wait`.
pub(super) fn wait_out_locks(
    connection: &mut Connection,
    limit: Duration,
    give_up: impl Fn() -> bool + Send + 'static,
) -> rusqlite::Result<()> {
    let mut began = Instant::now();
    connection.busy_handler(Some(move |attempts: i32| {
        // SQLite counts the attempts of each lock it waits for from 0.
        if attempts == 0 {
            began = Instant::now();
        }
        let waited = began.elapsed();
        if waited >= limit || give_up() {
            return false;
        }
        std::thread::sleep(LOCK_POLL.min(limit.saturating_sub(waited)));
        true
    }))
}

/// A file's identity and last change, to tell whether someone wrote it while it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint {
    modified: Option<SystemTime>,
    length: u64,
    /// The length of the `-wal` (0 where there is none): a writer appends there first.
    wal_length: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Self> {
        let metadata = fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            length: metadata.len(),
            wal_length: fs::metadata(sidecar(path, "-wal")).map_or(0, |wal| wal.len()),
        })
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory that holds the file, resolved where it can be, for messages.
fn directory_of(path: &Path) -> PathBuf {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    directory
        .canonicalize()
        .unwrap_or_else(|_| directory.to_owned())
}

/// Whether SQLite refused a read-only connection because the file has a hot rollback journal
/// (a crashed writer's), which it must roll back before anyone reads, and cannot read-only.
pub(super) fn is_hot_journal(source: &rusqlite::Error) -> bool {
    matches!(
        source,
        rusqlite::Error::SqliteFailure(error, _)
            if error.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
    )
}

/// The error of a dry run that met a hot rollback journal.
pub(super) fn hot_journal(path: &Path) -> StoreError {
    StoreError::HotJournal {
        path: path.to_owned(),
        journal: sidecar(path, "-journal"),
    }
}

/// Whether the file's header says write-ahead log (format versions 2 at offsets 18 and 19).
fn is_wal_file(path: &Path) -> bool {
    let mut header = [0_u8; 20];
    fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

impl Store {
    /// Opens the state file without ever creating it and checks `user_version` and the schema
    /// before anything else. A real run also proves that it can write the file and create its
    /// journal; a dry run reads it without creating anything next to it. A lock held by someone
    /// else is waited out for `lock_wait`, or until a signal reaches `stop`.
    pub fn open(
        path: &Path,
        access: Access,
        lock_wait: Duration,
        stop: &Arc<Stop>,
    ) -> Result<Self, StoreError> {
        // Judged by `stat` alone, before SQLite or the WAL check opens it: opening a FIFO for
        // reading blocks until a writer comes (a dry run hung there, deaf to signals), and a
        // device or socket is no database either.
        match fs::metadata(path) {
            Err(_) => return Err(StoreError::Missing(path.to_owned())),
            Ok(metadata) if !metadata.is_file() => {
                return Err(StoreError::NotAFile {
                    path: path.to_owned(),
                    kind: file_kind(metadata.file_type()),
                });
            }
            Ok(_) => {}
        }
        let wal_read = match access {
            Access::ReadOnly => wal_read(path)?,
            Access::ReadWrite => WalRead::Shared,
        };
        let opened = Opened {
            access,
            wal_read,
            lock_wait,
            stop: Arc::clone(stop),
        };
        let connection = opened.open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let store = Self {
            connection,
            path: path.to_owned(),
            opened,
            immutable: (wal_read == WalRead::Immutable)
                .then(|| Fingerprint::of(path))
                .flatten(),
        };
        match store.check_schema() {
            Err(StoreError::Inspect { source, .. })
                if access == Access::ReadWrite
                    && (store.connection.is_readonly("main").unwrap_or(false)
                        || matches!(
                            source.sqlite_error_code(),
                            Some(SqliteCode::ReadOnly | SqliteCode::CannotOpen)
                        )) =>
            {
                // A WAL-mode file is read only after its `-wal` and `-shm` are created: SQLite
                // fell back to read-only (the file is not writable), or could not create them
                // (the directory is not). The cause is the missing write access, so say that.
                return Err(store.not_writable(source));
            }
            Err(StoreError::Inspect { source, .. }) if is_hot_journal(&source) => {
                return Err(hot_journal(path));
            }
            checked => checked?,
        }
        if access == Access::ReadWrite {
            store.check_writable()?;
        }
        Ok(store)
    }

    fn not_writable(&self, source: rusqlite::Error) -> StoreError {
        StoreError::NotWritable {
            path: self.path.clone(),
            directory: directory_of(&self.path),
            source,
        }
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

    /// Proves that a real run can write: takes the write lock (waiting out a writer that holds
    /// the file, up to `--lock-wait`), rewrites `user_version` with the value it already has,
    /// which makes SQLite open its rollback journal next to the file, and rolls back. A file
    /// that is writable in a directory that is not fails here, before any container is touched,
    /// rather than at the first result. Nothing is changed either way.
    fn check_writable(&self) -> Result<(), StoreError> {
        let readonly = self
            .connection
            .is_readonly("main")
            .map_err(|source| self.not_writable(source))?;
        if readonly {
            return Err(self.not_writable(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("the file is read-only for this user".into()),
            )));
        }
        let probe =
            format!("BEGIN IMMEDIATE; PRAGMA user_version = {CONTRACT_USER_VERSION}; ROLLBACK;");
        if let Err(source) = self.connection.execute_batch(&probe) {
            // A failed statement may leave the transaction open; it must not stay so. An error
            // here means there was none to roll back.
            let _ = self.connection.execute_batch("ROLLBACK");
            let busy = matches!(
                source.sqlite_error_code(),
                Some(SqliteCode::DatabaseBusy | SqliteCode::DatabaseLocked)
            );
            return Err(if busy {
                StoreError::Inspect {
                    path: self.path.clone(),
                    source,
                }
            } else {
                self.not_writable(source)
            });
        }
        Ok(())
    }

    /// For a dry run that read an immutable snapshot: fails where the file is no longer the one
    /// that was read (somebody wrote or checkpointed it meanwhile). Always passes for a shared
    /// read, which SQLite's locks keep consistent.
    pub fn check_read_consistent(&self, attempts: usize) -> Result<(), StoreError> {
        match &self.immutable {
            Some(before)
                if Fingerprint::of(&self.path).as_ref() != Some(before)
                    || before.wal_length != 0 =>
            {
                Err(StoreError::ChangedWhileRead {
                    path: self.path.clone(),
                    attempts,
                })
            }
            _ => Ok(()),
        }
    }
}

fn open_plain(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    // No SQLITE_OPEN_CREATE: a path that vanishes after the check fails instead of becoming a
    // new, empty database.
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
        | match access {
            Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
        };
    Connection::open_with_flags(path, flags)
}

/// Decides how a dry run reads the file. A WAL-mode file opened the usual way makes SQLite
/// create `-wal` and `-shm` files next to it (and a read-only connection cannot remove them),
/// which would change the directory.
fn wal_read(path: &Path) -> Result<WalRead, StoreError> {
    if !is_wal_file(path) {
        return Ok(WalRead::Shared);
    }
    let wal = sidecar(path, "-wal");
    let shm = sidecar(path, "-shm");
    // Where a writer has the file open, both exist (the `-wal` may be empty, after a truncating
    // checkpoint): a read-only connection reads them with SQLite's locks and creates nothing.
    let wal_length = fs::metadata(&wal).ok().map(|metadata| metadata.len());
    if wal_length.is_some() && shm.exists() {
        return Ok(WalRead::Shared);
    }
    if wal_length.unwrap_or(0) == 0 {
        return Ok(WalRead::Immutable);
    }
    Err(StoreError::Unreadable {
        path: path.to_owned(),
        reason: format!(
            "{} holds committed changes, and SQLite reads them only after creating {}, which a \
             dry run must not do; run the dry run while the runtime manager has the file open, \
             or after it wrote it once more",
            wal.display(),
            shm.display()
        ),
    })
}

/// Opens a file read-only with SQLite's `immutable` URI parameter: no locks, no `-wal`, no
/// `-shm`. Only valid when every committed change is in the main file.
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            // Unreserved characters and the path separator go as they are; everything else,
            // bytes that are not UTF-8 included, is percent-encoded.
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                uri.push(char::from(*byte));
            }
            // Writing to a String cannot fail.
            other => {
                let _ = write!(uri, "%{other:02X}");
            }
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(uri, flags)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    use super::*;

    /// Opens `path` on a thread of its own, so that an open that blocks (a FIFO opened for
    /// reading waits for a writer) fails the test after a few seconds instead of hanging it.
    fn open_within_seconds(path: &Path, access: Access) -> Result<Store, StoreError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let owned = path.to_owned();
        std::thread::spawn(move || {
            let _ = sender.send(Store::open(&owned, access, Duration::ZERO, &Stop::new()));
        });
        receiver
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("opening {} blocked", path.display()))
    }

    fn refused_kind(path: &Path) -> &'static str {
        match open_within_seconds(path, Access::ReadOnly).unwrap_err() {
            StoreError::NotAFile { kind, .. } => kind,
            other => panic!("{}: {other}", path.display()),
        }
    }

    #[test]
    fn a_state_path_that_is_not_a_regular_file_is_named_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let socket = dir.path().join("socket");
        let _listener = UnixListener::bind(&socket).unwrap();
        let link_to_fifo = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link_to_fifo).unwrap();
        for access in [Access::ReadOnly, Access::ReadWrite] {
            let error = open_within_seconds(&fifo, access).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "state file {} is a FIFO (named pipe), not a regular file, and was not \
                     opened; point --state (RT_CLEANUP_STATE) at the runtime manager's SQLite \
                     file (or a symlink to it)",
                    fifo.display()
                )
            );
        }
        assert_eq!(refused_kind(&link_to_fifo), "a FIFO (named pipe)");
        assert_eq!(refused_kind(&socket), "a socket");
        assert_eq!(refused_kind(Path::new("/dev/null")), "a character device");
        assert_eq!(refused_kind(dir.path()), "a directory");
    }
}

//! What a pass reads from the state file before it acts: the count of stopped records, the
//! expired candidates, and, for a dry run, the leases in force.

use std::collections::HashMap;

use rusqlite::Connection;

use super::open::{hot_journal, is_hot_journal};
use super::protocol::{lease_is_free, read_record};
use super::{field, live_lease, Store, StoreError};
use crate::candidate::{self, Candidate, StoppedRow};
use crate::job::CurrentRecord;
use crate::outcome::LiveLease;
use crate::value::FieldValue;

/// The count of stopped records (`counts.stopped`).
pub const SELECT_STOPPED_COUNT: &str =
    "SELECT count(*) FROM runtime_records WHERE status = 'stopped'";

/// The candidates at threshold `?1`: stopped rows whose `last_op_at` is a number below the
/// threshold, or NULL, text or a blob (they fail with `invalid_record`).
///
/// Three range searches of the `(status, last_op_at)` index, one per part of SQLite's sort
/// order (NULL, then numbers, then text, then blobs), so that the cost follows the number of
/// candidates, not of stopped records. `last_op_at >= ''` holds for every text and blob and for
/// no number. The order of the rows is decided by `candidate::select`.
///
/// Where the column is declared `NOT NULL`, as the contract's schema has it, SQLite knows the
/// NULL branch is empty and does not run it (its plan still names the index); a NULL stored
/// there anyway (only an edited schema lets one in) comes with the numbers below the
/// threshold, since SQLite then does not skip NULLs at the start of that range. The tests pin
/// both, and that no branch steps over the stopped records that are not candidates.
pub const SELECT_CANDIDATES: &str = "\
    SELECT game_id, container_id, last_op_at FROM runtime_records \
     WHERE status = 'stopped' AND last_op_at < ?1 \
    UNION ALL \
    SELECT game_id, container_id, last_op_at FROM runtime_records \
     WHERE status = 'stopped' AND last_op_at IS NULL \
    UNION ALL \
    SELECT game_id, container_id, last_op_at FROM runtime_records \
     WHERE status = 'stopped' AND last_op_at >= ''";

/// The leases in force at `?1`: those the claim's statement would not take over, by the very
/// expression it uses ([`lease_is_free`]). `IS NOT TRUE` keeps a lease whose `expires_at` is
/// NULL, for which the comparison is neither true nor false: the claim does not take it.
pub const SELECT_LIVE_LEASES: &str = concat!(
    "SELECT game_id, holder, expires_at FROM game_leases WHERE (",
    lease_is_free!("?1"),
    ") IS NOT TRUE"
);

/// The stopped records of the state file as read at the start of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Every record with `status = 'stopped'`.
    pub stopped: u64,
    /// The candidates at the threshold, judged and in order (see [`candidate::select`]).
    pub candidates: Vec<Candidate>,
}

impl Store {
    /// Reads the count of stopped records and the stopped rows that are candidates at
    /// `threshold_ms`.
    ///
    /// The two reads run side by side, the count on a second connection and thread, each in a
    /// read transaction of its own, started together: the count walks every stopped entry of
    /// the index and the selection reads each candidate's row, and one after the other they
    /// took most of a scan's time (docs/benchmark.md). Under a concurrent writer the count may
    /// include or miss what was committed between the two starts; it is a report, and every
    /// candidate is read again under its lease before anything is done with it. A dry run's
    /// immutable read checks afterwards that nobody wrote the file, for both reads.
    pub fn select(&mut self, threshold_ms: i64) -> Result<Selection, StoreError> {
        let (path, opened, connection) = (&self.path, &self.opened, &mut self.connection);
        let (stopped, candidates) = std::thread::scope(|scope| {
            let counting = std::thread::Builder::new()
                .name("count-stopped".to_owned())
                .spawn_scoped(scope, move || {
                    let counter = opened.open(path)?;
                    // The count reads each index page once: a small page cache spares the
                    // thread the allocations of a large one.
                    counter.pragma_update(None, "cache_size", COUNTER_CACHE_PAGES)?;
                    count_stopped(&counter)
                });
            let candidates = select_candidates(connection, threshold_ms);
            let stopped = match counting {
                Ok(counting) => counting
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread could be made (a limit on tasks): count here, after the selection.
                Err(_) => count_stopped(connection),
            };
            (stopped, candidates)
        });
        Ok(Selection {
            stopped: stopped.map_err(|source| self.select_error(source))?,
            candidates: candidates.map_err(|source| self.select_error(source))?,
        })
    }

    /// Counts the stopped records (for a pass over a plan, which selects nothing itself).
    pub fn count_stopped(&self) -> Result<u64, StoreError> {
        count_stopped(&self.connection).map_err(|source| self.select_error(source))
    }

    /// The leases in force at `now_ms`, by game exactly as stored, for a dry run's prediction
    /// of conflicts: every lease that a real run's claim at `now_ms` would not take over.
    pub fn live_leases(&self, now_ms: i64) -> Result<HashMap<FieldValue, LiveLease>, StoreError> {
        let mut statement = self
            .connection
            .prepare(SELECT_LIVE_LEASES)
            .map_err(|source| self.select_error(source))?;
        statement
            .query_map([now_ms], |row| {
                Ok((
                    field(row.get_ref(0)?),
                    live_lease(row.get_ref(1)?, row.get_ref(2)?),
                ))
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.select_error(source))
    }

    /// A failed read: a crashed writer's journal that a dry run may not roll back (exit 75), or
    /// any other failure to read the records or leases.
    fn select_error(&self, source: rusqlite::Error) -> StoreError {
        if is_hot_journal(&source) {
            hot_journal(&self.path)
        } else {
            StoreError::Select {
                path: self.path.clone(),
                source,
            }
        }
    }
}

/// The page cache of the connection that counts the stopped records, in pages.
const COUNTER_CACHE_PAGES: i64 = 32;

/// The count of stopped records.
fn count_stopped(connection: &Connection) -> rusqlite::Result<u64> {
    connection
        .query_row(SELECT_STOPPED_COUNT, [], |row| row.get::<_, i64>(0))
        // A count is never negative.
        .map(i64::unsigned_abs)
}

/// The candidates at `threshold_ms`, judged and in order, read in one read transaction. Each row
/// is judged as it is read: no list of rows besides the candidates'.
fn select_candidates(
    connection: &mut Connection,
    threshold_ms: i64,
) -> rusqlite::Result<Vec<Candidate>> {
    let transaction = connection.transaction()?;
    let candidates = {
        let mut statement = transaction.prepare(SELECT_CANDIDATES)?;
        let mut failure = None;
        let rows = statement
            .query_map([threshold_ms], |row| {
                Ok(StoppedRow {
                    game_id: field(row.get_ref(0)?),
                    container_id: field(row.get_ref(1)?),
                    last_op_at: field(row.get_ref(2)?),
                })
            })?
            .map_while(|row| row.map_err(|error| failure = Some(error)).ok());
        let candidates = candidate::select(rows, threshold_ms);
        if let Some(error) = failure {
            return Err(error);
        }
        candidates
    };
    transaction.commit()?;
    Ok(candidates)
}

impl Store {
    /// The records of these games as they are now, for the orphan pass of a dry run.
    pub fn records_of(
        &self,
        games: &[FieldValue],
    ) -> Result<HashMap<FieldValue, CurrentRecord>, StoreError> {
        records_of(&self.connection, games).map_err(|source| StoreError::Select {
            path: self.path.clone(),
            source,
        })
    }
}

/// The records of these games, by game, as they are now (games without a record are absent).
pub(super) fn records_of(
    connection: &Connection,
    games: &[FieldValue],
) -> rusqlite::Result<HashMap<FieldValue, CurrentRecord>> {
    let mut records = HashMap::with_capacity(games.len());
    for game in games {
        if let Some(record) = read_record(connection, game)? {
            records.insert(game.clone(), record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::testing::{insert, memory, to_file, SCHEMA};
    use super::super::{Access, Store};
    use super::*;
    use crate::stop::Stop;
    use crate::value::Text;

    fn store_with(rows: &[(&str, FieldValue, &str, FieldValue)]) -> (tempfile::TempDir, Store) {
        let connection = memory();
        for (game, container, status, last_op_at) in rows {
            insert(
                &connection,
                &FieldValue::text(game),
                container,
                status,
                last_op_at,
            );
        }
        let (dir, path) = to_file(&connection);
        let store = Store::open(
            &path,
            Access::ReadOnly,
            std::time::Duration::ZERO,
            &Stop::new(),
        )
        .unwrap();
        (dir, store)
    }

    /// The file of `store_with`, in write-ahead-log mode and with every change checkpointed, as
    /// a dry run meets it when the runtime manager is not running: read as immutable.
    fn wal_store_with(rows: &[(&str, FieldValue, &str, FieldValue)]) -> (tempfile::TempDir, Store) {
        let (dir, store) = store_with(rows);
        let path = store.path.clone();
        drop(store);
        let writer = Connection::open(&path).unwrap();
        writer
            .pragma_update_and_check(None, "journal_mode", "wal", |_| Ok(()))
            .unwrap();
        drop(writer);
        let store = Store::open(
            &path,
            Access::ReadOnly,
            std::time::Duration::ZERO,
            &Stop::new(),
        )
        .unwrap();
        assert!(store.immutable.is_some(), "read as immutable");
        (dir, store)
    }

    #[test]
    fn the_count_read_beside_the_selection_sees_the_same_file() {
        let rows: Vec<(String, FieldValue, &str, FieldValue)> = (0..300)
            .map(|n| {
                let status = if n % 3 == 0 { "running" } else { "stopped" };
                (
                    format!("g{n}"),
                    FieldValue::Null,
                    status,
                    FieldValue::Integer(n),
                )
            })
            .collect();
        let rows: Vec<_> = rows
            .iter()
            .map(|(game, container, status, at)| {
                (game.as_str(), container.clone(), *status, at.clone())
            })
            .collect();
        for (dir, mut store) in [store_with(&rows), wal_store_with(&rows)] {
            let selection = store.select(150).unwrap();
            assert_eq!(selection.stopped, 200);
            assert_eq!(selection.candidates.len(), 100, "stopped and below 150");
            store.check_read_consistent(1).unwrap();
            // The second connection of an immutable read creates nothing next to the file.
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["state.db"]);
        }
    }

    #[test]
    fn a_dry_run_reads_a_wal_file_whose_writer_emptied_its_wal() {
        // The runtime manager has the file open and has just checkpointed with TRUNCATE: its
        // `-wal` exists and is empty, its `-shm` exists.
        let (dir, store) =
            wal_store_with(&[("g", FieldValue::Null, "stopped", FieldValue::Integer(1))]);
        let path = store.path.clone();
        drop(store);
        let writer = Connection::open(&path).unwrap();
        writer
            .execute("UPDATE runtime_records SET last_op_at = 2", [])
            .unwrap();
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let wal = dir.path().join("state.db-wal");
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "the -wal is empty"
        );

        let mut store = Store::open(
            &path,
            Access::ReadOnly,
            std::time::Duration::ZERO,
            &Stop::new(),
        )
        .unwrap();
        assert!(store.immutable.is_none(), "read with the writer's locks");
        let selection = store.select(10).unwrap();
        assert_eq!(selection.stopped, 1);
        store.check_read_consistent(1).unwrap();
        drop(writer);
    }

    #[test]
    fn an_immutable_read_of_a_file_written_meanwhile_is_busy() {
        let (_dir, mut store) =
            wal_store_with(&[("g", FieldValue::Null, "stopped", FieldValue::Integer(1))]);
        assert_eq!(store.select(10).unwrap().stopped, 1);
        let writer = Connection::open(&store.path).unwrap();
        writer
            .execute("UPDATE runtime_records SET status = 'removed'", [])
            .unwrap();
        let error = store.check_read_consistent(3).unwrap_err();
        assert!(matches!(
            error,
            StoreError::ChangedWhileRead { attempts: 3, .. }
        ));
        assert!(error.is_busy(), "exit 75: {error}");
    }

    #[test]
    fn a_lock_taken_after_the_open_makes_the_selection_busy() {
        let (_dir, mut store) =
            store_with(&[("g", FieldValue::Null, "stopped", FieldValue::Integer(1))]);
        let writer = Connection::open(&store.path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let error = store.select(10).unwrap_err();
        assert!(error.is_busy(), "{error}");
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(
            store.select(10).unwrap().stopped,
            1,
            "and reads once it is released"
        );
    }

    #[test]
    fn selects_expired_numbers_and_every_row_without_an_age() {
        let c = || FieldValue::text("c");
        let (_dir, mut store) = store_with(&[
            ("int-old", c(), "stopped", FieldValue::Integer(5)),
            ("int-new", c(), "stopped", FieldValue::Integer(5_000)),
            ("int-edge", c(), "stopped", FieldValue::Integer(1_000)),
            ("real-old", c(), "stopped", FieldValue::Real(999.5)),
            ("real-new", c(), "stopped", FieldValue::Real(1_000.5)),
            ("text", c(), "stopped", FieldValue::text("yesterday")),
            ("text-number", c(), "stopped", FieldValue::text("12")),
            ("blob", c(), "stopped", FieldValue::Blob(vec![1])),
            ("running-old", c(), "running", FieldValue::Integer(5)),
            ("removed-text", c(), "removed", FieldValue::text("x")),
        ]);
        let selection = store.select(1_000).unwrap();
        assert_eq!(selection.stopped, 8);
        let mut games: Vec<String> = selection
            .candidates
            .iter()
            .map(|candidate| candidate.row.game_id.to_text().unwrap())
            .collect();
        games.sort();
        // "12" is stored as the integer 12 by the column's INTEGER affinity: an expired number.
        assert_eq!(
            games,
            ["blob", "int-old", "real-old", "text", "text-number"]
        );
    }

    /// The contract's schema with `last_op_at` declared without `NOT NULL`: the only way a
    /// runtime manager could have stored NULLs there.
    fn nullable() -> Connection {
        let schema = SCHEMA.replace("last_op_at   INTEGER NOT NULL", "last_op_at   INTEGER");
        assert_ne!(schema, SCHEMA, "the schema declares last_op_at NOT NULL");
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(&schema).unwrap();
        connection
    }

    fn plan(connection: &Connection) -> Vec<String> {
        connection
            .prepare(&format!("EXPLAIN QUERY PLAN {SELECT_CANDIDATES}"))
            .unwrap()
            .query_map([0_i64], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_selection_searches_ranges_of_the_index() {
        // With the contract's NOT NULL, SQLite knows `last_op_at IS NULL` is false and runs the
        // NULL branch not at all, though its plan still names the index (status=?). Without it,
        // the branch is a search for the NULL key.
        for (connection, null_branch) in [
            (memory(), "(status=?)"),
            (nullable(), "(status=? AND last_op_at=?)"),
        ] {
            let plan = plan(&connection);
            let searches: Vec<&String> = plan
                .iter()
                .filter(|line| line.starts_with("SEARCH"))
                .collect();
            assert_eq!(searches.len(), 3, "{plan:?}");
            assert!(
                searches[0].ends_with("(status=? AND last_op_at<?)"),
                "{plan:?}"
            );
            assert!(searches[1].ends_with(null_branch), "{plan:?}");
            assert!(
                searches[2].ends_with("(status=? AND last_op_at>?)"),
                "{plan:?}"
            );
        }
    }

    /// Runs the selection's statement at threshold 1,000 and returns the games it gave and how
    /// many virtual-machine steps it took: proportional to the index entries it stepped over.
    fn selected_and_steps(connection: &Connection) -> (Vec<String>, i32) {
        let mut statement = connection.prepare(SELECT_CANDIDATES).unwrap();
        let mut games: Vec<String> = statement
            .query_map([1_000_i64], |row| {
                Ok(field(row.get_ref(0)?).to_text().unwrap())
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        games.sort();
        let steps = statement.get_status(rusqlite::StatementStatus::VmStep);
        (games, steps)
    }

    #[test]
    fn the_selection_steps_over_the_candidates_only() {
        for connection in [memory(), nullable()] {
            let stopped = |game: &str, last_op_at: FieldValue| {
                insert(
                    &connection,
                    &FieldValue::text(game),
                    &FieldValue::Null,
                    "stopped",
                    &last_op_at,
                );
            };
            // Many stopped records within the retention, which the selection must not visit.
            for n in 0..2_000 {
                stopped(&format!("fresh-{n:04}"), FieldValue::Integer(5_000 + n));
            }
            stopped("int", FieldValue::Integer(5));
            stopped("real", FieldValue::Real(999.5));
            stopped("text", FieldValue::text("yesterday"));
            stopped("blob", FieldValue::Blob(vec![1]));
            let (games, steps) = selected_and_steps(&connection);
            assert_eq!(games, ["blob", "int", "real", "text"]);
            assert!(steps < 500, "{steps} steps for 4 rows among 2,004");
        }
    }

    #[test]
    fn a_null_last_op_at_is_selected_once_with_or_without_not_null() {
        let smuggled = memory();
        // A NULL can only be in the contract's NOT NULL column if someone edited the schema
        // around it; SQLite then finds it in the range below the threshold (it does not skip
        // NULLs in a column it believes has none) and never in the NULL branch.
        smuggled
            .execute_batch(
                "PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = replace(sql, 'INTEGER NOT NULL   --', 'INTEGER   --')
                  WHERE name = 'runtime_records';
                 PRAGMA writable_schema = OFF;",
            )
            .unwrap();
        let (_dir, path) = to_file(&smuggled);
        let smuggled = Connection::open(&path).unwrap();
        smuggled
            .execute_batch(
                "INSERT INTO runtime_records VALUES ('null', NULL, 'stopped', NULL);
                 INSERT INTO runtime_records VALUES ('int', NULL, 'stopped', 5);
                 PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = replace(sql, 'INTEGER   --', 'INTEGER NOT NULL   --')
                  WHERE name = 'runtime_records';
                 PRAGMA writable_schema = OFF;",
            )
            .unwrap();
        let smuggled = Connection::open(&path).unwrap();
        let declared: String = smuggled
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'runtime_records'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(
            declared.contains("last_op_at   INTEGER NOT NULL"),
            "{declared}"
        );
        let nullable = nullable();
        nullable
            .execute_batch(
                "INSERT INTO runtime_records VALUES ('null', NULL, 'stopped', NULL);
                 INSERT INTO runtime_records VALUES ('int', NULL, 'stopped', 5);",
            )
            .unwrap();
        for connection in [smuggled, nullable] {
            assert_eq!(selected_and_steps(&connection).0, ["int", "null"]);
        }
    }

    #[test]
    fn game_ids_are_read_byte_for_byte() {
        let connection = memory();
        let game = FieldValue::Text(Text::from_bytes(b"g-\xff".to_vec()));
        insert(
            &connection,
            &game,
            &FieldValue::Null,
            "stopped",
            &FieldValue::Integer(1),
        );
        let (_dir, path) = to_file(&connection);
        let mut store = Store::open(
            &path,
            Access::ReadOnly,
            std::time::Duration::ZERO,
            &Stop::new(),
        )
        .unwrap();
        assert_eq!(store.select(10).unwrap().candidates[0].row.game_id, game);
    }
}

//! What a pass reads from the state file before it acts: the count of stopped records, the
//! expired candidates, and, for a dry run, the leases in force; and what the read-only commands
//! read besides: the rows of `operation_log` (`history`, `explain`).

use std::collections::HashMap;
use std::ops::ControlFlow;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql};

use super::open::{hot_journal, is_hot_journal};
use super::protocol::{lease_is_free, read_record};
use super::{field, live_lease, Exact, Store, StoreError};
use crate::candidate::{self, Candidate, StoppedRow};
use crate::cli::HistoryResult;
use crate::job::{CurrentRecord, OP_KIND_ORPHAN, OP_KIND_RECORD};
use crate::outcome::{LiveLease, ResultKind};
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

/// How far out of `started_at` order the rows of `operation_log` may have been appended for a
/// time window to find them all: an hour. A row is appended when an operation ends and records
/// when it started, so a long operation's row comes after the rows of shorter ones that started
/// later (rt-cleanup's own rows, by at most the time it holds a lease: 2 min 10 s with the
/// defaults), and a clock stepped back makes rows older than their predecessors.
///
/// Precisely: a window's search finds every row that belongs to it provided no row starts more
/// than this before a row appended (with a smaller id) before it. A row out of order by more
/// than that may be left out of a window whose boundary falls beside it; a row is never shown
/// outside its window, which every row is checked against exactly.
pub const STARTED_AT_SLACK_MS: i64 = 3_600_000;

/// One `operation_log` row, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// `id`.
    pub id: i64,
    /// `game_id`.
    pub game_id: FieldValue,
    /// `op_kind`.
    pub op_kind: FieldValue,
    /// `op_source`.
    pub op_source: FieldValue,
    /// `outcome`.
    pub outcome: FieldValue,
    /// `error_code`.
    pub error_code: FieldValue,
    /// `error_message`.
    pub error_message: FieldValue,
    /// `container_id`.
    pub container_id: FieldValue,
    /// `started_at`.
    pub started_at: FieldValue,
    /// `finished_at`.
    pub finished_at: FieldValue,
}

impl LogRow {
    /// rt-cleanup's result as its row records it (docs/contract.md, "Results"): `None` for a
    /// row of another `op_kind` (the runtime manager's own), or one that records no result.
    #[must_use]
    pub fn result(&self) -> Option<ResultKind> {
        let kind = self.op_kind.to_text()?;
        if kind != OP_KIND_RECORD && kind != OP_KIND_ORPHAN {
            return None;
        }
        let code = self.error_code.to_text();
        match (self.outcome.to_text()?.as_str(), code.as_deref()) {
            ("success", None) => Some(ResultKind::Removed),
            ("success", Some("replay_no_op")) => Some(ResultKind::ReplayNoOp),
            ("success", Some("conflict")) => Some(ResultKind::Conflict),
            ("failure", _) => Some(ResultKind::Failed),
            _ => None,
        }
    }
}

/// Which rows of `operation_log` to read; every condition given must hold (an empty list
/// holds for every row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Rows of these games, byte for byte.
    pub games: Vec<FieldValue>,
    /// Rows that started at or after this, epoch milliseconds.
    pub since_ms: Option<i64>,
    /// Rows that started before this, epoch milliseconds.
    pub until_ms: Option<i64>,
    /// Rows of any of these results.
    pub results: Vec<HistoryResult>,
    /// Rows of any of these `op_kind`s.
    pub op_kinds: Vec<String>,
    /// Rows of any of these `op_source`s.
    pub op_sources: Vec<String>,
}

/// The SQL condition of a result, as [`LogRow::result`] derives it (a unit test holds the two
/// together).
fn result_condition(result: HistoryResult) -> String {
    // The op_kinds are the constants of src/job.rs, plain words that need no quoting.
    let cleanup_kinds = format!("op_kind IN ('{OP_KIND_RECORD}', '{OP_KIND_ORPHAN}')");
    match result {
        HistoryResult::Removed => {
            format!("({cleanup_kinds} AND outcome = 'success' AND error_code IS NULL)")
        }
        HistoryResult::ReplayNoOp => {
            format!("({cleanup_kinds} AND outcome = 'success' AND error_code = 'replay_no_op')")
        }
        HistoryResult::Conflict => {
            format!("({cleanup_kinds} AND outcome = 'success' AND error_code = 'conflict')")
        }
        HistoryResult::Failed => format!("({cleanup_kinds} AND outcome = 'failure')"),
        HistoryResult::Success => "outcome = 'success'".to_owned(),
        HistoryResult::Failure => "outcome = 'failure'".to_owned(),
    }
}

/// A value bound to a statement of [`log_scan`].
enum Bound<'a> {
    Integer(i64),
    Exact(Exact<'a>),
    Text(&'a str),
}

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Bound::Integer(value) => Ok(ToSqlOutput::Borrowed(ValueRef::Integer(*value))),
            Bound::Exact(value) => value.to_sql(),
            Bound::Text(value) => Ok(ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))),
        }
    }
}

/// The statement that reads the rows of `filter` between the ids `from` (inclusive) and `to`
/// (exclusive), newest first, with its values.
fn log_scan<'a>(
    filter: &'a LogFilter,
    from: Option<i64>,
    to: Option<i64>,
) -> (String, Vec<Bound<'a>>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let placeholders = |values: &mut Vec<Bound<'a>>, bound: Vec<Bound<'a>>| {
        let first = values.len() + 1;
        values.extend(bound);
        (first..=values.len())
            .map(|n| format!("?{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(from) = from {
        conditions.push(format!(
            "id >= {}",
            placeholders(&mut values, vec![Bound::Integer(from)])
        ));
    }
    if let Some(to) = to {
        conditions.push(format!(
            "id < {}",
            placeholders(&mut values, vec![Bound::Integer(to)])
        ));
    }
    if filter.since_ms.is_some() || filter.until_ms.is_some() {
        // A text or blob sorts after every number: only a number is a time.
        conditions.push("typeof(started_at) IN ('integer', 'real')".to_owned());
    }
    if let Some(since) = filter.since_ms {
        conditions.push(format!(
            "started_at >= {}",
            placeholders(&mut values, vec![Bound::Integer(since)])
        ));
    }
    if let Some(until) = filter.until_ms {
        conditions.push(format!(
            "started_at < {}",
            placeholders(&mut values, vec![Bound::Integer(until)])
        ));
    }
    if !filter.games.is_empty() {
        let bound = filter
            .games
            .iter()
            .map(|game| Bound::Exact(Exact(game)))
            .collect();
        conditions.push(format!("game_id IN ({})", placeholders(&mut values, bound)));
    }
    for (column, names) in [
        ("op_kind", &filter.op_kinds),
        ("op_source", &filter.op_sources),
    ] {
        if !names.is_empty() {
            let bound = names.iter().map(|name| Bound::Text(name)).collect();
            conditions.push(format!(
                "{column} IN ({})",
                placeholders(&mut values, bound)
            ));
        }
    }
    if !filter.results.is_empty() {
        let any: Vec<String> = filter
            .results
            .iter()
            .map(|r| result_condition(*r))
            .collect();
        conditions.push(format!("({})", any.join(" OR ")));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (
        format!(
            "SELECT id, game_id, op_kind, op_source, outcome, error_code, error_message, \
             container_id, started_at, finished_at FROM operation_log{condition} ORDER BY id DESC"
        ),
        values,
    )
}

/// The first row at or after id `from` whose `started_at` is a number: its id and its time.
const PROBE: &str = "SELECT id, started_at FROM operation_log \
     WHERE id >= ?1 AND typeof(started_at) IN ('integer', 'real') ORDER BY id LIMIT 1";

/// Finds, by a binary search over the ids in `lo..hi`, an id `b` such that the row just before
/// `b` fails `holds` and the row at `b` or after it, the first there is, passes it. Where the
/// rows passing `holds` come after the others (they do, within [`STARTED_AT_SLACK_MS`], for a
/// time bound moved by the slack) that is where they begin. Rows are found by `probe`: the first
/// row at or after an id, with its time. Every probe is one search of the table's b-tree, and
/// there are about log2(hi - lo) of them.
///
/// Whatever order the times are in, the search keeps these two facts, from which the window's
/// guarantee follows: the last row below `lo` fails `holds`, and the first row at or after `hi`
/// passes it (where there are such rows).
fn boundary<E>(
    mut lo: i64,
    mut hi: i64,
    mut probe: impl FnMut(i64) -> Result<Option<(i64, f64)>, E>,
    holds: impl Fn(f64) -> bool,
) -> Result<i64, E> {
    while lo < hi {
        // Rounded down, so that lo <= mid < hi; the difference of two ids always fits a u64.
        let mid = lo.wrapping_add(((hi.wrapping_sub(lo) as u64) / 2) as i64);
        match probe(mid)? {
            Some((id, started)) if id < hi => {
                if holds(started) {
                    hi = mid;
                } else {
                    lo = id + 1;
                }
            }
            // No row in mid..hi: the first row at or after mid is the first at or after hi.
            _ => hi = mid,
        }
    }
    Ok(lo)
}

impl Store {
    /// Reads the rows of `operation_log` that `filter` selects, newest first (by id), handing
    /// each to `each` until it says to stop; all in one read transaction, which a dry run's
    /// immutable read checks afterwards like the others.
    ///
    /// The log has no index on time: a time window is first turned into a range of ids by a
    /// binary search (see [`boundary`] and [`STARTED_AT_SLACK_MS`]), so that only the rows
    /// of the window, and those appended within the slack around it, are read; every row is
    /// still checked against the window exactly. Without a window, the rows are read from the
    /// newest back, as far as `each` wants.
    pub fn read_log(
        &self,
        filter: &LogFilter,
        each: impl FnMut(LogRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        read_log(&self.connection, filter, each).map_err(|source| {
            if is_hot_journal(&source) {
                hot_journal(&self.path)
            } else {
                StoreError::ReadLog {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }
}

fn read_log(
    connection: &Connection,
    filter: &LogFilter,
    mut each: impl FnMut(LogRow) -> ControlFlow<()>,
) -> rusqlite::Result<()> {
    // The store holds no transaction open between its reads: this one is the only one.
    let transaction = connection.unchecked_transaction()?;
    {
        let (from, to) = id_window(&transaction, filter)?;
        let (sql, values) = log_scan(filter, from, to);
        let mut statement = transaction.prepare(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            let row = LogRow {
                id: row.get(0)?,
                game_id: field(row.get_ref(1)?),
                op_kind: field(row.get_ref(2)?),
                op_source: field(row.get_ref(3)?),
                outcome: field(row.get_ref(4)?),
                error_code: field(row.get_ref(5)?),
                error_message: field(row.get_ref(6)?),
                container_id: field(row.get_ref(7)?),
                started_at: field(row.get_ref(8)?),
                finished_at: field(row.get_ref(9)?),
            };
            if each(row).is_break() {
                break;
            }
        }
    }
    transaction.commit()
}

/// The ids `from..to` that hold the rows of the filter's time window, where it has one.
fn id_window(
    connection: &Connection,
    filter: &LogFilter,
) -> rusqlite::Result<(Option<i64>, Option<i64>)> {
    if filter.since_ms.is_none() && filter.until_ms.is_none() {
        return Ok((None, None));
    }
    // Two statements: SQLite answers min() or max() alone from the b-tree's edge, but both in
    // one statement by a scan of the table.
    let edge = |order: &str| -> rusqlite::Result<Option<i64>> {
        connection
            .query_row(
                &format!("SELECT id FROM operation_log ORDER BY id {order} LIMIT 1"),
                [],
                |row| row.get(0),
            )
            .optional()
    };
    let (Some(first), Some(last)) = (edge("ASC")?, edge("DESC")?) else {
        return Ok((None, None));
    };
    let mut probe = connection.prepare(PROBE)?;
    let mut probe = |id: i64| -> rusqlite::Result<Option<(i64, f64)>> {
        probe
            .query_row([id], |row| {
                let started = match row.get_ref(1)? {
                    ValueRef::Integer(ms) => ms as f64,
                    ValueRef::Real(ms) => ms,
                    // The probe selects numbers only.
                    _ => f64::NAN,
                };
                Ok((row.get(0)?, started))
            })
            .optional()
    };
    let end = last.saturating_add(1);
    let from = match filter.since_ms {
        Some(since) => {
            let bound = since.saturating_sub(STARTED_AT_SLACK_MS) as f64;
            Some(boundary(first, end, &mut probe, |started| {
                started >= bound
            })?)
        }
        None => None,
    };
    let to = match filter.until_ms {
        Some(until) => {
            let bound = until.saturating_add(STARTED_AT_SLACK_MS) as f64;
            Some(boundary(
                from.unwrap_or(first),
                end,
                &mut probe,
                |started| started >= bound,
            )?)
        }
        None => None,
    };
    Ok((from, to))
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

    // ------------------------------------------------------------------------------------------
    // operation_log: the window's binary search, the filters, the order.
    // ------------------------------------------------------------------------------------------

    const HOUR: i64 = 3_600_000;

    /// The rows of `log_times` as a probe over ids 1, 2, …: the first row at or after an id.
    fn probe_of(times: &[i64]) -> impl FnMut(i64) -> Result<Option<(i64, f64)>, ()> + '_ {
        |id| {
            let from = usize::try_from(id.max(1) - 1).unwrap();
            Ok(times
                .get(from..)
                .and_then(|rest| rest.first())
                .map(|&started| (from as i64 + 1, started as f64)))
        }
    }

    /// The exact first id from which every row started at or after `since` (ids from 1).
    fn window_start(times: &[i64], since: i64, slack: i64) -> i64 {
        boundary(1, times.len() as i64 + 1, probe_of(times), |started| {
            started >= (since - slack) as f64
        })
        .unwrap()
    }

    #[test]
    fn the_search_finds_where_the_rows_of_a_window_begin_in_about_log2_probes() {
        let times: Vec<i64> = (0..100_000).map(|n| n * 60_000).collect();
        for since in [
            0,
            59_999,
            60_000,
            3_000_000_000,
            6_000_000_000,
            i64::MAX / 2,
        ] {
            let start = window_start(&times, since, 0);
            let exact = times
                .iter()
                .position(|&t| t >= since)
                .map_or(100_001, |p| p + 1);
            assert_eq!(start, exact as i64, "since {since}");
        }
        let mut probes = 0;
        let counted = |id| {
            probes += 1;
            probe_of(&times)(id)
        };
        boundary(1, 100_001, counted, |started| started >= 3e9).unwrap();
        assert!(probes <= 18, "{probes} probes for 100,000 rows");
    }

    #[test]
    fn ids_with_gaps_are_searched_as_the_rows_there_are() {
        // Ids 10, 20, …, 1000 (deleted rows leave gaps); row 10k started at k minutes.
        let rows: Vec<(i64, i64)> = (1..=100).map(|k| (k * 10, k * 60_000)).collect();
        let probe = |id: i64| -> Result<Option<(i64, f64)>, ()> {
            Ok(rows
                .iter()
                .find(|(row, _)| *row >= id)
                .map(|&(row, started)| (row, started as f64)))
        };
        let from = boundary(10, 1001, probe, |started| started >= 42.0 * 60_000.0).unwrap();
        let first = rows.iter().find(|(row, _)| *row >= from).unwrap();
        assert_eq!(first.0, 420);
        assert!(from > 410, "{from}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 500,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Rows appended out of order by at most the slack (each row's time is an increasing
        /// one moved back by up to the slack): no row at or after the window's start is ever
        /// left before the start found.
        #[test]
        fn rows_out_of_order_within_the_slack_are_all_found(
            steps in proptest::collection::vec(0_i64..(3 * HOUR), 1..400),
            late in proptest::collection::vec(0_i64..=STARTED_AT_SLACK_MS, 400),
            since_at in 0_usize..400,
        ) {
            let mut clock = 0;
            let times: Vec<i64> = steps
                .iter()
                .zip(&late)
                .map(|(step, late)| {
                    clock += step;
                    clock - late
                })
                .collect();
            let since = times[since_at.min(times.len() - 1)];
            let start = window_start(&times, since, STARTED_AT_SLACK_MS);
            for (n, &started) in times.iter().enumerate() {
                if started >= since {
                    proptest::prop_assert!(
                        n as i64 + 1 >= start,
                        "row {} started at {started} >= {since} but the window starts at {start}",
                        n + 1
                    );
                }
            }
        }
    }

    /// An `operation_log` row of a test: `(game, op_kind, outcome, error_code, started_at)`.
    type Logged<'a> = (&'a [u8], &'a str, &'a str, Option<&'a str>, FieldValue);

    /// A state file whose `operation_log` has these rows, ids from 1 in this order.
    fn log_store(rows: &[Logged<'_>]) -> (tempfile::TempDir, Store) {
        let connection = memory();
        for (game, kind, outcome, code, started) in rows {
            connection
                .execute(
                    "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
                     container_id, started_at, finished_at) \
                     VALUES (?1, ?2, 'auto_ttl', ?3, ?4, 'c', ?5, 0)",
                    rusqlite::params![
                        Exact(&FieldValue::Text(Text::from_bytes(game.to_vec()))),
                        kind,
                        outcome,
                        code,
                        Exact(started)
                    ],
                )
                .unwrap();
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

    fn ids(store: &Store, filter: &LogFilter) -> Vec<i64> {
        let mut ids = Vec::new();
        store
            .read_log(filter, |row| {
                ids.push(row.id);
                ControlFlow::Continue(())
            })
            .unwrap();
        ids
    }

    #[test]
    fn a_window_holds_exactly_its_rows_newest_first_even_out_of_order_at_its_edges() {
        let minute = 60_000;
        let at = |m: i64| FieldValue::Integer(1_000 * HOUR + m * minute);
        let mut rows: Vec<Logged<'_>> = (0..300)
            .map(|m| (&b"g"[..], "cleanup_container", "success", None, at(m)))
            .collect();
        // Appended late, out of order: started before rows appended earlier, within the slack.
        rows[150].4 = at(99); // just inside a window from minute 99
        rows[151].4 = at(98); // just outside it
        rows[220].4 = at(199); // just inside a window until minute 200
        rows[60].4 = at(201); // appended early, started after the window's end
        rows[10].4 = FieldValue::text("yesterday"); // no time: in no window
        let (_dir, store) = log_store(&rows);
        let filter = LogFilter {
            since_ms: Some(1_000 * HOUR + 99 * minute),
            until_ms: Some(1_000 * HOUR + 200 * minute),
            ..LogFilter::default()
        };
        let found = ids(&store, &filter);
        let mut expected: Vec<i64> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                matches!(row.4, FieldValue::Integer(t)
                    if (filter.since_ms.unwrap()..filter.until_ms.unwrap()).contains(&t))
            })
            .map(|(n, _)| n as i64 + 1)
            .collect();
        expected.reverse();
        assert_eq!(found, expected);
        assert!(found.contains(&151) && found.contains(&221) && !found.contains(&152));
        assert!(!found.contains(&61) && !found.contains(&11));
        // Without a window, every row, the one without a time included, newest first.
        let all = ids(&store, &LogFilter::default());
        assert_eq!(all, (1..=300).rev().collect::<Vec<i64>>());
    }

    #[test]
    fn a_window_reads_only_the_ids_around_it() {
        let connection = memory();
        connection
            .execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
                 INSERT INTO operation_log (game_id, op_kind, op_source, outcome, started_at,
                   finished_at)
                 SELECT 'g', 'cleanup_container', 'auto_ttl', 'success', i * 60000, 0 FROM n;",
            )
            .unwrap();
        let filter = LogFilter {
            since_ms: Some(90_000 * 60_000),
            until_ms: Some(90_100 * 60_000),
            ..LogFilter::default()
        };
        let (from, to) = id_window(&connection, &filter).unwrap();
        // The slack of an hour is 60 rows on either side.
        assert_eq!((from, to), (Some(89_940), Some(90_160)));
    }

    #[test]
    fn the_result_filters_select_what_the_rows_say_they_are() {
        let rows: Vec<Logged<'_>> = vec![
            (
                b"g",
                "cleanup_container",
                "success",
                None,
                FieldValue::Integer(1),
            ),
            (
                b"g",
                "cleanup_container",
                "success",
                Some("replay_no_op"),
                FieldValue::Integer(2),
            ),
            (
                b"g",
                "cleanup_orphan",
                "success",
                Some("conflict"),
                FieldValue::Integer(3),
            ),
            (
                b"g",
                "cleanup_container",
                "failure",
                Some("docker_error"),
                FieldValue::Integer(4),
            ),
            (
                b"g",
                "cleanup_orphan",
                "success",
                None,
                FieldValue::Integer(5),
            ),
            (b"g", "start_game", "success", None, FieldValue::Integer(6)),
            (
                b"g",
                "start_game",
                "failure",
                Some("E"),
                FieldValue::Integer(7),
            ),
            (
                b"g",
                "cleanup_container",
                "success",
                Some("other"),
                FieldValue::Integer(8),
            ),
        ];
        let (_dir, store) = log_store(&rows);
        let mut read = Vec::new();
        store
            .read_log(&LogFilter::default(), |row| {
                read.push(row);
                ControlFlow::Continue(())
            })
            .unwrap();
        for result in [
            HistoryResult::Removed,
            HistoryResult::ReplayNoOp,
            HistoryResult::Conflict,
            HistoryResult::Failed,
            HistoryResult::Success,
            HistoryResult::Failure,
        ] {
            let filter = LogFilter {
                results: vec![result],
                ..LogFilter::default()
            };
            let expected: Vec<i64> = read
                .iter()
                .filter(|row| match result {
                    HistoryResult::Removed => row.result() == Some(ResultKind::Removed),
                    HistoryResult::ReplayNoOp => row.result() == Some(ResultKind::ReplayNoOp),
                    HistoryResult::Conflict => row.result() == Some(ResultKind::Conflict),
                    HistoryResult::Failed => row.result() == Some(ResultKind::Failed),
                    HistoryResult::Success => row.outcome == FieldValue::text("success"),
                    HistoryResult::Failure => row.outcome == FieldValue::text("failure"),
                })
                .map(|row| row.id)
                .collect();
            assert_eq!(ids(&store, &filter), expected, "{result:?}");
        }
        assert_eq!(read.iter().filter_map(LogRow::result).count(), 5);
        let either = LogFilter {
            results: vec![HistoryResult::Conflict, HistoryResult::Failed],
            ..LogFilter::default()
        };
        assert_eq!(ids(&store, &either), [4, 3]);
    }

    #[test]
    fn games_kinds_and_sources_are_matched_byte_for_byte() {
        let rows: Vec<Logged<'_>> = vec![
            (
                b"g-\xff",
                "cleanup_container",
                "success",
                None,
                FieldValue::Integer(1),
            ),
            (
                b"g-1",
                "cleanup_container",
                "success",
                None,
                FieldValue::Integer(2),
            ),
            (
                b"G-1",
                "start_game",
                "success",
                None,
                FieldValue::Integer(3),
            ),
            (
                b"g-1",
                "start_game",
                "success",
                None,
                FieldValue::Integer(4),
            ),
        ];
        let (_dir, store) = log_store(&rows);
        let games = |games: &[&[u8]]| LogFilter {
            games: games
                .iter()
                .map(|game| FieldValue::Text(Text::from_bytes(game.to_vec())))
                .collect(),
            ..LogFilter::default()
        };
        assert_eq!(ids(&store, &games(&[b"g-\xff"])), [1]);
        assert_eq!(ids(&store, &games(&[b"g-1"])), [4, 2]);
        assert_eq!(ids(&store, &games(&[b"g-1", b"G-1"])), [4, 3, 2]);
        let kind = LogFilter {
            op_kinds: vec!["start_game".into()],
            op_sources: vec!["auto_ttl".into()],
            ..games(&[b"g-1"])
        };
        assert_eq!(ids(&store, &kind), [4]);
        let mut first_two = Vec::new();
        store
            .read_log(&LogFilter::default(), |row| {
                first_two.push(row.id);
                if first_two.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(first_two, [4, 3], "a reader that has enough stops the scan");
    }
}

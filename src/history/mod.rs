//! `rt-cleanup history`: the rows of `operation_log`, newest first, whoever wrote them, read as
//! a dry run reads (no write, no lock held while printing, nothing created beside the file, a
//! consistent read), filtered by game, time window, result, `op_kind` and `op_source`.
//!
//! The log belongs to the runtime manager and has no index on time or game; rt-cleanup never
//! changes the schema. A time window is found as a range of ids (see
//! [`crate::store::STARTED_AT_SLACK_MS`]); a game's rows are found by reading the log from the
//! newest row back, as far as `--limit` needs.

pub(crate) mod render;

use std::ffi::OsString;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::cleanup::read::until_consistent;
use crate::cleanup::{ended_by_signal, RunError};
use crate::cli::OutputFormat;
use crate::config::HistoryConfig;
use crate::exit::ExitStatus;
use crate::stop::Stop;
use crate::store::{Access, LogFilter, LogRow, Store};
use crate::time::now_ms;
use crate::value::{self, FieldValue, Text};

/// The rows `history` found, ready to print.
#[derive(Debug)]
pub struct History {
    /// The state file, as given (bytes that are not UTF-8 shown as `\xNN`).
    state: String,
    /// When the command took `now`, epoch milliseconds.
    now_ms: i64,
    /// The window's start, epoch milliseconds.
    since_ms: Option<i64>,
    /// The window's end (exclusive), epoch milliseconds.
    until_ms: Option<i64>,
    /// `--limit`.
    limit: usize,
    /// The rows, newest first: at most `limit`.
    rows: Vec<LogRow>,
    /// Whether more rows match than `limit`.
    more: bool,
}

impl History {
    /// Writes the rows for stdout, in the configured format.
    pub fn write(&self, format: OutputFormat, out: &mut impl Write) -> io::Result<()> {
        match format {
            OutputFormat::Text => render::write_text(self, out),
            OutputFormat::Json => render::write_json(self, out),
        }
    }

    /// The exit status of a history that was read: 0, whatever it found.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        ExitStatus::Success
    }
}

/// A game id as given on the command line, byte for byte, as the state file's key.
pub(crate) fn game_of(given: &OsString) -> FieldValue {
    FieldValue::Text(Text::from_bytes(given.as_bytes().to_vec()))
}

/// Reads the rows `config` asks for. `stop` is shared with the signal listener: a signal ends
/// a wait for the state file's lock, and a read that a signal came during prints nothing.
pub fn run(config: &HistoryConfig, stop: &Arc<Stop>) -> Result<History, RunError> {
    let now_ms = now_ms();
    let filter = LogFilter {
        games: config.games.iter().map(game_of).collect(),
        since_ms: config.since.map(|since| since.at(now_ms)),
        until_ms: config.until.map(|until| until.at(now_ms)),
        results: config.results.clone(),
        op_kinds: config.op_kinds.clone(),
        op_sources: config.op_sources.clone(),
    };
    let (_, (rows, more)) = until_consistent(
        &config.state,
        1,
        |_| {
            let store = Store::open(&config.state, Access::ReadOnly, config.lock_wait, stop)?;
            let read = newest(&store, &filter, config.limit)?;
            Ok::<_, RunError>((store, read))
        },
        |(store, _)| store,
    )
    .map_err(|error| ended_by_signal(error, &config.state, stop))?;
    if let Some(signal) = stop.signalled() {
        return Err(RunError::Stopped {
            signal,
            state: config.state.clone(),
        });
    }
    tracing::debug!(rows = rows.len(), more, "read operation_log");
    Ok(History {
        state: value::escape_invalid_utf8(config.state.as_os_str().as_encoded_bytes()).into_owned(),
        now_ms,
        since_ms: filter.since_ms,
        until_ms: filter.until_ms,
        limit: config.limit,
        rows,
        more,
    })
}

/// The newest `limit` rows that `filter` selects, and whether there are more.
fn newest(
    store: &Store,
    filter: &LogFilter,
    limit: usize,
) -> Result<(Vec<LogRow>, bool), RunError> {
    let mut rows = Vec::new();
    let mut more = false;
    store.read_log(filter, |row| {
        if rows.len() == limit {
            more = true;
            return ControlFlow::Break(());
        }
        rows.push(row);
        ControlFlow::Continue(())
    })?;
    Ok((rows, more))
}

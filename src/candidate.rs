//! Turning the stopped rows of the state file into the candidates of one pass.
//!
//! The state file is written by another program and may hold any type in any column, so a row is
//! read as raw [`FieldValue`]s and judged here, in pure code that the tests can drive with any
//! value. Nothing in this module talks to SQLite or Docker.

use std::cmp::Ordering;
use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The largest epoch millisecond that RFC 3339 can show (9999-12-31T23:59:59.999Z).
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// The longest container reference Docker accepts, and so the longest this tool sends.
pub const MAX_REFERENCE_LEN: usize = 255;

/// A column value exactly as SQLite stored it.
///
/// In a plan file it is written as JSON `null`, a number, a string, or an array of bytes, so that
/// a plan names each row exactly as it was selected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text (lossily decoded when it is not UTF-8).
    Text(String),
    /// A blob.
    Blob(Vec<u8>),
}

impl FieldValue {
    /// The SQLite type name, as `typeof()` reports it.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Null => "null",
            FieldValue::Integer(_) => "integer",
            FieldValue::Real(_) => "real",
            FieldValue::Text(_) => "text",
            FieldValue::Blob(_) => "blob",
        }
    }

    /// The value as text for reports and the log, with blobs as SQL hex literals.
    #[must_use]
    pub fn to_text(&self) -> Option<String> {
        match self {
            FieldValue::Null => None,
            FieldValue::Integer(value) => Some(value.to_string()),
            FieldValue::Real(value) => Some(value.to_string()),
            FieldValue::Text(value) => Some(value.clone()),
            FieldValue::Blob(bytes) => {
                let mut literal = String::with_capacity(bytes.len() * 2 + 3);
                literal.push_str("X'");
                for byte in bytes {
                    // Writing to a String cannot fail.
                    let _ = write!(literal, "{byte:02X}");
                }
                literal.push('\'');
                Some(literal)
            }
        }
    }
}

impl fmt::Display for FieldValue {
    /// Shows the value shortened and escaped, fit for one line of a log or an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            None => f.write_str("NULL"),
            Some(text) => {
                let shown: String = text.chars().take(64).collect();
                let ellipsis = if shown.len() < text.len() { "…" } else { "" };
                write!(f, "\"{}{ellipsis}\"", shown.escape_debug())
            }
        }
    }
}

/// One `status = 'stopped'` row as it was read, before any judgement of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppedRow {
    /// `runtime_records.game_id`.
    pub game_id: FieldValue,
    /// `runtime_records.container_id`.
    pub container_id: FieldValue,
    /// `runtime_records.last_op_at`.
    pub last_op_at: FieldValue,
}

/// A container reference that is safe to put in a Docker API path.
///
/// Only `[A-Za-z0-9][A-Za-z0-9_.-]*` of at most 255 characters is accepted, so a hostile state
/// file can never make this tool send a `/`, `?`, `%` or `..` to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef(String);

impl ContainerRef {
    /// Validates a reference read from the state file.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if value.len() > MAX_REFERENCE_LEN {
            Err(format!(
                "container_id is {} characters long, more than the {MAX_REFERENCE_LEN} Docker allows",
                value.len()
            ))
        } else if first_ok && rest_ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "container_id {} is not a Docker container reference \
                 ([A-Za-z0-9][A-Za-z0-9_.-]*)",
                FieldValue::Text(value.to_owned())
            ))
        }
    }

    /// The reference as sent to Docker.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pass may do with a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Remove this container.
    Container(ContainerRef),
    /// The record names no container: nothing to remove, the record can move to `removed`.
    NoContainer,
    /// The row is unusable; the reason says which column and why. Never sent to Docker.
    Invalid(String),
}

/// An expired stopped record that the pass will act on, or report as deferred.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The game, as text (a non-text `game_id` makes the candidate invalid).
    pub game_id: String,
    /// The row exactly as selected: the compare-and-set transition matches on it.
    pub row: StoppedRow,
    /// `last_op_at` where it is an integer in the range RFC 3339 can show.
    pub last_op_at: Option<i64>,
    /// What to do with it.
    pub target: Target,
}

impl Candidate {
    /// Judges one row. Never fails: every problem becomes [`Target::Invalid`].
    #[must_use]
    pub fn from_row(row: StoppedRow) -> Self {
        let game_id = match &row.game_id {
            FieldValue::Text(text) => text.clone(),
            other => other.to_text().unwrap_or_default(),
        };
        let last_op_at = match row.last_op_at {
            FieldValue::Integer(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => Some(ms),
            _ => None,
        };
        let target = Self::judge(&row);
        Self {
            game_id,
            row,
            last_op_at,
            target,
        }
    }

    fn judge(row: &StoppedRow) -> Target {
        if !matches!(row.game_id, FieldValue::Text(_)) {
            return Target::Invalid(format!(
                "game_id {} is {}, not text",
                row.game_id,
                row.game_id.type_name()
            ));
        }
        match row.last_op_at {
            FieldValue::Integer(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => {}
            FieldValue::Integer(ms) => {
                return Target::Invalid(format!(
                    "last_op_at {ms} is outside the epoch milliseconds of years 1970 to 9999"
                ));
            }
            ref other => {
                return Target::Invalid(format!(
                    "last_op_at {other} is {}, not an integer of epoch milliseconds",
                    other.type_name()
                ));
            }
        }
        match &row.container_id {
            FieldValue::Null => Target::NoContainer,
            FieldValue::Text(text) => match ContainerRef::parse(text) {
                Ok(reference) => Target::Container(reference),
                Err(reason) => Target::Invalid(reason),
            },
            other => Target::Invalid(format!(
                "container_id {other} is {}, not text",
                other.type_name()
            )),
        }
    }

    /// The container reference as stored, for reports and the log (`None` where it is NULL).
    #[must_use]
    pub fn container_text(&self) -> Option<String> {
        self.row.container_id.to_text()
    }
}

/// Whether a row's `last_op_at` makes it a candidate: an integer older than the threshold, or
/// any value that is not an integer (such a row is reported as `invalid_record`).
#[must_use]
pub fn is_expired(last_op_at: &FieldValue, threshold_ms: i64) -> bool {
    match last_op_at {
        FieldValue::Integer(ms) => *ms < threshold_ms,
        _ => true,
    }
}

/// Selects and orders the candidates of a pass from the stopped rows read from the state file.
///
/// Integer timestamps come first, oldest first; rows whose `last_op_at` is not an integer have no
/// age and come last. Ties are broken by `game_id` so that the order is stable across runs.
#[must_use]
pub fn select(rows: Vec<StoppedRow>, threshold_ms: i64) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = rows
        .into_iter()
        .filter(|row| is_expired(&row.last_op_at, threshold_ms))
        .map(Candidate::from_row)
        .collect();
    candidates.sort_by(oldest_first);
    candidates
}

fn oldest_first(a: &Candidate, b: &Candidate) -> Ordering {
    let key = |c: &Candidate| match c.row.last_op_at {
        FieldValue::Integer(ms) => (0, ms),
        _ => (1, 0),
    };
    key(a).cmp(&key(b)).then_with(|| a.game_id.cmp(&b.game_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(game: &str, container: FieldValue, last_op_at: FieldValue) -> StoppedRow {
        StoppedRow {
            game_id: FieldValue::Text(game.into()),
            container_id: container,
            last_op_at,
        }
    }

    fn text(value: &str) -> FieldValue {
        FieldValue::Text(value.into())
    }

    #[test]
    fn accepts_ids_and_names_that_docker_accepts() {
        for good in ["a", "4f1c", "game-17_server.v2", &"a".repeat(255), "0"] {
            assert!(ContainerRef::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn rejects_references_that_could_reach_another_endpoint() {
        for bad in [
            "",
            "../images/x",
            "a/../../images",
            "a?force=1",
            "a%2Fb",
            ".hidden",
            "-flag",
            "_x",
            "a b",
            "a\nb",
            "é",
            "a#b",
            &"a".repeat(256),
        ] {
            assert!(ContainerRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn selects_only_rows_older_than_the_threshold_oldest_first() {
        let rows = vec![
            row("new", text("c1"), FieldValue::Integer(2_000)),
            row("old", text("c2"), FieldValue::Integer(500)),
            row("edge", text("c3"), FieldValue::Integer(1_000)),
            row("older", text("c4"), FieldValue::Integer(100)),
        ];
        let picked: Vec<_> = select(rows, 1_000).into_iter().map(|c| c.game_id).collect();
        assert_eq!(picked, ["older", "old"]);
    }

    #[test]
    fn a_future_last_op_at_is_not_expired() {
        let rows = vec![row("future", text("c"), FieldValue::Integer(i64::MAX))];
        assert!(select(rows, 1_000).is_empty());
    }

    #[test]
    fn non_integer_last_op_at_is_an_invalid_candidate_listed_last() {
        let rows = vec![
            row("b-text", text("c"), text("yesterday")),
            row("a-real", text("c"), FieldValue::Real(1.5)),
            row("valid", text("c"), FieldValue::Integer(5)),
            row("c-blob", text("c"), FieldValue::Blob(vec![1])),
        ];
        let picked = select(rows, 1_000);
        let ids: Vec<_> = picked.iter().map(|c| c.game_id.as_str()).collect();
        assert_eq!(ids, ["valid", "a-real", "b-text", "c-blob"]);
        for candidate in &picked[1..] {
            assert!(matches!(candidate.target, Target::Invalid(ref m) if m.contains("last_op_at")));
            assert_eq!(candidate.last_op_at, None);
        }
    }

    #[test]
    fn a_null_container_needs_no_docker_call() {
        let candidate = Candidate::from_row(row("g", FieldValue::Null, FieldValue::Integer(1)));
        assert_eq!(candidate.target, Target::NoContainer);
    }

    #[test]
    fn a_hostile_container_id_is_invalid_and_named_in_the_reason() {
        let candidate =
            Candidate::from_row(row("g", text("../../images/x"), FieldValue::Integer(1)));
        assert!(
            matches!(candidate.target, Target::Invalid(ref m) if m.contains("../../images/x")),
            "{:?}",
            candidate.target
        );
    }

    #[test]
    fn non_text_game_or_container_is_invalid() {
        let blob_game = StoppedRow {
            game_id: FieldValue::Blob(vec![0xff]),
            container_id: text("c"),
            last_op_at: FieldValue::Integer(1),
        };
        assert!(matches!(
            Candidate::from_row(blob_game).target,
            Target::Invalid(_)
        ));
        let blob_container = row("g", FieldValue::Blob(vec![1, 2]), FieldValue::Integer(1));
        let candidate = Candidate::from_row(blob_container);
        assert!(matches!(candidate.target, Target::Invalid(_)));
        assert_eq!(candidate.container_text().as_deref(), Some("X'0102'"));
    }

    #[test]
    fn a_negative_timestamp_is_invalid() {
        let candidate = Candidate::from_row(row("g", text("c"), FieldValue::Integer(-1)));
        assert!(matches!(candidate.target, Target::Invalid(_)));
        assert_eq!(candidate.last_op_at, None);
    }
}

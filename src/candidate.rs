//! Turning the stopped rows of the state file into the candidates of one pass.
//!
//! A row is read as raw [`FieldValue`]s and judged here, in pure code that the tests can drive
//! with any value. Nothing in this module talks to SQLite or Docker.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::MAX_EPOCH_MS;
use crate::value::FieldValue;

/// The longest container reference Docker accepts, and so the longest this tool sends.
pub const MAX_REFERENCE_LEN: usize = 255;

/// One `status = 'stopped'` row as it was read, before any judgement of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedRow {
    /// `runtime_records.game_id`.
    pub game_id: FieldValue,
    /// `runtime_records.container_id`.
    pub container_id: FieldValue,
    /// `runtime_records.last_op_at`.
    pub last_op_at: FieldValue,
}

/// The bytes a container reference may hold: `[A-Za-z0-9_.-]`.
const REFERENCE_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-';
        byte += 1;
    }
    table
};

/// A container reference that is safe to put in a Docker API path.
///
/// Only `[A-Za-z0-9][A-Za-z0-9_.-]*` of at most 255 characters is accepted, so a hostile state
/// file can never make this tool send a `/`, `?`, `%` or `..` to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef(String);

impl ContainerRef {
    /// Validates a reference read from the state file.
    pub fn parse(value: &str) -> Result<Self, String> {
        let first_ok = value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        // A table lookup per byte with no early stop at a bad one, which the compiler turns
        // into a check of many bytes at once: a scan checks one reference per expired record,
        // and one character at a time this was a tenth of a dry run's own work.
        let bad = value.bytes().fold(0_u8, |bad, b| {
            bad | u8::from(!REFERENCE_BYTE[usize::from(b)])
        });
        let rest_ok = bad == 0;
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
                FieldValue::text(value)
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The row exactly as selected: the lease, the compare-and-set and the log use its values.
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
        let last_op_at = match row.last_op_at {
            FieldValue::Integer(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => Some(ms),
            _ => None,
        };
        let target = judge(&row);
        Self {
            row,
            last_op_at,
            target,
        }
    }

    /// The container reference as stored, for reports and the log (`None` where it is NULL).
    #[must_use]
    pub fn container_text(&self) -> Option<String> {
        self.row.container_id.to_text()
    }
}

fn judge(row: &StoppedRow) -> Target {
    if row.game_id == FieldValue::Null {
        // Possible only in a table made without the contract's NOT NULL.
        return Target::Invalid(
            "game_id is NULL: no lease can be taken on it and no operation_log row written for \
             it (both name a game), so it is reported and left as it is; give the row its game \
             or delete it"
                .to_owned(),
        );
    }
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
        FieldValue::Text(text) => match text.as_str() {
            Some(text) => match ContainerRef::parse(text) {
                Ok(reference) => Target::Container(reference),
                Err(reason) => Target::Invalid(reason),
            },
            None => Target::Invalid(format!(
                "container_id {} is not valid UTF-8",
                row.container_id
            )),
        },
        other => Target::Invalid(format!(
            "container_id {other} is {}, not text",
            other.type_name()
        )),
    }
}

/// Whether a row's `last_op_at` makes it a candidate at `threshold_ms`: a number (integer or
/// real, compared as SQLite compares them) below the threshold, or a NULL, text or blob, which
/// has no age and is always a candidate (it fails with `invalid_record`).
#[must_use]
pub fn is_expired(last_op_at: &FieldValue, threshold_ms: i64) -> bool {
    match last_op_at {
        FieldValue::Integer(ms) => *ms < threshold_ms,
        FieldValue::Real(ms) => *ms < threshold_ms as f64,
        FieldValue::Null | FieldValue::Text(_) | FieldValue::Blob(_) => true,
    }
}

/// Selects and orders the candidates of a pass from the stopped rows read from the state file.
///
/// Integer timestamps come first, oldest first; rows whose `last_op_at` is not an integer have no
/// age and come last. Ties are broken by `game_id` so that the order is stable across runs.
#[must_use]
pub fn select(rows: impl IntoIterator<Item = StoppedRow>, threshold_ms: i64) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = rows
        .into_iter()
        .filter(|row| is_expired(&row.last_op_at, threshold_ms))
        .map(Candidate::from_row)
        .collect();
    // Game ids are unique, so no two candidates compare equal (unless a schema edited around
    // the primary key let in ids that are neither text nor blob): an unstable sort gives the
    // same order without a scratch copy of every candidate.
    candidates.sort_unstable_by(oldest_first);
    candidates
}

fn oldest_first(a: &Candidate, b: &Candidate) -> Ordering {
    let key = |c: &Candidate| match c.row.last_op_at {
        FieldValue::Integer(ms) => (0, ms),
        _ => (1, 0),
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| game_order(&a.row.game_id).cmp(&game_order(&b.row.game_id)))
}

/// A total order of game ids by their bytes, for stable ties.
fn game_order(game: &FieldValue) -> (u8, &[u8]) {
    match game {
        FieldValue::Text(text) => (0, text.as_bytes()),
        FieldValue::Blob(bytes) => (1, bytes),
        _ => (2, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Text;
    use proptest::prelude::*;

    fn row(game: &str, container: FieldValue, last_op_at: FieldValue) -> StoppedRow {
        StoppedRow {
            game_id: FieldValue::text(game),
            container_id: container,
            last_op_at,
        }
    }

    fn text(value: &str) -> FieldValue {
        FieldValue::text(value)
    }

    #[test]
    fn accepts_ids_and_names_that_docker_accepts() {
        for good in ["a", "4f1c", "game-17_server.v2", &"a".repeat(255), "0"] {
            let reference = ContainerRef::parse(good).unwrap();
            // Sent and shown exactly as stored.
            assert_eq!(
                (reference.as_str(), reference.to_string().as_str()),
                (good, good)
            );
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
        let picked: Vec<_> = select(rows, 1_000)
            .iter()
            .map(|c| c.row.game_id.to_text().unwrap())
            .collect();
        assert_eq!(picked, ["older", "old"]);
    }

    #[test]
    fn ties_are_ordered_by_the_game_ids_bytes_text_before_blobs() {
        let game = |game_id: FieldValue| StoppedRow {
            game_id,
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Integer(5),
        };
        let rows = vec![
            game(FieldValue::Blob(vec![2])),
            game(FieldValue::Blob(vec![1])),
            game(text("b")),
            game(text("a")),
        ];
        let picked: Vec<_> = select(rows, 1_000)
            .into_iter()
            .map(|c| c.row.game_id)
            .collect();
        assert_eq!(
            picked,
            [
                text("a"),
                text("b"),
                FieldValue::Blob(vec![1]),
                FieldValue::Blob(vec![2])
            ]
        );
    }

    #[test]
    fn a_future_last_op_at_is_not_expired() {
        let rows = vec![row("future", text("c"), FieldValue::Integer(i64::MAX))];
        assert!(select(rows, 1_000).is_empty());
    }

    #[test]
    fn reals_compare_as_numbers_and_the_rest_have_no_age() {
        assert!(is_expired(&FieldValue::Real(999.5), 1_000));
        assert!(!is_expired(&FieldValue::Real(1_000.0), 1_000));
        assert!(!is_expired(&FieldValue::Real(1e300), 1_000));
        for always in [
            FieldValue::Null,
            text("yesterday"),
            FieldValue::Blob(vec![1]),
        ] {
            assert!(is_expired(&always, i64::MIN), "{always:?}");
        }
    }

    #[test]
    fn non_integer_last_op_at_is_an_invalid_candidate_listed_last() {
        let rows = vec![
            row("b-text", text("c"), text("yesterday")),
            row("a-real", text("c"), FieldValue::Real(1.5)),
            row("e-real-not-expired", text("c"), FieldValue::Real(5_000.5)),
            row("valid", text("c"), FieldValue::Integer(5)),
            row("c-blob", text("c"), FieldValue::Blob(vec![1])),
            row("d-null", text("c"), FieldValue::Null),
        ];
        let picked = select(rows, 1_000);
        let ids: Vec<_> = picked
            .iter()
            .map(|c| c.row.game_id.to_text().unwrap())
            .collect();
        assert_eq!(ids, ["valid", "a-real", "b-text", "c-blob", "d-null"]);
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
    fn a_game_id_that_is_not_utf8_is_kept_exact_and_acted_on() {
        let game = FieldValue::Text(Text::from_bytes(b"g-\xff".to_vec()));
        let candidate = Candidate::from_row(StoppedRow {
            game_id: game.clone(),
            container_id: text("c"),
            last_op_at: FieldValue::Integer(1),
        });
        assert_eq!(candidate.row.game_id, game, "the key is the stored bytes");
        assert_eq!(candidate.row.game_id.to_text().unwrap(), "g-\\xFF");
        assert!(matches!(candidate.target, Target::Container(_)));
    }

    #[test]
    fn a_container_id_that_is_not_utf8_is_invalid() {
        let candidate = Candidate::from_row(row(
            "g",
            FieldValue::Text(Text::from_bytes(b"c\xff".to_vec())),
            FieldValue::Integer(1),
        ));
        assert!(matches!(candidate.target, Target::Invalid(ref m) if m.contains("UTF-8")));
    }

    #[test]
    fn an_integer_last_op_at_in_range_is_kept_as_the_records_age() {
        for (last_op_at, age) in [
            (FieldValue::Integer(0), Some(0)),
            (FieldValue::Integer(5), Some(5)),
            (FieldValue::Integer(MAX_EPOCH_MS), Some(MAX_EPOCH_MS)),
            (FieldValue::Integer(MAX_EPOCH_MS + 1), None),
            (FieldValue::Real(5.0), None),
        ] {
            let candidate = Candidate::from_row(row("g", text("c"), last_op_at.clone()));
            assert_eq!(candidate.last_op_at, age, "{last_op_at:?}");
        }
    }

    #[test]
    fn a_negative_timestamp_is_invalid() {
        let candidate = Candidate::from_row(row("g", text("c"), FieldValue::Integer(-1)));
        assert!(matches!(candidate.target, Target::Invalid(_)));
        assert_eq!(candidate.last_op_at, None);
    }

    fn any_field() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            Just(FieldValue::Null),
            any::<i64>().prop_map(FieldValue::Integer),
            any::<f64>().prop_map(FieldValue::Real),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|bytes| FieldValue::Text(Text::from_bytes(bytes))),
            ".{0,300}".prop_map(|text: String| FieldValue::text(&text)),
            "[A-Za-z0-9][A-Za-z0-9_.-]{0,260}".prop_map(|text: String| FieldValue::text(&text)),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(FieldValue::Blob),
        ]
    }

    /// The contract's reference syntax, written out independently of the code under test:
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`.
    fn is_reference(text: &str) -> bool {
        let mut chars = text.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && text.len() <= MAX_REFERENCE_LEN
    }

    /// What the contract says a row is, decided without the code under test.
    #[derive(Debug)]
    enum Expected {
        Container(String),
        NoContainer,
        Invalid,
    }

    fn expected_target(row: &StoppedRow) -> Expected {
        let FieldValue::Text(_) = row.game_id else {
            return Expected::Invalid;
        };
        match row.last_op_at {
            FieldValue::Integer(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => {}
            _ => return Expected::Invalid,
        }
        match &row.container_id {
            FieldValue::Null => Expected::NoContainer,
            FieldValue::Text(text) => match text.as_str() {
                Some(text) if is_reference(text) => Expected::Container(text.to_owned()),
                _ => Expected::Invalid,
            },
            _ => Expected::Invalid,
        }
    }

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            // Failures are shown with their minimal input; no regression file is written into
            // the source tree.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config(1_000))]

        /// Any row is judged without a panic, exactly as the contract says, and only a valid
        /// reference is ever a target.
        #[test]
        fn any_row_is_judged_as_the_contract_says(
            game in any_field(), container in any_field(), last_op_at in any_field()
        ) {
            let row = StoppedRow { game_id: game, container_id: container, last_op_at };
            let expected = expected_target(&row);
            let candidate = Candidate::from_row(row.clone());
            // Rendering for the summary and the log must not panic either.
            let _ = (
                row.game_id.to_string(),
                row.container_id.to_string(),
                candidate.container_text(),
            );
            match (&candidate.target, expected) {
                (Target::Container(reference), Expected::Container(text)) => {
                    prop_assert!(is_reference(reference.as_str()));
                    prop_assert_eq!(reference.as_str(), text.as_str());
                }
                (Target::NoContainer, Expected::NoContainer) => {}
                (Target::Invalid(reason), Expected::Invalid) => prop_assert!(!reason.is_empty()),
                (target, expected) => {
                    prop_assert!(false, "{row:?}: got {target:?}, the contract says {expected:?}");
                }
            }
        }

        /// `ContainerRef::parse` accepts exactly the reference syntax.
        #[test]
        fn any_text_is_accepted_exactly_when_it_is_a_reference(text in any::<String>()) {
            prop_assert_eq!(ContainerRef::parse(&text).is_ok(), is_reference(&text));
        }
    }

    proptest! {
        #![proptest_config(config(150))]

        /// The selection holds exactly the expired rows: integers oldest first, the rows without
        /// an integer age last.
        #[test]
        fn the_selection_is_exactly_the_expired_rows_in_order(
            rows in proptest::collection::vec((any_field(), any_field()), 0..40),
            threshold in any::<i64>(),
        ) {
            let rows: Vec<StoppedRow> = rows
                .into_iter()
                .enumerate()
                .map(|(n, (container_id, last_op_at))| StoppedRow {
                    game_id: FieldValue::text(&format!("g{n:03}")),
                    container_id,
                    last_op_at,
                })
                .collect();
            let expected = rows.iter().filter(|r| is_expired(&r.last_op_at, threshold)).count();
            let picked = select(rows, threshold);
            prop_assert_eq!(picked.len(), expected);
            let ages: Vec<Option<i64>> = picked
                .iter()
                .map(|c| match c.row.last_op_at { FieldValue::Integer(ms) => Some(ms), _ => None })
                .collect();
            let first_ageless = ages.iter().position(Option::is_none).unwrap_or(ages.len());
            prop_assert!(ages[first_ageless..].iter().all(Option::is_none));
            prop_assert!(ages[..first_ageless].windows(2).all(|w| w[0] <= w[1]));
            for age in ages.iter().flatten() {
                prop_assert!(*age < threshold);
            }
        }
    }
}

//! The verdict on one game, as a pure function of what was read and predicted, and `now`.

use crate::job::CurrentRecord;
use crate::outcome::Outcome;
use crate::store::LogRow;
use crate::value::FieldValue;

/// Why a pass does, or does not, remove a game's container now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The state file has no record of the game.
    NoRecord,
    /// The record is not `stopped` (nor `removed`): only stopped records are candidates.
    NotStopped {
        /// Its status, as stored.
        status: FieldValue,
        /// Its `last_op_at`: since when it has that status.
        since: FieldValue,
    },
    /// The record is stopped, but not longer ago than the retention.
    NotExpired {
        /// When it expires, epoch milliseconds: a pass after this time selects it.
        expires_at_ms: i64,
        /// How long until then, milliseconds.
        in_ms: i64,
    },
    /// The record is a candidate: the dry run's prediction for it.
    Expired {
        /// Its place among the candidates, from 0, oldest first.
        position: usize,
        /// What the dry run predicts; `None` where the daemon could not be asked and the result
        /// depends on the container.
        outcome: Option<Outcome>,
    },
    /// The record is `removed` already.
    Removed {
        /// The game's newest `operation_log` row, which says when and by whom, if any is left.
        last_row: Option<Box<LogRow>>,
    },
    /// The record is stopped and expired, yet was not among the candidates read a moment
    /// before: the runtime manager wrote it in between (a file it has open is read without a
    /// snapshot across statements). Explaining again reads it anew.
    Changed,
}

impl Verdict {
    /// The verdict's name, as the JSON output and the text show it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::NoRecord => "no_record",
            Verdict::NotStopped { .. } => "not_stopped",
            Verdict::NotExpired { .. } => "not_expired",
            Verdict::Expired { .. } => "expired",
            Verdict::Removed { .. } => "removed",
            Verdict::Changed => "changed",
        }
    }
}

/// The verdict on a game: from its record as read, its place among the candidates and the dry
/// run's prediction for it (where it is one), its `operation_log` rows (newest first), the
/// retention and `now`, all in epoch milliseconds.
#[must_use]
pub fn verdict(
    record: Option<&CurrentRecord>,
    candidate: Option<(usize, Option<Outcome>)>,
    log: &[LogRow],
    retention_ms: i64,
    now_ms: i64,
) -> Verdict {
    if let Some((position, outcome)) = candidate {
        return Verdict::Expired { position, outcome };
    }
    let Some(record) = record else {
        return Verdict::NoRecord;
    };
    match record.status.to_text().as_deref() {
        Some("stopped") => {}
        Some("removed") => {
            return Verdict::Removed {
                last_row: log.first().cloned().map(Box::new),
            }
        }
        _ => {
            return Verdict::NotStopped {
                status: record.status.clone(),
                since: record.last_op_at.clone(),
            }
        }
    }
    // A stopped record that is no candidate has a number for `last_op_at` at or after the
    // threshold; anything else was selected (or the file changed in between).
    let last_op_at_ms = match record.last_op_at {
        FieldValue::Integer(ms) => ms,
        // SQLite compares a real as a number: it is selected once below the threshold.
        FieldValue::Real(ms) if ms.is_finite() => ms.ceil() as i64,
        _ => return Verdict::Changed,
    };
    let expires_at_ms = last_op_at_ms.saturating_add(retention_ms);
    if expires_at_ms < now_ms {
        return Verdict::Changed;
    }
    Verdict::NotExpired {
        expires_at_ms,
        in_ms: expires_at_ms - now_ms,
    }
}

/// A duration for people, in its two largest units: `2 days 3 h`, `5 h 12 min`, `12 min 5 s`,
/// `40 s`, `less than a second`.
#[must_use]
pub fn for_people(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let units = [
        (seconds / 86_400, "day", "days"),
        (seconds / 3600 % 24, "h", "h"),
        (seconds / 60 % 60, "min", "min"),
        (seconds % 60, "s", "s"),
    ];
    let Some(first) = units.iter().position(|(count, _, _)| *count > 0) else {
        return "less than a second".to_owned();
    };
    units[first..]
        .iter()
        .take(2)
        .filter(|(count, _, _)| *count > 0)
        .map(|(count, one, many)| format!("{count} {}", if *count == 1 { one } else { many }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_794_643_200_000;

    fn record(status: &str, last_op_at: FieldValue) -> CurrentRecord {
        CurrentRecord {
            status: FieldValue::text(status),
            container_id: FieldValue::text("c"),
            last_op_at,
        }
    }

    #[test]
    fn a_candidate_gets_the_dry_runs_prediction_whatever_its_record_says_now() {
        let predicted = Some(Outcome::removed());
        let verdict = verdict(
            Some(&record("running", FieldValue::Integer(NOW))),
            Some((3, predicted.clone())),
            &[],
            7 * DAY,
            NOW,
        );
        assert_eq!(
            verdict,
            Verdict::Expired {
                position: 3,
                outcome: predicted
            }
        );
    }

    #[test]
    fn a_stopped_record_within_the_retention_says_when_it_expires() {
        let stopped = record("stopped", FieldValue::Integer(NOW - 5 * DAY));
        assert_eq!(
            verdict(Some(&stopped), None, &[], 7 * DAY, NOW),
            Verdict::NotExpired {
                expires_at_ms: NOW + 2 * DAY,
                in_ms: 2 * DAY
            }
        );
        let future = record("stopped", FieldValue::Real((NOW + DAY) as f64 - 0.5));
        assert_eq!(
            verdict(Some(&future), None, &[], DAY, NOW),
            Verdict::NotExpired {
                expires_at_ms: NOW + 2 * DAY,
                in_ms: 2 * DAY
            }
        );
        let missed = record("stopped", FieldValue::Integer(NOW - 8 * DAY));
        assert_eq!(
            verdict(Some(&missed), None, &[], 7 * DAY, NOW),
            Verdict::Changed
        );
    }

    #[test]
    fn other_statuses_say_since_when_and_removed_ones_by_whom() {
        assert_eq!(verdict(None, None, &[], DAY, NOW), Verdict::NoRecord);
        let running = record("running", FieldValue::Integer(NOW - DAY));
        assert_eq!(
            verdict(Some(&running), None, &[], DAY, NOW),
            Verdict::NotStopped {
                status: FieldValue::text("running"),
                since: FieldValue::Integer(NOW - DAY)
            }
        );
        let row = LogRow {
            id: 9,
            game_id: FieldValue::text("g"),
            op_kind: FieldValue::text("cleanup_container"),
            op_source: FieldValue::text("auto_ttl"),
            outcome: FieldValue::text("success"),
            error_code: FieldValue::Null,
            error_message: FieldValue::Null,
            container_id: FieldValue::text("c"),
            started_at: FieldValue::Integer(NOW - DAY),
            finished_at: FieldValue::Integer(NOW - DAY + 5),
        };
        let removed = record("removed", FieldValue::Integer(NOW - DAY));
        assert_eq!(
            verdict(Some(&removed), None, std::slice::from_ref(&row), DAY, NOW),
            Verdict::Removed {
                last_row: Some(Box::new(row))
            }
        );
    }

    #[test]
    fn durations_for_people_keep_their_two_largest_units() {
        assert_eq!(for_people(2 * DAY + 3 * 3_600_000 + 59_000), "2 days 3 h");
        assert_eq!(for_people(DAY + 5_000), "1 day");
        assert_eq!(
            for_people(5 * 3_600_000 + 12 * 60_000 + 7_000),
            "5 h 12 min"
        );
        assert_eq!(for_people(12 * 60_000 + 5_000), "12 min 5 s");
        assert_eq!(for_people(40_999), "40 s");
        assert_eq!(for_people(999), "less than a second");
        assert_eq!(for_people(-5), "less than a second");
    }
}

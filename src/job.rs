//! The unit of work of a real run: remove one container under one game's lease.
//!
//! A job says which game's lease to take, what to remove, what the state file must still say
//! under that lease (its [`Guard`]), and which `operation_log.op_kind` records it. The record pass
//! makes one job per expired record; the orphan pass makes one per leaked container. The worker
//! and the state writer run both alike.

use crate::candidate::{Candidate, Target};
use crate::outcome::{Outcome, ResultKind};
use crate::value::FieldValue;

/// `operation_log.op_kind` of a record's container removal.
pub const OP_KIND_RECORD: &str = "cleanup_container";
/// `operation_log.op_kind` of a leaked container's removal.
pub const OP_KIND_ORPHAN: &str = "cleanup_orphan";

/// What a job removes, and so what its result does to the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The container of an expired stopped record; the record moves to `removed` once the
    /// container is gone.
    Record,
    /// A container that no record claims; no record is ever changed.
    Orphan,
}

impl JobKind {
    /// The result of a job of this kind: a container already gone is a record's replay, but
    /// for an orphan, which no record ever pointed at, it is someone else's removal, a
    /// conflict.
    #[must_use]
    pub fn result_of(self, outcome: Outcome) -> Outcome {
        match (self, outcome.result) {
            (JobKind::Orphan, ResultKind::ReplayNoOp) => Outcome::conflict(format!(
                "someone else removed it first: {}",
                outcome.error_message.unwrap_or_default()
            )),
            _ => outcome,
        }
    }

    /// The `operation_log.op_kind` of the job's row.
    #[must_use]
    pub fn op_kind(self) -> &'static str {
        match self {
            JobKind::Record => OP_KIND_RECORD,
            JobKind::Orphan => OP_KIND_ORPHAN,
        }
    }
}

/// The game's record as re-read under the job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRecord {
    /// `runtime_records.status`.
    pub status: FieldValue,
    /// `runtime_records.container_id`.
    pub container_id: FieldValue,
    /// `runtime_records.last_op_at`.
    pub last_op_at: FieldValue,
}

/// What the state file must still say once the job holds the game's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The game's record is still the stopped row that was selected (same `container_id` and
    /// `last_op_at`), and that row is expired at `threshold_ms`.
    Record {
        /// `container_id` as selected.
        container_id: FieldValue,
        /// `last_op_at` as selected.
        last_op_at: FieldValue,
        /// The pass's (or the plan's) threshold, epoch milliseconds.
        threshold_ms: i64,
    },
    /// No record claims the container: the game has no record, or its record is `removed`, or
    /// its record names another container (neither this id, a prefix of it, nor one of its
    /// names).
    Unclaimed {
        /// The container's full id.
        id: String,
        /// The container's names, without Docker's leading `/`.
        names: Vec<String>,
    },
}

impl Guard {
    /// Decides whether the job may go on, from the game's record as re-read under its lease.
    /// `Err` describes the change that makes the job a `conflict`.
    pub fn check(&self, current: Option<&CurrentRecord>) -> Result<(), String> {
        match self {
            Guard::Record {
                container_id,
                last_op_at,
                threshold_ms,
            } => {
                let Some(current) = current else {
                    return Err("the record was deleted since it was selected".to_owned());
                };
                let unchanged = current.status == FieldValue::text("stopped")
                    && current.container_id == *container_id
                    && current.last_op_at == *last_op_at;
                if !unchanged {
                    return Err(format!(
                        "the record changed since it was selected: now status {}, container_id \
                         {}, last_op_at {}",
                        current.status, current.container_id, current.last_op_at
                    ));
                }
                if !crate::candidate::is_expired(last_op_at, *threshold_ms) {
                    return Err(format!(
                        "the record is not expired: last_op_at {last_op_at} is not before the \
                         threshold {}",
                        crate::time::format_epoch_ms(*threshold_ms)
                            .unwrap_or_else(|| threshold_ms.to_string())
                    ));
                }
                Ok(())
            }
            Guard::Unclaimed { id, names } => match current {
                Some(current) if claims(current, id, names) => Err(format!(
                    "the game's record (status {}) claims the container as {}",
                    current.status, current.container_id
                )),
                _ => Ok(()),
            },
        }
    }

    /// The guard of an expired record selected at `threshold_ms`.
    #[must_use]
    pub fn record(candidate: &Candidate, threshold_ms: i64) -> Self {
        Guard::Record {
            container_id: candidate.row.container_id.clone(),
            last_op_at: candidate.row.last_op_at.clone(),
            threshold_ms,
        }
    }
}

/// Whether a record claims the container with this id and names: it is not `removed`, and its
/// `container_id` is the id, a prefix of it, or one of the names.
#[must_use]
pub fn claims(record: &CurrentRecord, id: &str, names: &[String]) -> bool {
    if record.status == FieldValue::text("removed") {
        return false;
    }
    let FieldValue::Text(reference) = &record.container_id else {
        return false;
    };
    let Some(reference) = reference.as_str() else {
        return false;
    };
    id.starts_with(reference) || names.iter().any(|name| name == reference)
}

/// One removal to run under one game's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The game whose lease is taken, exactly as stored (`game_id`, or an orphan's label value).
    pub game: FieldValue,
    /// What to remove.
    pub target: Target,
    /// `operation_log.container_id`: the reference as stored, or an orphan's full id.
    pub logged_container: Option<String>,
    /// What must still hold under the lease.
    pub guard: Guard,
    /// Record or orphan.
    pub kind: JobKind,
}

impl Job {
    /// The job of an expired record selected at `threshold_ms`.
    #[must_use]
    pub fn for_record(candidate: &Candidate, threshold_ms: i64) -> Self {
        Self {
            game: candidate.row.game_id.clone(),
            target: candidate.target.clone(),
            logged_container: candidate.container_text(),
            guard: Guard::record(candidate, threshold_ms),
            kind: JobKind::Record,
        }
    }

    /// The game id for people.
    #[must_use]
    pub fn game_text(&self) -> String {
        self.game.to_text().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(status: &str, container: FieldValue, last_op_at: i64) -> CurrentRecord {
        CurrentRecord {
            status: FieldValue::text(status),
            container_id: container,
            last_op_at: FieldValue::Integer(last_op_at),
        }
    }

    fn record_guard(threshold_ms: i64) -> Guard {
        Guard::Record {
            container_id: FieldValue::text("c1"),
            last_op_at: FieldValue::Integer(100),
            threshold_ms,
        }
    }

    #[test]
    fn a_record_job_goes_on_only_while_the_row_is_the_one_selected() {
        let guard = record_guard(1_000);
        assert_eq!(
            guard.check(Some(&current("stopped", FieldValue::text("c1"), 100))),
            Ok(())
        );
        for (changed, what) in [
            (current("running", FieldValue::text("c1"), 100), "status"),
            (current("stopped", FieldValue::text("c2"), 100), "container"),
            (current("stopped", FieldValue::Null, 100), "container gone"),
            (
                current("stopped", FieldValue::text("c1"), 101),
                "last_op_at",
            ),
        ] {
            let error = guard.check(Some(&changed)).unwrap_err();
            assert!(
                error.contains("changed since it was selected"),
                "{what}: {error}"
            );
        }
        let error = guard.check(None).unwrap_err();
        assert!(error.contains("deleted"), "{error}");
    }

    #[test]
    fn a_record_job_needs_its_row_expired_at_the_threshold() {
        // A plan edited by hand may name a row that is not expired: the guard refuses it.
        let error = record_guard(100)
            .check(Some(&current("stopped", FieldValue::text("c1"), 100)))
            .unwrap_err();
        assert!(error.contains("not expired"), "{error}");
    }

    #[test]
    fn a_real_last_op_at_must_match_bit_for_bit() {
        let guard = Guard::Record {
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Real(1.5),
            threshold_ms: 1_000,
        };
        let same = CurrentRecord {
            status: FieldValue::text("stopped"),
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Real(1.5),
        };
        assert_eq!(guard.check(Some(&same)), Ok(()));
        let integer = CurrentRecord {
            last_op_at: FieldValue::Integer(1),
            ..same
        };
        assert!(guard.check(Some(&integer)).is_err());
    }

    #[test]
    fn an_orphan_is_unclaimed_by_a_missing_removed_or_other_record() {
        let guard = Guard::Unclaimed {
            id: "0123456789abcdef".into(),
            names: vec!["game-7".into()],
        };
        assert_eq!(guard.check(None), Ok(()));
        assert_eq!(
            guard.check(Some(&current("removed", FieldValue::text("0123"), 1))),
            Ok(())
        );
        assert_eq!(
            guard.check(Some(&current("stopped", FieldValue::text("fedcba"), 1))),
            Ok(())
        );
        assert_eq!(
            guard.check(Some(&current("running", FieldValue::Null, 1))),
            Ok(())
        );
        for claimed_as in ["0123456789abcdef", "0123", "game-7"] {
            for status in ["stopped", "running", "creating"] {
                let error = guard
                    .check(Some(&current(status, FieldValue::text(claimed_as), 1)))
                    .unwrap_err();
                assert!(error.contains("claims"), "{status} {claimed_as}: {error}");
            }
        }
    }

    #[test]
    fn a_container_already_gone_is_a_records_replay_but_an_orphans_conflict() {
        let gone = || Outcome::replay_no_op("container c1 was already gone (Docker answered 404)");
        assert_eq!(JobKind::Record.result_of(gone()), gone());
        assert_eq!(
            JobKind::Orphan.result_of(gone()),
            Outcome::conflict(
                "someone else removed it first: container c1 was already gone (Docker answered \
                 404)"
            )
        );
        // Every other result is the same for both kinds.
        for outcome in [
            Outcome::removed(),
            Outcome::conflict("held"),
            Outcome::failed(crate::outcome::ErrorCode::DockerError, "refused"),
            Outcome::deferred("later"),
        ] {
            assert_eq!(JobKind::Record.result_of(outcome.clone()), outcome);
            assert_eq!(JobKind::Orphan.result_of(outcome.clone()), outcome);
        }
    }

    #[test]
    fn a_jobs_game_is_shown_as_its_text() {
        // The log line of each job names its game by this text.
        let candidate = Candidate::from_row(crate::candidate::StoppedRow {
            game_id: FieldValue::text("g-1"),
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Integer(5),
        });
        assert_eq!(Job::for_record(&candidate, 10).game_text(), "g-1");
    }

    #[test]
    fn op_kinds_follow_the_contract() {
        assert_eq!(JobKind::Record.op_kind(), "cleanup_container");
        assert_eq!(JobKind::Orphan.op_kind(), "cleanup_orphan");
    }
}

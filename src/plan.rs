//! Reviewable plans: `--dry-run --plan-out FILE` writes the exact set of candidates, and a later
//! `--apply-plan FILE` acts on exactly that set (each still re-checked under its lease).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::candidate::{Candidate, StoppedRow};
use crate::outcome::{Outcome, ResultKind};
use crate::output_file::write_atomically;

/// The format version of plan files this build reads and writes.
pub const PLAN_FORMAT: u32 = 1;

/// A plan that cannot be written or used: exit 2, nothing changed.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The plan file could not be read.
    #[error("cannot read plan {path}: {source}")]
    Read {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The plan file is not a plan.
    #[error("plan {path} is malformed: {source}; write plans with --dry-run --plan-out")]
    Malformed {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The plan is of another format version.
    #[error("plan {path} has format {found}, this rt-cleanup reads format {PLAN_FORMAT}")]
    Format {
        /// The plan file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// The plan was made for another state file.
    #[error(
        "plan {path} was made for state file {planned}, not {given}; make a new plan with \
         --dry-run --plan-out"
    )]
    OtherState {
        /// The plan file.
        path: PathBuf,
        /// The state file in the plan.
        planned: PathBuf,
        /// The state file of this run.
        given: PathBuf,
    },
    /// The plan was made with another retention.
    #[error(
        "plan {path} was made with a retention of {planned} s, this run has {given} s; run with \
         the plan's --retention"
    )]
    OtherRetention {
        /// The plan file.
        path: PathBuf,
        /// The plan's retention in seconds.
        planned: u64,
        /// This run's retention in seconds.
        given: u64,
    },
    /// The state file's path could not be resolved.
    #[error("cannot resolve state file {path}: {source}")]
    StatePath {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The plan file could not be written.
    #[error("cannot write plan {path}: {source}")]
    Write {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// One planned record: the row exactly as selected, and what the dry run predicted for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRecord {
    /// The row as selected; the real run acts only if the record is still exactly this.
    #[serde(flatten)]
    pub row: StoppedRow,
    /// The dry run's prediction, for the reviewer.
    pub predicted: ResultKind,
    /// The prediction's message, for the reviewer.
    pub predicted_message: Option<String>,
}

/// A plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The format version, [`PLAN_FORMAT`].
    #[serde(rename = "rt_cleanup_plan")]
    pub format: u32,
    /// The state file, as an absolute, resolved path.
    pub state: PathBuf,
    /// The retention in seconds the plan was made with.
    pub retention_seconds: u64,
    /// When the dry run took `now`.
    pub created_at: String,
    /// The threshold of the dry run.
    pub threshold: String,
    /// The records to act on, oldest first.
    pub records: Vec<PlannedRecord>,
}

fn resolve(state: &Path) -> Result<PathBuf, PlanError> {
    state.canonicalize().map_err(|source| PlanError::StatePath {
        path: state.to_owned(),
        source,
    })
}

impl Plan {
    /// A plan of the candidates a dry run would act on, with its predictions.
    pub fn new(
        state: &Path,
        retention_seconds: u64,
        created_at: String,
        threshold: String,
        acted_on: &[(&Candidate, &Outcome)],
    ) -> Result<Self, PlanError> {
        Ok(Self {
            format: PLAN_FORMAT,
            state: resolve(state)?,
            retention_seconds,
            created_at,
            threshold,
            records: acted_on
                .iter()
                .map(|(candidate, outcome)| PlannedRecord {
                    row: candidate.row.clone(),
                    predicted: outcome.result,
                    predicted_message: outcome.error_message.clone(),
                })
                .collect(),
        })
    }

    /// Writes the plan atomically, as pretty JSON for review.
    ///
    /// # Panics
    ///
    /// Never: a plan holds only strings, numbers and options, which always serialise.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        // Serialising plain strings, numbers and options cannot fail.
        let mut json = serde_json::to_vec_pretty(self).expect("a plan serialises");
        json.push(b'\n');
        write_atomically(path, &json).map_err(|source| PlanError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a plan and checks that it was made for this state file and retention.
    pub fn load(path: &Path, state: &Path, retention_seconds: u64) -> Result<Self, PlanError> {
        let bytes = std::fs::read(path).map_err(|source| PlanError::Read {
            path: path.to_owned(),
            source,
        })?;
        let plan: Plan = serde_json::from_slice(&bytes).map_err(|source| PlanError::Malformed {
            path: path.to_owned(),
            source,
        })?;
        if plan.format != PLAN_FORMAT {
            return Err(PlanError::Format {
                path: path.to_owned(),
                found: plan.format,
            });
        }
        let given = resolve(state)?;
        if plan.state != given {
            return Err(PlanError::OtherState {
                path: path.to_owned(),
                planned: plan.state,
                given,
            });
        }
        if plan.retention_seconds != retention_seconds {
            return Err(PlanError::OtherRetention {
                path: path.to_owned(),
                planned: plan.retention_seconds,
                given: retention_seconds,
            });
        }
        Ok(plan)
    }

    /// The planned records as candidates, in the plan's order.
    #[must_use]
    pub fn candidates(&self) -> Vec<Candidate> {
        self.records
            .iter()
            .map(|record| Candidate::from_row(record.row.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::FieldValue;

    fn candidate(game: &str, container: FieldValue, last_op_at: FieldValue) -> Candidate {
        Candidate::from_row(StoppedRow {
            game_id: FieldValue::text(game),
            container_id: container,
            last_op_at,
        })
    }

    #[test]
    fn a_plan_round_trips_every_kind_of_row_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        std::fs::write(&state, b"").unwrap();
        let candidates = [
            candidate("a", FieldValue::text("c1"), FieldValue::Integer(5)),
            candidate("b", FieldValue::Null, FieldValue::Integer(6)),
            candidate("c", FieldValue::Blob(vec![0, 255]), FieldValue::Real(1.5)),
            candidate("d", FieldValue::text("x"), FieldValue::text("soon")),
        ];
        let outcome = Outcome::removed();
        let pairs: Vec<_> = candidates.iter().map(|c| (c, &outcome)).collect();
        let plan = Plan::new(&state, 604_800, "t0".into(), "t1".into(), &pairs).unwrap();
        let path = dir.path().join("plan.json");
        plan.save(&path).unwrap();
        let loaded = Plan::load(&path, &state, 604_800).unwrap();
        assert_eq!(loaded, plan);
        assert_eq!(loaded.candidates(), candidates);
    }

    #[test]
    fn a_plan_for_another_state_file_or_retention_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let other = dir.path().join("other.db");
        std::fs::write(&state, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        let plan = Plan::new(&state, 60, "t0".into(), "t1".into(), &[]).unwrap();
        let path = dir.path().join("plan.json");
        plan.save(&path).unwrap();
        assert!(matches!(
            Plan::load(&path, &other, 60),
            Err(PlanError::OtherState { .. })
        ));
        assert!(matches!(
            Plan::load(&path, &state, 61),
            Err(PlanError::OtherRetention { .. })
        ));
        assert!(Plan::load(&path, &state, 60).is_ok());
    }

    #[test]
    fn a_malformed_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        std::fs::write(&state, b"").unwrap();
        let path = dir.path().join("plan.json");
        for junk in ["", "{}", "[1,2]", "{\"rt_cleanup_plan\": 1}"] {
            std::fs::write(&path, junk).unwrap();
            assert!(
                matches!(
                    Plan::load(&path, &state, 60),
                    Err(PlanError::Malformed { .. })
                ),
                "{junk}"
            );
        }
        std::fs::write(&path, b"{\"rt_cleanup_plan\": 9, \"state\": \"/x\", \"retention_seconds\": 1, \"created_at\": \"\", \"threshold\": \"\", \"records\": []}").unwrap();
        assert!(matches!(
            Plan::load(&path, &state, 60),
            Err(PlanError::Format { found: 9, .. })
        ));
    }
}

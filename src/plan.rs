//! Reviewable plans: `--dry-run --plan-out FILE` writes the exact set of candidates, and a later
//! `--apply-plan FILE` acts on exactly that set and never on anything else.
//!
//! A plan names each record by its row exactly as it was selected, with the threshold, the
//! retention and the owner label of the dry run that made it. Applying it re-checks every entry
//! under its lease as a pass would (still stopped, the same `container_id` and `last_op_at`,
//! expired at the plan's threshold, owned by its game when the plan has an owner label), so a
//! plan edited by hand can narrow what a pass would do but never widen it.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::candidate::{Candidate, StoppedRow};
use crate::cli::OrphanMode;
use crate::orphans::Orphan;
use crate::outcome::{Outcome, ResultKind};
use crate::output_file::write_atomically;
use crate::value::{FieldValue, Text};

/// The format version of plan files this build reads and writes.
pub const PLAN_FORMAT: u32 = 2;

/// A plan that cannot be written or used: exit 2, nothing changed.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The plan file could not be read.
    #[error("cannot read plan {}: {source}", path.display())]
    Read {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The plan file is not a plan.
    #[error(
        "plan {} is malformed: {source}; write plans with --dry-run --plan-out", path.display()
    )]
    Malformed {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The plan is of another format version.
    #[error(
        "plan {} has format {found}, this rt-cleanup reads format {PLAN_FORMAT}; make a new plan \
         with --dry-run --plan-out", path.display()
    )]
    Format {
        /// The plan file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// The plan was made for another state file.
    #[error(
        "plan {} was made for state file {planned}, not {given}; make a new plan with \
         --dry-run --plan-out", path.display()
    )]
    OtherState {
        /// The plan file.
        path: PathBuf,
        /// The state file in the plan, for people.
        planned: String,
        /// The state file of this run, resolved, for people.
        given: String,
    },
    /// The plan was made with another retention.
    #[error(
        "plan {} was made with a retention of {planned} s, this run has {given} s; run with \
         the plan's --retention", path.display()
    )]
    OtherRetention {
        /// The plan file.
        path: PathBuf,
        /// The plan's retention in seconds.
        planned: u64,
        /// This run's retention in seconds.
        given: u64,
    },
    /// The command line names another owner label than the plan.
    #[error(
        "plan {} was made with --owner-label {planned}, this run has {given}; the plan's owner \
         label applies: leave --owner-label out or give the same one", path.display()
    )]
    OtherOwnerLabel {
        /// The plan file.
        path: PathBuf,
        /// The plan's owner label, for people.
        planned: String,
        /// This run's owner label, for people.
        given: String,
    },
    /// The command line names another orphan mode than the plan.
    #[error(
        "plan {} was made with --orphans {planned}, this run has {given}; the plan's mode \
         applies: leave --orphans out or give the same one", path.display()
    )]
    OtherOrphanMode {
        /// The plan file.
        path: PathBuf,
        /// The plan's mode.
        planned: &'static str,
        /// This run's mode.
        given: &'static str,
    },
    /// `--remove-volumes` with a plan made without it: the plan's reviewer saw no volume go.
    #[error(
        "plan {} was made without --remove-volumes: applying it removes no volume; leave \
         --remove-volumes (RT_CLEANUP_REMOVE_VOLUMES) out, or review a new plan made with \
         --dry-run --remove-volumes --plan-out", path.display()
    )]
    RemoveVolumesNotPlanned {
        /// The plan file.
        path: PathBuf,
    },
    /// The plan's threshold is later than this run's `now - retention`.
    #[error(
        "plan {} has threshold {threshold}, later than now minus its retention: it was edited, \
         or the clock went back; make a new plan with --dry-run --plan-out", path.display()
    )]
    ThresholdAhead {
        /// The plan file.
        path: PathBuf,
        /// The plan's threshold, for people.
        threshold: String,
    },
    /// The plan names one record or one orphan twice.
    #[error(
        "plan {} lists {what} twice; a plan names each record and orphan once: make a new plan \
         with --dry-run --plan-out", path.display()
    )]
    Duplicate {
        /// The plan file.
        path: PathBuf,
        /// The game or container, for people.
        what: String,
    },
    /// A record entry names its game by a number or null, which SQLite would compare with the
    /// text key of the same digits: one record could be listed twice under two spellings.
    #[error(
        "plan {} names game {game} as {kind}; a game id is text (a JSON string, or \
         {{\"text_hex\": …}}) or, for a key stored as a blob, an array of bytes, as --plan-out \
         writes it: a number would match the record whose id is its digits, under a second \
         name; make a new plan with --dry-run --plan-out", path.display()
    )]
    GameIdNotText {
        /// The plan file.
        path: PathBuf,
        /// The value as the plan has it, e.g. `1`.
        game: String,
        /// Its type, e.g. "an integer".
        kind: &'static str,
    },
    /// The state file's path could not be resolved.
    #[error("cannot resolve state file {}: {source}", path.display())]
    StatePath {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The plan file could not be written.
    #[error("cannot write plan {}: {source}", path.display())]
    Write {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// One planned record: the row exactly as selected, and what the dry run predicted for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRecord {
    /// `game_id` as selected.
    pub game_id: FieldValue,
    /// `container_id` as selected.
    pub container_id: FieldValue,
    /// `last_op_at` as selected.
    pub last_op_at: FieldValue,
    /// The dry run's prediction, for the reviewer.
    pub predicted: ResultKind,
    /// The prediction's message, for the reviewer.
    pub predicted_message: Option<String>,
    /// With `--measure-space`, the writable layer the dry run measured, for the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_size_rw_bytes: Option<u64>,
    /// With `--remove-volumes`, the anonymous volumes the dry run listed, for the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_volumes: Option<Vec<String>>,
}

/// One planned orphan: the container and the game its label names, as the dry run found them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedOrphan {
    /// The full container id.
    pub container_id: String,
    /// The value of its owner label.
    pub game_id: String,
    /// The dry run's prediction, for the reviewer.
    pub predicted: ResultKind,
    /// The prediction's message, for the reviewer.
    pub predicted_message: Option<String>,
    /// With `--measure-space`, the writable layer the dry run measured, for the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_size_rw_bytes: Option<u64>,
    /// With `--remove-volumes`, the anonymous volumes the dry run listed, for the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_volumes: Option<Vec<String>>,
}

/// A plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The format version, [`PLAN_FORMAT`].
    #[serde(rename = "rt_cleanup_plan")]
    pub format: u32,
    /// The state file, resolved, byte for byte.
    pub state: Text,
    /// The retention in seconds the plan was made with.
    pub retention_seconds: u64,
    /// When the dry run took `now`.
    pub created_at: String,
    /// The threshold of the dry run, for people.
    pub threshold: String,
    /// The threshold of the dry run, epoch milliseconds: every entry must be expired at it.
    pub threshold_ms: i64,
    /// The `--owner-label` of the dry run; it applies to the real run too.
    pub owner_label: Option<String>,
    /// The records to act on, oldest first.
    pub records: Vec<PlannedRecord>,
    /// The `--orphans` mode of the dry run; it applies to the real run too.
    pub orphan_mode: OrphanMode,
    /// The orphans to remove (under `remove` only), oldest first.
    pub orphans: Vec<PlannedOrphan>,
    /// Whether the dry run had `--remove-volumes`: the real run then removes each container with
    /// its anonymous volumes, as reviewed. Written only when true, so that a plan without it
    /// reads as every plan before it did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_volumes: bool,
}

/// The state file's path, resolved, as the bytes a plan records.
fn resolve(state: &Path) -> Result<Text, PlanError> {
    let resolved = state
        .canonicalize()
        .map_err(|source| PlanError::StatePath {
            path: state.to_owned(),
            source,
        })?;
    Ok(Text::from_bytes(
        resolved.into_os_string().into_encoded_bytes(),
    ))
}

/// What a plan needs from the dry run that makes it.
#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    /// The state file, as given.
    pub state: &'a Path,
    /// The retention in seconds.
    pub retention_seconds: u64,
    /// When the dry run took `now`, RFC 3339.
    pub created_at: String,
    /// The threshold, RFC 3339.
    pub threshold: String,
    /// The threshold, epoch milliseconds.
    pub threshold_ms: i64,
    /// `--owner-label`.
    pub owner_label: Option<&'a str>,
    /// `--orphans`.
    pub orphan_mode: OrphanMode,
    /// `--remove-volumes`.
    pub remove_volumes: bool,
}

/// What the run that applies a plan brings to the checks.
#[derive(Debug, Clone)]
pub struct ApplyContext<'a> {
    /// The state file, as given.
    pub state: &'a Path,
    /// The retention in seconds.
    pub retention_seconds: u64,
    /// `--owner-label`, if given.
    pub owner_label: Option<&'a str>,
    /// This run's `now - retention`, epoch milliseconds.
    pub threshold_ms: i64,
    /// `--orphans`, if given.
    pub orphan_mode: Option<OrphanMode>,
    /// `--remove-volumes`.
    pub remove_volumes: bool,
}

/// The size a dry run measured, where it did.
fn predicted_size(outcome: &Outcome) -> Option<u64> {
    outcome.freed.as_ref()?.size_rw
}

/// The volumes a dry run listed, where it did.
fn predicted_volumes(outcome: &Outcome) -> Option<Vec<String>> {
    outcome.freed.as_ref()?.volumes.clone()
}

fn mode_name(mode: OrphanMode) -> &'static str {
    match mode {
        OrphanMode::Off => "off",
        OrphanMode::Report => "report",
        OrphanMode::Remove => "remove",
    }
}

impl Plan {
    /// A plan of the candidates (and, under `--orphans remove`, the orphans) a dry run would
    /// act on, with its predictions.
    pub fn new(
        context: &PlanContext<'_>,
        acted_on: &[(&Candidate, &Outcome)],
        orphans: &[(&Orphan, &Outcome)],
    ) -> Result<Self, PlanError> {
        Ok(Self {
            format: PLAN_FORMAT,
            state: resolve(context.state)?,
            retention_seconds: context.retention_seconds,
            created_at: context.created_at.clone(),
            threshold: context.threshold.clone(),
            threshold_ms: context.threshold_ms,
            owner_label: context.owner_label.map(str::to_owned),
            records: acted_on
                .iter()
                .map(|(candidate, outcome)| PlannedRecord {
                    game_id: candidate.row.game_id.clone(),
                    container_id: candidate.row.container_id.clone(),
                    last_op_at: candidate.row.last_op_at.clone(),
                    predicted: outcome.result,
                    predicted_message: outcome.error_message.as_deref().map(str::to_owned),
                    predicted_size_rw_bytes: predicted_size(outcome),
                    predicted_volumes: predicted_volumes(outcome),
                })
                .collect(),
            orphan_mode: context.orphan_mode,
            orphans: orphans
                .iter()
                .map(|(orphan, outcome)| PlannedOrphan {
                    container_id: orphan.info.id.clone(),
                    game_id: orphan.label.clone(),
                    predicted: outcome.result,
                    predicted_message: outcome.error_message.as_deref().map(str::to_owned),
                    predicted_size_rw_bytes: predicted_size(outcome),
                    predicted_volumes: predicted_volumes(outcome),
                })
                .collect(),
            remove_volumes: context.remove_volumes,
        })
    }

    /// Writes the plan atomically, as pretty JSON for review.
    ///
    /// # Panics
    ///
    /// Never: a plan holds strings, numbers, options and column values (which serialise as
    /// null, numbers, strings, `{"text_hex": …}` or arrays of bytes), and a JSON map key is
    /// never anything but a string. `serde_json` writes a real that is not finite as `null`, so the
    /// entry of a record whose `last_op_at` is infinite applies as a `conflict`.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        // None of these types has a serialisation that can fail.
        let mut json = serde_json::to_vec_pretty(self).expect("a plan serialises");
        json.push(b'\n');
        write_atomically(path, &json).map_err(|source| PlanError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a plan and checks that this run may apply it: made for this state file (compared
    /// by the resolved path's bytes), retention and owner label, with a threshold no later than
    /// this run's, and naming each record once.
    pub fn load(path: &Path, run: &ApplyContext<'_>) -> Result<Self, PlanError> {
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
        let given = resolve(run.state)?;
        if plan.state != given {
            return Err(PlanError::OtherState {
                path: path.to_owned(),
                planned: plan.state.display().into_owned(),
                given: given.display().into_owned(),
            });
        }
        if plan.retention_seconds != run.retention_seconds {
            return Err(PlanError::OtherRetention {
                path: path.to_owned(),
                planned: plan.retention_seconds,
                given: run.retention_seconds,
            });
        }
        if let Some(given) = run.owner_label {
            if plan.owner_label.as_deref() != Some(given) {
                return Err(PlanError::OtherOwnerLabel {
                    path: path.to_owned(),
                    planned: plan
                        .owner_label
                        .clone()
                        .unwrap_or_else(|| "(none)".to_owned()),
                    given: given.to_owned(),
                });
            }
        }
        if let Some(given) = run.orphan_mode {
            if given != plan.orphan_mode {
                return Err(PlanError::OtherOrphanMode {
                    path: path.to_owned(),
                    planned: mode_name(plan.orphan_mode),
                    given: mode_name(given),
                });
            }
        }
        if run.remove_volumes && !plan.remove_volumes {
            return Err(PlanError::RemoveVolumesNotPlanned {
                path: path.to_owned(),
            });
        }
        if plan.threshold_ms > run.threshold_ms {
            return Err(PlanError::ThresholdAhead {
                path: path.to_owned(),
                threshold: plan.threshold.clone(),
            });
        }
        // The state file's game_id is TEXT: SQLite compares a number bound against it as the
        // text of its digits, and text and blobs byte for byte. With numbers refused, two
        // entries name one record exactly when their values are equal. A null names a record
        // without a game, which the run only reports (`invalid_record`, no lease, no log row),
        // as the dry run that wrote the plan predicted; it matches no other record.
        let mut games = HashSet::with_capacity(plan.records.len());
        for record in &plan.records {
            let kind = match &record.game_id {
                FieldValue::Null => continue,
                FieldValue::Text(_) | FieldValue::Blob(_) => None,
                FieldValue::Integer(_) => Some("an integer"),
                FieldValue::Real(_) => Some("a real number"),
            };
            if let Some(kind) = kind {
                return Err(PlanError::GameIdNotText {
                    path: path.to_owned(),
                    // As the plan writes it: a number or null, which cannot fail to serialise.
                    game: serde_json::to_string(&record.game_id)
                        .expect("a number or null serialises"),
                    kind,
                });
            }
            if !games.insert(&record.game_id) {
                return Err(PlanError::Duplicate {
                    path: path.to_owned(),
                    what: format!("game {}", record.game_id),
                });
            }
        }
        let mut containers = HashSet::with_capacity(plan.orphans.len());
        for orphan in &plan.orphans {
            if !containers.insert(&orphan.container_id) {
                return Err(PlanError::Duplicate {
                    path: path.to_owned(),
                    what: format!("orphan container {}", orphan.container_id),
                });
            }
        }
        Ok(plan)
    }

    /// The planned records as candidates, in the plan's order.
    #[must_use]
    pub fn candidates(&self) -> Vec<Candidate> {
        self.records
            .iter()
            .map(|record| {
                Candidate::from_row(StoppedRow {
                    game_id: record.game_id.clone(),
                    container_id: record.container_id.clone(),
                    last_op_at: record.last_op_at.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Freed;

    const THRESHOLD: i64 = 1_000_000;

    fn candidate(game: &str, container: FieldValue, last_op_at: FieldValue) -> Candidate {
        Candidate::from_row(StoppedRow {
            game_id: FieldValue::text(game),
            container_id: container,
            last_op_at,
        })
    }

    struct Fixture {
        dir: tempfile::TempDir,
        state: PathBuf,
        plan: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        std::fs::write(&state, b"").unwrap();
        let plan = dir.path().join("plan.json");
        Fixture { dir, state, plan }
    }

    fn made(fixture: &Fixture, owner_label: Option<&str>, candidates: &[Candidate]) -> Plan {
        let outcome = Outcome::removed();
        let pairs: Vec<_> = candidates.iter().map(|c| (c, &outcome)).collect();
        let context = PlanContext {
            state: &fixture.state,
            retention_seconds: 60,
            created_at: "t0".into(),
            threshold: "t1".into(),
            threshold_ms: THRESHOLD,
            owner_label,
            orphan_mode: OrphanMode::Off,
            remove_volumes: false,
        };
        let plan = Plan::new(&context, &pairs, &[]).unwrap();
        plan.save(&fixture.plan).unwrap();
        plan
    }

    fn apply<'a>(state: &'a Path, owner_label: Option<&'a str>) -> ApplyContext<'a> {
        ApplyContext {
            state,
            retention_seconds: 60,
            owner_label,
            threshold_ms: THRESHOLD + 5,
            orphan_mode: None,
            remove_volumes: false,
        }
    }

    #[test]
    fn a_plan_round_trips_every_kind_of_row_exactly() {
        let fixture = fixture();
        let candidates = [
            candidate("a", FieldValue::text("c1"), FieldValue::Integer(5)),
            candidate("b", FieldValue::Null, FieldValue::Integer(6)),
            candidate("c", FieldValue::Blob(vec![0, 255]), FieldValue::Real(1.5)),
            candidate("d", FieldValue::text("x"), FieldValue::text("soon")),
            Candidate::from_row(StoppedRow {
                game_id: FieldValue::Text(Text::from_bytes(b"e-\xff".to_vec())),
                container_id: FieldValue::Null,
                last_op_at: FieldValue::Integer(7),
            }),
        ];
        let plan = made(&fixture, Some("owner"), &candidates);
        let loaded = Plan::load(&fixture.plan, &apply(&fixture.state, None)).unwrap();
        assert_eq!(loaded, plan);
        assert_eq!(loaded.candidates(), candidates);
        assert_eq!(loaded.owner_label.as_deref(), Some("owner"));
    }

    #[test]
    fn a_plan_for_another_state_file_or_retention_is_refused() {
        let fixture = fixture();
        let other = fixture.dir.path().join("other.db");
        std::fs::write(&other, b"").unwrap();
        made(&fixture, None, &[]);
        assert!(matches!(
            Plan::load(&fixture.plan, &apply(&other, None)),
            Err(PlanError::OtherState { .. })
        ));
        let mut longer = apply(&fixture.state, None);
        longer.retention_seconds = 61;
        assert!(matches!(
            Plan::load(&fixture.plan, &longer),
            Err(PlanError::OtherRetention { .. })
        ));
        assert!(Plan::load(&fixture.plan, &apply(&fixture.state, None)).is_ok());
    }

    #[test]
    fn the_plans_owner_label_applies_and_another_is_refused() {
        let fixture = fixture();
        made(&fixture, Some("owner"), &[]);
        assert!(Plan::load(&fixture.plan, &apply(&fixture.state, Some("owner"))).is_ok());
        assert!(matches!(
            Plan::load(&fixture.plan, &apply(&fixture.state, Some("other"))),
            Err(PlanError::OtherOwnerLabel { .. })
        ));
        made(&fixture, None, &[]);
        assert!(matches!(
            Plan::load(&fixture.plan, &apply(&fixture.state, Some("owner"))),
            Err(PlanError::OtherOwnerLabel { .. })
        ));
    }

    #[test]
    fn a_threshold_later_than_now_minus_the_retention_is_refused() {
        let fixture = fixture();
        made(&fixture, None, &[]);
        let mut earlier = apply(&fixture.state, None);
        earlier.threshold_ms = THRESHOLD - 1;
        assert!(matches!(
            Plan::load(&fixture.plan, &earlier),
            Err(PlanError::ThresholdAhead { .. })
        ));
    }

    #[test]
    fn a_threshold_equal_to_the_runs_is_accepted() {
        // A real run applying the plan in the same millisecond as its dry run.
        let fixture = fixture();
        made(&fixture, None, &[]);
        let mut same = apply(&fixture.state, None);
        same.threshold_ms = THRESHOLD;
        assert!(Plan::load(&fixture.plan, &same).is_ok());
    }

    /// An orphan of game `game` in container `id`, as the orphan search finds it.
    fn orphan(id: &str, game: &str) -> Orphan {
        Orphan {
            info: crate::engine::ContainerInfo {
                id: id.to_owned(),
                names: vec![format!("leaked-{game}")],
                state: "exited".to_owned(),
                ..crate::engine::ContainerInfo::default()
            },
            label: game.to_owned(),
            game: Ok(FieldValue::text(game)),
        }
    }

    /// A plan of `orphans` under `--orphans remove`, saved to the fixture's plan file.
    fn made_with_orphans(fixture: &Fixture, orphans: &[(Orphan, Outcome)]) -> Plan {
        let context = PlanContext {
            state: &fixture.state,
            retention_seconds: 60,
            created_at: "t0".into(),
            threshold: "t1".into(),
            threshold_ms: THRESHOLD,
            owner_label: Some("owner"),
            orphan_mode: OrphanMode::Remove,
            remove_volumes: false,
        };
        let pairs: Vec<_> = orphans.iter().map(|(o, outcome)| (o, outcome)).collect();
        let plan = Plan::new(&context, &[], &pairs).unwrap();
        plan.save(&fixture.plan).unwrap();
        plan
    }

    #[test]
    fn a_plan_with_orphans_round_trips_and_keeps_their_mode() {
        let fixture = fixture();
        let plan = made_with_orphans(
            &fixture,
            &[
                (orphan("0123456789abcdef", "g-1"), Outcome::removed()),
                (
                    orphan("fedcba9876543210", "g-2"),
                    Outcome::conflict("the game is leased by \"rtmanager\""),
                ),
            ],
        );
        assert_eq!(
            plan.orphans,
            [
                PlannedOrphan {
                    container_id: "0123456789abcdef".into(),
                    game_id: "g-1".into(),
                    predicted: ResultKind::Removed,
                    predicted_message: None,
                    predicted_size_rw_bytes: None,
                    predicted_volumes: None,
                },
                PlannedOrphan {
                    container_id: "fedcba9876543210".into(),
                    game_id: "g-2".into(),
                    predicted: ResultKind::Conflict,
                    predicted_message: Some("the game is leased by \"rtmanager\"".into()),
                    predicted_size_rw_bytes: None,
                    predicted_volumes: None,
                },
            ]
        );
        let loaded = Plan::load(&fixture.plan, &apply(&fixture.state, Some("owner"))).unwrap();
        assert_eq!(loaded, plan);
        assert_eq!(loaded.orphan_mode, OrphanMode::Remove);
        assert!(loaded.candidates().is_empty(), "no record is planned");
        let mut same_mode = apply(&fixture.state, None);
        same_mode.orphan_mode = Some(OrphanMode::Remove);
        assert!(Plan::load(&fixture.plan, &same_mode).is_ok());
        let mut report = apply(&fixture.state, None);
        report.orphan_mode = Some(OrphanMode::Report);
        let error = Plan::load(&fixture.plan, &report).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("was made with --orphans remove, this run has report;"),
            "{error}"
        );
    }

    #[test]
    fn an_orphan_listed_twice_is_refused() {
        let fixture = fixture();
        made_with_orphans(
            &fixture,
            &[
                (orphan("fedcba9876543210", "g-1"), Outcome::removed()),
                (orphan("0123456789abcdef", "g-1"), Outcome::removed()),
                (orphan("0123456789abcdef", "g-1"), Outcome::removed()),
            ],
        );
        match Plan::load(&fixture.plan, &apply(&fixture.state, None)) {
            Err(error @ PlanError::Duplicate { .. }) => assert!(
                error
                    .to_string()
                    .contains("lists orphan container 0123456789abcdef twice"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_listed_twice_is_refused() {
        let fixture = fixture();
        let twice = [
            candidate("a", FieldValue::text("c1"), FieldValue::Integer(5)),
            candidate("a", FieldValue::text("c1"), FieldValue::Integer(5)),
        ];
        made(&fixture, None, &twice);
        assert!(matches!(
            Plan::load(&fixture.plan, &apply(&fixture.state, None)),
            Err(PlanError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_game_named_by_a_number_is_refused_and_one_named_null_is_kept() {
        let fixture = fixture();
        let plan = made(
            &fixture,
            None,
            &[candidate("1", FieldValue::Null, FieldValue::Integer(5))],
        );
        for (game_id, kind) in [
            (serde_json::json!(1), "an integer"),
            (serde_json::json!(1.5), "a real number"),
        ] {
            let mut value = serde_json::to_value(&plan).unwrap();
            let second = value["records"][0].clone();
            value["records"].as_array_mut().unwrap().push(second);
            value["records"][1]["game_id"] = game_id.clone();
            std::fs::write(&fixture.plan, value.to_string()).unwrap();
            match Plan::load(&fixture.plan, &apply(&fixture.state, None)) {
                Err(error @ PlanError::GameIdNotText { .. }) => {
                    assert!(error.to_string().contains(kind), "{error}");
                }
                other => panic!("{game_id}: {other:?}"),
            }
        }
        // A record without a game (a table made without NOT NULL), twice: the run reports each
        // as `invalid_record`, touching nothing, as the dry run that wrote the plan predicted.
        let mut value = serde_json::to_value(&plan).unwrap();
        let mut without_game = value["records"][0].clone();
        without_game["game_id"] = serde_json::Value::Null;
        let records = value["records"].as_array_mut().unwrap();
        records.extend([without_game.clone(), without_game]);
        std::fs::write(&fixture.plan, value.to_string()).unwrap();
        let loaded = Plan::load(&fixture.plan, &apply(&fixture.state, None)).unwrap();
        assert_eq!(loaded.candidates()[2].row.game_id, FieldValue::Null);
        // Text and a blob of the same bytes are two keys to SQLite: both may be listed.
        let text_and_blob = [
            candidate("1", FieldValue::Null, FieldValue::Integer(5)),
            Candidate::from_row(StoppedRow {
                game_id: FieldValue::Blob(b"1".to_vec()),
                container_id: FieldValue::Null,
                last_op_at: FieldValue::Integer(5),
            }),
        ];
        made(&fixture, None, &text_and_blob);
        assert!(Plan::load(&fixture.plan, &apply(&fixture.state, None)).is_ok());
    }

    #[test]
    fn a_malformed_plan_is_refused() {
        let fixture = fixture();
        for junk in [
            "",
            "{}",
            "[1,2]",
            "{\"rt_cleanup_plan\": 2}",
            "{\"records\": 3}",
        ] {
            std::fs::write(&fixture.plan, junk).unwrap();
            assert!(
                matches!(
                    Plan::load(&fixture.plan, &apply(&fixture.state, None)),
                    Err(PlanError::Malformed { .. })
                ),
                "{junk}"
            );
        }
        let mut plan = made(&fixture, None, &[]);
        let mut value = serde_json::to_value(&plan).unwrap();
        value["extra"] = serde_json::json!(1);
        std::fs::write(&fixture.plan, value.to_string()).unwrap();
        assert!(
            matches!(
                Plan::load(&fixture.plan, &apply(&fixture.state, None)),
                Err(PlanError::Malformed { .. })
            ),
            "an unknown field is an edit this build does not understand"
        );
        let mut other_mode = apply(&fixture.state, None);
        other_mode.orphan_mode = Some(OrphanMode::Remove);
        plan.save(&fixture.plan).unwrap();
        let error = Plan::load(&fixture.plan, &other_mode).unwrap_err();
        assert!(
            matches!(error, PlanError::OtherOrphanMode { .. })
                && error
                    .to_string()
                    .contains("was made with --orphans off, this run has remove;"),
            "{error}"
        );
        plan.format = 9;
        plan.save(&fixture.plan).unwrap();
        assert!(matches!(
            Plan::load(&fixture.plan, &apply(&fixture.state, None)),
            Err(PlanError::Format { found: 9, .. })
        ));
    }

    #[test]
    fn a_plan_made_with_remove_volumes_carries_it_and_one_made_without_refuses_it() {
        let fixture = fixture();
        let candidates = [candidate(
            "a",
            FieldValue::text("c1"),
            FieldValue::Integer(5),
        )];
        let plan = made(&fixture, None, &candidates);
        let text = std::fs::read_to_string(&fixture.plan).unwrap();
        for key in [
            "remove_volumes",
            "predicted_volumes",
            "predicted_size_rw_bytes",
        ] {
            assert!(
                !text.contains(key),
                "a plan without them reads as before: {text}"
            );
        }
        let mut removing = apply(&fixture.state, None);
        removing.remove_volumes = true;
        assert!(matches!(
            Plan::load(&fixture.plan, &removing),
            Err(PlanError::RemoveVolumesNotPlanned { .. })
        ));

        let outcome = Outcome::removed().freeing(Freed {
            size_rw: Some(42),
            volumes: Some(vec!["a1".into()]),
        });
        let context = PlanContext {
            state: &fixture.state,
            retention_seconds: 60,
            created_at: "t0".into(),
            threshold: "t1".into(),
            threshold_ms: THRESHOLD,
            owner_label: None,
            orphan_mode: OrphanMode::Off,
            remove_volumes: true,
        };
        let with = Plan::new(&context, &[(&candidates[0], &outcome)], &[]).unwrap();
        with.save(&fixture.plan).unwrap();
        for run in [removing, apply(&fixture.state, None)] {
            let loaded = Plan::load(&fixture.plan, &run).unwrap();
            assert!(loaded.remove_volumes, "the plan's applies either way");
            assert_eq!(loaded.records[0].predicted_size_rw_bytes, Some(42));
            assert_eq!(
                loaded.records[0].predicted_volumes.as_deref(),
                Some(&["a1".to_owned()][..])
            );
        }
        assert!(!plan.remove_volumes);
    }
}

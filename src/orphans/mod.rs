//! Leaked containers: the runtime manager's containers that no record claims.
//!
//! A container is an orphan when its `--owner-label` names a game G, it is not known to be
//! running (`ContainerState::Running`: running, paused, restarting, stopping; a state no engine
//! is known to use counts as not running, as for the records, and the daemon remains the guard
//! of a removal), it stopped longer ago than the retention (Docker's `FinishedAt`, else its
//! creation), and no record claims it: G has no record, or G's record is `removed`, or G's record
//! names another container. Finding them takes one listing of the labelled containers, filtered by
//! the daemon on the label (a dry run whose records need the listing of every container uses that
//! one instead), one read of the named games' records, and one inspection per container that no
//! record claims and that was created before the threshold (under a plan, per planned one). Removing one is a job like a record's, whose guard
//! re-checks under G's lease that no record claims it; the worker and the state writer are the
//! same.

mod pass;

use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt};

use crate::candidate::{ContainerRef, Target};
use crate::engine::{ContainerEngine, ContainerInfo, Inspection};
use crate::job::{claims, CurrentRecord, Guard, Job, JobKind};
use crate::outcome::{ErrorCode, Outcome};
use crate::value::FieldValue;

pub use pass::{HandledOrphan, OrphanPass};

/// The longest label value that names a game, in bytes.
pub const MAX_LABEL_LEN: usize = 255;

/// A leaked container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The container as inspected.
    pub info: ContainerInfo,
    /// The value of its owner label.
    pub label: String,
    /// The game the label names, or why it names none.
    pub game: Result<FieldValue, String>,
}

impl Orphan {
    /// When it stopped (or, never started, was created), epoch milliseconds.
    #[must_use]
    pub fn since_ms(&self) -> Option<i64> {
        since_ms(&self.info)
    }

    /// The job that removes it, or, for a label that names no game, the outcome of `remove`:
    /// failed with `invalid_record`, never removed, no lease and no row (the label is never
    /// used as a key).
    pub fn job(&self) -> Result<Job, Outcome> {
        let game = self.game.clone().map_err(|reason| {
            Outcome::failed(
                ErrorCode::InvalidRecord,
                format!("{reason}; the container is kept"),
            )
        })?;
        let target = ContainerRef::parse(&self.info.id).map_or_else(
            |reason| Target::Invalid(format!("the daemon gave an unusable id: {reason}")),
            Target::Container,
        );
        Ok(Job {
            game,
            target,
            logged_container: Some(self.info.id.clone()),
            guard: Guard::Unclaimed {
                id: self.info.id.clone(),
                names: self.info.names.clone(),
            },
            kind: JobKind::Orphan,
        })
    }
}

/// The game a label value names, checked before it is used as a key into anything: not empty,
/// at most 255 bytes, no control characters.
pub fn game_named_by(value: &str) -> Result<FieldValue, String> {
    let shown = FieldValue::text(value);
    if value.is_empty() {
        Err("its owner label is empty and names no game".to_owned())
    } else if value.len() > MAX_LABEL_LEN {
        Err(format!(
            "its owner label is {} bytes long, more than the {MAX_LABEL_LEN} of a game id, and \
             names no game",
            value.len()
        ))
    } else if value.chars().any(char::is_control) {
        Err(format!(
            "its owner label {shown} holds control characters and names no game"
        ))
    } else {
        Ok(shown)
    }
}

fn since_ms(info: &ContainerInfo) -> Option<i64> {
    info.finished_ms.or(info.created_ms)
}

/// The games named by the labels of the listed containers that may be orphans (not running),
/// once each, for reading their records.
#[must_use]
pub fn games_named(listed: &[ContainerInfo], key: &str) -> Vec<FieldValue> {
    let mut seen = HashSet::new();
    listed
        .iter()
        .filter(|info| !info.is_running())
        .filter_map(|info| info.labels.get(key))
        .filter_map(|value| game_named_by(value).ok())
        .filter(|game| seen.insert(game.clone()))
        .collect()
}

/// The listed containers that may be orphans and need an inspection for their age: labelled,
/// not running, created before `threshold_ms`, and not claimed by the record of the game they
/// name. A container created at or after the threshold cannot have stopped before it (the
/// listing's creation time is whole seconds, rounded down): no inspection is asked for it.
#[must_use]
pub fn unclaimed<'a>(
    listed: &'a [ContainerInfo],
    key: &str,
    records: &HashMap<FieldValue, CurrentRecord>,
    threshold_ms: i64,
) -> Vec<&'a ContainerInfo> {
    listed
        .iter()
        .filter(|info| !info.is_running())
        .filter(|info| info.created_ms.is_none_or(|created| created < threshold_ms))
        .filter(|info| {
            let Some(value) = info.labels.get(key) else {
                return false;
            };
            match game_named_by(value) {
                // A label that names no game cannot be claimed by any record.
                Err(_) => true,
                Ok(game) => !records
                    .get(&game)
                    .is_some_and(|record| claims(record, &info.id, &info.names)),
            }
        })
        .collect()
}

/// Whether an inspected container is an orphan at `threshold_ms`: still labelled, not running,
/// and stopped (else created) before the threshold. A container whose times are unknown is
/// kept: its age cannot be shown.
#[must_use]
pub fn orphan_at(info: ContainerInfo, key: &str, threshold_ms: i64) -> Option<Orphan> {
    if info.is_running() || since_ms(&info).is_none_or(|since| since >= threshold_ms) {
        return None;
    }
    let label = info.labels.get(key)?.clone();
    let game = game_named_by(&label);
    Some(Orphan { info, label, game })
}

/// Inspects the unclaimed containers, `concurrency` at a time, and returns the orphans, oldest
/// first. A container gone meanwhile is no orphan. An inspection that fails (refused, or no
/// answer in time) fails the search (docs/contract.md, section 7): its error names the
/// container, and no orphan of this search is acted on.
pub async fn inspect_unclaimed<E: ContainerEngine>(
    engine: &E,
    unclaimed: &[&ContainerInfo],
    key: &str,
    threshold_ms: i64,
    concurrency: usize,
) -> Result<Vec<Orphan>, String> {
    let inspected: Vec<Result<Option<Orphan>, String>> = stream::iter(unclaimed)
        .map(|info| async move {
            match engine.inspect(&info.id).await {
                Inspection::Found(inspected) => Ok(orphan_at(inspected, key, threshold_ms)),
                Inspection::NotFound => Ok(None),
                Inspection::Interrupted => Err(format!(
                    "the search was interrupted by a signal before container {} was inspected",
                    info.id
                )),
                Inspection::Failed(reason) => Err(format!(
                    "cannot inspect container {}, a possible orphan: {reason}",
                    info.id
                )),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut orphans = Vec::new();
    for result in inspected {
        if let Some(orphan) = result? {
            orphans.push(orphan);
        }
    }
    orphans.sort_by(|a, b| {
        a.since_ms()
            .cmp(&b.since_ms())
            .then_with(|| a.info.id.cmp(&b.info.id))
    });
    Ok(orphans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "owner";
    const THRESHOLD: i64 = 1_000_000;

    fn container(id: &str, name: &str, state: &str, label: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            names: vec![name.into()],
            state: state.into(),
            labels: label
                .map(|value| HashMap::from([(KEY.to_owned(), value.to_owned())]))
                .unwrap_or_default(),
            created_ms: Some(THRESHOLD - 10),
            ..ContainerInfo::default()
        }
    }

    fn record(status: &str, container: Option<&str>) -> CurrentRecord {
        CurrentRecord {
            status: FieldValue::text(status),
            container_id: container.map_or(FieldValue::Null, FieldValue::text),
            last_op_at: FieldValue::Integer(1),
        }
    }

    fn ids(containers: &[&ContainerInfo]) -> Vec<String> {
        containers.iter().map(|info| info.id.clone()).collect()
    }

    #[test]
    fn a_label_names_a_game_only_when_it_is_a_sane_key() {
        assert_eq!(game_named_by("g-7"), Ok(FieldValue::text("g-7")));
        assert_eq!(game_named_by("../x"), Ok(FieldValue::text("../x")));
        assert_eq!(game_named_by("g-\\xff"), Ok(FieldValue::text("g-\\xff")));
        assert!(game_named_by("").is_err());
        assert!(game_named_by(&"g".repeat(256)).is_err());
        assert!(game_named_by(&"g".repeat(255)).is_ok());
        assert!(game_named_by("g\n7").is_err());
        assert!(game_named_by("g\u{7f}").is_err());
    }

    #[test]
    fn each_way_a_container_becomes_an_orphan() {
        let listed = [
            container("aaa111", "no-record", "exited", Some("g-none")),
            container("bbb222", "removed-record", "exited", Some("g-removed")),
            container("ccc333", "other-by-id", "exited", Some("g-other-id")),
            container("ddd444", "other-by-name", "created", Some("g-other-name")),
        ];
        let records = HashMap::from([
            (
                FieldValue::text("g-removed"),
                record("removed", Some("bbb222")),
            ),
            (
                FieldValue::text("g-other-id"),
                record("stopped", Some("fff999")),
            ),
            (
                FieldValue::text("g-other-name"),
                record("running", Some("another-name")),
            ),
        ]);
        assert_eq!(
            ids(&unclaimed(&listed, KEY, &records, THRESHOLD)),
            ["aaa111", "bbb222", "ccc333", "ddd444"]
        );
    }

    #[test]
    fn a_container_created_after_the_threshold_is_not_inspected() {
        let mut young = container("aaa111", "young", "exited", Some("g-young"));
        young.created_ms = Some(THRESHOLD);
        let mut unknown = container("bbb222", "unknown", "exited", Some("g-unknown"));
        unknown.created_ms = None;
        let old = container("ccc333", "old", "exited", Some("g-old"));
        let listed = [young, unknown, old];
        assert_eq!(
            ids(&unclaimed(&listed, KEY, &HashMap::new(), THRESHOLD)),
            ["bbb222", "ccc333"],
            "a creation time the listing does not give is inspected"
        );
    }

    #[test]
    fn each_way_a_container_is_not_an_orphan() {
        let listed = [
            container("aaa111", "by-id", "exited", Some("g-id")),
            container("bbb222", "by-prefix", "exited", Some("g-prefix")),
            container("ccc333", "by-name", "exited", Some("g-name")),
            container("ddd444", "running", "running", Some("g-none")),
            container("eee555", "paused", "paused", Some("g-none")),
            container("fff666", "restarting", "restarting", Some("g-none")),
        ];
        let records = HashMap::from([
            (FieldValue::text("g-id"), record("stopped", Some("aaa111"))),
            (FieldValue::text("g-prefix"), record("running", Some("bbb"))),
            (
                FieldValue::text("g-name"),
                record("creating", Some("by-name")),
            ),
        ]);
        assert!(unclaimed(&listed, KEY, &records, THRESHOLD).is_empty());
        assert_eq!(
            games_named(&listed, KEY),
            [
                FieldValue::text("g-id"),
                FieldValue::text("g-prefix"),
                FieldValue::text("g-name")
            ],
            "running containers need no record read"
        );
    }

    #[test]
    fn a_container_younger_than_the_retention_is_not_one_yet() {
        let mut young = container("aaa111", "young", "exited", Some("g"));
        young.created_ms = Some(THRESHOLD - 1_000_000);
        young.finished_ms = Some(THRESHOLD + 1);
        assert_eq!(
            orphan_at(young.clone(), KEY, THRESHOLD),
            None,
            "FinishedAt decides"
        );
        young.finished_ms = Some(THRESHOLD - 1);
        assert!(orphan_at(young.clone(), KEY, THRESHOLD).is_some());
        young.finished_ms = None;
        young.created_ms = Some(THRESHOLD);
        assert_eq!(
            orphan_at(young.clone(), KEY, THRESHOLD),
            None,
            "else Created"
        );
        young.created_ms = None;
        assert_eq!(orphan_at(young, KEY, THRESHOLD), None, "no age, no orphan");
    }

    #[test]
    fn a_label_that_names_no_game_is_listed_but_never_a_job() {
        let info = container("aaa111", "x", "exited", Some(""));
        let orphan = orphan_at(info, KEY, THRESHOLD).expect("listed");
        let outcome = orphan.job().unwrap_err();
        assert_eq!(outcome.error_code, Some(ErrorCode::InvalidRecord));
    }

    #[test]
    fn an_orphans_job_removes_it_under_its_games_lease_unless_claimed() {
        let orphan = orphan_at(
            container("aaa111", "leaked", "exited", Some("g-7")),
            KEY,
            THRESHOLD,
        )
        .unwrap();
        let job = orphan.job().unwrap();
        assert_eq!(job.game, FieldValue::text("g-7"));
        assert_eq!(job.kind, JobKind::Orphan);
        assert_eq!(job.logged_container.as_deref(), Some("aaa111"));
        assert!(matches!(job.target, Target::Container(ref r) if r.as_str() == "aaa111"));
        assert!(job
            .guard
            .check(Some(&record("stopped", Some("leaked"))))
            .is_err());
    }
}

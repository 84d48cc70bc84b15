//! The dry run's prediction: what a real run would do now with each job, from one read of the
//! state file, one listing of the daemon's containers and a second look at the containers it
//! shows as `removing` or `dead`. A pass's `--dry-run` and `explain` both predict with it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use futures_util::stream::{self, StreamExt};

use super::read::{read_state, StateRead};
use super::{cut_short, names_a_container, Listing, OrphanResults, Pass, RunError};
use crate::candidate::{Candidate, Target};
use crate::config::DiskOptions;
use crate::engine::{
    Anonymity, ContainerEngine, ContainerIndex, ContainerState, Inspection, Lookup,
};
use crate::job::JobKind;
use crate::outcome::{predict, LiveLease, Outcome, ResultKind};
use crate::space::{anonymous_volumes, Freed};
use crate::store::{Store, StoreError};
use crate::value::Escaped;
use crate::value::FieldValue;
use crate::worker::{acted_on, over_limit};

/// What a caller of the dry run reads besides from the same read of the state file (explain's
/// records and log rows).
pub(crate) type ReadMore<'a, X> = &'a dyn Fn(&Store) -> Result<X, StoreError>;

/// The inspections of the containers a listing shows as `removing` or `dead`, by full id (see
/// [`look_again_at_removals`]).
pub type SecondLooks = HashMap<String, Inspection>;

/// Inspects, `concurrency` at a time, each container that one of the targets names and that the
/// listing shows as `removing` or `dead`. The listed state does not tell a removal in progress
/// from one that failed: Docker 20.10 to 26 list both as `removing` (and inspect the failed one
/// as `dead`), Docker 28 lists both as `dead` (and inspects the one in progress as `removing`).
/// A real run's removal is a `conflict` for the first and fails for the second, so a dry run
/// must look again, and goes by the inspection. Each inspection is bounded by the client's
/// timeout.
pub async fn look_again_at_removals<'a, E: ContainerEngine>(
    engine: &E,
    containers: &ContainerIndex,
    targets: impl Iterator<Item = &'a Target>,
    concurrency: usize,
) -> SecondLooks {
    let mut ambiguous = HashSet::new();
    for target in targets {
        if let Target::Container(reference) = target {
            if let Lookup::Found(info) = containers.lookup(reference.as_str()) {
                if matches!(
                    info.state(),
                    ContainerState::Removing | ContainerState::Dead
                ) {
                    ambiguous.insert(info.id.clone());
                }
            }
        }
    }
    stream::iter(ambiguous)
        .map(|id| async move {
            let inspection = engine.inspect(&id).await;
            (id, inspection)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Predicts the result a real run would give each job now, for `--dry-run`: from the leases in
/// force, one listing of the daemon's containers, and the second looks at those it shows as
/// `removing` or `dead`. A job is given by its game, its target and its kind, all a prediction
/// needs, so that a dry run makes no job for a record.
#[must_use]
pub fn predict_all<'a, S, I>(
    jobs: I,
    leases: &HashMap<FieldValue, LiveLease, S>,
    containers: Option<&ContainerIndex>,
    second_looks: &SecondLooks,
    owner_label: Option<&str>,
    max_removals: Option<usize>,
) -> Vec<Outcome>
where
    S: BuildHasher,
    I: IntoIterator<Item = (&'a FieldValue, &'a Target, JobKind)>,
    I::IntoIter: ExactSizeIterator,
{
    let jobs = jobs.into_iter();
    let acted = acted_on(jobs.len(), max_removals);
    jobs.enumerate()
        .map(|(position, (game, target, kind))| {
            if position >= acted {
                return over_limit(max_removals);
            }
            let lookup = match (target, containers) {
                (Target::Container(reference), Some(index)) => {
                    Some(index.lookup(reference.as_str()))
                }
                _ => None,
            };
            let second_look = match lookup {
                Some(Lookup::Found(info)) => second_looks.get(&info.id),
                _ => None,
            };
            kind.result_of(predict(
                game,
                target,
                leases.get(game),
                lookup,
                second_look,
                owner_label,
            ))
        })
        .collect()
}

impl Pass<'_> {
    /// The dry run: predicts every job's result from what was read and the one listing; changes
    /// nothing. The orphans' records, and what `extra` reads (explain's records and log rows),
    /// are read from the same snapshot of the state file as the candidates and the leases, so
    /// where the file was written meanwhile all of it is read again (see [`read_state`]), and
    /// the predictions are made from the read that held.
    pub(crate) async fn predict<X>(
        &self,
        read: StateRead,
        listing: Listing,
        extra: Option<ReadMore<'_, X>>,
    ) -> Result<(StateRead, Vec<Outcome>, OrphanResults, Option<X>), RunError> {
        let listed = match &listing {
            Listing::All(index) => Some(Ok(index.containers())),
            Listing::Labelled(Ok(labelled)) => Some(Ok(labelled.as_slice())),
            Listing::Labelled(Err(reason)) => Some(Err(format!(
                "cannot list the containers labelled {}: {reason}",
                self.settings.owner_label.as_deref().unwrap_or_default()
            ))),
            Listing::Nothing => None,
        };
        let orphan_games = match (self.orphans, &listed) {
            (Some(orphans), Some(Ok(listed))) => Ok(Some(orphans.games_named(listed))),
            (Some(_), Some(Err(reason))) => Err(reason.clone()),
            _ => Ok(None),
        };
        let (read, (orphan_records, extra)) = match (&orphan_games, extra) {
            (Ok(None) | Err(_), None) => (read, (None, None)),
            (games, extra) => read_state(
                self.config,
                self.plan,
                self.time,
                self.stop,
                Some(read),
                |store| {
                    let records = match games {
                        Ok(Some(games)) => Some(store.records_of(games)?),
                        _ => None,
                    };
                    let extra = extra.map(|read_more| read_more(store)).transpose()?;
                    Ok((records, extra))
                },
            )?,
        };
        let orphan_records = match orphan_games {
            Ok(_) => orphan_records.map(Ok),
            Err(reason) => Some(Err(reason)),
        };
        let (containers, labelled) = match listing {
            Listing::All(index) => (Some(index), None),
            // The candidates of a read made again may name a container where the first read's
            // named none: only then are all the containers listed, a second time.
            Listing::Labelled(labelled)
                if names_a_container(&read.candidates, self.config.max_removals) =>
            {
                let listed = self.docker.list_all().await;
                let index = listed.map_err(|reason| self.docker.list_error(reason))?;
                (Some(ContainerIndex::new(index)), labelled.ok())
            }
            Listing::Labelled(labelled) => (None, labelled.ok()),
            Listing::Nothing => (None, None),
        };
        let acted = acted_on(read.candidates.len(), self.config.max_removals);
        let second_looks = match &containers {
            Some(index) => {
                look_again_at_removals(
                    self.docker,
                    index,
                    read.candidates[..acted]
                        .iter()
                        .map(|candidate| &candidate.target),
                    self.settings.concurrency,
                )
                .await
            }
            None => SecondLooks::new(),
        };
        // No log line per prediction: the summary on stdout lists every one, and 10,000 such
        // lines cost a large dry run about a fifth of its time (docs/benchmark.md).
        let mut outcomes = predict_all(
            read.candidates
                .iter()
                .map(|candidate| (&candidate.row.game_id, &candidate.target, JobKind::Record)),
            &read.leases,
            containers.as_ref(),
            &second_looks,
            self.settings.owner_label.as_deref(),
            self.config.max_removals,
        );
        let mut orphans =
            match (self.orphans, orphan_records) {
                (Some(orphans), Some(Ok(records))) => {
                    // The labelled listing where one was taken, else that of every container.
                    let listed = labelled
                        .as_deref()
                        .or_else(|| containers.as_ref().map(ContainerIndex::containers))
                        .unwrap_or_default();
                    let found = orphans
                        .search(listed, &records, self.docker, self.settings.concurrency)
                        .await;
                    Some(cut_short(found, self.stop).map(|found| {
                        orphans.predict(found, &read.leases, self.config.max_removals)
                    }))
                }
                (Some(_), Some(Err(reason))) => Some(Err(reason)),
                _ => None,
            };
        self.look_at_what_goes(
            &read.candidates,
            &mut outcomes,
            containers.as_ref(),
            &mut orphans,
        )
        .await;
        Ok((read, outcomes, orphans, extra))
    }
}

impl Pass<'_> {
    /// With `--measure-space` or `--remove-volumes`, the dry run's look at what its removals
    /// would free ([`look_at_what_goes`]): at the containers it predicts removed, the records'
    /// (explain's games' only, where it looks at those only) and the orphans'.
    async fn look_at_what_goes(
        &self,
        candidates: &[Candidate],
        outcomes: &mut [Outcome],
        containers: Option<&ContainerIndex>,
        orphans: &mut OrphanResults,
    ) {
        if !self.settings.disk.looks() {
            return;
        }
        let mut going = Vec::new();
        for (candidate, outcome) in candidates.iter().zip(outcomes.iter_mut()) {
            let looked_at = self
                .looking_only_at
                .as_ref()
                .is_none_or(|games| games.contains(&candidate.row.game_id));
            let listed = match (&candidate.target, containers) {
                (Target::Container(reference), Some(index)) => index.lookup(reference.as_str()),
                _ => Lookup::Missing,
            };
            if let (true, ResultKind::Removed, Lookup::Found(info)) =
                (looked_at, outcome.result, listed)
            {
                going.push((info.id.clone(), outcome));
            }
        }
        if let (None, Some(Ok(handled))) = (&self.looking_only_at, orphans) {
            for handled in handled {
                if let Some(outcome) = handled
                    .outcome
                    .as_mut()
                    .filter(|outcome| outcome.result == ResultKind::Removed)
                {
                    going.push((handled.orphan.info.id.clone(), outcome));
                }
            }
        }
        look_at_what_goes(
            self.docker,
            self.settings.disk,
            self.settings.concurrency,
            going,
            containers,
        )
        .await;
    }
}

/// A dry run's look at what the removals it predicts would free (`--measure-space`,
/// `--remove-volumes`), as a real run looks at each container before it removes it: one
/// inspection of each container in `going` (by full id, with its predicted outcome), sized under
/// `--measure-space`, `concurrency` at a time, each bounded by the client's timeout. Under
/// `--remove-volumes`, where a container has volumes, the engine's rule for anonymous volumes
/// (for Podman, one listing of its volumes) and the listing of every container (`containers`,
/// else listed once here), since a volume another container uses stays. What cannot be looked
/// at is unknown (`null`); the predictions themselves are never changed.
pub async fn look_at_what_goes<E: ContainerEngine>(
    engine: &E,
    disk: DiskOptions,
    concurrency: usize,
    going: Vec<(String, &mut Outcome)>,
    containers: Option<&ContainerIndex>,
) {
    let looked: Vec<Inspection> = stream::iter(going.iter().map(|(id, _)| id.clone()))
        .map(|id| async move {
            if disk.measure_space {
                engine.inspect_sized(&id).await
            } else {
                engine.inspect(&id).await
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let has_volumes = looked.iter().any(
        |inspection| matches!(inspection, Inspection::Found(info) if !info.volumes.is_empty()),
    );
    let volume_rule = if disk.remove_volumes && has_volumes {
        volume_rule(engine, containers).await
    } else {
        None
    };
    for ((id, outcome), inspection) in going.into_iter().zip(looked) {
        let info = match inspection {
            Inspection::Found(info) => Some(info),
            Inspection::NotFound | Inspection::Failed(_) | Inspection::Interrupted => None,
        };
        let volumes = match (&info, &volume_rule) {
            (Some(info), _) if info.volumes.is_empty() => Some(Vec::new()),
            (Some(info), Some((anonymity, users))) => anonymous_volumes(info, anonymity, |name| {
                users
                    .get(name)
                    .is_some_and(|ids| ids.iter().any(|other| *other != id))
            }),
            _ => None,
        };
        outcome.freed = Some(Box::new(Freed {
            size_rw: info
                .and_then(|info| info.size_rw)
                .filter(|_| disk.measure_space),
            volumes: volumes.filter(|_| disk.remove_volumes),
        }));
    }
}

/// The containers that mount each volume (their full ids), by the volume's name.
type VolumeUsers = HashMap<String, Vec<String>>;

/// The engine's rule for anonymous volumes and which containers use each volume, from the
/// listing of every container (`containers`, else one taken here); `None`, with a warning,
/// where either cannot be had: no volume is then listed.
async fn volume_rule<E: ContainerEngine>(
    engine: &E,
    containers: Option<&ContainerIndex>,
) -> Option<(Anonymity, VolumeUsers)> {
    let anonymity = engine.anonymity().await;
    if let Anonymity::Unknown(reason) = &anonymity {
        tracing::warn!(
            "the dry run lists no volume: it cannot tell the anonymous ones: {}",
            Escaped(reason)
        );
        return None;
    }
    let listed = match containers {
        Some(index) => Cow::Borrowed(index.containers()),
        None => match engine.list_all().await {
            Ok(listed) => Cow::Owned(listed),
            Err(reason) => {
                tracing::warn!(
                    "the dry run lists no volume: it cannot tell which volumes other containers \
                     use: {}",
                    Escaped(&reason)
                );
                return None;
            }
        },
    };
    let mut users = VolumeUsers::new();
    for info in listed.iter() {
        for mount in &info.volumes {
            users
                .entry(mount.name.clone())
                .or_default()
                .push(info.id.clone());
        }
    }
    Some((anonymity, users))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::ContainerRef;
    use crate::engine::fake::{Call, FakeEngine, FakeVolume};
    use crate::engine::{AnonymousVolumes, ContainerInfo, Removal};
    use crate::outcome::{decide_removal, ErrorCode, ResultKind};

    /// Predicts the removal of each of `references` (each its own game's record) from
    /// `listing`, with the second looks at the containers it shows as `removing` or `dead`.
    async fn predicted(
        engine: &FakeEngine,
        listing: Vec<ContainerInfo>,
        references: &[&str],
    ) -> Vec<Outcome> {
        let index = ContainerIndex::new(listing);
        let targets: Vec<Target> = references
            .iter()
            .map(|reference| Target::Container(ContainerRef::parse(reference).unwrap()))
            .collect();
        let games: Vec<FieldValue> = references.iter().map(|r| FieldValue::text(r)).collect();
        let looks = look_again_at_removals(engine, &index, targets.iter(), 2).await;
        predict_all(
            games
                .iter()
                .zip(&targets)
                .map(|(game, target)| (game, target, JobKind::Record)),
            &HashMap::<FieldValue, LiveLease>::new(),
            Some(&index),
            &looks,
            None,
            None,
        )
    }

    /// The fake's containers as a Docker 20.10 to 26 listing shows them: a `dead` one as
    /// `removing`.
    async fn listed_as_docker_26_does(engine: &FakeEngine) -> Vec<ContainerInfo> {
        let mut listing = engine.list_all().await.unwrap();
        for info in &mut listing {
            if info.state == "dead" {
                info.state = "removing".into();
            }
        }
        listing
    }

    #[tokio::test]
    async fn a_container_listed_as_removing_and_inspected_as_dead_is_predicted_as_the_removal_fails(
    ) {
        let engine = FakeEngine::default();
        engine.add("dead0000", "dead", "dead", &[]);
        engine.add("exit0000", "exit", "exited", &[]);
        let listing = listed_as_docker_26_does(&engine).await;
        let outcomes = predicted(&engine, listing, &["dead", "exit"]).await;

        assert_eq!(outcomes[0].result, ResultKind::Failed);
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::DockerError));
        let message = outcomes[0].error_message.as_deref().unwrap();
        assert!(
            message.contains("dead after a removal that failed"),
            "{message}"
        );
        assert_eq!(outcomes[1].result, ResultKind::Removed);
        assert_eq!(
            engine.calls(),
            [Call::List, Call::Inspect("dead0000".into())],
            "only the container listed as removing is looked at again, by its full id"
        );
        // What a real run gets: Docker refuses the removal of a dead container again.
        let real = decide_removal(
            "dead0000",
            &engine.remove("dead0000", AnonymousVolumes::Keep).await,
        )
        .unwrap();
        assert_eq!(
            (real.result, real.error_code),
            (outcomes[0].result, outcomes[0].error_code)
        );
    }

    #[tokio::test]
    async fn a_container_listed_as_dead_is_looked_at_again_as_docker_28_lists_a_removal_in_progress(
    ) {
        // Docker 28 lists a container being removed as `dead` and inspects it as `removing`; one
        // whose removal failed it lists and inspects as `dead`.
        let engine = FakeEngine::default();
        engine.add("busy0000", "busy", "dead", &[]);
        engine.add("dead0000", "dead", "dead", &[]);
        engine.script_inspection(
            "busy0000",
            Inspection::Found(ContainerInfo {
                id: "busy0000".into(),
                names: vec!["busy".into()],
                state: "removing".into(),
                ..ContainerInfo::default()
            }),
        );
        let listing = engine.list_all().await.unwrap();
        let outcomes = predicted(&engine, listing, &["busy", "dead"]).await;
        let results: Vec<_> = outcomes
            .iter()
            .map(|outcome| (outcome.result, outcome.error_code))
            .collect();
        assert_eq!(
            results,
            [
                (ResultKind::Conflict, Some(ErrorCode::Conflict)),
                (ResultKind::Failed, Some(ErrorCode::DockerError)),
            ]
        );
        let mut looked_at: Vec<Call> = engine.calls().into_iter().skip(1).collect();
        looked_at.sort_by_key(|call| format!("{call:?}"));
        assert_eq!(
            looked_at,
            [
                Call::Inspect("busy0000".into()),
                Call::Inspect("dead0000".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_second_look_tells_a_removal_in_progress_a_finished_one_and_a_failed_look_apart() {
        let engine = FakeEngine::default();
        for name in ["busy", "gone", "mute"] {
            engine.add(&format!("{name}0000"), name, "removing", &[]);
        }
        engine.script_inspection("gone0000", Inspection::NotFound);
        engine.script_inspection(
            "mute0000",
            Inspection::Failed("no answer within 30s".into()),
        );
        let listing = engine.list_all().await.unwrap();
        let outcomes = predicted(&engine, listing, &["busy", "gone", "mute"]).await;
        let results: Vec<_> = outcomes
            .iter()
            .map(|outcome| (outcome.result, outcome.error_code))
            .collect();
        assert_eq!(
            results,
            [
                (ResultKind::Conflict, Some(ErrorCode::Conflict)),
                (ResultKind::ReplayNoOp, Some(ErrorCode::ReplayNoOp)),
                (ResultKind::Failed, Some(ErrorCode::DockerError)),
            ]
        );
        assert!(outcomes[2]
            .error_message
            .as_deref()
            .unwrap()
            .contains("no answer within 30s"));
        // A removal really in progress: Docker answers the second one 409, a conflict too.
        let in_progress = Removal::Refused {
            status: 409,
            message: "removal of container busy0000 is already in progress".into(),
        };
        assert_eq!(
            decide_removal("busy0000", &in_progress).unwrap().result,
            ResultKind::Conflict
        );
    }

    /// What a dry run says each of `ids` (predicted removed) would free, with both options, the
    /// listing of every container the engine holds.
    async fn looked(engine: &FakeEngine, ids: &[&str], disk: DiskOptions) -> Vec<Option<Freed>> {
        let index = ContainerIndex::new(engine.list_all().await.unwrap());
        let mut outcomes: Vec<Outcome> = ids.iter().map(|_| Outcome::removed()).collect();
        let going = ids
            .iter()
            .map(|id| (*id).to_owned())
            .zip(outcomes.iter_mut())
            .collect();
        look_at_what_goes(engine, disk, 2, going, Some(&index)).await;
        outcomes
            .into_iter()
            .map(|outcome| {
                assert_eq!(outcome.result, ResultKind::Removed, "never changed");
                outcome.freed.map(|freed| *freed)
            })
            .collect()
    }

    const BOTH: DiskOptions = DiskOptions {
        measure_space: true,
        remove_volumes: true,
    };

    #[tokio::test]
    async fn a_dry_run_measures_and_lists_the_anonymous_volumes_no_other_container_uses() {
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "a0000000",
            "a",
            "exited",
            &[("va", FakeVolume::Anonymous), ("vn", FakeVolume::Named)],
            100,
        );
        engine.add_with_volumes(
            "b0000000",
            "b",
            "exited",
            &[("vs", FakeVolume::Anonymous)],
            7,
        );
        engine.add_with_volumes(
            "c0000000",
            "c",
            "running",
            &[("vs", FakeVolume::Anonymous)],
            0,
        );
        let freed = looked(&engine, &["a0000000", "b0000000"], BOTH).await;
        assert_eq!(
            freed,
            [
                Some(Freed {
                    size_rw: Some(100),
                    volumes: Some(vec!["va".into()]),
                }),
                Some(Freed {
                    size_rw: Some(7),
                    volumes: Some(vec![]),
                }),
            ],
            "a named volume, and one another container uses, are never listed"
        );
        let mut calls = engine.calls();
        calls.sort_by_key(|call| format!("{call:?}"));
        assert_eq!(
            calls,
            [
                Call::InspectSized("a0000000".into()),
                Call::InspectSized("b0000000".into()),
                Call::List,
            ],
            "the test's listing, and one sized inspection each"
        );
    }

    #[tokio::test]
    async fn a_dry_run_lists_the_volumes_podman_marks_anonymous() {
        let engine = FakeEngine::default();
        engine.mark_volumes();
        engine.add_with_volumes(
            "a0000000",
            "a",
            "exited",
            &[("va", FakeVolume::Anonymous), ("vn", FakeVolume::Named)],
            100,
        );
        let volumes_only = DiskOptions {
            measure_space: false,
            remove_volumes: true,
        };
        let freed = looked(&engine, &["a0000000"], volumes_only).await;
        assert_eq!(
            freed,
            [Some(Freed {
                size_rw: None,
                volumes: Some(vec!["va".into()]),
            })]
        );
        assert!(engine.calls().contains(&Call::Anonymity));
        assert!(
            engine.calls().contains(&Call::Inspect("a0000000".into())),
            "no sized inspection without --measure-space"
        );
    }

    #[tokio::test]
    async fn what_a_dry_run_cannot_look_at_is_unknown_and_its_prediction_stands() {
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "a0000000",
            "a",
            "exited",
            &[("va", FakeVolume::Anonymous)],
            1,
        );
        engine.script_inspection(
            "a0000000",
            Inspection::Failed("no answer within 30s".into()),
        );
        let freed = looked(&engine, &["a0000000"], BOTH).await;
        assert_eq!(freed, [Some(Freed::default())]);
    }
}

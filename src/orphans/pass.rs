//! The orphan pass of a run: find the orphans (at the pass's or the plan's threshold), then
//! report them, predict what `remove` would do, or remove them through the record pass's
//! worker and writer.

use std::collections::{HashMap, HashSet};

use super::{game_named_by, games_named, inspect_unclaimed, unclaimed, Orphan};
use crate::cleanup::predict::{predict_all, SecondLooks};
use crate::cli::OrphanMode;
use crate::docker::DockerClient;
use crate::engine::{ContainerEngine, ContainerIndex, ContainerInfo};
use crate::job::{CurrentRecord, Job};
use crate::outcome::{LiveLease, Outcome};
use crate::plan::PlannedOrphan;
use crate::stop::Stop;
use crate::store::StateWriter;
use crate::value::FieldValue;
use crate::worker::{run_jobs, WorkerSettings};

/// An orphan found and what the pass did with it (`None` under `report`).
pub struct HandledOrphan {
    /// The container as found (as listed, for a planned orphan that is no longer one).
    pub orphan: Orphan,
    /// Its result.
    pub outcome: Option<Outcome>,
}

/// The orphan part of a pass.
pub struct OrphanPass<'a> {
    /// `report` or `remove`.
    pub mode: OrphanMode,
    /// The owner label.
    pub key: &'a str,
    /// The threshold the orphans must have stopped before.
    pub threshold_ms: i64,
    /// The orphans of the plan being applied, if one is.
    pub planned: Option<&'a [PlannedOrphan]>,
}

/// What an orphan is to this pass: one to act on, or a planned one that no longer qualifies.
pub enum Found {
    /// An orphan to act on.
    Orphan(Orphan),
    /// A planned orphan that no longer is one, and why.
    NoLonger(Orphan, String),
}

impl OrphanPass<'_> {
    /// The games whose records the search reads: those named by the labels of the listed
    /// containers that may be orphans.
    #[must_use]
    pub fn games_named(&self, listed: &[ContainerInfo]) -> Vec<FieldValue> {
        games_named(listed, self.key)
    }

    /// A real run's search, after its records: one listing filtered by the daemon on the owner
    /// label (the record pass removed containers since the pass began, so its listing is no
    /// longer the truth), one read of the named games' records through the writer, then
    /// [`OrphanPass::search`]. A read the state file refuses is also the pass's state failure,
    /// so that a lock held past the wait ends the run with its status (75), as it does anywhere
    /// else in the pass.
    pub async fn find<E: ContainerEngine>(
        &self,
        engine: &E,
        writer: &StateWriter,
        concurrency: usize,
        stop: &Stop,
    ) -> Result<Vec<Found>, String> {
        let listed = engine.list_labelled(self.key).await.map_err(|reason| {
            format!("cannot list the containers labelled {}: {reason}", self.key)
        })?;
        let records = match writer.records_of(self.games_named(&listed)).await {
            Ok(records) => records,
            Err(error) => {
                let reason = error.to_string();
                stop.state_failed(error);
                return Err(reason);
            }
        };
        self.search(&listed, &records, engine, concurrency).await
    }

    /// The search proper, from a listing (any containers: only those with the owner label are
    /// looked at) and the records of the games it names: an inspection of each container no
    /// record claims, `concurrency` at a time. Under a plan, only the planned containers are
    /// inspected, and exactly the planned orphans are returned, each still one or reported as
    /// a conflict. An inspection that fails fails the search.
    pub async fn search<E: ContainerEngine>(
        &self,
        listed: &[ContainerInfo],
        records: &HashMap<FieldValue, CurrentRecord>,
        engine: &E,
        concurrency: usize,
    ) -> Result<Vec<Found>, String> {
        let mut unclaimed = unclaimed(listed, self.key, records, self.threshold_ms);
        if let Some(planned) = self.planned {
            // Only a planned container can be acted on: no other is worth an inspection.
            let planned: HashSet<&str> = planned
                .iter()
                .map(|entry| entry.container_id.as_str())
                .collect();
            unclaimed.retain(|info| planned.contains(info.id.as_str()));
        }
        let found =
            inspect_unclaimed(engine, &unclaimed, self.key, self.threshold_ms, concurrency).await?;
        for orphan in &found {
            tracing::info!(
                container_id = %orphan.info.id,
                game_id = %orphan.label,
                state = %orphan.info.state,
                "orphan found"
            );
        }
        let Some(planned) = self.planned else {
            return Ok(found.into_iter().map(Found::Orphan).collect());
        };
        Ok(planned
            .iter()
            .map(|entry| {
                let still = found
                    .iter()
                    .find(|o| o.info.id == entry.container_id && o.label == entry.game_id);
                if let Some(orphan) = still {
                    return Found::Orphan(orphan.clone());
                }
                let listed = listed.iter().find(|info| info.id == entry.container_id);
                let info = listed.cloned().unwrap_or_else(|| ContainerInfo {
                    id: entry.container_id.clone(),
                    state: "gone".to_owned(),
                    ..ContainerInfo::default()
                });
                let orphan = Orphan {
                    info,
                    label: entry.game_id.clone(),
                    game: game_named_by(&entry.game_id),
                };
                Found::NoLonger(
                    orphan,
                    "no longer an orphan at the plan's threshold: it is gone, runs, has another \
                     label, is younger, or its record claims it"
                        .to_owned(),
                )
            })
            .collect())
    }

    /// The dry run: what `remove` would do with each orphan now; nothing under `report`.
    pub fn predict(
        &self,
        found: Vec<Found>,
        leases: &HashMap<FieldValue, LiveLease>,
        max_removals: Option<usize>,
    ) -> Vec<HandledOrphan> {
        if self.mode == OrphanMode::Report {
            return Self::reported(found);
        }
        let work = Work::of(&found);
        let predicted = predict_all(
            work.jobs
                .iter()
                .map(|job| (&job.game, &job.target, job.kind)),
            leases,
            Some(&work.containers),
            // The orphans' states are their inspections' already.
            &SecondLooks::new(),
            Some(self.key),
            max_removals,
        );
        work.merge(found, predicted)
    }

    /// The real run: removes each orphan under its game's lease (the record pass's worker and
    /// writer), the first `max_removals` of them; nothing under `report`.
    pub async fn remove(
        &self,
        found: Vec<Found>,
        docker: &DockerClient,
        writer: &StateWriter,
        settings: &WorkerSettings,
        max_removals: Option<usize>,
        stop: &Stop,
    ) -> Vec<HandledOrphan> {
        if self.mode == OrphanMode::Report {
            return Self::reported(found);
        }
        let work = Work::of(&found);
        let settings = WorkerSettings {
            owner_label: Some(self.key.to_owned()),
            ..settings.clone()
        };
        let results = run_jobs(
            work.jobs.iter().cloned(),
            max_removals,
            docker,
            writer,
            Some(&work.containers),
            &settings,
            stop,
        )
        .await;
        work.merge(found, results)
    }

    fn reported(found: Vec<Found>) -> Vec<HandledOrphan> {
        found
            .into_iter()
            .map(|item| match item {
                Found::Orphan(orphan) | Found::NoLonger(orphan, _) => HandledOrphan {
                    orphan,
                    outcome: None,
                },
            })
            .collect()
    }
}

/// The jobs of what was found, with the places they came from, the outcomes decided without a
/// job, and the containers the worker checks the owner label against.
struct Work {
    jobs: Vec<Job>,
    places: Vec<usize>,
    decided: Vec<Option<Outcome>>,
    containers: ContainerIndex,
}

impl Work {
    fn of(found: &[Found]) -> Self {
        let mut work = Self {
            jobs: Vec::new(),
            places: Vec::new(),
            decided: Vec::with_capacity(found.len()),
            containers: ContainerIndex::default(),
        };
        let mut listed = Vec::new();
        for (place, item) in found.iter().enumerate() {
            match item {
                Found::Orphan(orphan) => match orphan.job() {
                    Ok(job) => {
                        work.jobs.push(job);
                        work.places.push(place);
                        work.decided.push(None);
                        listed.push(orphan.info.clone());
                    }
                    Err(outcome) => work.decided.push(Some(outcome)),
                },
                Found::NoLonger(_, reason) => {
                    work.decided.push(Some(Outcome::conflict(reason.clone())));
                }
            }
        }
        work.containers = ContainerIndex::new(listed);
        work
    }

    /// Puts the jobs' outcomes back in the places of what was found.
    fn merge(mut self, found: Vec<Found>, outcomes: Vec<Outcome>) -> Vec<HandledOrphan> {
        for (place, outcome) in self.places.iter().zip(outcomes) {
            self.decided[*place] = Some(outcome);
        }
        found
            .into_iter()
            .zip(self.decided)
            .map(|(item, outcome)| {
                let orphan = match item {
                    Found::Orphan(orphan) | Found::NoLonger(orphan, _) => orphan,
                };
                HandledOrphan { orphan, outcome }
            })
            .collect()
    }
}

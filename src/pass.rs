//! The record pass: the jobs of the expired stopped records, and the dry run's prediction of
//! what a real run would do with jobs.

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::candidate::{Candidate, Target};
use crate::engine::ContainerIndex;
use crate::job::Job;
use crate::outcome::{predict, LiveLease, Outcome};
use crate::value::FieldValue;
use crate::worker::{acted_on, over_limit};

/// The jobs of the candidates selected at `threshold_ms`, in the candidates' order.
#[must_use]
pub fn record_jobs(candidates: &[Candidate], threshold_ms: i64) -> Vec<Job> {
    candidates
        .iter()
        .map(|candidate| Job::for_record(candidate, threshold_ms))
        .collect()
}

/// Predicts the result a real run would give each job now, for `--dry-run`: from the leases in
/// force and one listing of the daemon's containers.
#[must_use]
pub fn predict_all<S: BuildHasher>(
    jobs: &[Job],
    leases: &HashMap<FieldValue, LiveLease, S>,
    containers: Option<&ContainerIndex>,
    owner_label: Option<&str>,
    max_removals: Option<usize>,
) -> Vec<Outcome> {
    let acted = acted_on(jobs.len(), max_removals);
    jobs.iter()
        .enumerate()
        .map(|(position, job)| {
            if position >= acted {
                return over_limit(max_removals);
            }
            let lookup = match (&job.target, containers) {
                (Target::Container(reference), Some(index)) => {
                    Some(index.lookup(reference.as_str()))
                }
                _ => None,
            };
            job.kind
                .result_of(predict(job, leases.get(&job.game), lookup, owner_label))
        })
        .collect()
}

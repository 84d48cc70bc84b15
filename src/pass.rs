//! The record pass: the jobs of the expired stopped records, and the dry run's prediction of
//! what a real run would do with jobs.

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::candidate::{Candidate, Target};
use crate::engine::ContainerIndex;
use crate::job::{Job, JobKind};
use crate::outcome::{predict, LiveLease, Outcome};
use crate::value::FieldValue;
use crate::worker::{acted_on, over_limit};

/// The jobs of the candidates selected at `threshold_ms`, in the candidates' order, each made
/// when it is taken.
pub fn record_jobs(
    candidates: &[Candidate],
    threshold_ms: i64,
) -> impl ExactSizeIterator<Item = Job> + '_ {
    candidates
        .iter()
        .map(move |candidate| Job::for_record(candidate, threshold_ms))
}

/// Predicts the result a real run would give each job now, for `--dry-run`: from the leases in
/// force and one listing of the daemon's containers. A job is given by its game, its target and
/// its kind, all a prediction needs, so that a dry run makes no job for a record.
#[must_use]
pub fn predict_all<'a, S, I>(
    jobs: I,
    leases: &HashMap<FieldValue, LiveLease, S>,
    containers: Option<&ContainerIndex>,
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
            kind.result_of(predict(game, target, leases.get(game), lookup, owner_label))
        })
        .collect()
}

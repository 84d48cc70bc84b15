//! The real run: the records' jobs, then the orphans', through one worker and one writer.

use super::{cut_short, OrphanResults, Pass, RunError};
use crate::candidate::Candidate;
use crate::engine::ContainerIndex;
use crate::job::Job;
use crate::outcome::Outcome;
use crate::stop::Stop;
use crate::store::Store;
use crate::worker;

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

impl Pass<'_> {
    /// The real run: the records' jobs, then the orphans', through one worker and one writer.
    /// `containers` is the listing of the start of the pass, for `--owner-label`.
    pub(super) async fn act(
        &self,
        store: Store,
        candidates: &[Candidate],
        containers: Option<&ContainerIndex>,
        stop: &Stop,
    ) -> Result<(Vec<Outcome>, OrphanResults), RunError> {
        let writer = store.into_writer(self.config.op_source.clone())?;
        let outcomes = worker::run_jobs(
            record_jobs(candidates, self.time.threshold_ms),
            self.config.max_removals,
            self.docker,
            &writer,
            containers,
            &self.settings,
            stop,
        )
        .await;
        let orphans = match (self.orphans, stop.reason()) {
            (None, _) => None,
            // A signal or a failed state file stops the pass from starting anything more,
            // the orphans' listing and inspections included.
            (Some(_), Some(reason)) => Some(Err(reason)),
            (Some(orphan_pass), None) => Some(
                match cut_short(
                    orphan_pass
                        .find(self.docker, &writer, self.settings.concurrency, stop)
                        .await,
                    stop,
                ) {
                    Ok(found) => Ok(orphan_pass
                        .remove(
                            found,
                            self.docker,
                            &writer,
                            &self.settings,
                            self.config.max_removals,
                            stop,
                        )
                        .await),
                    Err(error) => Err(error),
                },
            ),
        };
        writer.close();
        Ok((outcomes, orphans))
    }
}

//! One pass over the candidates: the per-record protocol of contract §2 for a real run, and the
//! prediction of it for a dry run.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future;
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;

use crate::candidate::{Candidate, Target};
use crate::engine::{ContainerEngine, ContainerIndex, Inspection, Lookup};
use crate::outcome::{
    check_owner, decide_after_timeout, decide_removal, lease_conflict, predict, ErrorCode,
    LiveLease, Outcome,
};
use crate::store::{Claim, ClaimResult, PendingSettlement, Settlement, StateWriter, StoreError};
use crate::summary::epoch_ms;

/// The signal that interrupted a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: exit 130.
    Interrupt,
    /// SIGTERM: exit 143.
    Terminate,
}

impl Signal {
    /// The conventional exit status, 128 plus the signal number.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    /// The signal's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Why a pass stops starting records before it reached them all.
#[derive(Debug, Default)]
pub struct Stop {
    signal: AtomicU8,
    state_failure: Mutex<Option<StoreError>>,
}

impl Stop {
    /// A shared flag, set by a signal listener or by a state-file failure.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a signal; the first one wins.
    pub fn signal(&self, signal: Signal) {
        let code = signal.exit_code();
        let _ = self
            .signal
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal received, if any.
    #[must_use]
    pub fn signalled(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            130 => Some(Signal::Interrupt),
            143 => Some(Signal::Terminate),
            _ => None,
        }
    }

    fn state_failed(&self, error: StoreError) {
        let mut slot = self
            .state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
    }

    /// The first state-file failure of the pass, if any.
    #[must_use]
    pub fn take_state_failure(&self) -> Option<StoreError> {
        self.state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Why records are no longer started, if they are not.
    fn reason(&self) -> Option<String> {
        if let Some(signal) = self.signalled() {
            return Some(format!(
                "interrupted by {} before it was reached",
                signal.name()
            ));
        }
        let slot = self
            .state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .map(|error| format!("not reached: the pass stopped because {error}"))
    }
}

/// What the real run needs besides the candidates.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// This run's lease holder name, `rt-cleanup/<host>/<pid>`.
    pub holder: String,
    /// The lifetime of a lease.
    pub lease_ttl: Duration,
    /// `--owner-label`.
    pub owner_label: Option<String>,
    /// The per-call Docker timeout, for messages.
    pub docker_timeout: Duration,
    /// Records worked on at once.
    pub concurrency: usize,
}

/// The holder name of this process.
#[must_use]
pub fn holder_name() -> String {
    format!(
        "rt-cleanup/{}/{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// How many candidates are acted on; the rest are deferred.
#[must_use]
pub fn acted_on(candidates: usize, max_removals: Option<usize>) -> usize {
    max_removals.map_or(candidates, |max| max.min(candidates))
}

fn over_limit(max_removals: Option<usize>) -> Outcome {
    Outcome::deferred(format!(
        "over --max-removals {}; left for a later run",
        max_removals.unwrap_or_default()
    ))
}

/// Predicts the result a real run would give each candidate now, for `--dry-run`.
#[must_use]
pub fn predict_all<S: BuildHasher>(
    candidates: &[Candidate],
    leases: &HashMap<String, LiveLease, S>,
    containers: Option<&ContainerIndex>,
    owner_label: Option<&str>,
    max_removals: Option<usize>,
) -> Vec<Outcome> {
    let acted = acted_on(candidates.len(), max_removals);
    candidates
        .iter()
        .enumerate()
        .map(|(position, candidate)| {
            if position >= acted {
                return over_limit(max_removals);
            }
            let lookup = match (&candidate.target, containers) {
                (Target::Container(reference), Some(index)) => {
                    Some(index.lookup(reference.as_str()))
                }
                _ => None,
            };
            predict(
                candidate,
                leases.get(&candidate.game_id),
                lookup,
                owner_label,
            )
        })
        .collect()
}

/// Runs the per-record protocol over the candidates, `settings.concurrency` at a time, and
/// returns their outcomes in the candidates' order.
///
/// A record holds one of the `concurrency` slots only for its lease claim and its Docker calls.
/// Its result is handed to the state writer without waiting for the commit, so the slot goes to
/// the next record at once and that record's claim is committed together with the result (the
/// writer groups whatever is waiting into one transaction). A second task waits for the written
/// results in the order they were queued, logs each one, and stops the pass at the first
/// state-file failure, as the slots would have done themselves.
pub async fn remove_expired<E: ContainerEngine>(
    candidates: &[Candidate],
    max_removals: Option<usize>,
    engine: &E,
    writer: &StateWriter,
    containers: Option<&ContainerIndex>,
    settings: &PassSettings,
    stop: &Stop,
) -> Vec<Outcome> {
    let acted = acted_on(candidates.len(), max_removals);
    let worker = Worker {
        engine,
        writer,
        containers,
        settings,
        stop,
    };
    let worker = &worker;
    let (queued, mut to_confirm) = mpsc::unbounded_channel::<(usize, PendingSettlement)>();
    let slots = async move {
        let finished: Vec<(usize, Outcome)> = stream::iter(candidates.iter().enumerate())
            .map(|(position, candidate)| {
                let queued = &queued;
                async move {
                    if position >= acted {
                        return Some((position, over_limit(max_removals)));
                    }
                    match worker.process(candidate).await {
                        Step::Done(outcome) => Some((position, outcome)),
                        Step::Queued(pending) => {
                            // The receiver lives until this task ends, so this cannot fail.
                            let _ = queued.send((position, pending));
                            None
                        }
                    }
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .filter_map(future::ready)
            .collect()
            .await;
        // Closing the channel lets the confirmations end once the last result is written.
        drop(queued);
        finished
    };
    let confirmations = async {
        let mut confirmed = Vec::new();
        while let Some((position, pending)) = to_confirm.recv().await {
            let outcome = worker.confirm(&candidates[position], pending).await;
            confirmed.push((position, outcome));
        }
        confirmed
    };
    let (finished, confirmed) = future::join(slots, confirmations).await;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; candidates.len()];
    for (position, outcome) in finished.into_iter().chain(confirmed) {
        outcomes[position] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            // Every position is either finished in its slot or queued and confirmed.
            outcome.unwrap_or_else(|| Outcome::deferred("not reached"))
        })
        .collect()
}

/// Where a record's slot left it.
enum Step {
    /// Finished without a result to write (a deferral).
    Done(Outcome),
    /// Its result is queued for the state writer, not yet known to be written.
    Queued(PendingSettlement),
}

struct Worker<'a, E> {
    engine: &'a E,
    writer: &'a StateWriter,
    containers: Option<&'a ContainerIndex>,
    settings: &'a PassSettings,
    stop: &'a Stop,
}

impl<E: ContainerEngine> Worker<'_, E> {
    async fn process(&self, candidate: &Candidate) -> Step {
        if let Some(reason) = self.stop.reason() {
            return Step::Done(Outcome::deferred(reason));
        }
        let started_at_ms = epoch_ms(SystemTime::now());
        let reference = match &candidate.target {
            Target::Invalid(reason) => {
                // Never sent to Docker, and nothing to take a lease for: only the log row.
                let outcome = Outcome::failed(ErrorCode::InvalidRecord, reason.clone());
                return self.settle(candidate, None, outcome, started_at_ms);
            }
            Target::NoContainer => None,
            Target::Container(reference) => Some(reference.as_str()),
        };
        let claim = Claim {
            game_id: candidate.game_id.clone(),
            holder: self.settings.holder.clone(),
            lease_ttl: self.settings.lease_ttl,
            selected: candidate.row.clone(),
        };
        match self.writer.claim(claim).await {
            Ok(ClaimResult::Claimed) => {}
            Ok(ClaimResult::HeldBy(lease)) => {
                return self.settle(candidate, None, lease_conflict(&lease), started_at_ms);
            }
            Ok(ClaimResult::Changed(change)) => {
                let outcome = Outcome::conflict(change);
                return self.settle(candidate, None, outcome, started_at_ms);
            }
            Err(error) => {
                // Nothing was done for this record: it is simply not reached.
                let outcome = Outcome::deferred(format!("not reached: {error}"));
                self.stop.state_failed(error);
                return Step::Done(outcome);
            }
        }
        let outcome = match reference {
            Some(reference) => self.remove_container(reference, &candidate.game_id).await,
            None => Outcome::replay_no_op("the record names no container"),
        };
        let holder = Some(self.settings.holder.clone());
        self.settle(candidate, holder, outcome, started_at_ms)
    }

    /// Removes the container under the lease: the owner check (from the listing taken at the
    /// start of the pass, or an inspection for a container it did not show), then the removal by
    /// full id, then, if Docker did not answer in time, an inspection to see whether it is gone.
    async fn remove_container(&self, reference: &str, game_id: &str) -> Outcome {
        let mut target = reference.to_owned();
        if let Some(key) = &self.settings.owner_label {
            let listed = self
                .containers
                .map_or(Lookup::Missing, |index| index.lookup(reference));
            let info = match listed {
                Lookup::Found(info) => info.clone(),
                Lookup::Ambiguous => {
                    return Outcome::failed(
                        ErrorCode::DockerError,
                        format!("container reference {reference} is a prefix of several ids"),
                    );
                }
                Lookup::Missing => match self.engine.inspect(reference).await {
                    Inspection::Found(info) => info,
                    Inspection::NotFound => {
                        return Outcome::replay_no_op(format!(
                            "container {reference} was already gone (Docker answered 404)"
                        ));
                    }
                    Inspection::Failed(message) => {
                        return Outcome::failed(ErrorCode::DockerError, message);
                    }
                },
            };
            if let Err(mismatch) = check_owner(&info, key, game_id) {
                return mismatch;
            }
            // Removing by the full id of the container whose label was checked means a container
            // created meanwhile under the same name can never be the one removed.
            target = info.id;
        }
        let removal = self.engine.remove(&target).await;
        if let Some(outcome) = decide_removal(&target, &removal) {
            outcome
        } else {
            let inspection = self.engine.inspect(&target).await;
            decide_after_timeout(&target, self.settings.docker_timeout, &inspection)
        }
    }

    /// Queues the record's result for the state writer without waiting for the commit.
    fn settle(
        &self,
        candidate: &Candidate,
        holder: Option<String>,
        outcome: Outcome,
        started_at_ms: i64,
    ) -> Step {
        let settlement = Settlement {
            game_id: candidate.game_id.clone(),
            container_id: candidate.container_text(),
            selected: candidate.row.clone(),
            holder,
            outcome,
            started_at_ms,
        };
        Step::Queued(self.writer.settle_later(settlement))
    }

    /// Waits until a queued result is written, and logs the result as written.
    async fn confirm(&self, candidate: &Candidate, pending: PendingSettlement) -> Outcome {
        let outcome = match pending.written().await {
            Ok(outcome) => outcome,
            Err(error) => {
                let outcome = Outcome::failed(
                    ErrorCode::StateWriteFailed,
                    format!("{error}; the record stays as it was and the next run replays it"),
                );
                self.stop.state_failed(error);
                outcome
            }
        };
        // Each record's result is logged once, with the fields a log search needs.
        tracing::info!(
            game_id = %candidate.game_id,
            container_id = candidate.container_text().as_deref().unwrap_or("-"),
            result = %outcome.result,
            error_code = outcome.error_code.map_or("-", ErrorCode::as_str),
            error_message = outcome.error_message.as_deref().unwrap_or(""),
            "record handled"
        );
        outcome
    }
}

//! The worker of a real run: it runs removal jobs under their games' leases, a few at a time,
//! and hands each result to the state writer.
//!
//! The same worker runs the jobs of the record pass and of the orphan pass; what differs between
//! them is in the job (its guard and its `op_kind`), not here.

use std::cell::{OnceCell, RefCell};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

use crate::candidate::Target;
use crate::config::DiskOptions;
use crate::engine::{
    AnonymousVolumes, ContainerEngine, ContainerIndex, ContainerInfo, Inspection, Lookup, Removal,
    VolumeLookup,
};
use crate::job::{Job, JobKind};
use crate::logging::{event_at, level_of, JOURNAL_ONLY, STDERR_ONLY};
use crate::outcome::{
    check_owner, decide_after_unanswered, decide_removal, lease_conflict, without_force_advice,
    ErrorCode, Outcome,
};
use crate::progress::Progress;
use crate::space::Freed;
use crate::stop::Stop;
use crate::store::{
    Claim, ClaimAndSettle, ClaimResult, PendingSettlement, Settlement, StateWriter, StoreError,
};
use crate::time::{format_epoch_ms, now_ms};
use crate::value::{Escaped, FieldValue};

/// What the worker needs besides its jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This run's lease holder name, `rt-cleanup/<host>/<pid>/<random>`.
    pub holder: String,
    /// The lifetime of a lease.
    pub lease_ttl: Duration,
    /// `--owner-label`.
    pub owner_label: Option<String>,
    /// The per-call Docker timeout, for messages.
    pub docker_timeout: Duration,
    /// `--lock-wait`, which also sets how long a result the state file refused is tried again
    /// ([`RESCUE_LOCK_WAITS`]).
    pub lock_wait: Duration,
    /// Jobs worked on at once.
    pub concurrency: usize,
    /// Where the jobs' progress is reported (a terminal's progress line, or nowhere).
    pub progress: Arc<dyn Progress>,
    /// `--measure-space` and `--remove-volumes` (the plan's, under a plan).
    pub disk: DiskOptions,
}

/// The lease holder name of this run, `rt-cleanup/<host>/<pid>/<random>`: unique to the run,
/// since two runs in containers that share a hostname can share a pid (1) too, and a holder
/// name is what the compare-and-set and the release of a lease trust. The random part is 32
/// bits from the OS's random source; where that cannot be read, the clock's nanoseconds.
#[must_use]
pub fn holder_name() -> String {
    let random = getrandom::u32().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    });
    holder_name_of(
        gethostname::gethostname().as_encoded_bytes(),
        std::process::id(),
        random,
    )
}

/// The lease holder name of this process's run, made once with [`holder_name`]: the pass's
/// leases carry it, and so does every journal entry of the run (`HOLDER`).
pub fn run_holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(holder_name)
}

/// The most bytes of the hostname kept in a holder name (Linux's own limit).
const HOST_NAME_MAX: usize = 64;

/// A holder name from its parts. The hostname is outside data: every byte but letters, digits,
/// `-`, `.` and `_` is written `%XX`, so that it can hold no `/` of the name's own, no control
/// character and no byte that is not UTF-8; an empty one is `unknown`.
fn holder_name_of(host: &[u8], pid: u32, random: u32) -> String {
    let mut shown = String::with_capacity(host.len().min(HOST_NAME_MAX));
    for byte in host.iter().take(HOST_NAME_MAX) {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_') {
            shown.push(char::from(*byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(shown, "%{byte:02X}");
        }
    }
    if shown.is_empty() {
        shown.push_str("unknown");
    }
    format!("rt-cleanup/{shown}/{pid}/{random:08x}")
}

#[cfg(test)]
mod holder_tests {
    use super::*;

    #[test]
    fn a_holder_name_is_readable_and_unique_to_the_run() {
        assert_eq!(
            holder_name_of(b"game-host-1.example", 1, 0x00c0_ffee),
            "rt-cleanup/game-host-1.example/1/00c0ffee"
        );
        let first = holder_name();
        let second = holder_name();
        assert_ne!(first, second, "two runs of one process id differ");
        let prefix = format!("/{}/", std::process::id());
        assert!(first.contains(&prefix), "{first}");
        let random = first.rsplit('/').next().unwrap();
        assert_eq!(random.len(), 8, "{first}");
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    }

    #[test]
    fn a_hostname_cannot_forge_a_part_of_the_name_or_a_line() {
        assert_eq!(
            holder_name_of(b"evil/1/x\nERROR \xff", 7, 1),
            "rt-cleanup/evil%2F1%2Fx%0AERROR%20%FF/7/00000001"
        );
        assert_eq!(holder_name_of(b"", 7, 1), "rt-cleanup/unknown/7/00000001");
        let long = holder_name_of(&[b'h'; 300], 7, 1);
        assert_eq!(long.len(), "rt-cleanup//7/00000001".len() + HOST_NAME_MAX);
    }
}

/// How many of `jobs` are acted on under `--max-removals`; the rest are deferred.
#[must_use]
pub fn acted_on(jobs: usize, max_removals: Option<usize>) -> usize {
    max_removals.map_or(jobs, |max| max.min(jobs))
}

/// The outcome of a job over `--max-removals`.
#[must_use]
pub fn over_limit(max_removals: Option<usize>) -> Outcome {
    Outcome::deferred(format!(
        "over --max-removals {}; left for a later run",
        max_removals.unwrap_or_default()
    ))
}

/// Where the state file refuses the result of a job whose container was handled, the result is
/// tried again until this many `--lock-wait`s after the pass's first such refusal: a lock held a
/// little longer than the wait is outlasted, and the lease is not left to block the game for the
/// whole `--lease-ttl`. No try starts later than [`TRY_LOCK_WAITS`] lock waits before the lease
/// expires, so that every try ends while the lease is still this run's.
pub const RESCUE_LOCK_WAITS: u32 = 2;

/// The longest one try of a result can wait for locks: behind another transaction (its lock and
/// its commit), then for its own lock.
const TRY_LOCK_WAITS: u32 = 3;

/// The first pause between tries of a result refused by other than a lock (which comes back at
/// once); it doubles up to [`RESCUE_PAUSE_MAX`].
const RESCUE_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between tries of a refused result.
const RESCUE_PAUSE_MAX: Duration = Duration::from_secs(1);

/// The most results of jobs without a Docker call that may be queued for the state writer and
/// not yet known to be written: enough to keep the writer's transactions full (64 requests
/// each) back to back, few enough that a backlog of any size needs the same memory.
const MAX_UNCONFIRMED: usize = 256;

/// Runs the jobs, `settings.concurrency` at a time, the first `max_removals` of them only, and
/// returns their outcomes in the jobs' order. Each job is taken from `jobs` only when it is
/// started, so that a pass never holds every job at once.
///
/// A job with Docker work holds one of the `concurrency` slots only for its lease claim and its
/// Docker calls. Its result is handed to the state writer without waiting for the commit, so the
/// slot goes to the next job at once and that job's claim is committed together with the result
/// (the writer groups whatever is waiting into one transaction).
///
/// A job without Docker work (a record without a container, an unusable row) is claimed and
/// settled in one request to the writer and takes no slot: such jobs are queued back to back,
/// at most [`MAX_UNCONFIRMED`] of them unconfirmed at a time, and the writer applies them 64 to
/// a transaction. Where such a request fails, nothing of it was written: its record is
/// `deferred`, and the pass stops starting jobs.
///
/// A second task waits for the written results in the order they were queued, logs each one,
/// and stops the pass at the first state-file failure.
pub async fn run_jobs<E, I>(
    jobs: I,
    max_removals: Option<usize>,
    engine: &E,
    writer: &StateWriter,
    containers: Option<&ContainerIndex>,
    settings: &WorkerSettings,
    stop: &Stop,
) -> Vec<Outcome>
where
    E: ContainerEngine,
    I: IntoIterator<Item = Job>,
    I::IntoIter: ExactSizeIterator,
{
    let jobs = jobs.into_iter();
    let total = jobs.len();
    let acted = acted_on(total, max_removals);
    settings.progress.jobs_added(acted);
    let worker = Worker {
        engine,
        writer,
        containers,
        settings,
        stop,
        unconfirmed: Semaphore::new(MAX_UNCONFIRMED),
        rescue_until: OnceCell::new(),
    };
    let worker = &worker;
    // Both futures below run in this one task and never hold the borrow across an await.
    let outcomes = RefCell::new(vec![None; total]);
    let outcomes = &outcomes;
    let (queued, mut to_confirm) = mpsc::unbounded_channel::<Queued<'_>>();
    let slots = async move {
        stream::iter(jobs.enumerate())
            .map(|(position, job)| {
                let queued = &queued;
                async move {
                    if position >= acted {
                        outcomes.borrow_mut()[position] = Some(over_limit(max_removals));
                        return;
                    }
                    match worker.process(job).await {
                        Step::Done(outcome) => {
                            settings.progress.job_done(outcome.result);
                            outcomes.borrow_mut()[position] = Some(outcome);
                        }
                        Step::Queued(pending) => {
                            // The receiver lives until this task ends, so this cannot fail.
                            let _ = queued.send(Queued {
                                position,
                                ..pending
                            });
                        }
                    }
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .for_each(|()| future::ready(()))
            .await;
        // Closing the channel lets the confirmations end once the last result is written.
        drop(queued);
    };
    let confirmations = async {
        while let Some(queued) = to_confirm.recv().await {
            let (position, outcome) = worker.confirm(queued).await;
            settings.progress.job_done(outcome.result);
            outcomes.borrow_mut()[position] = Some(outcome);
        }
    };
    future::join(slots, confirmations).await;
    outcomes
        .take()
        .into_iter()
        .map(|outcome| {
            // Every position is either finished in its slot or queued and confirmed.
            outcome.unwrap_or_else(|| Outcome::deferred("not reached"))
        })
        .collect()
}

/// Where a job's slot left it.
// A step lives only from a job's slot to the channel; boxing the large variant would cost an
// allocation per job.
#[allow(clippy::large_enum_variant)]
enum Step<'a> {
    /// Finished without a result to write (a deferral).
    Done(Outcome),
    /// Its result is queued for the state writer, not yet known to be written.
    Queued(Queued<'a>),
}

/// A job whose result is queued for the state writer.
struct Queued<'a> {
    /// The job's place among the jobs.
    position: usize,
    job: Job,
    pending: PendingSettlement,
    /// For a job that holds a lease: what to try again where the state file refuses the result.
    /// Without one (a claim queued with its result, or a conflict), a refused request leaves the
    /// record as it was and `deferred`: nothing of the job was written or done.
    rescue: Option<Rescue>,
    /// The job's place among the unconfirmed requests without Docker work, if it is one.
    _permit: Option<SemaphorePermit<'a>>,
}

/// A settlement to try again, and when its lease expires.
struct Rescue {
    settlement: Settlement,
    lease_until_ms: i64,
}

/// This run's lease on a game, as the claim took it.
struct Lease {
    holder: String,
    expires_at: i64,
}

struct Worker<'a, E> {
    engine: &'a E,
    writer: &'a StateWriter,
    containers: Option<&'a ContainerIndex>,
    settings: &'a WorkerSettings,
    stop: &'a Stop,
    unconfirmed: Semaphore,
    /// Until when results the state file refused are tried again: set at the first refusal.
    rescue_until: OnceCell<Instant>,
}

impl<E: ContainerEngine> Worker<'_, E> {
    async fn process(&self, job: Job) -> Step<'_> {
        if let Some(reason) = self.stop.reason() {
            return Step::Done(Outcome::deferred(reason));
        }
        let reference = match &job.target {
            // Never sent to Docker: the row is re-read under the lease and is still unusable.
            Target::Invalid(reason) => {
                let outcome = Outcome::failed(ErrorCode::InvalidRecord, reason.clone());
                // A NULL game can hold no lease and have no log row (game_id is NOT NULL in
                // both): the result is only reported, as the dry run predicts it.
                if job.game == FieldValue::Null {
                    return Step::Done(outcome);
                }
                return self.claim_and_settle(job, outcome).await;
            }
            Target::NoContainer => {
                let outcome = Outcome::replay_no_op("the record names no container");
                return self.claim_and_settle(job, outcome).await;
            }
            Target::Container(reference) => reference.clone(),
        };
        let started_at_ms = now_ms();
        let claim = Claim {
            game: job.game.clone(),
            holder: self.settings.holder.clone(),
            lease_ttl: self.settings.lease_ttl,
            guard: job.guard.clone(),
        };
        let expires_at = match self.writer.claim(claim).await {
            Ok(ClaimResult::Claimed { expires_at }) => expires_at,
            Ok(ClaimResult::HeldBy(lease)) => {
                return self.settle(job, None, lease_conflict(&lease), started_at_ms);
            }
            Ok(ClaimResult::Changed(change)) => {
                return self.settle(job, None, Outcome::conflict(change), started_at_ms);
            }
            Err(error) => return Step::Done(self.not_reached(error)),
        };
        let outcome = job.kind.result_of(
            self.remove_container(reference.as_str(), &job, expires_at)
                .await,
        );
        let lease = Lease {
            holder: self.settings.holder.clone(),
            expires_at,
        };
        self.settle(job, Some(lease), outcome, started_at_ms)
    }

    /// The outcome of a job whose claim the state file did not take: nothing was done for it.
    /// A signal that ended the claim's lock wait is no failure of the state file.
    fn not_reached(&self, error: StoreError) -> Outcome {
        if let (Some(_), Some(reason)) = (self.stop.signalled(), self.stop.reason()) {
            return Outcome::deferred(reason);
        }
        let outcome = Outcome::deferred(format!("not reached: {error}"));
        self.stop.state_failed(error);
        outcome
    }

    /// Queues the claim and the settlement of a job without Docker work as one request, once
    /// fewer than [`MAX_UNCONFIRMED`] such requests wait for their confirmation.
    async fn claim_and_settle(&self, job: Job, outcome: Outcome) -> Step<'_> {
        // The semaphore is never closed; were it, the job would simply go unthrottled.
        let permit = self.unconfirmed.acquire().await.ok();
        let request = ClaimAndSettle {
            claim: Claim {
                game: job.game.clone(),
                holder: self.settings.holder.clone(),
                lease_ttl: self.settings.lease_ttl,
                guard: job.guard.clone(),
            },
            kind: job.kind,
            logged_container: job.logged_container.clone(),
            outcome,
            started_at_ms: now_ms(),
        };
        Step::Queued(Queued {
            // Set where the step is queued, which knows the job's place.
            position: 0,
            pending: self.writer.claim_and_settle_later(request),
            job,
            rescue: None,
            _permit: permit,
        })
    }

    /// Removes the container under the lease, which expires at `lease_until_ms`: the owner
    /// check (from the listing taken at the start of the pass, or an inspection for a container
    /// it did not show), with `--measure-space` or `--remove-volumes` an inspection of what its
    /// removal frees (the owner check's, where it made one), then the removal by full id, then,
    /// if Docker did not answer, an inspection to see whether it is gone, or, with
    /// `--remove-volumes` after a removal Docker answered, the lookups of its volumes. So at most
    /// three Docker calls follow each other under the lease, each bounded by the timeout (the
    /// lookups of the volumes are made at once), as `--lease-ttl` allows for. Every call goes
    /// through the engine, which starts none after a signal and abandons its wait after a
    /// second one.
    async fn remove_container(&self, reference: &str, job: &Job, lease_until_ms: i64) -> Outcome {
        let disk = self.settings.disk;
        let mut target = reference.to_owned();
        // The container as inspected under the lease, where it was.
        let mut looked = None;
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
                Lookup::Missing => match self.look_at(reference).await {
                    Inspection::Found(info) => {
                        looked = Some(info.clone());
                        info
                    }
                    Inspection::NotFound => {
                        return Outcome::replay_no_op(format!(
                            "container {reference} was already gone (Docker answered 404)"
                        ));
                    }
                    Inspection::Failed(message) => {
                        return Outcome::failed(ErrorCode::DockerError, message);
                    }
                    // Nothing was sent that could change the container: it was not reached.
                    Inspection::Interrupted => {
                        return Outcome::deferred(self.stop.reason().unwrap_or_else(|| {
                            "interrupted by a signal before it was reached".to_owned()
                        }));
                    }
                },
            };
            if let Err(mismatch) = check_owner(&info, key, &job.game) {
                return mismatch;
            }
            // Removing by the full id of the container whose label was checked means a
            // container created meanwhile under the same name can never be the one removed.
            target = info.id;
        }
        if disk.looks() && looked.is_none() {
            // What cannot be looked at is removed all the same, and what it frees is unknown:
            // a container gone meanwhile is the removal's to find, and after a signal the
            // removal is not sent either.
            if let Inspection::Found(info) = self.look_at(&target).await {
                looked = Some(info);
            }
        }
        let volumes = if disk.remove_volumes {
            AnonymousVolumes::Remove
        } else {
            AnonymousVolumes::Keep
        };
        let removal = self.engine.remove(&target, volumes).await;
        let outcome = match decide_removal(&target, &removal) {
            Ok(outcome) => outcome,
            Err(unanswered) => {
                let inspection = self.engine.inspect(&target).await;
                decide_after_unanswered(
                    &target,
                    unanswered,
                    self.settings.docker_timeout,
                    &inspection,
                    lease_until_ms,
                )
            }
        };
        if !disk.looks() {
            return outcome;
        }
        // Only after a removal Docker answered: after one that got no answer, a third call has
        // been made under the lease already.
        let volumes = match &looked {
            Some(info) if disk.remove_volumes && removal == Removal::Removed => {
                Some(self.volumes_gone(&target, info).await)
            }
            _ => None,
        };
        outcome.freeing(Freed {
            size_rw: looked
                .and_then(|info| info.size_rw)
                .filter(|_| disk.measure_space),
            volumes,
        })
    }

    /// Inspects a container, with the size of its writable layer under `--measure-space`.
    async fn look_at(&self, reference: &str) -> Inspection {
        if self.settings.disk.measure_space {
            self.engine.inspect_sized(reference).await
        } else {
            self.engine.inspect(reference).await
        }
    }

    /// Which of the volumes of a container, as inspected before its removal with `v=true`, are
    /// gone after it: each looked up, all at once, so that they take one timeout at most. A
    /// lookup that fails leaves its volume out, with a warning.
    async fn volumes_gone(&self, target: &str, info: &ContainerInfo) -> Vec<String> {
        let mut seen = HashSet::new();
        let names: Vec<&str> = info
            .volumes
            .iter()
            .map(|mount| mount.name.as_str())
            .filter(|name| seen.insert(*name))
            .collect();
        let lookups = future::join_all(names.iter().map(|name| self.engine.volume(name))).await;
        names
            .into_iter()
            .zip(lookups)
            .filter_map(|(name, lookup)| match lookup {
                VolumeLookup::Gone => Some(name.to_owned()),
                VolumeLookup::Exists | VolumeLookup::Interrupted => None,
                VolumeLookup::Failed(reason) => {
                    tracing::warn!(
                        container_id = target,
                        volume = name,
                        "cannot tell whether volume {name} went with container {target}: {}",
                        Escaped(&reason)
                    );
                    None
                }
            })
            .collect()
    }

    /// Queues the job's result for the state writer without waiting for the commit; `lease` is
    /// the job's, if it took one.
    fn settle(
        &self,
        job: Job,
        lease: Option<Lease>,
        outcome: Outcome,
        started_at_ms: i64,
    ) -> Step<'_> {
        let (holder, lease_until_ms) = match lease {
            Some(lease) => (Some(lease.holder), Some(lease.expires_at)),
            None => (None, None),
        };
        let settlement = Settlement {
            game: job.game.clone(),
            kind: job.kind,
            guard: job.guard.clone(),
            logged_container: job.logged_container.clone(),
            holder,
            outcome,
            started_at_ms,
        };
        let rescue = lease_until_ms.map(|lease_until_ms| Rescue {
            settlement: settlement.clone(),
            lease_until_ms,
        });
        Step::Queued(Queued {
            // Set where the step is queued, which knows the job's place.
            position: 0,
            pending: self.writer.settle_later(settlement),
            job,
            rescue,
            _permit: None,
        })
    }

    /// Waits until a queued result is written, and logs the result as written. Returns the
    /// job's position and its outcome.
    async fn confirm(&self, queued: Queued<'_>) -> (usize, Outcome) {
        let Queued {
            position,
            job,
            pending,
            rescue,
            _permit,
        } = queued;
        let outcome = match (pending.written().await, rescue) {
            (Ok(outcome), _) => outcome,
            // A container was handled under this run's lease: its result is tried again.
            (Err(error), Some(rescue)) => self.rescue(rescue, error).await,
            // Nothing of the request was written, and no Docker call was made for it (a claim
            // with its result, or a conflict found at the claim): the record is as it was, not
            // reached, and no lease of this run's is at stake.
            (Err(error), None) => self.not_reached(error),
        };
        log_result(&job, &outcome);
        (position, outcome)
    }

    /// Keeps trying to write a result that the state file refused, of a job whose container
    /// was handled under its lease: until [`RESCUE_LOCK_WAITS`] lock waits after the pass's
    /// first refusal (and while a try can still end before the lease expires), or a second
    /// signal. Where the result cannot be written but the lease can be released, it is released
    /// (the next run replays the record); where neither can, the lease stays until it expires,
    /// and the outcome says until when.
    async fn rescue(&self, rescue: Rescue, error: StoreError) -> Outcome {
        let Rescue {
            settlement,
            lease_until_ms,
        } = rescue;
        let lock_wait = self.settings.lock_wait;
        let window_end = *self
            .rescue_until
            .get_or_init(|| Instant::now() + lock_wait * RESCUE_LOCK_WAITS);
        let lease_left = u64::try_from(lease_until_ms.saturating_sub(now_ms())).unwrap_or(0);
        let deadline = window_end.min(
            Instant::now()
                + Duration::from_millis(lease_left).saturating_sub(lock_wait * TRY_LOCK_WAITS),
        );
        let keeps_lease = settlement.outcome.lease_kept_until.is_some();
        let mut busy = error.is_busy();
        let mut last = error.to_string();
        if !self.stop.is_abandoned() {
            self.stop.state_failed(error);
        }
        let mut pause = RESCUE_PAUSE;
        while Instant::now() < deadline && !self.stop.is_abandoned() {
            if !busy {
                // A refusal that is not a lock comes back at once: pause before the next try.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.stop.abandoned() => break,
                }
                pause = (pause * 2).min(RESCUE_PAUSE_MAX);
            }
            match self.writer.settle_later(settlement.clone()).written().await {
                Ok(outcome) => {
                    tracing::info!(
                        game_id = %settlement.game,
                        "the result the state file refused is written on a later try"
                    );
                    return outcome;
                }
                Err(error) => {
                    busy = error.is_busy();
                    last = error.to_string();
                }
            }
            if let (false, false, Some(holder)) = (keeps_lease, busy, &settlement.holder) {
                let released = self
                    .writer
                    .release(settlement.game.clone(), holder.clone())
                    .await;
                if released.is_ok() {
                    return Outcome::failed(
                        ErrorCode::StateWriteFailed,
                        format!(
                            "{last}; the record stays as it was and the next run replays it; \
                             this run's lease on the game was released"
                        ),
                    );
                }
            }
        }
        let until = format_epoch_ms(lease_until_ms).unwrap_or_else(|| lease_until_ms.to_string());
        Outcome::failed(
            ErrorCode::StateWriteFailed,
            format!(
                "{last}; the record stays as it was and the next run replays it; this run's \
                 lease on the game could not be released either and stays until it expires at \
                 {until}"
            ),
        )
        .keeping_lease(lease_until_ms)
    }
}

/// Logs a job's result once in each place, at the level of its severity, with the fields a log
/// search needs (in the journal, `GAME_ID=…`, `RESULT=…`): on stderr as one line of fields, as
/// it always was; in the journal with a message that says what happened, since journalctl
/// shows only the message of an entry unless asked for more.
fn log_result(job: &Job, outcome: &Outcome) {
    let kind = match job.kind {
        JobKind::Record => "record",
        JobKind::Orphan => "orphan",
    };
    let game = job.game_text();
    let container = job.logged_container.as_deref().unwrap_or("-");
    let code = outcome.error_code.map_or("-", ErrorCode::as_str);
    let message = without_force_advice(outcome.error_message.as_deref().unwrap_or(""));
    let lease_kept_until = outcome.lease_kept_until.and_then(format_epoch_ms);
    let kept = lease_kept_until.as_deref().unwrap_or("-");
    // The same fields for both; the message differs, and the level: on stderr every result is
    // logged at info as it always was (a terminal, a pipe or cron's mail print what they printed
    // before), and in the journal at the result's own priority, so that `journalctl -p err`
    // shows the failed records.
    macro_rules! result_event {
        ($to:ident: $value:expr, $level:expr; $($message:tt)+) => {
            event_at!(
                $to: $value,
                $level,
                op_kind = job.kind.op_kind(),
                game_id = %game,
                container_id = container,
                result = %outcome.result,
                error_code = code,
                error_message = %message,
                lease_kept_until = kept,
                $($message)+
            )
        };
    }
    result_event!(name: STDERR_ONLY, tracing::Level::INFO; "{kind} handled");
    // `failed (container_running): …`, `conflict: …`: the code where it says more than the result.
    let code_shown = outcome
        .error_code
        .filter(|code| code.as_str() != outcome.result.as_str())
        .map(|code| format!(" ({})", code.as_str()))
        .unwrap_or_default();
    let detail = if message.is_empty() {
        code_shown
    } else {
        format!("{code_shown}: {}", Escaped(&message))
    };
    let until = lease_kept_until
        .as_deref()
        .map(|until| format!("; this run keeps its lease until {until}"))
        .unwrap_or_default();
    result_event!(
        target: JOURNAL_ONLY, level_of(outcome.result);
        "{kind} {}: {}{detail}{until}",
        Escaped(&game),
        outcome.result
    );
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rusqlite::Connection;

    use super::*;
    use crate::candidate::{Candidate, StoppedRow};
    use crate::engine::fake::{Call, FakeEngine, FakeVolume};
    use crate::engine::{Removal, Unanswered};
    use crate::job::Guard;
    use crate::outcome::ResultKind;
    use crate::progress::NoProgress;
    use crate::stop::Signal;
    use crate::store::testing::{insert, leases, log, memory, record, to_file};
    use crate::store::{Access, Store};
    use crate::value::FieldValue;

    const OWNER: &str = "owner";

    /// A state file with stopped records, and their jobs.
    struct Pass {
        _dir: tempfile::TempDir,
        path: PathBuf,
        jobs: Vec<Job>,
    }

    /// `(game, container or None, last_op_at)`; records are expired at threshold 1,000.
    fn pass_of(records: &[(&str, Option<&str>, i64)]) -> Pass {
        let connection = memory();
        let mut jobs = Vec::new();
        for (game, container, last_op_at) in records {
            let container = container.map_or(FieldValue::Null, FieldValue::text);
            let row = StoppedRow {
                game_id: FieldValue::text(game),
                container_id: container.clone(),
                last_op_at: FieldValue::Integer(*last_op_at),
            };
            insert(
                &connection,
                &row.game_id,
                &container,
                "stopped",
                &row.last_op_at,
            );
            jobs.push(Job::for_record(&Candidate::from_row(row), 1_000));
        }
        let (dir, path) = to_file(&connection);
        Pass {
            _dir: dir,
            path,
            jobs,
        }
    }

    /// The state file's `--lock-wait` in these tests.
    const LOCK_WAIT: Duration = Duration::from_secs(5);

    /// The longest any wait of these tests may take: a pass of theirs ends within 3 s even on
    /// a loaded machine, and a removal they wait for is asked for within milliseconds.
    const BOUND: Duration = Duration::from_secs(10);

    /// Awaits `future` for at most [`BOUND`], so that a test whose pass hangs (a removal never
    /// asked for, a held removal never let go, a result never written) fails with `what`
    /// instead of hanging.
    async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(BOUND, future)
            .await
            .unwrap_or_else(|_| panic!("{what} within {BOUND:?}"))
    }

    /// Waits until the engine was asked for `count` removals, for at most [`BOUND`].
    async fn removals_asked(engine: &FakeEngine, count: usize) {
        within(
            &format!("{count} removal(s) must be asked for"),
            engine.wait_for_removals(count),
        )
        .await;
    }

    /// Runs the jobs, for at most [`BOUND`].
    async fn run_bounded<I>(
        jobs: I,
        engine: &FakeEngine,
        writer: &StateWriter,
        containers: Option<&ContainerIndex>,
        settings: &WorkerSettings,
        stop: &Stop,
    ) -> Vec<Outcome>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: ExactSizeIterator,
    {
        within(
            "the pass must end",
            run_jobs(jobs, None, engine, writer, containers, settings, stop),
        )
        .await
    }

    fn settings(concurrency: usize, owner_label: Option<&str>) -> WorkerSettings {
        WorkerSettings {
            holder: "rt-cleanup/test/1".into(),
            lease_ttl: Duration::from_secs(300),
            owner_label: owner_label.map(str::to_owned),
            docker_timeout: Duration::from_secs(1),
            lock_wait: LOCK_WAIT,
            concurrency,
            progress: Arc::new(NoProgress),
            disk: DiskOptions::default(),
        }
    }

    async fn run(
        pass: &Pass,
        engine: &FakeEngine,
        settings: &WorkerSettings,
        max_removals: Option<usize>,
        stop: &Arc<Stop>,
    ) -> Vec<Outcome> {
        run_counting(pass, engine, settings, max_removals, stop)
            .await
            .0
    }

    /// [`run`], with the number of transactions the writer committed.
    async fn run_counting(
        pass: &Pass,
        engine: &FakeEngine,
        settings: &WorkerSettings,
        max_removals: Option<usize>,
        stop: &Arc<Stop>,
    ) -> (Vec<Outcome>, usize) {
        let store = Store::open(&pass.path, Access::ReadWrite, settings.lock_wait, stop).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        let listing = ContainerIndex::new(engine.list_all().await.unwrap());
        let containers = settings.owner_label.is_some().then_some(&listing);
        let outcomes = within(
            "the pass must end",
            run_jobs(
                pass.jobs.iter().cloned(),
                max_removals,
                engine,
                &writer,
                containers,
                settings,
                stop,
            ),
        )
        .await;
        let transactions = writer.close();
        (outcomes, transactions)
    }

    fn results(outcomes: &[Outcome]) -> Vec<ResultKind> {
        outcomes.iter().map(|outcome| outcome.result).collect()
    }

    fn connect(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    fn status(path: &Path, game: &str) -> String {
        record(&connect(path), &FieldValue::text(game))
            .unwrap()
            .0
            .to_text()
            .unwrap()
    }

    #[tokio::test]
    async fn removes_each_container_and_moves_each_record() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "created", &[]);
        let outcomes = run(&pass, &engine, &settings(2, None), None, &Stop::new()).await;
        assert_eq!(
            results(&outcomes),
            [ResultKind::Removed, ResultKind::Removed]
        );
        assert!(!engine.exists("ca") && !engine.exists("cb"));
        assert_eq!(status(&pass.path, "a"), "removed");
        assert_eq!(status(&pass.path, "b"), "removed");
        assert_eq!(log(&connect(&pass.path)).len(), 2);
        assert!(leases(&connect(&pass.path)).is_empty());
    }

    /// Progress that keeps what it was told.
    #[derive(Default)]
    struct Told {
        added: std::sync::Mutex<Vec<usize>>,
        done: std::sync::Mutex<Vec<ResultKind>>,
    }

    impl Progress for Told {
        fn jobs_added(&self, count: usize) {
            self.added.lock().unwrap().push(count);
        }

        fn job_done(&self, result: ResultKind) {
            self.done.lock().unwrap().push(result);
        }

        fn finish(&self) {}
    }

    #[tokio::test]
    async fn each_job_acted_on_is_reported_to_the_progress_once_with_its_result() {
        let pass = pass_of(&[
            ("a", Some("ca"), 1),
            ("b", Some("cb"), 2),
            ("c", None, 3),
            ("d", Some("cd"), 4),
        ]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "running", &[]);
        engine.add("cd0000", "cd", "exited", &[]);
        let told = Arc::new(Told::default());
        let settings = WorkerSettings {
            progress: Arc::clone(&told) as Arc<dyn Progress>,
            ..settings(2, None)
        };
        let outcomes = run(&pass, &engine, &settings, Some(3), &Stop::new()).await;
        assert_eq!(
            results(&outcomes),
            [
                ResultKind::Removed,
                ResultKind::Failed,
                ResultKind::ReplayNoOp,
                ResultKind::Deferred
            ]
        );
        assert_eq!(
            *told.added.lock().unwrap(),
            [3],
            "the jobs over the cap are not counted"
        );
        let mut done = told.done.lock().unwrap().clone();
        done.sort();
        assert_eq!(
            done,
            [
                ResultKind::Removed,
                ResultKind::ReplayNoOp,
                ResultKind::Failed
            ]
        );
    }

    #[tokio::test]
    async fn a_container_already_gone_is_a_replay() {
        let pass = pass_of(&[("a", Some("gone"), 1)]);
        let engine = FakeEngine::default();
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::ReplayNoOp));
        assert_eq!(status(&pass.path, "a"), "removed");
    }

    #[tokio::test]
    async fn a_running_container_fails_and_stays() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "running", &[]);
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::ContainerRunning));
        assert!(engine.exists("ca"));
        assert_eq!(status(&pass.path, "a"), "stopped");
        assert_eq!(log(&connect(&pass.path))[0].2, "failure");
    }

    #[tokio::test]
    async fn a_record_without_a_container_needs_no_docker_call() {
        let pass = pass_of(&[("a", None, 1)]);
        let engine = FakeEngine::default();
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::ReplayNoOp);
        assert_eq!(engine.calls(), [Call::List], "only the test's own listing");
        assert_eq!(status(&pass.path, "a"), "removed");
    }

    #[tokio::test]
    async fn records_without_docker_work_are_written_many_to_a_transaction() {
        let names: Vec<String> = (0..200).map(|n| format!("g-{n:03}")).collect();
        let records: Vec<_> = names
            .iter()
            .zip(1..)
            .map(|(name, age)| (name.as_str(), None, age))
            .collect();
        let pass = pass_of(&records);
        let engine = FakeEngine::default();
        // One slot: were each claim awaited in its slot, 200 records would take 200 commits.
        let (outcomes, transactions) =
            run_counting(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert!(outcomes.iter().all(|o| o.result == ResultKind::ReplayNoOp));
        assert_eq!(engine.calls(), [Call::List], "only the test's own listing");
        assert!(
            transactions <= 10,
            "{transactions} transactions for 200 records"
        );
        assert_eq!(log(&connect(&pass.path)).len(), 200);
        assert!(leases(&connect(&pass.path)).is_empty());
        assert_eq!(status(&pass.path, "g-199"), "removed");
    }

    #[tokio::test]
    async fn a_batch_the_state_file_refuses_defers_its_records_and_stops_the_pass() {
        let pass = pass_of(&[("a", None, 1), ("b", None, 2), ("c", Some("cc"), 3)]);
        let engine = FakeEngine::default();
        engine.add("cc0000", "cc", "exited", &[]);
        let stop = Stop::new();
        let store = Store::open(
            &pass.path,
            Access::ReadWrite,
            Duration::from_millis(50),
            &stop,
        )
        .unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        // Another program holds the file's write lock for longer than the wait.
        let holder = connect(&pass.path);
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let outcomes = run_bounded(
            pass.jobs.iter().cloned(),
            &engine,
            &writer,
            None,
            &settings(1, None),
            &stop,
        )
        .await;
        writer.close();
        holder.execute_batch("ROLLBACK").unwrap();
        assert_eq!(
            results(&outcomes),
            [
                ResultKind::Deferred,
                ResultKind::Deferred,
                ResultKind::Deferred
            ]
        );
        for outcome in &outcomes {
            let message = outcome.error_message.as_deref().unwrap();
            assert!(message.contains("not reached"), "{message}");
        }
        assert!(stop
            .take_state_failure()
            .is_some_and(|error| error.is_busy()));
        assert!(
            engine.removals().is_empty(),
            "no record was started after the failure"
        );
        assert!(log(&connect(&pass.path)).is_empty());
        assert!(leases(&connect(&pass.path)).is_empty());
        assert_eq!(status(&pass.path, "a"), "stopped");
    }

    #[tokio::test]
    async fn an_invalid_record_is_reread_under_its_lease_and_never_sent_to_docker() {
        let mut pass = pass_of(&[("a", Some("ca"), 1)]);
        pass.jobs[0].target = Target::Invalid("container_id is hostile".into());
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::InvalidRecord));
        assert!(engine.removals().is_empty());
        assert_eq!(status(&pass.path, "a"), "stopped");
        assert_eq!(log(&connect(&pass.path)).len(), 1);
        assert!(leases(&connect(&pass.path)).is_empty());
    }

    #[tokio::test]
    async fn a_job_for_a_game_without_a_record_is_a_conflict() {
        let mut pass = pass_of(&[("a", Some("ca"), 1)]);
        pass.jobs[0].game = FieldValue::text("not-in-the-file");
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Conflict);
        assert!(
            engine.exists("ca"),
            "nothing is removed for a record that is not there"
        );
    }

    #[tokio::test]
    async fn max_removals_acts_on_the_first_jobs_only() {
        let pass = pass_of(&[
            ("a", Some("ca"), 1),
            ("b", Some("cb"), 2),
            ("c", Some("cc"), 3),
        ]);
        let engine = FakeEngine::default();
        for name in ["ca", "cb", "cc"] {
            engine.add(&format!("{name}0000"), name, "exited", &[]);
        }
        let outcomes = run(&pass, &engine, &settings(3, None), Some(2), &Stop::new()).await;
        assert_eq!(
            results(&outcomes),
            [
                ResultKind::Removed,
                ResultKind::Removed,
                ResultKind::Deferred
            ]
        );
        assert!(engine.exists("cc"));
        assert_eq!(status(&pass.path, "c"), "stopped");
        assert_eq!(
            log(&connect(&pass.path)).len(),
            2,
            "a deferral writes no row"
        );
    }

    #[tokio::test]
    async fn outcomes_come_back_in_the_jobs_order_whatever_finishes_first() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2), ("c", None, 3)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "running", &[]);
        engine.delay("ca", Duration::from_millis(50));
        let outcomes = run(&pass, &engine, &settings(3, None), None, &Stop::new()).await;
        assert_eq!(
            results(&outcomes),
            [
                ResultKind::Removed,
                ResultKind::Failed,
                ResultKind::ReplayNoOp
            ]
        );
    }

    #[tokio::test]
    async fn a_lease_held_by_the_manager_is_a_conflict_without_a_docker_call() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        connect(&pass.path)
            .execute(
                "INSERT INTO game_leases VALUES ('a', 'rtmanager/h/1', ?1)",
                [crate::time::now_ms() + 60_000],
            )
            .unwrap();
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Conflict);
        assert!(outcomes[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("rtmanager/h/1"));
        assert!(engine.removals().is_empty());
        assert_eq!(leases(&connect(&pass.path))[0].1, "rtmanager/h/1");
    }

    #[tokio::test]
    async fn the_owner_label_is_checked_before_any_removal() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[(OWNER, "a")]);
        engine.add("cb0000", "cb", "exited", &[(OWNER, "someone-else")]);
        let outcomes = run(
            &pass,
            &engine,
            &settings(1, Some(OWNER)),
            None,
            &Stop::new(),
        )
        .await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(outcomes[1].error_code, Some(ErrorCode::OwnershipMismatch));
        assert_eq!(
            engine.removals(),
            ["ca0000"],
            "removed by full id, the other never"
        );
        assert!(engine.exists("cb"));
    }

    #[tokio::test]
    async fn a_container_the_listing_missed_is_inspected_before_its_owner_check() {
        let pass = pass_of(&[("a", Some("late"), 1)]);
        let engine = FakeEngine::default();
        let stop = Stop::new();
        let store = Store::open(&pass.path, Access::ReadWrite, LOCK_WAIT, &stop).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        // The listing was taken before the container appeared.
        let listing = ContainerIndex::new(Vec::new());
        engine.add("late0000", "late", "exited", &[(OWNER, "a")]);
        let outcomes = run_bounded(
            pass.jobs.iter().cloned(),
            &engine,
            &writer,
            Some(&listing),
            &settings(1, Some(OWNER)),
            &stop,
        )
        .await;
        writer.close();
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(
            engine.calls(),
            [
                Call::Inspect("late".into()),
                Call::Remove("late0000".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_removal_without_answer_is_decided_by_an_inspection_and_keeps_its_lease_unless_gone()
    {
        let pass = pass_of(&[("gone", Some("c1"), 1), ("still", Some("c2"), 2)]);
        let engine = FakeEngine::default();
        engine.add("c2-0000", "c2", "exited", &[]);
        engine.script("c1", Removal::Unanswered(Unanswered::TimedOut));
        engine.script("c2", Removal::Unanswered(Unanswered::TimedOut));
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(
            outcomes[0].result,
            ResultKind::Removed,
            "inspection says 404"
        );
        assert_eq!(outcomes[1].error_code, Some(ErrorCode::DockerError));
        assert!(outcomes[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("still exists"));
        assert_eq!(status(&pass.path, "gone"), "removed");
        assert_eq!(status(&pass.path, "still"), "stopped");
        assert!(engine.calls().contains(&Call::Inspect("c2".into())));
        // The removal of c2 may still be carried out: its lease stays, for the whole TTL.
        let leases = leases(&connect(&pass.path));
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!(leases[0].0, FieldValue::text("still"));
        assert_eq!(outcomes[1].lease_kept_until, Some(leases[0].2));
        assert_eq!(log(&connect(&pass.path)).len(), 2, "each result is logged");
    }

    #[tokio::test]
    async fn a_removal_already_in_progress_is_a_conflict() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.script(
            "ca",
            Removal::Refused {
                status: 409,
                message: "removal of container ca is already in progress".into(),
            },
        );
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Conflict);
        assert_eq!(status(&pass.path, "a"), "stopped");
    }

    #[tokio::test]
    async fn a_signal_finishes_the_jobs_in_flight_and_defers_the_rest() {
        let pass = pass_of(&[
            ("a", Some("ca"), 1),
            ("b", Some("cb"), 2),
            ("c", Some("cc"), 3),
        ]);
        let engine = Arc::new(FakeEngine::default());
        for name in ["ca", "cb", "cc"] {
            engine.add(&format!("{name}0000"), name, "exited", &[]);
        }
        engine.hold_removals(true);
        let stop = Stop::new();
        let signaller = {
            let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
            async move {
                removals_asked(&engine, 1).await;
                stop.signal(Signal::Terminate);
                engine.hold_removals(false);
            }
        };
        let settings = settings(1, None);
        let (outcomes, ()) = tokio::join!(run(&pass, &engine, &settings, None, &stop), signaller);
        assert_eq!(
            results(&outcomes),
            [
                ResultKind::Removed,
                ResultKind::Deferred,
                ResultKind::Deferred
            ]
        );
        assert!(outcomes[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("SIGTERM"));
        assert_eq!(status(&pass.path, "a"), "removed");
        assert_eq!(log(&connect(&pass.path)).len(), 1);
        assert!(leases(&connect(&pass.path)).is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_removal_keeps_its_record_and_its_lease() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "exited", &[]);
        // What the Docker client answers for a removal whose wait a second signal abandoned.
        engine.script("ca", Removal::Unanswered(Unanswered::Abandoned));
        engine.script("cb", Removal::Unanswered(Unanswered::Abandoned));
        let outcomes = run(&pass, &engine, &settings(2, None), None, &Stop::new()).await;
        assert_eq!(results(&outcomes), [ResultKind::Failed, ResultKind::Failed]);
        let message = outcomes[0].error_message.as_deref().unwrap();
        assert!(message.contains("abandoned"), "{message}");
        assert_eq!(status(&pass.path, "a"), "stopped", "not verifiably gone");
        assert_eq!(log(&connect(&pass.path)).len(), 2, "each is still logged");
        assert_eq!(
            leases(&connect(&pass.path)).len(),
            2,
            "the daemon may still remove them: their leases stay"
        );
    }

    #[tokio::test]
    async fn a_removal_not_sent_after_a_signal_is_deferred_and_its_lease_released() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        // What the Docker client answers for a call asked for after a signal.
        engine.script("ca", Removal::Interrupted);
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Deferred);
        assert!(engine.exists("ca"));
        assert!(
            log(&connect(&pass.path)).is_empty(),
            "a deferral is not logged"
        );
        assert!(leases(&connect(&pass.path)).is_empty());
    }

    /// Runs the pass's jobs with the state file's write lock held by another connection from
    /// the moment the first removal is asked for until `held` later (for good where `None`);
    /// `--lock-wait` is `lock_wait`.
    async fn run_with_lock_during_removal(
        pass: &Pass,
        engine: &Arc<FakeEngine>,
        lock_wait: Duration,
        held: Option<Duration>,
    ) -> (Vec<Outcome>, Arc<Stop>) {
        engine.hold_removals(true);
        let stop = Stop::new();
        let settings = WorkerSettings {
            lock_wait,
            ..settings(1, None)
        };
        let store = Store::open(&pass.path, Access::ReadWrite, lock_wait, &stop).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        let locker = {
            let (engine, path) = (Arc::clone(engine), pass.path.clone());
            async move {
                removals_asked(&engine, 1).await;
                let holder = connect(&path);
                holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
                engine.hold_removals(false);
                std::thread::spawn(move || {
                    if let Some(held) = held {
                        std::thread::sleep(held);
                        holder.execute_batch("COMMIT").unwrap();
                    } else {
                        // Held until the test's pass is over: the test process ends it.
                        std::thread::sleep(Duration::from_secs(600));
                    }
                });
            }
        };
        let (outcomes, ()) = tokio::join!(
            run_bounded(
                pass.jobs.iter().cloned(),
                engine.as_ref(),
                &writer,
                None,
                &settings,
                &stop,
            ),
            locker
        );
        writer.close();
        (outcomes, stop)
    }

    #[tokio::test]
    async fn a_result_refused_by_a_lock_is_tried_again_and_written_once_the_lock_is_free() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2)]);
        let engine = Arc::new(FakeEngine::default());
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "exited", &[]);
        // The first try waits 200 ms and fails; the lock is gone 500 ms after it was taken, well
        // within the two lock waits the result is tried for after that.
        let (outcomes, stop) = run_with_lock_during_removal(
            &pass,
            &engine,
            Duration::from_millis(200),
            Some(Duration::from_millis(500)),
        )
        .await;
        assert_eq!(
            results(&outcomes),
            [ResultKind::Removed, ResultKind::Deferred],
            "{outcomes:?}"
        );
        assert_eq!(status(&pass.path, "a"), "removed");
        assert_eq!(log(&connect(&pass.path)).len(), 1);
        assert!(
            leases(&connect(&pass.path)).is_empty(),
            "the lease is released"
        );
        assert!(
            stop.take_state_failure()
                .is_some_and(|error| error.is_busy()),
            "the pass still stopped at the lock"
        );
        assert!(engine.exists("cb"), "no record was started after it");
    }

    #[tokio::test]
    async fn a_result_refused_for_good_keeps_the_lease_and_says_until_when() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = Arc::new(FakeEngine::default());
        engine.add("ca0000", "ca", "exited", &[]);
        let began = std::time::Instant::now();
        let (outcomes, _) =
            run_with_lock_during_removal(&pass, &engine, Duration::from_millis(100), None).await;
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "the tries are bounded: {:?}",
            began.elapsed()
        );
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::StateWriteFailed));
        assert!(!engine.exists("ca"));
        let until = outcomes[0].lease_kept_until.expect("the lease is kept");
        let message = outcomes[0].error_message.as_deref().unwrap();
        assert!(
            message.contains(&crate::time::format_epoch_ms(until).unwrap()),
            "{message}"
        );
    }

    /// Makes the file refuse every log row, as a runtime manager's trigger of its own could.
    fn refuse_log_rows(connection: &Connection) {
        connection
            .execute_batch(
                "CREATE TRIGGER refuse_rows BEFORE INSERT ON operation_log \
                 BEGIN SELECT RAISE(ABORT, 'rows refused'); END;",
            )
            .unwrap();
    }

    #[tokio::test]
    async fn a_result_refused_but_for_a_lock_is_given_up_for_the_release_of_its_lease() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        refuse_log_rows(&connect(&pass.path));
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        let settings = WorkerSettings {
            lock_wait: Duration::from_millis(200),
            ..settings(1, None)
        };
        let stop = Stop::new();
        let outcomes = run(&pass, &engine, &settings, None, &stop).await;
        assert_eq!(outcomes[0].error_code, Some(ErrorCode::StateWriteFailed));
        let message = outcomes[0].error_message.as_deref().unwrap();
        assert!(
            message.contains("rows refused") && message.contains("released"),
            "{message}"
        );
        assert_eq!(outcomes[0].lease_kept_until, None);
        assert!(
            leases(&connect(&pass.path)).is_empty(),
            "the lease is released"
        );
        assert_eq!(
            status(&pass.path, "a"),
            "stopped",
            "replayed by the next run"
        );
        assert!(stop.take_state_failure().is_some());
    }

    #[tokio::test]
    async fn a_conflict_whose_row_is_refused_is_deferred_not_failed() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let connection = connect(&pass.path);
        connection
            .execute(
                "INSERT INTO game_leases VALUES ('a', 'rtmanager/h/1', ?1)",
                [now_ms() + 3_600_000],
            )
            .unwrap();
        refuse_log_rows(&connection);
        let engine = FakeEngine::default();
        engine.add("ca0000", "ca", "exited", &[]);
        let stop = Stop::new();
        let outcomes = run(&pass, &engine, &settings(1, None), None, &stop).await;
        // Nothing was done to the game, which someone else holds: no Docker call, no row.
        assert_eq!(results(&outcomes), [ResultKind::Deferred], "{outcomes:?}");
        assert!(
            outcomes[0]
                .error_message
                .as_deref()
                .is_some_and(|message| message.contains("rows refused")),
            "{outcomes:?}"
        );
        assert!(engine.exists("ca"));
        assert_eq!(status(&pass.path, "a"), "stopped");
        assert_eq!(leases(&connect(&pass.path)).len(), 1, "the holder's lease");
        assert!(stop.take_state_failure().is_some(), "the pass stopped");
    }

    #[tokio::test]
    async fn an_orphan_job_removes_its_container_and_changes_no_record() {
        let pass = pass_of(&[("a", Some("current"), 1)]);
        let engine = FakeEngine::default();
        engine.add("leaked0000", "leaked", "exited", &[(OWNER, "a")]);
        let orphan = Job {
            game: FieldValue::text("a"),
            target: Target::Container(crate::candidate::ContainerRef::parse("leaked0000").unwrap()),
            logged_container: Some("leaked0000".into()),
            guard: Guard::Unclaimed {
                id: "leaked0000".into(),
                names: vec!["leaked".into()],
            },
            kind: JobKind::Orphan,
        };
        let pass = Pass {
            jobs: vec![orphan],
            ..pass
        };
        let outcomes = run(
            &pass,
            &engine,
            &settings(1, Some(OWNER)),
            None,
            &Stop::new(),
        )
        .await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert!(!engine.exists("leaked"));
        assert_eq!(status(&pass.path, "a"), "stopped");
        assert_eq!(log(&connect(&pass.path))[0].1, "cleanup_orphan");
    }

    #[tokio::test]
    async fn an_orphan_someone_else_removed_first_is_a_conflict() {
        let pass = pass_of(&[("a", Some("current"), 1)]);
        // The orphan search found it; it is gone by the time its removal is sent.
        let engine = FakeEngine::default();
        let orphan = Job {
            game: FieldValue::text("a"),
            target: Target::Container(crate::candidate::ContainerRef::parse("leaked0000").unwrap()),
            logged_container: Some("leaked0000".into()),
            guard: Guard::Unclaimed {
                id: "leaked0000".into(),
                names: vec!["leaked".into()],
            },
            kind: JobKind::Orphan,
        };
        let pass = Pass {
            jobs: vec![orphan],
            ..pass
        };
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(
            outcomes[0],
            Outcome::conflict(
                "someone else removed it first: container leaked0000 was already gone (Docker \
                 answered 404)"
            )
        );
        assert_eq!(engine.removals(), ["leaked0000"]);
        assert_eq!(status(&pass.path, "a"), "stopped", "no record is changed");
        assert_eq!(
            log(&connect(&pass.path)),
            [(
                FieldValue::text("a"),
                "cleanup_orphan".to_owned(),
                "success".to_owned(),
                Some("conflict".to_owned()),
                Some("leaked0000".to_owned())
            )]
        );
        assert!(leases(&connect(&pass.path)).is_empty());
    }

    /// The settings of `settings(concurrency, owner_label)` with `--measure-space` and
    /// `--remove-volumes`.
    fn measuring_and_removing_volumes(
        concurrency: usize,
        owner_label: Option<&str>,
    ) -> WorkerSettings {
        WorkerSettings {
            disk: DiskOptions {
                measure_space: true,
                remove_volumes: true,
            },
            ..settings(concurrency, owner_label)
        }
    }

    #[tokio::test]
    async fn without_the_options_a_container_is_removed_without_a_look_and_keeps_its_volumes() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "ca0000",
            "ca",
            "exited",
            &[("va", FakeVolume::Anonymous)],
            7,
        );
        let outcomes = run(&pass, &engine, &settings(1, None), None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(outcomes[0].freed, None);
        // The listing is the test's own (see `run_counting`).
        assert_eq!(engine.calls(), [Call::List, Call::Remove("ca".into())]);
        assert!(
            engine.has_volume("va"),
            "v=false keeps the anonymous volume"
        );
    }

    #[tokio::test]
    async fn a_container_is_measured_before_its_removal_and_its_anonymous_volumes_go_with_it() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "ca0000",
            "ca",
            "exited",
            &[("va", FakeVolume::Anonymous), ("vn", FakeVolume::Named)],
            3 << 20,
        );
        let settings = measuring_and_removing_volumes(1, None);
        let outcomes = run(&pass, &engine, &settings, None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(
            outcomes[0].freed.as_deref(),
            Some(&Freed {
                size_rw: Some(3 << 20),
                volumes: Some(vec!["va".into()]),
            })
        );
        assert_eq!(
            engine.calls(),
            [
                Call::List,
                Call::InspectSized("ca".into()),
                Call::RemoveWithVolumes("ca".into()),
                Call::Volume("va".into()),
                Call::Volume("vn".into()),
            ],
            "one sized inspection under the lease, the removal with v=true, then one lookup of \
             each volume it had"
        );
        assert!(!engine.has_volume("va") && engine.has_volume("vn"));
        assert_eq!(status(&pass.path, "a"), "removed");
    }

    #[tokio::test]
    async fn a_container_that_cannot_be_measured_is_removed_all_the_same() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "ca0000",
            "ca",
            "exited",
            &[("va", FakeVolume::Anonymous)],
            9,
        );
        engine.script_inspection("ca", Inspection::Failed("no answer within 1s".into()));
        let settings = measuring_and_removing_volumes(1, None);
        let outcomes = run(&pass, &engine, &settings, None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(
            outcomes[0].freed.as_deref(),
            Some(&Freed::default()),
            "size and volumes unknown"
        );
        assert!(!engine.exists("ca"));
        assert!(!engine.has_volume("va"), "removed with v=true all the same");
    }

    #[tokio::test]
    async fn a_volume_another_container_uses_stays_and_is_not_reported_removed() {
        let pass = pass_of(&[("a", Some("ca"), 1)]);
        let engine = FakeEngine::default();
        engine.add_with_volumes(
            "ca0000",
            "ca",
            "exited",
            &[("vs", FakeVolume::Anonymous)],
            1,
        );
        engine.add_with_volumes(
            "cb0000",
            "cb",
            "exited",
            &[("vs", FakeVolume::Anonymous)],
            1,
        );
        let settings = measuring_and_removing_volumes(1, None);
        let outcomes = run(&pass, &engine, &settings, None, &Stop::new()).await;
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        let freed = outcomes[0].freed.as_deref().unwrap();
        assert_eq!(freed.volumes, Some(vec![]));
        assert!(engine.has_volume("vs"));
    }

    #[tokio::test]
    async fn the_owner_checks_inspection_is_the_one_that_measures() {
        let pass = pass_of(&[("a", Some("late"), 1)]);
        let engine = FakeEngine::default();
        engine.add_with_volumes("late0000", "late", "exited", &[], 5);
        engine.add("other000", "other", "exited", &[(OWNER, "a")]);
        let stop = Stop::new();
        let store = Store::open(&pass.path, Access::ReadWrite, LOCK_WAIT, &stop).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        // The listing was taken before the container appeared; its label is set here, as the
        // fake's containers with volumes have none.
        let listing = ContainerIndex::new(Vec::new());
        engine.script_inspection(
            "late",
            Inspection::Found(ContainerInfo {
                id: "late0000".into(),
                names: vec!["late".into()],
                state: "exited".into(),
                labels: [(OWNER.to_owned(), "a".to_owned())].into(),
                size_rw: Some(5),
                ..ContainerInfo::default()
            }),
        );
        let outcomes = run_jobs(
            pass.jobs.iter().cloned(),
            None,
            &engine,
            &writer,
            Some(&listing),
            &measuring_and_removing_volumes(1, Some(OWNER)),
            &stop,
        )
        .await;
        writer.close();
        assert_eq!(outcomes[0].result, ResultKind::Removed);
        assert_eq!(outcomes[0].freed.as_deref().unwrap().size_rw, Some(5));
        assert_eq!(
            engine.calls(),
            [
                Call::InspectSized("late".into()),
                Call::RemoveWithVolumes("late0000".into())
            ],
            "one inspection serves the owner check and the measure"
        );
    }
}

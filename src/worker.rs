//! The worker of a real run: it runs removal jobs under their games' leases, a few at a time,
//! and hands each result to the state writer.
//!
//! The same worker runs the jobs of the record pass and of the orphan pass; what differs between
//! them is in the job (its guard and its `op_kind`), not here.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use futures_util::future;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

use crate::candidate::Target;
use crate::engine::{ContainerEngine, ContainerIndex, Inspection, Lookup};
use crate::job::{Job, JobKind};
use crate::outcome::{
    check_owner, decide_after_timeout, decide_removal, lease_conflict, without_force_advice,
    ErrorCode, Outcome,
};
use crate::stop::Stop;
use crate::store::{
    Claim, ClaimAndSettle, ClaimResult, PendingSettlement, Settlement, StateWriter,
};
use crate::time::now_ms;

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
    /// Jobs worked on at once.
    pub concurrency: usize,
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

/// The message of a Docker call abandoned on a second signal.
const ABANDONED: &str = "abandoned after a second signal while Docker had not answered; the \
                         container may or may not be gone, so the record stays as it is and the \
                         next run retries it";

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
    let worker = Worker {
        engine,
        writer,
        containers,
        settings,
        stop,
        unconfirmed: Semaphore::new(MAX_UNCONFIRMED),
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
                        Step::Done(outcome) => outcomes.borrow_mut()[position] = Some(outcome),
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
    /// Whether the request holds the job's claim too: where it fails, nothing of the job was
    /// written or done, and the record is `deferred`.
    with_claim: bool,
    /// The job's place among the unconfirmed requests without Docker work, if it is one.
    _permit: Option<SemaphorePermit<'a>>,
}

struct Worker<'a, E> {
    engine: &'a E,
    writer: &'a StateWriter,
    containers: Option<&'a ContainerIndex>,
    settings: &'a WorkerSettings,
    stop: &'a Stop,
    unconfirmed: Semaphore,
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
        match self.writer.claim(claim).await {
            Ok(ClaimResult::Claimed) => {}
            Ok(ClaimResult::HeldBy(lease)) => {
                return self.settle(job, None, lease_conflict(&lease), started_at_ms);
            }
            Ok(ClaimResult::Changed(change)) => {
                return self.settle(job, None, Outcome::conflict(change), started_at_ms);
            }
            Err(error) => {
                // Nothing was done for this job: it is simply not reached.
                let outcome = Outcome::deferred(format!("not reached: {error}"));
                self.stop.state_failed(error);
                return Step::Done(outcome);
            }
        }
        let outcome = job
            .kind
            .result_of(self.remove_container(reference.as_str(), &job).await);
        let holder = Some(self.settings.holder.clone());
        self.settle(job, holder, outcome, started_at_ms)
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
            with_claim: true,
            _permit: permit,
        })
    }

    /// Runs a Docker call unless the waits are abandoned (a second signal) first.
    async fn unless_abandoned<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            answer = call => Some(answer),
            () = self.stop.abandoned() => None,
        }
    }

    /// Removes the container under the lease: the owner check (from the listing taken at the
    /// start of the pass, or an inspection for a container it did not show), then the removal
    /// by full id, then, if Docker did not answer in time, an inspection to see whether it is
    /// gone.
    async fn remove_container(&self, reference: &str, job: &Job) -> Outcome {
        let abandoned = || Outcome::failed(ErrorCode::DockerError, ABANDONED);
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
                Lookup::Missing => {
                    let Some(inspection) =
                        self.unless_abandoned(self.engine.inspect(reference)).await
                    else {
                        return abandoned();
                    };
                    match inspection {
                        Inspection::Found(info) => info,
                        Inspection::NotFound => {
                            return Outcome::replay_no_op(format!(
                                "container {reference} was already gone (Docker answered 404)"
                            ));
                        }
                        Inspection::Failed(message) => {
                            return Outcome::failed(ErrorCode::DockerError, message);
                        }
                    }
                }
            };
            if let Err(mismatch) = check_owner(&info, key, &job.game) {
                return mismatch;
            }
            // Removing by the full id of the container whose label was checked means a
            // container created meanwhile under the same name can never be the one removed.
            target = info.id;
        }
        let Some(removal) = self.unless_abandoned(self.engine.remove(&target)).await else {
            return abandoned();
        };
        if let Some(outcome) = decide_removal(&target, &removal) {
            return outcome;
        }
        let Some(inspection) = self.unless_abandoned(self.engine.inspect(&target)).await else {
            return abandoned();
        };
        decide_after_timeout(&target, self.settings.docker_timeout, &inspection)
    }

    /// Queues the job's result for the state writer without waiting for the commit.
    fn settle(
        &self,
        job: Job,
        holder: Option<String>,
        outcome: Outcome,
        started_at_ms: i64,
    ) -> Step<'_> {
        let settlement = Settlement {
            game: job.game.clone(),
            kind: job.kind,
            guard: job.guard.clone(),
            logged_container: job.logged_container.clone(),
            holder,
            outcome,
            started_at_ms,
        };
        Step::Queued(Queued {
            // Set where the step is queued, which knows the job's place.
            position: 0,
            pending: self.writer.settle_later(settlement),
            job,
            with_claim: false,
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
            with_claim,
            _permit,
        } = queued;
        let outcome = match pending.written().await {
            Ok(outcome) => outcome,
            Err(error) if with_claim => {
                // Nothing of the request was written, and it needed no Docker call: the record
                // is as it was, not reached.
                let outcome = Outcome::deferred(format!("not reached: {error}"));
                self.stop.state_failed(error);
                outcome
            }
            Err(error) => {
                let outcome = Outcome::failed(
                    ErrorCode::StateWriteFailed,
                    format!("{error}; the record stays as it was and the next run replays it"),
                );
                self.stop.state_failed(error);
                outcome
            }
        };
        // Each job's result is logged once, with the fields a log search needs.
        tracing::info!(
            op_kind = job.kind.op_kind(),
            game_id = %job.game_text(),
            container_id = job.logged_container.as_deref().unwrap_or("-"),
            result = %outcome.result,
            error_code = outcome.error_code.map_or("-", ErrorCode::as_str),
            error_message = %without_force_advice(outcome.error_message.as_deref().unwrap_or("")),
            "{} handled",
            match job.kind {
                JobKind::Record => "record",
                JobKind::Orphan => "orphan",
            }
        );
        (position, outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rusqlite::Connection;

    use super::*;
    use crate::candidate::{Candidate, StoppedRow};
    use crate::engine::fake::{Call, FakeEngine};
    use crate::engine::Removal;
    use crate::job::Guard;
    use crate::outcome::ResultKind;
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

    fn settings(concurrency: usize, owner_label: Option<&str>) -> WorkerSettings {
        WorkerSettings {
            holder: "rt-cleanup/test/1".into(),
            lease_ttl: Duration::from_secs(300),
            owner_label: owner_label.map(str::to_owned),
            docker_timeout: Duration::from_secs(1),
            concurrency,
        }
    }

    async fn run(
        pass: &Pass,
        engine: &FakeEngine,
        settings: &WorkerSettings,
        max_removals: Option<usize>,
        stop: &Stop,
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
        stop: &Stop,
    ) -> (Vec<Outcome>, usize) {
        let store = Store::open(&pass.path, Access::ReadWrite, Duration::from_secs(5)).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        let listing = ContainerIndex::new(engine.list_all().await.unwrap());
        let containers = settings.owner_label.is_some().then_some(&listing);
        let outcomes = run_jobs(
            pass.jobs.iter().cloned(),
            max_removals,
            engine,
            &writer,
            containers,
            settings,
            stop,
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
        let store = Store::open(&pass.path, Access::ReadWrite, Duration::from_millis(50)).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        // Another program holds the file's write lock for longer than the wait.
        let holder = connect(&pass.path);
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let stop = Stop::new();
        let outcomes = run_jobs(
            pass.jobs.iter().cloned(),
            None,
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
        let store = Store::open(&pass.path, Access::ReadWrite, Duration::from_secs(5)).unwrap();
        let writer = store.into_writer("auto_ttl".into()).unwrap();
        // The listing was taken before the container appeared.
        let listing = ContainerIndex::new(Vec::new());
        engine.add("late0000", "late", "exited", &[(OWNER, "a")]);
        let outcomes = run_jobs(
            pass.jobs.iter().cloned(),
            None,
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
    async fn a_removal_without_answer_is_decided_by_an_inspection() {
        let pass = pass_of(&[("gone", Some("c1"), 1), ("still", Some("c2"), 2)]);
        let engine = FakeEngine::default();
        engine.add("c2-0000", "c2", "exited", &[]);
        engine.script("c1", Removal::TimedOut);
        engine.script("c2", Removal::TimedOut);
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
                engine.wait_for_removals(1).await;
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
    async fn a_second_signal_abandons_the_calls_in_flight_and_keeps_their_records() {
        let pass = pass_of(&[("a", Some("ca"), 1), ("b", Some("cb"), 2)]);
        let engine = Arc::new(FakeEngine::default());
        engine.add("ca0000", "ca", "exited", &[]);
        engine.add("cb0000", "cb", "exited", &[]);
        engine.hold_removals(true);
        let stop = Stop::new();
        let signaller = {
            let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
            async move {
                engine.wait_for_removals(2).await;
                stop.signal(Signal::Interrupt);
                stop.signal(Signal::Interrupt);
                stop.abandon();
            }
        };
        let settings = settings(2, None);
        let (outcomes, ()) = tokio::join!(run(&pass, &engine, &settings, None, &stop), signaller);
        assert_eq!(results(&outcomes), [ResultKind::Failed, ResultKind::Failed]);
        assert!(outcomes[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("abandoned"));
        assert_eq!(status(&pass.path, "a"), "stopped", "not verifiably gone");
        assert_eq!(log(&connect(&pass.path)).len(), 2, "each is still logged");
        assert!(
            leases(&connect(&pass.path)).is_empty(),
            "and its lease released"
        );
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
}

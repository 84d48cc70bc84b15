//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is stated in `docs/contract.md`.
//!
//! [`run`] is one pass; `main.rs` only parses, sets up logging, calls it, prints the summary,
//! writes the metrics and maps the outcome to an exit status.

pub mod cli;
pub mod config;
pub mod exit;
pub mod logging;
pub mod progress;
pub mod stop;

pub(crate) mod candidate;
pub(crate) mod docker;
pub(crate) mod engine;
pub(crate) mod job;
pub(crate) mod metrics;
pub(crate) mod orphans;
pub(crate) mod outcome;
pub(crate) mod output_file;
pub(crate) mod pass;
pub(crate) mod plan;
pub(crate) mod store;
pub(crate) mod summary;
pub(crate) mod time;
pub(crate) mod value;
pub(crate) mod worker;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::candidate::{Candidate, Target};
use crate::cli::OrphanMode;
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::docker::{DockerClient, DockerError};
use crate::engine::{ContainerEngine, ContainerIndex, ContainerInfo};
use crate::exit::ExitStatus;
use crate::job::JobKind;
use crate::metrics::RunMetrics;
use crate::orphans::{HandledOrphan, Orphan, OrphanPass};
use crate::outcome::{LiveLease, Outcome, ResultKind};
use crate::pass::SecondLooks;
use crate::plan::{ApplyContext, Plan, PlanContext, PlanError};
use crate::progress::Progress;
use crate::stop::{Signal, Stop};
use crate::store::{Access, Store, StoreError};
use crate::summary::{Counts, KeptLease, OrphanReport, OrphanSection, RecordReport, Summary};
use crate::time::{epoch_ms, format_epoch_ms, format_time, Timestamp};
use crate::value::{Escaped, FieldValue};
use crate::worker::WorkerSettings;

/// A pass that could not start: nothing was changed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The state file is unusable or locked.
    #[error(transparent)]
    State(#[from] StoreError),
    /// The Docker daemon is unreachable or unusable.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The plan cannot be read, is not for this state file, or cannot be written.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A signal ended the wait for the state file's lock, before anything was read.
    #[error(
        "interrupted by {} while waiting for the lock on the state file {}; nothing was read or \
         changed", .signal.name(), .state.display()
    )]
    Interrupted {
        /// The first signal.
        signal: Signal,
        /// The state file.
        state: std::path::PathBuf,
    },
}

impl RunError {
    /// The exit status of a pass that could not start.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::State(error) if error.is_busy() => ExitStatus::StateBusy,
            RunError::State(_) | RunError::Plan(_) => ExitStatus::Usage,
            RunError::Docker(_) => ExitStatus::DockerUnavailable,
            RunError::Interrupted { signal, .. } => signal.exit_status(),
        }
    }
}

/// A pass that ran to its end, possibly cut short by a signal or a state-file failure.
#[derive(Debug)]
pub struct Report {
    summary: Summary,
    interrupted: Option<Signal>,
    state_failure: Option<StoreError>,
    oldest_waiting_ms: Option<i64>,
    oldest_orphan_since_ms: Option<i64>,
}

impl Report {
    /// The exit status of the pass.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        if let Some(signal) = self.interrupted {
            signal.exit_status()
        } else if self.state_failure.as_ref().is_some_and(StoreError::is_busy) {
            ExitStatus::StateBusy
        } else if self.summary.has_failures() || self.state_failure.is_some() {
            ExitStatus::FailedRecords
        } else {
            ExitStatus::Success
        }
    }

    /// Writes the summary for stdout, in the configured format.
    pub fn write_summary(&self, format: OutputFormat, out: &mut impl Write) -> io::Result<()> {
        match format {
            OutputFormat::Text => summary::write_text(&self.summary, out),
            OutputFormat::Json => summary::write_json(&self.summary, out),
        }
    }

    /// Logs why the pass ended early, if it did.
    pub fn log_early_end(&self) {
        if let Some(error) = &self.state_failure {
            tracing::error!("the pass stopped early: {}", Escaped(error));
        }
        if let Some(OrphanSection::Failed { error }) = &self.summary.orphans {
            tracing::error!(
                "the orphan search failed, so no orphan is known: {}",
                error.escape_debug()
            );
        }
        if let Some(signal) = self.interrupted {
            tracing::warn!(
                "interrupted by {}: records not reached are deferred",
                signal.name()
            );
        }
        for lease in self.summary.leases_kept.iter().flatten() {
            tracing::warn!(
                game_id = %lease.game_id,
                until = %lease.until,
                "this run keeps its lease on game {} until {}: the runtime manager cannot take \
                 the game before then",
                lease.game_id.escape_debug(),
                lease.until
            );
        }
    }

    /// Logs the end of the pass with its counts as fields (`REMOVED`, `FAILED`, ...,
    /// `EXIT_STATUS`), for the journal only (see [`logging::JOURNAL_ONLY`]): at error priority
    /// when the run's exit status alerts, a warning when a signal ended it, else information.
    pub fn log_end(&self) {
        let counts = &self.summary.counts;
        let orphans = match &self.summary.orphans {
            Some(OrphanSection::Searched { orphan_counts, .. }) => Some(orphan_counts),
            _ => None,
        };
        let status = self.exit_status();
        let level = match status {
            ExitStatus::Success => tracing::Level::INFO,
            ExitStatus::Interrupted | ExitStatus::Terminated => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        };
        logging::event_at!(
            target: logging::JOURNAL_ONLY,
            level,
            dry_run = self.summary.dry_run,
            stopped = counts.stopped,
            expired = counts.expired,
            removed = counts.removed,
            replay_no_op = counts.replay_no_op,
            conflict = counts.conflict,
            failed = counts.failed,
            deferred = counts.deferred,
            orphans_found = orphans.map(|orphans| orphans.found),
            orphans_removed = orphans.map(|orphans| orphans.removed),
            orphans_failed = orphans.map(|orphans| orphans.failed),
            leases_kept = self.summary.leases_kept.as_ref().map(Vec::len),
            exit_status = status.code(),
            "{} finished: {} expired of {} stopped: {} removed, {} replay_no_op, {} conflict, {} \
             failed, {} deferred; exit status {}",
            if self.summary.dry_run { "dry run" } else { "pass" },
            counts.expired,
            counts.stopped,
            counts.removed,
            counts.replay_no_op,
            counts.conflict,
            counts.failed,
            counts.deferred,
            status.code()
        );
    }
}

/// Writes `--metrics-file` for a real run (a dry run changes nothing, metrics included). A
/// failure to write is logged; it does not change the exit status of the pass.
pub fn write_metrics(
    config: &Config,
    duration: Duration,
    exit_status: ExitStatus,
    report: Option<&Report>,
) {
    let Some(path) = &config.metrics_file else {
        return;
    };
    if config.dry_run {
        tracing::info!(
            "dry run: the metrics file {} is left as it is",
            path.display()
        );
        return;
    }
    let run = RunMetrics {
        finished_at: SystemTime::now(),
        duration,
        exit_status,
        retention: config.retention,
        counts: report.map(|report| report.summary.counts),
        oldest_waiting_ms: report.and_then(|report| report.oldest_waiting_ms),
        // A failed orphan search claims no count: its series are left out.
        orphans: report.and_then(|report| match report.summary.orphans.as_ref()? {
            OrphanSection::Searched { orphan_counts, .. } => Some(metrics::OrphanMetrics {
                found: orphan_counts.found,
                removed: orphan_counts.removed,
                oldest_since_ms: report.oldest_orphan_since_ms,
            }),
            OrphanSection::Failed { .. } => None,
        }),
    };
    if let Err(error) = metrics::write(path, &run) {
        tracing::error!("cannot write the metrics file {}: {error}", path.display());
    }
}

/// The times of a pass, taken once.
struct PassTime {
    started: SystemTime,
    now_ms: i64,
    threshold_ms: i64,
}

impl PassTime {
    fn threshold(&self) -> String {
        format_epoch_ms(self.threshold_ms.max(0)).unwrap_or_default()
    }
}

/// What a pass read from the state file before acting.
struct StateRead {
    store: Store,
    stopped: u64,
    candidates: Vec<Candidate>,
    /// The leases in force, for a dry run's prediction.
    leases: HashMap<FieldValue, LiveLease>,
    /// How many times the file was opened and read to get this read (see [`read_state`]).
    attempts: usize,
}

/// How often a dry run reads a file again that was written while it read it.
const CONSISTENT_READ_ATTEMPTS: usize = 3;

/// Runs one pass as configured. `stop` is shared with the signal listener; the pass reports its
/// jobs to `progress`.
pub async fn run(
    config: &Config,
    stop: Arc<Stop>,
    progress: Arc<dyn Progress>,
) -> Result<Report, RunError> {
    let started = SystemTime::now();
    let now_ms = epoch_ms(started);
    let retention_ms = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let mut time = PassTime {
        started,
        now_ms,
        threshold_ms: now_ms.saturating_sub(retention_ms),
    };
    let (plan, owner_label, orphan_mode) = load_plan(config, &mut time)?;
    let (read, ()) = read_state(config, plan.as_ref(), &time, &stop, None, |_| Ok(()))
        .map_err(|error| ended_by_signal(error, config, &stop))?;
    let orphans_on = orphan_mode != OrphanMode::Off && owner_label.is_some();
    let interrupted = |read: StateRead| Ok(not_reached(config, read, orphans_on, &time, &stop));
    let docker = match connect(config, &stop).await {
        Ok(docker) => docker,
        // The records were selected: each is reported, not reached.
        Err(DockerError::Interrupted { .. }) => return interrupted(read),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        stopped = read.stopped,
        expired = read.candidates.len(),
        dry_run = config.dry_run,
        from_plan = plan.is_some(),
        "selected the expired stopped records"
    );
    let orphan_pass = match (orphan_mode, &owner_label) {
        (OrphanMode::Off, _) | (_, None) => None,
        (mode, Some(key)) => Some(OrphanPass {
            mode,
            key,
            threshold_ms: time.threshold_ms,
            planned: plan.as_ref().map(|plan| plan.orphans.as_slice()),
        }),
    };
    let records_need_listing = names_a_container(&read.candidates, config.max_removals)
        && (config.dry_run || owner_label.is_some());
    // A dry run lists the daemon's containers once: every container where its records need
    // them, which serves its orphans too, else only the labelled ones for its orphans. A real
    // run's orphan pass lists the labelled containers again after its records, which changed
    // what the daemon holds (see `OrphanPass::find`).
    let listing = if records_need_listing {
        match docker.list_all().await {
            Ok(listed) => Listing::All(ContainerIndex::new(listed)),
            Err(reason) => match docker.list_error(reason) {
                DockerError::Interrupted { .. } => return interrupted(read),
                error => return Err(error.into()),
            },
        }
    } else {
        match (&orphan_pass, config.dry_run) {
            (Some(orphans), true) => Listing::Labelled(docker.list_labelled(orphans.key).await),
            _ => Listing::Nothing,
        }
    };
    let pass = Pass {
        config,
        docker: &docker,
        plan: plan.as_ref(),
        time: &time,
        stop: &stop,
        orphans: orphan_pass.as_ref(),
        settings: WorkerSettings {
            holder: worker::run_holder().to_owned(),
            lease_ttl: config.lease_ttl,
            lock_wait: config.lock_wait,
            owner_label: owner_label.clone(),
            docker_timeout: config.docker_timeout,
            concurrency: config.concurrency.get(),
            progress,
        },
    };
    let (stopped, candidates, outcomes, orphans) = if config.dry_run {
        let (read, outcomes, orphans) = pass.predict(read, listing).await?;
        if let Some(path) = &config.plan_out {
            let planned_orphans = match &orphans {
                Some(Ok(handled)) if orphan_mode == OrphanMode::Remove => handled.as_slice(),
                _ => &[],
            };
            write_plan(
                config,
                path,
                &read.candidates,
                &outcomes,
                planned_orphans,
                &time,
                &stop,
            )?;
        }
        (read.stopped, read.candidates, outcomes, orphans)
    } else {
        let containers = match listing {
            Listing::All(index) => Some(index),
            Listing::Labelled(_) | Listing::Nothing => None,
        };
        let (outcomes, orphans) = pass
            .act(read.store, &read.candidates, containers.as_ref(), &stop)
            .await?;
        (read.stopped, read.candidates, outcomes, orphans)
    };
    Ok(report(
        config, stopped, candidates, outcomes, orphans, &time, &stop,
    ))
}

/// The listing a pass takes at its start, if it needs one.
enum Listing {
    /// None: no record needs one, and a real run's orphan pass lists later.
    Nothing,
    /// Every container: for the records of a dry run or of `--owner-label`, and the orphans of
    /// a dry run.
    All(ContainerIndex),
    /// The containers with the owner label, for the orphans of a dry run whose records need no
    /// listing; or why the listing failed, which fails the orphan search only.
    Labelled(Result<Vec<ContainerInfo>, String>),
}

/// Whether any of the candidates acted on under `--max-removals` names a container: only then do
/// the records need the daemon's listing, and a backlog of records without one is handled
/// without asking the daemon anything.
fn names_a_container(candidates: &[Candidate], max_removals: Option<usize>) -> bool {
    candidates[..worker::acted_on(candidates.len(), max_removals)]
        .iter()
        .any(|candidate| matches!(candidate.target, Target::Container(_)))
}

/// Connects to the daemon (the preflight) and logs what it learnt.
async fn connect(config: &Config, stop: &Arc<Stop>) -> Result<DockerClient, DockerError> {
    let docker =
        DockerClient::connect(&config.docker_host, config.docker_timeout, Arc::clone(stop)).await?;
    let daemon = docker.daemon();
    tracing::info!(
        host = docker.host(),
        engine = %daemon.engine_version,
        server_api = %daemon.server_api,
        api = %daemon.wire_api,
        "{} answered the preflight; requests use API {}",
        Escaped(&daemon.engine_version),
        daemon.wire_api
    );
    Ok(docker)
}

/// Loads the plan to apply, if there is one, with the owner label and orphan mode the run must
/// use. A plan is re-checked against its own threshold, owner label and orphan mode, whatever
/// this run's are: it can only name what was expired, owned and leaked when it was made.
fn load_plan(
    config: &Config,
    time: &mut PassTime,
) -> Result<(Option<Plan>, Option<String>, OrphanMode), RunError> {
    let Some(path) = &config.apply_plan else {
        let mode = config.orphans.unwrap_or(OrphanMode::Off);
        return Ok((None, config.owner_label.clone(), mode));
    };
    let plan = Plan::load(
        path,
        &ApplyContext {
            state: &config.state,
            retention_seconds: config.retention.as_secs(),
            owner_label: config.owner_label.as_deref(),
            threshold_ms: time.threshold_ms,
            orphan_mode: config.orphans,
        },
    )?;
    time.threshold_ms = plan.threshold_ms;
    let (owner_label, mode) = (plan.owner_label.clone(), plan.orphan_mode);
    Ok((Some(plan), owner_label, mode))
}

/// What the orphan pass of a run gave: the orphans handled, or why it could not look.
type OrphanResults = Option<Result<Vec<HandledOrphan>, String>>;

/// A pass once its state is read and the daemon answered: the records' jobs, then the orphans.
struct Pass<'a> {
    config: &'a Config,
    docker: &'a DockerClient,
    /// The plan being applied, if one is.
    plan: Option<&'a Plan>,
    /// The pass's times; the threshold is the plan's under a plan.
    time: &'a PassTime,
    /// Why the pass stops, shared with the signal listener.
    stop: &'a Arc<Stop>,
    orphans: Option<&'a OrphanPass<'a>>,
    settings: WorkerSettings,
}

impl Pass<'_> {
    /// The dry run: predicts every job's result from what was read and the one listing; changes
    /// nothing. The orphans' records are read from the same snapshot of the state file as the
    /// candidates and the leases, so where the file was written meanwhile all of it is read
    /// again (see [`read_state`]), and the predictions are made from the read that held.
    async fn predict(
        &self,
        read: StateRead,
        listing: Listing,
    ) -> Result<(StateRead, Vec<Outcome>, OrphanResults), RunError> {
        let listed = match &listing {
            Listing::All(index) => Some(Ok(index.containers())),
            Listing::Labelled(Ok(labelled)) => Some(Ok(labelled.as_slice())),
            Listing::Labelled(Err(reason)) => Some(Err(format!(
                "cannot list the containers labelled {}: {reason}",
                self.settings.owner_label.as_deref().unwrap_or_default()
            ))),
            Listing::Nothing => None,
        };
        let (read, orphan_records) = match (self.orphans, listed) {
            (Some(orphans), Some(Ok(listed))) => {
                let games = orphans.games_named(listed);
                let (read, records) = read_state(
                    self.config,
                    self.plan,
                    self.time,
                    self.stop,
                    Some(read),
                    |store| store.records_of(&games),
                )?;
                (read, Some(Ok(records)))
            }
            (Some(_), Some(Err(reason))) => (read, Some(Err(reason))),
            _ => (read, None),
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
        let acted = worker::acted_on(read.candidates.len(), self.config.max_removals);
        let second_looks = match &containers {
            Some(index) => {
                pass::look_again_at_removals(
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
        let outcomes = pass::predict_all(
            read.candidates
                .iter()
                .map(|candidate| (&candidate.row.game_id, &candidate.target, JobKind::Record)),
            &read.leases,
            containers.as_ref(),
            &second_looks,
            self.settings.owner_label.as_deref(),
            self.config.max_removals,
        );
        let orphans =
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
        Ok((read, outcomes, orphans))
    }

    /// The real run: the records' jobs, then the orphans', through one worker and one writer.
    /// `containers` is the listing of the start of the pass, for `--owner-label`.
    async fn act(
        &self,
        store: Store,
        candidates: &[Candidate],
        containers: Option<&ContainerIndex>,
        stop: &Stop,
    ) -> Result<(Vec<Outcome>, OrphanResults), RunError> {
        let writer = store.into_writer(self.config.op_source.clone())?;
        let outcomes = worker::run_jobs(
            pass::record_jobs(candidates, self.time.threshold_ms),
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
                        .find(self.docker, &writer, self.settings.concurrency)
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

/// The error of a start-up read whose wait for the lock a signal ended: nothing was read, and
/// the run ends with the signal's status. Any other error is returned as it is.
fn ended_by_signal(error: RunError, config: &Config, stop: &Stop) -> RunError {
    match (&error, stop.signalled()) {
        (RunError::State(state), Some(signal)) if state.is_busy() => RunError::Interrupted {
            signal,
            state: config.state.clone(),
        },
        _ => error,
    }
}

/// The report of a pass that a signal stopped after it selected its records and before it
/// acted on any (during the preflight or the listing): every record is `deferred`, and the
/// orphans, if looked for, were not.
fn not_reached(
    config: &Config,
    read: StateRead,
    orphans_on: bool,
    time: &PassTime,
    stop: &Stop,
) -> Report {
    let reason = stop.reason().unwrap_or_default();
    let orphans = orphans_on.then(|| Err(reason.clone()));
    let deferred = read
        .candidates
        .iter()
        .map(|_| Outcome::deferred(reason.clone()))
        .collect();
    report(
        config,
        read.stopped,
        read.candidates,
        deferred,
        orphans,
        time,
        stop,
    )
}

/// The orphan search's result, unless a signal came during it: the calls it had not made were
/// not made, so what it found is not every orphan.
fn cut_short<T>(found: Result<T, String>, stop: &Stop) -> Result<T, String> {
    match stop.signalled() {
        Some(signal) => Err(format!(
            "the search for orphans was cut short by {}",
            signal.name()
        )),
        None => found,
    }
}

/// Opens the state file and reads what the pass needs: the stopped count, the candidates and
/// (for a dry run) the leases, then what `also` reads from the same open file (the orphans'
/// records of a dry run). `earlier` is a read already made to read more from; it counts with
/// the attempts it took.
///
/// A dry run that read an immutable snapshot checks that nobody wrote the file meanwhile, after
/// the last of these reads; where somebody did, it opens the file again and reads all of it
/// again, and gives up after [`CONSISTENT_READ_ATTEMPTS`] attempts in all rather than predict
/// from a torn read.
fn read_state<T>(
    config: &Config,
    plan: Option<&Plan>,
    time: &PassTime,
    stop: &Arc<Stop>,
    earlier: Option<StateRead>,
    also: impl Fn(&Store) -> Result<T, StoreError>,
) -> Result<(StateRead, T), RunError> {
    let mut attempt = earlier.as_ref().map_or(1, |read| read.attempts);
    let mut earlier = earlier;
    loop {
        let read = match earlier.take() {
            Some(read) => read,
            None => open_and_read(config, plan, time, stop, attempt)?,
        };
        let more = also(&read.store)?;
        match read.store.check_read_consistent(attempt) {
            Ok(()) => return Ok((read, more)),
            Err(error) if attempt >= CONSISTENT_READ_ATTEMPTS => return Err(error.into()),
            Err(_) => tracing::info!(
                path = %config.state.display(),
                "the state file was written while it was read; reading it again"
            ),
        }
        attempt += 1;
    }
}

/// One attempt of [`read_state`]: opens the state file and reads the stopped count, the
/// candidates (the plan's, under a plan) and, for a dry run, the leases in force.
fn open_and_read(
    config: &Config,
    plan: Option<&Plan>,
    time: &PassTime,
    stop: &Arc<Stop>,
    attempt: usize,
) -> Result<StateRead, RunError> {
    let access = if config.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut store = Store::open(&config.state, access, config.lock_wait, stop)?;
    let (stopped, candidates) = match plan {
        None => {
            let selection = store.select(time.threshold_ms)?;
            (selection.stopped, selection.candidates)
        }
        Some(plan) => (store.count_stopped()?, plan.candidates()),
    };
    let leases = if config.dry_run {
        store.live_leases(time.now_ms)?
    } else {
        HashMap::new()
    };
    Ok(StateRead {
        store,
        stopped,
        candidates,
        leases,
        attempts: attempt,
    })
}

/// Writes the dry run's plan, unless a signal cut the dry run short: a plan must name exactly
/// what a real run would act on, and an interrupted dry run may not have looked at everything.
fn write_plan(
    config: &Config,
    path: &Path,
    candidates: &[Candidate],
    outcomes: &[Outcome],
    orphans: &[HandledOrphan],
    time: &PassTime,
    stop: &Stop,
) -> Result<(), RunError> {
    if let Some(signal) = stop.signalled() {
        tracing::warn!(
            plan = %path.display(),
            "no plan written: the dry run was interrupted by {}",
            signal.name()
        );
        return Ok(());
    }
    let acted = worker::acted_on(candidates.len(), config.max_removals);
    let acted_on: Vec<_> = candidates.iter().zip(outcomes).take(acted).collect();
    let context = PlanContext {
        state: &config.state,
        retention_seconds: config.retention.as_secs(),
        created_at: format_time(time.started),
        threshold: time.threshold(),
        threshold_ms: time.threshold_ms,
        owner_label: config.owner_label.as_deref(),
        orphan_mode: config.orphans.unwrap_or(OrphanMode::Off),
    };
    // Only the orphans a real run would act on: not those over --max-removals, nor those whose
    // label names no game.
    let planned_orphans: Vec<(&Orphan, &Outcome)> = orphans
        .iter()
        .filter_map(|handled| Some((&handled.orphan, handled.outcome.as_ref()?)))
        .filter(|(orphan, outcome)| orphan.game.is_ok() && outcome.result != ResultKind::Deferred)
        .collect();
    let plan = Plan::new(&context, &acted_on, &planned_orphans)?;
    plan.save(path)?;
    tracing::info!(
        plan = %path.display(),
        records = acted_on.len(),
        orphans = planned_orphans.len(),
        "plan written"
    );
    Ok(())
}

/// Assembles the report of a pass that ran.
fn report(
    config: &Config,
    stopped: u64,
    candidates: Vec<Candidate>,
    outcomes: Vec<Outcome>,
    orphans: Option<Result<Vec<HandledOrphan>, String>>,
    time: &PassTime,
    stop: &Stop,
) -> Report {
    let orphans_kept: Vec<KeptLease> = orphans
        .iter()
        .flat_map(|handled| handled.iter().flatten())
        .filter_map(|handled| {
            let until = handled.outcome.as_ref()?.lease_kept_until?;
            Some(KeptLease {
                game_id: handled.orphan.label.clone(),
                until: Timestamp::from_epoch_ms(until)?,
            })
        })
        .collect();
    let oldest_orphan_since_ms = orphans
        .iter()
        .flat_map(|handled| handled.iter().flatten())
        .filter_map(|handled| handled.orphan.since_ms())
        .min();
    let orphans = orphans.map(|orphans| match orphans {
        Ok(handled) => OrphanSection::new(
            handled
                .into_iter()
                .map(|handled| OrphanReport {
                    container_id: handled.orphan.info.id,
                    game_id: handled.orphan.label,
                    state: handled.orphan.info.state,
                    finished_at: handled.orphan.info.finished_ms.and_then(format_epoch_ms),
                    result: handled.outcome.as_ref().map(|outcome| outcome.result),
                    error_code: handled
                        .outcome
                        .as_ref()
                        .and_then(|outcome| outcome.error_code),
                    error_message: handled
                        .outcome
                        .and_then(|outcome| outcome.error_message.map(Cow::into_owned)),
                })
                .collect(),
        ),
        Err(error) => OrphanSection::Failed { error },
    });
    let oldest_waiting_ms = candidates
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| {
            matches!(
                outcome.result,
                ResultKind::Conflict | ResultKind::Failed | ResultKind::Deferred
            )
        })
        .filter_map(|(candidate, _)| candidate.last_op_at)
        .min();
    let mut leases_kept = Vec::new();
    let records: Vec<RecordReport> = candidates
        .into_iter()
        .zip(outcomes)
        .map(|(candidate, outcome)| {
            let kept = outcome.lease_kept_until.and_then(Timestamp::from_epoch_ms);
            let record = RecordReport::new(candidate, outcome);
            if let Some(until) = kept {
                leases_kept.push(KeptLease {
                    game_id: record.game_id.clone(),
                    until,
                });
            }
            record
        })
        .collect();
    leases_kept.extend(orphans_kept);
    let summary = Summary {
        dry_run: config.dry_run,
        state: value::escape_invalid_utf8(config.state.as_os_str().as_encoded_bytes()).into_owned(),
        retention_seconds: config.retention.as_secs(),
        threshold: time.threshold(),
        started_at: format_time(time.started),
        finished_at: format_time(SystemTime::now()),
        counts: Counts::tally(stopped, &records),
        records,
        orphans,
        // A dry run takes no lease.
        leases_kept: (!config.dry_run).then_some(leases_kept),
    };
    Report {
        summary,
        interrupted: stop.signalled(),
        state_failure: stop.take_state_failure(),
        oldest_waiting_ms,
        oldest_orphan_since_ms,
    }
}

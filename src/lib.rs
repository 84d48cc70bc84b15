//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is stated in `docs/contract.md`.
//!
//! [`run`] is one pass; `main.rs` only parses, sets up logging, calls it, prints the summary,
//! writes the metrics and maps the outcome to an exit status.

pub mod cli;
pub mod config;
pub mod exit;
pub mod stop;

pub(crate) mod candidate;
pub(crate) mod docker;
pub(crate) mod engine;
pub(crate) mod job;
pub(crate) mod metrics;
pub(crate) mod outcome;
pub(crate) mod output_file;
pub(crate) mod pass;
pub(crate) mod plan;
pub(crate) mod store;
pub(crate) mod summary;
pub(crate) mod time;
pub(crate) mod value;
pub(crate) mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::candidate::Candidate;
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::docker::{DockerClient, DockerError};
use crate::engine::ContainerIndex;
use crate::exit::ExitStatus;
use crate::metrics::RunMetrics;
use crate::outcome::{LiveLease, Outcome, ResultKind};
use crate::plan::{ApplyContext, Plan, PlanContext, PlanError};
use crate::stop::{Signal, Stop};
use crate::store::{Access, Store, StoreError};
use crate::summary::{Counts, RecordReport, Summary};
use crate::time::{epoch_ms, format_epoch_ms, format_time};
use crate::value::FieldValue;
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
}

impl RunError {
    /// The exit status of a pass that could not start.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::State(error) if error.is_busy() => ExitStatus::StateBusy,
            RunError::State(_) | RunError::Plan(_) => ExitStatus::Usage,
            RunError::Docker(_) => ExitStatus::DockerUnavailable,
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

    /// The summary for stdout, in the configured format.
    #[must_use]
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Text => summary::render_text(&self.summary),
            OutputFormat::Json => summary::render_json(&self.summary),
        }
    }

    /// Logs why the pass ended early, if it did.
    pub fn log_early_end(&self) {
        if let Some(error) = &self.state_failure {
            tracing::error!("the pass stopped early: {error}");
        }
        if let Some(signal) = self.interrupted {
            tracing::warn!(
                "interrupted by {}: records not reached are deferred",
                signal.name()
            );
        }
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
        counts: report.map(|report| report.summary.counts),
        oldest_waiting_ms: report.and_then(|report| report.oldest_waiting_ms),
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
}

/// How often a dry run reads a file again that was written while it read it.
const CONSISTENT_READ_ATTEMPTS: usize = 3;

/// Runs one pass as configured. `stop` is shared with the signal listener.
pub async fn run(config: &Config, stop: Arc<Stop>) -> Result<Report, RunError> {
    let started = SystemTime::now();
    let now_ms = epoch_ms(started);
    let retention_ms = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let mut time = PassTime {
        started,
        now_ms,
        threshold_ms: now_ms.saturating_sub(retention_ms),
    };
    let plan = match &config.apply_plan {
        Some(path) => Some(Plan::load(
            path,
            &ApplyContext {
                state: &config.state,
                retention_seconds: config.retention.as_secs(),
                owner_label: config.owner_label.as_deref(),
                threshold_ms: time.threshold_ms,
            },
        )?),
        None => None,
    };
    // A plan is re-checked against its own threshold and owner label, whatever this run's are:
    // it can only name records that were expired when it was made.
    let owner_label = match &plan {
        Some(plan) => plan.owner_label.clone(),
        None => config.owner_label.clone(),
    };
    if let Some(plan) = &plan {
        time.threshold_ms = plan.threshold_ms;
    }
    let read = read_state(config, plan.as_ref(), &time)?;
    let docker = DockerClient::connect(&config.docker_host, config.docker_timeout).await?;
    let daemon = docker.daemon();
    tracing::info!(
        host = docker.host(),
        engine = %daemon.engine_version,
        server_api = %daemon.server_api,
        api = %daemon.wire_api,
        "Docker preflight passed; requests use API {}", daemon.wire_api
    );
    tracing::info!(
        stopped = read.stopped,
        expired = read.candidates.len(),
        dry_run = config.dry_run,
        from_plan = plan.is_some(),
        "selected the expired stopped records"
    );
    let jobs = pass::record_jobs(&read.candidates, time.threshold_ms);
    let acted = worker::acted_on(jobs.len(), config.max_removals);
    let needs_listing = acted > 0 && (config.dry_run || owner_label.is_some());
    let containers = if needs_listing {
        Some(ContainerIndex::new(docker.list().await?))
    } else {
        None
    };
    let outcomes = if config.dry_run {
        let outcomes = pass::predict_all(
            &jobs,
            &read.leases,
            containers.as_ref(),
            owner_label.as_deref(),
            config.max_removals,
        );
        // No log line per prediction: the summary on stdout lists every one, and 10,000 such
        // lines cost a large dry run about a fifth of its time (docs/benchmark.md).
        if let Some(path) = &config.plan_out {
            write_plan(config, path, &read.candidates, &outcomes, &time)?;
        }
        outcomes
    } else {
        let writer = read.store.into_writer(config.op_source.clone());
        let settings = WorkerSettings {
            holder: worker::holder_name(),
            lease_ttl: config.lease_ttl,
            owner_label,
            docker_timeout: config.docker_timeout,
            concurrency: config.concurrency.get(),
        };
        let outcomes = worker::run_jobs(
            &jobs,
            config.max_removals,
            &docker,
            &writer,
            containers.as_ref(),
            &settings,
            &stop,
        )
        .await;
        writer.close();
        outcomes
    };
    Ok(report(
        config,
        read.stopped,
        &read.candidates,
        outcomes,
        &time,
        &stop,
    ))
}

/// Opens the state file and reads what the pass needs. A dry run that read an immutable
/// snapshot reads again if the file was written meanwhile, and gives up after a few attempts
/// rather than predict from a torn read.
fn read_state(
    config: &Config,
    plan: Option<&Plan>,
    time: &PassTime,
) -> Result<StateRead, RunError> {
    let access = if config.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    for _ in 0..CONSISTENT_READ_ATTEMPTS {
        let mut store = Store::open(&config.state, access, config.lock_wait)?;
        let (stopped, candidates) = match plan {
            None => {
                let selection = store.select(time.threshold_ms)?;
                (
                    selection.stopped,
                    candidate::select(selection.rows, time.threshold_ms),
                )
            }
            Some(plan) => (store.count_stopped()?, plan.candidates()),
        };
        let leases = if config.dry_run {
            store.live_leases(time.now_ms)?
        } else {
            HashMap::new()
        };
        if store.read_was_consistent() {
            return Ok(StateRead {
                store,
                stopped,
                candidates,
                leases,
            });
        }
        tracing::info!(
            path = %config.state.display(),
            "the state file was written while it was read; reading it again"
        );
    }
    Err(StoreError::Unreadable {
        path: config.state.clone(),
        reason: format!(
            "it was written during each of {CONSISTENT_READ_ATTEMPTS} attempts to read it \
             without locks; try again"
        ),
    }
    .into())
}

fn write_plan(
    config: &Config,
    path: &Path,
    candidates: &[Candidate],
    outcomes: &[Outcome],
    time: &PassTime,
) -> Result<(), RunError> {
    let acted = worker::acted_on(candidates.len(), config.max_removals);
    let acted_on: Vec<_> = candidates.iter().zip(outcomes).take(acted).collect();
    let context = PlanContext {
        state: &config.state,
        retention_seconds: config.retention.as_secs(),
        created_at: format_time(time.started),
        threshold: time.threshold(),
        threshold_ms: time.threshold_ms,
        owner_label: config.owner_label.as_deref(),
    };
    let plan = Plan::new(&context, &acted_on)?;
    plan.save(path)?;
    tracing::info!(plan = %path.display(), records = acted_on.len(), "plan written");
    Ok(())
}

/// Assembles the report of a pass that ran.
fn report(
    config: &Config,
    stopped: u64,
    candidates: &[Candidate],
    outcomes: Vec<Outcome>,
    time: &PassTime,
    stop: &Stop,
) -> Report {
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
    let records: Vec<RecordReport> = candidates
        .iter()
        .zip(outcomes)
        .map(|(candidate, outcome)| RecordReport::new(candidate, outcome))
        .collect();
    let summary = Summary {
        dry_run: config.dry_run,
        state: value::escape_invalid_utf8(config.state.as_os_str().as_encoded_bytes()).into_owned(),
        retention_seconds: config.retention.as_secs(),
        threshold: time.threshold(),
        started_at: format_time(time.started),
        finished_at: format_time(SystemTime::now()),
        counts: Counts::tally(stopped, &records),
        records,
    };
    Report {
        summary,
        interrupted: stop.signalled(),
        state_failure: stop.take_state_failure(),
        oldest_waiting_ms,
    }
}

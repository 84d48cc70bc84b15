//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is `CONTRACT.md` version 1, restated in the README.
//!
//! [`run`] is one pass; `main.rs` only parses, sets up logging, calls it, prints the summary,
//! writes the metrics and maps the outcome to an exit status.

pub mod candidate;
pub mod cli;
pub mod config;
pub mod docker;
pub mod engine;
pub mod metrics;
pub mod outcome;
pub mod output_file;
pub mod pass;
pub mod plan;
pub mod store;
pub mod summary;

use std::sync::Arc;
use std::time::SystemTime;

use thiserror::Error;

use crate::candidate::Candidate;
use crate::config::Config;
use crate::docker::{DockerClient, DockerError};
use crate::engine::ContainerIndex;
use crate::outcome::{Outcome, ResultKind};
use crate::pass::{PassSettings, Signal, Stop};
use crate::plan::{Plan, PlanError};
use crate::store::{Access, Store, StoreError};
use crate::summary::{epoch_ms, format_epoch_ms, format_time, Counts, RecordReport, Summary};

/// Exit status: the pass finished and no record failed.
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one record failed (or would, in a dry run).
pub const EXIT_FAILED_RECORDS: u8 = 1;
/// Exit status: bad invocation or unusable state file; nothing changed.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the Docker daemon is unreachable or unusable at start; nothing changed.
pub const EXIT_DOCKER_UNAVAILABLE: u8 = 69;
/// Exit status: the state file stayed locked past the wait; try again later.
pub const EXIT_STATE_BUSY: u8 = 75;

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
    /// The exit status of contract §6.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::State(error) if error.is_busy() => EXIT_STATE_BUSY,
            RunError::State(_) | RunError::Plan(_) => EXIT_USAGE,
            RunError::Docker(_) => EXIT_DOCKER_UNAVAILABLE,
        }
    }
}

/// A pass that ran to its end, possibly cut short by a signal or a state-file failure.
#[derive(Debug)]
pub struct Report {
    /// The summary to print.
    pub summary: Summary,
    /// The signal that stopped the pass, if any.
    pub interrupted: Option<Signal>,
    /// The state-file failure that stopped the pass, if any.
    pub state_failure: Option<StoreError>,
    /// The `last_op_at` of the oldest expired record still waiting after the pass.
    pub oldest_waiting_ms: Option<i64>,
}

impl Report {
    /// The exit status of contract §6.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        if let Some(signal) = self.interrupted {
            signal.exit_code()
        } else if self.state_failure.as_ref().is_some_and(StoreError::is_busy) {
            EXIT_STATE_BUSY
        } else if self.summary.has_failures() || self.state_failure.is_some() {
            EXIT_FAILED_RECORDS
        } else {
            EXIT_OK
        }
    }
}

/// Runs one pass as configured. `stop` is shared with the signal listener.
pub async fn run(config: &Config, stop: Arc<Stop>) -> Result<Report, RunError> {
    let access = if config.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut store = Store::open(&config.state, access, config.lock_wait)?;
    let plan = match &config.apply_plan {
        Some(path) => Some(Plan::load(path, &config.state, config.retention.as_secs())?),
        None => None,
    };
    let docker = DockerClient::connect(&config.docker_host, config.docker_timeout).await?;
    let daemon = docker.daemon();
    tracing::info!(
        host = docker.host(),
        engine = %daemon.engine_version,
        server_api = %daemon.server_api,
        api = %daemon.wire_api,
        "Docker preflight passed; requests use API {}", daemon.wire_api
    );

    let started = SystemTime::now();
    let now_ms = epoch_ms(started);
    let retention_ms = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let threshold_ms = now_ms.saturating_sub(retention_ms);
    let (stopped, candidates) = match &plan {
        None => {
            let selection = store.select(threshold_ms)?;
            (
                selection.stopped,
                candidate::select(selection.rows, threshold_ms),
            )
        }
        Some(plan) => (store.count_stopped()?, plan.candidates()),
    };
    tracing::info!(
        stopped,
        expired = candidates.len(),
        dry_run = config.dry_run,
        from_plan = plan.is_some(),
        "selected the expired stopped records"
    );

    let acted = pass::acted_on(candidates.len(), config.max_removals);
    let needs_listing = acted > 0 && (config.dry_run || config.owner_label.is_some());
    let containers = if needs_listing {
        Some(ContainerIndex::new(docker.list().await?))
    } else {
        None
    };
    let pass_time = PassTime {
        started,
        now_ms,
        threshold_ms,
    };
    let outcomes = if config.dry_run {
        predict(config, &store, &candidates, containers.as_ref(), &pass_time)?
    } else {
        let writer = store.into_writer(config.op_source.clone());
        let settings = PassSettings {
            holder: pass::holder_name(),
            lease_ttl: config.lease_ttl,
            owner_label: config.owner_label.clone(),
            docker_timeout: config.docker_timeout,
            concurrency: config.concurrency.get(),
        };
        let outcomes = pass::remove_expired(
            &candidates,
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
        stopped,
        &candidates,
        outcomes,
        &pass_time,
        &stop,
    ))
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

/// The dry run: predicts every candidate's result, and writes the plan when asked.
fn predict(
    config: &Config,
    store: &Store,
    candidates: &[Candidate],
    containers: Option<&ContainerIndex>,
    time: &PassTime,
) -> Result<Vec<Outcome>, RunError> {
    let leases = store.live_leases(time.now_ms)?;
    let outcomes = pass::predict_all(
        candidates,
        &leases,
        containers,
        config.owner_label.as_deref(),
        config.max_removals,
    );
    // No log line per prediction: the summary on stdout lists every one, and 10,000 such lines
    // cost a large dry run about a fifth of its time (docs/benchmark.md).
    if let Some(path) = &config.plan_out {
        let acted = pass::acted_on(candidates.len(), config.max_removals);
        let acted_on: Vec<_> = candidates.iter().zip(&outcomes).take(acted).collect();
        let plan = Plan::new(
            &config.state,
            config.retention.as_secs(),
            format_time(time.started),
            time.threshold(),
            &acted_on,
        )?;
        plan.save(path)?;
        tracing::info!(plan = %path.display(), records = acted_on.len(), "plan written");
    }
    Ok(outcomes)
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
        state: config.state.clone(),
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

//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is `CONTRACT.md` version 1, restated in the README.
//!
//! [`run`] is one pass; `main.rs` only parses, sets up logging, calls it and maps the outcome to
//! an exit status.

pub mod candidate;
pub mod cli;
pub mod config;
pub mod docker;
pub mod engine;
pub mod outcome;
pub mod pass;
pub mod store;
pub mod summary;

use std::sync::Arc;
use std::time::SystemTime;

use thiserror::Error;

use crate::config::Config;
use crate::docker::{DockerClient, DockerError};
use crate::engine::ContainerIndex;
use crate::pass::{PassSettings, Signal, Stop};
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
}

impl RunError {
    /// The exit status of contract §6.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::State(error) if error.is_busy() => EXIT_STATE_BUSY,
            RunError::State(_) => EXIT_USAGE,
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
    let selection = store.select(threshold_ms)?;
    let candidates = candidate::select(selection.rows, threshold_ms);
    tracing::info!(
        stopped = selection.stopped,
        expired = candidates.len(),
        dry_run = config.dry_run,
        "selected the expired stopped records"
    );

    let acted = pass::acted_on(candidates.len(), config.max_removals);
    let needs_listing = acted > 0 && (config.dry_run || config.owner_label.is_some());
    let containers = if needs_listing {
        Some(ContainerIndex::new(docker.list().await?))
    } else {
        None
    };

    let outcomes = if config.dry_run {
        let leases = store.live_leases(now_ms)?;
        pass::predict_all(
            &candidates,
            &leases,
            containers.as_ref(),
            config.owner_label.as_deref(),
            config.max_removals,
        )
    } else {
        let settings = PassSettings {
            holder: pass::holder_name(),
            lease_ttl: config.lease_ttl,
            owner_label: config.owner_label.clone(),
            docker_timeout: config.docker_timeout,
            concurrency: config.concurrency.get(),
        };
        let writer = store.into_writer(config.op_source.clone());
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

    let records: Vec<RecordReport> = candidates
        .iter()
        .zip(outcomes)
        .map(|(candidate, outcome)| RecordReport::new(candidate, outcome))
        .collect();
    let summary = Summary {
        dry_run: config.dry_run,
        state: config.state.clone(),
        retention_seconds: config.retention.as_secs(),
        threshold: format_epoch_ms(threshold_ms.max(0)).unwrap_or_default(),
        started_at: format_time(started),
        finished_at: format_time(SystemTime::now()),
        counts: Counts::tally(selection.stopped, &records),
        records,
    };
    Ok(Report {
        summary,
        interrupted: stop.signalled(),
        state_failure: stop.take_state_failure(),
    })
}

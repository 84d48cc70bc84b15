//! What a pass hands back: its report (the summary, how it ended, what the metrics need), the
//! dry run's plan, and the metrics file of a real run.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::read::StateRead;
use super::LOG_TARGET;
use super::{PassTime, RunError};
use crate::candidate::Candidate;
use crate::cli::{OrphanMode, OutputFormat};
use crate::config::Config;
use crate::exit::ExitStatus;
use crate::logging;
use crate::metrics::{self, RunMetrics};
use crate::orphans::{HandledOrphan, Orphan};
use crate::outcome::{Outcome, ResultKind};
use crate::plan::{Plan, PlanContext};
use crate::stop::{Signal, Stop};
use crate::store::StoreError;
use crate::summary::{
    self, Counts, FreedTotals, KeptLease, OrphanReport, OrphanSection, RecordReport, Summary,
};
use crate::time::{format_epoch_ms, format_time, Timestamp};
use crate::value::{self, Escaped};
use crate::worker;

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
            tracing::error!(
                target: LOG_TARGET,
                "the pass stopped early: {}",
                Escaped(error)
            );
        }
        if let Some(OrphanSection::Failed { error }) = &self.summary.orphans {
            tracing::error!(
                target: LOG_TARGET,
                "the orphan search failed, so no orphan is known: {}",
                error.escape_debug()
            );
        }
        if let Some(signal) = self.interrupted {
            tracing::warn!(
                target: LOG_TARGET,
                "interrupted by {}: records not reached are deferred",
                signal.name()
            );
        }
        for lease in self.summary.leases_kept.iter().flatten() {
            tracing::warn!(
                target: LOG_TARGET,
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
            target: LOG_TARGET,
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
        freed: report.and_then(|report| report.summary.freed),
    };
    if let Err(error) = metrics::write(path, &run) {
        tracing::error!(
            target: LOG_TARGET,
            "cannot write the metrics file {}: {error}",
            path.display()
        );
    }
}

/// The report of a pass that a signal stopped after it selected its records and before it
/// acted on any (during the preflight or the listing): every record is `deferred`, and the
/// orphans, if looked for, were not.
pub(super) fn not_reached(
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

/// Writes the dry run's plan, unless a signal cut the dry run short: a plan must name exactly
/// what a real run would act on, and an interrupted dry run may not have looked at everything.
pub(super) fn write_plan(
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
            target: LOG_TARGET,
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
        remove_volumes: config.disk.remove_volumes,
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
        target: LOG_TARGET,
        plan = %path.display(),
        records = acted_on.len(),
        orphans = planned_orphans.len(),
        "plan written"
    );
    Ok(())
}

/// What the removals of a pass freed, over its records and orphans removed (predicted removed),
/// where `--measure-space` or `--remove-volumes` asks for it.
fn freed_totals(
    config: &Config,
    records: &[RecordReport],
    orphans: Option<&OrphanSection>,
) -> Option<FreedTotals> {
    let removed_records = records
        .iter()
        .filter(|record| record.result == ResultKind::Removed)
        .map(|record| (&record.size_rw_bytes, &record.volumes_removed));
    let removed_orphans = match orphans {
        Some(OrphanSection::Searched { orphans, .. }) => orphans.as_slice(),
        _ => &[],
    }
    .iter()
    .filter(|orphan| orphan.result == Some(ResultKind::Removed))
    .map(|orphan| (&orphan.size_rw_bytes, &orphan.volumes_removed));
    FreedTotals::tally(config.disk, removed_records.chain(removed_orphans))
}

/// Assembles the report of a pass that ran.
pub(super) fn report(
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
                .map(|handled| {
                    let (size_rw_bytes, volumes_removed) =
                        summary::freed_figures(config.disk, handled.outcome.as_ref());
                    OrphanReport {
                        size_rw_bytes,
                        volumes_removed,
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
                    }
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
            let record = RecordReport::new(candidate, outcome, config.disk);
            // A record without a game takes no lease, so keeps none.
            if let (Some(until), Some(game)) = (kept, &record.game_id) {
                leases_kept.push(KeptLease {
                    game_id: game.clone(),
                    until,
                });
            }
            record
        })
        .collect();
    leases_kept.extend(orphans_kept);
    let freed = freed_totals(config, &records, orphans.as_ref());
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
        freed,
    };
    Report {
        summary,
        interrupted: stop.signalled(),
        state_failure: stop.take_state_failure(),
        oldest_waiting_ms,
        oldest_orphan_since_ms,
    }
}

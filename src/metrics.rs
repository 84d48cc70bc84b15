//! The Prometheus text-format file of `--metrics-file`, for the textfile collector of
//! `node_exporter`.
//!
//! Rendering is a pure function; the file is replaced atomically. The time of the last run
//! without failures survives runs that fail by being read back from the previous file.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exit::ExitStatus;
use crate::outcome::ResultKind;
use crate::output_file::write_atomically;
use crate::summary::{Counts, FreedTotals};

const LAST_SUCCESS: &str = "rt_cleanup_last_success_timestamp_seconds";

/// What one run contributes to the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// When the run ended.
    pub finished_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Its exit status.
    pub exit_status: ExitStatus,
    /// Its `--retention`, so that alert rules can compare the oldest waiting record's age with it.
    pub retention: Duration,
    /// Its counts, when the pass ran; `None` when it could not start.
    pub counts: Option<Counts>,
    /// The `last_op_at` (epoch ms) of the oldest expired record still waiting after the run
    /// (`conflict`, `failed` or `deferred`); `None` when none waits or the pass did not run.
    pub oldest_waiting_ms: Option<i64>,
    /// The orphan figures, when the run looked for orphans.
    pub orphans: Option<OrphanMetrics>,
    /// What its removals freed, with `--measure-space` or `--remove-volumes`.
    pub freed: Option<FreedTotals>,
}

/// What the orphan pass of one run contributes to the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanMetrics {
    /// Orphans found.
    pub found: u64,
    /// Orphans removed.
    pub removed: u64,
    /// When the oldest orphan stopped (or was created), epoch milliseconds.
    pub oldest_since_ms: Option<i64>,
}

fn age_seconds(now: SystemTime, since_ms: Option<i64>) -> f64 {
    since_ms.map_or(0.0, |ms| {
        let since = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        now.duration_since(since).map_or(0.0, |d| d.as_secs_f64())
    })
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Finds the last-success time in a previous metrics file.
#[must_use]
pub fn previous_success(previous: &str) -> Option<f64> {
    previous.lines().find_map(|line| {
        let value = line.strip_prefix(LAST_SUCCESS)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Renders the metrics in the Prometheus text exposition format.
#[must_use]
pub fn render(run: &RunMetrics, previous_success: Option<f64>) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let finished = seconds(run.finished_at);
    gauge(
        "rt_cleanup_last_run_timestamp_seconds",
        "When the last rt-cleanup run ended, Unix time.",
        &[("", finished)],
    );
    gauge(
        "rt_cleanup_last_run_duration_seconds",
        "How long the last rt-cleanup run took.",
        &[("", run.duration.as_secs_f64())],
    );
    gauge(
        "rt_cleanup_last_run_exit_status",
        &format!(
            "The exit status of the last run: {}.",
            ExitStatus::one_line()
        ),
        &[("", f64::from(run.exit_status.code()))],
    );
    gauge(
        "rt_cleanup_retention_seconds",
        "The retention of the last run: stopped records older than this are expired.",
        &[("", run.retention.as_secs_f64())],
    );
    let last_success = if run.exit_status == ExitStatus::Success {
        Some(finished)
    } else {
        previous_success
    };
    if let Some(success) = last_success {
        gauge(
            LAST_SUCCESS,
            "When the last run without failures ended, Unix time.",
            &[("", success)],
        );
    }
    if let Some(counts) = &run.counts {
        let labels: Vec<(String, f64)> = ResultKind::ALL
            .iter()
            .map(|&result| (format!("{{result=\"{result}\"}}"), counts.of(result) as f64))
            .collect();
        let samples: Vec<(&str, f64)> = labels
            .iter()
            .map(|(label, value)| (label.as_str(), *value))
            .collect();
        gauge(
            "rt_cleanup_last_run_records",
            "Expired records of the last run, by result.",
            &samples,
        );
        gauge(
            "rt_cleanup_last_run_expired_records",
            "Expired stopped records (candidates) in the last run.",
            &[("", counts.expired as f64)],
        );
        gauge(
            "rt_cleanup_last_run_stopped_records",
            "Stopped records in the state file at the last run.",
            &[("", counts.stopped as f64)],
        );
    }
    if let Some(orphans) = &run.orphans {
        gauge(
            "rt_cleanup_last_run_orphans_found",
            "Leaked containers (orphans) found by the last run.",
            &[("", orphans.found as f64)],
        );
        gauge(
            "rt_cleanup_last_run_orphans_removed",
            "Orphans removed by the last run.",
            &[("", orphans.removed as f64)],
        );
        gauge(
            "rt_cleanup_oldest_orphan_age_seconds",
            "Age (since it stopped, or was created) of the oldest orphan found by the last run; \
             0 when none was found.",
            &[("", age_seconds(run.finished_at, orphans.oldest_since_ms))],
        );
    }
    if let Some(freed) = &run.freed {
        freed_gauges(freed, &mut gauge);
    }
    if run.counts.is_some() {
        let age = age_seconds(run.finished_at, run.oldest_waiting_ms);
        gauge(
            "rt_cleanup_oldest_waiting_record_age_seconds",
            "Age (since last_op_at) of the oldest expired record still not removed after the \
             last run; 0 when none waits.",
            &[("", age)],
        );
    }
    text
}

/// The gauges of what the last run's removals freed, each where its option was on.
fn freed_gauges(freed: &FreedTotals, gauge: &mut impl FnMut(&str, &str, &[(&str, f64)])) {
    if let Some(bytes) = freed.size_rw_bytes {
        gauge(
            "rt_cleanup_last_run_freed_bytes",
            "Bytes in the writable layers of the containers the last run removed, measured \
             before each removal (--measure-space): an estimate, image layers and volumes not \
             counted.",
            &[("", bytes as f64)],
        );
    }
    if let Some(unmeasured) = freed.unmeasured {
        gauge(
            "rt_cleanup_last_run_unmeasured_containers",
            "Containers the last run removed whose writable layer could not be measured \
             (--measure-space); rt_cleanup_last_run_freed_bytes leaves them out.",
            &[("", unmeasured as f64)],
        );
    }
    if let Some(volumes) = freed.volumes {
        gauge(
            "rt_cleanup_last_run_volumes_removed",
            "Anonymous volumes the last run removed with their containers (--remove-volumes).",
            &[("", volumes as f64)],
        );
    }
}

/// Writes the metrics file atomically, keeping the previous last-success time when this run
/// failed.
pub fn write(path: &Path, run: &RunMetrics) -> io::Result<()> {
    let previous = std::fs::read_to_string(path)
        .ok()
        .as_deref()
        .and_then(previous_success);
    write_atomically(path, render(run, previous).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit_status: ExitStatus, counts: Option<Counts>) -> RunMetrics {
        RunMetrics {
            finished_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            duration: Duration::from_millis(1250),
            exit_status,
            retention: Duration::from_secs(7 * 24 * 3600),
            counts,
            oldest_waiting_ms: Some(1_799_999_000_000),
            orphans: None,
            freed: None,
        }
    }

    #[test]
    fn renders_every_series_of_a_pass() {
        let counts = Counts {
            stopped: 40,
            expired: 12,
            removed: 10,
            failed: 2,
            ..Counts::default()
        };
        let text = render(
            &run(ExitStatus::FailedRecords, Some(counts)),
            Some(1_700_000_000.0),
        );
        for line in [
            "rt_cleanup_last_run_timestamp_seconds 1800000000",
            "rt_cleanup_last_run_duration_seconds 1.25",
            "rt_cleanup_last_run_exit_status 1",
            "rt_cleanup_retention_seconds 604800",
            "rt_cleanup_last_success_timestamp_seconds 1700000000",
            "rt_cleanup_last_run_records{result=\"removed\"} 10",
            "rt_cleanup_last_run_records{result=\"failed\"} 2",
            "rt_cleanup_last_run_records{result=\"deferred\"} 0",
            "rt_cleanup_last_run_expired_records 12",
            "rt_cleanup_last_run_stopped_records 40",
            "rt_cleanup_oldest_waiting_record_age_seconds 1000",
            "# TYPE rt_cleanup_last_run_records gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_clean_run_is_the_last_success() {
        let text = render(
            &run(ExitStatus::Success, Some(Counts::default())),
            Some(1.0),
        );
        assert!(text.contains("rt_cleanup_last_success_timestamp_seconds 1800000000\n"));
        assert_eq!(previous_success(&text), Some(1_800_000_000.0));
    }

    #[test]
    fn a_run_that_could_not_start_keeps_the_previous_success_and_has_no_counts() {
        let text = render(
            &run(ExitStatus::DockerUnavailable, None),
            Some(1_700_000_000.0),
        );
        assert!(text.contains("rt_cleanup_last_run_exit_status 69\n"));
        assert!(text.contains("rt_cleanup_last_success_timestamp_seconds 1700000000\n"));
        assert!(!text.contains("rt_cleanup_last_run_records"));
        assert!(!text.contains("oldest_waiting"));
    }

    #[test]
    fn the_retention_is_written_whether_or_not_the_pass_ran() {
        // The backlog alert compares the oldest waiting record's age with the retention. The
        // retention comes from the configuration, so even a run that could not start writes it.
        for (exit_status, counts) in [
            (ExitStatus::Success, Some(Counts::default())),
            (ExitStatus::DockerUnavailable, None),
        ] {
            let text = render(&run(exit_status, counts), None);
            assert!(
                text.contains("# TYPE rt_cleanup_retention_seconds gauge\n"),
                "{text}"
            );
            assert!(
                text.contains("rt_cleanup_retention_seconds 604800\n"),
                "{text}"
            );
        }
    }

    #[test]
    fn write_keeps_the_last_success_across_a_failed_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt_cleanup.prom");
        write(&path, &run(ExitStatus::Success, Some(Counts::default()))).unwrap();
        let mut failed = run(ExitStatus::FailedRecords, Some(Counts::default()));
        failed.finished_at += Duration::from_secs(3600);
        write(&path, &failed).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(previous_success(&text), Some(1_800_000_000.0));
        assert!(text.contains("rt_cleanup_last_run_timestamp_seconds 1800003600\n"));
    }

    #[test]
    fn the_exit_status_help_lists_every_status() {
        let text = render(&run(ExitStatus::Success, None), None);
        let help = text
            .lines()
            .find(|line| line.starts_with("# HELP rt_cleanup_last_run_exit_status"))
            .unwrap();
        for status in ExitStatus::ALL {
            let item = format!("{} {}", status.code(), status.short_name());
            assert!(help.contains(&item), "{help} lacks {item}");
        }
    }

    #[test]
    fn the_freed_series_appear_only_with_their_options() {
        let mut with = run(ExitStatus::Success, Some(Counts::default()));
        let plain = render(&with, None);
        assert!(
            !plain.contains("freed") && !plain.contains("volumes"),
            "{plain}"
        );
        with.freed = Some(FreedTotals {
            containers: 3,
            size_rw_bytes: Some(3_435_973_836),
            unmeasured: Some(1),
            volumes: None,
        });
        let text = render(&with, None);
        for line in [
            "rt_cleanup_last_run_freed_bytes 3435973836",
            "rt_cleanup_last_run_unmeasured_containers 1",
            "# TYPE rt_cleanup_last_run_freed_bytes gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("volumes_removed"), "{text}");
        with.freed = Some(FreedTotals {
            containers: 3,
            volumes: Some(4),
            ..FreedTotals::default()
        });
        let text = render(&with, None);
        assert!(
            text.contains("\nrt_cleanup_last_run_volumes_removed 4\n"),
            "{text}"
        );
        assert!(!text.contains("freed_bytes"), "{text}");
    }

    #[test]
    fn orphan_series_appear_only_when_looked_for() {
        let mut with = run(ExitStatus::Success, Some(Counts::default()));
        assert!(!render(&with, None).contains("orphan"));
        with.orphans = Some(OrphanMetrics {
            found: 3,
            removed: 2,
            oldest_since_ms: Some(1_799_999_990_000),
        });
        let text = render(&with, None);
        for line in [
            "rt_cleanup_last_run_orphans_found 3",
            "rt_cleanup_last_run_orphans_removed 2",
            "rt_cleanup_oldest_orphan_age_seconds 10",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}

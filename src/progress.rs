//! The progress of a pass's jobs, for a person watching a terminal.
//!
//! The worker reports each batch of jobs it is about to run and each job it finished to a
//! [`Progress`]; it knows nothing of terminals. Where stderr is a terminal (and the logs are
//! text, not the journal), `main` gives the pass a [`ProgressLine`], which draws one line
//! below the logs; anywhere else it gives [`NoProgress`], and nothing is drawn.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

pub use crate::outcome::ResultKind;

/// Where a pass reports how far its jobs are.
pub trait Progress: Send + Sync {
    /// `count` more jobs are about to be run (a pass's records, then its orphans).
    fn jobs_added(&self, count: usize);

    /// One job finished with `result`.
    fn job_done(&self, result: ResultKind);

    /// The pass's jobs are over: whatever was drawn is taken away, before the summary.
    fn finish(&self);
}

impl fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}

/// Progress that goes nowhere: a pass anywhere but on a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn jobs_added(&self, _count: usize) {}

    fn job_done(&self, _result: ResultKind) {}

    fn finish(&self) {}
}

/// One line on stderr, redrawn in place: jobs done of all, removed and failed so far, the rate
/// and the time left. It is drawn only once there are jobs, and log lines are written through
/// [`ProgressLine::suspend`], which takes the line away while a log line is written and draws it
/// again below it, so that the two never mix.
#[derive(Debug)]
pub struct ProgressLine {
    bar: ProgressBar,
    /// Whether the line is drawn on stderr yet (from the first jobs on).
    drawn: AtomicBool,
    removed: AtomicU64,
    failed: AtomicU64,
}

/// How often the line is redrawn while no job finishes, so that the rate and the time left
/// stay current during a slow Docker call.
const TICK: Duration = Duration::from_millis(200);

/// The line: `[=====>    ] 120/500 done, 118 removed, 2 failed, 43.5/s, 9s left`.
const TEMPLATE: &str = "[{bar:24}] {pos}/{len} done, {msg}, {rate}, {eta} left";

impl ProgressLine {
    /// A line on stderr, not drawn until the first jobs are added.
    #[must_use]
    pub fn on_stderr() -> Self {
        // The template is a constant, which a unit test parses; were it refused, the line would
        // be indicatif's plain bar.
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
            .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
                let _ = write!(out, "{:.1}/s", state.per_sec());
            });
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
            .with_style(style)
            .with_message(counts_message(0, 0));
        Self {
            bar,
            drawn: AtomicBool::new(false),
            removed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Runs `write` (a log line's write) with the line taken away, then draws it again.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        self.bar.suspend(write)
    }
}

impl Progress for ProgressLine {
    fn jobs_added(&self, count: usize) {
        if count == 0 {
            return;
        }
        self.bar.inc_length(count as u64);
        if !self.drawn.swap(true, Ordering::Relaxed) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(TICK);
        }
    }

    fn job_done(&self, result: ResultKind) {
        // The job is counted as done before its result is, so that a line drawn in between
        // never shows more removed and failed than done.
        self.bar.inc(1);
        let counter = match result {
            ResultKind::Removed => &self.removed,
            ResultKind::Failed => &self.failed,
            ResultKind::ReplayNoOp | ResultKind::Conflict | ResultKind::Deferred => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bar.set_message(counts_message(
            self.removed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn counts_message(removed: u64, failed: u64) -> String {
    format!("{removed} removed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn the_line_counts_jobs_removals_and_failures() {
        let line = ProgressLine::on_stderr();
        line.jobs_added(0);
        assert!(
            !line.drawn.load(Ordering::Relaxed),
            "nothing is drawn before there are jobs"
        );
        line.jobs_added(3);
        assert!(line.drawn.load(Ordering::Relaxed));
        line.jobs_added(2);
        for result in [
            ResultKind::Removed,
            ResultKind::Failed,
            ResultKind::Removed,
            ResultKind::Conflict,
        ] {
            line.job_done(result);
        }
        assert_eq!(line.bar.length(), Some(5));
        assert_eq!(line.bar.position(), 4);
        assert_eq!(line.bar.message(), "2 removed, 1 failed");
        line.finish();
        assert!(line.bar.is_finished());
    }
}

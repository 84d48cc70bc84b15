//! The exit statuses of rt-cleanup: the one place that defines them, for `main`, `--help` and
//! the metrics file alike.

use std::fmt::Write as _;

/// How a run of rt-cleanup ended, as systemd, cron and alerting see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The pass finished and no record failed (nothing to do included).
    Success,
    /// The pass finished and at least one record failed (a dry run: would fail).
    FailedRecords,
    /// A bad invocation or an unusable state file or plan; nothing changed.
    Usage,
    /// The Docker daemon is unreachable or unusable at start; nothing changed.
    DockerUnavailable,
    /// The state file stayed locked or busy past `--lock-wait`; try again later.
    StateBusy,
    /// Interrupted by SIGINT: records in flight were finished, the rest deferred.
    Interrupted,
    /// Interrupted by SIGTERM: records in flight were finished, the rest deferred.
    Terminated,
}

impl ExitStatus {
    /// Every status, in the order the help lists them.
    pub const ALL: [ExitStatus; 7] = [
        ExitStatus::Success,
        ExitStatus::FailedRecords,
        ExitStatus::Usage,
        ExitStatus::DockerUnavailable,
        ExitStatus::StateBusy,
        ExitStatus::Interrupted,
        ExitStatus::Terminated,
    ];

    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::FailedRecords => 1,
            ExitStatus::Usage => 2,
            // sysexits.h: EX_UNAVAILABLE and EX_TEMPFAIL, which cron and systemd users know.
            ExitStatus::DockerUnavailable => 69,
            ExitStatus::StateBusy => 75,
            // 128 plus the signal number, as a shell reports a process killed by it.
            ExitStatus::Interrupted => 130,
            ExitStatus::Terminated => 143,
        }
    }

    /// What the status means, in a few words, for `--help` (the metrics help uses
    /// [`ExitStatus::short_name`]).
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => {
                "the pass finished and no record failed (nothing to do included)"
            }
            ExitStatus::FailedRecords => {
                "the pass finished and at least one record failed (a dry run: would fail)"
            }
            ExitStatus::Usage => "bad invocation, unusable state file or plan; nothing changed",
            ExitStatus::DockerUnavailable => {
                "the Docker daemon is unreachable or unusable; nothing changed"
            }
            ExitStatus::StateBusy => {
                "the state file stayed locked, or awaits a crashed writer's rollback; retry later"
            }
            ExitStatus::Interrupted => {
                "interrupted by SIGINT: in-flight records finished, the rest deferred"
            }
            ExitStatus::Terminated => {
                "interrupted by SIGTERM: in-flight records finished, the rest deferred"
            }
        }
    }

    /// The table of every status, one per line, as `--help` shows it.
    #[must_use]
    pub fn table() -> String {
        let mut table = String::new();
        for status in Self::ALL {
            // Writing to a String cannot fail.
            let _ = writeln!(table, "  {:<4} {}", status.code(), status.meaning());
        }
        table
    }

    /// Every status as `code meaning` pairs on one line, for the metrics file's `# HELP`.
    #[must_use]
    pub fn one_line() -> String {
        Self::ALL
            .iter()
            .map(|status| format!("{} {}", status.code(), status.short_name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A short name, for one-line lists.
    #[must_use]
    pub fn short_name(self) -> &'static str {
        match self {
            ExitStatus::Success => "ok",
            ExitStatus::FailedRecords => "failed records",
            ExitStatus::Usage => "usage or state file",
            ExitStatus::DockerUnavailable => "Docker unavailable",
            ExitStatus::StateBusy => "state file locked",
            ExitStatus::Interrupted => "SIGINT",
            ExitStatus::Terminated => "SIGTERM",
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_follow_the_contract() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 69, 75, 130, 143]);
    }
}

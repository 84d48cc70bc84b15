//! Turns the raw [`Arguments`] into a validated [`Config`], in one place.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cli::{Arguments, LogFormat, OutputFormat};

/// Where the Docker daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A plain TCP `host:port`.
    Tcp(String),
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerHost::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// A validated configuration of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a record stays stopped before its container is removed; greater than zero.
    pub retention: Duration,
    /// The state file.
    pub state: PathBuf,
    /// Audit only.
    pub dry_run: bool,
    /// The summary format.
    pub output: OutputFormat,
    /// The most candidates acted on in one run.
    pub max_removals: Option<usize>,
    /// The label that must equal the game id.
    pub owner_label: Option<String>,
    /// `operation_log.op_source`.
    pub op_source: String,
    /// The Docker daemon.
    pub docker_host: DockerHost,
    /// Records worked on at once.
    pub concurrency: NonZeroUsize,
    /// The longest one Docker call may take.
    pub docker_timeout: Duration,
    /// The longest to wait for a lock on the state file.
    pub lock_wait: Duration,
    /// The lifetime of a lease taken by this tool.
    pub lease_ttl: Duration,
    /// The log format.
    pub log_format: LogFormat,
    /// Where to write Prometheus metrics.
    pub metrics_file: Option<PathBuf>,
    /// Where a dry run writes its plan.
    pub plan_out: Option<PathBuf>,
    /// The plan a real run acts on instead of selecting.
    pub apply_plan: Option<PathBuf>,
}

/// An invalid command line; the message names the option and shows an accepted form.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A duration option did not parse.
    #[error(
        "invalid {option} {value:?}: {reason}; write a duration such as 7d, 36h or \"1week 2days\""
    )]
    Duration {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// Why it did not parse.
        reason: String,
    },
    /// A duration option was zero.
    #[error("invalid {option} {value:?}: it must be greater than zero, e.g. {example}")]
    Zero {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// An accepted value.
        example: &'static str,
    },
    /// `--docker-host` has a scheme this tool does not speak.
    #[error(
        "invalid --docker-host {0:?}: use unix:///path/to/docker.sock or tcp://host:port \
         (TLS and ssh are not supported)"
    )]
    DockerHost(String),
    /// `--plan-out` without `--dry-run`.
    #[error("--plan-out writes the plan of a dry run: add --dry-run")]
    PlanOutWithoutDryRun,
    /// `--apply-plan` with `--dry-run` or `--plan-out`.
    #[error(
        "--apply-plan acts on a reviewed plan and cannot be combined with --dry-run or \
         --plan-out; review the plan file itself"
    )]
    ApplyPlanWithDryRun,
    /// `--concurrency 0`.
    #[error("invalid --concurrency 0: it must be at least 1 (default 6)")]
    Concurrency,
    /// A text option was empty.
    #[error("invalid {0} \"\": it must not be empty")]
    Empty(&'static str),
    /// The lease could expire while this tool still works on the game.
    #[error(
        "invalid --lease-ttl {lease_ttl}: it must be longer than three --docker-timeout plus \
         --lock-wait ({minimum}), or a lease could expire while a removal is still running"
    )]
    LeaseTooShort {
        /// The value given.
        lease_ttl: String,
        /// The shortest accepted.
        minimum: String,
    },
}

impl TryFrom<Arguments> for Config {
    type Error = ConfigError;

    fn try_from(arguments: Arguments) -> Result<Self, ConfigError> {
        let retention = positive_duration("--retention", &arguments.retention, "7d")?;
        let docker_timeout =
            positive_duration("--docker-timeout", &arguments.docker_timeout, "30s")?;
        let lock_wait = parse_duration("--lock-wait", &arguments.lock_wait)?;
        let lease_ttl = positive_duration("--lease-ttl", &arguments.lease_ttl, "5m")?;
        // Saturating: absurdly long durations must be refused, not overflow.
        let longest_hold = docker_timeout.saturating_mul(3).saturating_add(lock_wait);
        if lease_ttl <= longest_hold {
            return Err(ConfigError::LeaseTooShort {
                lease_ttl: arguments.lease_ttl,
                minimum: humantime::format_duration(longest_hold).to_string(),
            });
        }
        let concurrency =
            NonZeroUsize::new(arguments.concurrency).ok_or(ConfigError::Concurrency)?;
        if arguments.op_source.is_empty() {
            return Err(ConfigError::Empty("--op-source"));
        }
        if arguments.plan_out.is_some() && !arguments.dry_run {
            return Err(ConfigError::PlanOutWithoutDryRun);
        }
        if arguments.apply_plan.is_some() && arguments.dry_run {
            return Err(ConfigError::ApplyPlanWithDryRun);
        }
        if arguments.owner_label.as_deref() == Some("") {
            return Err(ConfigError::Empty("--owner-label"));
        }
        Ok(Self {
            retention,
            state: arguments.state,
            dry_run: arguments.dry_run,
            output: arguments.output,
            max_removals: arguments.max_removals,
            owner_label: arguments.owner_label,
            op_source: arguments.op_source,
            docker_host: parse_docker_host(&arguments.docker_host)?,
            concurrency,
            docker_timeout,
            lock_wait,
            lease_ttl,
            log_format: arguments.log_format,
            metrics_file: arguments.metrics_file,
            plan_out: arguments.plan_out,
            apply_plan: arguments.apply_plan,
        })
    }
}

fn parse_duration(option: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|error| ConfigError::Duration {
        option,
        value: value.to_owned(),
        reason: error.to_string(),
    })
}

fn positive_duration(
    option: &'static str,
    value: &str,
    example: &'static str,
) -> Result<Duration, ConfigError> {
    let duration = parse_duration(option, value)?;
    if duration.is_zero() {
        return Err(ConfigError::Zero {
            option,
            value: value.to_owned(),
            example,
        });
    }
    Ok(duration)
}

fn parse_docker_host(value: &str) -> Result<DockerHost, ConfigError> {
    let invalid = || ConfigError::DockerHost(value.to_owned());
    if let Some(path) = value.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(invalid());
        }
        return Ok(DockerHost::Unix(PathBuf::from(path)));
    }
    let address = value
        .strip_prefix("tcp://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(invalid)?
        .trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    if host.is_empty() || port.parse::<u16>().is_err() || address.contains('/') {
        return Err(invalid());
    }
    Ok(DockerHost::Tcp(address.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut command_line = vec!["rt-cleanup"];
        command_line.extend_from_slice(args);
        Config::try_from(
            Arguments::try_parse_from(command_line).expect("clap accepts the arguments"),
        )
    }

    #[test]
    fn accepts_the_humantime_forms_of_the_contract() {
        for (value, seconds) in [("7d", 604_800), ("36h", 129_600), ("1week 2days", 777_600)] {
            let config = config(&["--retention", value]).unwrap();
            assert_eq!(config.retention, Duration::from_secs(seconds), "{value}");
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config(&["--retention", "7d"]).unwrap();
        assert_eq!(config.state, PathBuf::from("/var/lib/rtmanager/state.db"));
        assert!(!config.dry_run);
        assert_eq!(config.output, OutputFormat::Text);
        assert_eq!(config.max_removals, None);
        assert_eq!(config.owner_label, None);
        assert_eq!(config.op_source, "auto_ttl");
        assert_eq!(
            config.docker_host,
            DockerHost::Unix("/var/run/docker.sock".into())
        );
    }

    #[test]
    fn a_zero_retention_is_refused_with_an_example() {
        let error = config(&["--retention", "0s"]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Zero {
                option: "--retention",
                ..
            }
        ));
        assert!(error.to_string().contains("--retention"));
        assert!(error.to_string().contains("7d"));
    }

    #[test]
    fn a_malformed_retention_names_the_option_and_an_accepted_form() {
        for bad in ["7", "seven days", "-1d", "", "7x"] {
            let argument = format!("--retention={bad}");
            let message = config(&[&argument]).unwrap_err().to_string();
            assert!(
                message.starts_with("invalid --retention"),
                "{bad}: {message}"
            );
            assert!(message.contains("36h"), "{message}");
        }
    }

    #[test]
    fn docker_hosts_are_unix_or_tcp() {
        let tcp = config(&["--retention", "1d", "--docker-host", "tcp://127.0.0.1:2375"]).unwrap();
        assert_eq!(tcp.docker_host, DockerHost::Tcp("127.0.0.1:2375".into()));
        for bad in [
            "/var/run/docker.sock",
            "ssh://host",
            "tcp://host",
            "unix://",
            "tcp://:1",
        ] {
            let error = config(&["--retention", "1d", "--docker-host", bad]).unwrap_err();
            assert_eq!(error, ConfigError::DockerHost(bad.into()));
        }
    }

    #[test]
    fn a_lease_shorter_than_the_longest_hold_is_refused() {
        let error = config(&[
            "--retention",
            "1d",
            "--docker-timeout",
            "1m",
            "--lease-ttl",
            "2m",
        ])
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::LeaseTooShort { .. }),
            "{error}"
        );
    }

    #[test]
    fn plans_are_written_by_dry_runs_and_applied_by_real_runs() {
        assert_eq!(
            config(&["--retention", "1d", "--plan-out", "p.json"]),
            Err(ConfigError::PlanOutWithoutDryRun)
        );
        assert_eq!(
            config(&["--retention", "1d", "--dry-run", "--apply-plan", "p.json"]),
            Err(ConfigError::ApplyPlanWithDryRun)
        );
        assert!(config(&["--retention", "1d", "--dry-run", "--plan-out", "p.json"]).is_ok());
        assert!(config(&["--retention", "1d", "--apply-plan", "p.json"]).is_ok());
    }

    #[test]
    fn zero_concurrency_and_empty_names_are_refused() {
        assert_eq!(
            config(&["--retention", "1d", "--concurrency", "0"]),
            Err(ConfigError::Concurrency)
        );
        assert_eq!(
            config(&["--retention", "1d", "--op-source", ""]),
            Err(ConfigError::Empty("--op-source"))
        );
        assert_eq!(
            config(&["--retention", "1d", "--owner-label", ""]),
            Err(ConfigError::Empty("--owner-label"))
        );
    }
}

//! Turns the raw [`Arguments`] into a validated configuration of the command they ask for (an
//! [`Invocation`]), in one place.

use std::ffi::OsString;
use std::fs::{self, FileType};
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::cli::{
    Arguments, Command, DaemonOptions, DiskArguments, ExplainArguments, HistoryArguments,
    HistoryResult, LogFormat, OrphanMode, OutputFormat, SelectionOptions, StateOptions,
    DEFAULT_LEASE_TTL, DEFAULT_OP_SOURCE,
};

/// Where the Docker daemon listens, and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A plain TCP `host:port`.
    Tcp(String),
    /// A TCP `host:port` spoken to over TLS only, with these files (`--tlsverify`).
    Tls {
        /// `host:port`.
        address: String,
        /// The CA and the client certificate.
        files: TlsFiles,
    },
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerHost::Tcp(address) | DockerHost::Tls { address, .. } => {
                write!(f, "tcp://{address}")
            }
        }
    }
}

/// The TLS files of a `tcp://` daemon, named as the Docker CLI names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) the daemon's certificate must chain to (`ca.pem`); the only roots
    /// trusted, as with the Docker CLI.
    pub ca: PathBuf,
    /// The client certificate (`cert.pem`).
    pub cert: PathBuf,
    /// Its private key (`key.pem`).
    pub key: PathBuf,
}

/// What a pass measures and removes besides the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskOptions {
    /// `--measure-space`: each container's writable layer is measured before its removal.
    pub measure_space: bool,
    /// `--remove-volumes`: each container is removed with its anonymous volumes (`v=true`).
    pub remove_volumes: bool,
}

impl DiskOptions {
    /// Whether each container is looked at before its removal: for its size, its volumes, or
    /// both.
    #[must_use]
    pub fn looks(self) -> bool {
        self.measure_space || self.remove_volumes
    }
}

impl From<&DiskArguments> for DiskOptions {
    fn from(arguments: &DiskArguments) -> Self {
        Self {
            measure_space: arguments.measure_space,
            remove_volumes: arguments.remove_volumes,
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
    /// What to do with leaked containers; `None` when the command line did not say (off,
    /// unless a plan says otherwise).
    pub orphans: Option<OrphanMode>,
    /// `--measure-space` and `--remove-volumes` (a plan made with `--remove-volumes` removes
    /// volumes whatever this says).
    pub disk: DiskOptions,
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
    /// A duration option got another option, not a value.
    #[error("{option} needs a value, e.g. {example}; it was given the option {value}")]
    MissingValue {
        /// The option.
        option: &'static str,
        /// The option given in its place.
        value: String,
        /// An accepted value.
        example: &'static str,
    },
    /// A duration option was negative.
    #[error("invalid {option} {value:?}: it must not be negative, e.g. {example}")]
    Negative {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// An accepted value.
        example: &'static str,
    },
    /// A duration option was longer than this tool accepts.
    #[error("invalid {option} {value:?}: it must be at most {max}")]
    TooLong {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// The longest accepted, for people.
        max: String,
    },
    /// The retention was not whole seconds.
    #[error(
        "invalid --retention {0:?}: it must be whole seconds, at least 1s (the summary reports \
         retention_seconds)"
    )]
    RetentionFraction(String),
    /// The retention reaches back before 1970.
    #[error(
        "invalid --retention {0:?}: now minus the retention is before 1970-01-01, where no \
         record can be"
    )]
    RetentionBeforeEpoch(String),
    /// `--docker-host` has a scheme this tool does not speak.
    #[error(
        "invalid --docker-host {0:?}: use unix:///path/to/docker.sock or tcp://host:port \
         (add --tlsverify, or DOCKER_TLS_VERIFY=1, for TLS)"
    )]
    DockerHost(String),
    /// `--docker-host ssh://…`.
    #[error(
        "invalid --docker-host {0:?}: ssh:// daemons are not supported; use tcp://host:2376 with \
         --tlsverify (DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH), or forward the daemon's socket \
         with ssh -L and use unix://"
    )]
    SshHost(String),
    /// A TLS file or directory was given for a `tcp://` daemon without `--tlsverify`.
    #[error(
        "{0} is set but --tlsverify (DOCKER_TLS_VERIFY) is not: rt-cleanup speaks TLS only with \
         verification and never sends plain text where certificates were meant; set \
         DOCKER_TLS_VERIFY=1, or unset {0}"
    )]
    TlsFilesWithoutVerify(&'static str),
    /// `--tlsverify` with an `http://` daemon.
    #[error(
        "invalid --docker-host {0:?} with --tlsverify: http:// is plain text; write \
         tcp://host:port for TLS"
    )]
    HttpWithTls(String),
    /// `--tlsverify` without a certificate directory.
    #[error(
        "--tlsverify needs its certificate directory: set DOCKER_CERT_PATH (or \
         --docker-cert-path), or HOME for the default ~/.docker"
    )]
    NoCertPath,
    /// `--plan-out` without `--dry-run`.
    #[error("--plan-out writes the plan of a dry run: add --dry-run")]
    PlanOutWithoutDryRun,
    /// `--apply-plan` with `--dry-run` or `--plan-out`.
    #[error(
        "--apply-plan acts on a reviewed plan and cannot be combined with --dry-run or \
         --plan-out; review the plan file itself"
    )]
    ApplyPlanWithDryRun,
    /// `--orphans report|remove` without `--owner-label`.
    #[error(
        "--orphans {0} needs --owner-label: a leaked container is known only by the label that \
         names its game"
    )]
    OrphansWithoutOwnerLabel(&'static str),
    /// `--concurrency 0`.
    #[error("invalid --concurrency 0: it must be at least 1 (default 6)")]
    Concurrency,
    /// A text option was empty.
    #[error("invalid {0} \"\": it must not be empty")]
    Empty(&'static str),
    /// An output file would replace the state file, one of SQLite's files beside it, or the
    /// plan being applied.
    #[error(
        "{option} {} resolves to {}, {what}; rt-cleanup would replace it with its own output: \
         name another file", path.display(), target.display()
    )]
    OutputReplaces {
        /// The option.
        option: &'static str,
        /// The path given.
        path: PathBuf,
        /// The file it resolves to.
        target: PathBuf,
        /// What that file is, with the option that named it.
        what: String,
    },
    /// An output file names something that is not a regular file.
    #[error(
        "{option} {} is {kind}, not a regular file; rt-cleanup replaces the file it writes (it \
         renames a new file over it), so name a regular file, or one that does not exist yet",
        path.display()
    )]
    OutputNotAFile {
        /// The option.
        option: &'static str,
        /// The path given.
        path: PathBuf,
        /// What it is, e.g. "a directory".
        kind: &'static str,
    },
    /// A file rt-cleanup reads (`--apply-plan`, a TLS file) is not a regular file.
    #[error(
        "{option} {} is {kind}, not a regular file, and was not opened (a FIFO would wait for a \
         writer); name the file itself",
        path.display()
    )]
    InputNotAFile {
        /// The option.
        option: &'static str,
        /// The path given.
        path: PathBuf,
        /// What it is, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },
    /// An output file cannot be created where it is named.
    #[error("{option} {} cannot be written: {reason}", path.display())]
    OutputPlace {
        /// The option.
        option: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A required option was not given.
    #[error("{0} is required, e.g. {0} 7d")]
    Missing(&'static str),
    /// A `--since` or `--until` is neither a duration nor a time.
    #[error(
        "invalid {option} {value:?}: write a duration ago such as 1d, 36h or \"2h 30m\", or a \
         UTC time such as 2026-12-01T00:00:00Z"
    )]
    When {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
    },
    /// `--since` is not before `--until`: no row can be in the window.
    #[error(
        "--since {since:?} is not before --until {until:?}: no row can start in that window; \
         --until is the later time (or the shorter duration ago)"
    )]
    EmptyWindow {
        /// `--since` as given.
        since: String,
        /// `--until` as given.
        until: String,
    },
    /// `--limit` is not a number of rows.
    #[error("invalid --limit {0:?}: it must be a number of rows from 1 to {MAX_HISTORY_LIMIT}")]
    Limit(String),
    /// The lease could expire while this tool still works on the game.
    #[error(
        "invalid --lease-ttl {lease_ttl}: it must be longer than every wait that can happen \
         while a lease is held, three --docker-timeout plus four --lock-wait plus 10s \
         ({minimum}), or a lease could expire while its game is still being worked on"
    )]
    LeaseTooShort {
        /// The value given.
        lease_ttl: String,
        /// The shortest accepted.
        minimum: String,
    },
}

/// The longest `--docker-timeout`: a call that takes longer is not coming back.
pub const MAX_DOCKER_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest `--lock-wait`: a state file locked longer needs an operator.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(3600);
/// The longest `--lease-ttl`: a lease left by a killed run blocks its game that long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(86_400);
/// What a pass does besides waiting while it holds a lease: its share of the writer's
/// transactions and of the runtime, with room to spare.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// The longest a lease of this tool can be held: the claim's commit (one lock wait), the Docker
/// calls under it (an inspection, the removal, an inspection after a removal that got no
/// answer), then the settlement, which can queue behind another transaction that waits for
/// its lock and its commit, and wait for its own lock.
#[must_use]
pub fn longest_lease_hold(docker_timeout: Duration, lock_wait: Duration) -> Duration {
    docker_timeout
        .saturating_mul(3)
        .saturating_add(lock_wait.saturating_mul(4))
        .saturating_add(LEASE_MARGIN)
}

/// What the command line asks for: the pass, or one of the commands that only read, each with
/// its validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `rt-cleanup --retention 7d [OPTIONS]`: one pass (or its dry run).
    Pass(Config),
    /// `rt-cleanup explain GAME…`.
    Explain(ExplainConfig),
    /// `rt-cleanup history`.
    History(HistoryConfig),
}

impl Invocation {
    /// The format of the logs on stderr, which every command has.
    #[must_use]
    pub fn log_format(&self) -> LogFormat {
        match self {
            Invocation::Pass(config) => config.log_format,
            Invocation::Explain(config) => config.pass.log_format,
            Invocation::History(config) => config.log_format,
        }
    }
}

impl TryFrom<Arguments> for Invocation {
    type Error = ConfigError;

    fn try_from(mut arguments: Arguments) -> Result<Self, ConfigError> {
        match arguments.command.take() {
            None => Config::try_from(arguments).map(Invocation::Pass),
            Some(Command::Explain(explain)) => {
                ExplainConfig::try_from(explain).map(Invocation::Explain)
            }
            Some(Command::History(history)) => {
                HistoryConfig::try_from(history).map(Invocation::History)
            }
        }
    }
}

/// A validated `rt-cleanup explain`: the dry run of the pass that the same options configure,
/// whose predictions it reads for the named games.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainConfig {
    /// The games, byte for byte as given (a game id need not be UTF-8).
    pub games: Vec<OsString>,
    /// The pass being explained, as a dry run (`dry_run` is true). The settings only a real run
    /// reads (`--op-source`, `--lease-ttl`, the output files) are not options of explain: they
    /// keep the pass's defaults here and are never read.
    pub pass: Config,
}

impl TryFrom<ExplainArguments> for ExplainConfig {
    type Error = ConfigError;

    fn try_from(arguments: ExplainArguments) -> Result<Self, ConfigError> {
        let shared =
            PassSettings::validate(&arguments.selection, &arguments.state, &arguments.daemon)?;
        let ExplainArguments {
            games,
            selection,
            state,
            output,
            daemon: _,
            disk,
        } = arguments;
        Ok(Self {
            games,
            pass: Config {
                retention: shared.retention,
                state: state.state,
                dry_run: true,
                output: output.output,
                max_removals: selection.max_removals,
                owner_label: selection.owner_label,
                op_source: DEFAULT_OP_SOURCE.to_owned(),
                docker_host: shared.docker_host,
                concurrency: shared.concurrency,
                docker_timeout: shared.docker_timeout,
                lock_wait: shared.lock_wait,
                lease_ttl: parse_duration("--lease-ttl", DEFAULT_LEASE_TTL, DEFAULT_LEASE_TTL)?,
                log_format: output.log_format,
                metrics_file: None,
                plan_out: None,
                apply_plan: None,
                orphans: selection.orphans,
                disk: DiskOptions::from(&disk),
            },
        })
    }
}

/// When a `history` window starts or ends, as given: resolved against the `now` that the
/// command takes once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long before now.
    Ago(Duration),
    /// At this time, epoch milliseconds.
    At(i64),
}

impl When {
    /// The time, epoch milliseconds, at `now_ms`.
    #[must_use]
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            When::Ago(ago) => {
                now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
            }
            When::At(ms) => ms,
        }
    }
}

/// The most rows `history --limit` prints: the rows are held in memory until the read ends (a
/// read transaction is never kept open while stdout is written, so that a slow reader of the
/// output never holds the state file): 1,000,000 rows of the benchmark's log took 507 MiB.
pub const MAX_HISTORY_LIMIT: usize = 1_000_000;

/// A validated `rt-cleanup history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The state file.
    pub state: PathBuf,
    /// The longest to wait for a lock on the state file.
    pub lock_wait: Duration,
    /// The format of stdout.
    pub output: OutputFormat,
    /// The log format.
    pub log_format: LogFormat,
    /// Only these games (byte for byte as given); all when empty.
    pub games: Vec<OsString>,
    /// Only rows that started at or after this.
    pub since: Option<When>,
    /// Only rows that started before this.
    pub until: Option<When>,
    /// Only rows of these results; all when empty.
    pub results: Vec<HistoryResult>,
    /// Only rows of these `op_kind`s; all when empty.
    pub op_kinds: Vec<String>,
    /// Only rows of these `op_source`s; all when empty.
    pub op_sources: Vec<String>,
    /// The most rows printed, newest first.
    pub limit: usize,
}

impl TryFrom<HistoryArguments> for HistoryConfig {
    type Error = ConfigError;

    fn try_from(arguments: HistoryArguments) -> Result<Self, ConfigError> {
        let lock_wait = bounded_duration(
            "--lock-wait",
            &arguments.state.lock_wait,
            "10s",
            MAX_LOCK_WAIT,
        )?;
        let since = arguments
            .since
            .as_deref()
            .map(|value| when("--since", value))
            .transpose()?;
        let until = arguments
            .until
            .as_deref()
            .map(|value| when("--until", value))
            .transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            let now = crate::time::now_ms();
            if since.at(now) >= until.at(now) {
                return Err(ConfigError::EmptyWindow {
                    since: arguments.since.unwrap_or_default(),
                    until: arguments.until.unwrap_or_default(),
                });
            }
        }
        let limit = arguments
            .limit
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_HISTORY_LIMIT).contains(limit))
            .ok_or_else(|| ConfigError::Limit(arguments.limit.clone()))?;
        for (option, values) in [
            ("--op-kind", &arguments.op_kinds),
            ("--op-source", &arguments.op_sources),
        ] {
            if values.iter().any(String::is_empty) {
                return Err(ConfigError::Empty(option));
            }
        }
        Ok(Self {
            state: arguments.state.state,
            lock_wait,
            output: arguments.output.output,
            log_format: arguments.output.log_format,
            games: arguments.games,
            since,
            until,
            results: arguments.results,
            op_kinds: arguments.op_kinds,
            op_sources: arguments.op_sources,
            limit,
        })
    }
}

/// A `--since` or `--until`: a duration ago, or a UTC time in RFC 3339 (`T` or a space between
/// the date and the time, the `Z` optional).
fn when(option: &'static str, value: &str) -> Result<When, ConfigError> {
    let trimmed = value.trim();
    if let Ok(time) = humantime::parse_rfc3339_weak(trimmed) {
        return Ok(When::At(crate::time::epoch_ms(time)));
    }
    match parse_duration(option, value, "1d") {
        Ok(ago) => Ok(When::Ago(ago)),
        Err(ConfigError::Duration { .. }) => Err(ConfigError::When {
            option,
            value: value.to_owned(),
        }),
        Err(error) => Err(error),
    }
}

/// The settings a pass and explain share, validated in the order the pass has always checked
/// them (the first error found is the one reported).
struct PassSettings {
    retention: Duration,
    docker_timeout: Duration,
    lock_wait: Duration,
    concurrency: NonZeroUsize,
    docker_host: DockerHost,
}

impl PassSettings {
    /// The retention, the durations of the daemon and the state file, the concurrency, the
    /// owner label and orphan mode, and the daemon's address.
    fn validate(
        selection: &SelectionOptions,
        state: &StateOptions,
        daemon: &DaemonOptions,
    ) -> Result<Self, ConfigError> {
        let (retention, docker_timeout, lock_wait) = Self::durations(selection, state, daemon)?;
        let concurrency = Self::concurrency(daemon)?;
        Self::owner_and_orphans(selection)?;
        Ok(Self {
            retention,
            docker_timeout,
            lock_wait,
            concurrency,
            docker_host: docker_host(daemon)?,
        })
    }

    /// `--retention`, `--docker-timeout` and `--lock-wait`.
    fn durations(
        selection: &SelectionOptions,
        state: &StateOptions,
        daemon: &DaemonOptions,
    ) -> Result<(Duration, Duration, Duration), ConfigError> {
        // clap requires it for the pass and explain, the only commands that read it.
        let retention = retention(
            selection
                .retention
                .as_deref()
                .ok_or(ConfigError::Missing("--retention"))?,
        )?;
        let docker_timeout = positive_duration(
            "--docker-timeout",
            &daemon.docker_timeout,
            "30s",
            MAX_DOCKER_TIMEOUT,
        )?;
        let lock_wait = bounded_duration("--lock-wait", &state.lock_wait, "10s", MAX_LOCK_WAIT)?;
        Ok((retention, docker_timeout, lock_wait))
    }

    /// `--concurrency`.
    fn concurrency(daemon: &DaemonOptions) -> Result<NonZeroUsize, ConfigError> {
        NonZeroUsize::new(daemon.concurrency).ok_or(ConfigError::Concurrency)
    }

    /// `--owner-label` and `--orphans`.
    fn owner_and_orphans(selection: &SelectionOptions) -> Result<(), ConfigError> {
        if selection.owner_label.as_deref() == Some("") {
            return Err(ConfigError::Empty("--owner-label"));
        }
        match selection.orphans {
            Some(OrphanMode::Report) if selection.owner_label.is_none() => {
                Err(ConfigError::OrphansWithoutOwnerLabel("report"))
            }
            Some(OrphanMode::Remove) if selection.owner_label.is_none() => {
                Err(ConfigError::OrphansWithoutOwnerLabel("remove"))
            }
            _ => Ok(()),
        }
    }
}

impl TryFrom<Arguments> for Config {
    type Error = ConfigError;

    /// The pass of the main form; a command named on the command line is not looked at (see
    /// [`Invocation`]).
    fn try_from(arguments: Arguments) -> Result<Self, ConfigError> {
        let (retention, docker_timeout, lock_wait) =
            PassSettings::durations(&arguments.selection, &arguments.state, &arguments.daemon)?;
        let lease_ttl =
            positive_duration("--lease-ttl", &arguments.lease_ttl, "5m", MAX_LEASE_TTL)?;
        let longest_hold = longest_lease_hold(docker_timeout, lock_wait);
        if lease_ttl <= longest_hold {
            return Err(ConfigError::LeaseTooShort {
                lease_ttl: arguments.lease_ttl,
                minimum: humantime::format_duration(longest_hold).to_string(),
            });
        }
        let concurrency = PassSettings::concurrency(&arguments.daemon)?;
        if arguments.op_source.is_empty() {
            return Err(ConfigError::Empty("--op-source"));
        }
        if arguments.plan_out.is_some() && !arguments.dry_run {
            return Err(ConfigError::PlanOutWithoutDryRun);
        }
        if arguments.apply_plan.is_some() && arguments.dry_run {
            return Err(ConfigError::ApplyPlanWithDryRun);
        }
        PassSettings::owner_and_orphans(&arguments.selection)?;
        if let Some(plan) = &arguments.apply_plan {
            check_input("--apply-plan", plan)?;
        }
        for (option, output) in [
            ("--plan-out", &arguments.plan_out),
            ("--metrics-file", &arguments.metrics_file),
        ] {
            if let Some(output) = output {
                check_output(
                    option,
                    output,
                    &arguments.state.state,
                    arguments.apply_plan.as_deref(),
                )?;
            }
        }
        let docker_host = docker_host(&arguments.daemon)?;
        Ok(Self {
            retention,
            state: arguments.state.state,
            dry_run: arguments.dry_run,
            output: arguments.output.output,
            max_removals: arguments.selection.max_removals,
            owner_label: arguments.selection.owner_label,
            op_source: arguments.op_source,
            docker_host,
            concurrency,
            docker_timeout,
            lock_wait,
            lease_ttl,
            log_format: arguments.output.log_format,
            metrics_file: arguments.metrics_file,
            plan_out: arguments.plan_out,
            apply_plan: arguments.apply_plan,
            orphans: arguments.selection.orphans,
            disk: DiskOptions::from(&arguments.disk),
        })
    }
}

fn parse_duration(
    option: &'static str,
    value: &str,
    example: &'static str,
) -> Result<Duration, ConfigError> {
    let trimmed = value.trim();
    // Values may start with '-' so that `-1d` is refused as negative rather than as an unknown
    // option; another option in the value's place means the value was left out.
    if trimmed.starts_with("--") {
        return Err(ConfigError::MissingValue {
            option,
            value: trimmed.to_owned(),
            example,
        });
    }
    if trimmed.starts_with('-') {
        return Err(ConfigError::Negative {
            option,
            value: value.to_owned(),
            example,
        });
    }
    humantime::parse_duration(trimmed).map_err(|error| ConfigError::Duration {
        option,
        value: value.to_owned(),
        reason: error.to_string(),
    })
}

/// A duration from zero to `max`.
fn bounded_duration(
    option: &'static str,
    value: &str,
    example: &'static str,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let duration = parse_duration(option, value, example)?;
    if duration > max {
        return Err(ConfigError::TooLong {
            option,
            value: value.to_owned(),
            max: humantime::format_duration(max).to_string(),
        });
    }
    Ok(duration)
}

/// A duration greater than zero and at most `max`.
fn positive_duration(
    option: &'static str,
    value: &str,
    example: &'static str,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let duration = bounded_duration(option, value, example, max)?;
    if duration.is_zero() {
        return Err(ConfigError::Zero {
            option,
            value: value.to_owned(),
            example,
        });
    }
    Ok(duration)
}

/// The retention: whole seconds, at least one, and not reaching back before 1970.
fn retention(value: &str) -> Result<Duration, ConfigError> {
    let retention = parse_duration("--retention", value, "7d")?;
    if retention.is_zero() {
        return Err(ConfigError::Zero {
            option: "--retention",
            value: value.to_owned(),
            example: "7d",
        });
    }
    if retention.subsec_nanos() != 0 {
        return Err(ConfigError::RetentionFraction(value.to_owned()));
    }
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if retention > since_epoch {
        return Err(ConfigError::RetentionBeforeEpoch(value.to_owned()));
    }
    Ok(retention)
}

/// The state file and the files SQLite keeps beside it, by the suffix of their names, with what
/// each is.
const STATE_FILES: [(&str, &str); 4] = [
    ("", "the state file"),
    ("-wal", "the state file's write-ahead log"),
    ("-shm", "the state file's shared-memory index"),
    ("-journal", "the state file's rollback journal"),
];

/// Refuses an output file (`--plan-out`, `--metrics-file`) that would replace the state file,
/// one of SQLite's files beside it (whether they exist now or not), or the plan being applied:
/// by the path it resolves to (symlinks followed, `.` and `..` applied) or, where it exists, by
/// its device and inode (a hard link). Refuses too what cannot be replaced by a file (a
/// directory, a FIFO, a device) and a file whose directory does not exist, before anything is
/// opened. Nothing is opened here: every check is a `stat` or a `readlink`.
fn check_output(
    option: &'static str,
    output: &Path,
    state: &Path,
    apply_plan: Option<&Path>,
) -> Result<(), ConfigError> {
    let target = resolve(output);
    let state_resolved = resolve(state);
    // SQLite names its journal after the state file's resolved path; the name as given, in its
    // resolved directory, is checked as well, for a SQLite that would not follow the symlink.
    let state_as_named = match (state.parent(), state.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => resolve(parent).join(name),
        _ => resolve(Path::new(".")).join(state),
    };
    let mut protected = Vec::with_capacity(2 * STATE_FILES.len() + 1);
    for base in [&state_resolved, &state_as_named] {
        for (suffix, what) in STATE_FILES {
            let mut name = base.clone().into_os_string();
            name.push(suffix);
            protected.push((
                PathBuf::from(name),
                format!("{what} (--state {})", state.display()),
            ));
        }
    }
    if let Some(plan) = apply_plan {
        protected.push((
            resolve(plan),
            format!("the plan being applied (--apply-plan {})", plan.display()),
        ));
    }
    // Follows symlinks: what a write through this name would reach.
    let existing = fs::metadata(output).ok();
    for (file, what) in protected {
        let same_file = existing
            .as_ref()
            .zip(fs::metadata(&file).ok())
            .is_some_and(|(output, file)| output.dev() == file.dev() && output.ino() == file.ino());
        if target == file || same_file {
            return Err(ConfigError::OutputReplaces {
                option,
                path: output.to_owned(),
                target: file,
                what,
            });
        }
    }
    if let Some(metadata) = existing {
        if !metadata.is_file() {
            return Err(ConfigError::OutputNotAFile {
                option,
                path: output.to_owned(),
                kind: file_kind(metadata.file_type()),
            });
        }
    }
    let place = |reason: String| ConfigError::OutputPlace {
        option,
        path: output.to_owned(),
        reason,
    };
    let Some(directory) = target.parent().filter(|_| output.file_name().is_some()) else {
        return Err(place("it names no file".to_owned()));
    };
    match fs::metadata(directory) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(metadata) => Err(place(format!(
            "{} is {}, not a directory",
            directory.display(),
            file_kind(metadata.file_type())
        ))),
        Err(error) => Err(place(format!(
            "its directory {} cannot be used ({error}); create it, or name a file in a \
             directory that exists",
            directory.display()
        ))),
    }
}

/// Refuses a file rt-cleanup reads that exists and is not a regular file (symlinks followed),
/// judged by `stat` alone: reading a FIFO would wait for a writer, on a thread no signal reaches.
/// A file that does not exist is left to the reader, whose message says so.
fn check_input(option: &'static str, path: &Path) -> Result<(), ConfigError> {
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Err(ConfigError::InputNotAFile {
            option,
            path: path.to_owned(),
            kind: file_kind(metadata.file_type()),
        }),
        _ => Ok(()),
    }
}

/// What a file is, for messages: "a directory", "a FIFO (named pipe)", ….
#[must_use]
pub fn file_kind(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// The most symlinks followed while resolving one path: the kernel's own limit.
const MAX_SYMLINK_HOPS: u32 = 40;

/// Where `path` leads, whether or not the file exists yet: absolute, with the symlinks of every
/// part that exists followed (a dangling one to where its target would be created), and the
/// `.` and `..` of the part that does not applied by name.
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
    };
    resolve_from(&absolute, 0)
}

fn resolve_from(path: &Path, hops: u32) -> PathBuf {
    if let Ok(resolved) = path.canonicalize() {
        return resolved;
    }
    if hops < MAX_SYMLINK_HOPS {
        if let Ok(link) = fs::read_link(path) {
            let base = path.parent().unwrap_or_else(|| Path::new("/"));
            return resolve_from(&base.join(link), hops + 1);
        }
    }
    let mut components = path.components();
    match components.next_back() {
        Some(Component::Normal(name)) => resolve_from(components.as_path(), hops).join(name),
        Some(Component::ParentDir) => {
            let mut parent = resolve_from(components.as_path(), hops);
            parent.pop();
            parent
        }
        Some(Component::CurDir) => resolve_from(components.as_path(), hops),
        Some(Component::RootDir | Component::Prefix(_)) | None => path.to_owned(),
    }
}

/// The daemon and how to speak to it, as the Docker CLI reads `DOCKER_HOST`,
/// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`. The TLS settings are ignored for a `unix://`
/// socket, as by the Docker CLI (a shared environment file may hold them for another host);
/// for a `tcp://` daemon a TLS file without `--tlsverify` is refused rather than ignored, so
/// that a connection meant to be TLS never goes out in plain text.
fn docker_host(arguments: &DaemonOptions) -> Result<DockerHost, ConfigError> {
    let value = arguments.docker_host.as_str();
    let invalid = || ConfigError::DockerHost(value.to_owned());
    if let Some(path) = value.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(invalid());
        }
        return Ok(DockerHost::Unix(PathBuf::from(path)));
    }
    if value.starts_with("ssh://") {
        return Err(ConfigError::SshHost(value.to_owned()));
    }
    let (address, plain_http) = if let Some(address) = value.strip_prefix("tcp://") {
        (address, false)
    } else if let Some(address) = value.strip_prefix("http://") {
        (address, true)
    } else {
        return Err(invalid());
    };
    let address = address.trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    if host.is_empty() || port.parse::<u16>().is_err() || address.contains('/') {
        return Err(invalid());
    }
    if arguments.tls_verify.is_none() {
        let given = [
            ("DOCKER_CERT_PATH", arguments.docker_cert_path.is_some()),
            ("--tlscacert", arguments.tls_ca_cert.is_some()),
            ("--tlscert", arguments.tls_cert.is_some()),
            ("--tlskey", arguments.tls_key.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
            return Err(ConfigError::TlsFilesWithoutVerify(name));
        }
        return Ok(DockerHost::Tcp(address.to_owned()));
    }
    if plain_http {
        return Err(ConfigError::HttpWithTls(value.to_owned()));
    }
    Ok(DockerHost::Tls {
        address: address.to_owned(),
        files: tls_files(arguments)?,
    })
}

/// The three files: each given on its own, or named as the Docker CLI names them in
/// `DOCKER_CERT_PATH`, by default `~/.docker`.
fn tls_files(arguments: &DaemonOptions) -> Result<TlsFiles, ConfigError> {
    let directory = || -> Result<PathBuf, ConfigError> {
        match &arguments.docker_cert_path {
            Some(directory) => Ok(directory.clone()),
            None => std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".docker"))
                .ok_or(ConfigError::NoCertPath),
        }
    };
    let file = |given: &Option<PathBuf>,
                option: &'static str,
                name: &str|
     -> Result<PathBuf, ConfigError> {
        let path = match given {
            Some(path) => path.clone(),
            None => directory()?.join(name),
        };
        check_input(option, &path)?;
        Ok(path)
    };
    Ok(TlsFiles {
        ca: file(&arguments.tls_ca_cert, "--tlscacert", "ca.pem")?,
        cert: file(&arguments.tls_cert, "--tlscert", "cert.pem")?,
        key: file(&arguments.tls_key, "--tlskey", "key.pem")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut command_line = vec!["rt-cleanup"];
        command_line.extend_from_slice(args);
        Config::try_from(
            Arguments::try_from_args(command_line).expect("clap accepts the arguments"),
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
        assert_eq!(
            config.disk,
            DiskOptions::default(),
            "nothing measured, anonymous volumes kept"
        );
    }

    #[test]
    fn measure_space_and_remove_volumes_are_flags_of_the_pass_and_of_explain() {
        let config = config(&["--retention", "7d", "--measure-space", "--remove-volumes"]).unwrap();
        assert_eq!(
            config.disk,
            DiskOptions {
                measure_space: true,
                remove_volumes: true,
            }
        );
        let explain = Arguments::try_from_args([
            "rt-cleanup",
            "explain",
            "g-1",
            "--retention",
            "7d",
            "--remove-volumes",
        ])
        .expect("explain takes them");
        let Ok(Invocation::Explain(explain)) = Invocation::try_from(explain) else {
            panic!("explain is explain")
        };
        assert!(explain.pass.disk.remove_volumes && !explain.pass.disk.measure_space);
        assert!(
            Arguments::try_from_args(["rt-cleanup", "history", "--measure-space"]).is_err(),
            "history removes and measures nothing"
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
        for bad in ["7", "seven days", "", "7x"] {
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
            "https://host:2376",
            "tcp://host",
            "unix://",
            "tcp://:1",
            // Each part of the address check on its own: a port that is no number, a path.
            "tcp://host:notaport",
            "tcp://host:99999",
            "tcp://host/x:2375",
        ] {
            let error = config(&["--retention", "1d", "--docker-host", bad]).unwrap_err();
            assert_eq!(error, ConfigError::DockerHost(bad.into()));
        }
        let error = config(&["--retention", "1d", "--docker-host", "ssh://me@host"]).unwrap_err();
        assert_eq!(error, ConfigError::SshHost("ssh://me@host".into()));
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn tlsverify_reads_the_files_from_the_cert_path_as_the_docker_cli_does() {
        let host = config(&[
            "--retention",
            "1d",
            "--docker-host",
            "tcp://10.0.0.5:2376",
            "--tlsverify",
            "--docker-cert-path",
            "/etc/rt-cleanup/tls",
            "--tlskey",
            "/root-only/key.pem",
        ])
        .unwrap()
        .docker_host;
        assert_eq!(
            host,
            DockerHost::Tls {
                address: "10.0.0.5:2376".into(),
                files: TlsFiles {
                    ca: "/etc/rt-cleanup/tls/ca.pem".into(),
                    cert: "/etc/rt-cleanup/tls/cert.pem".into(),
                    key: "/root-only/key.pem".into(),
                },
            }
        );
        assert_eq!(host.to_string(), "tcp://10.0.0.5:2376");
    }

    #[test]
    fn tlsverify_reads_the_files_from_the_home_directory_by_default() {
        // As the Docker CLI: without DOCKER_CERT_PATH, the files are in ~/.docker, from HOME
        // as this test process has it.
        let result = config(&[
            "--retention",
            "1d",
            "--docker-host",
            "tcp://10.0.0.5:2376",
            "--tlsverify",
        ]);
        match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
            Some(home) => {
                let directory = PathBuf::from(home).join(".docker");
                assert_eq!(
                    result.map(|config| config.docker_host),
                    Ok(DockerHost::Tls {
                        address: "10.0.0.5:2376".into(),
                        files: TlsFiles {
                            ca: directory.join("ca.pem"),
                            cert: directory.join("cert.pem"),
                            key: directory.join("key.pem"),
                        },
                    })
                );
            }
            None => assert_eq!(result, Err(ConfigError::NoCertPath), "HOME is unset"),
        }
        // A file given on its own replaces only that file.
        let files = match config(&[
            "--retention",
            "1d",
            "--docker-host",
            "tcp://10.0.0.5:2376",
            "--tlsverify",
            "--tlscacert",
            "/etc/ca.pem",
            "--tlscert",
            "/etc/cert.pem",
            "--tlskey",
            "/etc/key.pem",
        ]) {
            Ok(Config {
                docker_host: DockerHost::Tls { files, .. },
                ..
            }) => files,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            files,
            TlsFiles {
                ca: "/etc/ca.pem".into(),
                cert: "/etc/cert.pem".into(),
                key: "/etc/key.pem".into(),
            },
            "all three given: no directory is needed"
        );
    }

    #[test]
    fn tls_settings_are_ignored_for_a_unix_socket_and_never_silently_for_tcp() {
        let unix = config(&[
            "--retention",
            "1d",
            "--tlsverify",
            "--docker-cert-path",
            "/x",
        ])
        .unwrap();
        assert_eq!(
            unix.docker_host,
            DockerHost::Unix("/var/run/docker.sock".into())
        );
        for (option, value) in [
            ("--docker-cert-path", "/x"),
            ("--tlscacert", "/x/ca.pem"),
            ("--tlscert", "/x/cert.pem"),
            ("--tlskey", "/x/key.pem"),
        ] {
            let error = config(&[
                "--retention",
                "1d",
                "--docker-host",
                "tcp://h:2376",
                option,
                value,
            ])
            .unwrap_err();
            assert!(
                matches!(error, ConfigError::TlsFilesWithoutVerify(_)),
                "{option}: {error}"
            );
        }
        assert_eq!(
            config(&[
                "--retention",
                "1d",
                "--docker-host",
                "http://h:2376",
                "--tlsverify"
            ]),
            Err(ConfigError::HttpWithTls("http://h:2376".into()))
        );
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

    #[test]
    fn negative_durations_reach_validation_and_are_named() {
        for option in [
            "--retention",
            "--docker-timeout",
            "--lock-wait",
            "--lease-ttl",
        ] {
            let mut args = vec![option, "-1d"];
            if option != "--retention" {
                args.extend(["--retention", "7d"]);
            }
            let error = config(&args).unwrap_err();
            assert!(
                matches!(error, ConfigError::Negative { .. }),
                "{option}: {error}"
            );
            assert!(error
                .to_string()
                .starts_with(&format!("invalid {option} \"-1d\"")));
        }
        assert_eq!(
            config(&["--retention", "--dry-run"])
                .unwrap_err()
                .to_string(),
            "--retention needs a value, e.g. 7d; it was given the option --dry-run"
        );
    }

    #[test]
    fn a_retention_is_whole_seconds_after_1970() {
        assert_eq!(
            config(&["--retention", "500ms"]),
            Err(ConfigError::RetentionFraction("500ms".into()))
        );
        assert_eq!(
            config(&["--retention", "1s 500ms"]),
            Err(ConfigError::RetentionFraction("1s 500ms".into()))
        );
        assert_eq!(
            config(&["--retention", "1000y"]),
            Err(ConfigError::RetentionBeforeEpoch("1000y".into()))
        );
        assert_eq!(
            config(&["--retention", "1s"]).unwrap().retention,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn absurdly_long_waits_are_refused_not_a_panic() {
        for (option, value) in [
            ("--lock-wait", "25d"),
            ("--lease-ttl", "30d"),
            ("--docker-timeout", "2h"),
        ] {
            let error = config(&["--retention", "7d", option, value]).unwrap_err();
            assert!(
                matches!(error, ConfigError::TooLong { .. }),
                "{option}: {error}"
            );
        }
        // The longest of each is accepted together (the lease must outlast them).
        assert!(config(&[
            "--retention",
            "7d",
            "--lock-wait",
            "1h",
            "--docker-timeout",
            "1h",
            "--lease-ttl",
            "1d"
        ])
        .is_ok());
    }

    #[test]
    fn the_lease_outlasts_every_wait_under_it() {
        // 3 × 30s + 4 × 10s + 10s = 140s with the defaults.
        assert_eq!(
            longest_lease_hold(Duration::from_secs(30), Duration::from_secs(10)),
            Duration::from_secs(140)
        );
        let error = config(&["--retention", "1d", "--lease-ttl", "140s"]).unwrap_err();
        assert!(
            matches!(error, ConfigError::LeaseTooShort { .. }),
            "{error}"
        );
        assert!(config(&["--retention", "1d", "--lease-ttl", "141s"]).is_ok());
    }

    /// A state file in a directory of its own, and `config` of a pass over it with `extra`.
    fn over_state(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        fs::write(&state, b"").unwrap();
        let config = over(&state, extra);
        (dir, state, config)
    }

    fn over(state: &Path, extra: &[&str]) -> Result<Config, ConfigError> {
        let state = state.to_str().unwrap();
        let mut args = vec!["--retention", "1d", "--state", state];
        args.extend_from_slice(extra);
        config(&args)
    }

    fn replaced(result: Result<Config, ConfigError>) -> PathBuf {
        match result {
            Err(ConfigError::OutputReplaces { target, .. }) => target,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_output_file_that_resolves_to_the_state_file_or_its_journals_is_refused() {
        let (dir, state, _) = over_state(&[]);
        let state_text = state.to_str().unwrap().to_owned();
        let dir_name = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
        let dotted = format!("{}/../{dir_name}/./state.db", dir.path().display());
        std::os::unix::fs::symlink(&state, dir.path().join("link.prom")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("dir-link")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("state.db-wal"),
            dir.path().join("dangling.prom"),
        )
        .unwrap();
        fs::hard_link(&state, dir.path().join("hard.prom")).unwrap();
        let canonical = state.canonicalize().unwrap();
        let journal = |suffix: &str| PathBuf::from(format!("{}{suffix}", canonical.display()));
        for (output, target) in [
            (state_text.clone(), canonical.clone()),
            (dotted, canonical.clone()),
            (
                format!("{}/link.prom", dir.path().display()),
                canonical.clone(),
            ),
            (
                format!("{}/hard.prom", dir.path().display()),
                canonical.clone(),
            ),
            (format!("{state_text}-wal"), journal("-wal")),
            (format!("{state_text}-shm"), journal("-shm")),
            (
                format!("{}/dir-link/state.db-journal", dir.path().display()),
                journal("-journal"),
            ),
            (
                format!("{}/dangling.prom", dir.path().display()),
                journal("-wal"),
            ),
        ] {
            for option in ["--metrics-file", "--plan-out"] {
                let result = over(&state, &["--dry-run", option, &output]);
                assert_eq!(replaced(result), target, "{option} {output}");
            }
        }
        let message = over(&state, &["--metrics-file", &state_text])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("--metrics-file {state_text} resolves to ")),
            "{message}"
        );
        assert!(
            message.contains(&format!("(--state {state_text})")),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn the_state_files_journals_count_under_its_name_in_its_resolved_directory() {
        // The state file is a symlink named in a symlinked directory: SQLite may name its
        // journal after the name as given, in the directory that name resolves to.
        let (dir, state, _) = over_state(&[]);
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&state, real.join("link.db")).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("dir-link")).unwrap();
        let named = dir.path().join("dir-link/link.db");
        let wal = real.join("link.db-wal");
        let target = replaced(over(&named, &["--metrics-file", wal.to_str().unwrap()]));
        assert_eq!(target, real.canonicalize().unwrap().join("link.db-wal"));
    }

    #[test]
    fn an_output_in_a_symlink_loop_is_judged_without_following_it_forever() {
        let (dir, state, _) = over_state(&[]);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        // A new file is renamed over the name given, which replaces the link itself: nothing
        // is written through the loop, and it leads to no file of the state's.
        let config = over(&state, &["--metrics-file", a.to_str().unwrap()]).unwrap();
        assert_eq!(config.metrics_file, Some(a));
    }

    #[test]
    fn symlinks_are_followed_as_far_as_the_kernel_follows_them() {
        // Links l1 -> l2 -> … -> l41 -> state.db-wal: from l2, 40 links lead to the WAL, which
        // the kernel would follow; from l1, 41 do, which it refuses (ELOOP), so a write
        // through l1 could reach nothing (and the rename replaces l1 itself).
        let (dir, state, _) = over_state(&[]);
        let link = |n: usize| dir.path().join(format!("l{n}"));
        for n in 1..=40 {
            std::os::unix::fs::symlink(link(n + 1), link(n)).unwrap();
        }
        std::os::unix::fs::symlink(dir.path().join("state.db-wal"), link(41)).unwrap();
        let wal = PathBuf::from(format!("{}-wal", state.canonicalize().unwrap().display()));
        let forty = over(&state, &["--metrics-file", link(2).to_str().unwrap()]);
        assert_eq!(replaced(forty), wal);
        let forty_one = over(&state, &["--metrics-file", link(1).to_str().unwrap()]).unwrap();
        assert_eq!(forty_one.metrics_file, Some(link(1)));
    }

    #[test]
    fn the_metrics_file_may_not_replace_the_plan_being_applied() {
        let (dir, state, _) = over_state(&[]);
        let plan = dir.path().join("plan.json");
        let plan = plan.to_str().unwrap();
        let target = replaced(over(
            &state,
            &["--apply-plan", plan, "--metrics-file", plan],
        ));
        assert_eq!(target, dir.path().canonicalize().unwrap().join("plan.json"));
    }

    #[test]
    fn an_output_file_beside_the_state_file_is_accepted() {
        let (dir, state, _) = over_state(&[]);
        let beside = dir.path().join("state.db.prom");
        let config = over(&state, &["--metrics-file", beside.to_str().unwrap()]).unwrap();
        assert_eq!(config.metrics_file, Some(beside));
    }

    #[test]
    fn an_output_file_that_is_not_a_regular_file_or_has_no_directory_is_refused() {
        let (dir, state, _) = over_state(&[]);
        let directory = dir.path().to_str().unwrap();
        for (output, kind) in [
            (directory, "a directory"),
            ("/dev/null", "a character device"),
        ] {
            match over(&state, &["--metrics-file", output]) {
                Err(ConfigError::OutputNotAFile { kind: found, .. }) => {
                    assert_eq!(found, kind, "{output}");
                }
                other => panic!("{output}: {other:?}"),
            }
        }
        let missing = format!("{directory}/no/such/dir/out.prom");
        let error = over(&state, &["--metrics-file", &missing]).unwrap_err();
        assert!(matches!(error, ConfigError::OutputPlace { .. }), "{error}");
        assert!(error.to_string().contains("no/such/dir"), "{error}");
        let under_a_file = format!("{}/out.prom", state.display());
        let error = over(&state, &["--metrics-file", &under_a_file]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is a regular file, not a directory"),
            "{error}"
        );
    }

    #[test]
    fn a_plan_or_tls_file_that_is_not_a_regular_file_is_refused_before_it_is_read() {
        let (dir, state, _) = over_state(&[]);
        let fifo = dir.path().join("plan.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let fifo = fifo.to_str().unwrap();
        let directory = dir.path().to_str().unwrap();
        let pem = dir.path().join("cert.pem");
        fs::write(&pem, b"").unwrap();
        let pem = pem.to_str().unwrap();
        let tls = |ca: &str, cert: &str, key: &str| {
            let host = ["--docker-host", "tcp://daemon.example:2376", "--tlsverify"];
            let files = ["--tlscacert", ca, "--tlscert", cert, "--tlskey", key];
            over(&state, &[&host[..], &files[..]].concat())
        };
        for (result, option, kind) in [
            (
                over(&state, &["--apply-plan", fifo]),
                "--apply-plan",
                "a FIFO (named pipe)",
            ),
            (
                over(&state, &["--apply-plan", directory]),
                "--apply-plan",
                "a directory",
            ),
            (tls(fifo, pem, pem), "--tlscacert", "a FIFO (named pipe)"),
            (
                tls(pem, "/dev/null", pem),
                "--tlscert",
                "a character device",
            ),
            (tls(pem, pem, directory), "--tlskey", "a directory"),
        ] {
            match result {
                Err(error @ ConfigError::InputNotAFile { .. }) => {
                    let message = error.to_string();
                    assert!(message.starts_with(option), "{message}");
                    assert!(message.contains(kind), "{message}");
                }
                other => panic!("{option} {kind}: {other:?}"),
            }
        }
        // A file that does not exist yet is the reader's to report, with its own message.
        assert!(over(&state, &["--apply-plan", &format!("{directory}/none.json")]).is_ok());
        assert!(tls(pem, pem, pem).is_ok());
    }

    #[test]
    fn orphans_need_an_owner_label() {
        assert_eq!(config(&["--retention", "1d"]).unwrap().orphans, None);
        for mode in ["report", "remove"] {
            let error = config(&["--retention", "1d", "--orphans", mode]).unwrap_err();
            assert!(
                matches!(error, ConfigError::OrphansWithoutOwnerLabel(_)),
                "{error}"
            );
            let config = config(&["--retention", "1d", "--orphans", mode, "--owner-label", "k"]);
            assert!(config.is_ok(), "{mode}");
        }
        assert!(config(&["--retention", "1d", "--orphans", "off"]).is_ok());
    }
}

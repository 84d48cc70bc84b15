//! The command line as typed: every option, its environment variable and its help.
//!
//! Values stay raw here; `config.rs` validates them into a [`crate::config::Config`].

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::exit::ExitStatus;
use crate::store::STARTED_AT_SLACK_MS;

/// The default of `--op-source`.
pub const DEFAULT_OP_SOURCE: &str = "auto_ttl";

/// The default of `--lease-ttl`.
pub const DEFAULT_LEASE_TTL: &str = "5m";

/// The format of what a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines of key=value pairs: the pass prints one per expired record, then a line with the
    /// counts.
    Text,
    /// One JSON object, as docs/contract.md describes it.
    Json,
}

/// What a pass does with leaked containers: those whose owner label names a game that no
/// record claims them for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanMode {
    /// Do not look for them.
    Off,
    /// List them in the summary; attempt nothing.
    Report,
    /// Remove them, each under its game's lease.
    Remove,
}

/// The format of the logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal (which also gets a
    /// progress line); where stderr is the journal, journald's own entries instead.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The Docker CLI's reading of `DOCKER_TLS_VERIFY`: set to anything (but the empty string,
/// which counts as unset), it turns TLS on. `--tlsverify` on the command line reaches here as
/// `true`.
// clap's value parsers return a Result; this one never fails.
#[allow(clippy::unnecessary_wraps)]
fn any_value_is_true(_: &str) -> Result<bool, std::convert::Infallible> {
    Ok(true)
}

/// The text after the options in `--help`: results, exit statuses (from [`ExitStatus`], their one
/// home), logs, and where the whole interface is described.
fn after_help() -> String {
    format!(
        "\
Results (one per expired record): removed, replay_no_op (container already gone), conflict
(someone else holds the game), failed (see error_code), deferred (not reached this run).

Exit status:
{}
Logs go to stderr (natively to journald where stderr is the journal, text logs only),
filtered by RT_CLEANUP_LOG (or RUST_LOG), e.g. RT_CLEANUP_LOG=debug.
Every option can also be set by the environment variable shown beside it; a variable set to
the empty string counts as unset.

The interface (state file, lease protocol, results, JSON summary, exit statuses, plans,
orphans) is described in docs/contract.md, installed as
/usr/share/doc/rt-cleanup/contract.md.",
        ExitStatus::table()
    )
}

/// A command's exit statuses, one per line as `--help` shows them: the codes from
/// [`ExitStatus`], their one home, with what each means for that command.
fn exit_lines(rows: &[(ExitStatus, &str)]) -> String {
    let mut lines = String::new();
    for (status, meaning) in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(lines, "  {:<4} {meaning}", status.code());
    }
    lines
}

/// The text after the options of `explain --help`.
fn explain_after_help() -> String {
    format!(
        "\
Verdicts: no_record, not_stopped, not_expired, expired (with the result a dry run predicts:
removed, replay_no_op, conflict, failed, deferred), removed (already, with the operation_log
row that says when and by whom). Nothing is written and no lease is taken.

Exit status:
{}
The verdicts and the JSON shape are described in docs/contract.md (\"The read-only commands\").",
        exit_lines(&[
            (ExitStatus::Success, "every game was explained"),
            (ExitStatus::Usage, "bad invocation or unusable state file"),
            (
                ExitStatus::DockerUnavailable,
                "explained from the state file alone: the daemon could not be asked",
            ),
            (
                ExitStatus::StateBusy,
                "the state file stayed locked or busy past --lock-wait; retry later",
            ),
            (ExitStatus::Interrupted, "interrupted by SIGINT"),
            (ExitStatus::Terminated, "interrupted by SIGTERM"),
        ])
    )
}

/// The text after the options of `history --help`.
fn history_after_help() -> String {
    format!(
        "\
Rows are read from operation_log as stored, newest first (by id). --since and --until find
their window by a binary search over id, which tolerates rows appended up to {} out of
started_at order; rows whose started_at is not a number have no time and are left out of a
window. Nothing is written.

Exit status:
{}
The row shapes are described in docs/contract.md (\"The read-only commands\").",
        humantime::format_duration(Duration::from_millis(STARTED_AT_SLACK_MS.unsigned_abs())),
        exit_lines(&[
            (
                ExitStatus::Success,
                "the rows were printed (no row matching included)"
            ),
            (ExitStatus::Usage, "bad invocation or unusable state file"),
            (
                ExitStatus::StateBusy,
                "the state file stayed locked or busy past --lock-wait; retry later",
            ),
            (ExitStatus::Interrupted, "interrupted by SIGINT"),
            (ExitStatus::Terminated, "interrupted by SIGTERM"),
        ])
    )
}

/// Removes the Docker containers of games that the runtime manager stopped longer than a
/// retention ago.
///
/// For each expired `stopped` record of the state file, under the game's lease, it removes the
/// container (never with force), moves the record to `removed` and appends an `operation_log`
/// row. Audit with --dry-run first: it changes nothing anywhere. Two commands only read:
/// `rt-cleanup explain GAME...` says why a game is or is not removed, and `rt-cleanup history`
/// lists operation_log.
// These doc comments are the `--help` an operator reads, not rustdoc: no Markdown in them.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Parser)]
#[command(
    name = "rt-cleanup",
    version,
    about,
    long_about,
    after_help = after_help(),
    // The pass is the main form, `rt-cleanup --retention 7d`; a command takes its own options
    // after its name, so `rt-cleanup --dry-run explain g-1` is refused rather than half read.
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Arguments {
    /// What the pass selects and how it decides.
    #[command(flatten)]
    pub selection: SelectionOptions,

    /// The state file.
    #[command(flatten)]
    pub state: StateOptions,

    /// Change nothing anywhere; report the result a real run would give now.
    #[arg(
        long,
        env = "RT_CLEANUP_DRY_RUN",
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub dry_run: bool,

    /// The output formats.
    #[command(flatten)]
    pub output: OutputOptions,

    /// What the pass measures and removes besides the containers.
    #[command(flatten)]
    pub disk: DiskArguments,

    /// The value written to operation_log.op_source.
    #[arg(
        long,
        env = "RT_CLEANUP_OP_SOURCE",
        value_name = "NAME",
        default_value = DEFAULT_OP_SOURCE
    )]
    pub op_source: String,

    /// The daemon and the calls made to it.
    #[command(flatten)]
    pub daemon: DaemonOptions,

    /// How long a game's lease taken by this tool lasts if it dies holding it. Must exceed the
    /// longest it can hold a lease for: three Docker timeouts, four lock waits and 10s.
    #[arg(
        long,
        env = "RT_CLEANUP_LEASE_TTL",
        value_name = "DURATION",
        default_value = DEFAULT_LEASE_TTL,
        allow_hyphen_values = true
    )]
    pub lease_ttl: String,

    /// Write Prometheus metrics of each real run to this file (atomically), for
    /// node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/rt_cleanup.prom.
    /// A path that leads to the state file or its -wal, -shm or -journal is refused (exit 2).
    #[arg(long, env = "RT_CLEANUP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// With --dry-run: write the exact set of records a real run would act on to FILE, for
    /// review and a later --apply-plan. A path that leads to the state file or its -wal, -shm
    /// or -journal is refused (exit 2).
    #[arg(long, env = "RT_CLEANUP_PLAN_OUT", value_name = "FILE")]
    pub plan_out: Option<PathBuf>,

    /// Act on exactly the records of a plan written by --dry-run --plan-out, and nothing else.
    /// Each is still re-checked under its lease; one that changed since is a conflict.
    #[arg(long, env = "RT_CLEANUP_APPLY_PLAN", value_name = "FILE")]
    pub apply_plan: Option<PathBuf>,

    /// A command that only reads, instead of the pass.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What a pass selects and how it decides: the options that `explain` shares with the pass, so
/// that the service's environment file makes it explain what the timer does.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
pub struct SelectionOptions {
    /// Remove containers stopped longer ago than this, e.g. 7d, 36h, "1week 2days".
    // Required by clap for the pass and for explain; `None` only under history.
    #[arg(
        long,
        env = "RT_CLEANUP_RETENTION",
        value_name = "DURATION",
        allow_hyphen_values = true,
        required = true
    )]
    pub retention: Option<String>,

    /// Act on at most N candidates this run, oldest first; the rest are reported deferred.
    #[arg(long, env = "RT_CLEANUP_MAX_REMOVALS", value_name = "N")]
    pub max_removals: Option<usize>,

    /// Remove a container only if its label KEY equals the record's game_id.
    #[arg(long, env = "RT_CLEANUP_OWNER_LABEL", value_name = "KEY")]
    pub owner_label: Option<String>,

    /// After the records, look for leaked containers: those whose --owner-label names a game
    /// that no record claims them for, stopped longer than the retention. "report" lists them,
    /// "remove" removes them under their game's lease. Needs --owner-label. [default: off]
    #[arg(long, env = "RT_CLEANUP_ORPHANS", value_enum, value_name = "MODE")]
    pub orphans: Option<OrphanMode>,
}

/// What a pass measures and removes besides the containers: the options that `explain` shares
/// with the pass, so that it shows what the timer's pass frees.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
pub struct DiskArguments {
    /// Measure the writable layer of each container the pass removes (a dry run: would remove)
    /// with an inspection asked with size=true, and report it per record and in total ("freed ≈
    /// 3.2 GiB"). An estimate: the image's layers, shared with other containers, and volumes are
    /// not counted. Slow on large containers (the daemon walks the layer): each inspection runs
    /// within --concurrency and --docker-timeout, and a container whose size cannot be measured
    /// is removed all the same, its size reported unknown.
    #[arg(
        long,
        env = "RT_CLEANUP_MEASURE_SPACE",
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub measure_space: bool,

    /// Remove each container with its anonymous volumes (the removal carries v=true): those the
    /// engine made for it without a name, from its image's VOLUME or -v /path. Named volumes are
    /// never removed, nor a volume another container still uses. A dry run lists per record the
    /// volumes that would go; the summary those that went. Without it they stay, dangling.
    #[arg(
        long,
        env = "RT_CLEANUP_REMOVE_VOLUMES",
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub remove_volumes: bool,
}

/// The state file, which every command reads.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
pub struct StateOptions {
    /// The runtime manager's SQLite state file. Never created: it must exist, as a regular file
    /// or a symlink to one.
    #[arg(
        long,
        env = "RT_CLEANUP_STATE",
        value_name = "PATH",
        default_value = "/var/lib/rtmanager/state.db"
    )]
    pub state: PathBuf,

    /// How long to wait for a write lock on the state file held by someone else (exit 75 after).
    #[arg(
        long,
        env = "RT_CLEANUP_LOCK_WAIT",
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true
    )]
    pub lock_wait: String,
}

/// The formats of stdout and stderr, which every command writes.
#[derive(Debug, Clone, Args)]
pub struct OutputOptions {
    /// The format of what is printed on stdout.
    #[arg(long, env = "RT_CLEANUP_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// The format of the logs on stderr.
    #[arg(long, env = "RT_CLEANUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The Docker daemon and the calls made to it, for the pass and `explain`.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
pub struct DaemonOptions {
    /// The Docker daemon (Docker Engine, or Podman's Docker-compatible service):
    /// unix:///path/to/docker.sock, or tcp://host:port (over TLS with --tlsverify). ssh:// is not
    /// supported.
    #[arg(
        long,
        env = "DOCKER_HOST",
        value_name = "URL",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,

    /// Speak to a tcp:// daemon over TLS: verify its certificate against the CA and present the
    /// client certificate, as the Docker CLI does. As for the Docker CLI, any non-empty value of
    /// DOCKER_TLS_VERIFY turns it on (even 0). Never falls back to plain text. Ignored for a
    /// unix:// socket.
    // Not a SetTrue flag: its implicit default "false" would reach the parser like a value of
    // the variable, and the Docker CLI reads DOCKER_TLS_VERIFY=false as on.
    #[arg(
        long = "tlsverify",
        env = "DOCKER_TLS_VERIFY",
        num_args = 0,
        default_missing_value = "true",
        value_parser = any_value_is_true
    )]
    pub tls_verify: Option<bool>,

    /// With --tlsverify: the directory of ca.pem, cert.pem and key.pem [default: ~/.docker].
    #[arg(long, env = "DOCKER_CERT_PATH", value_name = "DIR")]
    pub docker_cert_path: Option<PathBuf>,

    /// With --tlsverify: the CA certificate that must have signed the daemon's certificate
    /// [default: ca.pem in --docker-cert-path].
    #[arg(long = "tlscacert", env = "RT_CLEANUP_TLSCACERT", value_name = "FILE")]
    pub tls_ca_cert: Option<PathBuf>,

    /// With --tlsverify: the client certificate presented to the daemon [default: cert.pem in
    /// --docker-cert-path]. Without it and its key, no client certificate is presented.
    #[arg(long = "tlscert", env = "RT_CLEANUP_TLSCERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// With --tlsverify: the client certificate's private key [default: key.pem in
    /// --docker-cert-path].
    #[arg(long = "tlskey", env = "RT_CLEANUP_TLSKEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// How many records are worked on at once (Docker calls overlap; the state file is written
    /// in grouped transactions). The default of 6 keeps four or more removals in flight while
    /// other records take their leases (docs/benchmark.md).
    #[arg(
        long,
        env = "RT_CLEANUP_CONCURRENCY",
        value_name = "N",
        default_value_t = 6
    )]
    pub concurrency: usize,

    /// How long one Docker call may take before it counts as failed.
    #[arg(
        long,
        env = "RT_CLEANUP_DOCKER_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        allow_hyphen_values = true
    )]
    pub docker_timeout: String,
}

/// The commands beside the pass. Each only reads: no write, no lease, nothing created beside
/// the state file, as a dry run.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Says, for each named game, what a pass would do with it now and why, as a dry run
    /// predicts it: no record, not stopped (since when), not expired (until when), expired (the
    /// result a dry run predicts, with its reason), or already removed (when, by whom). Takes
    /// the options of a pass and their environment variables, so that under the service's
    /// environment file it explains what the timer will do.
    Explain(ExplainArguments),
    /// Lists operation_log, newest first: every row, whoever wrote it (rt-cleanup and the
    /// runtime manager alike), filtered by game, time, result, op_kind and op_source.
    History(HistoryArguments),
}

/// The options of `rt-cleanup explain`.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
#[command(after_help = explain_after_help())]
pub struct ExplainArguments {
    /// The games to explain, by game_id.
    #[arg(required = true, value_name = "GAME", value_parser = clap::value_parser!(OsString))]
    pub games: Vec<OsString>,

    /// What the pass selects and how it decides.
    #[command(flatten)]
    pub selection: SelectionOptions,

    /// The state file.
    #[command(flatten)]
    pub state: StateOptions,

    /// The output formats.
    #[command(flatten)]
    pub output: OutputOptions,

    /// The daemon and the calls made to it.
    #[command(flatten)]
    pub daemon: DaemonOptions,

    /// What the pass measures and removes besides the containers.
    #[command(flatten)]
    pub disk: DiskArguments,
}

/// A result that `rt-cleanup history --result` selects rows by.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryResult {
    /// rt-cleanup removed the container (outcome success, no error_code).
    Removed,
    /// rt-cleanup found nothing left to remove (error_code replay_no_op).
    #[value(name = "replay_no_op")]
    ReplayNoOp,
    /// Someone else had the game (error_code conflict).
    Conflict,
    /// rt-cleanup's attempt failed (outcome failure).
    Failed,
    /// Any row, of any op_kind, whose outcome is success.
    Success,
    /// Any row, of any op_kind, whose outcome is failure.
    Failure,
}

/// The options of `rt-cleanup history`.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Args)]
#[command(after_help = history_after_help())]
pub struct HistoryArguments {
    /// Only the rows of this game_id; repeat it for several games.
    #[arg(
        long = "game",
        env = "RT_CLEANUP_HISTORY_GAME",
        value_name = "GAME",
        action = ArgAction::Append,
        value_parser = clap::value_parser!(OsString)
    )]
    pub games: Vec<OsString>,

    /// Only the rows that started at or after this time: a duration ago (1d, 36h, "2h 30m") or
    /// a UTC time (2026-12-01T00:00:00Z).
    #[arg(
        long,
        env = "RT_CLEANUP_HISTORY_SINCE",
        value_name = "WHEN",
        allow_hyphen_values = true
    )]
    pub since: Option<String>,

    /// Only the rows that started before this time: a duration ago or a UTC time, as --since.
    #[arg(
        long,
        env = "RT_CLEANUP_HISTORY_UNTIL",
        value_name = "WHEN",
        allow_hyphen_values = true
    )]
    pub until: Option<String>,

    /// Only the rows of these results: removed, replay_no_op, conflict, failed (rows of
    /// rt-cleanup's op_kinds), or success, failure (the outcome of any row); comma-separated or
    /// repeated.
    #[arg(
        long = "result",
        env = "RT_CLEANUP_HISTORY_RESULT",
        value_enum,
        value_name = "RESULT",
        value_delimiter = ',',
        action = ArgAction::Append
    )]
    pub results: Vec<HistoryResult>,

    /// Only the rows of this op_kind (e.g. cleanup_container, cleanup_orphan, or one of the
    /// runtime manager's); repeat it for several.
    #[arg(
        long = "op-kind",
        env = "RT_CLEANUP_HISTORY_OP_KIND",
        value_name = "KIND",
        action = ArgAction::Append
    )]
    pub op_kinds: Vec<String>,

    /// Only the rows of this op_source (e.g. auto_ttl); repeat it for several.
    #[arg(
        long = "op-source",
        env = "RT_CLEANUP_HISTORY_OP_SOURCE",
        value_name = "NAME",
        action = ArgAction::Append
    )]
    pub op_sources: Vec<String>,

    /// Print at most N rows, the newest (at most 1000000).
    #[arg(
        long,
        env = "RT_CLEANUP_HISTORY_LIMIT",
        value_name = "N",
        default_value = "50",
        allow_hyphen_values = true
    )]
    pub limit: String,

    /// The state file.
    #[command(flatten)]
    pub state: StateOptions,

    /// The output formats.
    #[command(flatten)]
    pub output: OutputOptions,
}

/// An argument whose environment variable is set to the empty string, as if it were not set.
fn empty_env_is_unset(argument: clap::Arg) -> clap::Arg {
    let empty = argument
        .get_env()
        .and_then(std::env::var_os)
        .is_some_and(|value| value.is_empty());
    if empty {
        argument.env(None::<&'static str>)
    } else {
        argument
    }
}

impl Arguments {
    /// Parses the process's command line and environment, exiting with clap's message on a
    /// bad one.
    #[must_use]
    pub fn from_env() -> Self {
        Self::try_from_args(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }

    /// Parses a command line and the environment. An environment variable set to the empty
    /// string counts as unset, as `KEY=` lines in a systemd `EnvironmentFile=` are common.
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Self::command()
            .mut_args(empty_env_is_unset)
            .mut_subcommands(|command| command.mut_args(empty_env_is_unset));
        let mut matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches_mut(&mut matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        Arguments::command().debug_assert();
    }

    #[test]
    fn every_option_of_every_command_has_an_environment_twin() {
        let command = Arguments::command();
        let commands = std::iter::once(&command).chain(command.get_subcommands());
        for command in commands {
            for argument in command.get_arguments() {
                let id = argument.get_id().as_str();
                if matches!(id, "help" | "version") || argument.is_positional() {
                    continue;
                }
                assert!(
                    argument.get_env().is_some(),
                    "{} --{id} has no environment variable",
                    command.get_name()
                );
            }
        }
    }

    #[test]
    fn the_main_form_stays_flat_and_the_commands_take_their_options_after_their_name() {
        let pass = Arguments::try_from_args(["rt-cleanup", "--retention", "7d", "--dry-run"])
            .expect("the main form parses");
        assert!(pass.command.is_none());
        assert_eq!(pass.selection.retention.as_deref(), Some("7d"));
        let explain =
            Arguments::try_from_args(["rt-cleanup", "explain", "g-1", "g-2", "--retention", "7d"])
                .expect("explain parses");
        let Some(Command::Explain(explain)) = explain.command else {
            panic!("{explain:?}")
        };
        assert_eq!(explain.games, ["g-1", "g-2"]);
        assert_eq!(explain.selection.retention.as_deref(), Some("7d"));
        let history = Arguments::try_from_args(["rt-cleanup", "history", "--game", "g-1"])
            .expect("history needs no retention");
        assert!(matches!(history.command, Some(Command::History(_))));
        for refused in [
            &[
                "rt-cleanup",
                "--dry-run",
                "explain",
                "g-1",
                "--retention",
                "7d",
            ][..],
            &["rt-cleanup", "explain", "--retention", "7d"],
            &["rt-cleanup", "history", "--retention", "7d"],
            &["rt-cleanup", "history", "--dry-run"],
            &[
                "rt-cleanup",
                "explain",
                "g-1",
                "--retention",
                "7d",
                "--plan-out",
                "p",
            ],
        ] {
            assert!(Arguments::try_from_args(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_commands_help_lists_their_exit_statuses_by_the_one_table_of_codes() {
        let mut command = Arguments::command();
        for name in ["explain", "history"] {
            let help = command
                .find_subcommand_mut(name)
                .expect("the command exists")
                .render_long_help()
                .to_string();
            for status in [
                ExitStatus::Success,
                ExitStatus::Usage,
                ExitStatus::StateBusy,
            ] {
                assert!(
                    help.contains(&format!("  {:<4} ", status.code())),
                    "{name} --help lacks {status:?}:\n{help}"
                );
            }
            assert!(help.contains("docs/contract.md"), "{help}");
        }
    }

    #[test]
    fn the_help_lists_every_exit_status() {
        let help = Arguments::command().render_long_help().to_string();
        for status in ExitStatus::ALL {
            let line = format!("  {:<4} {}", status.code(), status.meaning());
            assert!(help.contains(&line), "--help lacks {line:?}:\n{help}");
        }
        assert!(help.contains("docs/contract.md"), "{help}");
    }
}

//! The command line as typed: every option, its environment variable and its help.
//!
//! Values stay raw here; `config.rs` validates them into a [`crate::config::Config`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::exit::ExitStatus;

/// The format of the summary on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per expired record, then a line with the counts.
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

/// Removes the Docker containers of games that the runtime manager stopped longer than a
/// retention ago.
///
/// For each expired `stopped` record of the state file, under the game's lease, it removes the
/// container (never with force), moves the record to `removed` and appends an `operation_log`
/// row. Audit with --dry-run first: it changes nothing anywhere.
// These doc comments are the `--help` an operator reads, not rustdoc: no Markdown in them.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Parser)]
#[command(name = "rt-cleanup", version, about, long_about, after_help = after_help())]
pub struct Arguments {
    /// Remove containers stopped longer ago than this, e.g. 7d, 36h, "1week 2days".
    #[arg(
        long,
        env = "RT_CLEANUP_RETENTION",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub retention: String,

    /// The runtime manager's SQLite state file. Never created: it must exist, as a regular file
    /// or a symlink to one.
    #[arg(
        long,
        env = "RT_CLEANUP_STATE",
        value_name = "PATH",
        default_value = "/var/lib/rtmanager/state.db"
    )]
    pub state: PathBuf,

    /// Change nothing anywhere; report the result a real run would give now.
    #[arg(
        long,
        env = "RT_CLEANUP_DRY_RUN",
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub dry_run: bool,

    /// The format of the summary printed on stdout.
    #[arg(long, env = "RT_CLEANUP_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Act on at most N candidates this run, oldest first; the rest are reported deferred.
    #[arg(long, env = "RT_CLEANUP_MAX_REMOVALS", value_name = "N")]
    pub max_removals: Option<usize>,

    /// Remove a container only if its label KEY equals the record's game_id.
    #[arg(long, env = "RT_CLEANUP_OWNER_LABEL", value_name = "KEY")]
    pub owner_label: Option<String>,

    /// The value written to operation_log.op_source.
    #[arg(
        long,
        env = "RT_CLEANUP_OP_SOURCE",
        value_name = "NAME",
        default_value = "auto_ttl"
    )]
    pub op_source: String,

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

    /// How long to wait for a write lock on the state file held by someone else (exit 75 after).
    #[arg(
        long,
        env = "RT_CLEANUP_LOCK_WAIT",
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true
    )]
    pub lock_wait: String,

    /// How long a game's lease taken by this tool lasts if it dies holding it. Must exceed the
    /// longest it can hold a lease for: three Docker timeouts, four lock waits and 10s.
    #[arg(
        long,
        env = "RT_CLEANUP_LEASE_TTL",
        value_name = "DURATION",
        default_value = "5m",
        allow_hyphen_values = true
    )]
    pub lease_ttl: String,

    /// Write Prometheus metrics of each real run to this file (atomically), for
    /// node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/rt_cleanup.prom.
    /// A path that leads to the state file or its -wal, -shm or -journal is refused (exit 2).
    #[arg(long, env = "RT_CLEANUP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// After the records, look for leaked containers: those whose --owner-label names a game
    /// that no record claims them for, stopped longer than the retention. "report" lists them,
    /// "remove" removes them under their game's lease. Needs --owner-label. [default: off]
    #[arg(long, env = "RT_CLEANUP_ORPHANS", value_enum, value_name = "MODE")]
    pub orphans: Option<OrphanMode>,

    /// With --dry-run: write the exact set of records a real run would act on to FILE, for
    /// review and a later --apply-plan. A path that leads to the state file or its -wal, -shm
    /// or -journal is refused (exit 2).
    #[arg(long, env = "RT_CLEANUP_PLAN_OUT", value_name = "FILE")]
    pub plan_out: Option<PathBuf>,

    /// Act on exactly the records of a plan written by --dry-run --plan-out, and nothing else.
    /// Each is still re-checked under its lease; one that changed since is a conflict.
    #[arg(long, env = "RT_CLEANUP_APPLY_PLAN", value_name = "FILE")]
    pub apply_plan: Option<PathBuf>,

    /// The format of the logs on stderr.
    #[arg(long, env = "RT_CLEANUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
        let command = Self::command().mut_args(|argument| {
            let empty = argument
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty());
            if empty {
                argument.env(None::<&'static str>)
            } else {
                argument
            }
        });
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
    fn every_option_has_an_environment_twin() {
        let command = Arguments::command();
        for argument in command.get_arguments() {
            let id = argument.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(
                argument.get_env().is_some(),
                "--{id} has no environment variable"
            );
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

//! The `rt-cleanup` command: parse, set up logging, run one pass, print the summary, exit.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use rt_cleanup::cli::Arguments;
use rt_cleanup::config::Config;
use rt_cleanup::exit::ExitStatus;
use rt_cleanup::logging::{self, Escaped};
use rt_cleanup::stop::{listen_for_signals, Stop};

fn main() -> ExitCode {
    let arguments = Arguments::try_from_args(std::env::args_os()).unwrap_or_else(|error| {
        if error.use_stderr() {
            let _ = write!(std::io::stderr(), "{}", error_priority());
        }
        error.exit()
    });
    let config = match Config::try_from(arguments) {
        Ok(config) => config,
        Err(error) => {
            // A closed stderr must not turn a refusal into a panic: the exit status says it.
            let _ = writeln!(
                std::io::stderr(),
                "{}rt-cleanup: error: {error}\n\nFor more information, try '--help'.",
                error_priority()
            );
            return ExitStatus::Usage.into();
        }
    };
    let logs = logging::init(config.log_format);
    let progress = logs.progress();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitStatus::Usage.into();
        }
    };
    let started = Instant::now();
    let stop = Stop::new();
    if let Err(error) = listen_for_signals(&stop, runtime.handle()) {
        tracing::error!("cannot listen for SIGINT and SIGTERM: {error}");
        return ExitStatus::Usage.into();
    }
    let report = runtime.block_on(rt_cleanup::run(&config, stop, Arc::clone(&progress)));
    progress.finish();
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            tracing::error!("{}", Escaped(&error));
            let status = error.exit_status();
            rt_cleanup::write_metrics(&config, started.elapsed(), status, None);
            return status.into();
        }
    };
    // The summary goes out as it is written, never held whole: it can be tens of megabytes.
    widen_stdout_pipe();
    let mut stdout = BufWriter::with_capacity(SUMMARY_CHUNK, std::io::stdout().lock());
    if let Err(error) = report
        .write_summary(config.output, &mut stdout)
        .and_then(|()| stdout.flush())
    {
        tracing::error!("cannot write the summary to stdout: {error}");
    }
    report.log_early_end();
    report.log_end();
    let status = report.exit_status();
    rt_cleanup::write_metrics(&config, started.elapsed(), status, Some(&report));
    // The process ends here: freeing every record's strings one at a time would only delay the
    // exit (by a twentieth of a dry run over 10,000 records).
    std::mem::forget(report);
    status.into()
}

/// How much of the summary is written at a time.
const SUMMARY_CHUNK: usize = 1 << 18;

/// The pipe size asked for when stdout is a pipe: Linux's default limit for a user's pipe.
const STDOUT_PIPE_BYTES: i32 = 1 << 20;

/// A summary of thousands of records is megabytes. Through a pipe of Linux's default 64 KiB the
/// writer and the reader take turns, waking each other for every 64 KiB; a larger pipe lets the
/// summary go out in a few writes. Where stdout is not a pipe, or the system refuses, nothing
/// changes.
fn widen_stdout_pipe() {
    let _ = nix::fcntl::fcntl(
        std::io::stdout(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(STDOUT_PIPE_BYTES),
    );
}

/// What leads the line of a bad invocation on stderr: where stderr is the journal, `<3>`, which
/// gives the line the error priority (systemd reads a syslog priority prefix on a service's
/// stream), so that `journalctl -p err` shows a bad invocation too; elsewhere nothing.
fn error_priority() -> &'static str {
    if logging::stderr_is_journal() {
        "<3>"
    } else {
        ""
    }
}

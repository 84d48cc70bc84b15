//! The `rt-cleanup` command: parse, set up logging, run one pass, print the summary, exit.

use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Instant;

use rt_cleanup::cli::{Arguments, LogFormat};
use rt_cleanup::config::Config;
use rt_cleanup::exit::ExitStatus;
use rt_cleanup::stop::{listen_for_signals, Stop};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let arguments = Arguments::from_env();
    let config = match Config::try_from(arguments) {
        Ok(config) => config,
        Err(error) => {
            // A closed stderr must not turn a refusal into a panic: the exit status says it.
            let _ = writeln!(
                std::io::stderr(),
                "rt-cleanup: error: {error}\n\nFor more information, try '--help'."
            );
            return ExitStatus::Usage.into();
        }
    };
    init_logging(config.log_format);
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
    let report = match runtime.block_on(rt_cleanup::run(&config, stop)) {
        Ok(report) => report,
        Err(error) => {
            tracing::error!("{error}");
            let status = error.exit_status();
            rt_cleanup::write_metrics(&config, started.elapsed(), status, None);
            return status.into();
        }
    };
    // The summary goes out as it is written, never held whole: it can be tens of megabytes.
    widen_stdout_pipe();
    let mut stdout = BufWriter::with_capacity(SUMMARY_CHUNK, summary_stdout());
    if let Err(error) = report
        .write_summary(config.output, &mut stdout)
        .and_then(|()| stdout.flush())
    {
        tracing::error!("cannot write the summary to stdout: {error}");
    }
    report.log_early_end();
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

/// Where the summary is written: stdout's file descriptor, unbuffered below the summary's own
/// buffer. Rust's stdout handle is line-buffered: it looks for the last newline in every chunk
/// it is given, all 256 KiB of it, and a JSON summary has one newline, at its end (3 % of the
/// instructions of a JSON dry run over 100,000 records). Where stdout's descriptor cannot be
/// duplicated (it is closed), Rust's handle, which then takes the summary as before.
fn summary_stdout() -> Box<dyn Write> {
    let stdout = std::io::stdout();
    match stdout.as_fd().try_clone_to_owned() {
        Ok(descriptor) => Box::new(std::fs::File::from(descriptor)),
        Err(_) => Box::new(stdout.lock()),
    }
}

/// Logs go to stderr, filtered by `RT_CLEANUP_LOG`, else `RUST_LOG`, else `info`.
fn init_logging(format: LogFormat) {
    let filter = std::env::var("RT_CLEANUP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        // The subscriber reports its own write errors with eprintln!, which panics on a closed
        // stderr: a log line that cannot be written is simply dropped instead.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// stderr for the logs, where a line that cannot be written is dropped. Logging must never
/// abort a pass or change its result: `rt-cleanup … 2>&1 | head -3` closes the pipe after three
/// lines, while containers are being removed.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

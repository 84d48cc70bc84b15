//! The `rt-cleanup` command: parse, set up logging, run the pass or the command asked for,
//! print what it returns, exit.

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use rt_cleanup::cli::Arguments;
use rt_cleanup::config::{Config, Invocation};
use rt_cleanup::exit::ExitStatus;
use rt_cleanup::logging::{self, Escaped};
use rt_cleanup::progress::Progress;
use rt_cleanup::stop::{listen_for_signals, Stop};
use rt_cleanup::RunError;
use tokio::runtime::Runtime;

fn main() -> ExitCode {
    let arguments = Arguments::try_from_args(std::env::args_os()).unwrap_or_else(|error| {
        if error.use_stderr() {
            let _ = write!(std::io::stderr(), "{}", error_priority());
        }
        error.exit()
    });
    let invocation = match Invocation::try_from(arguments) {
        Ok(invocation) => invocation,
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
    let logs = logging::init(invocation.log_format());
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
    let stop = Stop::new();
    if let Err(error) = listen_for_signals(&stop, runtime.handle()) {
        tracing::error!("cannot listen for SIGINT and SIGTERM: {error}");
        return ExitStatus::Usage.into();
    }
    match &invocation {
        Invocation::Pass(config) => pass(config, &runtime, &stop, &logs.progress()),
        Invocation::Explain(config) => {
            match runtime.block_on(rt_cleanup::explain::run(config, Arc::clone(&stop))) {
                Ok(explanation) => {
                    stop.work_done();
                    print("the explanation", |out| {
                        explanation.write(config.pass.output, out)
                    });
                    explanation.log_what_was_not_checked();
                    explanation.exit_status()
                }
                Err(error) => failed(&error),
            }
        }
        Invocation::History(config) => match rt_cleanup::history::run(config, &stop) {
            Ok(history) => {
                stop.work_done();
                print("the rows", |out| history.write(config.output, out));
                history.exit_status()
            }
            Err(error) => failed(&error),
        },
    }
    .into()
}

/// One pass: its metrics file, its summary on stdout, its exit status. Its progress is shown on a
/// terminal, and taken away before the summary. The metrics file is written before the summary,
/// which may wait for a reader of stdout that never comes (a signal then ends the process).
fn pass(
    config: &Config,
    runtime: &Runtime,
    stop: &Arc<Stop>,
    progress: &Arc<dyn Progress>,
) -> ExitStatus {
    let started = Instant::now();
    let report = runtime.block_on(rt_cleanup::run(
        config,
        Arc::clone(stop),
        Arc::clone(progress),
    ));
    progress.finish();
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            let status = failed(&error);
            rt_cleanup::write_metrics(config, started.elapsed(), status, None);
            return status;
        }
    };
    let status = report.exit_status();
    rt_cleanup::write_metrics(config, started.elapsed(), status, Some(&report));
    report.log_early_end();
    report.log_end();
    stop.work_done();
    print("the summary", |out| {
        report.write_summary(config.output, out)
    });
    // The process ends here: freeing every record's strings one at a time would only delay the
    // exit (by a twentieth of a dry run over 10,000 records).
    std::mem::forget(report);
    status
}

/// Logs why a command could not start or finish, and returns its exit status.
fn failed(error: &RunError) -> ExitStatus {
    tracing::error!("{}", Escaped(error));
    error.exit_status()
}

/// Writes a command's output on stdout as it is written, never held whole: it can be tens of
/// megabytes. A failure to write is logged; it does not change the exit status.
fn print(what: &str, write: impl FnOnce(&mut Stdout) -> std::io::Result<()>) {
    widen_stdout_pipe();
    let mut stdout = BufWriter::with_capacity(SUMMARY_CHUNK, stdout_descriptor());
    if let Err(error) = write(&mut stdout).and_then(|()| stdout.flush()) {
        tracing::error!("cannot write {what} to stdout: {error}");
    }
}

/// stdout as every command writes it: buffered by [`print`] alone (see [`stdout_descriptor`]).
type Stdout = BufWriter<Box<dyn Write>>;

/// Where a command's output is written: stdout's file descriptor, unbuffered below the output's
/// own buffer. Rust's stdout handle is line-buffered: it looks for the last newline in every
/// chunk it is given, all 256 KiB of it, and a JSON summary has one newline, at its end (3 % of
/// the instructions of a JSON dry run over 100,000 records). Where stdout's descriptor cannot be
/// duplicated (it is closed), Rust's handle, which then takes the output as before.
fn stdout_descriptor() -> Box<dyn Write> {
    let stdout = std::io::stdout();
    match stdout.as_fd().try_clone_to_owned() {
        Ok(descriptor) => Box::new(std::fs::File::from(descriptor)),
        Err(_) => Box::new(stdout.lock()),
    }
}

/// How much of stdout is written at a time.
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

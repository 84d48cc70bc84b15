//! The `rt-cleanup` command: parse, set up logging, run one pass, print the summary, exit.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use clap::Parser;
use rt_cleanup::cli::{Arguments, LogFormat, OutputFormat};
use rt_cleanup::config::Config;
use rt_cleanup::metrics::{self, RunMetrics};
use rt_cleanup::pass::{Signal, Stop};
use rt_cleanup::summary::{render_json, render_text};
use rt_cleanup::Report;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let config = match Config::try_from(arguments) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("rt-cleanup: error: {error}\n\nFor more information, try '--help'.");
            return ExitCode::from(rt_cleanup::EXIT_USAGE);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rt-cleanup: error: cannot start the async runtime: {error}");
            return ExitCode::from(rt_cleanup::EXIT_USAGE);
        }
    };
    let started = Instant::now();
    let stop = Stop::new();
    let outcome = runtime.block_on(async {
        listen_for_signals(&stop)?;
        Ok::<_, std::io::Error>(rt_cleanup::run(&config, stop.clone()).await)
    });
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            tracing::error!("{error}");
            write_metrics(&config, started, error.exit_code(), None);
            return ExitCode::from(error.exit_code());
        }
        Err(error) => {
            tracing::error!("cannot listen for SIGINT and SIGTERM: {error}");
            return ExitCode::from(rt_cleanup::EXIT_USAGE);
        }
    };
    let rendered = match config.output {
        OutputFormat::Text => render_text(&report.summary),
        OutputFormat::Json => render_json(&report.summary),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(rendered.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::error!("cannot write the summary to stdout: {error}");
    }
    if let Some(error) = &report.state_failure {
        tracing::error!("the pass stopped early: {error}");
    }
    if let Some(signal) = report.interrupted {
        tracing::warn!(
            "interrupted by {}: records not reached are deferred",
            signal.name()
        );
    }
    write_metrics(&config, started, report.exit_code(), Some(&report));
    ExitCode::from(report.exit_code())
}

/// Writes `--metrics-file` for a real run (a dry run changes nothing, metrics included). A
/// failure to write is logged; it does not change the exit status of the pass.
fn write_metrics(config: &Config, started: Instant, exit_status: u8, report: Option<&Report>) {
    let Some(path) = &config.metrics_file else {
        return;
    };
    if config.dry_run {
        tracing::info!(
            "dry run: the metrics file {} is left as it is",
            path.display()
        );
        return;
    }
    let run = RunMetrics {
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        exit_status,
        retention: config.retention,
        counts: report.map(|report| report.summary.counts),
        oldest_waiting_ms: report.and_then(|report| report.oldest_waiting_ms),
    };
    if let Err(error) = metrics::write(path, &run) {
        tracing::error!("cannot write the metrics file {}: {error}", path.display());
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// On SIGINT or SIGTERM the pass stops starting records; those in flight are finished.
fn listen_for_signals(stop: &std::sync::Arc<Stop>) -> std::io::Result<()> {
    for (kind, which) in [
        (SignalKind::interrupt(), Signal::Interrupt),
        (SignalKind::terminate(), Signal::Terminate),
    ] {
        let mut stream = signal(kind)?;
        let stop = stop.clone();
        tokio::spawn(async move {
            if stream.recv().await.is_some() {
                tracing::warn!("received {}: finishing the records in flight", which.name());
                stop.signal(which);
            }
        });
    }
    Ok(())
}

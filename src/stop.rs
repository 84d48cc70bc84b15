//! Why a pass stops starting records: a signal, or a state file that refused a write.
//!
//! The first SIGINT or SIGTERM stops the pass from starting anything: no record, and no Docker
//! call of any phase (the preflight, the listing, the orphan search, a dry run's); a lock wait
//! for work not yet begun (the start-up read, a lease claim) ends at once. The records in flight
//! are finished and recorded. A second signal, after a short grace, abandons the waits for the
//! Docker calls still in flight and for the state file's lock: a removal abandoned so is settled
//! as an unanswered one (never moved to `removed`, since its container is not verifiably gone,
//! and its lease kept, since the daemon may still carry it out), and the run exits with the
//! first signal's status.
//!
//! Signals are received on a thread of their own, so that they are seen while the pass's thread
//! is blocked in a wait (SQLite's wait for a lock runs on the thread that asked for it).
//!
//! Once the work is done and only the output is left ([`Stop::work_done`]), a signal ends the
//! process at once with its status: a write to a stdout that nobody reads (a full pipe) blocks
//! forever, and there is nothing left to finish.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::exit::ExitStatus;
use crate::store::StoreError;

/// How long in-flight Docker calls still get after a second signal.
pub const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// The signal that interrupted a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// The exit status of a pass it interrupted.
    #[must_use]
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Signal::Interrupt => ExitStatus::Interrupted,
            Signal::Terminate => ExitStatus::Terminated,
        }
    }

    /// The signal's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// The shared reason to stop, set by the signal listener or by a state-file failure.
#[derive(Debug)]
pub struct Stop {
    signal: OnceLock<Signal>,
    state_failure: Mutex<Option<StoreError>>,
    abandon: watch::Sender<bool>,
    /// Set once everything but the output is done: a signal then ends the process.
    work_done: AtomicBool,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            signal: OnceLock::new(),
            state_failure: Mutex::new(None),
            abandon: watch::Sender::new(false),
            work_done: AtomicBool::new(false),
        }
    }
}

impl Stop {
    /// A new shared flag.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a signal. Returns `true` for the first one, which decides the exit status.
    pub fn signal(&self, signal: Signal) -> bool {
        self.signal.set(signal).is_ok()
    }

    /// The first signal received, if any.
    #[must_use]
    pub fn signalled(&self) -> Option<Signal> {
        self.signal.get().copied()
    }

    /// Says that the work is done (the state file, Docker and the metrics file are finished with)
    /// and only stdout's output is left: from now on a signal ends the process with its status.
    pub fn work_done(&self) {
        self.work_done.store(true, Ordering::SeqCst);
    }

    /// Gives up waiting for the Docker calls in flight.
    pub fn abandon(&self) {
        self.abandon.send_replace(true);
    }

    /// Completes once the waits for in-flight calls are abandoned; never before.
    pub async fn abandoned(&self) {
        let mut receiver = self.abandon.subscribe();
        // The sender lives in `self`, so the channel cannot close while this borrow lasts.
        let _ = receiver.wait_for(|abandoned| *abandoned).await;
    }

    /// Whether the waits for in-flight calls and locks were abandoned.
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        *self.abandon.borrow()
    }

    /// Runs a call unless the pass is stopping: after a signal it is not started at all, and its
    /// wait is abandoned once [`abandon`](Self::abandon) is called. Every Docker call of a pass
    /// goes through here.
    pub async fn guard<T>(&self, call: impl Future<Output = T>) -> Result<T, Cut> {
        if self.signalled().is_some() {
            return Err(Cut::NotStarted);
        }
        tokio::select! {
            biased;
            () = self.abandoned() => Err(Cut::Abandoned),
            answer = call => Ok(answer),
        }
    }

    /// Records a state-file failure; the first one is kept.
    pub fn state_failed(&self, error: StoreError) {
        let mut slot = self
            .state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
    }

    /// The first state-file failure of the pass, if any.
    #[must_use]
    pub fn take_state_failure(&self) -> Option<StoreError> {
        self.state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Why records are no longer started, if they are not.
    #[must_use]
    pub fn reason(&self) -> Option<String> {
        if let Some(signal) = self.signalled() {
            return Some(format!(
                "interrupted by {} before it was reached",
                signal.name()
            ));
        }
        let slot = self
            .state_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .map(|error| format!("not reached: the pass stopped because {error}"))
    }
}

/// Why a call guarded by [`Stop::guard`] got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It was not started: a signal came first.
    NotStarted,
    /// Its wait was abandoned after a second signal: it may or may not have been carried out.
    Abandoned,
}

/// Listens for SIGINT and SIGTERM for the rest of the process, on a thread of its own: the first
/// stops the pass from starting anything; a second abandons the waits in flight after
/// [`ABANDON_GRACE`]. Returns once the signals are being listened for.
///
/// Where the system has no thread to spare, the signals are listened for on `runtime`, the
/// pass's own: they are then seen only while the pass's thread is not blocked in a wait.
pub fn listen_for_signals(
    stop: &Arc<Stop>,
    runtime: &tokio::runtime::Handle,
) -> std::io::Result<()> {
    let (ready, listening) = std::sync::mpsc::channel();
    let for_thread = Arc::clone(stop);
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // The receiver waits for one answer; if it is gone, nobody needs it.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                match signal_streams() {
                    Ok(streams) => {
                        let _ = ready.send(Ok(()));
                        listen(streams, for_thread).await;
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            });
        });
    if let Err(error) = spawned {
        tracing::warn!(
            "no thread for the signals ({error}): a signal is seen only between the pass's waits"
        );
        let _entered = runtime.enter();
        runtime.spawn(listen(signal_streams()?, Arc::clone(stop)));
        return Ok(());
    }
    listening.recv().unwrap_or_else(|_| {
        Err(std::io::Error::other(
            "the signal thread ended before it listened",
        ))
    })
}

/// The streams of SIGINT and SIGTERM, registered in the current runtime.
fn signal_streams() -> std::io::Result<Vec<(tokio::signal::unix::Signal, Signal)>> {
    [
        (SignalKind::interrupt(), Signal::Interrupt),
        (SignalKind::terminate(), Signal::Terminate),
    ]
    .into_iter()
    .map(|(kind, which)| Ok((signal(kind)?, which)))
    .collect()
}

/// Receives the signals for the rest of the process.
async fn listen(streams: Vec<(tokio::signal::unix::Signal, Signal)>, stop: Arc<Stop>) {
    let listeners = streams.into_iter().map(|(mut stream, which)| {
        let stop = Arc::clone(&stop);
        async move {
            while stream.recv().await.is_some() {
                received(&stop, which);
            }
        }
    });
    futures_util::future::join_all(listeners).await;
}

/// What a received signal does: the first stops the pass from starting anything, a second
/// abandons the waits in flight after [`ABANDON_GRACE`] (without holding up a third).
fn received(stop: &Arc<Stop>, which: Signal) {
    if stop.work_done.load(Ordering::SeqCst) {
        let status = stop.signalled().unwrap_or(which).exit_status();
        tracing::warn!(
            "received {} while writing to stdout: the work was done and recorded, the output is \
             cut short here; exiting with status {}",
            which.name(),
            status.code()
        );
        std::process::exit(i32::from(status.code()));
    }
    if stop.signal(which) {
        tracing::warn!(
            "received {}: starting nothing more, finishing the records in flight (a second \
             signal abandons them after {})",
            which.name(),
            humantime::format_duration(ABANDON_GRACE)
        );
    } else {
        tracing::warn!(
            "received {} again: abandoning the Docker calls and lock waits still in flight in {}; \
             their records stay as they are, a removal that got no answer keeps its lease until \
             it expires, and a later run retries them",
            which.name(),
            humantime::format_duration(ABANDON_GRACE)
        );
        let stop = Arc::clone(stop);
        tokio::spawn(async move {
            tokio::time::sleep(ABANDON_GRACE).await;
            stop.abandon();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_decides_the_exit_status() {
        let stop = Stop::new();
        assert_eq!(stop.signalled(), None);
        assert!(stop.signal(Signal::Terminate));
        assert!(!stop.signal(Signal::Interrupt));
        assert_eq!(stop.signalled(), Some(Signal::Terminate));
        assert_eq!(
            stop.signalled().map(Signal::exit_status),
            Some(ExitStatus::Terminated)
        );
        assert!(stop.reason().unwrap().contains("SIGTERM"));
    }

    #[tokio::test]
    async fn a_guarded_call_is_not_started_after_a_signal_and_abandoned_after_a_second() {
        let stop = Stop::new();
        assert_eq!(stop.guard(async { 7 }).await, Ok(7));
        let never = std::future::pending::<()>();
        let abandoning = {
            let stop = Arc::clone(&stop);
            async move {
                tokio::task::yield_now().await;
                stop.abandon();
            }
        };
        let (cut, ()) = within_seconds(async { tokio::join!(stop.guard(never), abandoning) }).await;
        assert_eq!(cut, Err(Cut::Abandoned), "a call in flight is abandoned");
        let stop = Stop::new();
        stop.signal(Signal::Interrupt);
        let started = std::sync::atomic::AtomicBool::new(false);
        let call = async { started.store(true, std::sync::atomic::Ordering::SeqCst) };
        assert_eq!(stop.guard(call).await, Err(Cut::NotStarted));
        assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn abandoning_wakes_every_waiter() {
        let stop = Stop::new();
        assert!(!stop.is_abandoned());
        let waiter = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move { stop.abandoned().await })
        };
        tokio::task::yield_now().await;
        stop.abandon();
        within_seconds(waiter).await.unwrap();
        assert!(stop.is_abandoned());
        // A waiter that comes after the fact returns at once.
        within_seconds(stop.abandoned()).await;
    }

    /// Awaits `future` for at most a few seconds: a test whose abandonment broke fails fast
    /// instead of hanging.
    async fn within_seconds<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(5), future)
            .await
            .expect("the wait ends within 5 s")
    }
}

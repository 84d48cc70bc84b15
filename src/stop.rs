//! Why a pass stops starting records: a signal, or a state file that refused a write.
//!
//! The first SIGINT or SIGTERM stops the pass from starting records; those in flight are finished
//! and recorded. A second signal, after a short grace, abandons the waits for the Docker calls
//! still in flight: their records are settled as unanswered removals (never moved to `removed`,
//! since their containers are not verifiably gone), and the run exits with the first signal's
//! status.

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
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            signal: OnceLock::new(),
            state_failure: Mutex::new(None),
            abandon: watch::Sender::new(false),
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

    /// Whether the waits for in-flight calls were abandoned (the tests' view of it).
    #[cfg(test)]
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        *self.abandon.borrow()
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

/// Listens for SIGINT and SIGTERM for the rest of the process: the first stops the pass from
/// starting records; a second abandons the in-flight Docker calls after [`ABANDON_GRACE`].
pub fn listen_for_signals(stop: &Arc<Stop>) -> std::io::Result<()> {
    for (kind, which) in [
        (SignalKind::interrupt(), Signal::Interrupt),
        (SignalKind::terminate(), Signal::Terminate),
    ] {
        let mut stream = signal(kind)?;
        let stop = Arc::clone(stop);
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if stop.signal(which) {
                    tracing::warn!(
                        "received {}: finishing the records in flight (a second signal abandons \
                         them after {})",
                        which.name(),
                        humantime::format_duration(ABANDON_GRACE)
                    );
                } else {
                    tracing::warn!(
                        "received {} again: abandoning the Docker calls still in flight in {}; \
                         their records stay as they are and the next run retries them",
                        which.name(),
                        humantime::format_duration(ABANDON_GRACE)
                    );
                    let stop = Arc::clone(&stop);
                    tokio::spawn(async move {
                        tokio::time::sleep(ABANDON_GRACE).await;
                        stop.abandon();
                    });
                }
            }
        });
    }
    Ok(())
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
    async fn abandoning_wakes_every_waiter() {
        let stop = Stop::new();
        assert!(!stop.is_abandoned());
        let waiter = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move { stop.abandoned().await })
        };
        tokio::task::yield_now().await;
        stop.abandon();
        waiter.await.unwrap();
        assert!(stop.is_abandoned());
        // A waiter that comes after the fact returns at once.
        stop.abandoned().await;
    }
}

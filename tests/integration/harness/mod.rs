//! Helpers of the integration tests, one file per helper:
//!
//! * `daemon`: the test engines that `scripts/test.sh` started (Docker, and Podman's
//!   Docker-compatible service), the engine a test runs on ([`on_engine`]), the docker CLI
//!   against it, and the containers of one test case (labelled with this run and this case,
//!   removed with the case);
//! * `state`: a real state file in a temp dir, in either journal mode, and what is in it;
//! * `binary`: the built binary, run as an operator would run it or spawned in the background;
//! * `private_daemon`: a dockerd of one test's own, to freeze, kill and restart;
//! * `proxy`: a fault proxy in front of a daemon's socket that passes, holds, delays, drops or
//!   swallows chosen requests, and records what it saw;
//! * `bridge`: a TCP listener in front of the test daemon's socket;
//! * `tls_daemon`: the second dockerd, behind mutual TLS, and its certificates;
//! * `fake_daemon`: a tiny HTTP daemon that answers the ping as a given engine release would;
//! * `invariants`: what the state file may claim of the removals of a test's containers, checked
//!   by the fault suite and the chaos soak;
//! * `journal`: the systemd-journald of the tests, and the entries it stored;
//! * `immutable`, `clock`, `rng`: files even root cannot write, epoch times, a seeded generator.
//!
//! The daemons come from `scripts/test.sh` through `RT_CLEANUP_TEST_DOCKER_HOST`,
//! `RT_CLEANUP_TEST_PODMAN_HOST` and `RT_CLEANUP_TEST_TLS_HOST`. Without one, the tests that
//! need it fail one by one with a message that says what to run; they never pass silently, and
//! the tests that need no daemon still run.

#![allow(dead_code)]

mod binary;
mod bridge;
mod clock;
mod daemon;
mod fake_daemon;
mod immutable;
mod invariants;
mod journal;
mod private_daemon;
mod proxy;
mod rng;
mod state;
mod tls_daemon;

pub use binary::*;
pub use bridge::*;
pub use clock::*;
pub use daemon::*;
pub use fake_daemon::*;
pub use immutable::*;
pub use invariants::*;
pub use journal::*;
pub use private_daemon::*;
pub use proxy::*;
pub use rng::*;
pub use state::*;
pub use tls_daemon::*;

/// The label every container of this test run carries, with the run's id as its value.
pub const RUN_LABEL: &str = "rt-cleanup-test.run";
/// The label that names the test case that created a container.
pub const CASE_LABEL: &str = "rt-cleanup-test.case";
/// The label the tests use for `--owner-label`.
pub const OWNER_LABEL: &str = "rt-cleanup-test.game";

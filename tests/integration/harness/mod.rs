//! Helpers of the integration tests, one file per helper:
//!
//! * `daemon`: the test daemon that `scripts/test.sh` started, the docker CLI against it, and the
//!   containers of one test case (labelled with this run and this case, removed with the case);
//! * `state`: a real state file in a temp dir, in either journal mode, and what is in it;
//! * `binary`: the built binary, run as an operator would run it or spawned in the background;
//! * `private_daemon`: a dockerd of one test's own, to freeze, kill and restart;
//! * `gate`: a proxy that holds chosen requests on their way to the daemon;
//! * `bridge`: a TCP listener in front of the test daemon's socket;
//! * `immutable`, `clock`, `rng`: files even root cannot write, epoch times, a seeded generator.
//!
//! The daemon comes from `scripts/test.sh` through `RT_CLEANUP_TEST_DOCKER_HOST`. Without it the
//! Docker tests fail one by one with a message that says what to run; they never pass silently,
//! and the tests that need no daemon still run.

#![allow(dead_code)]

mod binary;
mod bridge;
mod clock;
mod daemon;
mod gate;
mod immutable;
mod private_daemon;
mod rng;
mod state;

pub use binary::*;
pub use bridge::*;
pub use clock::*;
pub use daemon::*;
pub use gate::*;
pub use immutable::*;
pub use private_daemon::*;
pub use rng::*;
pub use state::*;

/// The label every container of this test run carries, with the run's id as its value.
pub const RUN_LABEL: &str = "rt-cleanup-test.run";
/// The label that names the test case that created a container.
pub const CASE_LABEL: &str = "rt-cleanup-test.case";
/// The label the tests use for `--owner-label`.
pub const OWNER_LABEL: &str = "rt-cleanup-test.game";

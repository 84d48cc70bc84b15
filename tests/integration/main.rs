//! The integration tests: the built binary against real SQLite files and a real Docker daemon.
//!
//! Run them with `scripts/test.sh`, which brings the daemons up (Docker, Podman, and a dockerd
//! behind TLS). Each module pins one part of the contract or one family of faults; `harness`
//! holds the shared helpers.

mod harness;

mod cli;
mod contract;
mod edges;
mod engines;
mod examples;
mod exits;
mod faults;
mod ops;
mod orphans;
mod properties;

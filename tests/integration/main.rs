//! The integration tests: the built binary against real SQLite files and a real Docker daemon.
//!
//! Run them with `scripts/test.sh`, which brings the daemons up (Docker, Podman, and a dockerd
//! behind TLS). Each module pins one part of the contract or one family of faults; `harness`
//! holds the shared helpers.
//!
//! `contract.rs` runs on both engines, Docker and Podman (`contract::<test>::docker`,
//! `…::podman`), and so does `orphans.rs` (`orphans::on_podman::<test>`); `engines.rs` covers API
//! versions, TLS and unreachable daemons. The other modules test the command line, the state
//! file, plans, the files rt-cleanup writes (`files.rs`), leases (`leases.rs`) and faults, which
//! do not depend on the engine, against Docker; `faults.rs` also
//! freezes and kills private dockerds, which only Docker can be here.

/// Runs a test body that takes the journal mode of its state file in each mode:
/// `<body>::rollback_journal` and `<body>::wal`. (`contract.rs` has its own, per engine.)
macro_rules! in_both_journal_modes {
    ($body:ident) => {
        mod $body {
            use crate::harness::Journal;
            #[test]
            fn rollback_journal() {
                super::$body(Journal::Rollback);
            }
            #[test]
            fn wal() {
                super::$body(Journal::Wal);
            }
        }
    };
}

mod harness;

mod cli;
mod contract;
mod edges;
mod engines;
mod examples;
mod exits;
mod faults;
mod files;
mod leases;
mod ops;
mod orphans;
mod properties;

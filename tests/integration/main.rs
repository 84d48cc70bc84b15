//! The integration tests: the built binary against real SQLite files and a real Docker daemon.
//!
//! Run them with `scripts/test.sh`, which brings the daemons up (Docker and Podman of Debian 12
//! and 13, and a dockerd behind TLS). Each module pins one part of the contract or one family of
//! faults; `harness` holds the shared helpers.
//!
//! `contract.rs` runs on every engine (the macros below): Debian 12's Docker 20.10 and Podman
//! 4.3 (`contract::<test>::docker`, `…::podman`), Debian 13's Docker 26 and Podman 5.4
//! (`…::docker26`, `…::podman5`), and Debian unstable's Docker and Podman
//! (`…::docker_unstable`, `…::podman_unstable`, ignored unless `scripts/test.sh --unstable`
//! runs them); so does `orphans.rs` (`orphans::<test>` on Debian 12's Docker,
//! `orphans::on_podman::<test>` and so on); `engines.rs` covers API versions, TLS and unreachable
//! daemons, and runs what only one family does on each engine of it (`on_each_docker!`,
//! `on_each_podman!`): Podman's `stopped` state, a container Docker failed to remove; so does
//! `explain.rs`'s agreement of explain with the dry run, and `space.rs`, what a pass frees
//! (`--measure-space`, `--remove-volumes`), on each engine. The other modules test the command
//! line, the state file, plans, the files rt-cleanup writes (`files.rs`), leases (`leases.rs`),
//! `history` (`history.rs`), logs (`logs.rs`) and faults, which do not depend on the engine,
//! against Docker; `faults.rs` also freezes and kills private dockerds,
//! which only Docker can be here.

/// Why the tests on Debian unstable's engines are ignored in a plain `cargo test`.
macro_rules! unstable_reason {
    () => {
        "on Debian unstable's engines: scripts/test.sh --unstable starts them and runs these tests"
    };
}

/// One test function named after an engine, running `$run` (an expression) on that engine;
/// the tests on Debian unstable's engines are ignored unless asked for (`--ignored`).
macro_rules! engine_test {
    ($name:ident, $engine:ident, $run:expr) => {
        #[test]
        fn $name() {
            crate::harness::on_engine(crate::harness::Engine::$engine, || $run)
        }
    };
    (@unstable $name:ident, $engine:ident, $run:expr) => {
        #[test]
        #[ignore = unstable_reason!()]
        fn $name() {
            crate::harness::on_engine(crate::harness::Engine::$engine, || $run)
        }
    };
}

/// Runs a test body on each engine: `<body>::docker`, `::podman`, `::docker26`, `::podman5`,
/// `::docker_unstable`, `::podman_unstable`.
macro_rules! on_each_engine {
    ($body:ident) => {
        mod $body {
            engine_test!(docker, Docker, super::$body());
            engine_test!(podman, Podman, super::$body());
            engine_test!(docker26, Docker26, super::$body());
            engine_test!(podman5, Podman5, super::$body());
            engine_test!(@unstable docker_unstable, DockerUnstable, super::$body());
            engine_test!(@unstable podman_unstable, PodmanUnstable, super::$body());
        }
    };
}

/// Runs a test body on each Docker Engine: `<body>::docker`, `::docker26`, `::docker_unstable`
/// (for what only Docker does, e.g. a container it failed to remove).
macro_rules! on_each_docker {
    ($body:ident) => {
        mod $body {
            engine_test!(docker, Docker, super::$body());
            engine_test!(docker26, Docker26, super::$body());
            engine_test!(@unstable docker_unstable, DockerUnstable, super::$body());
        }
    };
}

/// Runs a test body on each Podman: `<body>::podman`, `::podman5`, `::podman_unstable` (for
/// what only Podman does, e.g. its `stopped` state).
macro_rules! on_each_podman {
    ($body:ident) => {
        mod $body {
            engine_test!(podman, Podman, super::$body());
            engine_test!(podman5, Podman5, super::$body());
            engine_test!(@unstable podman_unstable, PodmanUnstable, super::$body());
        }
    };
}

/// Runs a test body on each engine, in rollback-journal mode and in WAL mode:
/// `<body>::<engine>::<journal>`, e.g. `removes_an_expired_container_and_records_it::podman5::wal`.
macro_rules! on_each_engine_in_both_journal_modes {
    ($body:ident) => {
        mod $body {
            in_both_journal_modes_on!(docker, Docker, $body);
            in_both_journal_modes_on!(podman, Podman, $body);
            in_both_journal_modes_on!(docker26, Docker26, $body);
            in_both_journal_modes_on!(podman5, Podman5, $body);
            in_both_journal_modes_on!(@unstable docker_unstable, DockerUnstable, $body);
            in_both_journal_modes_on!(@unstable podman_unstable, PodmanUnstable, $body);
        }
    };
}

/// The two journal modes' tests of one body on one engine (see
/// [`on_each_engine_in_both_journal_modes`]).
macro_rules! in_both_journal_modes_on {
    ($(@$unstable:ident)? $module:ident, $engine:ident, $body:ident) => {
        mod $module {
            use crate::harness::Journal;
            engine_test!($(@$unstable)? rollback_journal, $engine,
                super::super::$body(Journal::Rollback));
            engine_test!($(@$unstable)? wal, $engine, super::super::$body(Journal::Wal));
        }
    };
}

/// The tests of a module that run on Debian 12's Docker as plain `#[test]`s, once more on every
/// other engine: `on_podman::<test>`, `on_docker26::<test>`, `on_podman5::<test>`,
/// `on_docker_unstable::<test>`, `on_podman_unstable::<test>`.
macro_rules! also_on_the_other_engines {
    ($($body:ident),+ $(,)?) => {
        mod on_podman {
            $(engine_test!($body, Podman, super::$body());)+
        }
        mod on_docker26 {
            $(engine_test!($body, Docker26, super::$body());)+
        }
        mod on_podman5 {
            $(engine_test!($body, Podman5, super::$body());)+
        }
        mod on_docker_unstable {
            $(engine_test!(@unstable $body, DockerUnstable, super::$body());)+
        }
        mod on_podman_unstable {
            $(engine_test!(@unstable $body, PodmanUnstable, super::$body());)+
        }
    };
}

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
mod explain;
mod faults;
mod files;
mod history;
mod leases;
mod logs;
mod ops;
mod orphans;
mod properties;
mod space;

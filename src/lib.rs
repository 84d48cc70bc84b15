//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is stated in `docs/contract.md`.
//!
//! The layout follows the command: `cleanup` is the pass (`rt-cleanup --retention 7d`, and its
//! `--dry-run`). `main.rs` only parses, sets up logging, calls [`run`], prints the summary, writes
//! the metrics and maps the outcome to an exit status. Below the commands: `store` (the only
//! module that speaks SQL), `docker` (the only one that speaks to the daemon), and the pure
//! parts they share (candidates, outcomes, summaries and their rendering).

pub mod cli;
pub mod config;
pub mod exit;
pub mod stop;

pub(crate) mod candidate;
pub(crate) mod cleanup;
pub(crate) mod docker;
pub(crate) mod engine;
pub(crate) mod job;
pub(crate) mod metrics;
pub(crate) mod orphans;
pub(crate) mod outcome;
pub(crate) mod output_file;
pub(crate) mod plan;
pub(crate) mod render;
pub(crate) mod store;
pub(crate) mod summary;
pub(crate) mod time;
pub(crate) mod value;
pub(crate) mod worker;

pub use cleanup::{run, write_metrics, Report, RunError};

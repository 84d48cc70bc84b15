//! rt-cleanup removes the Docker containers of games that the runtime manager stopped longer
//! than a retention ago, under each game's lease, and records every result in the state file's
//! `operation_log`. The interface is stated in `docs/contract.md`.
//!
//! The layout follows the commands: `cleanup` is the pass (`rt-cleanup --retention 7d`, and its
//! `--dry-run`), `explain` is `rt-cleanup explain GAME…` (the dry run, narrowed to named games), `history` is
//! `rt-cleanup history`. `main.rs` only parses (`cli`, then `config`,
//! which validates the command asked for), sets up logging, calls the command ([`run`] for the
//! pass), prints what it returns, writes the metrics of a pass and maps the outcome to an exit
//! status. Below the commands: `store` (the only module that speaks SQL), `docker` (the only
//! one that speaks to the daemon), and the pure parts they share (candidates, outcomes,
//! summaries and `render`).

pub mod cli;
pub mod config;
pub mod exit;
pub mod explain;
pub mod history;
pub mod logging;
pub mod progress;
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
pub(crate) mod space;
pub(crate) mod store;
pub(crate) mod summary;
pub(crate) mod time;
pub(crate) mod value;
pub(crate) mod worker;

pub use cleanup::{run, write_metrics, Report, RunError};

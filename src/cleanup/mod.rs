//! The pass: select the expired stopped records, predict (`--dry-run`) or act on each of them,
//! then the orphans, then report.
//!
//! * `read`: the consistent read of the state file a pass starts with;
//! * `predict`: the dry run's prediction, which `explain` runs too;
//! * `act`: the real run, through the worker and the state writer;
//! * `report`: the report of a pass, the dry run's plan, and the metrics of a real run.

mod act;
pub(crate) mod predict;
pub(crate) mod read;
mod report;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::candidate::{Candidate, Target};
use crate::cli::OrphanMode;
use crate::config::{Config, DiskOptions};
use crate::docker::{DockerClient, DockerError};
use crate::engine::{ContainerEngine, ContainerIndex, ContainerInfo};
use crate::exit::ExitStatus;
use crate::orphans::{HandledOrphan, OrphanPass};
use crate::plan::{ApplyContext, Plan, PlanError};
use crate::progress::{NoProgress, Progress};
use crate::stop::{Signal, Stop};
use crate::store::StoreError;
use crate::time::{epoch_ms, format_epoch_ms};
use crate::value::{Escaped, FieldValue};
use crate::worker::{self, WorkerSettings};

use read::{read_state, StateRead};
use report::{not_reached, report, write_plan};
pub use report::{write_metrics, Report};

/// A pass or a command that could not start, or a command that only reads that could not
/// finish: nothing was changed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The state file is unusable or locked.
    #[error(transparent)]
    State(#[from] StoreError),
    /// The Docker daemon is unreachable or unusable.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The plan cannot be read, is not for this state file, or cannot be written.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A signal ended the wait for the state file's lock, before anything was read.
    #[error(
        "interrupted by {} while waiting for the lock on the state file {}; nothing was read or \
         changed", .signal.name(), .state.display()
    )]
    Interrupted {
        /// The first signal.
        signal: Signal,
        /// The state file.
        state: std::path::PathBuf,
    },
    /// A signal came while a command that only reads read the state file: nothing is printed.
    #[error(
        "interrupted by {} while reading the state file {}; nothing was printed", .signal.name(),
        .state.display()
    )]
    Stopped {
        /// The first signal.
        signal: Signal,
        /// The state file.
        state: std::path::PathBuf,
    },
}

impl RunError {
    /// The exit status of a pass or command that could not start or finish.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::State(error) if error.is_busy() => ExitStatus::StateBusy,
            RunError::State(_) | RunError::Plan(_) => ExitStatus::Usage,
            RunError::Docker(_) => ExitStatus::DockerUnavailable,
            RunError::Interrupted { signal, .. } | RunError::Stopped { signal, .. } => {
                signal.exit_status()
            }
        }
    }
}

/// The times of a pass, taken once.
pub(crate) struct PassTime {
    /// When the pass took `now`.
    pub started: SystemTime,
    /// `now`, epoch milliseconds.
    pub now_ms: i64,
    /// `now - retention` (the plan's threshold, under a plan), epoch milliseconds.
    pub threshold_ms: i64,
}

impl PassTime {
    /// Takes `now` once, and the threshold of `retention` from it.
    pub fn now(retention: Duration) -> Self {
        let started = SystemTime::now();
        let now_ms = epoch_ms(started);
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        Self {
            started,
            now_ms,
            threshold_ms: now_ms.saturating_sub(retention_ms),
        }
    }

    /// The threshold in RFC 3339, as the summary shows it.
    pub fn threshold(&self) -> String {
        format_epoch_ms(self.threshold_ms.max(0)).unwrap_or_default()
    }
}

/// The target of the pass's own log lines: the crate's, as it was before the pass moved into this
/// module, so that a log line reads as it always did and an operator's filters and searches on
/// `rt_cleanup:` keep finding it.
const LOG_TARGET: &str = "rt_cleanup";

/// Runs one pass as configured. `stop` is shared with the signal listener; the pass reports its
/// jobs to `progress`.
pub async fn run(
    config: &Config,
    stop: Arc<Stop>,
    progress: Arc<dyn Progress>,
) -> Result<Report, RunError> {
    let mut time = PassTime::now(config.retention);
    let (plan, owner_label, orphan_mode) = load_plan(config, &mut time)?;
    // A plan made with --remove-volumes removes them, as reviewed, whether or not this command
    // line says so (`Plan::load` refused it saying so for a plan made without).
    let applied;
    let config = match &plan {
        Some(plan) if plan.remove_volumes && !config.disk.remove_volumes => {
            applied = Config {
                disk: DiskOptions {
                    remove_volumes: true,
                    ..config.disk
                },
                ..config.clone()
            };
            &applied
        }
        _ => config,
    };
    let (read, ()) = read_state(config, plan.as_ref(), &time, &stop, None, |_| Ok(()))
        .map_err(|error| ended_by_signal(error, &config.state, &stop))?;
    let orphans_on = orphan_mode != OrphanMode::Off && owner_label.is_some();
    let interrupted = |read: StateRead| Ok(not_reached(config, read, orphans_on, &time, &stop));
    let docker = match connect(config, &stop).await {
        Ok(docker) => docker,
        // The records were selected: each is reported, not reached.
        Err(DockerError::Interrupted { .. }) => return interrupted(read),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        target: LOG_TARGET,
        stopped = read.stopped,
        expired = read.candidates.len(),
        dry_run = config.dry_run,
        from_plan = plan.is_some(),
        "selected the expired stopped records"
    );
    let orphan_pass = orphan_pass(orphan_mode, owner_label.as_deref(), &time, plan.as_ref());
    let listing = match take_listing(
        config,
        &docker,
        &read.candidates,
        orphan_pass.as_ref(),
        owner_label.is_some(),
    )
    .await
    {
        Ok(listing) => listing,
        Err(DockerError::Interrupted { .. }) => return interrupted(read),
        Err(error) => return Err(error.into()),
    };
    let pass = Pass::new(
        config,
        &docker,
        plan.as_ref(),
        &time,
        &stop,
        orphan_pass.as_ref(),
        owner_label.clone(),
    )
    .reporting_to(progress);
    let (stopped, candidates, outcomes, orphans) = if config.dry_run {
        let (read, outcomes, orphans, _) = pass.predict::<()>(read, listing, None).await?;
        if let Some(path) = &config.plan_out {
            let planned_orphans = match &orphans {
                Some(Ok(handled)) if orphan_mode == OrphanMode::Remove => handled.as_slice(),
                _ => &[],
            };
            write_plan(
                config,
                path,
                &read.candidates,
                &outcomes,
                planned_orphans,
                &time,
                &stop,
            )?;
        }
        (read.stopped, read.candidates, outcomes, orphans)
    } else {
        let containers = match listing {
            Listing::All(index) => Some(index),
            Listing::Labelled(_) | Listing::Nothing => None,
        };
        let (outcomes, orphans) = pass
            .act(read.store, &read.candidates, containers.as_ref(), &stop)
            .await?;
        (read.stopped, read.candidates, outcomes, orphans)
    };
    Ok(report(
        config, stopped, candidates, outcomes, orphans, &time, &stop,
    ))
}

/// The orphan part of a pass, where it looks for orphans (`--orphans report|remove` with an
/// owner label; under a plan, the plan's).
pub(crate) fn orphan_pass<'a>(
    mode: OrphanMode,
    owner_label: Option<&'a str>,
    time: &PassTime,
    plan: Option<&'a Plan>,
) -> Option<OrphanPass<'a>> {
    match (mode, owner_label) {
        (OrphanMode::Off, _) | (_, None) => None,
        (mode, Some(key)) => Some(OrphanPass {
            mode,
            key,
            threshold_ms: time.threshold_ms,
            planned: plan.map(|plan| plan.orphans.as_slice()),
        }),
    }
}

/// Takes the listing a pass starts with, where it needs one. A dry run lists the daemon's
/// containers once: every container where its records need them, which serves its orphans
/// too, else only the labelled ones for its orphans. A real run lists every container where
/// `--owner-label` is checked for a record that names one; its orphan pass lists the labelled
/// containers again after its records, which changed what the daemon holds (see
/// `OrphanPass::find`). A failed listing of every container is the pass's error (exit 69); a
/// failed labelled listing fails the orphan search only.
pub(crate) async fn take_listing(
    config: &Config,
    docker: &DockerClient,
    candidates: &[Candidate],
    orphan_pass: Option<&OrphanPass<'_>>,
    owner_label: bool,
) -> Result<Listing, DockerError> {
    let records_need_listing =
        names_a_container(candidates, config.max_removals) && (config.dry_run || owner_label);
    if records_need_listing {
        return match docker.list_all().await {
            Ok(listed) => Ok(Listing::All(ContainerIndex::new(listed))),
            Err(reason) => Err(docker.list_error(reason)),
        };
    }
    Ok(match (orphan_pass, config.dry_run) {
        (Some(orphans), true) => Listing::Labelled(docker.list_labelled(orphans.key).await),
        _ => Listing::Nothing,
    })
}

/// The listing a pass takes at its start, if it needs one.
pub(crate) enum Listing {
    /// None: no record needs one, and a real run's orphan pass lists later.
    Nothing,
    /// Every container: for the records of a dry run or of `--owner-label`, and the orphans of
    /// a dry run.
    All(ContainerIndex),
    /// The containers with the owner label, for the orphans of a dry run whose records need no
    /// listing; or why the listing failed, which fails the orphan search only.
    Labelled(Result<Vec<ContainerInfo>, String>),
}

/// Whether any of the candidates acted on under `--max-removals` names a container: only then do
/// the records need the daemon's listing, and a backlog of records without one is handled
/// without asking the daemon anything.
fn names_a_container(candidates: &[Candidate], max_removals: Option<usize>) -> bool {
    candidates[..worker::acted_on(candidates.len(), max_removals)]
        .iter()
        .any(|candidate| matches!(candidate.target, Target::Container(_)))
}

/// Connects to the daemon (the preflight) and logs what it learnt.
pub(crate) async fn connect(
    config: &Config,
    stop: &Arc<Stop>,
) -> Result<DockerClient, DockerError> {
    let docker =
        DockerClient::connect(&config.docker_host, config.docker_timeout, Arc::clone(stop)).await?;
    let daemon = docker.daemon();
    tracing::info!(
        target: LOG_TARGET,
        host = docker.host(),
        engine = %daemon.engine_version,
        server_api = %daemon.server_api,
        api = %daemon.wire_api,
        "{} answered the preflight; requests use API {}",
        Escaped(&daemon.engine_version),
        daemon.wire_api
    );
    Ok(docker)
}

/// Loads the plan to apply, if there is one, with the owner label and orphan mode the run must
/// use. A plan is re-checked against its own threshold, owner label and orphan mode, whatever
/// this run's are: it can only name what was expired, owned and leaked when it was made.
fn load_plan(
    config: &Config,
    time: &mut PassTime,
) -> Result<(Option<Plan>, Option<String>, OrphanMode), RunError> {
    let Some(path) = &config.apply_plan else {
        let mode = config.orphans.unwrap_or(OrphanMode::Off);
        return Ok((None, config.owner_label.clone(), mode));
    };
    let plan = Plan::load(
        path,
        &ApplyContext {
            state: &config.state,
            retention_seconds: config.retention.as_secs(),
            owner_label: config.owner_label.as_deref(),
            threshold_ms: time.threshold_ms,
            orphan_mode: config.orphans,
            remove_volumes: config.disk.remove_volumes,
        },
    )?;
    time.threshold_ms = plan.threshold_ms;
    let (owner_label, mode) = (plan.owner_label.clone(), plan.orphan_mode);
    Ok((Some(plan), owner_label, mode))
}

/// What the orphan pass of a run gave: the orphans handled, or why it could not look.
pub(crate) type OrphanResults = Option<Result<Vec<HandledOrphan>, String>>;

/// A pass once its state is read and the daemon answered: the records' jobs, then the orphans.
pub(crate) struct Pass<'a> {
    config: &'a Config,
    docker: &'a DockerClient,
    /// The plan being applied, if one is.
    plan: Option<&'a Plan>,
    /// The pass's times; the threshold is the plan's under a plan.
    time: &'a PassTime,
    /// Why the pass stops, shared with the signal listener.
    stop: &'a Arc<Stop>,
    orphans: Option<&'a OrphanPass<'a>>,
    settings: WorkerSettings,
    /// The games whose containers a dry run looks at for what their removal frees (explain's);
    /// every container it predicts removed when `None`.
    looking_only_at: Option<HashSet<FieldValue>>,
}

impl<'a> Pass<'a> {
    /// The pass of `config` with the daemon that answered, the plan it applies (if any), its
    /// times, its orphan part and the owner label it checks (the plan's, under a plan).
    pub(crate) fn new(
        config: &'a Config,
        docker: &'a DockerClient,
        plan: Option<&'a Plan>,
        time: &'a PassTime,
        stop: &'a Arc<Stop>,
        orphans: Option<&'a OrphanPass<'a>>,
        owner_label: Option<String>,
    ) -> Self {
        Self {
            config,
            docker,
            plan,
            time,
            stop,
            orphans,
            settings: WorkerSettings {
                holder: worker::run_holder().to_owned(),
                lease_ttl: config.lease_ttl,
                lock_wait: config.lock_wait,
                owner_label,
                docker_timeout: config.docker_timeout,
                concurrency: config.concurrency.get(),
                progress: Arc::new(NoProgress),
                disk: config.disk,
            },
            looking_only_at: None,
        }
    }

    /// The same pass, whose dry run looks at what the removals of these games' containers only
    /// would free (explain's games), and at no orphan's.
    #[must_use]
    pub(crate) fn looking_only_at(mut self, games: HashSet<FieldValue>) -> Self {
        self.looking_only_at = Some(games);
        self
    }

    /// The same pass, reporting its jobs to `progress` (a pass reports to nothing until told).
    #[must_use]
    pub(crate) fn reporting_to(mut self, progress: Arc<dyn Progress>) -> Self {
        self.settings.progress = progress;
        self
    }
}

/// The error of a start-up read whose wait for the lock a signal ended: nothing was read, and
/// the run ends with the signal's status. Any other error is returned as it is.
pub(crate) fn ended_by_signal(error: RunError, state: &Path, stop: &Stop) -> RunError {
    match (&error, stop.signalled()) {
        (RunError::State(failure), Some(signal)) if failure.is_busy() => RunError::Interrupted {
            signal,
            state: state.to_owned(),
        },
        _ => error,
    }
}

/// The orphan search's result, unless a signal came during it: the calls it had not made were
/// not made, so what it found is not every orphan.
fn cut_short<T>(found: Result<T, String>, stop: &Stop) -> Result<T, String> {
    match stop.signalled() {
        Some(signal) => Err(format!(
            "the search for orphans was cut short by {}",
            signal.name()
        )),
        None => found,
    }
}

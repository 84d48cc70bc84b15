//! `rt-cleanup explain GAME…`: for each named game, what a pass would do with it now and why.
//!
//! It is the dry run of the pass its options configure: the same consistent read of the state
//! file, the same listing and the same prediction (`cleanup::predict`), over every candidate, so
//! that an expired record's verdict is exactly the dry run's result and its place against
//! `--max-removals` is known. What explain adds is read from the same read (the named games'
//! records and their newest `operation_log` rows) and asked of the daemon afterwards (their
//! containers, and with `--owner-label` the containers labelled for them, with what the orphan
//! search of `--orphans remove` would do). Like a dry run it writes nothing and takes no lease.
//! Where the daemon cannot be asked, it answers from the state file alone and says what it could
//! not check.

mod render;
mod verdict;

use std::collections::HashMap;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::candidate::{ContainerRef, Target};
use crate::cleanup::predict::{predict_all, ReadMore, SecondLooks};
use crate::cleanup::read::{read_state, StateRead};
use crate::cleanup::{
    connect, ended_by_signal, orphan_pass, take_listing, OrphanResults, Pass, PassTime, RunError,
};
use crate::cli::{OrphanMode, OutputFormat};
use crate::config::{Config, DiskOptions, ExplainConfig};
use crate::docker::DockerClient;
use crate::engine::{ContainerEngine, ContainerInfo, Inspection};
use crate::exit::ExitStatus;
use crate::history::game_of;
use crate::job::{claims, CurrentRecord, JobKind};
use crate::outcome::{LiveLease, Outcome};
use crate::stop::{Signal, Stop};
use crate::store::{LogFilter, LogRow, Store, StoreError};
use crate::time::format_time;
use crate::value::{self, FieldValue};

pub use verdict::Verdict;

/// How many of a game's newest `operation_log` rows explain shows.
pub const LOG_ROWS: usize = 5;

/// What explain found, ready to print.
#[derive(Debug)]
pub struct Explanation {
    /// The state file, as given (bytes that are not UTF-8 shown as `\xNN`).
    state: String,
    /// The retention in whole seconds.
    retention_seconds: u64,
    /// `now - retention`, RFC 3339.
    threshold: String,
    /// When explain took `now`, RFC 3339.
    now: String,
    /// `--max-removals`.
    max_removals: Option<usize>,
    /// `--owner-label`.
    owner_label: Option<String>,
    /// `--orphans`, as the pass being explained has it.
    orphan_mode: OrphanMode,
    /// `--measure-space` and `--remove-volumes`, as the pass being explained has them: an
    /// expired game's dry-run result then carries what its container's removal would free.
    disk: DiskOptions,
    /// How many candidates the dry run has.
    candidates: usize,
    /// The engine that answered, or why the daemon could not be asked.
    daemon: Result<String, String>,
    /// The first signal, where one came.
    interrupted: Option<Signal>,
    /// Each named game, in the order given.
    games: Vec<GameExplanation>,
}

/// What explain found for one game.
#[derive(Debug)]
struct GameExplanation {
    /// The game, byte for byte as given.
    game: FieldValue,
    /// The verdict.
    verdict: Verdict,
    /// Its record as read, if it has one.
    record: Option<CurrentRecord>,
    /// The lease in force on it, if any.
    lease: Option<LiveLease>,
    /// Its record's container as the daemon reports it.
    container: ContainerView,
    /// With `--owner-label`: the containers labelled for it.
    labelled: Option<Result<Vec<Labelled>, String>>,
    /// Its newest `operation_log` rows, newest first.
    log: Vec<LogRow>,
}

/// A record's container as the daemon reports it.
#[derive(Debug)]
enum ContainerView {
    /// The game has no record, or its record names no container.
    NoneNamed,
    /// The record's `container_id` is no Docker reference: it is never sent to the daemon.
    NotAReference(String),
    /// The daemon's inspection.
    Inspected(Inspection),
    /// The daemon could not be asked.
    NotAsked,
}

/// A container whose owner label names the game, and what the orphan search makes of it.
#[derive(Debug)]
struct Labelled {
    /// The container, as listed.
    info: ContainerInfo,
    /// Whether it is an orphan, and if so what `--orphans remove` would do with it.
    orphan: OrphanView,
}

/// What the orphan search makes of a labelled container.
#[derive(Debug)]
enum OrphanView {
    /// An orphan: the result `--orphans remove` predicts for it.
    Orphan(Option<Outcome>),
    /// It runs: not an orphan.
    Running,
    /// The game's record claims it: not an orphan.
    Claimed,
    /// It stopped (or was created) less than the retention ago, or its times are unknown.
    Young,
    /// The search failed, so nothing is known.
    Unknown(String),
}

impl Explanation {
    /// Writes the explanation for stdout, in the configured format.
    pub fn write(&self, format: OutputFormat, out: &mut impl Write) -> io::Result<()> {
        match format {
            OutputFormat::Text => render::write_text(self, out),
            OutputFormat::Json => render::write_json(self, out),
        }
    }

    /// The exit status: 0 where every game was explained, 69 where the daemon could not be
    /// asked (the answer came from the state file alone), or the signal's.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match (self.interrupted, &self.daemon) {
            (Some(signal), _) => signal.exit_status(),
            (None, Err(_)) => ExitStatus::DockerUnavailable,
            (None, Ok(_)) => ExitStatus::Success,
        }
    }

    /// Logs what could not be checked, if anything.
    pub fn log_what_was_not_checked(&self) {
        if let Err(why) = &self.daemon {
            tracing::error!(
                "explained from the state file alone: the daemon could not be asked: {why}"
            );
        }
    }
}

/// What explain reads besides the dry run, from the same read of the state file.
struct Extras {
    /// The named games' records.
    records: HashMap<FieldValue, CurrentRecord>,
    /// Their newest `operation_log` rows, newest first, [`LOG_ROWS`] at most per game.
    logs: HashMap<FieldValue, Vec<LogRow>>,
}

/// Reads the named games' records and newest log rows: one scan of `operation_log` from the
/// newest row back, until every game has its rows (the whole log where a game has fewer).
fn read_extras(store: &Store, games: &[FieldValue]) -> Result<Extras, StoreError> {
    let records = store.records_of(games)?;
    let mut logs: HashMap<FieldValue, Vec<LogRow>> = games
        .iter()
        .map(|game| (game.clone(), Vec::new()))
        .collect();
    let mut short = logs.len();
    let filter = LogFilter {
        games: games.to_vec(),
        ..LogFilter::default()
    };
    store.read_log(&filter, |row| {
        if let Some(rows) = logs.get_mut(&row.game_id) {
            if rows.len() < LOG_ROWS {
                rows.push(row);
                if rows.len() == LOG_ROWS {
                    short -= 1;
                }
            }
        }
        if short == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(Extras { records, logs })
}

/// Explains the games of `config`. `stop` is shared with the signal listener.
pub async fn run(config: &ExplainConfig, stop: Arc<Stop>) -> Result<Explanation, RunError> {
    let games: Vec<FieldValue> = config.games.iter().map(game_of).collect();
    let pass_config = &config.pass;
    let time = PassTime::now(pass_config.retention);
    let (read, ()) = read_state(pass_config, None, &time, &stop, None, |_| Ok(()))
        .map_err(|error| ended_by_signal(error, &pass_config.state, &stop))?;
    let extras = |store: &Store| read_extras(store, &games);
    let connected = connect(pass_config, &stop).await;
    let answer = match &connected {
        Ok(docker) => with_daemon(pass_config, &time, &stop, docker, read, &extras, &games).await?,
        Err(error) => without_daemon(pass_config, &time, &stop, read, &extras, error.to_string())?,
    };
    let (read, outcomes, orphans, extras, docker) = answer;
    let mut containers = match &docker {
        Ok(docker) => Some(
            look_at_containers(docker, &games, &extras.records)
                .await
                .into_iter(),
        ),
        Err(_) => None,
    };
    let labelled = match (&docker, &pass_config.owner_label) {
        (Ok(docker), Some(key)) => Some(docker.list_labelled(key).await),
        (Err(why), Some(_)) => Some(Err(why.clone())),
        (_, None) => None,
    };
    let positions: HashMap<&FieldValue, usize> = read
        .candidates
        .iter()
        .enumerate()
        .map(|(position, candidate)| (&candidate.row.game_id, position))
        .collect();
    let retention_ms = i64::try_from(pass_config.retention.as_millis()).unwrap_or(i64::MAX);
    let mut explained = Vec::with_capacity(games.len());
    for game in &games {
        let candidate = positions
            .get(game)
            .map(|&position| (position, outcomes[position].clone()));
        let record = extras.records.get(game).cloned().or_else(|| {
            let (position, _) = candidate.as_ref()?;
            let row = &read.candidates[*position].row;
            Some(CurrentRecord {
                status: FieldValue::text("stopped"),
                container_id: row.container_id.clone(),
                last_op_at: row.last_op_at.clone(),
            })
        });
        let log = extras.logs.get(game).cloned().unwrap_or_default();
        explained.push(GameExplanation {
            verdict: verdict::verdict(record.as_ref(), candidate, &log, retention_ms, time.now_ms),
            lease: read.leases.get(game).cloned(),
            container: containers
                .as_mut()
                .and_then(Iterator::next)
                .unwrap_or(ContainerView::NotAsked),
            labelled: labelled
                .as_ref()
                .map(|listed| labelled_for(game, record.as_ref(), listed, &orphans, pass_config)),
            record,
            log,
            game: game.clone(),
        });
    }
    Ok(Explanation {
        state: value::escape_invalid_utf8(pass_config.state.as_os_str().as_encoded_bytes())
            .into_owned(),
        retention_seconds: pass_config.retention.as_secs(),
        threshold: time.threshold(),
        now: format_time(time.started),
        max_removals: pass_config.max_removals,
        owner_label: pass_config.owner_label.clone(),
        orphan_mode: pass_config.orphans.unwrap_or(OrphanMode::Off),
        disk: pass_config.disk,
        candidates: read.candidates.len(),
        daemon: docker.map(|docker| docker.daemon().engine_version.to_string()),
        interrupted: stop.signalled(),
        games: explained,
    })
}

/// What the dry run gave explain: the read it predicted from, its outcomes (`None` where the
/// daemon was needed and could not be asked), its orphans, explain's own reads, and the daemon
/// or why it could not be asked.
type Answer<'d> = (
    StateRead,
    Vec<Option<Outcome>>,
    OrphanResults,
    Extras,
    Result<&'d DockerClient, String>,
);

/// The dry run's listing and prediction over every candidate, as `--dry-run` makes them; its
/// orphan search is that of `--orphans remove` wherever there is an owner label, so that
/// explain can say what it would do with a game's labelled containers. With `--measure-space`
/// or `--remove-volumes` it looks at what the removal of the named `games`' containers only
/// would free.
async fn with_daemon<'d>(
    config: &Config,
    time: &PassTime,
    stop: &Arc<Stop>,
    docker: &'d DockerClient,
    read: StateRead,
    extras: ReadMore<'_, Extras>,
    games: &[FieldValue],
) -> Result<Answer<'d>, RunError> {
    let owner_label = config.owner_label.as_deref();
    let orphan_pass = orphan_pass(OrphanMode::Remove, owner_label, time, None);
    let listing = match take_listing(
        config,
        docker,
        &read.candidates,
        orphan_pass.as_ref(),
        owner_label.is_some(),
    )
    .await
    {
        Ok(listing) => listing,
        Err(error) => return without_daemon(config, time, stop, read, extras, error.to_string()),
    };
    let pass = Pass::new(
        config,
        docker,
        None,
        time,
        stop,
        orphan_pass.as_ref(),
        config.owner_label.clone(),
    )
    .looking_only_at(games.iter().cloned().collect());
    let (read, outcomes, orphans, extras) = pass.predict(read, listing, Some(extras)).await?;
    let extras = extras.expect("predict reads the extras it is given");
    let outcomes = outcomes.into_iter().map(Some).collect();
    Ok((read, outcomes, orphans, extras, Ok(docker)))
}

/// The answer from the state file alone, where the daemon could not be asked: the dry run's
/// prediction where it needs no container (a lease held, an unusable row, no container, over
/// `--max-removals`), and no result where it does.
fn without_daemon<'d>(
    config: &Config,
    time: &PassTime,
    stop: &Arc<Stop>,
    read: StateRead,
    extras: ReadMore<'_, Extras>,
    why: String,
) -> Result<Answer<'d>, RunError> {
    let (read, extras) = read_state(config, None, time, stop, Some(read), extras)?;
    let predicted = predict_all(
        read.candidates
            .iter()
            .map(|candidate| (&candidate.row.game_id, &candidate.target, JobKind::Record)),
        &read.leases,
        None,
        &SecondLooks::new(),
        config.owner_label.as_deref(),
        config.max_removals,
    );
    // Without a listing, the prediction of a container a record names is a guess: left out.
    let outcomes = read
        .candidates
        .iter()
        .zip(predicted)
        .map(|(candidate, outcome)| {
            let needs_daemon = matches!(candidate.target, Target::Container(_))
                && !read.leases.contains_key(&candidate.row.game_id)
                && outcome.result != crate::outcome::ResultKind::Deferred;
            (!needs_daemon).then_some(outcome)
        })
        .collect();
    Ok((read, outcomes, None, extras, Err(why)))
}

/// Inspects each named game's container, where its record names a valid reference.
async fn look_at_containers(
    docker: &DockerClient,
    games: &[FieldValue],
    records: &HashMap<FieldValue, CurrentRecord>,
) -> Vec<ContainerView> {
    let mut views = Vec::with_capacity(games.len());
    for game in games {
        let container_id = records.get(game).map(|record| &record.container_id);
        views.push(match container_id {
            None | Some(FieldValue::Null) => ContainerView::NoneNamed,
            Some(FieldValue::Text(text)) => match text.as_str().map(ContainerRef::parse) {
                Some(Ok(reference)) => {
                    ContainerView::Inspected(docker.inspect(reference.as_str()).await)
                }
                Some(Err(reason)) => ContainerView::NotAReference(reason),
                None => ContainerView::NotAReference("container_id is not valid UTF-8".into()),
            },
            Some(other) => ContainerView::NotAReference(format!(
                "container_id {other} is {}, not text",
                other.type_name()
            )),
        });
    }
    views
}

/// The containers labelled for `game`, each with what the orphan search (that of `--orphans
/// remove`, run by the dry run) makes of it.
fn labelled_for(
    game: &FieldValue,
    record: Option<&CurrentRecord>,
    listed: &Result<Vec<ContainerInfo>, String>,
    orphans: &OrphanResults,
    config: &Config,
) -> Result<Vec<Labelled>, String> {
    let key = config.owner_label.as_deref().unwrap_or_default();
    let listed = listed.as_ref().map_err(Clone::clone)?;
    let name = game.to_text();
    Ok(listed
        .iter()
        .filter(|info| {
            info.labels
                .get(key)
                .is_some_and(|label| Some(label) == name.as_ref())
        })
        .map(|info| {
            let found = orphans.as_ref().map(|search| {
                search.as_ref().map(|handled| {
                    handled
                        .iter()
                        .find(|handled| handled.orphan.info.id == info.id)
                        .map(|handled| handled.outcome.clone())
                })
            });
            let orphan = match found {
                Some(Ok(Some(outcome))) => OrphanView::Orphan(outcome),
                Some(Err(reason)) => OrphanView::Unknown(reason.clone()),
                None => OrphanView::Unknown("the daemon could not be asked".to_owned()),
                Some(Ok(None)) if info.is_running() => OrphanView::Running,
                Some(Ok(None))
                    if record.is_some_and(|record| claims(record, &info.id, &info.names)) =>
                {
                    OrphanView::Claimed
                }
                Some(Ok(None)) => OrphanView::Young,
            };
            Labelled {
                info: info.clone(),
                orphan,
            }
        })
        .collect())
}

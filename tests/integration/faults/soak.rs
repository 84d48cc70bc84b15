//! The chaos soak (docs/fault-suite.md, "The chaos soak"): a simulated runtime manager restarts
//! and stops games under leases of its own while rt-cleanup runs again and again over the same
//! state file, through the fault proxy scripted to answer random removals, inspections and
//! listings late, never, or after the client gave up, and is killed or signalled at random.
//!
//! Checked after every run and at the end; the first violation stops the soak, which then prints
//! its figures, the seed and the story of the game at fault:
//!
//! * no running game's container is removed: whenever the manager holds a game as `running`, its
//!   container exists and runs, and its `docker start` and `docker stop` never find it gone;
//! * no removal while another holder owns the lease: no `DELETE` is carried out by the daemon
//!   while the manager holds the game's lease (the proxy's record of when each reached the daemon
//!   and was answered, against the manager's log of its leases), and a `DELETE` whose answer the
//!   run did not get before it ended is covered by a lease of that run's left on the game, which
//!   expires only after the daemon carried it out;
//! * a container is removed only while its record is `stopped` and expired, or once its game's
//!   record names another container (an orphan);
//! * the `operation_log` claims each container's removal at most once, and never falsely
//!   ([`removal_claim_violations`]);
//! * a run that printed a summary left exactly the leases its `leases_kept` names; a run that
//!   printed none (exit 69, or a signal or lock during the start-up wait) wrote nothing;
//! * `PRAGMA integrity_check` is ok;
//! * at the end, once the leases have expired, a clean run removes every expired record's
//!   container and every orphan, leaves every running game's container running, and leaves no
//!   lease in force.
//!
//! A game whose record is `stopped` but whose container is gone (a run removed it and was killed,
//! or its result could not be written) is restarted by the manager as a real one would: with a
//! new container, whose id it records before it marks the game `running`. It never marks
//! running a game without a container it has just seen.
//!
//! It runs for `RT_CLEANUP_SOAK_SECONDS` per journal mode ([`CI_SECONDS`] by default: the CI
//! length); `scripts/soak.sh --minutes N` runs it longer and collects the `SOAK …` figures line
//! each one prints. `RT_CLEANUP_FAULT_SEED` replays a seed's choices; the timing, and so what they
//! meet, differs from run to run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use serde_json::Value as Json;

use crate::harness::{
    container_state, existing_on_test_daemon, now_ms, removal_claim_violations, rfc3339_ms,
    spawn_pass_with_retention, unique_name, Containers, Fault, FaultProxy, Journal, Match, Rng,
    Run, Seen, Spawned, StateFile, Which,
};

/// How long the soak runs per journal mode in CI, in seconds; `RT_CLEANUP_SOAK_SECONDS` sets
/// another length.
const CI_SECONDS: u64 = 30;

/// The runs' retention: short, so that the games the manager stops expire during the soak.
const RETENTION: &str = "3s";
const RETENTION_MS: i64 = 3_000;

/// The runs' `--docker-timeout` and `--lock-wait`.
const DOCKER_TIMEOUT: &str = "1s";
const LOCK_WAIT: &str = "1s";

/// The runs' `--lease-ttl`: the shortest the tool accepts with those waits (it must exceed
/// 3 × 1 s + 4 × 1 s + 10 s), so that kept leases expire during the soak.
const LEASE_TTL: &str = "18s";

/// How late a late answer comes, in milliseconds: past `--docker-timeout`, and well inside the
/// lease a run keeps for a removal it got no answer to.
const LATE_MS: (u64, u64) = (1_200, 4_000);

/// The lease the manager takes for one operation, in milliseconds: far longer than any of its
/// operations, so that no one can take it over while it works.
const MANAGER_TTL_MS: i64 = 60_000;

/// The games the manager runs.
const GAMES: usize = 10;

/// The longest one run of rt-cleanup may take before the soak fails.
const RUN_BOUND: Duration = Duration::from_secs(60);

/// How far apart two readings of the clock (an `Instant` and epoch milliseconds) taken together
/// may be, when a removal's time is compared with a record's `last_op_at`.
const CLOCK_SLACK_MS: i64 = 50;

/// The manager's holder names are this and the number of the take: `rtmanager/soak/<n>`.
const MANAGER_HOLDER: &str = "rtmanager/soak";

/// One lease the manager held, from after its acquire statement returned to before its release
/// statement: the inside of the time it owned the game.
struct Hold {
    game: String,
    holder: String,
    from: Instant,
    to: Option<Instant>,
}

/// A record as the manager (or the soak's setup) wrote it.
struct Written {
    game: String,
    at: Instant,
    /// Epoch milliseconds at `at`: times are compared through the nearest pair of readings, so
    /// that the two clocks drifting apart over a long soak does not matter.
    at_ms: i64,
    container: String,
    status: &'static str,
    last_op_at: i64,
}

/// What the manager did.
#[derive(Default)]
struct ManagerFigures {
    takes: usize,
    refused: usize,
    running_checks: usize,
    stops: usize,
    restarts: usize,
    /// Restarts of a stopped game whose container was gone: with a new container.
    recreated: usize,
    /// Restarts with a new container that left the old one behind, an orphan.
    leaked: usize,
}

/// The manager's log, the containers of the soak, and the violations found.
#[derive(Default)]
struct Timeline {
    holds: Vec<Hold>,
    writes: Vec<Written>,
    /// Every container made for the soak, and its game.
    owners: HashMap<String, String>,
    violations: Vec<String>,
    figures: ManagerFigures,
}

/// What the runs of rt-cleanup did.
#[derive(Default)]
struct RunFigures {
    /// The moments of most signals are drawn up to this many milliseconds after the start.
    aim: u64,
    runs: usize,
    exits: BTreeMap<String, usize>,
    /// Per ending: `(sent, landed on a live pass)`.
    sigkill: (usize, usize),
    sigterm: (usize, usize),
    sigterm_twice: (usize, usize),
    /// SIGTERMs that ended a run by their default action: they came before rt-cleanup set up its
    /// signal handling, in its first milliseconds, when it had done nothing yet.
    sigterm_before_handler: usize,
    removed: u64,
    replayed: u64,
    conflicts: u64,
    failed: u64,
    orphans_removed: u64,
    kept_leases: usize,
    /// Leases of rt-cleanup's moved into the past while nothing was in flight.
    early_expiries: usize,
    /// Removals whose answer their run did not get before it ended.
    unanswered_at_exit: usize,
    /// Of those, the ones that reached the daemon while their container still existed (an answer
    /// other than 404), after the run had ended.
    carried_out_later: usize,
    /// `DELETE`s the daemon answered with success.
    containers_removed: usize,
}

/// How a run is ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// It runs to its end.
    Finish,
    /// SIGKILL this long after the start.
    Kill(Duration),
    /// SIGTERM this long after the start.
    Term(Duration),
    /// SIGTERM this long after the start, and again this long after it was noticed.
    TermTwice(Duration, Duration),
}

/// The soak's view of the proxy's record: which removals were checked, and the leases that cover
/// the removals still unanswered when their run ended.
#[derive(Default)]
struct Checker {
    seen_upto: usize,
    unsettled: Vec<usize>,
    /// Seen index of a removal unanswered when its run ended → what that run left on its game.
    covers: HashMap<usize, Cover>,
}

/// What a run left on the game of a removal it got no answer to before it ended.
#[derive(Debug, Clone, Copy)]
enum Cover {
    /// A lease of its own, expiring then: an instant, and epoch milliseconds for messages.
    LeaseUntil(Instant, i64),
    /// No lease of its own.
    NoLease,
}

/// One soak: its state file, its containers, the proxy every run goes through, and the log of
/// what the manager did.
struct Soak {
    state: StateFile,
    containers: Containers,
    proxy: FaultProxy,
    /// The owner label of the soak's containers: a key of its own, so that no run ever takes
    /// another test's container on the shared daemon for an orphan.
    key: String,
    games: Vec<String>,
    timeline: Mutex<Timeline>,
    base: Instant,
}

/// The soak in one journal mode: runs until its time is up or a violation is found, then the
/// clean run, then the figures line.
fn the_chaos_soak_keeps_every_invariant(journal: Journal) {
    let seconds = soak_seconds();
    let mut rng = Rng::seeded(&format!("soak {journal:?}"));
    let soak = Soak::new(journal);
    let mut figures = RunFigures {
        aim: 300,
        ..RunFigures::default()
    };
    let mut checker = Checker::default();
    let done = AtomicBool::new(false);
    let manager_rng = rng.fork();
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Whatever ends the loop, a panic included, stops the manager, so that the scope ends.
        let _stop = StopOnDrop(&done);
        let manager = scope.spawn(|| soak.manage(manager_rng, &done));
        let deadline = started + Duration::from_secs(seconds);
        while Instant::now() < deadline && soak.clean() && !manager.is_finished() {
            soak.one_run(&mut rng, &mut figures, &mut checker);
        }
        done.store(true, Ordering::SeqCst);
        if let Err(panic) = manager.join() {
            std::panic::resume_unwind(panic);
        }
    });
    if soak.clean() {
        soak.finish(&mut figures, &mut checker);
    }
    let line = soak.figures_line(journal, &rng, started.elapsed(), &figures);
    println!("{line}");
    let timeline = soak.timeline();
    assert!(
        timeline.violations.is_empty(),
        "{line}\nRT_CLEANUP_FAULT_SEED={} replays its choices\n{}",
        rng.seed(),
        timeline.violations.join("\n\n")
    );
}

in_both_journal_modes!(the_chaos_soak_keeps_every_invariant);

/// The soak's length in seconds, from `RT_CLEANUP_SOAK_SECONDS`.
fn soak_seconds() -> u64 {
    match std::env::var("RT_CLEANUP_SOAK_SECONDS") {
        Ok(text) if !text.is_empty() => text.parse().unwrap_or_else(|_| {
            panic!("RT_CLEANUP_SOAK_SECONDS={text:?} is not a whole number of seconds")
        }),
        _ => CI_SECONDS,
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Soak {
    /// The state file with [`GAMES`] games, each with a container on the shared daemon: four
    /// running, four stopped long ago, two stopped just now.
    fn new(journal: Journal) -> Self {
        let soak = Self {
            state: StateFile::new(journal),
            containers: Containers::new("soak"),
            proxy: FaultProxy::in_front_of_test_daemon(),
            key: unique_name("rt-cleanup-test.soak"),
            games: (0..GAMES).map(|n| format!("soak-{n:02}")).collect(),
            timeline: Mutex::new(Timeline::default()),
            base: Instant::now(),
        };
        for (n, game) in soak.games.iter().enumerate() {
            let container = soak.new_container(game);
            let (status, last_op_at) = match n % 5 {
                0 | 1 => {
                    soak.containers
                        .try_cli(&["start", &container])
                        .unwrap_or_else(|error| panic!("{error}"));
                    ("running", now_ms())
                }
                2 | 3 => ("stopped", now_ms() - 600_000),
                _ => ("stopped", now_ms()),
            };
            soak.state
                .insert(game, Some(&container), status, &last_op_at);
            soak.wrote(game, &container, status, last_op_at);
        }
        soak
    }

    /// The manager's log, locked.
    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        // A thread that panicked while holding it panicked on a check; its log is still whole.
        self.timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether no violation was found so far.
    fn clean(&self) -> bool {
        self.timeline().violations.is_empty()
    }

    /// Milliseconds since the soak began, for stories.
    fn since(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.base).as_millis()
    }

    /// A new stopped container for a game, labelled with it; remembered as the game's.
    fn new_container(&self, game: &str) -> String {
        let container = self.containers.create(&[(self.key.as_str(), game)]);
        self.timeline()
            .owners
            .insert(container.clone(), game.to_owned());
        container
    }

    /// Logs a record the manager wrote.
    fn wrote(&self, game: &str, container: &str, status: &'static str, last_op_at: i64) {
        self.timeline().writes.push(Written {
            game: game.to_owned(),
            at: Instant::now(),
            at_ms: now_ms(),
            container: container.to_owned(),
            status,
            last_op_at,
        });
    }

    /// Records a violation about a game, with its story.
    fn violation(&self, game: &str, what: &str) {
        let story = self.story(game);
        self.timeline()
            .violations
            .push(format!("{what}\nthe story of {game}:\n{story}"));
    }

    /// Everything the manager did to a game and every request about its containers, in order.
    fn story(&self, game: &str) -> String {
        let timeline = self.timeline();
        let mut events: Vec<(Instant, String)> = Vec::new();
        for hold in timeline.holds.iter().filter(|hold| hold.game == game) {
            events.push((hold.from, format!("{} takes the lease", hold.holder)));
            if let Some(to) = hold.to {
                events.push((to, format!("{} releases it", hold.holder)));
            }
        }
        for write in timeline.writes.iter().filter(|write| write.game == game) {
            events.push((
                write.at,
                format!(
                    "the manager writes {} {} last_op_at {}",
                    write.status,
                    write.container,
                    rfc3339_ms(write.last_op_at)
                ),
            ));
        }
        let containers: Vec<String> = timeline
            .owners
            .iter()
            .filter(|(_, owner)| owner.as_str() == game)
            .map(|(container, _)| container.clone())
            .collect();
        drop(timeline);
        for seen in self.proxy.seen() {
            if containers.iter().any(|c| seen.target.contains(c.as_str())) {
                events.push((seen.arrived, self.describe(&seen)));
            }
        }
        events.sort_by_key(|(at, _)| *at);
        events.iter().fold(String::new(), |mut story, (at, event)| {
            let _ = writeln!(story, "  +{} ms {event}", self.since(*at));
            story
        })
    }

    /// A request as the proxy saw it, with its times since the soak began.
    fn describe(&self, seen: &Seen) -> String {
        let at = |instant: Option<Instant>| {
            instant.map_or_else(|| "never".to_owned(), |i| format!("+{} ms", self.since(i)))
        };
        format!(
            "{} arrives ({:?}); reaches the daemon {}, which is done {} (status {:?}); answer \
             relayed {}",
            seen.line,
            seen.fault,
            at(seen.forwarded),
            at(seen.settled),
            seen.status,
            at(seen.answered)
        )
    }
}

// ------------------------------------------------------------------------------------------------
// The simulated runtime manager
// ------------------------------------------------------------------------------------------------

impl Soak {
    /// The manager: until `done`, takes a random game's lease as the contract's protocol says
    /// and acts on the game under it.
    fn manage(&self, mut rng: Rng, done: &AtomicBool) {
        let mut take = 0;
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(rng.between(50, 300)));
            let game = rng.pick(&self.games).clone();
            take += 1;
            let holder = format!("{MANAGER_HOLDER}/{take}");
            if !self.state.acquire_lease(&game, &holder, MANAGER_TTL_MS) {
                self.timeline().figures.refused += 1;
                continue;
            }
            let hold = {
                let mut timeline = self.timeline();
                timeline.figures.takes += 1;
                timeline.holds.push(Hold {
                    game: game.clone(),
                    holder: holder.clone(),
                    from: Instant::now(),
                    to: None,
                });
                timeline.holds.len() - 1
            };
            self.act_under_lease(&game, &mut rng);
            self.timeline().holds[hold].to = Some(Instant::now());
            if !self.state.release_lease(&game, &holder) {
                self.violation(
                    &game,
                    &format!("the manager's lease {holder} on {game} was taken from it"),
                );
            }
        }
    }

    /// What the manager does with a game it holds: stops a running one (or only checks it),
    /// restarts a stopped one now and then, and starts a removed one anew.
    fn act_under_lease(&self, game: &str, rng: &mut Rng) {
        let record = self
            .state
            .record(game)
            .unwrap_or_else(|| panic!("the record of {game} exists: the soak never deletes one"));
        let Value::Text(container) = record.container_id else {
            self.violation(
                game,
                &format!("{game}'s container_id became {:?}", record.container_id),
            );
            return;
        };
        match record.status.as_str() {
            "running" => {
                if self.runs(game, &container, "the manager holds the game as running")
                    && rng.chance(60)
                {
                    self.stop(game, &container, rng);
                }
            }
            "stopped" if rng.chance(35) => self.restart(game, Some(&container), rng),
            "removed" if rng.chance(50) => self.restart(game, None, rng),
            "stopped" | "removed" => {}
            other => self.violation(game, &format!("{game} became {other:?}")),
        }
    }

    /// Checks that a game held as running has its container, running; whether it does.
    fn runs(&self, game: &str, container: &str, when: &str) -> bool {
        self.timeline().figures.running_checks += 1;
        let state = container_state(container);
        if state.as_deref() == Some("running") {
            return true;
        }
        self.violation(
            game,
            &format!("{when}, but its container {container} is {state:?} (None: gone)"),
        );
        false
    }

    /// `docker stop`, then the record → `stopped`, with a `last_op_at` that is expired
    /// already or will be within two retentions.
    fn stop(&self, game: &str, container: &str, rng: &mut Rng) {
        if let Err(error) = self.containers.try_cli(&["stop", "-t", "0", container]) {
            self.violation(game, &format!("the manager could not stop {game}: {error}"));
            return;
        }
        let last_op_at = now_ms() - rng.between(0, 2 * RETENTION_MS as u64) as i64;
        self.state
            .set_record(game, container, "stopped", last_op_at);
        self.wrote(game, container, "stopped", last_op_at);
        self.timeline().figures.stops += 1;
    }

    /// The record → `running` with a container it has just seen (the old one, or a new one where
    /// the old one is gone, or now and then anyway, leaking the old one), then `docker start`.
    fn restart(&self, game: &str, old: Option<&str>, rng: &mut Rng) {
        let kept = match old {
            Some(old) if container_state(old).is_none() => {
                // A run removed it and could not write so (killed, or the state file refused):
                // a real manager makes the game a new container.
                self.timeline().figures.recreated += 1;
                None
            }
            Some(_) if rng.chance(30) => {
                self.timeline().figures.leaked += 1;
                None
            }
            other => other,
        };
        let container = kept.map_or_else(|| self.new_container(game), str::to_owned);
        let now = now_ms();
        self.state.set_record(game, &container, "running", now);
        self.wrote(game, &container, "running", now);
        if let Err(error) = self.containers.try_cli(&["start", &container]) {
            self.violation(
                game,
                &format!("the manager marked {game} running and could not start it: {error}"),
            );
            return;
        }
        self.timeline().figures.restarts += 1;
        self.runs(game, &container, "the manager has just started the game");
    }
}

// ------------------------------------------------------------------------------------------------
// The runs of rt-cleanup
// ------------------------------------------------------------------------------------------------

/// The faults of one run: up to three rules, each on removals, inspections or listings, for the
/// n-th match or every one, mostly delaying the request past `--docker-timeout` (the daemon acts
/// after the client gave up).
fn random_rules(rng: &mut Rng) -> Vec<(Match, Which, Fault)> {
    let count = *rng.pick(&[0, 1, 2, 2, 3, 3]);
    (0..count)
        .map(|_| {
            let matcher = match rng.between(0, 5) {
                0..=2 => Match::removal(),
                3 | 4 => Match::inspection(),
                _ => Match::listing(),
            };
            let which = match rng.between(1, 100) {
                1..=20 => Which::Every,
                21..=70 => Which::Nth(1),
                _ => Which::Nth(rng.between(2, 3) as usize),
            };
            let late = Duration::from_millis(rng.between(LATE_MS.0, LATE_MS.1));
            let fault = match rng.between(1, 100) {
                1..=55 => Fault::Delay(late),
                56..=70 => Fault::AnswerLate(late),
                71..=85 => Fault::Drop,
                _ => Fault::Swallow,
            };
            (matcher, which, fault)
        })
        .collect()
}

/// How a run ends: it finishes, or is killed or signalled after a random moment, mostly within
/// the `aim` (milliseconds), else within 2.5 s (a pass waiting for late answers).
fn random_ending(rng: &mut Rng, aim: u64) -> Ending {
    let after = |rng: &mut Rng| {
        let most = if rng.chance(70) { aim } else { 2_500 };
        Duration::from_millis(rng.between(0, most))
    };
    match rng.between(1, 100) {
        1..=45 => Ending::Finish,
        46..=75 => Ending::Kill(after(rng)),
        76..=90 => Ending::Term(after(rng)),
        _ => {
            let first = after(rng);
            Ending::TermTwice(first, after(rng))
        }
    }
}

/// The container a removal's target names (`/v1.41/containers/<ref>?force=false…`).
fn removed_container(target: &str) -> &str {
    let reference = target.split("/containers/").nth(1).unwrap_or_default();
    reference.split('?').next().unwrap_or_default()
}

/// A run's `counts.<key>` or `orphan_counts.<key>`, 0 where absent.
fn count(json: &Json, section: &str, key: &str) -> u64 {
    json[section][key].as_u64().unwrap_or(0)
}

impl Soak {
    /// The holders of the leases of rt-cleanup's in the state file now.
    fn own_holders(&self) -> HashSet<String> {
        self.state
            .leases()
            .into_iter()
            .filter(|(_, holder, _)| holder.starts_with("rt-cleanup/"))
            .map(|(_, holder, _)| holder)
            .collect()
    }

    /// One run of rt-cleanup with random options, faults and ending, and the checks after it.
    fn one_run(&self, rng: &mut Rng, figures: &mut RunFigures, checker: &mut Checker) {
        self.proxy.rescript(&random_rules(rng));
        let holders_before = self.own_holders();
        let rows_before = self.state.all_log().len();
        let concurrency = rng.between(1, 4).to_string();
        let mut args = vec![
            "--docker-timeout",
            DOCKER_TIMEOUT,
            "--lock-wait",
            LOCK_WAIT,
            "--lease-ttl",
            LEASE_TTL,
            "--concurrency",
            &concurrency,
        ];
        match rng.between(0, 3) {
            0 => {}
            1 => args.extend(["--owner-label", self.key.as_str()]),
            2 => args.extend(["--owner-label", self.key.as_str(), "--orphans", "remove"]),
            _ => args.extend(["--owner-label", self.key.as_str(), "--orphans", "report"]),
        }
        let ending = random_ending(rng, figures.aim);
        let first = self.proxy.seen_count();
        let running = spawn_pass_with_retention(&self.state, &self.proxy.host(), RETENTION, &args);
        let run = end(running, ending, figures);
        // A signal that came after the pass ended proves nothing: the moments aim lower after a
        // miss and higher after a hit, so that about half land on a live pass on any machine.
        if !matches!(ending, Ending::Finish) {
            figures.aim = if run.code.is_none() || run.code == Some(143) {
                (figures.aim * 5 / 4).min(1_000)
            } else {
                (figures.aim * 3 / 4).max(40)
            };
        }
        let ended = Instant::now();
        figures.runs += 1;
        let exit = run
            .code
            .map_or_else(|| "killed".to_owned(), |code| code.to_string());
        *figures.exits.entry(exit).or_default() += 1;

        let after = format!("after a run ({ending:?}, exit {:?})", run.code);
        self.check_exit(&run, ending, &holders_before, rows_before, figures, &after);
        self.cover_unanswered(first, ended, &holders_before, checker, figures);
        self.check_removals(checker, figures);
        self.check_claims(&after);
        if rng.chance(30) && self.proxy.settled() {
            // Nothing can reach the daemon any more: moving the leases of rt-cleanup's into the
            // past is the same as waiting them out.
            self.check_removals(checker, figures);
            figures.early_expiries += self.state.expire_own_leases();
        }
        std::thread::sleep(Duration::from_millis(rng.between(0, 200)));
    }

    /// The exit status is one a run may have, and what it left matches what it printed.
    fn check_exit(
        &self,
        run: &Run,
        ending: Ending,
        holders_before: &HashSet<String>,
        rows_before: usize,
        figures: &mut RunFigures,
        after: &str,
    ) {
        let signalled = matches!(ending, Ending::Term(_) | Ending::TermTwice(..));
        match run.code {
            None => return,
            Some(0 | 1 | 69 | 75) => {}
            Some(143) if signalled => {}
            Some(other) => {
                self.violation(
                    "(none)",
                    &format!("{after}: exit {other}\nstderr:\n{}", run.stderr),
                );
                return;
            }
        }
        // Only the leases still in force are compared: one that expired during a long run may
        // have been taken over since.
        let now = now_ms();
        let left: BTreeMap<String, String> = self
            .state
            .leases()
            .into_iter()
            .filter(|(_, holder, expires_at)| {
                holder.starts_with("rt-cleanup/")
                    && !holders_before.contains(holder)
                    && *expires_at > now
            })
            .map(|(game, _, expires_at)| (game, rfc3339_ms(expires_at)))
            .collect();
        if run.stdout.trim().is_empty() {
            // Exit 69, or a signal or the lock during the start-up wait: nothing was done.
            let rows = self.state.all_log().len();
            if !left.is_empty() || rows != rows_before || matches!(run.code, Some(0 | 1)) {
                self.violation(
                    "(none)",
                    &format!(
                        "{after}: no summary, but leases {left:?} left and {} rows written\n\
                         stderr:\n{}",
                        rows - rows_before,
                        run.stderr
                    ),
                );
            }
            return;
        }
        let json = run.json();
        let Some(named) = json["leases_kept"].as_array() else {
            self.violation(
                "(none)",
                &format!("{after}: a summary without leases_kept: {json}"),
            );
            return;
        };
        let kept: BTreeMap<String, String> = named
            .iter()
            .map(|lease| {
                (
                    lease["game_id"].as_str().unwrap_or_default().to_owned(),
                    lease["until"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .filter(|(_, until)| {
                humantime::parse_rfc3339(until).is_ok_and(|until| {
                    until > std::time::UNIX_EPOCH + Duration::from_millis(now as u64)
                })
            })
            .collect();
        if kept != left {
            let game = kept.keys().chain(left.keys()).next().cloned();
            self.violation(
                game.as_deref().unwrap_or("(none)"),
                &format!(
                    "{after}: leases left {left:?}, but the summary's leases_kept is {}\n\
                     stderr:\n{}",
                    json["leases_kept"], run.stderr
                ),
            );
        }
        figures.kept_leases += named.len();
        figures.removed += count(&json, "counts", "removed");
        figures.replayed += count(&json, "counts", "replay_no_op");
        figures.conflicts += count(&json, "counts", "conflict");
        figures.failed += count(&json, "counts", "failed");
        figures.orphans_removed += count(&json, "orphan_counts", "removed");
    }

    /// Every removal the run sent and got no answer to before it ended may still be carried
    /// out: the lease of the run's left on its game, if any, is noted, to be checked once the
    /// daemon is done with the removal (see [`check_removal`](Self::check_removal)).
    fn cover_unanswered(
        &self,
        first: usize,
        ended: Instant,
        holders_before: &HashSet<String>,
        checker: &mut Checker,
        figures: &mut RunFigures,
    ) {
        let leases = self.state.leases();
        for (index, seen) in (first..).zip(self.proxy.seen_from(first)) {
            let unanswered = Match::removal().matches(&seen.method, &seen.target)
                && seen.settled.is_none_or(|settled| settled > ended);
            if !unanswered {
                continue;
            }
            figures.unanswered_at_exit += 1;
            let container = removed_container(&seen.target);
            let game = self.timeline().owners.get(container).cloned();
            let ours = leases.iter().find(|(leased, holder, _)| {
                Some(leased) == game.as_ref()
                    && holder.starts_with("rt-cleanup/")
                    && !holders_before.contains(holder)
            });
            let cover = ours.map_or(Cover::NoLease, |(_, _, until)| {
                let left = Duration::from_millis(until.saturating_sub(now_ms()).max(0) as u64);
                Cover::LeaseUntil(Instant::now() + left, *until)
            });
            checker.covers.insert(index, cover);
        }
    }

    /// Checks every removal the daemon is done with since the last call.
    fn check_removals(&self, checker: &mut Checker, figures: &mut RunFigures) {
        // The unsettled ones are in the order they arrived, all before `seen_upto`.
        let from = checker
            .unsettled
            .first()
            .map_or(checker.seen_upto, |&first| first.min(checker.seen_upto));
        let seen = self.proxy.seen_from(from);
        for (index, request) in (from..).zip(&seen).skip(checker.seen_upto - from) {
            if Match::removal().matches(&request.method, &request.target) {
                checker.unsettled.push(index);
            }
        }
        checker.seen_upto = from + seen.len();
        let mut unsettled = std::mem::take(&mut checker.unsettled);
        unsettled.retain(|&index| {
            let request = &seen[index - from];
            if request.settled.is_none() {
                return true;
            }
            let cover = checker.covers.remove(&index);
            self.check_removal(request, cover, figures);
            false
        });
        checker.unsettled = unsettled;
    }

    /// A removal that reached the daemon while its container existed (any answer but 404: a
    /// container id never comes back, so a removal answered 404 found nothing and did nothing)
    /// reached it at no moment the manager held the game, and while the record named the
    /// container only if it was stopped and expired; and if its run had ended without its
    /// answer, the run left a lease on the game that expired only after the daemon was done.
    fn check_removal(&self, seen: &Seen, cover: Option<Cover>, figures: &mut RunFigures) {
        let container = removed_container(&seen.target);
        let Some(game) = self.timeline().owners.get(container).cloned() else {
            self.violation(
                "(none)",
                &format!(
                    "a run removed a container the soak never made: {}",
                    seen.line
                ),
            );
            return;
        };
        let (Some(reached), Some(done)) = (seen.forwarded, seen.settled) else {
            return;
        };
        let removed = seen
            .status
            .is_some_and(|status| (200..300).contains(&status));
        figures.containers_removed += usize::from(removed);
        if seen.status == Some(404) {
            return;
        }
        let what = format!(
            "a removal of {game}'s container {container} (answered {:?})",
            seen.status
        );
        let mut found = Vec::new();
        let timeline = self.timeline();
        if let Some(hold) = timeline.holds.iter().find(|hold| {
            hold.game == game && hold.from < done && hold.to.is_none_or(|to| to > reached)
        }) {
            found.push(format!(
                "{what} reached the daemon while the manager held the game's lease ({})",
                hold.holder
            ));
        }
        let before = timeline
            .writes
            .iter()
            .rev()
            .find(|write| write.game == game && write.at < reached);
        if let Some(write) = before.filter(|write| write.container == container) {
            let since_write = reached.saturating_duration_since(write.at).as_millis() as i64;
            let expired =
                write.last_op_at + RETENTION_MS <= write.at_ms + since_write + CLOCK_SLACK_MS;
            if write.status != "stopped" || !expired {
                found.push(format!(
                    "{what} reached the daemon while its record was {} since {} (retention \
                     {RETENTION})",
                    write.status,
                    rfc3339_ms(write.last_op_at)
                ));
            }
        }
        drop(timeline);
        if let Some(cover) = cover {
            figures.carried_out_later += 1;
            match cover {
                Cover::LeaseUntil(expiry, _) if done < expiry => {}
                Cover::LeaseUntil(expiry, until) => found.push(format!(
                    "{what} was carried out at +{} ms, after the run that sent it had ended \
                     without its answer and after the lease that run left expired (+{} ms, {})",
                    self.since(done),
                    self.since(expiry),
                    rfc3339_ms(until)
                )),
                Cover::NoLease => found.push(format!(
                    "{what} reached the daemon after the run that sent it had ended without its \
                     answer, and that run left no lease on the game"
                )),
            }
        }
        for what in found {
            self.violation(&game, &what);
        }
    }

    /// The log's claims ([`removal_claim_violations`]), no row for a container the soak never
    /// made, and the file's integrity.
    fn check_claims(&self, when: &str) {
        let existing = existing_on_test_daemon();
        let owners: Vec<(String, String)> = self
            .timeline()
            .owners
            .iter()
            .map(|(container, game)| (game.clone(), container.clone()))
            .collect();
        let made = owners
            .iter()
            .map(|(game, container)| (game.as_str(), container.as_str()));
        for what in removal_claim_violations(&self.state, made, &existing) {
            let game = self
                .games
                .iter()
                .find(|game| what.contains(game.as_str()))
                .map_or("(none)", String::as_str);
            self.violation(game, &format!("{when}: {what}"));
        }
        let known: HashSet<&str> = owners.iter().map(|(_, c)| c.as_str()).collect();
        for row in self.state.all_log() {
            if !row
                .container_id
                .as_deref()
                .is_some_and(|c| known.contains(c))
            {
                self.violation(
                    &row.game_id,
                    &format!("{when}: a row of another container: {row:?}"),
                );
            }
        }
        let integrity = self.state.integrity();
        if integrity != "ok" {
            self.violation(
                "(none)",
                &format!("{when}: integrity_check says {integrity}"),
            );
        }
    }
}

/// Ends a run as `ending` says, counting the signals and whether they landed on a live pass.
fn end(running: Spawned, ending: Ending, figures: &mut RunFigures) -> Run {
    match ending {
        Ending::Finish => running.wait(RUN_BOUND),
        Ending::Kill(after) => {
            std::thread::sleep(after);
            let run = running.kill();
            figures.sigkill.0 += 1;
            figures.sigkill.1 += usize::from(run.code.is_none());
            run
        }
        Ending::Term(after) => {
            std::thread::sleep(after);
            // A process that ended already is a zombie until it is waited for: the signal
            // reaches no other process.
            running.signal("TERM");
            let run = running.wait(RUN_BOUND);
            figures.sigterm.0 += 1;
            figures.sigterm.1 += usize::from(run.code == Some(143));
            figures.sigterm_before_handler += usize::from(run.code.is_none());
            run
        }
        Ending::TermTwice(after, then) => {
            std::thread::sleep(after);
            running.signal("TERM");
            running.wait_for_stderr("received SIGTERM", Duration::from_secs(5));
            std::thread::sleep(then);
            running.signal("TERM");
            let run = running.wait(RUN_BOUND);
            figures.sigterm_twice.0 += 1;
            figures.sigterm_twice.1 += usize::from(run.code == Some(143));
            figures.sigterm_before_handler += usize::from(run.code.is_none());
            run
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The end of the soak
// ------------------------------------------------------------------------------------------------

impl Soak {
    /// Once nothing is in flight and every lease has expired, a clean run finishes the job:
    /// every game is `running` with its container running, or `removed` with its container gone,
    /// no other container of the soak is left, and no lease is in force.
    fn finish(&self, figures: &mut RunFigures, checker: &mut Checker) {
        assert!(
            self.proxy.wait_settled(Duration::from_secs(30)),
            "a request of the soak is still in flight 30 s after the last run"
        );
        self.check_removals(checker, figures);
        self.state.expire_own_leases();
        // Every game the manager stopped has expired by then.
        std::thread::sleep(Duration::from_millis(RETENTION_MS as u64 + 500));
        self.proxy.rescript(&[]);
        let clean = spawn_pass_with_retention(
            &self.state,
            &self.proxy.host(),
            RETENTION,
            &["--owner-label", &self.key, "--orphans", "remove"],
        )
        .wait(RUN_BOUND);
        if clean.code != Some(0) {
            self.violation(
                "(none)",
                &format!(
                    "the clean run at the end exited {:?}\nstdout:\n{}\nstderr:\n{}",
                    clean.code, clean.stdout, clean.stderr
                ),
            );
            return;
        }
        assert!(
            self.proxy.wait_settled(Duration::from_secs(30)),
            "the clean run's requests are still in flight 30 s after it ended"
        );
        self.check_removals(checker, figures);
        self.check_claims("after the clean run");
        // A lease row that expired is a free lease (the next holder takes it over): a killed run's
        // row on a game the clean run had no work for stays, and is no violation.
        let now = now_ms();
        let in_force: Vec<_> = self
            .state
            .leases()
            .into_iter()
            .filter(|(_, _, expires_at)| *expires_at > now)
            .collect();
        if !in_force.is_empty() {
            self.violation(
                "(none)",
                &format!("leases in force after the clean run: {in_force:?}"),
            );
        }
        let existing = existing_on_test_daemon();
        let owners = self.timeline().owners.clone();
        for game in &self.games {
            let record = self
                .state
                .record(game)
                .expect("the soak never deletes a record");
            let Value::Text(current) = record.container_id else {
                continue;
            };
            let fine = match record.status.as_str() {
                "running" => container_state(&current).as_deref() == Some("running"),
                "removed" => !existing.contains(&current),
                _ => false,
            };
            if !fine {
                self.violation(
                    game,
                    &format!(
                        "after the clean run {game} is {} and its container {current} is {:?}",
                        record.status,
                        container_state(&current)
                    ),
                );
            }
        }
        for (container, game) in owners.iter().filter(|(c, _)| existing.contains(*c)) {
            let current = self.state.record(game).map(|record| record.container_id);
            if current != Some(Value::Text(container.clone())) {
                self.violation(
                    game,
                    &format!("after the clean run {game}'s old container {container} is left"),
                );
            }
        }
    }

    /// The figures of the soak, in one line that `scripts/soak.sh` collects.
    fn figures_line(
        &self,
        journal: Journal,
        rng: &Rng,
        took: Duration,
        figures: &RunFigures,
    ) -> String {
        let timeline = self.timeline();
        let manager = &timeline.figures;
        let mut late: BTreeMap<String, usize> = BTreeMap::new();
        for seen in self.proxy.seen() {
            let kind = match seen.fault {
                Fault::Pass | Fault::Hold => continue,
                Fault::Delay(_) => "delay",
                Fault::AnswerLate(_) => "answer_late",
                Fault::Drop => "drop",
                Fault::Swallow => "swallow",
            };
            let class = if Match::removal().matches(&seen.method, &seen.target) {
                "removal"
            } else if Match::listing().matches(&seen.method, &seen.target) {
                "listing"
            } else {
                "inspection"
            };
            *late.entry(format!("{kind}:{class}")).or_default() += 1;
        }
        let late_total: usize = late.values().sum();
        let join = |map: &BTreeMap<String, usize>| {
            map.iter()
                .map(|(key, n)| format!("{key}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "SOAK journal={journal:?} seed={} seconds={:.0} runs={} exits=[{}] \
             sigkill={}/{} sigterm={}/{} sigterm_twice={}/{} sigterm_before_handler={} \
             late_answers={late_total} [{}] \
             unanswered_at_exit={} carried_out_later={} removed={} replayed={} \
             orphans_removed={} conflicts={} failed={} containers_removed={} kept_leases={} \
             early_expiries={} manager=[takes={} refused={} running_checks={} stops={} \
             restarts={} recreated={} leaked={}] violations={}",
            rng.seed(),
            took.as_secs_f64(),
            figures.runs,
            join(&figures.exits),
            figures.sigkill.1,
            figures.sigkill.0,
            figures.sigterm.1,
            figures.sigterm.0,
            figures.sigterm_twice.1,
            figures.sigterm_twice.0,
            figures.sigterm_before_handler,
            join(&late),
            figures.unanswered_at_exit,
            figures.carried_out_later,
            figures.removed,
            figures.replayed,
            figures.orphans_removed,
            figures.conflicts,
            figures.failed,
            figures.containers_removed,
            figures.kept_leases,
            figures.early_expiries,
            manager.takes,
            manager.refused,
            manager.running_checks,
            manager.stops,
            manager.restarts,
            manager.recreated,
            manager.leaked,
            timeline.violations.len(),
        )
    }
}

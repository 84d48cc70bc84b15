//! The lease protocol's statements, shared with the runtime manager: a claim takes the game's
//! lease and re-reads its record under it; a settlement writes the job's result, appends its
//! `operation_log` row and releases the lease.
//!
//! Each function runs inside a transaction (a savepoint) that the writer opened, and takes `now`
//! as an argument so that the tests can drive time. Statements are prepared once per connection
//! (`prepare_cached`): a backlog runs each of them once per record, and preparing one costs about
//! as much as running it.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{field, live_lease, Exact};
use crate::job::{CurrentRecord, Guard, JobKind};
use crate::outcome::{lease_conflict, ErrorCode, LiveLease, Outcome};
use crate::value::FieldValue;

/// The one rule that says whether a lease row is free at the time bound to `$now` (a
/// placeholder such as `"?4"`): the condition under which a claim takes a lease over, and, by
/// the same text, what a dry run counts as a lease in force. The comparison is SQLite's own: a
/// REAL `expires_at` compares as a number; a NULL one makes it unknown, and a TEXT or BLOB one
/// sorts after every number, so none of those is ever free: only its holder can delete it.
macro_rules! lease_is_free {
    ($now:literal) => {
        concat!("game_leases.expires_at <= ", $now)
    };
}
pub(super) use lease_is_free;

/// A request to take a game's lease and re-read its record under it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The game, exactly as stored.
    pub game: FieldValue,
    /// This run's holder name.
    pub holder: String,
    /// How long the lease lasts from the moment it is taken.
    pub lease_ttl: Duration,
    /// What the record must still say under the lease.
    pub guard: Guard,
}

/// The answer to a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// The lease is ours until `expires_at` (epoch milliseconds), and the guard holds.
    Claimed {
        /// When the lease expires unless it is released first.
        expires_at: i64,
    },
    /// Someone else holds the lease.
    HeldBy(LiveLease),
    /// The guard does not hold (the record changed, or claims the container); the lease was
    /// given back at once.
    Changed(String),
}

/// A job's result to be written: the record's transition where the container is gone, the log
/// row, and the release of the lease.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The game, exactly as stored.
    pub game: FieldValue,
    /// Record or orphan.
    pub kind: JobKind,
    /// What was checked under the lease; a record job moves its record only if it still holds.
    pub guard: Guard,
    /// `operation_log.container_id`.
    pub logged_container: Option<String>,
    /// The holder whose lease is released, if the lease was taken.
    pub holder: Option<String>,
    /// The result.
    pub outcome: Outcome,
    /// When work on the job began, epoch milliseconds.
    pub started_at_ms: i64,
}

/// A job that needs no Docker call between its claim and its settlement (a record without a
/// container, or an unusable row): both are applied in one savepoint, so that such jobs need no
/// slot and a backlog of them is written 64 to a transaction.
#[derive(Debug, Clone)]
pub struct ClaimAndSettle {
    /// The lease to take and what the record must still say under it.
    pub claim: Claim,
    /// Record or orphan.
    pub kind: JobKind,
    /// `operation_log.container_id`.
    pub logged_container: Option<String>,
    /// The result where the claim holds; a lease held by someone else or a changed record makes
    /// it a `conflict` instead.
    pub outcome: Outcome,
    /// When work on the job began, epoch milliseconds.
    pub started_at_ms: i64,
}

/// Applies a [`ClaimAndSettle`]: the claim, then the settlement with the job's result where the
/// claim holds, or with a `conflict` (and no lease of ours to release) where it does not.
/// Returns the outcome as written.
pub(super) fn apply_claim_and_settle(
    connection: &Connection,
    op_source: &str,
    request: &ClaimAndSettle,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let claim = &request.claim;
    let (holder, outcome) = match apply_claim(connection, claim, now_ms)? {
        ClaimResult::Claimed { .. } => (Some(claim.holder.as_str()), request.outcome.clone()),
        ClaimResult::HeldBy(lease) => (None, lease_conflict(&lease)),
        ClaimResult::Changed(change) => (None, Outcome::conflict(change)),
    };
    let entry = Entry {
        game: &claim.game,
        kind: request.kind,
        guard: &claim.guard,
        logged_container: request.logged_container.as_deref(),
        started_at_ms: request.started_at_ms,
    };
    write_result(connection, op_source, &entry, holder, outcome, now_ms)
}

/// Takes the game's lease where it is free (one statement: insert, or take over only an
/// expired lease), then re-reads the record under it and checks the guard.
pub(super) fn apply_claim(
    connection: &Connection,
    claim: &Claim,
    now_ms: i64,
) -> rusqlite::Result<ClaimResult> {
    // A TTL too long for i64 milliseconds saturates instead of wrapping into the past.
    let ttl_ms = i64::try_from(claim.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now_ms.saturating_add(ttl_ms);
    let taken = connection
        .prepare_cached(concat!(
            "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (game_id) DO UPDATE \
               SET holder = excluded.holder, expires_at = excluded.expires_at \
               WHERE ",
            lease_is_free!("?4")
        ))?
        .execute(params![
            Exact(&claim.game),
            claim.holder,
            expires_at,
            now_ms
        ])?;
    if taken == 0 {
        let lease = connection
            .prepare_cached("SELECT holder, expires_at FROM game_leases WHERE game_id = ?1")?
            .query_row([Exact(&claim.game)], |row| {
                Ok(live_lease(row.get_ref(0)?, row.get_ref(1)?))
            })?;
        return Ok(ClaimResult::HeldBy(lease));
    }
    let current = read_record(connection, &claim.game)?;
    match claim.guard.check(current.as_ref()) {
        Ok(()) => Ok(ClaimResult::Claimed { expires_at }),
        Err(change) => {
            release(connection, &claim.game, &claim.holder)?;
            Ok(ClaimResult::Changed(change))
        }
    }
}

/// The record of a game as it is now, if it has one.
pub(super) fn read_record(
    connection: &Connection,
    game: &FieldValue,
) -> rusqlite::Result<Option<CurrentRecord>> {
    connection
        .prepare_cached(
            "SELECT status, container_id, last_op_at FROM runtime_records WHERE game_id = ?1",
        )?
        .query_row([Exact(game)], |row| {
            Ok(CurrentRecord {
                status: field(row.get_ref(0)?),
                container_id: field(row.get_ref(1)?),
                last_op_at: field(row.get_ref(2)?),
            })
        })
        .optional()
}

/// Writes a job's result. A record job whose container is gone moves its record to `removed`
/// only where the record is still the selected row and the lease is still this holder's (a
/// compare-and-set); where it moves nothing, the result becomes a `conflict` and the record is
/// left for the next run to replay. Then one `operation_log` row (none for a deferral), then
/// the release of the lease, unless the result keeps it (a removal that may still be carried
/// out).
pub(super) fn apply_settlement(
    connection: &Connection,
    op_source: &str,
    settlement: &Settlement,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let entry = Entry {
        game: &settlement.game,
        kind: settlement.kind,
        guard: &settlement.guard,
        logged_container: settlement.logged_container.as_deref(),
        started_at_ms: settlement.started_at_ms,
    };
    let holder = settlement.holder.as_deref();
    write_result(
        connection,
        op_source,
        &entry,
        holder,
        settlement.outcome.clone(),
        now_ms,
    )
}

/// What a job's result is written about, borrowed from its request: requests are kept until
/// their transaction commits, since a failed one makes the writer apply its batch again.
struct Entry<'a> {
    game: &'a FieldValue,
    kind: JobKind,
    guard: &'a Guard,
    logged_container: Option<&'a str>,
    started_at_ms: i64,
}

/// The settlement's statements (see [`apply_settlement`]); `holder` is the lease to use and
/// release, if the job took one.
fn write_result(
    connection: &Connection,
    op_source: &str,
    entry: &Entry<'_>,
    holder: Option<&str>,
    mut outcome: Outcome,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    if entry.kind == JobKind::Record && outcome.moves_record() {
        outcome = compare_and_set(connection, entry.game, entry.guard, holder, now_ms)?
            .unwrap_or(outcome);
    }
    if let Some(log_outcome) = outcome.log_outcome() {
        connection
            .prepare_cached(
                "INSERT INTO operation_log (game_id, op_kind, op_source, outcome, error_code, \
                   error_message, container_id, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                Exact(entry.game),
                entry.kind.op_kind(),
                op_source,
                log_outcome,
                outcome.error_code.map(ErrorCode::as_str),
                outcome.error_message,
                entry.logged_container,
                entry.started_at_ms,
                now_ms,
            ])?;
    }
    match holder {
        Some(holder) if outcome.lease_kept_until.is_none() => {
            release(connection, entry.game, holder)?;
        }
        _ => {}
    }
    Ok(outcome)
}

/// Moves the record to `removed`; `Some(conflict)` where that moved nothing.
fn compare_and_set(
    connection: &Connection,
    game: &FieldValue,
    guard: &Guard,
    holder: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Option<Outcome>> {
    let (
        Guard::Record {
            container_id,
            last_op_at,
            ..
        },
        Some(holder),
    ) = (guard, holder)
    else {
        return Ok(Some(Outcome::conflict(
            "the record was not re-read under a lease of this run; it was left as it is",
        )));
    };
    let moved = connection
        .prepare_cached(
            "UPDATE runtime_records SET status = 'removed', last_op_at = ?1 \
             WHERE game_id = ?2 AND status = 'stopped' \
               AND last_op_at IS ?3 AND container_id IS ?4 \
               AND EXISTS (SELECT 1 FROM game_leases \
                            WHERE game_id = ?2 AND holder = ?5 AND expires_at > ?1)",
        )?
        .execute(params![
            now_ms,
            Exact(game),
            Exact(last_op_at),
            Exact(container_id),
            holder
        ])?;
    if moved > 0 {
        return Ok(None);
    }
    let ours: bool = connection
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM game_leases \
                             WHERE game_id = ?1 AND holder = ?2 AND expires_at > ?3)",
        )?
        .query_row(params![Exact(game), holder, now_ms], |row| row.get(0))?;
    Ok(Some(Outcome::conflict(if ours {
        "the record changed while its container was being handled; it was left as it is"
    } else {
        "this run's lease on the game expired while its container was being handled; the record \
         was left as it is and the next run replays it"
    })))
}

/// Releases this holder's lease on a game; another holder's lease is never deleted.
pub(super) fn release(
    connection: &Connection,
    game: &FieldValue,
    holder: &str,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached("DELETE FROM game_leases WHERE game_id = ?1 AND holder = ?2")?
        .execute(params![Exact(game), holder])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{insert, leases, log, memory, record};
    use super::*;
    use crate::value::Text;

    const NOW: i64 = 1_800_000_000_000;
    const TTL: Duration = Duration::from_secs(300);
    const US: &str = "rt-cleanup/test/1";

    fn game(name: &str) -> FieldValue {
        FieldValue::text(name)
    }

    fn stopped(connection: &Connection, name: &str, container: &str, last_op_at: i64) {
        insert(
            connection,
            &game(name),
            &FieldValue::text(container),
            "stopped",
            &FieldValue::Integer(last_op_at),
        );
    }

    fn record_guard(container: &str, last_op_at: i64) -> Guard {
        Guard::Record {
            container_id: FieldValue::text(container),
            last_op_at: FieldValue::Integer(last_op_at),
            threshold_ms: NOW - 1_000,
        }
    }

    fn claim(name: &str, guard: Guard) -> Claim {
        Claim {
            game: game(name),
            holder: US.to_owned(),
            lease_ttl: TTL,
            guard,
        }
    }

    /// Settles game `g`'s removal of container `c1` (its record at `last_op_at` 100), by us, at
    /// `now`.
    fn settle_removal(connection: &Connection, now: i64) -> Outcome {
        apply_settlement(
            connection,
            "auto_ttl",
            &settlement("g", record_guard("c1", 100), Outcome::removed(), Some(US)),
            now,
        )
        .unwrap()
    }

    fn settlement(name: &str, guard: Guard, outcome: Outcome, holder: Option<&str>) -> Settlement {
        Settlement {
            game: game(name),
            kind: JobKind::Record,
            guard,
            logged_container: Some("c1".to_owned()),
            holder: holder.map(str::to_owned),
            outcome,
            started_at_ms: NOW - 5,
        }
    }

    fn lease(connection: &Connection, name: &str, holder: &str, expires_at: i64) {
        connection
            .execute(
                "INSERT INTO game_leases (game_id, holder, expires_at) VALUES (?1, ?2, ?3)",
                params![name, holder, expires_at],
            )
            .unwrap();
    }

    /// A claimed game, as the worker has it before its Docker call.
    fn claimed(connection: &Connection, name: &str) {
        stopped(connection, name, "c1", 100);
        let result = apply_claim(connection, &claim(name, record_guard("c1", 100)), NOW).unwrap();
        assert!(matches!(result, ClaimResult::Claimed { .. }), "{result:?}");
    }

    #[test]
    fn a_claim_takes_a_free_lease_for_the_ttl() {
        let connection = memory();
        claimed(&connection, "g");
        assert_eq!(
            leases(&connection),
            [(game("g"), US.to_owned(), NOW + 300_000)]
        );
    }

    #[test]
    fn a_claim_leaves_a_live_lease_of_another_holder_alone() {
        let connection = memory();
        stopped(&connection, "g", "c1", 100);
        lease(&connection, "g", "rtmanager", NOW + 1);
        let result = apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap();
        assert_eq!(
            result,
            ClaimResult::HeldBy(LiveLease {
                holder: "\"rtmanager\"".into(),
                expires_at: NOW + 1
            })
        );
        assert_eq!(
            leases(&connection),
            [(game("g"), "rtmanager".to_owned(), NOW + 1)]
        );
    }

    /// A state file whose `game_leases` declares no `NOT NULL`, as only column names are
    /// checked: any value can be stored in a lease row.
    fn with_loose_leases() -> Connection {
        let connection = memory();
        connection
            .execute_batch(
                "DROP TABLE game_leases;
                 CREATE TABLE game_leases (game_id TEXT PRIMARY KEY, holder TEXT, expires_at);",
            )
            .unwrap();
        connection
    }

    #[test]
    fn the_dry_runs_live_leases_are_exactly_those_a_claim_does_not_take_over() {
        let cases: [(FieldValue, FieldValue, bool); 10] = [
            (FieldValue::Null, FieldValue::text("rtmanager"), true),
            (
                FieldValue::text("soon"),
                FieldValue::text("rtmanager"),
                true,
            ),
            (
                FieldValue::Blob(vec![1]),
                FieldValue::text("rtmanager"),
                true,
            ),
            (
                FieldValue::Real(NOW as f64 + 0.5),
                FieldValue::text("rtmanager"),
                true,
            ),
            (
                FieldValue::Real(NOW as f64 - 0.5),
                FieldValue::text("rtmanager"),
                false,
            ),
            (
                FieldValue::Integer(NOW),
                FieldValue::text("rtmanager"),
                false,
            ),
            (
                FieldValue::Integer(NOW + 1),
                FieldValue::text("rtmanager"),
                true,
            ),
            (FieldValue::Integer(NOW + 1), FieldValue::Null, true),
            (FieldValue::Null, FieldValue::Null, true),
            (FieldValue::Integer(NOW - 1), FieldValue::Null, false),
        ];
        for (expires_at, holder, live) in cases {
            let connection = with_loose_leases();
            stopped(&connection, "g", "c1", 100);
            connection
                .execute(
                    "INSERT INTO game_leases VALUES ('g', ?1, ?2)",
                    params![Exact(&holder), Exact(&expires_at)],
                )
                .unwrap();
            let in_force: Vec<String> = connection
                .prepare(super::super::read::SELECT_LIVE_LEASES)
                .unwrap()
                .query_map([NOW], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let claimed =
                apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap();
            let case = format!("expires_at {expires_at:?}, holder {holder:?}");
            assert_eq!(in_force.len() == 1, live, "dry run: {case}");
            assert_eq!(
                matches!(claimed, ClaimResult::HeldBy(_)),
                live,
                "claim: {case}: {claimed:?}"
            );
        }
    }

    #[test]
    fn a_lease_that_never_expires_or_has_an_odd_holder_is_shown_escaped() {
        let connection = with_loose_leases();
        stopped(&connection, "g", "c1", 100);
        connection
            .execute(
                "INSERT INTO game_leases VALUES ('g', 'evil\nERROR forged', NULL)",
                [],
            )
            .unwrap();
        let ClaimResult::HeldBy(lease) =
            apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap()
        else {
            panic!("the lease is in force");
        };
        let message = lease_conflict(&lease).error_message.unwrap().into_owned();
        assert_eq!(
            message,
            "the game is leased by \"evil\\nERROR forged\" with an expires_at that is not a \
             time, so it never expires; only its holder can release it"
        );
        connection
            .execute("UPDATE game_leases SET holder = NULL", [])
            .unwrap();
        let ClaimResult::HeldBy(lease) =
            apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap()
        else {
            panic!("the lease is in force");
        };
        assert_eq!(lease.holder, "NULL");
    }

    #[test]
    fn a_claim_takes_over_a_lease_that_expired_now_or_before() {
        for expired_at in [NOW, NOW - 60_000] {
            let connection = memory();
            stopped(&connection, "g", "c1", 100);
            lease(&connection, "g", "rtmanager", expired_at);
            let result =
                apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap();
            assert!(
                matches!(result, ClaimResult::Claimed { .. }),
                "expired at {expired_at}: {result:?}"
            );
            assert_eq!(leases(&connection)[0].1, US);
        }
    }

    #[test]
    fn a_claim_on_a_changed_record_gives_the_lease_back() {
        let connection = memory();
        stopped(&connection, "g", "c1", 101);
        let result = apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap();
        let ClaimResult::Changed(change) = result else {
            panic!("{result:?}")
        };
        assert!(change.contains("changed since it was selected"), "{change}");
        assert!(leases(&connection).is_empty(), "the lease is given back");
    }

    #[test]
    fn a_claim_on_a_deleted_record_gives_the_lease_back() {
        let connection = memory();
        let result = apply_claim(&connection, &claim("g", record_guard("c1", 100)), NOW).unwrap();
        assert!(matches!(result, ClaimResult::Changed(ref m) if m.contains("deleted")));
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn a_claim_and_its_settlement_use_the_game_id_byte_for_byte() {
        let connection = memory();
        let odd = FieldValue::Text(Text::from_bytes(b"g-\xff".to_vec()));
        insert(
            &connection,
            &odd,
            &FieldValue::Null,
            "stopped",
            &FieldValue::Integer(100),
        );
        let guard = Guard::Record {
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Integer(100),
            threshold_ms: NOW,
        };
        let claim = Claim {
            game: odd.clone(),
            ..claim("ignored", guard.clone())
        };
        assert_eq!(
            apply_claim(&connection, &claim, NOW).unwrap(),
            ClaimResult::Claimed {
                expires_at: NOW + 300_000
            }
        );
        assert_eq!(
            leases(&connection)[0].0,
            odd,
            "the lease is under the stored key"
        );
        let settlement = Settlement {
            game: odd.clone(),
            ..settlement(
                "ignored",
                guard,
                Outcome::replay_no_op("no container"),
                Some(US),
            )
        };
        let outcome = apply_settlement(&connection, "auto_ttl", &settlement, NOW + 1).unwrap();
        assert_eq!(outcome.result, crate::outcome::ResultKind::ReplayNoOp);
        assert_eq!(
            record(&connection, &odd).unwrap().0,
            FieldValue::text("removed")
        );
        assert_eq!(log(&connection)[0].0, odd);
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn a_result_that_keeps_its_lease_is_logged_and_leaves_the_lease() {
        let connection = memory();
        claimed(&connection, "g");
        let unanswered = Outcome::failed(ErrorCode::DockerError, "no answer; may still happen")
            .keeping_lease(NOW + 300_000);
        let outcome = apply_settlement(
            &connection,
            "auto_ttl",
            &settlement("g", record_guard("c1", 100), unanswered.clone(), Some(US)),
            NOW + 7,
        )
        .unwrap();
        assert_eq!(outcome, unanswered);
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
        assert_eq!(log(&connection).len(), 1);
        assert_eq!(
            leases(&connection),
            [(game("g"), US.to_owned(), NOW + 300_000)],
            "the lease stays until it expires"
        );
    }

    #[test]
    fn a_removal_moves_the_record_logs_success_and_releases() {
        let connection = memory();
        claimed(&connection, "g");
        let outcome = settle_removal(&connection, NOW + 7);
        assert_eq!(outcome, Outcome::removed());
        let (status, container, last_op_at) = record(&connection, &game("g")).unwrap();
        assert_eq!(status, FieldValue::text("removed"));
        assert_eq!(container, FieldValue::text("c1"), "container_id is kept");
        assert_eq!(
            last_op_at,
            FieldValue::Integer(NOW + 7),
            "the transition's now"
        );
        assert_eq!(
            log(&connection),
            [(
                game("g"),
                "cleanup_container".to_owned(),
                "success".to_owned(),
                None,
                Some("c1".to_owned())
            )]
        );
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn a_failure_leaves_the_record_and_logs_its_code() {
        let connection = memory();
        claimed(&connection, "g");
        let failed = Outcome::failed(ErrorCode::ContainerRunning, "it runs");
        let outcome = apply_settlement(
            &connection,
            "nightly",
            &settlement("g", record_guard("c1", 100), failed.clone(), Some(US)),
            NOW,
        )
        .unwrap();
        assert_eq!(outcome, failed);
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
        let rows = log(&connection);
        assert_eq!(rows[0].2, "failure");
        assert_eq!(rows[0].3.as_deref(), Some("container_running"));
        let source: String = connection
            .query_row("SELECT op_source FROM operation_log", [], |row| row.get(0))
            .unwrap();
        assert_eq!(source, "nightly");
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn the_compare_and_set_that_moves_nothing_is_a_conflict() {
        let connection = memory();
        claimed(&connection, "g");
        // A manager that ignores the lease restarts the game while its container is handled.
        connection
            .execute(
                "UPDATE runtime_records SET status = 'running', last_op_at = 200",
                [],
            )
            .unwrap();
        let outcome = settle_removal(&connection, NOW);
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert!(outcome.error_message.unwrap().contains("record changed"));
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("running")
        );
        assert_eq!(log(&connection)[0].3.as_deref(), Some("conflict"));
    }

    /// Claims game `g` (container `c1`, `last_op_at` 100), lets a manager that ignores the lease
    /// run `change` on its record while the container is handled, then settles the removal.
    /// Checks what each of the compare-and-set's conditions must give on its own: a `conflict`
    /// that says the record changed, the record exactly as the change left it, one `conflict`
    /// row, and the lease, still this run's, released.
    fn settle_after_one_change(change: &str, changed: (FieldValue, FieldValue, FieldValue)) {
        let connection = memory();
        claimed(&connection, "g");
        assert_eq!(connection.execute(change, []).unwrap(), 1, "{change}");
        assert_eq!(
            leases(&connection)[0].1,
            US,
            "the lease is still ours: only the record's condition can refuse the move"
        );
        let outcome = settle_removal(&connection, NOW + 7);
        assert_eq!(
            outcome,
            Outcome::conflict(
                "the record changed while its container was being handled; it was left as it is"
            ),
            "{change}"
        );
        assert_eq!(
            record(&connection, &game("g")),
            Some(changed),
            "{change}: not moved to removed"
        );
        assert_eq!(
            log(&connection),
            [(
                game("g"),
                "cleanup_container".to_owned(),
                "success".to_owned(),
                Some("conflict".to_owned()),
                Some("c1".to_owned())
            )],
            "{change}"
        );
        assert!(leases(&connection).is_empty(), "{change}: released");
    }

    #[test]
    fn the_compare_and_set_needs_the_status_still_stopped() {
        settle_after_one_change(
            "UPDATE runtime_records SET status = 'running'",
            (
                FieldValue::text("running"),
                FieldValue::text("c1"),
                FieldValue::Integer(100),
            ),
        );
    }

    #[test]
    fn the_compare_and_set_needs_the_last_op_at_as_selected() {
        // Still stopped and still expired: only the time of the manager's operation differs.
        settle_after_one_change(
            "UPDATE runtime_records SET last_op_at = 101",
            (
                FieldValue::text("stopped"),
                FieldValue::text("c1"),
                FieldValue::Integer(101),
            ),
        );
    }

    #[test]
    fn the_compare_and_set_needs_the_container_id_as_selected() {
        for (container, shown) in [("'c2'", FieldValue::text("c2")), ("NULL", FieldValue::Null)] {
            settle_after_one_change(
                &format!("UPDATE runtime_records SET container_id = {container}"),
                (FieldValue::text("stopped"), shown, FieldValue::Integer(100)),
            );
        }
    }

    #[test]
    fn the_compare_and_set_moves_its_own_game_only() {
        let connection = memory();
        claimed(&connection, "g");
        // Another game stopped at the same millisecond in a record naming the same container,
        // under a lease of this run's too: only the game's own key tells them apart.
        stopped(&connection, "h", "c1", 100);
        lease(&connection, "h", US, NOW + 300_000);
        assert_eq!(settle_removal(&connection, NOW + 7), Outcome::removed());
        assert_eq!(
            record(&connection, &game("h")).unwrap(),
            (
                FieldValue::text("stopped"),
                FieldValue::text("c1"),
                FieldValue::Integer(100)
            )
        );
    }

    #[test]
    fn the_compare_and_set_needs_the_lease_on_its_own_game() {
        let connection = memory();
        claimed(&connection, "g");
        // The manager took g over, while this run still holds a lease on another game.
        connection
            .execute(
                "UPDATE game_leases SET holder = 'rtmanager' WHERE game_id = 'g'",
                [],
            )
            .unwrap();
        lease(&connection, "h", US, NOW + 300_000);
        let outcome = settle_removal(&connection, NOW + 7);
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert!(outcome.error_message.unwrap().contains("lease"), "says why");
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
    }

    #[test]
    fn the_compare_and_set_needs_the_lease_to_be_still_ours() {
        let connection = memory();
        claimed(&connection, "g");
        // Our lease expired and the manager took the game over.
        connection
            .execute(
                "UPDATE game_leases SET holder = 'rtmanager', expires_at = ?1",
                [NOW + 9],
            )
            .unwrap();
        let outcome = settle_removal(&connection, NOW);
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert!(outcome.error_message.unwrap().contains("lease"), "says why");
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
        assert_eq!(
            leases(&connection),
            [(game("g"), "rtmanager".to_owned(), NOW + 9)],
            "the other holder's lease is not released"
        );
    }

    #[test]
    fn an_expired_lease_of_ours_does_not_move_the_record_either() {
        let connection = memory();
        claimed(&connection, "g");
        let outcome = settle_removal(&connection, NOW + 300_000);
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
    }

    #[test]
    fn a_conflict_without_our_lease_releases_nobody_elses() {
        let connection = memory();
        stopped(&connection, "g", "c1", 100);
        lease(&connection, "g", "rtmanager", NOW + 1);
        let conflict = Outcome::conflict("held");
        apply_settlement(
            &connection,
            "auto_ttl",
            &settlement("g", record_guard("c1", 100), conflict, None),
            NOW,
        )
        .unwrap();
        assert_eq!(leases(&connection).len(), 1);
        assert_eq!(
            log(&connection)[0].2,
            "success",
            "a conflict is logged as success"
        );
    }

    /// A record without a container, claimed and settled in one request.
    fn without_container(name: &str, last_op_at: i64, outcome: Outcome) -> ClaimAndSettle {
        let guard = Guard::Record {
            container_id: FieldValue::Null,
            last_op_at: FieldValue::Integer(last_op_at),
            threshold_ms: NOW - 1_000,
        };
        ClaimAndSettle {
            claim: claim(name, guard),
            kind: JobKind::Record,
            logged_container: None,
            outcome,
            started_at_ms: NOW - 5,
        }
    }

    fn stopped_without_container(connection: &Connection, name: &str, last_op_at: i64) {
        insert(
            connection,
            &game(name),
            &FieldValue::Null,
            "stopped",
            &FieldValue::Integer(last_op_at),
        );
    }

    #[test]
    fn a_claim_and_settle_that_claims_moves_logs_and_releases_at_once() {
        let connection = memory();
        stopped_without_container(&connection, "g", 100);
        let request = without_container("g", 100, Outcome::replay_no_op("no container"));
        let outcome = apply_claim_and_settle(&connection, "auto_ttl", &request, NOW).unwrap();
        assert_eq!(outcome.result, crate::outcome::ResultKind::ReplayNoOp);
        let (status, _, last_op_at) = record(&connection, &game("g")).unwrap();
        assert_eq!(status, FieldValue::text("removed"));
        assert_eq!(last_op_at, FieldValue::Integer(NOW));
        assert_eq!(
            log(&connection),
            [(
                game("g"),
                "cleanup_container".to_owned(),
                "success".to_owned(),
                Some("replay_no_op".to_owned()),
                None
            )]
        );
        assert!(leases(&connection).is_empty(), "the lease is released");
    }

    #[test]
    fn a_claim_and_settle_of_an_invalid_row_logs_its_failure_and_releases() {
        let connection = memory();
        stopped_without_container(&connection, "g", 100);
        let failed = Outcome::failed(ErrorCode::InvalidRecord, "unusable");
        let request = without_container("g", 100, failed.clone());
        let outcome = apply_claim_and_settle(&connection, "auto_ttl", &request, NOW).unwrap();
        assert_eq!(outcome, failed);
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
        assert_eq!(log(&connection)[0].3.as_deref(), Some("invalid_record"));
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn a_claim_and_settle_of_a_held_game_logs_a_conflict_and_leaves_the_lease() {
        let connection = memory();
        stopped_without_container(&connection, "g", 100);
        lease(&connection, "g", "rtmanager", NOW + 1);
        let request = without_container("g", 100, Outcome::replay_no_op("no container"));
        let outcome = apply_claim_and_settle(&connection, "auto_ttl", &request, NOW).unwrap();
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert!(outcome.error_message.unwrap().contains("rtmanager"));
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
        assert_eq!(log(&connection)[0].3.as_deref(), Some("conflict"));
        assert_eq!(
            leases(&connection),
            [(game("g"), "rtmanager".to_owned(), NOW + 1)],
            "the other holder's lease is untouched"
        );
    }

    #[test]
    fn a_claim_and_settle_of_a_changed_record_logs_a_conflict_and_gives_the_lease_back() {
        let connection = memory();
        stopped_without_container(&connection, "g", 101);
        let request = without_container("g", 100, Outcome::replay_no_op("no container"));
        let outcome = apply_claim_and_settle(&connection, "auto_ttl", &request, NOW).unwrap();
        assert_eq!(outcome.result, crate::outcome::ResultKind::Conflict);
        assert!(outcome
            .error_message
            .unwrap()
            .contains("changed since it was selected"));
        assert_eq!(
            record(&connection, &game("g")).unwrap(),
            (
                FieldValue::text("stopped"),
                FieldValue::Null,
                FieldValue::Integer(101)
            )
        );
        assert_eq!(log(&connection)[0].3.as_deref(), Some("conflict"));
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn a_deferral_writes_no_log_row() {
        let connection = memory();
        claimed(&connection, "g");
        apply_settlement(
            &connection,
            "auto_ttl",
            &settlement(
                "g",
                record_guard("c1", 100),
                Outcome::deferred("later"),
                Some(US),
            ),
            NOW,
        )
        .unwrap();
        assert!(log(&connection).is_empty());
        assert_eq!(
            record(&connection, &game("g")).unwrap().0,
            FieldValue::text("stopped")
        );
    }

    #[test]
    fn an_orphan_removal_never_changes_a_record() {
        let connection = memory();
        insert(
            &connection,
            &game("g"),
            &FieldValue::text("other"),
            "stopped",
            &FieldValue::Integer(100),
        );
        let guard = Guard::Unclaimed {
            id: "0123456789ab".into(),
            names: vec!["leaked".into()],
        };
        let claim = Claim {
            guard: guard.clone(),
            ..claim("g", record_guard("-", 0))
        };
        assert_eq!(
            apply_claim(&connection, &claim, NOW).unwrap(),
            ClaimResult::Claimed {
                expires_at: NOW + 300_000
            }
        );
        let settlement = Settlement {
            kind: JobKind::Orphan,
            logged_container: Some("0123456789ab".into()),
            ..settlement("g", guard, Outcome::removed(), Some(US))
        };
        assert_eq!(
            apply_settlement(&connection, "auto_ttl", &settlement, NOW).unwrap(),
            Outcome::removed()
        );
        assert_eq!(
            record(&connection, &game("g")).unwrap(),
            (
                FieldValue::text("stopped"),
                FieldValue::text("other"),
                FieldValue::Integer(100)
            )
        );
        let rows = log(&connection);
        assert_eq!(rows[0].1, "cleanup_orphan");
        assert_eq!(rows[0].4.as_deref(), Some("0123456789ab"));
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn an_orphan_claimed_by_its_record_meanwhile_is_a_conflict() {
        let connection = memory();
        insert(
            &connection,
            &game("g"),
            &FieldValue::text("leaked"),
            "creating",
            &FieldValue::Integer(100),
        );
        let claim = Claim {
            guard: Guard::Unclaimed {
                id: "0123456789ab".into(),
                names: vec!["leaked".into()],
            },
            ..claim("g", record_guard("-", 0))
        };
        let result = apply_claim(&connection, &claim, NOW).unwrap();
        assert!(matches!(result, ClaimResult::Changed(ref m) if m.contains("claims")));
        assert!(leases(&connection).is_empty());
    }

    #[test]
    fn columns_the_tool_does_not_know_are_kept() {
        let connection = memory();
        connection
            .execute_batch("ALTER TABLE runtime_records ADD COLUMN note TEXT DEFAULT 'mine'")
            .unwrap();
        claimed(&connection, "g");
        settle_removal(&connection, NOW);
        let note: String = connection
            .query_row("SELECT note FROM runtime_records", [], |row| row.get(0))
            .unwrap();
        assert_eq!(note, "mine");
    }
}

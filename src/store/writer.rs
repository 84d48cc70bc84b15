//! The state-file writer of a real run: one thread that owns the connection and applies lease
//! claims and results in grouped transactions (one transaction for up to 64 requests waiting at
//! that moment), so that a pass of hundreds of records needs far fewer commits than records. A
//! record without Docker work is claimed and settled by one request, so that a backlog of them
//! is written 64 records to a commit.
//!
//! Its waits for a lock held by someone else last `--lock-wait`. A signal ends them as it ends
//! the pass's other waits: the first one ends a wait for work not yet begun (lease claims, and
//! records without Docker work), a second one, after its grace, also a wait for the result of a
//! container already handled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use std::collections::HashMap;

use super::open::wait_out_locks;
use super::protocol::{
    apply_claim, apply_claim_and_settle, apply_settlement, release, Claim, ClaimAndSettle,
    ClaimResult, Settlement,
};
use super::read::records_of;
use super::{Store, StoreError};
use crate::job::CurrentRecord;
use crate::outcome::Outcome;
use crate::time::now_ms;
use crate::value::FieldValue;

/// The most requests applied in one transaction.
const MAX_BATCH: usize = 64;

/// The records of some games, by game.
type Records = HashMap<FieldValue, CurrentRecord>;

enum Request {
    Claim(Claim),
    Settle(Settlement),
    ClaimAndSettle(ClaimAndSettle),
    Read(Vec<FieldValue>),
    /// The release of a holder's lease on a game, without a result.
    Release(FieldValue, String),
}

impl Request {
    /// Whether it finishes a job whose container was handled: its lock wait then lasts until a
    /// second signal, not only the first.
    fn finishes_a_job(&self) -> bool {
        matches!(self, Request::Settle(_) | Request::Release(..))
    }
}

enum Answer {
    Claim(ClaimResult),
    Settle(Outcome),
    Read(Records),
    Released,
}

enum Responder {
    Claim(oneshot::Sender<Result<ClaimResult, StoreError>>),
    Settle(oneshot::Sender<Result<Outcome, StoreError>>),
    Read(oneshot::Sender<Result<Records, StoreError>>),
    Release(oneshot::Sender<Result<(), StoreError>>),
}

impl Responder {
    fn send(self, answer: Result<Answer, StoreError>) {
        // A caller that stopped waiting (the pass was dropped) needs no answer.
        match (self, answer) {
            (Responder::Claim(sender), Ok(Answer::Claim(result))) => {
                let _ = sender.send(Ok(result));
            }
            (Responder::Settle(sender), Ok(Answer::Settle(outcome))) => {
                let _ = sender.send(Ok(outcome));
            }
            (Responder::Claim(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            (Responder::Settle(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            (Responder::Read(sender), Ok(Answer::Read(records))) => {
                let _ = sender.send(Ok(records));
            }
            (Responder::Read(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            (Responder::Release(sender), Ok(Answer::Released)) => {
                let _ = sender.send(Ok(()));
            }
            (Responder::Release(sender), Err(error)) => {
                let _ = sender.send(Err(error));
            }
            // Answers are made from their own request, so the kinds always match.
            (_, Ok(_)) => unreachable!("an answer of another kind than its request"),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Responder::Claim(_) => "a lease claim",
            Responder::Settle(_) => "a result",
            Responder::Read(_) => "a read of records",
            Responder::Release(_) => "the release of a lease",
        }
    }
}

/// A result queued with [`StateWriter::settle_later`], not yet known to be written.
#[derive(Debug)]
pub struct PendingSettlement(Result<oneshot::Receiver<Result<Outcome, StoreError>>, StoreError>);

impl PendingSettlement {
    /// Waits until the result is written (or failed) and returns the outcome as written.
    pub async fn written(self) -> Result<Outcome, StoreError> {
        self.0?.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The writer thread of a real run. Requests sent while a transaction is being applied are
/// grouped into the next one.
#[derive(Debug)]
pub struct StateWriter {
    jobs: Option<mpsc::UnboundedSender<(Request, Responder)>>,
    thread: Option<JoinHandle<usize>>,
}

impl Store {
    /// Hands the connection to a writer thread for the real run. Fails, with nothing changed,
    /// where the system cannot start one more thread.
    pub fn into_writer(self, op_source: String) -> Result<StateWriter, StoreError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut connection = self.connection;
        let finishing = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&self.opened.stop);
        let batch_finishes = Arc::clone(&finishing);
        wait_out_locks(&mut connection, self.opened.lock_wait, move || {
            stop.is_abandoned()
                || (stop.signalled().is_some() && !batch_finishes.load(Ordering::SeqCst))
        })
        .map_err(|source| StoreError::Write {
            operation: "the writer's lock wait",
            source: Arc::new(source),
        })?;
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(connection, &op_source, receiver, &finishing))
            .map_err(|source| StoreError::WriterStart {
                path: self.path,
                source,
            })?;
        Ok(StateWriter {
            jobs: Some(sender),
            thread: Some(thread),
        })
    }
}

impl StateWriter {
    /// Takes the game's lease where it is free, and re-reads the record under it.
    pub async fn claim(&self, claim: Claim) -> Result<ClaimResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Claim(claim), Responder::Claim(reply))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Reads the records of these games as they are now (between the writer's transactions),
    /// for the orphan pass of a real run, which runs after the records' results are written.
    pub async fn records_of(&self, games: Vec<FieldValue>) -> Result<Records, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Read(games), Responder::Read(reply))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Releases a holder's lease on a game, writing nothing else: what is left to do where the
    /// state file refuses a job's result.
    pub async fn release(&self, game: FieldValue, holder: String) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Release(game, holder), Responder::Release(reply))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues a result to be written (see [`Settlement`]). It returns at once, so that the
    /// caller can go on with Docker work while the writer commits it, grouped with whatever else
    /// is waiting; the outcome as written is read from the returned [`PendingSettlement`].
    #[must_use]
    pub fn settle_later(&self, settlement: Settlement) -> PendingSettlement {
        self.queue(Request::Settle(settlement))
    }

    /// Queues the claim and the settlement of a job that needs no Docker call, to be applied
    /// together in one savepoint (see [`ClaimAndSettle`]). It returns at once, like
    /// [`settle_later`](Self::settle_later); where the request fails, nothing of it was written.
    #[must_use]
    pub fn claim_and_settle_later(&self, request: ClaimAndSettle) -> PendingSettlement {
        self.queue(Request::ClaimAndSettle(request))
    }

    fn queue(&self, request: Request) -> PendingSettlement {
        let (reply, answer) = oneshot::channel();
        PendingSettlement(
            self.send(request, Responder::Settle(reply))
                .map(|()| answer),
        )
    }

    fn send(&self, request: Request, responder: Responder) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        jobs.send((request, responder))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Waits for every request to be written and closes the state file.
    /// Returns how many transactions it committed.
    pub fn close(mut self) -> usize {
        self.shut_down()
    }

    fn shut_down(&mut self) -> usize {
        self.jobs = None;
        // A panic of the writer has already failed every request it held (WriterGone).
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or(0)
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Applies what comes until every sender is gone; returns the number of transactions committed.
/// `finishing` tells the connection's lock waits whether the batch finishes jobs.
fn write_loop(
    mut connection: Connection,
    op_source: &str,
    mut jobs: mpsc::UnboundedReceiver<(Request, Responder)>,
    finishing: &AtomicBool,
) -> usize {
    let mut committed = 0;
    while let Some(first) = jobs.blocking_recv() {
        let mut requests = vec![first.0];
        let mut responders = vec![first.1];
        while requests.len() < MAX_BATCH {
            let Ok((request, responder)) = jobs.try_recv() else {
                break;
            };
            requests.push(request);
            responders.push(responder);
        }
        let batch = requests.len();
        finishing.store(
            requests.iter().any(Request::finishes_a_job),
            Ordering::SeqCst,
        );
        let began = std::time::Instant::now();
        match apply_batch(&mut connection, op_source, &requests) {
            Ok(answers) => {
                committed += 1;
                tracing::debug!(
                    requests = batch,
                    micros = began.elapsed().as_micros() as u64,
                    "state-file transaction committed"
                );
                for (responder, answer) in responders.into_iter().zip(answers) {
                    let operation = responder.operation();
                    responder.send(answer.map_err(|source| StoreError::Write {
                        operation,
                        source: Arc::new(source),
                    }));
                }
            }
            Err(error) => {
                tracing::warn!(requests = responders.len(), %error, "state-file transaction failed");
                let shared = Arc::new(error);
                for responder in responders {
                    let operation = responder.operation();
                    responder.send(Err(StoreError::Write {
                        operation,
                        source: Arc::clone(&shared),
                    }));
                }
            }
        }
    }
    tracing::debug!(transactions = committed, "state-file writer done");
    committed
}

/// Applies a batch in one transaction. Fails as a whole when the transaction cannot start or
/// commit; otherwise each request has its own answer, and a request that fails leaves nothing of
/// itself written and does not undo the others.
///
/// The batch is first applied as it is; only where a request fails is it rolled back and
/// applied again with a savepoint per request. A savepoint makes SQLite copy every page that a
/// request is the first in it to change (the lease table's, the log's last page, ...), which
/// cost a backlog a tenth of its time.
fn apply_batch(
    connection: &mut Connection,
    op_source: &str,
    requests: &[Request],
) -> rusqlite::Result<Vec<rusqlite::Result<Answer>>> {
    if let Some(answers) = apply_together(connection, op_source, requests)? {
        return Ok(answers.into_iter().map(Ok).collect());
    }
    apply_one_by_one(connection, op_source, requests)
}

/// Applies every request in one transaction; `None`, with the transaction rolled back, where
/// one of them fails.
fn apply_together(
    connection: &mut Connection,
    op_source: &str,
    requests: &[Request],
) -> rusqlite::Result<Option<Vec<Answer>>> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        match apply(&transaction, op_source, request) {
            Ok(answer) => answers.push(answer),
            Err(error) => {
                tracing::debug!(%error, "a request failed; applying its batch again, a savepoint each");
                // Dropping the transaction rolls it back (or finds it rolled back by SQLite).
                return Ok(None);
            }
        }
    }
    transaction.commit()?;
    Ok(Some(answers))
}

/// Applies every request in one transaction, a savepoint each, so that one failing request does
/// not undo the others.
fn apply_one_by_one(
    connection: &mut Connection,
    op_source: &str,
    requests: &[Request],
) -> rusqlite::Result<Vec<rusqlite::Result<Answer>>> {
    let mut transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let savepoint = transaction.savepoint()?;
        let answer = apply(&savepoint, op_source, request);
        if answer.is_ok() {
            savepoint.commit()?;
        } else {
            // Rolls back to the savepoint and releases it (its drop behaviour is Rollback).
            savepoint.finish()?;
        }
        answers.push(answer);
    }
    transaction.commit()?;
    Ok(answers)
}

/// Applies one request. Each request takes its own `now`: a lease's expiry counts from when it
/// is taken.
fn apply(connection: &Connection, op_source: &str, request: &Request) -> rusqlite::Result<Answer> {
    let now = now_ms();
    match request {
        Request::Claim(claim) => apply_claim(connection, claim, now).map(Answer::Claim),
        Request::Settle(settlement) => {
            apply_settlement(connection, op_source, settlement, now).map(Answer::Settle)
        }
        Request::ClaimAndSettle(request) => {
            apply_claim_and_settle(connection, op_source, request, now).map(Answer::Settle)
        }
        Request::Read(games) => records_of(connection, games).map(Answer::Read),
        Request::Release(game, holder) => {
            release(connection, game, holder).map(|()| Answer::Released)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{insert, leases, log, memory, record};
    use super::*;
    use crate::job::{Guard, JobKind};
    use crate::outcome::ResultKind;

    fn stopped(connection: &Connection, game: &FieldValue) {
        insert(
            connection,
            game,
            &FieldValue::Null,
            "stopped",
            &FieldValue::Integer(100),
        );
    }

    fn claim_and_settle(game: FieldValue) -> Request {
        Request::ClaimAndSettle(ClaimAndSettle {
            claim: Claim {
                game,
                holder: "rt-cleanup/test/1".into(),
                lease_ttl: Duration::from_secs(300),
                guard: Guard::Record {
                    container_id: FieldValue::Null,
                    last_op_at: FieldValue::Integer(100),
                    threshold_ms: 1_000,
                },
            },
            kind: JobKind::Record,
            logged_container: None,
            outcome: Outcome::replay_no_op("the record names no container"),
            started_at_ms: 1,
        })
    }

    #[test]
    fn a_failing_request_leaves_nothing_of_itself_and_undoes_no_other() {
        let mut connection = memory();
        let (first, last) = (FieldValue::text("g-1"), FieldValue::text("g-3"));
        stopped(&connection, &first);
        stopped(&connection, &last);
        // A game id NULL breaks the lease table's NOT NULL halfway through its request.
        let requests = [
            claim_and_settle(first.clone()),
            claim_and_settle(FieldValue::Null),
            claim_and_settle(last.clone()),
        ];
        let answers = apply_batch(&mut connection, "auto_ttl", &requests).unwrap();
        let results: Vec<Option<ResultKind>> = answers
            .iter()
            .map(|answer| match answer {
                Ok(Answer::Settle(outcome)) => Some(outcome.result),
                _ => None,
            })
            .collect();
        assert_eq!(
            results,
            [
                Some(ResultKind::ReplayNoOp),
                None,
                Some(ResultKind::ReplayNoOp)
            ]
        );
        for game in [&first, &last] {
            assert_eq!(
                record(&connection, game).unwrap().0,
                FieldValue::text("removed")
            );
        }
        assert_eq!(log(&connection).len(), 2);
        assert!(leases(&connection).is_empty());
    }
}

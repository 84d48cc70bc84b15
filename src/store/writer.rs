//! The state-file writer of a real run: one thread that owns the connection and applies lease
//! claims and results in grouped transactions (one transaction for every request waiting at
//! that moment, a savepoint each), so that a pass of hundreds of records needs far fewer
//! commits than records.

use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use std::collections::HashMap;

use super::protocol::{apply_claim, apply_settlement, Claim, ClaimResult, Settlement};
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
    Read(Vec<FieldValue>),
}

enum Answer {
    Claim(ClaimResult),
    Settle(Outcome),
    Read(Records),
}

enum Responder {
    Claim(oneshot::Sender<Result<ClaimResult, StoreError>>),
    Settle(oneshot::Sender<Result<Outcome, StoreError>>),
    Read(oneshot::Sender<Result<Records, StoreError>>),
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
            // Answers are made from their own request, so the kinds always match.
            (_, Ok(_)) => unreachable!("an answer of another kind than its request"),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Responder::Claim(_) => "a lease claim",
            Responder::Settle(_) => "a result",
            Responder::Read(_) => "a read of records",
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
    thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Hands the connection to a writer thread for the real run.
    #[must_use]
    pub fn into_writer(self, op_source: String) -> StateWriter {
        StateWriter::spawn(self.connection, op_source)
    }
}

impl StateWriter {
    fn spawn(connection: Connection, op_source: String) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(connection, &op_source, receiver))
            // Spawning fails only when the process is out of threads or memory.
            .expect("the state-writer thread starts");
        Self {
            jobs: Some(sender),
            thread: Some(thread),
        }
    }

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

    /// Queues a result to be written (see [`Settlement`]). It returns at once, so that the
    /// caller can go on with Docker work while the writer commits it, grouped with whatever else
    /// is waiting; the outcome as written is read from the returned [`PendingSettlement`].
    #[must_use]
    pub fn settle_later(&self, settlement: Settlement) -> PendingSettlement {
        let (reply, answer) = oneshot::channel();
        PendingSettlement(
            self.send(Request::Settle(settlement), Responder::Settle(reply))
                .map(|()| answer),
        )
    }

    fn send(&self, request: Request, responder: Responder) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        jobs.send((request, responder))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Waits for every request to be written and closes the state file.
    pub fn close(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // A panic of the writer has already failed every request it held (WriterGone).
            let _ = thread.join();
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn write_loop(
    mut connection: Connection,
    op_source: &str,
    mut jobs: mpsc::UnboundedReceiver<(Request, Responder)>,
) {
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
        let began = std::time::Instant::now();
        match apply_batch(&mut connection, op_source, requests) {
            Ok(answers) => {
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
}

/// Applies a batch in one transaction, a savepoint per request so that one failing request does
/// not undo the others. Fails as a whole when the transaction cannot start or commit.
fn apply_batch(
    connection: &mut Connection,
    op_source: &str,
    requests: Vec<Request>,
) -> rusqlite::Result<Vec<rusqlite::Result<Answer>>> {
    let mut transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let savepoint = transaction.savepoint()?;
        // Each request takes its own `now`: a lease's expiry counts from when it is taken.
        let now = now_ms();
        let answer = match request {
            Request::Claim(claim) => apply_claim(&savepoint, &claim, now).map(Answer::Claim),
            Request::Settle(settlement) => {
                apply_settlement(&savepoint, op_source, settlement, now).map(Answer::Settle)
            }
            Request::Read(games) => records_of(&savepoint, &games).map(Answer::Read),
        };
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

//! The consistent read of the state file: what a pass starts with (the count of stopped records,
//! the candidates and, for a dry run, the leases in force, plus whatever more the caller reads
//! from the same open file), and the rule every command that only reads keeps (the dry run,
//! explain, history): read without locks where no writer has the file open, and read it all
//! again where it was written meanwhile.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::LOG_TARGET;
use super::{PassTime, RunError};
use crate::candidate::Candidate;
use crate::config::Config;
use crate::outcome::LiveLease;
use crate::plan::Plan;
use crate::stop::Stop;
use crate::store::{Access, Store, StoreError};
use crate::value::FieldValue;

/// What a pass read from the state file before acting.
pub(crate) struct StateRead {
    /// The open state file, to read more from.
    pub store: Store,
    /// Every record with `status = 'stopped'`.
    pub stopped: u64,
    /// The candidates, in order (the plan's, under a plan).
    pub candidates: Vec<Candidate>,
    /// The leases in force, for a dry run's prediction.
    pub leases: HashMap<FieldValue, LiveLease>,
    /// How many times the file was opened and read to get this read (see [`read_state`]).
    pub attempts: usize,
}

/// How often a command that only reads reads a file again that was written while it read it.
const CONSISTENT_READ_ATTEMPTS: usize = 3;

/// Opens the state file and reads what the pass needs: the stopped count, the candidates and
/// (for a dry run) the leases, then what `also` reads from the same open file (the orphans'
/// records of a dry run, what explain reads besides). `earlier` is a read already made to read
/// more from; it counts with the attempts it took. See [`until_consistent`].
pub(crate) fn read_state<T>(
    config: &Config,
    plan: Option<&Plan>,
    time: &PassTime,
    stop: &Arc<Stop>,
    earlier: Option<StateRead>,
    also: impl Fn(&Store) -> Result<T, StoreError>,
) -> Result<(StateRead, T), RunError> {
    let first = earlier.as_ref().map_or(1, |read| read.attempts);
    let mut earlier = earlier;
    until_consistent(
        &config.state,
        first,
        |attempt| {
            let read = match earlier.take() {
                Some(read) => read,
                None => open_and_read(config, plan, time, stop, attempt)?,
            };
            let more = also(&read.store)?;
            Ok((read, more))
        },
        |(read, _)| &read.store,
    )
}

/// Reads the state file until a read holds: `attempt(n)` makes the `n`th read (from `first`),
/// and `store` names the open file it read. A command that only reads and read an immutable
/// snapshot checks, after the last of its reads, that nobody wrote the file meanwhile; where
/// somebody did, it opens the file again and reads all of it again, and gives up after
/// [`CONSISTENT_READ_ATTEMPTS`] attempts in all (busy, exit 75) rather than answer from a torn
/// read. The dry run, explain and history all read so.
pub(crate) fn until_consistent<R, E: From<StoreError>>(
    state: &Path,
    first: usize,
    mut attempt: impl FnMut(usize) -> Result<R, E>,
    store: impl Fn(&R) -> &Store,
) -> Result<R, E> {
    let mut n = first;
    loop {
        let read = attempt(n)?;
        match store(&read).check_read_consistent(n) {
            Ok(()) => return Ok(read),
            Err(error) if n >= CONSISTENT_READ_ATTEMPTS => return Err(error.into()),
            Err(_) => tracing::info!(
                target: LOG_TARGET,
                path = %state.display(),
                "the state file was written while it was read; reading it again"
            ),
        }
        n += 1;
    }
}

/// One attempt of [`read_state`]: opens the state file and reads the stopped count, the
/// candidates (the plan's, under a plan) and, for a dry run, the leases in force.
fn open_and_read(
    config: &Config,
    plan: Option<&Plan>,
    time: &PassTime,
    stop: &Arc<Stop>,
    attempt: usize,
) -> Result<StateRead, RunError> {
    let access = if config.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut store = Store::open(&config.state, access, config.lock_wait, stop)?;
    let (stopped, candidates) = match plan {
        None => {
            let selection = store.select(time.threshold_ms)?;
            (selection.stopped, selection.candidates)
        }
        Some(plan) => (store.count_stopped()?, plan.candidates()),
    };
    let leases = if config.dry_run {
        store.live_leases(time.now_ms)?
    } else {
        HashMap::new()
    };
    Ok(StateRead {
        store,
        stopped,
        candidates,
        leases,
        attempts: attempt,
    })
}

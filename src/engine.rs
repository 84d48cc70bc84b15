//! What the pass needs from a container engine, in plain types.
//!
//! `docker/` implements [`ContainerEngine`] over the Docker Engine API; the unit tests of the
//! pass implement it in memory. The answers are plain data so that deciding a record's result
//! stays a pure function (see `outcome.rs`).

use std::collections::HashMap;
use std::future::Future;

/// What the pass knows of one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInfo {
    /// The full container id.
    pub id: String,
    /// The container's names, without Docker's leading `/`.
    pub names: Vec<String>,
    /// The engine's state, as the daemon named it: Docker's `created`, `running`, `paused`,
    /// `restarting`, `removing`, `exited`, `dead`; Podman's compatible service adds `stopping`
    /// and `stopped`; empty where the daemon gave none. [`ContainerState::of`] says what it
    /// means.
    pub state: String,
    /// The container's labels; they never change after the container is created.
    pub labels: HashMap<String, String>,
    /// When it was created, epoch milliseconds, where the daemon said.
    pub created_ms: Option<i64>,
    /// When it last stopped (Docker's `State.FinishedAt`), epoch milliseconds; `None` for a
    /// container that never ran, and in a listing, which does not carry it.
    pub finished_ms: Option<i64>,
}

impl ContainerInfo {
    /// What its state means to a pass.
    #[must_use]
    pub fn state(&self) -> ContainerState {
        ContainerState::of(&self.state)
    }

    /// Whether the engine is known to refuse its removal without `force`: Docker a running,
    /// paused or restarting container, Podman also one that is stopping.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.state() == ContainerState::Running
    }
}

/// What the state an engine names means to a pass: the one place where the engines' state names
/// are decided, for the dry run's predictions and the orphan search alike (docs/contract.md,
/// "Container states"). A real run never decides from a state: it sends the removal without
/// `force`, and the daemon refuses what it must not remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// `created`, `exited`, and Podman's `stopped` (a container that exited and whose exit
    /// clean-up has not run yet, or never will): a removal without `force` removes it.
    NotRunning,
    /// `running`, `paused`, `restarting`, and Podman's `stopping`: a removal without `force` is
    /// refused.
    Running,
    /// `removing`: a removal is in progress; but Docker 20.10 to 26 also list so a container
    /// whose removal failed, and only its inspection (`dead`) tells the two apart.
    Removing,
    /// `dead`: Docker marked it dead when a removal failed; every later removal fails the same
    /// way until the cause is mended (and Docker removes it itself when it restarts).
    Dead,
    /// Any other state, or none: not known to be running. A real run sends the removal without
    /// `force` and the daemon decides; a dry run predicts that and says the state was unknown.
    Unknown,
}

impl ContainerState {
    /// What a state name means; names are compared without regard to ASCII case.
    #[must_use]
    pub fn of(state: &str) -> Self {
        const NAMES: [(&str, ContainerState); 9] = [
            ("created", ContainerState::NotRunning),
            ("exited", ContainerState::NotRunning),
            ("stopped", ContainerState::NotRunning),
            ("running", ContainerState::Running),
            ("paused", ContainerState::Running),
            ("restarting", ContainerState::Running),
            ("stopping", ContainerState::Running),
            ("removing", ContainerState::Removing),
            ("dead", ContainerState::Dead),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(state))
            .map_or(ContainerState::Unknown, |(_, meaning)| *meaning)
    }
}

/// The answer to a removal request (`DELETE /containers/{ref}`, never with `force`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Docker removed the container (204).
    Removed,
    /// Docker has no such container (404).
    NotFound,
    /// Docker refused with this status and message (409 for a running container or a removal
    /// already in progress, 5xx for its own errors).
    Refused {
        /// The HTTP status.
        status: u16,
        /// Docker's message, verbatim.
        message: String,
    },
    /// The request was sent, or may have been, and no answer came: the daemon may still carry
    /// it out, now or later.
    Unanswered(Unanswered),
    /// The request was never sent: no connection to the daemon could be made.
    Unreachable(String),
    /// The request was not made: the pass was interrupted by a signal first.
    Interrupted,
}

/// Why a removal request that was sent got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// None within the per-call timeout.
    TimedOut,
    /// The connection failed after the request was written, before an answer was read.
    ConnectionLost(String),
    /// The wait for it was abandoned after a second signal.
    Abandoned,
}

/// The answer to an inspection (`GET /containers/{ref}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// The container exists.
    Found(ContainerInfo),
    /// Docker has no such container (404).
    NotFound,
    /// Any other answer, a timeout included, described for the log.
    Failed(String),
    /// Not made, or its wait abandoned: the pass was interrupted by a signal.
    Interrupted,
}

/// The container operations one pass uses.
pub trait ContainerEngine {
    /// Removes a container without `force`.
    fn remove(&self, reference: &str) -> impl Future<Output = Removal>;
    /// Inspects a container.
    fn inspect(&self, reference: &str) -> impl Future<Output = Inspection>;
    /// Lists every container, stopped ones included, in one call.
    fn list_all(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, String>>;
    /// Lists every container that has the label `key`, stopped ones included, in one call
    /// filtered by the daemon.
    fn list_labelled(&self, key: &str) -> impl Future<Output = Result<Vec<ContainerInfo>, String>>;
}

/// Where a reference led in a listing of the daemon's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Exactly one container answers to the reference.
    Found(&'a ContainerInfo),
    /// No container answers to it.
    Missing,
    /// It is a prefix of several container ids: Docker itself would refuse it.
    Ambiguous,
}

/// All containers of the daemon, taken in one list call, resolved the way Docker resolves a
/// reference: a full id, then a name, then a unique id prefix.
///
/// Ids and names are kept in order and found by binary search: a dry run looks up one
/// reference per expired record, and a reference that is no full id and no name was compared
/// with every container's id before.
#[derive(Debug, Default)]
pub struct ContainerIndex {
    containers: Vec<ContainerInfo>,
    /// The containers' positions in the order of their ids: a full id and the ids a prefix
    /// starts are found there with one search.
    by_id: Vec<usize>,
    /// Every name with its container's position, in the order of the names.
    by_name: Vec<(String, usize)>,
}

impl ContainerIndex {
    /// Indexes a listing.
    #[must_use]
    pub fn new(containers: Vec<ContainerInfo>) -> Self {
        let mut by_id: Vec<usize> = (0..containers.len()).collect();
        by_id.sort_unstable_by(|&a, &b| containers[a].id.cmp(&containers[b].id));
        let mut by_name: Vec<(String, usize)> = containers
            .iter()
            .enumerate()
            .flat_map(|(position, container)| {
                container
                    .names
                    .iter()
                    .map(move |name| (name.clone(), position))
            })
            .collect();
        by_name.sort_unstable();
        Self {
            containers,
            by_id,
            by_name,
        }
    }

    /// The containers listed, in the listing's order.
    #[must_use]
    pub fn containers(&self) -> &[ContainerInfo] {
        &self.containers
    }

    /// Resolves a reference.
    #[must_use]
    pub fn lookup(&self, reference: &str) -> Lookup<'_> {
        let first = self
            .by_id
            .partition_point(|&position| self.containers[position].id.as_str() < reference);
        let mut prefixed = self.by_id[first..]
            .iter()
            .map(|&position| &self.containers[position])
            .take_while(|container| container.id.starts_with(reference))
            .peekable();
        match prefixed.peek() {
            Some(container) if container.id == reference => return Lookup::Found(container),
            _ => {}
        }
        if let Ok(found) = self
            .by_name
            .binary_search_by(|(name, _)| name.as_str().cmp(reference))
        {
            return Lookup::Found(&self.containers[self.by_name[found].1]);
        }
        match (prefixed.next(), prefixed.next()) {
            (Some(container), None) => Lookup::Found(container),
            (Some(_), Some(_)) => Lookup::Ambiguous,
            (None, _) => Lookup::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            names: vec![name.into()],
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn resolves_ids_names_and_unique_prefixes_like_docker() {
        let index = ContainerIndex::new(vec![
            container("abc123", "game-a"),
            container("abd456", "b"),
        ]);
        assert!(matches!(index.lookup("abc123"), Lookup::Found(c) if c.id == "abc123"));
        assert!(matches!(index.lookup("game-a"), Lookup::Found(c) if c.id == "abc123"));
        assert!(matches!(index.lookup("abd"), Lookup::Found(c) if c.id == "abd456"));
        assert_eq!(index.lookup("ab"), Lookup::Ambiguous);
        assert_eq!(index.lookup("zzz"), Lookup::Missing);
    }

    #[test]
    fn every_state_an_engine_names_has_one_meaning() {
        for (state, meaning) in [
            ("created", ContainerState::NotRunning),
            ("exited", ContainerState::NotRunning),
            ("stopped", ContainerState::NotRunning),
            ("Exited", ContainerState::NotRunning),
            ("running", ContainerState::Running),
            ("paused", ContainerState::Running),
            ("restarting", ContainerState::Running),
            ("stopping", ContainerState::Running),
            ("removing", ContainerState::Removing),
            ("dead", ContainerState::Dead),
            ("hibernating", ContainerState::Unknown),
            ("", ContainerState::Unknown),
        ] {
            assert_eq!(ContainerState::of(state), meaning, "{state:?}");
        }
        let mut info = container("abc", "x");
        info.state = "paused".into();
        assert!(info.is_running());
        info.state = "stopped".into();
        assert!(!info.is_running());
        info.state = "hibernating".into();
        assert!(
            !info.is_running(),
            "an unknown state is not known to be running"
        );
    }

    #[test]
    fn an_exact_name_wins_over_an_id_prefix() {
        let index = ContainerIndex::new(vec![container("abc123", "x"), container("def", "abc")]);
        assert!(matches!(index.lookup("abc"), Lookup::Found(c) if c.id == "def"));
    }

    #[test]
    fn a_prefix_resolves_as_a_scan_of_every_id_would() {
        let ids = [
            "f00", "0ab", "0a", "0abc", "9", "0b1", "ab", "0a9", "fff", "0",
        ];
        let index = ContainerIndex::new(ids.iter().map(|id| container(id, "")).collect());
        for reference in [
            "0", "0a", "0ab", "0abc", "0abcd", "0b", "a", "f", "ff", "9", "x",
        ] {
            let prefixed: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| id.starts_with(reference))
                .collect();
            let expected = match prefixed.as_slice() {
                _ if ids.contains(&reference) => format!("found {reference}"),
                [] => "missing".to_owned(),
                [id] => format!("found {id}"),
                _ => "ambiguous".to_owned(),
            };
            let got = match index.lookup(reference) {
                Lookup::Found(found) => format!("found {}", found.id),
                Lookup::Missing => "missing".to_owned(),
                Lookup::Ambiguous => "ambiguous".to_owned(),
            };
            assert_eq!(got, expected, "{reference}");
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scripted container engine for the unit tests of the worker, in the manner of
    //! hyperfine's `MockExecutor`: a map of containers that behaves as Docker does, answers
    //! that a test scripts per reference, removals a test can hold, and a log of every call.

    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::{
        ContainerEngine, ContainerIndex, ContainerInfo, ContainerState, Inspection, Lookup, Removal,
    };

    /// One call the worker made.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        /// `DELETE /containers/{reference}`.
        Remove(String),
        /// `GET /containers/{reference}/json`.
        Inspect(String),
        /// `GET /containers/json`.
        List,
        /// `GET /containers/json?filters={"label":[key]}`.
        ListLabelled(String),
    }

    /// The engine.
    #[derive(Debug)]
    pub struct FakeEngine {
        containers: Mutex<Vec<ContainerInfo>>,
        scripted: Mutex<HashMap<String, VecDeque<Removal>>>,
        scripted_inspections: Mutex<HashMap<String, VecDeque<Inspection>>>,
        delays: Mutex<HashMap<String, Duration>>,
        calls: Mutex<Vec<Call>>,
        /// While `true`, removals wait (they are logged as called first).
        held: watch::Sender<bool>,
    }

    impl Default for FakeEngine {
        fn default() -> Self {
            Self {
                containers: Mutex::default(),
                scripted: Mutex::default(),
                scripted_inspections: Mutex::default(),
                delays: Mutex::default(),
                calls: Mutex::default(),
                held: watch::Sender::new(false),
            }
        }
    }

    fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // A test that panicked while holding the lock has already failed.
        mutex
            .lock()
            .expect("the fake engine's lock is not poisoned")
    }

    impl FakeEngine {
        /// Adds a container in `state` with an id, a name and labels.
        pub fn add(&self, id: &str, name: &str, state: &str, labels: &[(&str, &str)]) {
            locked(&self.containers).push(ContainerInfo {
                id: id.to_owned(),
                names: vec![name.to_owned()],
                state: state.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..ContainerInfo::default()
            });
        }

        /// The next removal of `reference` answers `removal` instead of what Docker would do.
        pub fn script(&self, reference: &str, removal: Removal) {
            locked(&self.scripted)
                .entry(reference.to_owned())
                .or_default()
                .push_back(removal);
        }

        /// The next inspection of `reference` answers `inspection` instead of what the
        /// listing holds: Docker lists a container whose removal failed as `removing` and
        /// inspects it as `dead`.
        pub fn script_inspection(&self, reference: &str, inspection: Inspection) {
            locked(&self.scripted_inspections)
                .entry(reference.to_owned())
                .or_default()
                .push_back(inspection);
        }

        /// Removals of `reference` take this long to answer.
        pub fn delay(&self, reference: &str, delay: Duration) {
            locked(&self.delays).insert(reference.to_owned(), delay);
        }

        /// Holds (or releases) every removal until released.
        pub fn hold_removals(&self, held: bool) {
            self.held.send_replace(held);
        }

        /// Every call so far.
        pub fn calls(&self) -> Vec<Call> {
            locked(&self.calls).clone()
        }

        /// The removals called so far, by reference.
        pub fn removals(&self) -> Vec<String> {
            self.calls()
                .into_iter()
                .filter_map(|call| match call {
                    Call::Remove(reference) => Some(reference),
                    _ => None,
                })
                .collect()
        }

        /// Whether a container answers to the reference.
        pub fn exists(&self, reference: &str) -> bool {
            self.find(reference).is_some()
        }

        /// Waits until `count` removals were called.
        pub async fn wait_for_removals(&self, count: usize) {
            while self.removals().len() < count {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        fn find(&self, reference: &str) -> Option<ContainerInfo> {
            let index = ContainerIndex::new(locked(&self.containers).clone());
            match index.lookup(reference) {
                Lookup::Found(info) => Some(info.clone()),
                Lookup::Missing | Lookup::Ambiguous => None,
            }
        }
    }

    impl ContainerEngine for FakeEngine {
        async fn remove(&self, reference: &str) -> Removal {
            locked(&self.calls).push(Call::Remove(reference.to_owned()));
            let mut held = self.held.subscribe();
            // The sender lives in `self`; the wait ends when the test releases the removals.
            let _ = held.wait_for(|held| !*held).await;
            let delay = locked(&self.delays).get(reference).copied();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let scripted = locked(&self.scripted)
                .get_mut(reference)
                .and_then(VecDeque::pop_front);
            if let Some(removal) = scripted {
                return removal;
            }
            let Some(info) = self.find(reference) else {
                return Removal::NotFound;
            };
            match info.state() {
                ContainerState::Running => {
                    return Removal::Refused {
                        status: 409,
                        message: format!(
                            "You cannot remove a {} container {}. Stop the container before \
                             attempting removal or force remove",
                            info.state, info.id
                        ),
                    };
                }
                // As Docker: the removal that made it dead fails again, the same way.
                ContainerState::Dead => {
                    return Removal::Refused {
                        status: 500,
                        message: format!(
                            "container {}: driver \"overlay2\" failed to remove root \
                             filesystem: unlinkat /var/lib/docker/overlay2/x/diff/pin: \
                             operation not permitted",
                            info.id
                        ),
                    };
                }
                ContainerState::NotRunning | ContainerState::Removing | ContainerState::Unknown => {
                }
            }
            locked(&self.containers).retain(|container| container.id != info.id);
            Removal::Removed
        }

        async fn inspect(&self, reference: &str) -> Inspection {
            locked(&self.calls).push(Call::Inspect(reference.to_owned()));
            let scripted = locked(&self.scripted_inspections)
                .get_mut(reference)
                .and_then(VecDeque::pop_front);
            if let Some(inspection) = scripted {
                return inspection;
            }
            match self.find(reference) {
                Some(info) => Inspection::Found(info),
                None => Inspection::NotFound,
            }
        }

        async fn list_all(&self) -> Result<Vec<ContainerInfo>, String> {
            locked(&self.calls).push(Call::List);
            Ok(locked(&self.containers).clone())
        }

        async fn list_labelled(&self, key: &str) -> Result<Vec<ContainerInfo>, String> {
            locked(&self.calls).push(Call::ListLabelled(key.to_owned()));
            Ok(locked(&self.containers)
                .iter()
                .filter(|container| container.labels.contains_key(key))
                .cloned()
                .collect())
        }
    }
}

//! What the pass needs from a container engine, in plain types.
//!
//! `docker/` implements [`ContainerEngine`] over the Docker Engine API; the unit tests of the
//! pass implement it in memory. The answers are plain data so that deciding a record's result
//! stays a pure function (see `outcome.rs`).

use std::collections::{HashMap, HashSet};
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
    /// The size of its writable layer in bytes (`SizeRw`): only in an inspection asked with
    /// `size=true` (`--measure-space`), where the daemon gave it.
    pub size_rw: Option<u64>,
    /// Its volume mounts (the `Mounts` of `Type` `volume`), in the daemon's order.
    pub volumes: Vec<VolumeMount>,
    /// What its own configuration says of its volumes: in an inspection only (a listing does
    /// not carry it, and leaves it empty); boxed, since a listing of thousands of containers
    /// carries none.
    pub volume_config: Box<VolumeConfig>,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeMount {
    /// The volume's name (an anonymous volume's is 64 hexadecimal digits the engine chose).
    pub name: String,
    /// Where it is mounted in the container.
    pub destination: String,
}

/// What a container's own configuration says of its volumes, as Docker's inspection shows it
/// (`Config.Volumes`, `HostConfig.Binds`, `HostConfig.Mounts`, `HostConfig.VolumesFrom`). Docker
/// removes with the container (`v=true`) exactly the volumes it created for the container without
/// a name; this is what tells them (`space::anonymous_volumes`). Podman's inspection lists every
/// volume in `Binds` by its name, so Podman's volumes are told apart by its own mark instead
/// ([`Anonymity`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeConfig {
    /// The paths where it declares a volume without naming one: an image's `VOLUME` or
    /// `-v /path` (`Config.Volumes`), an unnamed `--mount type=volume`, a `Binds` entry that is
    /// only a path.
    pub unnamed: Vec<String>,
    /// The paths where it mounts a volume by name: `-v NAME:/path` (`Binds`),
    /// `--mount type=volume,source=NAME` (`Mounts`).
    pub named: Vec<String>,
    /// Whether it takes the volumes of other containers (`--volumes-from`).
    pub volumes_from: bool,
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

/// What a removal does with the container's anonymous volumes: the `v` of
/// `DELETE /containers/{ref}`. Named volumes are never removed with a container, by any engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousVolumes {
    /// `v=false`, the default: they stay, dangling.
    Keep,
    /// `v=true` (`--remove-volumes`): the engine removes them with the container, unless another
    /// container still uses one.
    Remove,
}

/// The answer to a volume's inspection (`GET /volumes/{name}`), asked after a removal with
/// `v=true` to learn which of the container's volumes went with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeLookup {
    /// The volume is still there.
    Exists,
    /// The engine has no such volume (404).
    Gone,
    /// Any other answer, a timeout included, described for the log.
    Failed(String),
    /// Not asked, or its wait abandoned: the pass was interrupted by a signal.
    Interrupted,
}

/// How an engine tells a container's anonymous volumes from its named ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anonymity {
    /// From the container's own configuration ([`VolumeConfig`]): Docker Engine.
    ByConfiguration,
    /// By the volume's own mark: Podman marks each volume it made for a container without a
    /// name `Anonymous`; these are the names of the volumes it marks.
    Marked(HashSet<String>),
    /// The engine marks them but could not say which (why, for the log): no volume is listed.
    Unknown(String),
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
    /// Removes a container without `force`, with its anonymous volumes or without.
    fn remove(&self, reference: &str, volumes: AnonymousVolumes) -> impl Future<Output = Removal>;
    /// Inspects a container.
    fn inspect(&self, reference: &str) -> impl Future<Output = Inspection>;
    /// Inspects a container with the size of its writable layer (`size=true`), which the engine
    /// computes by walking the layer: slow on a large container.
    fn inspect_sized(&self, reference: &str) -> impl Future<Output = Inspection>;
    /// Looks a volume up by name.
    fn volume(&self, name: &str) -> impl Future<Output = VolumeLookup>;
    /// How the engine tells anonymous volumes from named ones (for Podman, one listing of its
    /// volumes).
    fn anonymity(&self) -> impl Future<Output = Anonymity>;
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

    use std::collections::{HashMap, HashSet, VecDeque};
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::{
        Anonymity, AnonymousVolumes, ContainerEngine, ContainerIndex, ContainerInfo,
        ContainerState, Inspection, Lookup, Removal, VolumeConfig, VolumeLookup, VolumeMount,
    };

    /// One call the worker made.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        /// `DELETE /containers/{reference}` (`v=false`).
        Remove(String),
        /// `DELETE /containers/{reference}?v=true`.
        RemoveWithVolumes(String),
        /// `GET /containers/{reference}/json`.
        Inspect(String),
        /// `GET /containers/{reference}/json?size=true`.
        InspectSized(String),
        /// `GET /volumes/{name}`.
        Volume(String),
        /// Podman's listing of its volumes, for their `Anonymous` mark.
        Anonymity,
        /// `GET /containers/json`.
        List,
        /// `GET /containers/json?filters={"label":[key]}`.
        ListLabelled(String),
    }

    /// A volume of the fake engine.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FakeVolume {
        /// Made for a container without a name: removed with the last container that uses it
        /// when that one is removed with `v=true`.
        Anonymous,
        /// Made by name: never removed with a container.
        Named,
    }

    /// The engine.
    #[derive(Debug)]
    pub struct FakeEngine {
        containers: Mutex<Vec<ContainerInfo>>,
        /// Every volume, by name.
        volumes: Mutex<HashMap<String, FakeVolume>>,
        /// Whether it marks its anonymous volumes as Podman does, rather than telling them by
        /// each container's configuration as Docker does.
        marks_volumes: Mutex<bool>,
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
                volumes: Mutex::default(),
                marks_volumes: Mutex::new(false),
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

        /// Adds a container in `state` with volumes mounted at `/v0`, `/v1`, …: each `(name,
        /// kind)`, anonymous or named, made unless it exists (so that two containers can share
        /// one); and a writable layer of `size_rw` bytes, which only a sized inspection shows.
        pub fn add_with_volumes(
            &self,
            id: &str,
            name: &str,
            state: &str,
            volumes: &[(&str, FakeVolume)],
            size_rw: u64,
        ) {
            let mut config = VolumeConfig::default();
            let mut mounts = Vec::new();
            for (n, (volume, kind)) in volumes.iter().enumerate() {
                let destination = format!("/v{n}");
                match kind {
                    FakeVolume::Anonymous => config.unnamed.push(destination.clone()),
                    FakeVolume::Named => config.named.push(destination.clone()),
                }
                locked(&self.volumes)
                    .entry((*volume).to_owned())
                    .or_insert(*kind);
                mounts.push(VolumeMount {
                    name: (*volume).to_owned(),
                    destination,
                });
            }
            locked(&self.containers).push(ContainerInfo {
                id: id.to_owned(),
                names: vec![name.to_owned()],
                state: state.to_owned(),
                size_rw: Some(size_rw),
                volumes: mounts,
                volume_config: Box::new(config),
                ..ContainerInfo::default()
            });
        }

        /// Makes the engine mark its anonymous volumes as Podman does ([`Anonymity::Marked`]).
        pub fn mark_volumes(&self) {
            *locked(&self.marks_volumes) = true;
        }

        /// Whether a volume exists.
        pub fn has_volume(&self, name: &str) -> bool {
            locked(&self.volumes).contains_key(name)
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

        /// A scripted inspection of `reference`, else the container as it is, with its size.
        fn inspected(&self, reference: &str) -> Inspection {
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

        fn find(&self, reference: &str) -> Option<ContainerInfo> {
            let index = ContainerIndex::new(locked(&self.containers).clone());
            match index.lookup(reference) {
                Lookup::Found(info) => Some(info.clone()),
                Lookup::Missing | Lookup::Ambiguous => None,
            }
        }
    }

    impl ContainerEngine for FakeEngine {
        async fn remove(&self, reference: &str, volumes: AnonymousVolumes) -> Removal {
            locked(&self.calls).push(match volumes {
                AnonymousVolumes::Keep => Call::Remove(reference.to_owned()),
                AnonymousVolumes::Remove => Call::RemoveWithVolumes(reference.to_owned()),
            });
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
            if volumes == AnonymousVolumes::Remove {
                // As both engines: the anonymous volumes no other container uses go with it.
                let used: HashSet<String> = locked(&self.containers)
                    .iter()
                    .flat_map(|container| container.volumes.iter().map(|v| v.name.clone()))
                    .collect();
                let mut all = locked(&self.volumes);
                for mount in &info.volumes {
                    if all.get(&mount.name) == Some(&FakeVolume::Anonymous)
                        && !used.contains(&mount.name)
                    {
                        all.remove(&mount.name);
                    }
                }
            }
            Removal::Removed
        }

        async fn inspect(&self, reference: &str) -> Inspection {
            locked(&self.calls).push(Call::Inspect(reference.to_owned()));
            match self.inspected(reference) {
                Inspection::Found(info) => Inspection::Found(ContainerInfo {
                    size_rw: None,
                    ..info
                }),
                other => other,
            }
        }

        async fn inspect_sized(&self, reference: &str) -> Inspection {
            locked(&self.calls).push(Call::InspectSized(reference.to_owned()));
            self.inspected(reference)
        }

        async fn volume(&self, name: &str) -> VolumeLookup {
            locked(&self.calls).push(Call::Volume(name.to_owned()));
            if self.has_volume(name) {
                VolumeLookup::Exists
            } else {
                VolumeLookup::Gone
            }
        }

        async fn anonymity(&self) -> Anonymity {
            if !*locked(&self.marks_volumes) {
                return Anonymity::ByConfiguration;
            }
            locked(&self.calls).push(Call::Anonymity);
            Anonymity::Marked(
                locked(&self.volumes)
                    .iter()
                    .filter(|(_, kind)| **kind == FakeVolume::Anonymous)
                    .map(|(name, _)| name.clone())
                    .collect(),
            )
        }

        async fn list_all(&self) -> Result<Vec<ContainerInfo>, String> {
            locked(&self.calls).push(Call::List);
            Ok(locked(&self.containers).iter().map(listed).collect())
        }

        async fn list_labelled(&self, key: &str) -> Result<Vec<ContainerInfo>, String> {
            locked(&self.calls).push(Call::ListLabelled(key.to_owned()));
            Ok(locked(&self.containers)
                .iter()
                .filter(|container| container.labels.contains_key(key))
                .map(listed)
                .collect())
        }
    }

    /// A container as a listing shows it: its volumes' names, but neither its size nor its
    /// configuration.
    fn listed(info: &ContainerInfo) -> ContainerInfo {
        ContainerInfo {
            size_rw: None,
            volume_config: Box::default(),
            ..info.clone()
        }
    }
}

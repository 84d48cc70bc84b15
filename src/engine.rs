//! What the pass needs from a container engine, in plain types.
//!
//! `docker.rs` implements [`ContainerEngine`] over the Docker Engine API; the unit tests of the
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
    /// Docker's state: `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    pub state: String,
    /// The container's labels; they never change after the container is created.
    pub labels: HashMap<String, String>,
}

impl ContainerInfo {
    /// Whether Docker would refuse to remove it without `force`.
    #[must_use]
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused" | "restarting")
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
    /// No answer within the per-call timeout: the container may or may not be gone.
    TimedOut,
    /// The request could not be made or its answer not read.
    Unreachable(String),
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
}

/// The container operations one pass uses.
pub trait ContainerEngine {
    /// Removes a container without `force`.
    fn remove(&self, reference: &str) -> impl Future<Output = Removal>;
    /// Inspects a container.
    fn inspect(&self, reference: &str) -> impl Future<Output = Inspection>;
    /// Lists every container, stopped ones included, in one call.
    fn list_all(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, String>>;
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
#[derive(Debug, Default)]
pub struct ContainerIndex {
    containers: Vec<ContainerInfo>,
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl ContainerIndex {
    /// Indexes a listing.
    #[must_use]
    pub fn new(containers: Vec<ContainerInfo>) -> Self {
        let mut by_id = HashMap::with_capacity(containers.len());
        let mut by_name = HashMap::with_capacity(containers.len());
        for (position, container) in containers.iter().enumerate() {
            by_id.insert(container.id.clone(), position);
            for name in &container.names {
                by_name.insert(name.clone(), position);
            }
        }
        Self {
            containers,
            by_id,
            by_name,
        }
    }

    /// Resolves a reference.
    #[must_use]
    pub fn lookup(&self, reference: &str) -> Lookup<'_> {
        if let Some(&position) = self
            .by_id
            .get(reference)
            .or_else(|| self.by_name.get(reference))
        {
            return Lookup::Found(&self.containers[position]);
        }
        let mut matches = self
            .containers
            .iter()
            .filter(|c| c.id.starts_with(reference));
        match (matches.next(), matches.next()) {
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
    fn an_exact_name_wins_over_an_id_prefix() {
        let index = ContainerIndex::new(vec![container("abc123", "x"), container("def", "abc")]);
        assert!(matches!(index.lookup("abc"), Lookup::Found(c) if c.id == "def"));
    }
}

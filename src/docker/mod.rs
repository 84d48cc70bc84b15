//! The Docker Engine API, through bollard: the only module that talks to the daemon. Requests
//! go through the transport of `transport.rs`, which puts the negotiated API version on the wire
//! and keeps connections alive.
//!
//! The preflight runs before any row is touched: `GET /_ping`, whose answer carries the daemon's
//! API and engine versions in its headers (`GET /version` is asked only when they are missing).
//! Both are sent without a version prefix, which every daemon accepts; the version used
//! afterwards is the daemon's own API version, capped at the newest this build knows.

mod transport;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use thiserror::Error;

use transport::{build_client, PingHeaders};

use crate::config::DockerHost;
use crate::engine::{ContainerEngine, ContainerInfo, Inspection, Removal};
use crate::time::parse_rfc3339_ms;

/// The oldest Docker Engine API this tool is tested against (Docker 20.10, Debian 12).
pub const OLDEST_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 41,
};

/// The newest Docker Engine API this build knows; newer daemons are spoken to at this version.
pub const NEWEST_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 53,
};

/// A Docker Engine API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    /// Major version, always 1 so far.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ApiVersion {
    /// Parses `1.41`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The daemon is unreachable or unusable at start: exit 69, nothing changed.
#[derive(Debug, Error)]
pub enum DockerError {
    /// The transport could not be set up.
    #[error("cannot use the Docker daemon at {host}: {reason}")]
    Connect {
        /// `--docker-host`.
        host: String,
        /// Why.
        reason: String,
    },
    /// `GET /_ping` failed.
    #[error(
        "cannot reach the Docker daemon at {host}: {reason}; is dockerd running and may this user \
         use it? (set --docker-host or DOCKER_HOST)"
    )]
    Ping {
        /// `--docker-host`.
        host: String,
        /// Why.
        reason: String,
    },
    /// `GET /version` failed or said no usable version.
    #[error("the Docker daemon at {host} did not give its API version: {reason}")]
    Version {
        /// `--docker-host`.
        host: String,
        /// Why.
        reason: String,
    },
    /// The daemon is older than this tool supports.
    #[error(
        "the Docker daemon at {host} speaks API {found}, older than {OLDEST_API}, the oldest \
         rt-cleanup supports (Docker 20.10)"
    )]
    TooOld {
        /// `--docker-host`.
        host: String,
        /// The daemon's API version.
        found: ApiVersion,
    },
    /// Listing the containers failed.
    #[error("cannot list the containers of the Docker daemon at {host}: {reason}")]
    List {
        /// `--docker-host`.
        host: String,
        /// Why.
        reason: String,
    },
}

/// What the preflight learnt of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// The daemon's version, e.g. `20.10.24+dfsg1`.
    pub engine_version: String,
    /// The daemon's own API version.
    pub server_api: ApiVersion,
    /// The version put on every request: the daemon's, capped at [`NEWEST_API`].
    pub wire_api: ApiVersion,
}

/// A connected, version-negotiated Docker client.
#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
    host: String,
    timeout: Duration,
    daemon: Daemon,
}

impl DockerClient {
    /// Connects and runs the preflight: ping, then version negotiation. Each call is bounded by
    /// `timeout`.
    pub async fn connect(host: &DockerHost, timeout: Duration) -> Result<Self, DockerError> {
        let host_text = host.to_string();
        let prefix = Arc::new(OnceLock::new());
        let ping = Arc::new(OnceLock::new());
        let docker = build_client(host, timeout, Arc::clone(&prefix), Arc::clone(&ping)).map_err(
            |error| DockerError::Connect {
                host: host_text.clone(),
                reason: error.to_string(),
            },
        )?;
        bounded(timeout, docker.ping())
            .await
            .map_err(|reason| DockerError::Ping {
                host: host_text.clone(),
                reason,
            })?;
        // Every daemon answers the ping with its API version (`Api-Version`) and engine version
        // (`Server: Docker/<version> (<os>)`); reading them there saves `GET /version`, which
        // costs the daemon several milliseconds (it asks containerd and the runtimes for theirs)
        // on every run. A proxy that drops the headers makes the preflight ask `/version`.
        let (engine_version, api_text) =
            if let Some((engine, api)) = ping.get().and_then(PingHeaders::versions) {
                (engine, Some(api))
            } else {
                let version = bounded(timeout, docker.version()).await.map_err(|reason| {
                    DockerError::Version {
                        host: host_text.clone(),
                        reason,
                    }
                })?;
                (version.version.unwrap_or_default(), version.api_version)
            };
        let server_api = api_text
            .as_deref()
            .and_then(ApiVersion::parse)
            .ok_or_else(|| DockerError::Version {
                host: host_text.clone(),
                reason: format!("unreadable ApiVersion {api_text:?}"),
            })?;
        if server_api < OLDEST_API {
            return Err(DockerError::TooOld {
                host: host_text,
                found: server_api,
            });
        }
        let wire_api = server_api.min(NEWEST_API);
        // Set once, before any other request: the preflight above went unversioned.
        let _ = prefix.set(format!("/v{wire_api}"));
        let daemon = Daemon {
            engine_version,
            server_api,
            wire_api,
        };
        Ok(Self {
            docker,
            host: host_text,
            timeout,
            daemon,
        })
    }

    /// What the preflight learnt.
    #[must_use]
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The daemon address, for messages.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Lists every container in one call; used by a dry run and by `--owner-label`.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        self.list_all().await.map_err(|reason| DockerError::List {
            host: self.host.clone(),
            reason,
        })
    }
}

impl ContainerEngine for DockerClient {
    async fn remove(&self, reference: &str) -> Removal {
        // Never force: a running container must stay, and Docker's refusal is the atomic
        // not-running guard. Anonymous volumes are kept too (`v=false`): removing data is not
        // this tool's call.
        let options = RemoveContainerOptions {
            force: false,
            v: false,
            link: false,
        };
        match tokio::time::timeout(
            self.timeout,
            self.docker.remove_container(reference, Some(options)),
        )
        .await
        {
            Err(_) | Ok(Err(BollardError::RequestTimeoutError)) => Removal::TimedOut,
            Ok(Ok(())) => Removal::Removed,
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => Removal::NotFound,
            Ok(Err(BollardError::DockerResponseServerError {
                status_code,
                message,
            })) => Removal::Refused {
                status: status_code,
                message,
            },
            Ok(Err(error)) => Removal::Unreachable(error.to_string()),
        }
    }

    async fn inspect(&self, reference: &str) -> Inspection {
        match tokio::time::timeout(self.timeout, self.docker.inspect_container(reference, None))
            .await
        {
            Err(_) | Ok(Err(BollardError::RequestTimeoutError)) => Inspection::Failed(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => Inspection::NotFound,
            Ok(Err(error)) => Inspection::Failed(error.to_string()),
            Ok(Ok(response)) => Inspection::Found(ContainerInfo {
                id: response.id.unwrap_or_default(),
                names: response
                    .name
                    .map(|name| name.trim_start_matches('/').to_owned())
                    .into_iter()
                    .collect(),
                finished_ms: response
                    .state
                    .as_ref()
                    .and_then(|state| state.finished_at.as_deref())
                    .and_then(parse_rfc3339_ms),
                state: response
                    .state
                    .and_then(|state| state.status)
                    .map(|status| status.to_string())
                    .unwrap_or_default(),
                labels: response
                    .config
                    .and_then(|config| config.labels)
                    .unwrap_or_default(),
                created_ms: response.created.as_deref().and_then(parse_rfc3339_ms),
            }),
        }
    }

    async fn list_all(&self) -> Result<Vec<ContainerInfo>, String> {
        self.list_filtered(None).await
    }

    async fn list_labelled(&self, key: &str) -> Result<Vec<ContainerInfo>, String> {
        self.list_filtered(Some(key)).await
    }
}

impl DockerClient {
    /// One `GET /containers/json?all=1`, filtered by the daemon to a label when one is given.
    async fn list_filtered(&self, label: Option<&str>) -> Result<Vec<ContainerInfo>, String> {
        let options = ListContainersOptions {
            all: true,
            filters: label.map(|key| HashMap::from([("label".to_owned(), vec![key.to_owned()])])),
            ..ListContainersOptions::default()
        };
        let containers = bounded(self.timeout, self.docker.list_containers(Some(options))).await?;
        Ok(containers
            .into_iter()
            .map(|container| ContainerInfo {
                id: container.id.unwrap_or_default(),
                names: container
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|name| name.trim_start_matches('/').to_owned())
                    .collect(),
                state: container
                    .state
                    .map(|state| state.to_string())
                    .unwrap_or_default(),
                labels: container.labels.unwrap_or_else(HashMap::new),
                created_ms: container
                    .created
                    .and_then(|seconds| seconds.checked_mul(1000)),
                finished_ms: None,
            })
            .collect())
    }
}

/// Runs a bollard call under a timeout, describing any failure in one line.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(BollardError::DockerResponseServerError {
            status_code,
            message,
        })) => Err(format!("Docker answered {status_code}: {message}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

impl PingHeaders {
    /// The engine version and the API version, when the daemon sent both.
    fn versions(&self) -> Option<(String, String)> {
        let api = self.api_version.clone()?;
        let engine = engine_from_server_header(self.server.as_deref()?)?;
        Some((engine, api))
    }
}

/// `Docker/20.10.24+dfsg1 (linux)` → `20.10.24+dfsg1`.
fn engine_from_server_header(server: &str) -> Option<String> {
    let rest = server.strip_prefix("Docker/")?;
    let version = rest.split_once(' ').map_or(rest, |(version, _)| version);
    (!version.is_empty()).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_api_versions() {
        let old = ApiVersion::parse("1.41").unwrap();
        let new = ApiVersion::parse("1.9").unwrap();
        assert!(new < old, "1.9 is older than 1.41");
        assert_eq!(ApiVersion::parse("x"), None);
        assert_eq!(old.to_string(), "1.41");
    }

    #[test]
    fn reads_the_engine_version_from_the_server_header() {
        assert_eq!(
            engine_from_server_header("Docker/20.10.24+dfsg1 (linux)").as_deref(),
            Some("20.10.24+dfsg1")
        );
        assert_eq!(engine_from_server_header("nginx/1.25"), None);
        assert_eq!(engine_from_server_header("Docker/ (linux)"), None);
        let partial = PingHeaders {
            api_version: Some("1.41".into()),
            server: None,
        };
        assert_eq!(partial.versions(), None, "without both, /version is asked");
    }
}

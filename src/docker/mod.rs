//! The Docker Engine API, through bollard: the only module that talks to the daemon, be it
//! Docker Engine or Podman's Docker-compatible service, over a unix socket, plain TCP or TLS.
//! Requests go through the transport of `transport.rs`, which puts the negotiated API version on
//! the wire and keeps connections alive; `tls.rs` makes the TLS configuration; `diagnose.rs`
//! says why a daemon could not be reached.
//!
//! The preflight runs before any row is touched: `GET /_ping`, whose answer carries the API
//! version and the engine's name and version in its headers, read through the table
//! [`ENGINES`]; `GET /version` (which costs Podman 0.2-0.6 s) is asked only when they are
//! missing, as behind a proxy that drops them. Both are sent without a version prefix, which
//! every daemon accepts; the version used afterwards is the daemon's own API version, capped at
//! the newest this build knows.

mod answer;
mod diagnose;
mod tls;
mod transport;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::RemoveContainerOptions;
use bollard::Docker;
use http_body_util::BodyExt;
use thiserror::Error;

use transport::{build_client, PingHeaders, Transport};

use crate::candidate::ContainerRef;
use crate::config::DockerHost;
use crate::engine::{
    Anonymity, AnonymousVolumes, ContainerEngine, ContainerInfo, Inspection, Removal, Unanswered,
    VolumeLookup,
};
use crate::stop::{Cut, Stop};
use crate::value::Escaped;

/// The oldest Docker Engine API this tool is tested against (Docker 20.10 and Podman 4.3,
/// Debian 12).
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
    /// The transport could not be set up, e.g. a TLS file cannot be used.
    #[error("cannot use the Docker daemon at {host}: {reason}")]
    Connect {
        /// `--docker-host`.
        host: String,
        /// Why, and what to do.
        reason: String,
    },
    /// `GET /_ping` got no answer: no connection, or none in time.
    #[error("cannot reach the Docker daemon at {host}: {reason}")]
    Ping {
        /// `--docker-host`.
        host: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("cannot reach the Docker daemon at {host} over TLS: {reason}")]
    Tls {
        /// `--docker-host`.
        host: String,
        /// What the failure means, and what to do.
        reason: String,
    },
    /// A TLS port was spoken to in plain HTTP.
    #[error(
        "the Docker daemon at {host} speaks only TLS on this port (it answered \"Client sent an \
         HTTP request to an HTTPS server\"): set DOCKER_TLS_VERIFY=1 (or --tlsverify) and \
         DOCKER_CERT_PATH to the directory of ca.pem, cert.pem and key.pem"
    )]
    TlsRequired {
        /// `--docker-host`.
        host: String,
    },
    /// `GET /_ping` was answered with an error.
    #[error("the Docker daemon at {host} refused the ping: {reason}")]
    PingRefused {
        /// `--docker-host`.
        host: String,
        /// The answer.
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
        "the Docker daemon at {host} ({engine}) speaks API {found}, older than {OLDEST_API}, the \
         oldest rt-cleanup supports (Docker 20.10 and Podman 4 speak {OLDEST_API}); upgrade the \
         engine"
    )]
    TooOld {
        /// `--docker-host`.
        host: String,
        /// The engine.
        engine: EngineVersion,
        /// The daemon's API version.
        found: ApiVersion,
    },
    /// A signal came first: the call was not made, or its wait was abandoned.
    #[error("the {call} of the Docker daemon at {host} was interrupted by a signal")]
    Interrupted {
        /// `--docker-host`.
        host: String,
        /// Which call: `ping`, `version query`, `listing`.
        call: &'static str,
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

/// How an engine that speaks the Docker Engine API is recognised.
#[derive(Debug)]
pub struct EngineSignature {
    /// Its name, as logged.
    pub name: &'static str,
    /// The product of its ping's `Server` header: `Docker` in `Docker/20.10.24+dfsg1 (linux)`.
    pub server_product: &'static str,
    /// A ping header that holds the engine's own version, read when `Server` was dropped.
    pub version_header: Option<&'static str>,
    /// Its component's `Name` in `GET /version`.
    pub version_component: &'static str,
    /// How it tells a container's anonymous volumes from its named ones (`--remove-volumes`).
    pub anonymous_volumes: AnonymousMark,
}

/// How an engine tells a container's anonymous volumes from its named ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousMark {
    /// By the container's own configuration: Docker removes with a container (`v=true`) the
    /// volumes it created for it without a name, and no volume carries a mark that says so in
    /// every version (Docker 23 and later label new ones `com.docker.volume.anonymous`, 20.10
    /// does not; Podman's compatible listing shows no such label).
    Configuration,
    /// By a mark of the volume's own, listed by this request: Podman's `Anonymous`, in
    /// `GET /libpod/volumes/json` (its compatible `GET /volumes` leaves it out), which is what
    /// Podman's own removal goes by.
    Listed(&'static str),
}

/// The engines rt-cleanup recognises, and how. A new engine, or a new way one names itself, is a
/// row here; the API version always comes from `Api-Version` (or `/version`'s `ApiVersion`).
/// What each release sends is pinned by the tests (`engine_from_ping` below, and the fake daemon
/// of `tests/integration/engines.rs`).
pub const ENGINES: [EngineSignature; 2] = [
    // Docker Engine: `Api-Version`, `Server: Docker/<version> (<os>)`; no header of its own
    // carries the version.
    EngineSignature {
        name: "Docker",
        server_product: "Docker",
        version_header: None,
        version_component: "Engine",
        anonymous_volumes: AnonymousMark::Configuration,
    },
    // Podman's Docker-compatible service: `Api-Version` (the Docker API it emulates, 1.41 in
    // 4.x and 5.0-5.7, 1.44 in 5.8), `Libpod-Api-Version: <version>`,
    // `Server: Libpod/<version> (<os>)`.
    EngineSignature {
        name: "Podman",
        server_product: "Libpod",
        version_header: Some("Libpod-Api-Version"),
        version_component: "Podman Engine",
        anonymous_volumes: AnonymousMark::Listed("/libpod/volumes/json"),
    },
];

/// An engine's name and version, e.g. `Podman 4.3.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// `Docker`, `Podman`, or `unknown engine` for a daemon no row of [`ENGINES`] recognises.
    pub name: &'static str,
    /// The engine's own version, e.g. `20.10.24+dfsg1`; empty when it did not say.
    pub version: String,
}

impl EngineVersion {
    /// How the engine tells anonymous volumes, from its row of [`ENGINES`]; an engine no row
    /// recognises speaks the Docker Engine API, and is taken at its word as Docker is.
    #[must_use]
    pub fn anonymous_volumes(&self) -> AnonymousMark {
        ENGINES
            .iter()
            .find(|signature| signature.name == self.name)
            .map_or(AnonymousMark::Configuration, |signature| {
                signature.anonymous_volumes
            })
    }
}

impl fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{} {}", self.name, self.version)
        }
    }
}

/// What the ping's headers say of the daemon, when they say enough: the engine and its API.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PingedEngine {
    engine: EngineVersion,
    api: ApiVersion,
}

/// Reads the engine and its API version from the headers of a ping's answer, through
/// [`ENGINES`]. `None` when either is missing or unreadable: the preflight then asks
/// `GET /version`.
fn engine_from_ping(headers: &PingHeaders) -> Option<PingedEngine> {
    let api = ApiVersion::parse(headers.get("Api-Version")?)?;
    let server = headers.get("Server").and_then(product_and_version);
    let engine = ENGINES.iter().find_map(|signature| {
        if let Some((product, version)) = server {
            if product == signature.server_product {
                return Some(EngineVersion {
                    name: signature.name,
                    version: version.to_owned(),
                });
            }
        }
        let version = headers.get(signature.version_header?)?.trim();
        (!version.is_empty()).then(|| EngineVersion {
            name: signature.name,
            version: version.to_owned(),
        })
    })?;
    Some(PingedEngine { engine, api })
}

/// `Docker/20.10.24+dfsg1 (linux)` → (`Docker`, `20.10.24+dfsg1`).
fn product_and_version(server: &str) -> Option<(&str, &str)> {
    let token = server.split_whitespace().next()?;
    let (product, version) = token.split_once('/')?;
    (!product.is_empty() && !version.is_empty()).then_some((product, version))
}

/// The engine named by `GET /version`'s components, through [`ENGINES`].
fn engine_from_version(version: &bollard::models::SystemVersion) -> EngineVersion {
    let components = version.components.as_deref().unwrap_or_default();
    ENGINES
        .iter()
        .find_map(|signature| {
            let component = components
                .iter()
                .find(|component| component.name == signature.version_component)?;
            Some(EngineVersion {
                name: signature.name,
                version: component.version.clone(),
            })
        })
        .unwrap_or_else(|| EngineVersion {
            name: "unknown engine",
            version: version.version.clone().unwrap_or_default(),
        })
}

/// What the preflight learnt of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// The engine and its version, e.g. `Docker 20.10.24+dfsg1` or `Podman 4.3.1`.
    pub engine_version: EngineVersion,
    /// The daemon's own API version.
    pub server_api: ApiVersion,
    /// The version put on every request: the daemon's, capped at [`NEWEST_API`].
    pub wire_api: ApiVersion,
}

/// A connected, version-negotiated Docker client. Every call it makes is bounded by
/// `--docker-timeout` and obeys the pass's [`Stop`] (see [`call`]).
#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
    /// The transport under `docker`, for the requests whose answers are read by `answer.rs`.
    transport: Transport,
    host: String,
    timeout: Duration,
    daemon: Daemon,
    stop: Arc<Stop>,
}

/// Why a call got no answer that the daemon gave.
#[derive(Debug)]
enum CallError {
    /// The daemon answered with an error, or the transport failed.
    Failed(BollardError),
    /// No answer within `--docker-timeout`.
    TimedOut,
    /// A signal came first (see [`Stop::guard`]).
    Cut(Cut),
}

impl CallError {
    /// The failure in one line, for a listing's or a query's error.
    fn describe(&self, timeout: Duration) -> String {
        match self {
            CallError::Failed(BollardError::DockerResponseServerError {
                status_code,
                message,
            }) => format!("Docker answered {status_code}: {message}"),
            CallError::Failed(error) => diagnose::describe(error),
            CallError::TimedOut => format!(
                "no answer within {} (--docker-timeout)",
                humantime::format_duration(timeout)
            ),
            CallError::Cut(Cut::NotStarted) => "not asked: the run was interrupted".to_owned(),
            CallError::Cut(Cut::Abandoned) => {
                "abandoned after a second signal before Docker answered".to_owned()
            }
        }
    }
}

/// Makes one call to the daemon: bounded by `timeout`, not started after a signal, and its wait
/// abandoned after a second one. Every call of a pass, the preflight's included, goes through
/// here, so that each obeys the signals the same way.
async fn call<T>(
    stop: &Stop,
    timeout: Duration,
    call: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, CallError> {
    match stop.guard(tokio::time::timeout(timeout, call)).await {
        Ok(Ok(Ok(answer))) => Ok(answer),
        Ok(Err(_) | Ok(Err(BollardError::RequestTimeoutError))) => Err(CallError::TimedOut),
        Ok(Ok(Err(error))) => Err(CallError::Failed(error)),
        Err(cut) => Err(CallError::Cut(cut)),
    }
}

/// Whether a failed request certainly never reached the daemon: only a connection that could
/// not be made says so. Any other transport failure may have come after the request was
/// written.
fn never_sent(error: &BollardError) -> bool {
    matches!(error, BollardError::HyperLegacyError { err } if err.is_connect())
}

impl DockerClient {
    /// Connects and runs the preflight: ping, then version negotiation. Each call is bounded by
    /// `timeout` and obeys `stop`, as every later call does.
    pub async fn connect(
        host: &DockerHost,
        timeout: Duration,
        stop: Arc<Stop>,
    ) -> Result<Self, DockerError> {
        let host_text = host.to_string();
        let prefix = Arc::new(OnceLock::new());
        let ping = Arc::new(OnceLock::new());
        let (docker, transport) =
            build_client(host, timeout, Arc::clone(&prefix), Arc::clone(&ping)).map_err(
                |reason| DockerError::Connect {
                    host: host_text.clone(),
                    reason,
                },
            )?;
        match call(&stop, timeout, docker.ping()).await {
            Ok(_) => {}
            Err(CallError::Failed(error)) => return Err(diagnose::ping_failure(host, &error)),
            Err(CallError::Cut(_)) => {
                return Err(DockerError::Interrupted {
                    host: host_text,
                    call: "ping",
                })
            }
            Err(error) => {
                return Err(DockerError::Ping {
                    reason: error.describe(timeout),
                    host: host_text,
                })
            }
        }
        // The answer to the ping names the engine and its API version in its headers; reading
        // them there saves `GET /version`, which costs Docker several milliseconds (it asks
        // containerd and the runtimes for theirs) and Podman 0.2-0.6 s, on every run.
        let pinged = ping.get().and_then(engine_from_ping);
        let (engine_version, server_api) = if let Some(pinged) = pinged {
            (pinged.engine, pinged.api)
        } else {
            tracing::info!(
                host = %host_text,
                "the daemon's answer to the ping does not name its engine and API version \
                 (a proxy that drops headers?); asking GET /version"
            );
            let version =
                call(&stop, timeout, docker.version())
                    .await
                    .map_err(|error| match error {
                        CallError::Cut(_) => DockerError::Interrupted {
                            host: host_text.clone(),
                            call: "version query",
                        },
                        error => DockerError::Version {
                            host: host_text.clone(),
                            reason: error.describe(timeout),
                        },
                    })?;
            let api_text = version.api_version.clone();
            let api = api_text
                .as_deref()
                .and_then(ApiVersion::parse)
                .ok_or_else(|| DockerError::Version {
                    host: host_text.clone(),
                    reason: format!("unreadable ApiVersion {api_text:?}"),
                })?;
            (engine_from_version(&version), api)
        };
        if server_api < OLDEST_API {
            return Err(DockerError::TooOld {
                host: host_text,
                engine: engine_version,
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
            transport,
            host: host_text,
            timeout,
            daemon,
            stop,
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

    /// The error of exit 69 for a listing of every container that failed where the records
    /// needed it (a dry run, or `--owner-label`); a listing fails with a signal only where the
    /// signal cut it short.
    #[must_use]
    pub fn list_error(&self, reason: String) -> DockerError {
        if self.stop.signalled().is_some() {
            DockerError::Interrupted {
                host: self.host.clone(),
                call: "listing",
            }
        } else {
            DockerError::List {
                host: self.host.clone(),
                reason,
            }
        }
    }

    /// One `GET` through the transport, made as every call is (see [`call`]): the body of a
    /// successful answer; an error status is the daemon's error, as bollard reports it. `path`
    /// is the path and query without the version prefix, which the transport adds.
    async fn get(&self, path: &str) -> Result<bytes::Bytes, CallError> {
        let request = hyper::Request::get(path)
            .body(bollard::body_full(bytes::Bytes::new()))
            .expect("a path of validated references and an encoded query is a valid request");
        let answer = async {
            let response = self.transport.send(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(BollardError::DockerResponseServerError {
                    status_code: status.as_u16(),
                    message: answer::error_message(&body),
                })
            }
        };
        call(&self.stop, self.timeout, answer).await
    }
}

impl ContainerEngine for DockerClient {
    async fn remove(&self, reference: &str, volumes: AnonymousVolumes) -> Removal {
        // Never force: a running container must stay, and Docker's refusal is the atomic
        // not-running guard. Anonymous volumes are kept (`v=false`) unless the operator asked
        // for them to go (`--remove-volumes`): removing data is the operator's call.
        let options = RemoveContainerOptions {
            force: false,
            v: volumes == AnonymousVolumes::Remove,
            link: false,
        };
        let removal = self.docker.remove_container(reference, Some(options));
        match call(&self.stop, self.timeout, removal).await {
            Ok(()) => Removal::Removed,
            Err(CallError::Failed(BollardError::DockerResponseServerError {
                status_code: 404,
                ..
            })) => Removal::NotFound,
            Err(CallError::Failed(BollardError::DockerResponseServerError {
                status_code,
                message,
            })) => Removal::Refused {
                status: status_code,
                message,
            },
            Err(CallError::Failed(error)) if never_sent(&error) => {
                Removal::Unreachable(diagnose::describe(&error))
            }
            Err(CallError::Failed(error)) => {
                Removal::Unanswered(Unanswered::ConnectionLost(diagnose::describe(&error)))
            }
            Err(CallError::TimedOut) => Removal::Unanswered(Unanswered::TimedOut),
            Err(CallError::Cut(Cut::NotStarted)) => Removal::Interrupted,
            Err(CallError::Cut(Cut::Abandoned)) => Removal::Unanswered(Unanswered::Abandoned),
        }
    }

    async fn inspect(&self, reference: &str) -> Inspection {
        self.inspect_asking(reference, "").await
    }

    async fn inspect_sized(&self, reference: &str) -> Inspection {
        self.inspect_asking(reference, "?size=true").await
    }

    async fn volume(&self, name: &str) -> VolumeLookup {
        // A volume's name has the syntax of a container reference in both engines; a name that
        // has not is never put in a request path.
        if let Err(reason) = ContainerRef::parse(name) {
            return VolumeLookup::Failed(format!("not looked up: {reason}"));
        }
        match self.get(&format!("/volumes/{name}")).await {
            Ok(_) => VolumeLookup::Exists,
            Err(CallError::Failed(BollardError::DockerResponseServerError {
                status_code: 404,
                ..
            })) => VolumeLookup::Gone,
            Err(CallError::Cut(_)) => VolumeLookup::Interrupted,
            Err(error) => VolumeLookup::Failed(error.describe(self.timeout)),
        }
    }

    async fn anonymity(&self) -> Anonymity {
        match self.daemon.engine_version.anonymous_volumes() {
            AnonymousMark::Configuration => Anonymity::ByConfiguration,
            AnonymousMark::Listed(path) => {
                let listed = self
                    .get(path)
                    .await
                    .map_err(|error| error.describe(self.timeout))
                    .and_then(|body| answer::anonymous_volumes(&body));
                match listed {
                    Ok(names) => Anonymity::Marked(names),
                    Err(reason) => Anonymity::Unknown(format!(
                        "cannot list the volumes of the {} daemon at {}: {reason}",
                        self.daemon.engine_version.name, self.host
                    )),
                }
            }
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
    /// One `GET /containers/{reference}/json`, with `query` (empty, or `?size=true`).
    async fn inspect_asking(&self, reference: &str, query: &str) -> Inspection {
        // Every reference is validated before it reaches here; this keeps the promise that
        // nothing else is ever put in a request path.
        if let Err(reason) = ContainerRef::parse(reference) {
            return Inspection::Failed(format!("not inspected: {reason}"));
        }
        match self
            .get(&format!("/containers/{reference}/json{query}"))
            .await
        {
            Ok(body) => match answer::inspection(&body) {
                Ok(info) => Inspection::Found(info),
                Err(reason) => Inspection::Failed(reason),
            },
            Err(CallError::Failed(BollardError::DockerResponseServerError {
                status_code: 404,
                ..
            })) => Inspection::NotFound,
            Err(CallError::Cut(_)) => Inspection::Interrupted,
            Err(error) => Inspection::Failed(error.describe(self.timeout)),
        }
    }

    /// One `GET /containers/json?all=1`, filtered by the daemon to a label when one is given.
    /// Entries without a usable id are left out, each logged.
    async fn list_filtered(&self, label: Option<&str>) -> Result<Vec<ContainerInfo>, String> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("all", "1");
        if let Some(key) = label {
            query.append_pair(
                "filters",
                &serde_json::json!({ "label": [key] }).to_string(),
            );
        }
        let body = self
            .get(&format!("/containers/json?{}", query.finish()))
            .await
            .map_err(|error| error.describe(self.timeout))?;
        let listing = answer::listing(&body)?;
        for left_out in &listing.left_out {
            tracing::warn!(
                names = %left_out.names.join(","),
                "the daemon listed a container that this pass leaves out: {}",
                Escaped(&left_out.reason)
            );
        }
        Ok(listing.containers)
    }
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

    /// A case: its name, the headers, and the engine's name, its version and the API read.
    type PingCase = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<(&'static str, &'static str, &'static str)>,
    );

    include!("../../tests/fixtures/engine_pings.rs");

    /// Answers no release sends as it is, and what the preflight reads there: `None` sends it
    /// to `GET /version`. The releases' own answers are in `CAPTURED_PINGS`.
    const ODD_PINGS: &[PingCase] = &[
        (
            "Podman behind a proxy that replaces Server",
            &[
                ("Api-Version", "1.41"),
                ("Libpod-Api-Version", "4.3.1"),
                ("Server", "nginx/1.22.1"),
            ],
            Some(("Podman", "4.3.1", "1.41")),
        ),
        (
            "Docker behind a proxy that drops Server",
            &[("Api-Version", "1.41")],
            None,
        ),
        (
            "a proxy that drops every header",
            &[("Content-Type", "text/plain; charset=utf-8")],
            None,
        ),
        (
            "an unreadable API version",
            &[("Api-Version", "one"), ("Server", "Docker/28.5.2 (linux)")],
            None,
        ),
        (
            "an unknown engine",
            &[("Api-Version", "1.45"), ("Server", "Moby/99 (linux)")],
            None,
        ),
    ];

    #[test]
    fn the_ping_names_each_engine_and_its_api_or_sends_the_preflight_to_version() {
        let captured = CAPTURED_PINGS.iter().map(|release| {
            let (name, version) = release
                .engine
                .split_once(' ')
                .expect("a captured engine is its name and its version");
            (
                release.name,
                release.headers,
                Some((name, version, release.api)),
            )
        });
        for (case, headers, expected) in captured.chain(ODD_PINGS.iter().copied()) {
            let found = engine_from_ping(&PingHeaders::from_pairs(headers));
            let found = found.as_ref().map(|pinged| {
                (
                    pinged.engine.name,
                    pinged.engine.version.as_str(),
                    pinged.api.to_string(),
                )
            });
            let expected = expected.map(|(name, version, api)| (name, version, api.to_owned()));
            assert_eq!(found, expected, "{case}");
        }
    }

    #[test]
    fn the_version_answer_names_the_engine_by_its_component() {
        let answer = |component: &str, version: &str| bollard::models::SystemVersion {
            version: Some("9.9.9".into()),
            components: Some(vec![bollard::models::SystemVersionComponents {
                name: component.into(),
                version: version.into(),
                details: None,
            }]),
            ..bollard::models::SystemVersion::default()
        };
        assert_eq!(
            engine_from_version(&answer("Podman Engine", "4.3.1")).to_string(),
            "Podman 4.3.1"
        );
        assert_eq!(
            engine_from_version(&answer("Engine", "20.10.24+dfsg1")).to_string(),
            "Docker 20.10.24+dfsg1"
        );
        assert_eq!(
            engine_from_version(&answer("Other", "1")).to_string(),
            "unknown engine 9.9.9"
        );
    }
}

//! The HTTP transport under bollard: the negotiated API version prefix on every request, and
//! connections kept alive.
//!
//! bollard 0.21 builds each request URI by joining an absolute path onto `/v1.NN/`, which drops
//! the version (its issue #736), so every request would run at whatever default the daemon has;
//! its own transports also keep no idle connections. This transport fixes both, and keeps the
//! version headers of the daemon's answer to the ping for the preflight. It is the one file to
//! delete once bollard sends the prefix itself.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{BollardRequest, ClientVersion, Docker};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ApiVersion;
use crate::config::DockerHost;

/// The version headers of the daemon's answer to `GET /_ping`.
#[derive(Debug, Clone, Default)]
pub(super) struct PingHeaders {
    pub(super) api_version: Option<String>,
    pub(super) server: Option<String>,
}

impl PingHeaders {
    fn read(headers: &hyper::HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            api_version: text("api-version"),
            server: text("server"),
        }
    }
}

/// Whether a request path (version prefix and query aside) is the ping.
fn is_ping(request: &BollardRequest) -> bool {
    strip_version(request.uri().path()) == "/_ping"
}

pub(super) fn build_client(
    host: &DockerHost,
    timeout: Duration,
    prefix: Arc<OnceLock<String>>,
    ping: Arc<OnceLock<PingHeaders>>,
) -> Result<Docker, BollardError> {
    // bollard's own timeout is whole seconds; the precise one is applied around each call.
    let seconds = timeout.as_secs().saturating_add(1);
    // The version given here is never used on the wire: the transport sets the prefix.
    let version = ClientVersion {
        major_version: 1,
        minor_version: 41,
    };
    match host {
        DockerHost::Unix(socket) => {
            let socket: PathBuf = socket.clone();
            let client = Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
            Docker::connect_with_custom_transport(
                move |mut request: BollardRequest| {
                    let path = versioned_path(&request, &prefix);
                    let ping = is_ping(&request).then(|| Arc::clone(&ping));
                    *request.uri_mut() = hyperlocal::Uri::new(&socket, &path).into();
                    let response = client.request(request);
                    async move { keep_ping_headers(response.await, ping) }
                },
                Some("unix://docker"),
                seconds,
                &version,
            )
        }
        DockerHost::Tcp(address) => {
            let base = format!("http://{address}");
            let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            let transport = move |mut request: BollardRequest| {
                let uri = format!("{base}{}", versioned_path(&request, &prefix));
                let ping = is_ping(&request).then(|| Arc::clone(&ping));
                let response = uri.parse().map(|uri| {
                    *request.uri_mut() = uri;
                    client.request(request)
                });
                async move {
                    match response {
                        Ok(response) => keep_ping_headers(response.await, ping),
                        Err(error) => Err(BollardError::from(error)),
                    }
                }
            };
            Docker::connect_with_custom_transport(
                transport,
                Some("tcp://docker"),
                seconds,
                &version,
            )
        }
    }
}

/// Passes a response on, first keeping the version headers of a ping's answer.
fn keep_ping_headers<E: Into<BollardError>>(
    response: Result<hyper::Response<hyper::body::Incoming>, E>,
    ping: Option<Arc<OnceLock<PingHeaders>>>,
) -> Result<hyper::Response<hyper::body::Incoming>, BollardError> {
    let response = response.map_err(Into::into)?;
    if let Some(slot) = ping {
        // Only the first ping's answer is kept; there is one per run.
        let _ = slot.set(PingHeaders::read(response.headers()));
    }
    Ok(response)
}

/// The request's path and query with the negotiated version prefix, replacing any version
/// prefix bollard may have put there itself.
fn versioned_path(request: &BollardRequest, prefix: &OnceLock<String>) -> String {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let unversioned = strip_version(path_and_query);
    match prefix.get() {
        Some(prefix) => format!("{prefix}{unversioned}"),
        None => unversioned.to_owned(),
    }
}

pub(super) fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    if ApiVersion::parse(&rest[..end]).is_some() {
        &rest[end..]
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_a_version_prefix() {
        assert_eq!(strip_version("/v1.53/containers/x"), "/containers/x");
        assert_eq!(strip_version("/containers/x"), "/containers/x");
        assert_eq!(strip_version("/volumes/v1"), "/volumes/v1");
        assert_eq!(strip_version("/vx.y/z"), "/vx.y/z");
    }
}

//! The HTTP transport under bollard, for all three kinds of daemon address: a unix socket, plain
//! TCP, and TCP over TLS (rustls). It puts the negotiated API version prefix on every request,
//! keeps connections alive, names rt-cleanup in `User-Agent`, and keeps the headers of the
//! daemon's answer to the ping for the preflight. The listing and the inspection are sent
//! through it directly, not through bollard, and read by `answer.rs`.
//!
//! Why a transport of its own: bollard 0.21 builds each request URI by joining an absolute path
//! onto `/v1.NN/`, which drops the version (its issue #736), so every request would run at
//! whatever default the daemon has; its own transports keep no idle connection; its `ping()`
//! returns the body only, not the headers that name the engine; and its TLS transport trusts the
//! system roots besides the given CA. When a bollard release sends the prefix itself (0.22 is
//! expected to), [`versioned_path`], [`strip_version`] and the `prefix` cell are what to delete;
//! the connectors (keep-alive, TLS with the Docker CLI's exclusive CA) and the ping headers stay,
//! unless bollard has grown those too.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{BollardRequest, ClientVersion, Docker};
use hyper::header::{HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{tls, ApiVersion};
use crate::config::DockerHost;

/// Sent with every request, so that a daemon's request log names the client.
const AGENT: &str = concat!("rt-cleanup/", env!("CARGO_PKG_VERSION"));

/// The headers of the daemon's answer to `GET /_ping`.
#[derive(Debug, Clone, Default)]
pub(super) struct PingHeaders(hyper::HeaderMap);

impl PingHeaders {
    /// Headers given as `(name, value)` pairs, as a test or a table states them.
    #[cfg(test)]
    pub(super) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut headers = hyper::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .expect("a test's header name is valid"),
                hyper::header::HeaderValue::from_str(value)
                    .expect("a test's header value is valid"),
            );
        }
        Self(headers)
    }

    /// The value of a header, by its name in any case, where it is text.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }
}

/// Whether a request path (version prefix and query aside) is the ping.
fn is_ping(request: &BollardRequest) -> bool {
    strip_version(request.uri().path()) == "/_ping"
}

/// Sends one request to the daemon over the transport: the version prefix put on its path, the
/// client named, the ping's headers kept. bollard's requests go through it, and so do the
/// requests whose answers rt-cleanup reads into types of its own (`answer.rs`), over the same
/// kept-alive connections.
#[derive(Clone)]
pub(super) struct Transport(Arc<dyn Fn(BollardRequest) -> Answer + Send + Sync>);

impl Transport {
    /// Sends a request whose URI is a path and query, e.g. `/containers/json?all=1`.
    pub(super) fn send(&self, request: BollardRequest) -> Answer {
        (self.0)(request)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

/// A bollard client over this transport, and the transport itself. An error is a TLS file that
/// cannot be used, described for the operator.
pub(super) fn build_client(
    host: &DockerHost,
    timeout: Duration,
    prefix: Arc<OnceLock<String>>,
    ping: Arc<OnceLock<PingHeaders>>,
) -> Result<(Docker, Transport), String> {
    // bollard's own timeout is whole seconds; the precise one is applied around each call.
    let seconds = timeout.as_secs().saturating_add(1);
    // The version given here is never used on the wire: the transport sets the prefix.
    let version = ClientVersion {
        major_version: 1,
        minor_version: 41,
    };
    let (transport, address) = match host {
        DockerHost::Unix(socket) => {
            let socket: PathBuf = socket.clone();
            let client = Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
            let send = move |mut request: BollardRequest| -> Answer {
                let path = versioned_path(&request, &prefix);
                let ping = is_ping(&request).then(|| Arc::clone(&ping));
                *request.uri_mut() = hyperlocal::Uri::new(&socket, &path).into();
                name_the_client(&mut request);
                let response = client.request(request);
                Box::pin(async move { keep_ping_headers(response.await, ping) })
            };
            (Transport(Arc::new(send)), "unix://docker")
        }
        DockerHost::Tcp(address) => {
            let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            let send = over_http(
                move |request| client.request(request),
                format!("http://{address}"),
                prefix,
                ping,
            );
            (Transport(Arc::new(send)), "tcp://docker")
        }
        DockerHost::Tls { address, files } => {
            let config = tls::client_config(files)?;
            // https_only: an http:// URI is refused by the connector itself, so nothing is ever
            // sent in plain text, whatever a later change does to the URIs.
            let connector = HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .build();
            let client = Client::builder(TokioExecutor::new()).build(connector);
            let send = over_http(
                move |request| client.request(request),
                format!("https://{address}"),
                prefix,
                ping,
            );
            (Transport(Arc::new(send)), "tcp://docker")
        }
    };
    let for_bollard = transport.clone();
    let docker = Docker::connect_with_custom_transport(
        move |request| for_bollard.send(request),
        Some(address),
        seconds,
        &version,
    )
    .map_err(|error| error.to_string())?;
    Ok((docker, transport))
}

/// The answer to one request, as bollard's custom transports give it.
pub(super) type Answer = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<hyper::Response<hyper::body::Incoming>, BollardError>,
            > + Send,
    >,
>;

/// The transport over a TCP client (plain or TLS) to `base`, `http://host:port` or
/// `https://host:port`; `send` is the client's `request` (a closure, since bollard does not name
/// the body type of its requests).
fn over_http<S, F>(
    send: S,
    base: String,
    prefix: Arc<OnceLock<String>>,
    ping: Arc<OnceLock<PingHeaders>>,
) -> impl Fn(BollardRequest) -> Answer + Send + Sync
where
    S: Fn(BollardRequest) -> F + Send + Sync,
    F: std::future::Future<
            Output = Result<
                hyper::Response<hyper::body::Incoming>,
                hyper_util::client::legacy::Error,
            >,
        > + Send
        + 'static,
{
    move |mut request: BollardRequest| {
        let uri = format!("{base}{}", versioned_path(&request, &prefix));
        let ping = is_ping(&request).then(|| Arc::clone(&ping));
        name_the_client(&mut request);
        let response = uri.parse().map(|uri| {
            *request.uri_mut() = uri;
            send(request)
        });
        Box::pin(async move {
            match response {
                Ok(response) => keep_ping_headers(response.await, ping),
                Err(error) => Err(BollardError::from(error)),
            }
        })
    }
}

fn name_the_client(request: &mut BollardRequest) {
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static(AGENT));
}

/// Passes a response on, first keeping the headers of a ping's answer.
fn keep_ping_headers<E: Into<BollardError>>(
    response: Result<hyper::Response<hyper::body::Incoming>, E>,
    ping: Option<Arc<OnceLock<PingHeaders>>>,
) -> Result<hyper::Response<hyper::body::Incoming>, BollardError> {
    let response = response.map_err(Into::into)?;
    if let Some(slot) = ping {
        // Only the first ping's answer is kept; there is one per run.
        let _ = slot.set(PingHeaders(response.headers().clone()));
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

    #[test]
    fn ping_headers_are_found_in_any_case() {
        let headers = PingHeaders::from_pairs(&[("Api-Version", "1.41")]);
        assert_eq!(headers.get("api-version"), Some("1.41"));
        assert_eq!(headers.get("API-VERSION"), Some("1.41"));
        assert_eq!(headers.get("server"), None);
    }
}

//! A tiny HTTP daemon on loopback that answers `GET /_ping` as a given engine release would, with
//! that release's headers, so that the preflight's choice of API version can be tested against
//! every release without installing each one. It answers `/version` only when told to, every
//! other request as a test's closure says ([`FakeDaemon::serving`]: listings, inspections and
//! removals with any state or shape a daemon might send), and the rest 404 "No such container".
//! It records every request it gets.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the fake daemon got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRequest {
    /// `GET`, `DELETE`, …
    pub method: String,
    /// The path and query, e.g. `/v1.47/containers/c-1?force=false&v=false&link=false`.
    pub path: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// The fake daemon's answer to one request: a status and a body (JSON, or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAnswer {
    /// The HTTP status, e.g. 200, 204, 404, 500.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl FakeAnswer {
    /// A 200 answer with a JSON body.
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
        }
    }

    /// An error answer with Docker's `{"message": …}` body.
    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            body: serde_json::json!({ "message": message }).to_string(),
        }
    }

    /// 204, no body: a removal done.
    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: String::new(),
        }
    }
}

/// What a test's fake daemon answers to a request that is not the ping nor `/version`: given the
/// method and the path and query without the version prefix (`/containers/json?all=1`), an
/// answer, or `None` for the default 404.
type Routes = dyn Fn(&str, &str) -> Option<FakeAnswer> + Send + Sync;

/// The fake daemon; dropping it stops it.
pub struct FakeDaemon {
    /// `tcp://127.0.0.1:PORT`.
    pub host: String,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the fake daemon answers.
struct Answers {
    ping_headers: Vec<(String, String)>,
    version_body: Option<String>,
    routes: Box<Routes>,
}

impl FakeDaemon {
    /// Starts a daemon whose ping answer carries `ping_headers`, and whose `GET /version` answers
    /// `version_body` (JSON), or 404 when `None`.
    pub fn start(ping_headers: &[(&str, &str)], version_body: Option<&str>) -> Self {
        Self::serving(ping_headers, version_body, |_, _| None)
    }

    /// Starts a daemon as [`FakeDaemon::start`] does, that answers every other request as
    /// `routes` says (see [`Routes`]).
    pub fn serving(
        ping_headers: &[(&str, &str)],
        version_body: Option<&str>,
        routes: impl Fn(&str, &str) -> Option<FakeAnswer> + Send + Sync + 'static,
    ) -> Self {
        let answers = Arc::new(Answers {
            ping_headers: ping_headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            version_body: version_body.map(str::to_owned),
            routes: Box::new(routes),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        listener
            .set_nonblocking(true)
            .expect("a listener can be made non-blocking");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((connection, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    let (requests, answers) = (Arc::clone(&requests), Arc::clone(&answers));
                    std::thread::spawn(move || serve(connection, &answers, &requests));
                }
            })
        };
        Self {
            host: format!("tcp://127.0.0.1:{port}"),
            requests,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Every request so far, in the order they came.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests
            .lock()
            .expect("a thread that panicked holding the lock failed its test already")
            .clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection, request after request (the client keeps it alive), until it closes.
fn serve(connection: TcpStream, answers: &Answers, requests: &Mutex<Vec<FakeRequest>>) {
    let _ = connection.set_nonblocking(false);
    let Ok(mut writer) = connection.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(connection);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut user_agent = None;
        let mut body_length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("user-agent") {
                    user_agent = Some(value.trim().to_owned());
                } else if name.eq_ignore_ascii_case("content-length") {
                    body_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; body_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests
            .lock()
            .expect("a thread that panicked holding the lock failed its test already")
            .push(FakeRequest {
                method: method.clone(),
                path: path.clone(),
                user_agent,
            });
        // The path and query without the version prefix, e.g. `/containers/json?all=1`.
        let unversioned_path = path
            .strip_prefix("/v")
            .and_then(|rest| rest.split_once('/'))
            .map_or(path.clone(), |(_, rest)| format!("/{rest}"));
        let route = unversioned_path.split('?').next().unwrap_or_default();
        let unversioned = route.trim_start_matches('/');
        if unversioned != "_ping" && unversioned != "version" {
            if let Some(answer) = (answers.routes)(&method, &unversioned_path) {
                let response = respond(
                    &status_line(answer.status),
                    &[],
                    "application/json",
                    answer.body.len(),
                    &answer.body,
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
        }
        let response = match (unversioned, &answers.version_body) {
            ("_ping", _) => {
                // A HEAD ping gets the headers only, with the length a GET's body would have.
                let body = if method == "HEAD" { "" } else { "OK" };
                respond(
                    "200 OK",
                    &answers.ping_headers,
                    "text/plain; charset=utf-8",
                    2,
                    body,
                )
            }
            ("version", Some(version)) => {
                respond("200 OK", &[], "application/json", version.len(), version)
            }
            _ => {
                let reference = unversioned.rsplit('/').next().unwrap_or_default();
                let body = format!("{{\"message\":\"No such container: {reference}\"}}");
                respond("404 Not Found", &[], "application/json", body.len(), &body)
            }
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// `200 OK`, `404 Not Found`, … for a status.
fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        _ => "Status",
    };
    format!("{status} {reason}")
}

/// An HTTP/1.1 response.
fn respond(
    status: &str,
    headers: &[(String, String)],
    content_type: &str,
    length: usize,
    body: &str,
) -> String {
    let mut response = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        // Writing to a String cannot fail.
        let _ = write!(response, "{name}: {value}\r\n");
    }
    let _ = write!(
        response,
        "Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n{body}"
    );
    response
}

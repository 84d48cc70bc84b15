//! A fault proxy: a unix socket in front of a daemon's socket that passes, holds, delays, drops
//! or swallows chosen requests, and records every request it saw.
//!
//! rt-cleanup speaks HTTP/1.1 with keep-alive, so several requests travel on one connection: the
//! proxy reads each request whole (its head, then a `Content-Length` or chunked body) and each
//! answer whole (by `Content-Length`, chunks, or up to the daemon's close), and applies a fault to
//! one request at a time, never to a raw chunk of bytes.
//!
//! A test points rt-cleanup at [`FaultProxy::host`] and scripts faults by method and path:
//!
//! ```ignore
//! let proxy = FaultProxy::in_front_of_test_daemon()
//!     .with(Match::new("DELETE", "/containers/"), Which::Nth(1), Fault::Delay(SIX_SECONDS));
//! ```
//!
//! [`Fault::Delay`] is the realistic late answer: the client gives up after its timeout, and the
//! request still reaches the daemon afterwards, as a removal that was sent and not answered may
//! still be carried out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::daemon;

/// Which requests a rule applies to: a method (any when `None`) and a piece of the target (the
/// path with its query, e.g. `/v1.41/containers/abc/json`), unless the target also holds the
/// excluded piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    method: Option<String>,
    target: String,
    excluded: Option<String>,
}

impl Match {
    /// Requests of `method` whose target contains `target`.
    pub fn new(method: &str, target: &str) -> Self {
        Self {
            method: Some(method.to_owned()),
            target: target.to_owned(),
            excluded: None,
        }
    }

    /// Requests of any method whose target contains `target`.
    pub fn target(target: &str) -> Self {
        Self {
            method: None,
            target: target.to_owned(),
            excluded: None,
        }
    }

    /// `DELETE /containers/{ref}`: a removal.
    pub fn removal() -> Self {
        Self::new("DELETE", "/containers/")
    }

    /// `GET /containers/json`: a listing.
    pub fn listing() -> Self {
        Self::new("GET", "/containers/json")
    }

    /// `GET /containers/{id}/json`: the inspection of one container.
    pub fn inspection_of(id: &str) -> Self {
        Self::new("GET", &format!("/containers/{id}/json"))
    }

    /// `GET /containers/{ref}/json`: the inspection of any container (the listing,
    /// `GET /containers/json`, is not one).
    pub fn inspection() -> Self {
        Self {
            excluded: Some("/containers/json".to_owned()),
            ..Self::new("GET", "/json")
        }
    }

    /// `GET /_ping` or `HEAD /_ping`: the preflight's ping.
    pub fn ping() -> Self {
        Self::target("/_ping")
    }

    /// Whether a request of this method and target is one of these.
    pub fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && target.contains(&self.target)
            && self
                .excluded
                .as_deref()
                .is_none_or(|excluded| !target.contains(excluded))
    }
}

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards it and relays the answer.
    Pass,
    /// Holds it until [`FaultProxy::open`], then forwards it, whether or not the client still
    /// waits.
    Hold,
    /// Forwards it after this long, whether or not the client still waits (the daemon acts late),
    /// and relays the answer if it can.
    Delay(Duration),
    /// Forwards it at once (the daemon acts now) and relays the answer after this long.
    AnswerLate(Duration),
    /// Closes the client's connection without forwarding it.
    Drop,
    /// Forwards it and never answers: the connection stays open and silent until the client
    /// gives up.
    Swallow,
}

/// Which of a rule's matches get its fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Every match.
    Every,
    /// Only the n-th match, counted from 1; the others pass.
    Nth(usize),
}

struct Rule {
    matcher: Match,
    which: Which,
    fault: Fault,
    matched: usize,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, e.g. `DELETE /v1.41/containers/abc?force=false HTTP/1.1`.
    pub line: String,
    /// The method.
    pub method: String,
    /// The target (path and query).
    pub target: String,
    /// The client connection it came on, numbered from 0 in the order they were accepted.
    pub connection: usize,
    /// Whether its body was chunked (rt-cleanup sends none).
    pub chunked: bool,
    /// What the proxy did with it.
    pub fault: Fault,
    /// When it arrived.
    pub arrived: Instant,
    /// When it was forwarded to the daemon, if it was.
    pub forwarded: Option<Instant>,
    /// The daemon's status, once it answered.
    pub status: Option<u16>,
    /// When the answer was relayed to the client, if it was.
    pub answered: Option<Instant>,
    /// When the daemon was done with it: when its answer came, or, for a request that never
    /// reached the daemon (dropped, or the daemon refused the connection), when that was
    /// known. `None` while it is held, delayed, or being carried out.
    pub settled: Option<Instant>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    open: bool,
    held: usize,
    stopped: bool,
    connections: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Records a request and picks its fault: the first rule that acts on it decides.
    fn admit(&self, seen: Seen) -> (usize, Fault) {
        let mut state = self.lock();
        let mut fault = Fault::Pass;
        for rule in &mut state.rules {
            if !rule.matcher.matches(&seen.method, &seen.target) {
                continue;
            }
            rule.matched += 1;
            let acts = match rule.which {
                Which::Every => true,
                Which::Nth(n) => rule.matched == n,
            };
            if acts && fault == Fault::Pass {
                fault = rule.fault;
            }
        }
        if fault == Fault::Hold && state.open {
            fault = Fault::Pass;
        }
        let index = state.seen.len();
        state.seen.push(Seen { fault, ..seen });
        self.changed.notify_all();
        (index, fault)
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut Seen)) {
        change(&mut self.lock().seen[index]);
        self.changed.notify_all();
    }

    /// Holds a request until the proxy is opened or dropped.
    fn hold(&self) {
        let mut state = self.lock();
        state.held += 1;
        self.changed.notify_all();
        while !state.open && !state.stopped {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Waits until `done` holds for the state; false after `timeout`.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }
}

/// The proxy. Dropping it lets every held request through and stops accepting connections.
pub struct FaultProxy {
    path: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy that passes everything, in front of the daemon listening on `upstream` (a socket
    /// path); faults are added with [`with`](Self::with) or [`script`](Self::script).
    pub fn new(upstream: &Path) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = PathBuf::from(format!(
            "/tmp/rtc-p-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("the proxy's socket binds");
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared::default());
        let upstream = upstream.to_owned();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                while !shared.stopped() {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let connection = {
                                let mut state = shared.lock();
                                state.connections += 1;
                                state.connections - 1
                            };
                            let (upstream, shared) = (upstream.clone(), Arc::clone(&shared));
                            std::thread::spawn(move || {
                                serve(&client, &upstream, &shared, connection);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            path,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// A proxy in front of the running test's daemon (which must be on a unix socket).
    pub fn in_front_of_test_daemon() -> Self {
        let socket = daemon()
            .host
            .strip_prefix("unix://")
            .expect("the fault proxy needs the test daemon on a unix socket")
            .to_owned();
        Self::new(Path::new(&socket))
    }

    /// A proxy in front of the running test's daemon that holds every request `matcher` matches
    /// until [`open`](Self::open).
    pub fn holding(matcher: Match) -> Self {
        Self::in_front_of_test_daemon().with(matcher, Which::Every, Fault::Hold)
    }

    /// Adds a rule (see [`script`](Self::script)) and returns the proxy.
    #[must_use]
    pub fn with(self, matcher: Match, which: Which, fault: Fault) -> Self {
        self.script(matcher, which, fault);
        self
    }

    /// Adds a rule: `which` of the requests `matcher` matches get `fault`. Rules count their
    /// matches from when they are added; where several act on a request, the first added
    /// decides.
    pub fn script(&self, matcher: Match, which: Which, fault: Fault) {
        self.shared.lock().rules.push(Rule {
            matcher,
            which,
            fault,
            matched: 0,
        });
    }

    /// Replaces every rule with these (see [`script`](Self::script)), their counts starting
    /// afresh: one proxy can serve many runs, each with a script of its own, while its record of
    /// what it saw spans them all. Requests already held or delayed keep their fault.
    pub fn rescript(&self, rules: &[(Match, Which, Fault)]) {
        self.shared.lock().rules = rules
            .iter()
            .map(|(matcher, which, fault)| Rule {
                matcher: matcher.clone(),
                which: *which,
                fault: *fault,
                matched: 0,
            })
            .collect();
    }

    /// Whether the daemon is done with every request seen so far (see [`Seen::settled`]): none
    /// is held, delayed or being carried out, so none can still act on the daemon.
    pub fn settled(&self) -> bool {
        self.wait_settled(Duration::ZERO)
    }

    /// Waits until [`settled`](Self::settled) holds; false after `timeout`.
    pub fn wait_settled(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |state| {
            state.seen.iter().all(|seen| seen.settled.is_some())
        })
    }

    /// `unix:///…`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Waits until at least `count` requests are held; false after `timeout`.
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |state| state.held >= count)
    }

    /// How many requests have been held so far.
    pub fn held(&self) -> usize {
        self.shared.lock().held
    }

    /// Lets every held request through, and every later one that a rule would hold.
    pub fn open(&self) {
        self.shared.lock().open = true;
        self.shared.changed.notify_all();
    }

    /// Waits until `count` requests that `matcher` matches arrived; false after `timeout`.
    pub fn wait_seen(&self, matcher: &Match, count: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |state| {
            matching(&state.seen, matcher).count() >= count
        })
    }

    /// Waits until `count` requests that `matcher` matches reached the daemon and got its
    /// answer; false after `timeout`.
    pub fn wait_answered_by_daemon(
        &self,
        matcher: &Match,
        count: usize,
        timeout: Duration,
    ) -> bool {
        self.shared.wait_until(timeout, |state| {
            matching(&state.seen, matcher)
                .filter(|seen| seen.status.is_some())
                .count()
                >= count
        })
    }

    /// Every request seen so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// The requests seen so far from the `first` on (counted from 0 in the order they arrived),
    /// for a test that looks at the new ones of a long record again and again.
    pub fn seen_from(&self, first: usize) -> Vec<Seen> {
        let state = self.shared.lock();
        state.seen.get(first..).unwrap_or_default().to_vec()
    }

    /// How many requests were seen so far.
    pub fn seen_count(&self) -> usize {
        self.shared.lock().seen.len()
    }

    /// The requests seen so far that `matcher` matches.
    pub fn seen_matching(&self, matcher: &Match) -> Vec<Seen> {
        matching(&self.shared.lock().seen, matcher)
            .cloned()
            .collect()
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen().into_iter().map(|seen| seen.line).collect()
    }
}

fn matching<'a>(seen: &'a [Seen], matcher: &'a Match) -> impl Iterator<Item = &'a Seen> {
    seen.iter()
        .filter(|seen| matcher.matches(&seen.method, &seen.target))
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.open = true;
            state.stopped = true;
        }
        self.shared.changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One HTTP message read whole: its bytes as they came, and what the proxy needs of its head.
struct Message {
    bytes: Vec<u8>,
    /// The first line, without its line end.
    first_line: String,
    chunked: bool,
    /// The sender asked to close the connection after it (`Connection: close`), or its body
    /// ended with the connection.
    closes: bool,
}

/// How a message's body is delimited.
enum Body {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The head of a message: its bytes as they came, its first line, and its headers (names in
/// lower case).
struct Head {
    bytes: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
}

/// Reads the head of a message; `None` at a clean end of the connection.
fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut head = Head {
        bytes: Vec::new(),
        first_line: String::new(),
        headers: Vec::new(),
    };
    loop {
        let start = head.bytes.len();
        let n = reader.read_until(b'\n', &mut head.bytes).ok()?;
        if n == 0 {
            return None;
        }
        let line = String::from_utf8_lossy(&head.bytes[start..])
            .trim_end()
            .to_owned();
        if line.is_empty() {
            if start == 0 {
                // A stray line end between messages.
                head.bytes.clear();
                continue;
            }
            return Some(head);
        }
        if start == 0 {
            head.first_line = line;
        } else if let Some((name, value)) = line.split_once(':') {
            head.headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn closes(headers: &[(String, String)]) -> bool {
    header(headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Reads a body into `bytes`; false where the connection ended before it did.
fn read_body(reader: &mut impl BufRead, body: &Body, bytes: &mut Vec<u8>) -> bool {
    match body {
        Body::None => true,
        Body::Length(length) => {
            let start = bytes.len();
            bytes.resize(start + length, 0);
            reader.read_exact(&mut bytes[start..]).is_ok()
        }
        Body::UntilClose => reader.read_to_end(bytes).is_ok(),
        Body::Chunked => loop {
            let start = bytes.len();
            if reader.read_until(b'\n', bytes).unwrap_or(0) == 0 {
                return false;
            }
            let line = String::from_utf8_lossy(&bytes[start..]).trim().to_owned();
            let size = line.split(';').next().unwrap_or("");
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let start = bytes.len();
                    if reader.read_until(b'\n', bytes).unwrap_or(0) == 0 {
                        return false;
                    }
                    if bytes[start..].iter().all(u8::is_ascii_whitespace) {
                        return true;
                    }
                }
            }
            // The chunk and its line end.
            if !read_body(reader, &Body::Length(size + 2), bytes) {
                return false;
            }
        },
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Message> {
    let Head {
        mut bytes,
        first_line,
        headers,
    } = read_head(reader)?;
    let chunked = is_chunked(&headers);
    let body = if chunked {
        Body::Chunked
    } else {
        // A request with neither has no body (RFC 9112, 6.3).
        header(&headers, "content-length")
            .and_then(|length| length.parse().ok())
            .map_or(Body::None, Body::Length)
    };
    read_body(reader, &body, &mut bytes).then_some(Message {
        bytes,
        first_line,
        chunked,
        closes: closes(&headers),
    })
}

fn read_response(reader: &mut impl BufRead, method: &str) -> Option<Message> {
    let Head {
        mut bytes,
        first_line,
        headers,
    } = read_head(reader)?;
    let status = status_of(&first_line).unwrap_or(0);
    let chunked = is_chunked(&headers);
    let body = if method == "HEAD" || status / 100 == 1 || status == 204 || status == 304 {
        Body::None
    } else if chunked {
        Body::Chunked
    } else {
        header(&headers, "content-length")
            .and_then(|length| length.parse().ok())
            .map_or(Body::UntilClose, Body::Length)
    };
    let until_close = matches!(body, Body::UntilClose);
    read_body(reader, &body, &mut bytes).then_some(Message {
        bytes,
        first_line,
        chunked,
        closes: closes(&headers) || until_close,
    })
}

fn status_of(status_line: &str) -> Option<u16> {
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// The daemon's side of one client connection, opened at its first forwarded request.
struct Upstream {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Upstream {
    fn connect(path: &Path) -> Option<Self> {
        let stream = UnixStream::connect(path).ok()?;
        Some(Self {
            reader: BufReader::new(stream.try_clone().ok()?),
            writer: stream,
        })
    }
}

/// Serves one client connection, one request at a time (HTTP/1.1 clients do not pipeline).
fn serve(client: &UnixStream, upstream_path: &Path, shared: &Shared, connection: usize) {
    let Ok(client_reader) = client.try_clone() else {
        return;
    };
    let mut from_client = BufReader::new(client_reader);
    let mut to_client = client;
    let mut upstream: Option<Upstream> = None;
    while let Some(request) = read_request(&mut from_client) {
        let mut parts = request.first_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let (index, fault) = shared.admit(Seen {
            line: request.first_line.clone(),
            method: method.clone(),
            target,
            connection,
            chunked: request.chunked,
            fault: Fault::Pass,
            arrived: Instant::now(),
            forwarded: None,
            status: None,
            answered: None,
            settled: None,
        });
        let never_reaches_daemon =
            || shared.update(index, |seen| seen.settled = Some(Instant::now()));
        match fault {
            Fault::Drop => {
                never_reaches_daemon();
                let _ = client.shutdown(std::net::Shutdown::Both);
                return;
            }
            Fault::Hold => shared.hold(),
            Fault::Delay(delay) => std::thread::sleep(delay),
            Fault::Pass | Fault::AnswerLate(_) | Fault::Swallow => {}
        }
        // A daemon that is gone (killed) refuses the connection: the client's connection is
        // simply closed, as a dead daemon's would be.
        if upstream.is_none() {
            upstream = Upstream::connect(upstream_path);
        }
        let Some(daemon) = upstream.as_mut() else {
            never_reaches_daemon();
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        };
        if daemon.writer.write_all(&request.bytes).is_err() {
            never_reaches_daemon();
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        shared.update(index, |seen| seen.forwarded = Some(Instant::now()));
        let Some(response) = read_response(&mut daemon.reader, &method) else {
            // The daemon took the request and closed the connection without an answer: it is
            // done with it, whatever it did.
            shared.update(index, |seen| seen.settled = Some(Instant::now()));
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        };
        shared.update(index, |seen| {
            seen.status = status_of(&response.first_line);
            seen.settled = Some(Instant::now());
        });
        match fault {
            Fault::Swallow => {
                wait_for_close(client, shared);
                return;
            }
            Fault::AnswerLate(delay) => std::thread::sleep(delay),
            _ => {}
        }
        if to_client.write_all(&response.bytes).is_err() {
            return;
        }
        shared.update(index, |seen| seen.answered = Some(Instant::now()));
        if response.closes {
            upstream = None;
        }
        if request.closes {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// Keeps a swallowed request's connection open and silent until the client closes it or the
/// proxy is dropped.
fn wait_for_close(client: &UnixStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let mut reader = client;
    let mut buffer = [0_u8; 4096];
    while !shared.stopped() {
        match reader.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

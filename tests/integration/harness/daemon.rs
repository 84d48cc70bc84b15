//! The test daemon that `scripts/test.sh` started, the docker CLI against it, and the
//! containers of one test case.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CASE_LABEL, RUN_LABEL};

/// The test daemon, as `scripts/test-daemon.sh` announced it.
#[derive(Debug)]
pub struct Daemon {
    /// `unix:///…` or `tcp://…`.
    pub host: String,
    /// The image containers are made from.
    pub image: String,
    /// The private daemon's log (it runs with `--debug`), where one was started.
    pub log: Option<PathBuf>,
    /// The private daemon's pid file, where one was started.
    pub pidfile: Option<PathBuf>,
    /// This test run's id, the value of [`RUN_LABEL`].
    pub run_id: String,
}

/// The test daemon; panics with what to do when there is none.
pub fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let host = std::env::var("RT_CLEANUP_TEST_DOCKER_HOST").unwrap_or_else(|_| {
            panic!(
                "no Docker daemon for the integration tests: RT_CLEANUP_TEST_DOCKER_HOST is not \
                 set. Run the tests with scripts/test.sh, which installs and starts a private \
                 dockerd, or set RT_CLEANUP_TEST_DOCKER_HOST (and RT_CLEANUP_TEST_IMAGE) to a \
                 daemon of your own."
            )
        });
        let image = std::env::var("RT_CLEANUP_TEST_IMAGE")
            .unwrap_or_else(|_| "rt-cleanup-test/busybox:1".to_owned());
        let run_id = std::env::var("RT_CLEANUP_TEST_RUN").unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            format!("{}-{nanos}", std::process::id())
        });
        let daemon = Daemon {
            host,
            image,
            log: std::env::var_os("RT_CLEANUP_TEST_DAEMON_LOG").map(PathBuf::from),
            pidfile: std::env::var_os("RT_CLEANUP_TEST_DAEMON_PIDFILE").map(PathBuf::from),
            run_id,
        };
        let version = docker_cli(
            &daemon.host,
            &["version", "--format", "{{.Server.APIVersion}}"],
        );
        assert!(
            version.status.success(),
            "the test Docker daemon at {} does not answer: {}. Start it with \
             scripts/test-daemon.sh start, or run scripts/test.sh.",
            daemon.host,
            String::from_utf8_lossy(&version.stderr).trim()
        );
        daemon
    })
}

pub(super) fn docker_cli(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run the docker CLI ({error}); is docker.io installed?")
        })
}

/// Runs the docker CLI against the test daemon and returns its trimmed stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let output = docker_cli(&daemon().host, args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A name no other test of any run uses: the prefix, this process and a counter.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Containers made by one test case, force-removed when it ends (and only those).
pub struct Containers {
    case: String,
    host: String,
}

impl Containers {
    /// Containers for the named test case.
    /// Fails the test here, with what to run, when there is no test daemon: before anything
    /// exists that a drop during the unwinding would have to clean up.
    pub fn new(case: &str) -> Self {
        Self {
            case: unique_name(case),
            host: daemon().host.clone(),
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Vec<String> {
        let daemon = daemon();
        let mut args = vec![
            "--label".to_owned(),
            format!("{RUN_LABEL}={}", daemon.run_id),
            "--label".to_owned(),
            format!("{CASE_LABEL}={}", self.case),
        ];
        for (key, value) in extra {
            args.push("--label".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }

    /// Creates a stopped (never started) container; returns its full id.
    pub fn create(&self, extra_labels: &[(&str, &str)]) -> String {
        self.make("create", None, extra_labels)
    }

    /// Creates a stopped container with a name; returns its full id.
    pub fn create_named(&self, name: &str, extra_labels: &[(&str, &str)]) -> String {
        self.make("create", Some(name), extra_labels)
    }

    /// Starts a running container; returns its full id.
    pub fn run(&self, extra_labels: &[(&str, &str)]) -> String {
        self.make("run", None, extra_labels)
    }

    /// Starts a container with labels running `command` (in the test image); returns its full id.
    pub fn run_labelled_command(&self, extra_labels: &[(&str, &str)], command: &[&str]) -> String {
        let mut args: Vec<String> =
            vec!["run".into(), "-d".into(), "--network".into(), "none".into()];
        args.extend(self.labels(extra_labels));
        args.push(daemon().image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }

    /// Starts a container running `command` (in the test image); returns its full id.
    pub fn run_command(&self, command: &[&str]) -> String {
        let mut args: Vec<String> =
            vec!["run".into(), "-d".into(), "--network".into(), "none".into()];
        args.extend(self.labels(&[]));
        args.push(daemon().image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }

    fn make(&self, verb: &str, name: Option<&str>, extra_labels: &[(&str, &str)]) -> String {
        let mut args: Vec<String> = vec![verb.to_owned()];
        if verb == "run" {
            args.push("-d".to_owned());
        }
        args.extend(["--network".to_owned(), "none".to_owned()]);
        if let Some(name) = name {
            args.extend(["--name".to_owned(), name.to_owned()]);
        }
        args.extend(self.labels(extra_labels));
        args.push(daemon().image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }
}

/// Whether a container exists on the test daemon.
pub fn exists(reference: &str) -> bool {
    exists_on(&daemon().host, reference)
}

/// A container's state (`created`, `running`, …) on the test daemon, or `None` when it does not
/// exist.
pub fn container_state(reference: &str) -> Option<String> {
    container_state_on(&daemon().host, reference)
}

pub(super) fn exists_on(host: &str, reference: &str) -> bool {
    docker_cli(host, &["container", "inspect", reference])
        .status
        .success()
}

pub(super) fn container_state_on(host: &str, reference: &str) -> Option<String> {
    let output = docker_cli(
        host,
        &[
            "container",
            "inspect",
            "--format",
            "{{.State.Status}}",
            reference,
        ],
    );
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Drop for Containers {
    /// Removes the case's containers. It runs while a failed test unwinds too, so it never
    /// panics: a second panic there would abort every other test of the binary.
    fn drop(&mut self) {
        let filter = format!("label={CASE_LABEL}={}", self.case);
        let cli = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .env("DOCKER_HOST", &self.host)
                .stdin(Stdio::null())
                .output()
                .ok()
        };
        let Some(listed) = cli(&["ps", "-aq", "--filter", &filter]) else {
            return;
        };
        let ids = String::from_utf8_lossy(&listed.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = cli(&args);
        }
    }
}

impl Containers {
    /// Creates `count` stopped containers through the Engine API, 8 at a time (the docker CLI
    /// would take a process each); `labels(n)` gives the n-th container's extra labels.
    /// Returns their full ids, in order.
    pub fn create_many(
        &self,
        count: usize,
        labels: impl Fn(usize) -> Vec<(String, String)> + Sync,
    ) -> Vec<String> {
        let socket = self
            .host
            .strip_prefix("unix://")
            .expect("creating through the API needs the daemon on a unix:// socket")
            .to_owned();
        let image = daemon().image.clone();
        let run_id = daemon().run_id.clone();
        let next = AtomicUsize::new(0);
        let ids = std::sync::Mutex::new(vec![String::new(); count]);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= count {
                        break;
                    }
                    let mut all = serde_json::Map::new();
                    all.insert(RUN_LABEL.into(), run_id.clone().into());
                    all.insert(CASE_LABEL.into(), self.case.clone().into());
                    for (key, value) in labels(n) {
                        all.insert(key, value.into());
                    }
                    let body = serde_json::json!({
                        "Image": image,
                        "Labels": all,
                        "HostConfig": {"NetworkMode": "none"},
                    })
                    .to_string();
                    let id = api_create(&socket, &body);
                    ids.lock().unwrap()[n] = id;
                });
            }
        });
        ids.into_inner().unwrap()
    }
}

/// `POST /containers/create` over the daemon's socket; returns the new container's id.
fn api_create(socket: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|error| panic!("cannot connect to {socket}: {error}"));
    write!(
        stream,
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201") || response.starts_with("HTTP/1.0 201"),
        "the daemon refused to create a container: {response}"
    );
    let start = response.find("\"Id\":\"").expect("the answer names the id") + 6;
    response[start..start + 64].to_owned()
}

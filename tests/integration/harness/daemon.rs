//! The test engines that `scripts/test.sh` started (Docker, and Podman's Docker-compatible
//! service, of Debian 12 and 13; of Debian unstable from `scripts/test.sh --unstable`), the
//! engine a test runs on, the docker CLI against it, and the containers of one test case.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CASE_LABEL, RUN_LABEL};

/// A container engine the integration tests run against, each through its own daemon: Debian 12's
/// Docker and Podman, Debian 13's, and Debian unstable's. The Debian 12 and 13 engines run in CI
/// (`scripts/test.sh` starts them); unstable's only from `scripts/test.sh --unstable`, which is why
/// their tests are ignored otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Docker Engine 20.10 (Debian 12's docker.io), from `scripts/test-daemon.sh`.
    Docker,
    /// Podman 4.3's Docker-compatible service (Debian 12's podman), from `scripts/test-podman.sh`.
    Podman,
    /// Docker Engine 26.1 (Debian 13's docker.io, containerd 1.7, runc 1.1), from
    /// `scripts/test-daemon.sh start debian13`.
    Docker26,
    /// Podman 5.4 (Debian 13's podman, runc 1.1), from `scripts/test-podman.sh start debian13`.
    Podman5,
    /// Debian unstable's Docker Engine (28.5 when this was written, containerd 2.1, runc 1.3),
    /// from `scripts/test-daemon.sh start unstable`.
    DockerUnstable,
    /// Debian unstable's Podman (5.8 when this was written, runc 1.3), from
    /// `scripts/test-podman.sh start unstable`.
    PodmanUnstable,
}

impl Engine {
    /// Every engine, in the order the tests run on them.
    pub const ALL: [Engine; 6] = [
        Engine::Docker,
        Engine::Podman,
        Engine::Docker26,
        Engine::Podman5,
        Engine::DockerUnstable,
        Engine::PodmanUnstable,
    ];

    /// The engine's product name, as rt-cleanup logs it (`engine=Docker …`, `engine=Podman …`).
    pub fn name(self) -> &'static str {
        if self.is_podman() {
            "Podman"
        } else {
            "Docker"
        }
    }

    /// Whether it is Podman's Docker-compatible service (and not Docker Engine).
    pub fn is_podman(self) -> bool {
        matches!(
            self,
            Engine::Podman | Engine::Podman5 | Engine::PodmanUnstable
        )
    }

    /// The engine with the Debian release it comes from, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Engine::Docker => "Docker (Debian 12)",
            Engine::Podman => "Podman (Debian 12)",
            Engine::Docker26 => "Docker 26 (Debian 13)",
            Engine::Podman5 => "Podman 5 (Debian 13)",
            Engine::DockerUnstable => "Docker (Debian unstable)",
            Engine::PodmanUnstable => "Podman (Debian unstable)",
        }
    }

    /// The start script's prefix of the engine's variables, `<prefix>_HOST` and so on (Debian
    /// 12's Docker has names of its own, kept from before the other engines).
    fn prefix(self) -> &'static str {
        match self {
            Engine::Docker => "RT_CLEANUP_TEST_DOCKER",
            Engine::Podman => "RT_CLEANUP_TEST_PODMAN",
            Engine::Docker26 => "RT_CLEANUP_TEST_DOCKER26",
            Engine::Podman5 => "RT_CLEANUP_TEST_PODMAN5",
            Engine::DockerUnstable => "RT_CLEANUP_TEST_DOCKER_UNSTABLE",
            Engine::PodmanUnstable => "RT_CLEANUP_TEST_PODMAN_UNSTABLE",
        }
    }

    /// The variable that names the root directory of the engine's private daemon, which its
    /// start script uses instead of the default, e.g. `RT_CLEANUP_TEST_PODMAN5_ROOT` (Debian 12's
    /// Docker has `RT_CLEANUP_TEST_ROOT`).
    pub fn root_variable(self) -> String {
        match self {
            Engine::Docker => "RT_CLEANUP_TEST_ROOT".to_owned(),
            _ => format!("{}_ROOT", self.prefix()),
        }
    }

    /// The variable that names the engine's daemon, e.g. `RT_CLEANUP_TEST_PODMAN5_HOST`.
    pub fn host_variable(self) -> String {
        format!("{}_HOST", self.prefix())
    }

    /// The variables the start script prints: the daemon, its request log, its image, its pid
    /// file.
    fn variables(self) -> [String; 4] {
        match self {
            Engine::Docker => [
                "RT_CLEANUP_TEST_DOCKER_HOST".to_owned(),
                "RT_CLEANUP_TEST_DAEMON_LOG".to_owned(),
                "RT_CLEANUP_TEST_IMAGE".to_owned(),
                "RT_CLEANUP_TEST_DAEMON_PIDFILE".to_owned(),
            ],
            _ => {
                ["HOST", "LOG", "IMAGE", "PIDFILE"].map(|what| format!("{}_{what}", self.prefix()))
            }
        }
    }

    /// What starts the engine's test daemon, for messages.
    fn script(self) -> &'static str {
        match self {
            Engine::Docker => {
                "scripts/test-daemon.sh, which installs docker.io and starts a private dockerd"
            }
            Engine::Podman => {
                "scripts/test-podman.sh, which installs podman and starts a private rootful \
                 `podman system service`"
            }
            Engine::Docker26 => {
                "scripts/test-daemon.sh start debian13, which fetches Debian 13's docker.io \
                 (scripts/fetch-engine.sh) and starts a private dockerd and containerd"
            }
            Engine::Podman5 => {
                "scripts/test-podman.sh start debian13, which fetches Debian 13's podman \
                 (scripts/fetch-engine.sh) and starts a private rootful `podman system service`"
            }
            Engine::DockerUnstable | Engine::PodmanUnstable => {
                "scripts/test.sh --unstable, which fetches Debian unstable's docker.io and podman \
                 (scripts/fetch-engine.sh), starts them and runs these tests"
            }
        }
    }
}

thread_local! {
    /// The engine of the test running on this thread. libtest runs every test on a thread of its
    /// own, so this is the test's engine: Docker unless the test body runs inside [`on_engine`].
    static CURRENT: Cell<Engine> = const { Cell::new(Engine::Docker) };
}

/// Runs a test body on `engine`: every helper of the harness (the daemon, [`Containers`],
/// [`exists`], `pass`, `run`, the request log) then uses that engine's daemon. A thread-local
/// rather than an argument, so that the contract's tests read the same on both engines;
/// threads a test spawns itself start on Docker, so helpers capture their daemon when made.
pub fn on_engine<T>(engine: Engine, body: impl FnOnce() -> T) -> T {
    struct Restore(Engine);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|current| current.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|current| current.replace(engine)));
    body()
}

/// The engine of the running test (see [`on_engine`]).
pub fn engine() -> Engine {
    CURRENT.with(Cell::get)
}

/// A test daemon, as its start script announced it.
#[derive(Debug)]
pub struct Daemon {
    /// Its engine.
    pub engine: Engine,
    /// `unix:///…` or `tcp://…`.
    pub host: String,
    /// The image containers are made from.
    pub image: String,
    /// The private daemon's request log (dockerd's `--debug` log, Podman's `--log-level=info`
    /// log), where one was started.
    pub log: Option<PathBuf>,
    /// The private daemon's pid file, where one was started.
    pub pidfile: Option<PathBuf>,
    /// This test run's id, the value of [`RUN_LABEL`].
    pub run_id: String,
}

/// The daemon of the running test's engine; panics with what to do when there is none.
pub fn daemon() -> &'static Daemon {
    daemon_of(engine())
}

/// This test run's id: `RT_CLEANUP_TEST_RUN` from scripts/test.sh, or one of this process.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        std::env::var("RT_CLEANUP_TEST_RUN").unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos();
            format!("{}-{nanos}", std::process::id())
        })
    })
}

/// The daemon of an engine; panics with what to do when there is none.
pub fn daemon_of(engine: Engine) -> &'static Daemon {
    static DAEMONS: [OnceLock<Daemon>; Engine::ALL.len()] =
        [const { OnceLock::new() }; Engine::ALL.len()];
    DAEMONS[engine as usize].get_or_init(|| {
        let [host_variable, log_variable, image_variable, pidfile_variable] = engine.variables();
        let host = std::env::var(&host_variable).unwrap_or_else(|_| {
            panic!(
                "no {} daemon for the integration tests: {host_variable} is not set. Run the \
                 tests with scripts/test.sh, which starts every test engine of CI, or start this \
                 one with {}, or set {host_variable} (and {image_variable}) to a daemon of your \
                 own.",
                engine.describe(),
                engine.script(),
            )
        });
        let image = std::env::var(&image_variable)
            .unwrap_or_else(|_| "rt-cleanup-test/busybox:1".to_owned());
        let daemon = Daemon {
            engine,
            host,
            image,
            log: std::env::var_os(&log_variable).map(PathBuf::from),
            pidfile: std::env::var_os(&pidfile_variable).map(PathBuf::from),
            run_id: run_id().to_owned(),
        };
        let version = docker_cli(
            &daemon.host,
            &["version", "--format", "{{.Server.APIVersion}}"],
        );
        assert!(
            version.status.success(),
            "the test {} daemon at {} does not answer: {}. Start it with {}, or run \
             scripts/test.sh.",
            engine.describe(),
            daemon.host,
            String::from_utf8_lossy(&version.stderr).trim(),
            engine.script(),
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

/// Runs the docker CLI against the running test's daemon and returns its trimmed stdout; panics
/// on failure.
pub fn docker(args: &[&str]) -> String {
    docker_on(daemon(), args)
}

/// Whether the docker CLI succeeds against the running test's daemon.
pub fn docker_succeeds(args: &[&str]) -> bool {
    docker_cli(&daemon().host, args).status.success()
}

/// Runs the docker CLI against a daemon and returns its trimmed stdout; panics on failure.
pub fn docker_on(daemon: &Daemon, args: &[&str]) -> String {
    let output = docker_cli(&daemon.host, args);
    assert!(
        output.status.success(),
        "docker {} ({} at {}) failed: {}",
        args.join(" "),
        daemon.engine.name(),
        daemon.host,
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

/// Containers made by one test case, force-removed when it ends (and only those), with their
/// anonymous volumes; and the named volumes and images the case made, removed after them.
pub struct Containers {
    case: String,
    host: String,
    image: String,
    /// Named volumes, and anonymous volumes a pass left dangling, to remove at the end.
    volumes: Mutex<Vec<String>>,
    /// Images made for the case, to remove at the end.
    images: Mutex<Vec<String>>,
}

impl Containers {
    /// Containers for the named test case, on the running test's engine.
    /// Fails the test here, with what to run, when there is no test daemon: before anything
    /// exists that a drop during the unwinding would have to clean up.
    pub fn new(case: &str) -> Self {
        let daemon = daemon();
        Self::on(&daemon.host, &daemon.image, case)
    }

    /// Containers for the named test case on the daemon at `host`, made from `image`.
    pub fn on(host: &str, image: &str, case: &str) -> Self {
        Self {
            case: unique_name(case),
            host: host.to_owned(),
            image: image.to_owned(),
            volumes: Mutex::default(),
            images: Mutex::default(),
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Vec<String> {
        let mut args = vec![
            "--label".to_owned(),
            format!("{RUN_LABEL}={}", run_id()),
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

    /// Creates a stopped (never started) container from `image` (the test image when `None`)
    /// with the extra `docker create` options (`-v /data`, `--volumes-from ID`, …); returns its
    /// full id.
    pub fn create_with(&self, image: Option<&str>, options: &[&str]) -> String {
        let mut args: Vec<String> = ["create", "--network", "none"].map(str::to_owned).to_vec();
        args.extend(self.labels(&[]));
        args.extend(options.iter().map(|option| (*option).to_owned()));
        args.push(image.unwrap_or(&self.image).to_owned());
        self.cli(&args)
    }

    /// Runs a container with the extra `docker run` options until `command` exits, and waits
    /// for it (at most 60 s); returns its full id. It is left `exited`, with what `command`
    /// wrote in its writable layer.
    pub fn run_to_exit(&self, options: &[&str], command: &[&str]) -> String {
        let mut args: Vec<String> = ["run", "-d", "--network", "none"]
            .map(str::to_owned)
            .to_vec();
        args.extend(self.labels(&[]));
        args.extend(options.iter().map(|option| (*option).to_owned()));
        args.push(self.image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        let id = self.cli(&args);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while container_state_on(&self.host, &id).as_deref() != Some("exited") {
            assert!(
                std::time::Instant::now() < deadline,
                "container {id} did not exit within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        id
    }

    /// Creates a named volume, removed when the case ends; returns its name.
    pub fn named_volume(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        self.cli(&[
            "volume".to_owned(),
            "create".to_owned(),
            "--label".to_owned(),
            format!("{CASE_LABEL}={}", self.case),
            name.clone(),
        ]);
        self.forget_volume_at_the_end(&name);
        name
    }

    /// Removes a volume when the case ends (an anonymous volume a pass left dangling), if it is
    /// still there then.
    pub fn forget_volume_at_the_end(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_owned());
    }

    /// Makes an image of the test image that declares `VOLUME path`, removed when the case ends;
    /// returns its name. Docker's compatible commit is used for Docker; Podman 4.3's refuses the
    /// docker CLI's commit, so Podman's own command line commits on its service's store
    /// ([`PodmanCli`]).
    pub fn image_with_volume(&self, path: &str) -> String {
        let image = format!("{}:1", unique_name("rt-cleanup-test/volume"));
        let base = self.create_with(None, &[]);
        let change = format!("VOLUME {path}");
        if daemon().engine.is_podman() {
            let cli = PodmanCli::of(daemon());
            let output = Command::new(&cli.wrapper)
                .args(["commit", "-q", "--change", &change, &base, &image])
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", cli.wrapper.display()));
            assert!(
                output.status.success(),
                "podman commit failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        } else {
            self.cli(&[
                "commit".to_owned(),
                "--change".to_owned(),
                change,
                base,
                image.clone(),
            ]);
        }
        self.images.lock().unwrap().push(image.clone());
        image
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
        args.push(self.image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        self.cli(&args)
    }

    /// Runs the docker CLI against this set's daemon; panics on failure.
    pub fn cli(&self, args: &[String]) -> String {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.try_cli(&args)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Runs the docker CLI against this set's daemon: its trimmed stdout, or what failed.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let output = docker_cli(&self.host, args);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(format!(
                "docker {} (at {}) failed: {}",
                args.join(" "),
                self.host,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
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
        args.push(self.image.clone());
        self.cli(&args)
    }
}

impl Containers {
    /// On the private Podman service of `scripts/test-podman.sh` (any release): starts a
    /// container running `command` with a copy of the service's podman binary, and deletes the
    /// copy while the container still runs. Podman's exit clean-up (conmon runs that binary's
    /// `container cleanup`) then cannot run, so the container stays `stopped` for good, as Podman
    /// shows a container whose clean-up failed or has not run yet. The container is made through
    /// the podman wrapper the start script wrote into the service's root ([`PodmanCli`]), with
    /// the program it runs replaced by the copy: the service's own store, configuration and
    /// locks. Waits, at most 30 s, until the service lists it `stopped` (the listing, not the
    /// inspection: Podman 5.8 inspects such a container as `exited`); returns its full id.
    /// Labelled as every container of the case, it is removed with the case.
    pub fn run_left_stopped(&self, extra_labels: &[(&str, &str)], command: &[&str]) -> String {
        let cli = PodmanCli::of(daemon());
        let copies = tempfile::tempdir().expect("a temp dir can be made");
        let copy = copies.path().join("podman");
        std::fs::copy(&cli.program, &copy)
            .unwrap_or_else(|error| panic!("cannot copy {}: {error}", cli.program.display()));
        let mut args: Vec<String> = ["run", "-d", "--network", "none"]
            .map(str::to_owned)
            .to_vec();
        args.extend(self.labels(extra_labels));
        args.push(self.image.clone());
        args.extend(command.iter().map(|part| (*part).to_owned()));
        let output = Command::new(&cli.wrapper)
            .args(&args)
            .env("RT_CLEANUP_TEST_PODMAN_PROGRAM", &copy)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", cli.wrapper.display()));
        std::fs::remove_file(&copy).expect("the copy of podman can be deleted");
        assert!(
            output.status.success(),
            "{} run (with a copy of {}) failed: {}",
            cli.wrapper.display(),
            cli.program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let state = listed_state_on(&self.host, &id);
            if state.as_deref() == Some("stopped") {
                return id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "container {id} is listed {state:?} 30 s after it was started, not stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// What `scripts/test-podman.sh` wrote into the root of a private Podman service for a command
/// line on its store: the wrapper `ROOT/podman`, which runs podman with the service's roots,
/// configuration files and flags (and runs the program `RT_CLEANUP_TEST_PODMAN_PROGRAM` names
/// instead, when set), and `ROOT/podman.program`, the release's podman binary it runs.
pub struct PodmanCli {
    /// `ROOT/podman`.
    pub wrapper: PathBuf,
    /// `ROOT/podman.program`.
    pub program: PathBuf,
}

impl PodmanCli {
    /// The wrapper of a test daemon's Podman service: in the root its start script names in
    /// `<PREFIX>_ROOT`, or beside its pid file. Panics, saying what to run, when there is none.
    pub fn of(daemon: &Daemon) -> Self {
        let engine = daemon.engine;
        assert!(
            engine.is_podman(),
            "only Podman has a podman command line, not {}",
            engine.describe()
        );
        let root_variable = engine.root_variable();
        let root = std::env::var_os(&root_variable)
            .map(PathBuf::from)
            .or_else(|| daemon.pidfile.as_ref()?.parent().map(PathBuf::from));
        let cli = root.map(|root| Self {
            wrapper: root.join("podman"),
            program: root.join("podman.program"),
        });
        match cli {
            Some(cli) if cli.wrapper.is_file() && cli.program.is_file() => cli,
            _ => panic!(
                "this test needs the private {} service of scripts/test-podman.sh and the podman \
                 wrapper it writes into the service's root (ROOT/podman and ROOT/podman.program, \
                 ROOT from {root_variable} or beside {}): there is none. Start it with {} (a \
                 start that reuses a running service writes them too).",
                engine.describe(),
                engine.variables()[3],
                engine.script(),
            ),
        }
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

/// A container's state as the test daemon lists it (`docker ps`), or `None` when it is not
/// listed. It can differ from the inspected state: Podman 5.8 lists a container `stopped` that
/// it inspects as `exited`.
pub fn listed_state(id: &str) -> Option<String> {
    listed_state_on(&daemon().host, id)
}

/// A container's state as the daemon at `host` lists it, or `None` when it is not listed.
pub fn listed_state_on(host: &str, id: &str) -> Option<String> {
    let output = docker_cli(
        host,
        &[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("id={id}"),
            "--format",
            "{{.ID}} {{.State}}",
        ],
    );
    assert!(
        output.status.success(),
        "docker ps at {host} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let (listed, state) = line.split_once(' ')?;
            (listed == id).then(|| state.trim().to_owned())
        })
}

/// Whether a container exists on the daemon at `host`.
pub fn exists_on(host: &str, reference: &str) -> bool {
    docker_cli(host, &["container", "inspect", reference])
        .status
        .success()
}

/// A container's state on the daemon at `host`, or `None` when it does not exist.
pub fn container_state_on(host: &str, reference: &str) -> Option<String> {
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
            // With their anonymous volumes, which no one else would ever remove.
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = cli(&args);
        }
        let volumes =
            std::mem::take(&mut *self.volumes.lock().unwrap_or_else(PoisonError::into_inner));
        for volume in &volumes {
            let _ = cli(&["volume", "rm", volume]);
        }
        let images =
            std::mem::take(&mut *self.images.lock().unwrap_or_else(PoisonError::into_inner));
        for image in &images {
            let _ = cli(&["rmi", image]);
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

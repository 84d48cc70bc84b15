//! A dockerd of one test's own, which the test may freeze, kill and restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::command;
use super::daemon::{container_state_on, docker_cli, exists_on};

/// Sends a signal (`STOP`, `CONT`, `KILL`, `TERM`, `INT`, …) to one process by its pid.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn test_daemon_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-daemon.sh")
}

/// A dockerd of one test's own, on its own socket, data root and exec root under a short dir in
/// `/tmp`, started by `scripts/test-daemon.sh`. A test may freeze, kill and restart it without
/// disturbing the shared test daemon. Dropping it removes every container on it and stops it.
#[derive(Debug)]
pub struct PrivateDaemon {
    /// The daemon's root directory (`RT_CLEANUP_TEST_ROOT`).
    pub root: PathBuf,
    /// `unix:///…/docker.sock`.
    pub host: String,
    /// The image containers are made from.
    pub image: String,
    /// The daemon's `--debug` log.
    pub log: PathBuf,
    pidfile: PathBuf,
}

impl PrivateDaemon {
    /// Starts a fresh private daemon; panics with the script's output when it cannot.
    pub fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Socket paths must stay under 108 bytes, so the root is short and in /tmp.
        let root = PathBuf::from(format!(
            "/tmp/rtc-f-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let exports = Self::launch(&root);
        let get = |key: &str| {
            exports.iter().find(|(k, _)| k == key).map_or_else(
                || panic!("scripts/test-daemon.sh did not print {key}"),
                |(_, v)| v.clone(),
            )
        };
        Self {
            host: get("RT_CLEANUP_TEST_DOCKER_HOST"),
            image: get("RT_CLEANUP_TEST_IMAGE"),
            log: PathBuf::from(get("RT_CLEANUP_TEST_DAEMON_LOG")),
            pidfile: PathBuf::from(get("RT_CLEANUP_TEST_DAEMON_PIDFILE")),
            root,
        }
    }

    fn launch(root: &Path) -> Vec<(String, String)> {
        // Without RT_CLEANUP_TEST_DOCKER_HOST the script starts a daemon of its own under the
        // root instead of reusing the shared one.
        let output = Command::new(test_daemon_script())
            .arg("start")
            .env_remove("RT_CLEANUP_TEST_DOCKER_HOST")
            .env_remove("RT_CLEANUP_TEST_DAEMON_LOG")
            .env_remove("RT_CLEANUP_TEST_DAEMON_PIDFILE")
            .env("RT_CLEANUP_TEST_ROOT", root)
            .stdin(Stdio::null())
            .output()
            .expect("scripts/test-daemon.sh runs");
        assert!(
            output.status.success(),
            "cannot start a private dockerd under {} for a fault test (it needs root and \
             docker.io): {}",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
                Some((key.to_owned(), value.trim_matches('\'').to_owned()))
            })
            .collect()
    }

    /// Starts the daemon again on the same data root (after [`PrivateDaemon::kill`]); the
    /// containers it had are still there.
    pub fn restart(&self) {
        // dockerd refuses to start while its pid file names a process that still shows in
        // /proc, and a killed daemon can linger there as a zombie until it is reaped.
        // The same holds for the containerd it started, which dies with it. (Nobody waits for
        // the script's `setsid` children, so a zombie may stay a while.)
        let containerd_pidfile = self.root.join("exec/containerd/containerd.pid");
        for pidfile in [&self.pidfile, &containerd_pidfile] {
            let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
            if !pid_alive(pid.trim()) {
                let _ = std::fs::remove_file(pidfile);
            }
        }
        let exports = Self::launch(&self.root);
        assert!(
            exports
                .iter()
                .any(|(k, v)| k == "RT_CLEANUP_TEST_DOCKER_HOST" && *v == self.host),
            "the restarted daemon is on another socket: {exports:?}"
        );
    }

    /// The socket path, for a [`FaultProxy`] in front of the daemon.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.host.trim_start_matches("unix://"))
    }

    /// The daemon's pid, from its pid file.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", self.pidfile.display()))
    }

    /// Freezes the daemon (SIGSTOP): it accepts nothing more and answers nothing.
    pub fn freeze(&self) {
        assert!(
            send_signal(self.pid(), "STOP"),
            "SIGSTOP to the private dockerd"
        );
    }

    /// Lets a frozen daemon go on (SIGCONT).
    pub fn thaw(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// Kills the daemon (SIGKILL), frozen or not, and waits until it is gone.
    pub fn kill(&self) {
        let pid = self.pid();
        assert!(send_signal(pid, "KILL"), "SIGKILL to the private dockerd");
        let deadline = Instant::now() + Duration::from_secs(10);
        // A killed daemon stays a zombie (nobody reaps the script's `setsid` child), which
        // counts as gone.
        while pid_alive(&pid.to_string()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        docker_cli(&self.host, args)
    }

    /// Runs the docker CLI against this daemon; panics on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "docker {} against {} failed: {}",
            args.join(" "),
            self.host,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Creates a stopped container with these labels; returns its full id.
    pub fn create(&self, labels: &[(&str, &str)]) -> String {
        let mut args: Vec<String> = ["create", "--network", "none"].map(str::to_owned).to_vec();
        for (key, value) in labels {
            args.push("--label".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.push(self.image.clone());
        self.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Creates a stopped container with a name; returns its full id.
    pub fn create_named(&self, name: &str) -> String {
        self.docker(&["create", "--network", "none", "--name", name, &self.image])
    }

    /// Whether a container exists on this daemon (which must be answering).
    pub fn exists(&self, reference: &str) -> bool {
        exists_on(&self.host, reference)
    }

    /// A container's state, or `None` when it does not exist.
    pub fn state(&self, reference: &str) -> Option<String> {
        container_state_on(&self.host, reference)
    }

    /// The length of the daemon's log now, to read only what a later run caused.
    pub fn log_len(&self) -> usize {
        std::fs::read(&self.log).map_or(0, |bytes| bytes.len())
    }

    /// The requests (`METHOD /path?query`) the daemon logged after `offset`.
    pub fn requests_since(&self, offset: usize) -> Vec<String> {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes[offset.min(bytes.len())..])
            .lines()
            .filter_map(|line| {
                let start = line.find("msg=\"Calling ")? + "msg=\"Calling ".len();
                let rest = &line[start..];
                Some(rest[..rest.find('"').unwrap_or(rest.len())].to_owned())
            })
            .collect()
    }

    /// A command for the built binary against this daemon.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = command(args);
        command.env("DOCKER_HOST", &self.host);
        command
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        self.thaw();
        let ids = self.cli(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.cli(&args);
        }
        let _ = Command::new(test_daemon_script())
            .arg("stop")
            .env("RT_CLEANUP_TEST_ROOT", &self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // dockerd bind-mounts its data root onto itself; a killed daemon leaves that mount behind.
        // It is taken down once the daemon is gone, and only an unmounted tree is deleted: a
        // mount under the root must never be walked into.
        let data = self.root.join("data").display().to_string();
        let mounted = || {
            std::fs::read_to_string("/proc/self/mounts")
                .unwrap_or_default()
                .lines()
                .any(|line| line.split_whitespace().nth(1) == Some(data.as_str()))
        };
        let pid = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
        if !pid_alive(pid.trim()) {
            for _ in 0..4 {
                if !mounted() {
                    break;
                }
                let _ = Command::new("umount").arg(&data).status();
            }
        }
        if !mounted() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Whether a pid (as text) names a live process: not missing, and not a zombie.
fn pid_alive(pid: &str) -> bool {
    if pid.is_empty() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    matches!(state, Some(Some(state)) if state != 'Z')
}

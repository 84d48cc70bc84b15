//! Engines and transports (docs/contract.md, sections 4 and 6): the API version the preflight
//! picks from each engine release's ping, against a fake daemon that answers as that release
//! would; TLS to a real dockerd behind mutual TLS, and each way it can fail; and what an
//! unreachable daemon's message says. The contract's own tests run on Docker and on Podman in
//! `contract.rs`.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::harness::{
    binary, command, exists_on, finish, on_engine, pass_args, tls_daemon, Containers, Engine,
    FakeDaemon, Journal, Run, StateFile, TcpBridge,
};

/// The newest API version this build knows (`NEWEST_API` in src/docker/mod.rs): a newer daemon
/// is spoken to at this version.
const NEWEST_API: &str = "1.53";

/// An engine release, as its ping answers.
struct Release {
    name: &'static str,
    /// The headers of its answer to `GET /_ping`, as it sends them.
    ping: &'static [(&'static str, &'static str)],
    /// The engine rt-cleanup must log.
    engine: &'static str,
    /// The API version rt-cleanup must put on the wire.
    wire: &'static str,
}

include!("../fixtures/engine_pings.rs");

/// A Docker whose API is newer than this build knows: it is spoken to at `NEWEST_API`.
const NEWER_DOCKER: Release = Release {
    name: "a Docker newer than this build knows",
    ping: &[("Api-Version", "1.60"), ("Server", "Docker/31.0.0 (linux)")],
    engine: "Docker 31.0.0",
    wire: NEWEST_API,
};

/// The captured releases, each spoken to at the API version it names, and a newer Docker.
fn releases() -> Vec<Release> {
    CAPTURED_PINGS
        .iter()
        .map(|captured| Release {
            name: captured.name,
            ping: captured.headers,
            engine: captured.engine,
            wire: captured.api,
        })
        .chain([NEWER_DOCKER])
        .collect()
}

/// A real pass against `host` over a state file with one expired record whose container is
/// `c-1`.
fn pass_against(host: &str, extra: &[&str]) -> (StateFile, Run) {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g-1", Some("c-1"), 8);
    let args = pass_args(&state, extra);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", host);
    let run = finish(&command.output().expect("the built binary runs"));
    (state, run)
}

#[test]
fn the_api_version_comes_from_each_releases_ping_and_is_on_the_wire() {
    let agent = format!("rt-cleanup/{}", env!("CARGO_PKG_VERSION"));
    for release in releases() {
        let daemon = FakeDaemon::start(release.ping, None);
        let (_state, run) = pass_against(&daemon.host, &[]);
        let name = release.name;

        run.assert_code(0);
        // The fake has no container c-1: 404, a replay_no_op.
        assert_eq!(run.result_of("g-1"), "replay_no_op", "{name}");
        assert!(
            run.stderr
                .contains(&format!("requests use API {}", release.wire)),
            "{name}: the chosen version is logged: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("engine={}", release.engine)),
            "{name}: the engine is logged with its version: {}",
            run.stderr
        );
        let requests = daemon.requests();
        let paths: Vec<String> = requests
            .iter()
            .map(|request| format!("{} {}", request.method, request.path))
            .collect();
        assert_eq!(
            paths.first().map(String::as_str),
            Some("GET /_ping"),
            "{name}: the ping goes first, unversioned: {paths:?}"
        );
        assert!(
            !paths.iter().any(|path| path.contains("/version")),
            "{name}: the ping said enough, /version is never asked: {paths:?}"
        );
        let removal = format!("DELETE /v{}/containers/c-1?", release.wire);
        assert!(
            paths.iter().any(|path| path.starts_with(&removal)),
            "{name}: {removal} is on the wire: {paths:?}"
        );
        assert!(
            paths[1..]
                .iter()
                .all(|path| path.contains(&format!(" /v{}/", release.wire))),
            "{name}: every request after the ping carries the prefix: {paths:?}"
        );
        assert!(
            requests
                .iter()
                .all(|request| request.user_agent.as_deref() == Some(agent.as_str())),
            "{name}: every request names rt-cleanup: {requests:?}"
        );
    }
}

#[test]
fn a_nothing_to_do_pass_asks_nothing_but_the_ping() {
    for release in releases() {
        let daemon = FakeDaemon::start(release.ping, None);
        let state = StateFile::new(Journal::Rollback);
        for extra in [&[][..], &["--dry-run"][..]] {
            let args = pass_args(&state, extra);
            let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
            command.env("DOCKER_HOST", &daemon.host);
            finish(&command.output().unwrap()).assert_code(0);
        }
        let paths: Vec<String> = daemon
            .requests()
            .iter()
            .map(|request| format!("{} {}", request.method, request.path))
            .collect();
        assert_eq!(paths, ["GET /_ping", "GET /_ping"], "{}", release.name);
    }
}

#[test]
fn a_ping_without_the_engines_headers_makes_the_preflight_ask_version() {
    // A proxy in front of the daemon that drops every header it does not know.
    let version = r#"{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12",
        "Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"}]}"#;
    let daemon = FakeDaemon::start(&[], Some(version));
    let (_state, run) = pass_against(&daemon.host, &[]);

    run.assert_code(0);
    assert!(run.stderr.contains("asking GET /version"), "{}", run.stderr);
    assert!(
        run.stderr.contains("engine=Docker 20.10.24+dfsg1"),
        "{}",
        run.stderr
    );
    let paths: Vec<String> = daemon
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    assert_eq!(paths[..2], ["GET /_ping", "GET /version"], "{paths:?}");
    assert!(
        paths[2].starts_with("DELETE /v1.41/containers/c-1?"),
        "{paths:?}"
    );

    // Podman behind the same proxy names itself by its component.
    let version = r#"{"Version":"4.3.1","ApiVersion":"1.41",
        "Components":[{"Name":"Podman Engine","Version":"4.3.1"}]}"#;
    let daemon = FakeDaemon::start(&[("Server", "nginx/1.22.1")], Some(version));
    let (_state, run) = pass_against(&daemon.host, &[]);
    run.assert_code(0);
    assert!(run.stderr.contains("engine=Podman 4.3.1"), "{}", run.stderr);
}

#[test]
fn a_daemon_older_than_api_1_41_is_refused_with_exit_69_and_nothing_changed() {
    let daemon = FakeDaemon::start(
        &[
            ("Api-Version", "1.40"),
            ("Libpod-Api-Version", "3.4.4"),
            ("Server", "Libpod/3.4.4 (linux)"),
        ],
        None,
    );
    let (state, run) = pass_against(&daemon.host, &[]);

    let line = error_line(&run);
    for needle in ["1.40", "1.41", "Podman 3.4.4", &daemon.host] {
        assert!(line.contains(needle), "the message names {needle}: {line}");
    }
    assert!(run.stdout.is_empty());
    assert_eq!(state.status("g-1"), "stopped");
    assert!(state.all_log().is_empty());
    let paths: Vec<String> = daemon
        .requests()
        .iter()
        .map(|request| request.path.clone())
        .collect();
    assert_eq!(paths, ["/_ping"], "nothing but the ping was asked");
}

// ------------------------------------------------------------------------------------------------
// TLS to a remote daemon: the second test dockerd, with --tlsverify and certificates made by
// openssl (scripts/test-tls-daemon.sh).
// ------------------------------------------------------------------------------------------------

/// A pass over TLS with `DOCKER_TLS_VERIFY=1` and `DOCKER_CERT_PATH=certs`, plus `extra`.
fn tls_pass(state: &StateFile, env: &[(&str, &str)], extra: &[&str]) -> Run {
    let args = pass_args(state, extra);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", &tls_daemon().host);
    command.envs(env.iter().copied());
    finish(&command.output().expect("the built binary runs"))
}

fn tls_containers(case: &str) -> Containers {
    let daemon = tls_daemon();
    Containers::on(&daemon.unix_host, &daemon.image, case)
}

#[test]
fn a_pass_over_tls_removes_the_container() {
    let daemon = tls_daemon();
    let containers = tls_containers("tls-pass");
    let state = StateFile::new(Journal::Rollback);
    let by_env = containers.create(&[]);
    let by_flags = containers.create(&[]);
    state.stopped("g-env", Some(&by_env), 9);
    state.stopped("g-flags", Some(&by_flags), 8);
    let certs = daemon.certs.display().to_string();

    // As the Docker CLI: DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
    let run = tls_pass(
        &state,
        &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", &certs)],
        &["--max-removals", "1"],
    );
    run.assert_code(0);
    assert_eq!(run.result_of("g-env"), "removed", "{}", run.stderr);
    assert!(!exists_on(&daemon.unix_host, &by_env));
    assert_eq!(state.status("g-env"), "removed");

    // The flag twins, each file named on its own.
    let file = |name: &str| daemon.certs.join(name).display().to_string();
    let run = tls_pass(
        &state,
        &[],
        &[
            "--tlsverify",
            "--tlscacert",
            &file("ca.pem"),
            "--tlscert",
            &file("cert.pem"),
            "--tlskey",
            &file("key.pem"),
        ],
    );
    run.assert_code(0);
    assert_eq!(run.result_of("g-flags"), "removed", "{}", run.stderr);
    assert!(!exists_on(&daemon.unix_host, &by_flags));

    let log = std::fs::read_to_string(&daemon.log).unwrap();
    for id in [&by_env, &by_flags] {
        assert!(
            log.contains(&format!("DELETE /v1.41/containers/{id}")),
            "the removal reached the daemon over TLS, versioned: {id}"
        );
    }
}

/// Runs a pass over TLS with `env` against one expired record whose container exists, and
/// asserts that it was refused: exit 69, one error line with every needle, nothing changed.
fn assert_tls_pass_refused(case: &str, env: &[(&str, &str)], needles: &[&str]) {
    let containers = tls_containers(case);
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g", Some(&id), 8);

    let run = tls_pass(&state, env, &[]);
    let line = error_line(&run);
    for needle in needles {
        assert!(
            line.contains(needle),
            "the message names {needle:?}: {line}"
        );
    }
    assert!(run.stdout.is_empty(), "no pass ran: {}", run.stdout);
    assert_eq!(state.status("g"), "stopped");
    assert!(state.all_log().is_empty());
    assert!(exists_on(&tls_daemon().unix_host, &id));
}

#[test]
fn plain_http_to_the_tls_port_exits_69_and_says_to_use_tls() {
    assert_tls_pass_refused(
        "tls-plain",
        &[],
        &[&tls_daemon().host, "speaks only TLS", "DOCKER_TLS_VERIFY=1"],
    );
}

#[test]
fn a_missing_client_certificate_exits_69_and_names_the_file() {
    let daemon = tls_daemon();
    let certs = daemon.certs_no_client_cert.display().to_string();
    let cert = daemon.certs_no_client_cert.join("cert.pem");
    assert_tls_pass_refused(
        "tls-no-cert",
        &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", &certs)],
        &[
            &daemon.host,
            "requires a client certificate and none was presented",
            &cert.display().to_string(),
        ],
    );
}

#[test]
fn a_client_certificate_of_another_ca_exits_69_and_says_the_daemon_refused_it() {
    let daemon = tls_daemon();
    let certs = daemon.certs_other_ca.display().to_string();
    assert_tls_pass_refused(
        "tls-other-ca",
        &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", &certs)],
        &[&daemon.host, "refused the client certificate", &certs],
    );
}

#[test]
fn a_daemon_certificate_of_another_ca_exits_69_and_names_the_ca_file() {
    let daemon = tls_daemon();
    let certs = daemon.certs_wrong_ca.display().to_string();
    let ca = daemon.certs_wrong_ca.join("ca.pem").display().to_string();
    assert_tls_pass_refused(
        "tls-wrong-ca",
        &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", &certs)],
        &[&daemon.host, "not signed by the CA of", &ca],
    );
}

#[test]
fn tls_to_a_plain_http_daemon_never_falls_back_to_plain_text() {
    let fake = FakeDaemon::start(
        &[("Api-Version", "1.41"), ("Server", "Docker/1 (linux)")],
        None,
    );
    let certs = tls_daemon().certs.display().to_string();
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", Some("c-1"), 8);
    let args = pass_args(&state, &[]);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command
        .env("DOCKER_HOST", &fake.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs);
    let run = finish(&command.output().unwrap());

    run.assert_code(69);
    assert!(
        run.stderr.contains("does not speak TLS on this port"),
        "{}",
        run.stderr
    );
    let requests = fake.requests();
    assert!(
        requests.is_empty(),
        "not one plain-text request was sent: {requests:?}"
    );

    // The same against a real plain-HTTP dockerd, which would have answered a plain request.
    let bridge = on_engine(Engine::Docker, TcpBridge::to_test_daemon);
    let mut command = crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", bridge.port))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs);
    let run = finish(&command.output().unwrap());
    run.assert_code(69);
    assert!(
        run.stderr.contains("does not speak TLS on this port"),
        "{}",
        run.stderr
    );
    assert_eq!(state.status("g"), "stopped");
}

#[test]
fn missing_tls_files_and_ssh_hosts_are_refused_before_any_request() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", Some("c-1"), 8);
    let fake = FakeDaemon::start(&[("Api-Version", "1.41")], None);
    let dir = tempfile::tempdir().unwrap();
    let args = pass_args(&state, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut missing = command(&args);
    missing
        .env("DOCKER_HOST", &fake.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", dir.path());
    let run = finish(&missing.output().unwrap());
    run.assert_code(69);
    let ca = dir.path().join("ca.pem").display().to_string();
    assert!(run.stderr.contains(&ca), "names {ca}: {}", run.stderr);
    assert!(fake.requests().is_empty(), "nothing was sent");

    let mut ssh = command(&args);
    ssh.env("DOCKER_HOST", "ssh://admin@docker-host");
    let run = finish(&ssh.output().unwrap());
    run.assert_code(2);
    assert!(
        run.stderr.contains("ssh:// daemons are not supported"),
        "{}",
        run.stderr
    );
    assert_eq!(state.status("g"), "stopped");
}

// ------------------------------------------------------------------------------------------------
// An unreachable daemon says why.
// ------------------------------------------------------------------------------------------------

/// Runs a dry run against `host` as `nobody` (uid 65534), or as this user when `as_nobody` is
/// false.
fn dry_run_against(host: &str, state: &StateFile, as_nobody: bool) -> Run {
    let args = pass_args(state, &["--dry-run"]);
    let mut command = if as_nobody {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(binary())
            .args(&args)
            .env_clear();
        command
    } else {
        crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    command.env("DOCKER_HOST", host).stdin(Stdio::null());
    finish(&command.output().expect("the binary (or setpriv) runs"))
}

/// A state file that `nobody` may read: its directory and the file open to all for reading.
fn state_for_anyone() -> StateFile {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", Some("c-1"), 8);
    std::fs::set_permissions(state.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    state
}

fn error_line(run: &Run) -> String {
    run.assert_code(69);
    run.stderr
        .lines()
        .find(|line| line.contains("ERROR"))
        .unwrap_or_else(|| panic!("no error line: {}", run.stderr))
        .to_owned()
}

#[test]
fn an_unreachable_unix_socket_says_whether_it_is_missing_refused_or_not_permitted() {
    assert!(
        running_as_root(),
        "this test runs the binary as nobody with setpriv, which needs root: run it as root \
         (scripts/test.sh on CI runs as root)"
    );
    let state = state_for_anyone();
    let sockets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let missing = sockets.path().join("missing.sock");
    let line = error_line(&dry_run_against(
        &format!("unix://{}", missing.display()),
        &state,
        false,
    ));
    assert!(
        line.contains(&format!("the socket {} does not exist", missing.display())),
        "{line}"
    );
    assert!(!line.contains("hyper"), "no client internals: {line}");

    // A socket file that nothing listens on any more: its daemon died.
    let dead = sockets.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let line = error_line(&dry_run_against(
        &format!("unix://{}", dead.display()),
        &state,
        false,
    ));
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains("nothing listens on the socket"), "{line}");

    // A live socket only its owner and group may use, as /var/run/docker.sock (root:docker 0660).
    let private = sockets.path().join("private.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o660)).unwrap();
    let line = error_line(&dry_run_against(
        &format!("unix://{}", private.display()),
        &state,
        true,
    ));
    for needle in [
        "permission denied",
        "user nobody (uid 65534)",
        "owner root",
        "group root",
        "mode 0660",
        "add nobody to the group root",
    ] {
        assert!(line.contains(needle), "names {needle:?}: {line}");
    }
}

#[test]
fn nothing_listening_on_a_tcp_port_is_named() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", Some("c-1"), 8);
    // A port that was free a moment ago: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let line = error_line(&dry_run_against(
        &format!("tcp://127.0.0.1:{port}"),
        &state,
        false,
    ));
    assert!(
        line.contains(&format!("nothing listens on 127.0.0.1:{port}")),
        "{line}"
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

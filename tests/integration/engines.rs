//! Engines and transports (docs/contract.md, sections 4 and 6): the API version the preflight
//! picks from each engine release's ping, against a fake daemon that answers as that release
//! would; TLS to a real dockerd behind mutual TLS, and each way it can fail; and what an
//! unreachable daemon's message says; states and answers rt-cleanup does not know, against a
//! fake daemon, and the two that real engines send, on each engine of the family that sends them
//! (`on_each_podman!`, `on_each_docker!`): Podman's `stopped`, and a container Docker failed to
//! remove. The contract's own tests run on every engine in `contract.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{
    binary, command, container_state, daemon, docker, exists, exists_on, finish, listed_state,
    on_engine, pass, pass_args, tls_daemon, Containers, Engine, FakeAnswer, FakeDaemon, Immutable,
    Journal, Run, StateFile, TcpBridge, OWNER_LABEL,
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

/// Every request a fake daemon got, as `METHOD /path?query`.
fn request_lines(daemon: &FakeDaemon) -> Vec<String> {
    daemon
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
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
        let paths = request_lines(&daemon);
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
        let paths = request_lines(&daemon);
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
    let paths = request_lines(&daemon);
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

// ------------------------------------------------------------------------------------------------
// States and answers rt-cleanup does not know never fail a pass (docs/contract.md, "Container
// states"): a fake daemon that answers with them, Podman's real `stopped`, and Docker's real
// `dead`.
// ------------------------------------------------------------------------------------------------

/// The headers of a captured release's ping.
fn ping_of(release: &str) -> &'static [(&'static str, &'static str)] {
    CAPTURED_PINGS
        .iter()
        .find(|captured| captured.name == release)
        .unwrap_or_else(|| panic!("no captured ping of {release}"))
        .headers
}

/// A full container id of 64 characters made of one letter.
fn full_id(letter: char) -> String {
    letter.to_string().repeat(64)
}

/// Docker's answer to the removal of a container whose root filesystem it cannot remove.
fn removal_failed(id: &str) -> FakeAnswer {
    FakeAnswer::error(
        500,
        &format!(
            "container {id}: driver \"overlay2\" failed to remove root filesystem: unlinkat \
             /var/lib/docker/overlay2/x/diff/pin: operation not permitted"
        ),
    )
}

/// Runs a JSON pass against a fake daemon.
fn pass_on(daemon: &FakeDaemon, state: &StateFile, extra: &[&str]) -> Run {
    let args = pass_args(state, extra);
    let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", &daemon.host);
    finish(&command.output().expect("the built binary runs"))
}

/// `(game_id, result, error_code)` of each record, in the order of the game ids.
fn sorted_results(run: &Run) -> Vec<(String, String, Option<String>)> {
    let mut results = run.outcomes();
    results.sort();
    results
}

/// The message of a record in the JSON summary.
fn message_of(run: &Run, game: &str) -> String {
    let json = run.json();
    let record = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["game_id"] == game)
        .unwrap_or_else(|| panic!("{game} is not in {}", run.stdout))
        .clone();
    record["error_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A fake Docker 28 whose listing holds Podman's `stopped`, a state nobody sends yet, a `dead`
/// container inspected `dead` (Docker 28 lists a failed removal so) and one listed `removing`
/// that is inspected `dead` (Docker 20.10 to 26 list a failed removal so), fields of other types and shapes, and
/// entries without a usable id; it removes the first two and refuses the dead ones. Returns it
/// with the full ids of `c-stopped`, `c-unknown`, `c-dead` and `c-removing`.
fn odd_records_daemon() -> (FakeDaemon, [String; 4]) {
    let stopped = full_id('a');
    let unknown = full_id('b');
    let bare = full_id('c');
    let dead = full_id('d');
    let removing = full_id('e');
    let listing = format!(
        r#"[
          {{"Id":"{stopped}","Names":["/c-stopped"],"State":"stopped",
            "Status":"Exited (0) 2 days ago","Labels":{{"owner":"g-stopped"}},"Created":1700000000}},
          {{"Id":"{unknown}","Names":["/c-unknown"],"State":"hibernating",
            "Labels":{{"owner":"g-unknown","count":7}},"Created":"long ago",
            "Mounts":{{"a":"new shape"}},"HostConfig":null,"Health":[1,2]}},
          {{"Id":"{bare}","Names":null,"State":null,"Labels":null,"Created":null}},
          {{"Id":"{dead}","Names":["/c-dead"],"State":"dead","Labels":{{"owner":"g-dead"}},
            "Created":1700000000}},
          {{"Id":"{removing}","Names":["/c-removing"],"State":"removing",
            "Status":"Removal In Progress","Labels":{{"owner":"g-removing"}},"Created":1700000000}},
          {{"Names":["/no-id"],"State":"exited"}},
          {{"Id":42,"Names":["/number-id"]}},
          "not a container"
        ]"#
    );
    // Both are inspected `dead`: the listed state alone tells a failed removal from one in
    // progress on no Docker, so the dry run looks at each again.
    let inspected_dead = |id: &str, name: &str| {
        format!(
            r#"{{"Id":"{id}","Name":"/c-{name}","Created":"2023-11-14T22:13:20Z",
               "State":{{"Status":"dead","Dead":true,"FinishedAt":"0001-01-01T00:00:00Z"}},
               "Config":{{"Labels":{{"owner":"g-{name}"}}}},"GraphDriver":{{"Name":"overlay2"}}}}"#
        )
    };
    let inspections = [
        (
            format!("/containers/{dead}/json"),
            inspected_dead(&dead, "dead"),
        ),
        (
            format!("/containers/{removing}/json"),
            inspected_dead(&removing, "removing"),
        ),
    ];
    let (removable, failing) = (
        [stopped.clone(), unknown.clone()],
        [dead.clone(), removing.clone()],
    );
    let daemon = FakeDaemon::serving(ping_of("Docker 28.5"), None, move |method, path| {
        let route = path.split('?').next().unwrap_or_default();
        let reference = route.strip_prefix("/containers/").unwrap_or_default();
        match method {
            "GET" if route == "/containers/json" => Some(FakeAnswer::json(listing.clone())),
            "GET" => inspections
                .iter()
                .find(|(inspected, _)| route == inspected)
                .map(|(_, answer)| FakeAnswer::json(answer.clone())),
            "DELETE" if removable.iter().any(|id| id == reference) => {
                Some(FakeAnswer::no_content())
            }
            "DELETE" if failing.iter().any(|id| id == reference) => Some(removal_failed(reference)),
            _ => None,
        }
    });
    (daemon, [stopped, unknown, dead, removing])
}

/// Asserts that a dry run's requests were one listing, then one inspection of each of `ids`
/// (the containers listed `dead` or `removing`, looked at again), and no removal.
fn assert_one_listing_and_second_looks_at(seen: &[String], ids: &[&String]) {
    assert_eq!(
        seen.iter()
            .filter(|line| line.starts_with("GET /v1.51/containers/json?"))
            .count(),
        1,
        "{seen:?}"
    );
    let mut looked_at: Vec<&String> = seen
        .iter()
        .filter(|line| line.contains("/containers/") && line.ends_with("/json"))
        .collect();
    looked_at.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|id| format!("GET /v1.51/containers/{id}/json"))
        .collect();
    expected.sort();
    assert_eq!(
        looked_at,
        expected.iter().collect::<Vec<_>>(),
        "only the containers listed as dead or removing are looked at again"
    );
    assert!(
        !seen.iter().any(|line| line.starts_with("DELETE")),
        "{seen:?}"
    );
}

#[test]
fn states_and_fields_no_engine_is_known_to_send_never_fail_a_pass_and_the_dry_run_predicts_them() {
    let (daemon, [stopped, unknown, dead, removing]) = odd_records_daemon();
    let state = StateFile::new(Journal::Rollback);
    for game in ["g-stopped", "g-unknown", "g-dead", "g-removing"] {
        let container = format!("c-{}", game.trim_start_matches("g-"));
        state.stopped(game, Some(&container), 8);
    }

    let dry = pass_on(&daemon, &state, &["--dry-run", "--owner-label", "owner"]);
    dry.assert_code(1);
    let expected = [
        ("g-dead", "failed", Some("docker_error")),
        ("g-removing", "failed", Some("docker_error")),
        ("g-stopped", "removed", None),
        ("g-unknown", "removed", None),
    ];
    let expected: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(game, result, code)| ((*game).into(), (*result).into(), code.map(str::to_owned)))
        .collect();
    assert_eq!(sorted_results(&dry), expected, "{}", dry.stderr);
    let note = message_of(&dry, "g-unknown");
    assert!(
        note.contains("does not know (\"hibernating\")"),
        "the dry run says the state was unknown: {note}"
    );
    for game in ["g-dead", "g-removing"] {
        let message = message_of(&dry, game);
        assert!(
            message.contains("dead after a removal that failed")
                && message.contains("try to remove it again"),
            "{game}: {message}"
        );
    }
    assert_eq!(
        dry.stderr
            .lines()
            .filter(|line| line.contains("leaves out"))
            .count(),
        3,
        "each entry without a usable id is logged: {}",
        dry.stderr
    );
    assert_one_listing_and_second_looks_at(&request_lines(&daemon), &[&dead, &removing]);
    assert_eq!(
        state.status("g-stopped"),
        "stopped",
        "a dry run changes nothing"
    );

    let real = pass_on(&daemon, &state, &["--owner-label", "owner"]);
    real.assert_code(1);
    assert_eq!(
        sorted_results(&real),
        expected,
        "the real run does what was predicted"
    );
    for (game, status) in [
        ("g-stopped", "removed"),
        ("g-unknown", "removed"),
        ("g-dead", "stopped"),
        ("g-removing", "stopped"),
    ] {
        assert_eq!(state.status(game), status, "{game}");
    }
    let log = state.log("g-dead");
    assert_eq!(
        (log[0].outcome.as_str(), log[0].error_code.as_deref()),
        ("failure", Some("docker_error"))
    );
    let seen = request_lines(&daemon);
    for id in [&stopped, &unknown, &dead, &removing] {
        assert!(
            seen.iter()
                .any(|line| line.starts_with(&format!("DELETE /v1.51/containers/{id}?"))),
            "removed by its full id, never forced: {seen:?}"
        );
    }
    assert!(
        seen.iter().all(|line| !line.contains("force=true")),
        "{seen:?}"
    );
}

/// A labelled listing and inspections of possible orphans in states and shapes no engine is
/// known to send, and a record's own container, answered by a fake Podman 5.8.
fn odd_orphans_daemon() -> (FakeDaemon, [String; 3]) {
    let stopped = full_id('f');
    let unknown = full_id('g');
    let shapeless = full_id('h');
    let running = full_id('i');
    let unlabelled = full_id('j');
    let listing = format!(
        r#"[
          {{"Id":"{stopped}","Names":["/o-stopped"],"State":"stopped",
            "Labels":{{"owner":"g-o-stopped"}},"Created":1500000000}},
          {{"Id":"{unknown}","Names":["/o-unknown"],"State":"frozen-in-time",
            "Labels":{{"owner":"g-o-unknown"}},"Created":1500000000,"Extra":{{"x":1}}}},
          {{"Id":"{shapeless}","Names":["/o-shapeless"],"State":"exited",
            "Labels":{{"owner":"g-o-shapeless"}},"Created":"not a number"}},
          {{"Id":"{running}","Names":["/o-running"],"State":"running",
            "Labels":{{"owner":"g-o-running"}},"Created":1500000000}},
          {{"Id":"{unlabelled}","Names":["/o-unlabelled"],"State":"exited",
            "Labels":{{"owner":"g-o-unlabelled"}},"Created":1500000000}},
          {{"Id":null,"Names":["/o-no-id"],"State":"exited","Labels":{{"owner":"g-no-id"}}}}
        ]"#
    );
    let inspections = [
        (
            stopped.clone(),
            format!(
                r#"{{"Id":"{stopped}","Name":"/o-stopped","Created":"2017-07-14T02:40:00Z",
                   "State":{{"Status":"stopped","FinishedAt":"2020-01-01T00:00:00Z"}},
                   "Config":{{"Labels":{{"owner":"g-o-stopped"}}}}}}"#
            ),
        ),
        (
            unknown.clone(),
            format!(
                r#"{{"Id":"{unknown}","Name":"/o-unknown","Created":"2017-07-14T02:40:00Z",
                   "State":{{"Status":"frozen-in-time","FinishedAt":"2020-01-01T00:00:00Z",
                   "OOMKilled":"maybe"}},"Config":{{"Labels":{{"owner":"g-o-unknown"}}}}}}"#
            ),
        ),
        (
            // A state of another shape, no FinishedAt: its age is its creation.
            shapeless.clone(),
            format!(
                r#"{{"Id":"{shapeless}","Created":"2017-07-14T02:40:00Z","State":"exited",
                   "Config":{{"Labels":{{"owner":"g-o-shapeless"}}}}}}"#
            ),
        ),
        (
            // Its inspection shows no label: not an orphan of this key.
            unlabelled.clone(),
            format!(r#"{{"Id":"{unlabelled}","Created":"2017-07-14T02:40:00Z","Config":null}}"#),
        ),
    ];
    let orphans = [stopped.clone(), unknown.clone(), shapeless.clone()];
    let daemon = FakeDaemon::serving(ping_of("Podman 5.8"), None, move |method, path| {
        let route = path.split('?').next().unwrap_or_default();
        let reference = route.strip_prefix("/containers/").unwrap_or_default();
        match method {
            "GET" if route == "/containers/json" => Some(FakeAnswer::json(listing.clone())),
            "GET" => inspections
                .iter()
                .find(|(id, _)| reference.strip_suffix("/json") == Some(id))
                .map(|(_, body)| FakeAnswer::json(body.clone())),
            "DELETE" if orphans.iter().any(|id| id == reference) => Some(FakeAnswer::no_content()),
            _ => None,
        }
    });
    (daemon, [full_id('f'), full_id('g'), full_id('h')])
}

#[test]
fn the_orphan_search_decides_unknown_states_and_odd_answers_as_for_records() {
    let (daemon, [stopped, unknown, shapeless]) = odd_orphans_daemon();
    let state = StateFile::new(Journal::Wal);
    let orphan_args = ["--owner-label", "owner", "--orphans", "remove"];

    let report = pass_on(
        &daemon,
        &state,
        &["--owner-label", "owner", "--orphans", "report"],
    );
    report.assert_code(0);
    let found = |run: &Run| -> Vec<(String, String, serde_json::Value)> {
        let mut found: Vec<_> = run.json()["orphans"]
            .as_array()
            .unwrap_or_else(|| panic!("no orphans: {}", run.stdout))
            .iter()
            .map(|orphan| {
                (
                    orphan["container_id"].as_str().unwrap().to_owned(),
                    orphan["state"].as_str().unwrap().to_owned(),
                    orphan["result"].clone(),
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    assert_eq!(
        found(&report),
        [
            (
                stopped.clone(),
                "stopped".to_owned(),
                serde_json::Value::Null
            ),
            (
                unknown.clone(),
                "frozen-in-time".to_owned(),
                serde_json::Value::Null
            ),
            (shapeless.clone(), String::new(), serde_json::Value::Null),
        ],
        "{}",
        report.stderr
    );

    let mut dry_args = vec!["--dry-run"];
    dry_args.extend(orphan_args);
    let dry = pass_on(&daemon, &state, &dry_args);
    dry.assert_code(0);
    let real = pass_on(&daemon, &state, &orphan_args);
    real.assert_code(0);
    assert_eq!(
        found(&dry),
        found(&real),
        "the dry run predicted the real run"
    );
    assert!(
        found(&real)
            .iter()
            .all(|(_, _, result)| result == "removed"),
        "{}",
        real.stdout
    );
    let messages: Vec<String> = dry.json()["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|orphan| orphan["error_message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        messages.len(),
        2,
        "the unknown state and no state: {messages:?}"
    );
    assert!(
        messages.iter().all(|m| m.contains("does not know")),
        "{messages:?}"
    );
    assert_eq!(state.all_log().len(), 3);
    assert!(state
        .all_log()
        .iter()
        .all(|row| row.op_kind == "cleanup_orphan" && row.outcome == "success"));
}

#[test]
fn a_failed_orphan_search_reports_no_orphans_no_counts_and_why_and_exits_1() {
    let refused = FakeDaemon::serving(ping_of("Docker 20.10 (Debian 12)"), None, |_, path| {
        path.starts_with("/containers/json")
            .then(|| FakeAnswer::error(500, "the listing is broken"))
    });
    let (inspected_id, listing) = (
        full_id('k'),
        format!(
            r#"[{{"Id":"{}","State":"exited","Labels":{{"owner":"g-k"}},"Created":1500000000}}]"#,
            full_id('k')
        ),
    );
    let inspection_refused =
        FakeDaemon::serving(ping_of("Docker 20.10 (Debian 12)"), None, move |_, path| {
            if path.starts_with("/containers/json") {
                Some(FakeAnswer::json(listing.clone()))
            } else {
                Some(FakeAnswer::error(500, "the inspection is broken"))
            }
        });
    for (daemon, why) in [
        (
            &refused,
            "Docker answered 500: the listing is broken".to_owned(),
        ),
        (
            &inspection_refused,
            format!(
                "cannot inspect container {inspected_id}, a possible orphan: Docker answered 500"
            ),
        ),
    ] {
        let state = StateFile::new(Journal::Rollback);
        state.stopped("g-none", None, 8);
        let metrics = state.dir().join("rt_cleanup.prom");
        let metrics_arg = metrics.display().to_string();
        for extra in [&["--dry-run"][..], &["--metrics-file", &metrics_arg][..]] {
            let mut args = vec!["--owner-label", "owner", "--orphans", "remove"];
            args.extend(extra);
            let run = pass_on(daemon, &state, &args);
            run.assert_code(1);
            let json = run.json();
            assert_eq!(json["orphans"], serde_json::Value::Null, "{}", run.stdout);
            assert_eq!(json["orphan_counts"], serde_json::Value::Null);
            let error = json["orphan_error"].as_str().unwrap_or_default();
            assert!(error.contains(&why), "{error}");
            assert_eq!(
                run.result_of("g-none"),
                "replay_no_op",
                "the records are handled all the same"
            );
        }
        let text = std::fs::read_to_string(&metrics).unwrap();
        assert!(
            text.contains("\nrt_cleanup_last_run_exit_status 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("orphan"),
            "no metric claims a count of orphans: {text}"
        );
    }
    let state = StateFile::new(Journal::Rollback);
    let text_run = {
        let args = [
            "--retention",
            "7d",
            "--state",
            &state.path().display().to_string(),
            "--owner-label",
            "owner",
            "--orphans",
            "report",
        ]
        .map(str::to_owned);
        let mut command = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("DOCKER_HOST", &refused.host);
        finish(&command.output().unwrap())
    };
    text_run.assert_code(1);
    assert!(
        text_run
            .stdout
            .contains("; orphans: the search failed, none is known: "),
        "{}",
        text_run.stdout
    );
}

/// Asserts that a real run did to each record what the dry run before it predicted: the same
/// records, results and error codes.
fn assert_predicted(dry: &Run, real: &Run) {
    assert_eq!(
        real.outcomes(),
        dry.outcomes(),
        "the dry run predicted the real run\ndry run: {}\nreal run: {}",
        dry.stdout,
        real.stdout
    );
}

on_each_podman!(podmans_stopped_state_fails_no_listing_and_is_predicted_and_removed);
fn podmans_stopped_state_fails_no_listing_and_is_predicted_and_removed() {
    let containers = Containers::new("podman-stopped");
    let state = StateFile::new(Journal::Wal);
    // One of no game at all, the expired record's own, and the container of a record stopped
    // too recently to be removed.
    let unrelated = containers.run_left_stopped(&[], &["sleep", "1"]);
    let own = containers.run_left_stopped(&[(OWNER_LABEL, "g-stopped")], &["sleep", "1"]);
    let recent = containers.create(&[(OWNER_LABEL, "g-recent")]);
    state.stopped("g-stopped", Some(&own), 8);
    state.stopped("g-recent", Some(&recent), 1);

    let dry = pass(&state, &["--dry-run", "--owner-label", OWNER_LABEL]);
    dry.assert_code(0);
    assert_eq!(
        dry.outcomes(),
        [("g-stopped".to_owned(), "removed".to_owned(), None)],
        "{}",
        dry.stderr
    );
    assert_eq!(
        listed_state(&own).as_deref(),
        Some("stopped"),
        "a dry run removes nothing"
    );

    let real = pass(&state, &["--owner-label", OWNER_LABEL]);
    real.assert_code(0);
    assert_predicted(&dry, &real);
    assert!(!exists(&own));
    assert_eq!(state.status("g-stopped"), "removed");
    let log = state.log("g-stopped");
    assert_eq!(
        (log.len(), log[0].outcome.as_str()),
        (1, "success"),
        "{log:?}"
    );

    assert_eq!(
        listed_state(&unrelated).as_deref(),
        Some("stopped"),
        "the other stopped container is left as it was"
    );
    assert!(exists(&recent), "the recent record's container is kept");
    assert_eq!(state.status("g-recent"), "stopped");
    assert!(state.log("g-recent").is_empty());
}

on_each_docker!(a_container_docker_failed_to_remove_is_predicted_as_the_real_run_fails_on_it);
fn a_container_docker_failed_to_remove_is_predicted_as_the_real_run_fails_on_it() {
    let containers = Containers::new("docker-dead");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    // Beside it: a container of no game, and the container of a record stopped too recently.
    let unrelated = containers.create(&[]);
    let recent = containers.create(&[]);
    // A file even root cannot delete in the container's upper directory makes Docker fail to
    // remove its root filesystem, and mark it dead.
    let upper = docker(&["inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", &id]);
    assert!(
        Path::new(&upper).is_dir(),
        "this test needs the overlay2 graph driver (an upper directory), the test daemon has \
         {:?}",
        docker(&["info", "--format", "{{.Driver}}"])
    );
    let pin = Path::new(&upper).join("pin");
    std::fs::write(&pin, b"").unwrap();
    // Dropped before `containers`: the file is deletable again before the case's containers
    // are removed, whatever happens.
    let _pinned = Immutable::new(&[&pin]);
    let refused = Command::new("docker")
        .args(["rm", &id])
        .env("DOCKER_HOST", &daemon().host)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "docker rm must fail on the pinned file"
    );
    assert_eq!(container_state(&id).as_deref(), Some("dead"));
    let listed = listed_state(&id).unwrap_or_default();
    // Docker 20.10 to 26 list it `removing`, Docker 28 `dead`.
    assert!(matches!(listed.as_str(), "removing" | "dead"), "{listed}");
    state.stopped("g-dead", Some(&id), 8);
    state.stopped("g-recent", Some(&recent), 1);

    let dry = pass(&state, &["--dry-run"]);
    dry.assert_code(1);
    let expected = [(
        "g-dead".to_owned(),
        "failed".to_owned(),
        Some("docker_error".to_owned()),
    )];
    assert_eq!(dry.outcomes(), expected, "listed {listed}: {}", dry.stdout);
    let message = message_of(&dry, "g-dead");
    assert!(
        message.contains("dead after a removal that failed") && message.contains("try to remove"),
        "{message}"
    );
    assert!(
        state.all_log().is_empty(),
        "a dry run writes nothing: {:?}",
        state.all_log()
    );

    let real = pass(&state, &[]);
    real.assert_code(1);
    assert_predicted(&dry, &real);
    assert!(exists(&id));
    assert_eq!(state.status("g-dead"), "stopped", "retried by the next run");
    let log = state.log("g-dead");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].error_code.as_deref(), Some("docker_error"));
    assert!(
        log[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("failed to remove root filesystem"),
        "{log:?}"
    );

    for other in [&unrelated, &recent] {
        assert_eq!(
            container_state(other).as_deref(),
            Some("created"),
            "the other containers are left as they were"
        );
    }
    assert_eq!(state.status("g-recent"), "stopped");
    assert!(state.log("g-recent").is_empty());
}

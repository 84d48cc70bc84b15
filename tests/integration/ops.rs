//! Running it the way ops run it: metrics for `node_exporter`, logs for shippers, reviewable plans.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    exists, pass, pass_args, run, run_without_docker, Containers, Journal, StateFile,
};

fn text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Debian's prometheus-node-exporter reading a textfile directory, on a free loopback port.
struct NodeExporter {
    child: Child,
    port: u16,
}

impl NodeExporter {
    fn start(directory: &std::path::Path) -> Self {
        let binary = [
            "/usr/bin/prometheus-node-exporter",
            "/usr/bin/node_exporter",
        ]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect(
            "prometheus-node-exporter is not installed: scripts/test.sh installs it \
                 (apt-get install prometheus-node-exporter)",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--collector.textfile.directory={}",
                directory.display()
            ))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    fn scrape(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                    return response;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node_exporter did not answer on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metrics_are_written_for_node_exporters_textfile_collector() {
    let containers = Containers::new("metrics");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    let running = containers.run(&[]);
    state.stopped("g-removed", Some(&id), 8);
    state.stopped("g-running", Some(&running), 30);
    let textfiles = tempfile::tempdir().unwrap();
    let metrics = textfiles.path().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();

    pass(&state, &["--metrics-file", &metrics_arg]).assert_code(1);

    let written = text(&metrics);
    for line in [
        "rt_cleanup_last_run_records{result=\"removed\"} 1",
        "rt_cleanup_last_run_records{result=\"failed\"} 1",
        "rt_cleanup_last_run_records{result=\"deferred\"} 0",
        "rt_cleanup_last_run_expired_records 2",
        "rt_cleanup_last_run_stopped_records 2",
        "rt_cleanup_last_run_exit_status 1",
    ] {
        assert!(
            written.lines().any(|l| l == line),
            "{line} missing:\n{written}"
        );
    }
    assert!(
        !written.contains("rt_cleanup_last_success_timestamp_seconds "),
        "no clean run yet"
    );
    let age_line = written
        .lines()
        .find(|l| l.starts_with("rt_cleanup_oldest_waiting_record_age_seconds "))
        .unwrap();
    let age: f64 = age_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        (29.0 * 86_400.0..31.0 * 86_400.0).contains(&age),
        "{age_line}"
    );
    assert_eq!(
        std::fs::read_dir(textfiles.path()).unwrap().count(),
        1,
        "no temporary left"
    );

    let exporter = NodeExporter::start(textfiles.path());
    let scraped = exporter.scrape();
    assert!(
        scraped.contains("rt_cleanup_last_run_records{result=\"removed\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("rt_cleanup_last_run_duration_seconds"),
        "{scraped}"
    );
    assert!(
        scraped.contains("node_textfile_scrape_error 0"),
        "{scraped}"
    );
}

#[test]
fn a_clean_run_sets_the_last_success_and_a_failed_start_keeps_it() {
    let state = StateFile::new(Journal::Rollback);
    let textfiles = tempfile::tempdir().unwrap();
    let metrics = textfiles.path().join("rt_cleanup.prom");
    let metrics_arg = metrics.display().to_string();

    pass(&state, &["--metrics-file", &metrics_arg]).assert_code(0);
    let first = text(&metrics);
    let success = first
        .lines()
        .find(|l| l.starts_with("rt_cleanup_last_success_timestamp_seconds "))
        .expect("a clean run is a success")
        .to_owned();
    assert!(first.contains("rt_cleanup_oldest_waiting_record_age_seconds 0\n"));

    let args = pass_args(
        &state,
        &["--metrics-file", &metrics_arg, "--docker-timeout", "1s"],
    );
    let mut command = crate::harness::command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    crate::harness::finish(&command.output().unwrap()).assert_code(69);

    let second = text(&metrics);
    assert!(
        second.contains("rt_cleanup_last_run_exit_status 69\n"),
        "{second}"
    );
    assert!(
        second.lines().any(|l| l == success),
        "the last success is kept:\n{second}"
    );
    assert!(
        !second.contains("rt_cleanup_last_run_records"),
        "no counts for a run that never ran"
    );
}

#[test]
fn a_dry_run_leaves_the_metrics_file_alone() {
    let state = StateFile::new(Journal::Rollback);
    let textfiles = tempfile::tempdir().unwrap();
    let metrics = textfiles.path().join("rt_cleanup.prom");
    pass(
        &state,
        &[
            "--dry-run",
            "--metrics-file",
            &metrics.display().to_string(),
        ],
    )
    .assert_code(0);
    assert!(!metrics.exists());
}

#[test]
fn json_logs_are_one_object_per_line_with_each_result_once() {
    let containers = Containers::new("json-logs");
    let state = StateFile::new(Journal::Rollback);
    let id = containers.create(&[]);
    state.stopped("g-json", Some(&id), 8);

    let run = pass(&state, &["--log-format", "json"]);
    run.assert_code(0);

    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let results: Vec<_> = lines.iter().filter(|l| l["game_id"] == "g-json").collect();
    assert_eq!(results.len(), 1, "one log line per record: {}", run.stderr);
    assert_eq!(results[0]["result"], "removed");
    assert_eq!(results[0]["container_id"], id);
    assert_eq!(results[0]["error_code"], "-");
    assert!(results[0]["level"].is_string() && results[0]["timestamp"].is_string());
}

#[test]
fn text_logs_have_no_colour_when_stderr_is_not_a_terminal() {
    let state = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let run = pass(&state, &[]);
    run.assert_code(0);
    assert!(run.stderr.contains("record handled"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no ANSI escapes: {:?}",
        run.stderr
    );
}

#[test]
fn the_log_filter_comes_from_rt_cleanup_log() {
    let state = StateFile::new(Journal::Rollback);
    let args = pass_args(&state, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let quiet = crate::harness::run_with_env(&args, &[("RT_CLEANUP_LOG", "error")]);
    quiet.assert_code(0);
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
}

#[test]
fn an_applied_plan_acts_on_exactly_the_reviewed_records() {
    let containers = Containers::new("plans");
    let state = StateFile::new(Journal::Wal);
    let planned = containers.create(&[]);
    let changed = containers.create(&[]);
    state.stopped("g-planned", Some(&planned), 9);
    state.stopped("g-changed", Some(&changed), 10);
    let plans = tempfile::tempdir().unwrap();
    let plan = plans.path().join("plan.json");
    let plan_arg = plan.display().to_string();

    let dry = pass(&state, &["--dry-run", "--plan-out", &plan_arg]);
    dry.assert_code(0);
    let written: serde_json::Value = serde_json::from_str(&text(&plan)).unwrap();
    assert_eq!(written["records"].as_array().unwrap().len(), 2, "{written}");
    assert_eq!(
        written["records"][0]["game_id"], "g-changed",
        "oldest first"
    );

    // After the review: a new expired record appears, and a planned one changes.
    let late = containers.create(&[]);
    state.stopped("g-late", Some(&late), 12);
    state
        .connect()
        .execute(
            "UPDATE runtime_records SET last_op_at = last_op_at + 1 WHERE game_id = 'g-changed'",
            [],
        )
        .unwrap();

    let applied = pass(&state, &["--apply-plan", &plan_arg]);
    applied.assert_code(0);

    let json = applied.json();
    let games: Vec<_> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["game_id"].as_str().unwrap())
        .collect();
    assert_eq!(games, ["g-changed", "g-planned"], "exactly the planned set");
    assert_eq!(applied.result_of("g-planned"), "removed");
    assert_eq!(applied.result_of("g-changed"), "conflict");
    assert!(!exists(&planned));
    assert!(
        exists(&changed),
        "a record that changed since the review is left alone"
    );
    assert!(
        exists(&late),
        "a record that was not reviewed is left alone"
    );
    assert_eq!(state.status("g-late"), "stopped");
    assert!(state.log("g-late").is_empty());
    assert_eq!(
        state.log("g-changed")[0].error_code.as_deref(),
        Some("conflict")
    );
}

#[test]
fn a_plan_for_another_state_file_another_retention_or_malformed_is_refused() {
    let state = StateFile::new(Journal::Rollback);
    let other = StateFile::new(Journal::Rollback);
    state.stopped("g", None, 8);
    let plans = tempfile::tempdir().unwrap();
    let plan = plans.path().join("plan.json");
    let plan_arg = plan.display().to_string();
    pass(&state, &["--dry-run", "--plan-out", &plan_arg]).assert_code(0);
    let before = other.bytes();

    let wrong_state = pass(&other, &["--apply-plan", &plan_arg]);
    wrong_state.assert_code(2);
    assert!(
        wrong_state.stderr.contains("was made for state file"),
        "{}",
        wrong_state.stderr
    );
    assert_eq!(other.bytes(), before);

    let path = state.path().display().to_string();
    let wrong_retention = run(&[
        "--retention",
        "8d",
        "--state",
        &path,
        "--apply-plan",
        &plan_arg,
    ]);
    wrong_retention.assert_code(2);
    assert!(
        wrong_retention.stderr.contains("retention"),
        "{}",
        wrong_retention.stderr
    );

    std::fs::write(&plan, "{\"records\": 3}").unwrap();
    let malformed = pass(&state, &["--apply-plan", &plan_arg]);
    malformed.assert_code(2);
    assert!(
        malformed.stderr.contains("malformed"),
        "{}",
        malformed.stderr
    );
    assert_eq!(state.status("g"), "stopped");
    assert!(state.all_log().is_empty());
}

#[test]
fn plan_flags_need_the_right_mode() {
    run_without_docker(&["--retention", "7d", "--plan-out", "/tmp/x.json"]).assert_code(2);
    run_without_docker(&[
        "--retention",
        "7d",
        "--dry-run",
        "--apply-plan",
        "/tmp/x.json",
    ])
    .assert_code(2);
}

//! The command line: help, bad invocations, environment twins. These never reach Docker.

use crate::harness::{run_without_docker, Journal, StateFile};

#[test]
fn help_lists_every_option_its_environment_variable_and_the_exit_statuses() {
    let help = run_without_docker(&["--help"]);
    help.assert_code(0);
    for needle in [
        "--retention",
        "RT_CLEANUP_RETENTION",
        "--state",
        "RT_CLEANUP_STATE",
        "/var/lib/rtmanager/state.db",
        "--dry-run",
        "RT_CLEANUP_DRY_RUN",
        "--output",
        "RT_CLEANUP_OUTPUT",
        "--max-removals",
        "RT_CLEANUP_MAX_REMOVALS",
        "--owner-label",
        "RT_CLEANUP_OWNER_LABEL",
        "--op-source",
        "RT_CLEANUP_OP_SOURCE",
        "auto_ttl",
        "--docker-host",
        "DOCKER_HOST",
        "Exit status",
        "69",
        "75",
        "130",
        "143",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            help.stdout
        );
    }
}

#[test]
fn a_missing_retention_is_a_usage_error() {
    let run = run_without_docker(&[]);
    run.assert_code(2);
    assert!(run.stderr.contains("--retention"), "{}", run.stderr);
}

#[test]
fn bad_retentions_exit_2_naming_the_option_and_an_accepted_form() {
    let state = StateFile::new(Journal::Rollback);
    let before = state.bytes();
    for bad in ["0s", "0", "7x", "seven days", "-1d", ""] {
        let retention = format!("--retention={bad}");
        let run = run_without_docker(&[&retention, "--state", &state.path().display().to_string()]);
        run.assert_code(2);
        let first_line = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first_line.contains("--retention"),
            "{bad:?}: {}",
            run.stderr
        );
        assert!(first_line.contains("7d"), "{bad:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing on stdout for a usage error");
    }
    assert_eq!(state.bytes(), before, "a bad invocation changes nothing");
}

#[test]
fn an_unknown_output_format_or_option_is_a_usage_error() {
    run_without_docker(&["--retention", "7d", "--output", "yaml"]).assert_code(2);
    run_without_docker(&["--retention", "7d", "--force"]).assert_code(2);
    run_without_docker(&["--retention", "7d", "--docker-host", "ssh://host"]).assert_code(2);
    run_without_docker(&["--retention", "7d", "--max-removals", "-1"]).assert_code(2);
}

#[test]
fn version_prints_the_crate_version() {
    let run = run_without_docker(&["--version"]);
    run.assert_code(0);
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")));
}

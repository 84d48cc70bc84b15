//! The invariants the fault suite and the chaos soak check after every fault: what the state file
//! claims of the removals of the containers a test made, against the containers that exist.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;

use super::{daemon, docker, LogRow, Record, StateFile, RUN_LABEL};

/// The full ids of every container of this test run on the shared daemon, in one call.
pub fn existing_on_test_daemon() -> HashSet<String> {
    let filter = format!("label={RUN_LABEL}={}", daemon().run_id);
    docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Checks what the state file says of the removals of the containers a test made, each given as
/// `(game, container)`; `existing` holds the ids of the containers that exist now. Returns one
/// line per broken invariant, empty when all hold:
///
/// * a record that names a container is `removed` only if that container is gone;
/// * the `operation_log` claims each container's removal (`success` without an error code) at
///   most once;
/// * a row that claims a container is gone (`success`, without an error code or with
///   `replay_no_op`) is true: the container is gone, and the record, if it still names it, is
///   `removed`.
pub fn removal_claim_violations<'a>(
    state: &StateFile,
    made: impl IntoIterator<Item = (&'a str, &'a str)>,
    existing: &HashSet<String>,
) -> Vec<String> {
    let log = state.all_log();
    let mut rows_of: HashMap<(&str, &str), Vec<&LogRow>> = HashMap::new();
    for row in &log {
        if let Some(container) = row.container_id.as_deref() {
            rows_of
                .entry((row.game_id.as_str(), container))
                .or_default()
                .push(row);
        }
    }
    let mut records: HashMap<&str, Option<Record>> = HashMap::new();
    let mut violations = Vec::new();
    for (game, container) in made {
        let Some(record) = records
            .entry(game)
            .or_insert_with(|| state.record(game))
            .as_ref()
        else {
            violations.push(format!("record {game} vanished"));
            continue;
        };
        let present = existing.contains(container);
        let names_it = record.container_id == Value::Text(container.to_owned());
        if names_it && record.status == "removed" && present {
            violations.push(format!(
                "{game} is removed while its container {container} exists"
            ));
        }
        let rows = rows_of
            .get(&(game, container))
            .map_or(&[][..], Vec::as_slice);
        let removals = rows
            .iter()
            .filter(|row| row.outcome == "success" && row.error_code.is_none())
            .count();
        if removals > 1 {
            violations.push(format!(
                "the removal of {game}'s container {container} is logged {removals} times: \
                 {rows:?}"
            ));
        }
        let gone_claims = rows.iter().filter(|row| {
            row.outcome == "success"
                && matches!(row.error_code.as_deref(), None | Some("replay_no_op"))
        });
        for row in gone_claims {
            if present || (names_it && record.status != "removed") {
                violations.push(format!(
                    "the log claims {game}'s container {container} is gone, but it exists \
                     ({present}) or the record naming it is {}: {row:?}",
                    record.status
                ));
            }
        }
    }
    violations
}

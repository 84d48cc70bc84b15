//! The results of docs/contract.md ("Results") and the pure functions that decide them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::candidate::Target;
use crate::engine::{ContainerInfo, ContainerState, Inspection, Lookup, Removal, Unanswered};
use crate::space::Freed;
use crate::time::format_epoch_ms;
use crate::value::FieldValue;

/// The result of one expired record, as reported and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// The container existed and Docker removed it.
    Removed,
    /// Nothing to remove (no container, or Docker answered 404): the record moves to `removed`.
    ReplayNoOp,
    /// Someone else holds the game, the record changed, or a removal is already in progress.
    Conflict,
    /// Docker refused or failed, the owner label did not match, or the row is unusable.
    Failed,
    /// Not acted on: over `--max-removals`, or the pass stopped before reaching it.
    Deferred,
}

impl ResultKind {
    /// Every result, in the order the summaries list them.
    pub const ALL: [ResultKind; 5] = [
        ResultKind::Removed,
        ResultKind::ReplayNoOp,
        ResultKind::Conflict,
        ResultKind::Failed,
        ResultKind::Deferred,
    ];

    /// The contract's name of the result.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Removed => "removed",
            ResultKind::ReplayNoOp => "replay_no_op",
            ResultKind::Conflict => "conflict",
            ResultKind::Failed => "failed",
            ResultKind::Deferred => "deferred",
        }
    }
}

impl fmt::Display for ResultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error_code` of a result, as written to `operation_log` and the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Nothing was left to remove.
    ReplayNoOp,
    /// Someone else had the game.
    Conflict,
    /// Docker refused because the container runs (or is paused or restarting).
    ContainerRunning,
    /// Any other Docker refusal, error or timeout.
    DockerError,
    /// The `--owner-label` check failed.
    OwnershipMismatch,
    /// The row cannot be acted on.
    InvalidRecord,
    /// The container was handled but the state file refused the result (read-only, full, or
    /// locked past the wait). The record is still `stopped`; the next run replays it.
    StateWriteFailed,
}

impl ErrorCode {
    /// The contract's name of the code.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ReplayNoOp => "replay_no_op",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ContainerRunning => "container_running",
            ErrorCode::DockerError => "docker_error",
            ErrorCode::OwnershipMismatch => "ownership_mismatch",
            ErrorCode::InvalidRecord => "invalid_record",
            ErrorCode::StateWriteFailed => "state_write_failed",
        }
    }
}

/// A record's result with its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result.
    pub result: ResultKind,
    /// The code; `None` for a plain removal and for a deferral.
    pub error_code: Option<ErrorCode>,
    /// A one-line explanation; `None` for a plain removal. Most messages are fixed text, which
    /// is borrowed rather than copied into each of thousands of outcomes.
    pub error_message: Option<Cow<'static, str>>,
    /// Until when (epoch milliseconds) this run's lease on the game stays, where it is not
    /// released: a removal that got no answer may still be carried out by the daemon, or the
    /// state file refused the result and the release with it. `None` where the lease is
    /// released, or none was taken.
    pub lease_kept_until: Option<i64>,
    /// What the container's removal freed (in a dry run, would free): with `--measure-space` or
    /// `--remove-volumes`, for a container that was looked at; boxed, since most outcomes of a
    /// large pass have none.
    pub freed: Option<Box<Freed>>,
}

impl Outcome {
    /// Docker removed the container.
    #[must_use]
    pub fn removed() -> Self {
        Self {
            result: ResultKind::Removed,
            error_code: None,
            error_message: None,
            lease_kept_until: None,
            freed: None,
        }
    }

    /// A dry run's prediction that Docker would remove the container, with a note for the
    /// reviewer.
    #[must_use]
    pub fn removed_noting(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            error_message: Some(truncated(message.into())),
            ..Self::removed()
        }
    }

    /// Nothing was left to remove.
    #[must_use]
    pub fn replay_no_op(message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(ResultKind::ReplayNoOp, ErrorCode::ReplayNoOp, message)
    }

    /// Someone else had the game.
    #[must_use]
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(ResultKind::Conflict, ErrorCode::Conflict, message)
    }

    /// The record failed with this code.
    #[must_use]
    pub fn failed(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(ResultKind::Failed, code, message)
    }

    /// The record was not acted on.
    #[must_use]
    pub fn deferred(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            result: ResultKind::Deferred,
            error_code: None,
            error_message: Some(message.into()),
            lease_kept_until: None,
            freed: None,
        }
    }

    fn coded(result: ResultKind, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            result,
            error_code: Some(code),
            error_message: Some(truncated(message.into())),
            lease_kept_until: None,
            freed: None,
        }
    }

    /// The same result, with this run's lease on the game kept until `until_ms` instead of
    /// released.
    #[must_use]
    pub fn keeping_lease(self, until_ms: i64) -> Self {
        Self {
            lease_kept_until: Some(until_ms),
            ..self
        }
    }

    /// The same result, with what the container's removal freed.
    #[must_use]
    pub fn freeing(self, freed: Freed) -> Self {
        Self {
            freed: Some(Box::new(freed)),
            ..self
        }
    }

    /// Whether this result moves the record to `removed`: only when its container is gone.
    #[must_use]
    pub fn moves_record(&self) -> bool {
        matches!(self.result, ResultKind::Removed | ResultKind::ReplayNoOp)
    }

    /// The `operation_log.outcome` of this result; `None` for a deferral, which is not logged.
    #[must_use]
    pub fn log_outcome(&self) -> Option<&'static str> {
        match self.result {
            ResultKind::Removed | ResultKind::ReplayNoOp | ResultKind::Conflict => Some("success"),
            ResultKind::Failed => Some("failure"),
            ResultKind::Deferred => None,
        }
    }
}

/// The longest `error_message` kept, in bytes: a daemon's answer can be a whole page.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts a message to [`MAX_MESSAGE_BYTES`] on a character boundary, marking the cut.
fn truncated(message: Cow<'static, str>) -> Cow<'static, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut message = message.into_owned();
    let ellipsis = "…";
    let mut end = MAX_MESSAGE_BYTES - ellipsis.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(ellipsis);
    Cow::Owned(message)
}

/// A message for rt-cleanup's own lines (the text summary, the logs): Docker's answer to a
/// refused removal ends with advice to "force remove", which this tool never does and must not
/// seem to recommend. `operation_log` and the JSON summary keep Docker's words as they were.
#[must_use]
pub fn without_force_advice(message: &str) -> Cow<'_, str> {
    const ADVICE: &[u8] = b" or force remove";
    /// Where the advice's `f` is, after its first space.
    const F_AT: usize = 4;
    const _: () = assert!(ADVICE[0] == b' ' && ADVICE[F_AT] == b'f');
    // The text summary asks this of every record's message, and searching a lowercased copy of
    // each took a tenth of a text dry run over 100,000 records. The advice is looked for in
    // place instead, and only where a space has an `f` four bytes on (" or f…"), which nearly
    // no message has: that first test runs over many bytes at once.
    let bytes = message.as_bytes();
    let maybe = bytes
        .iter()
        .zip(bytes.get(F_AT..).unwrap_or_default())
        .fold(0_u8, |maybe, (&space, &f)| {
            maybe | u8::from(space == b' ' && f | 0x20 == b'f')
        });
    let at = if maybe != 0 {
        bytes
            .windows(ADVICE.len())
            .position(|window| window.eq_ignore_ascii_case(ADVICE))
    } else {
        None
    };
    match at {
        Some(at) => {
            let mut shown = message[..at].to_owned();
            shown.push_str(&message[at + ADVICE.len()..]);
            Cow::Owned(shown)
        }
        None => Cow::Borrowed(message),
    }
}

/// Decides the result of a removal request from Docker's answer. Where no answer came, the
/// container must be inspected before anything is decided (see [`decide_after_unanswered`]):
/// that is the error, with why no answer came.
pub fn decide_removal<'a>(
    reference: &str,
    removal: &'a Removal,
) -> Result<Outcome, &'a Unanswered> {
    Ok(match removal {
        Removal::Removed => Outcome::removed(),
        Removal::NotFound => Outcome::replay_no_op(format!(
            "container {reference} was already gone (Docker answered 404)"
        )),
        Removal::Refused { status, message } => match classify_refusal(*status, message) {
            Some(Refusal::InProgress) => {
                Outcome::conflict(format!("Docker is already removing it: {message}"))
            }
            Some(Refusal::Running) => Outcome::failed(ErrorCode::ContainerRunning, message.clone()),
            None => Outcome::failed(
                ErrorCode::DockerError,
                format!("Docker answered {status}: {message}"),
            ),
        },
        Removal::Unreachable(message) => Outcome::failed(ErrorCode::DockerError, message.clone()),
        Removal::Interrupted => {
            Outcome::deferred("interrupted by a signal before its removal was sent")
        }
        Removal::Unanswered(unanswered) => return Err(unanswered),
    })
}

/// What an engine's refusal to remove a container means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Another removal of the container is under way: `conflict`.
    InProgress,
    /// The container runs, is paused or restarting: `container_running`.
    Running,
}

/// How each engine words its refusals: the status, a phrase of the message (compared in lower
/// case), and what it means. The status alone says little: Podman's Docker-compatible handler
/// answers every error but "no such container" with 500, so its refusal of a running or paused
/// container is known only by its cause, "container state improper". The first matching row
/// wins; a refusal no row matches is a `docker_error`.
const REFUSALS: &[(u16, &str, Refusal)] = &[
    // Docker: "removal of container <id> is already in progress".
    (409, "already in progress", Refusal::InProgress),
    // Docker 20.10: "You cannot remove a running container <id>. Stop the container before
    // attempting removal or force remove", "… a paused container …", "… a restarting
    // container …".
    // Docker 26 and 28: "cannot remove container \"/<name>\": container is running: stop the
    // container before removing or force remove", "… container is paused and must be unpaused
    // first", "… container is restarting: …".
    (409, "running", Refusal::Running),
    (409, "paused", Refusal::Running),
    (409, "restarting", Refusal::Running),
    // Podman: "cannot remove container <id> as it is running - running or paused containers
    // cannot be removed without force: container state improper" (also "as it is paused" and
    // "as it is stopping").
    (500, "container state improper", Refusal::Running),
];

fn classify_refusal(status: u16, message: &str) -> Option<Refusal> {
    let message = message.to_ascii_lowercase();
    REFUSALS
        .iter()
        .find(|(code, phrase, _)| *code == status && message.contains(phrase))
        .map(|(_, _, meaning)| *meaning)
}

/// Decides the result of a removal that got no answer, from an inspection made afterwards. The
/// record is moved to `removed` only when the container is verifiably gone (and the lease is then
/// released). Otherwise the removal may still be carried out by the daemon, now or later: the
/// result is `failed`, and this run's lease on the game is kept until it expires at `lease_until_ms`,
/// so that the runtime manager cannot take the game back while its container may yet vanish.
#[must_use]
pub fn decide_after_unanswered(
    reference: &str,
    unanswered: &Unanswered,
    timeout: std::time::Duration,
    inspection: &Inspection,
    lease_until_ms: i64,
) -> Outcome {
    let what = match unanswered {
        Unanswered::TimedOut => format!(
            "got no answer within {}",
            humantime::format_duration(timeout)
        ),
        Unanswered::ConnectionLost(reason) => {
            format!("lost its connection before an answer ({reason})")
        }
        Unanswered::Abandoned => {
            "was abandoned after a second signal before Docker answered".to_owned()
        }
    };
    let found = match inspection {
        Inspection::NotFound => return Outcome::removed(),
        Inspection::Found(info) => format!("; the container still exists (state {})", info.state),
        Inspection::Failed(message) => format!(", and checking for it failed too: {message}"),
        Inspection::Interrupted => ", and it was not checked since the run is stopping".to_owned(),
    };
    let until = format_epoch_ms(lease_until_ms).unwrap_or_else(|| lease_until_ms.to_string());
    Outcome::failed(
        ErrorCode::DockerError,
        format!(
            "removal of {reference} {what}{found}; the daemon may still carry the removal out, \
             so this run keeps the game's lease until it expires at {until}; the record stays as \
             it is and a run after that retries it"
        ),
    )
    .keeping_lease(lease_until_ms)
}

/// Checks `--owner-label`: the container is removed only if its label `key` is the game, byte
/// for byte.
pub fn check_owner(info: &ContainerInfo, key: &str, game: &FieldValue) -> Result<(), Outcome> {
    let owned_by =
        |value: &str| matches!(game, FieldValue::Text(text) if text.as_bytes() == value.as_bytes());
    match info.labels.get(key) {
        Some(value) if owned_by(value) => Ok(()),
        Some(value) => Err(Outcome::failed(
            ErrorCode::OwnershipMismatch,
            format!(
                "container {} has label {key}={value:?}, not the game {}",
                short_id(&info.id),
                game
            ),
        )),
        None => Err(Outcome::failed(
            ErrorCode::OwnershipMismatch,
            format!("container {} has no label {key}", short_id(&info.id)),
        )),
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A lease row that is still in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLease {
    /// Who holds it, quoted and escaped for messages (a value of the state file).
    pub holder: String,
    /// When it expires, epoch milliseconds; `i64::MAX` where its `expires_at` is not a number
    /// (it never expires).
    pub expires_at: i64,
}

/// The outcome for a game whose lease someone else holds.
#[must_use]
pub fn lease_conflict(lease: &LiveLease) -> Outcome {
    let until = match crate::time::format_epoch_ms(lease.expires_at) {
        Some(time) => format!("until {time}"),
        None if lease.expires_at == i64::MAX => {
            "with an expires_at that is not a time, so it never expires; only its holder can \
             release it"
                .to_owned()
        }
        None => format!("until {} (epoch milliseconds)", lease.expires_at),
    };
    Outcome::conflict(format!("the game is leased by {} {until}", lease.holder))
}

/// Predicts, for `--dry-run`, the result a real run would give the job of this game and target
/// right now.
///
/// `lease` is the live lease on the game, if any; `lookup` is where the job's container
/// reference led in one listing of the daemon's containers; `second_look` is the inspection of
/// a container that the listing shows as `removing`, which alone tells a removal in progress
/// from a container Docker marked dead after a failed removal.
#[must_use]
pub fn predict(
    game: &FieldValue,
    target: &Target,
    lease: Option<&LiveLease>,
    lookup: Option<Lookup<'_>>,
    second_look: Option<&Inspection>,
    owner_label: Option<&str>,
) -> Outcome {
    if let Some(lease) = lease {
        return lease_conflict(lease);
    }
    let reference = match target {
        Target::Invalid(reason) => {
            return Outcome::failed(ErrorCode::InvalidRecord, reason.clone());
        }
        Target::NoContainer => return Outcome::replay_no_op("the record names no container"),
        Target::Container(reference) => reference,
    };
    match lookup {
        // Most records of a large dry run get this message; the record beside it names the
        // container already.
        None | Some(Lookup::Missing) => Outcome::replay_no_op(
            "the container is already gone (the daemon lists no such container)",
        ),
        Some(Lookup::Ambiguous) => Outcome::failed(
            ErrorCode::DockerError,
            format!("container reference {reference} is a prefix of several container ids"),
        ),
        Some(Lookup::Found(listed)) => {
            // A real run checks the owner against the listing too.
            if let Some(key) = owner_label {
                if let Err(mismatch) = check_owner(listed, key, game) {
                    return mismatch;
                }
            }
            let info = match second_look {
                None => listed,
                Some(Inspection::Found(inspected)) => inspected,
                Some(Inspection::NotFound) => {
                    return Outcome::replay_no_op(format!(
                        "container {reference}, listed as {}, is gone now",
                        listed.state
                    ))
                }
                Some(Inspection::Interrupted) => {
                    return Outcome::deferred(format!(
                        "interrupted by a signal before container {reference}, listed as {}, \
                         was looked at again",
                        listed.state
                    ))
                }
                Some(Inspection::Failed(reason)) => {
                    return Outcome::failed(
                        ErrorCode::DockerError,
                        format!(
                            "the daemon lists container {reference} as {}, and its inspection, \
                             which tells a removal in progress from a container Docker marked \
                             dead, failed: {reason}",
                            listed.state
                        ),
                    )
                }
            };
            predict_from_state(reference.as_str(), info)
        }
    }
}

/// Predicts the removal without `force` of a container from its state.
fn predict_from_state(reference: &str, info: &ContainerInfo) -> Outcome {
    match info.state() {
        ContainerState::NotRunning => Outcome::removed(),
        ContainerState::Running => Outcome::failed(
            ErrorCode::ContainerRunning,
            format!("container {reference} is {}", info.state),
        ),
        ContainerState::Removing => {
            Outcome::conflict(format!("Docker is already removing container {reference}"))
        }
        ContainerState::Dead => Outcome::failed(
            ErrorCode::DockerError,
            format!(
                "Docker marked container {reference} dead after a removal that failed; a real \
                 run will try to remove it again, which fails the same way until the cause \
                 (see the daemon's log) is mended"
            ),
        ),
        ContainerState::Unknown => Outcome::removed_noting(format!(
            "container {reference} is in a state rt-cleanup does not know ({}); a real run \
             sends the removal without force, and the daemon refuses it if the container runs",
            if info.state.is_empty() {
                "the daemon gave none".to_owned()
            } else {
                FieldValue::text(&info.state).to_string()
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::{Candidate, StoppedRow};
    use crate::job::Job;
    use std::time::Duration;

    fn refused(status: u16, message: &str) -> Removal {
        Removal::Refused {
            status,
            message: message.into(),
        }
    }

    fn candidate(container: FieldValue) -> Job {
        let candidate = Candidate::from_row(StoppedRow {
            game_id: FieldValue::text("g-1"),
            container_id: container,
            last_op_at: FieldValue::Integer(1),
        });
        Job::for_record(&candidate, 10)
    }

    fn info(state: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef".into(),
            names: vec!["c".into()],
            state: state.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn maps_each_docker_answer_to_the_contract_result() {
        let cases = [
            (Removal::Removed, ResultKind::Removed, None),
            (
                Removal::NotFound,
                ResultKind::ReplayNoOp,
                Some(ErrorCode::ReplayNoOp),
            ),
            (
                refused(409, "removal of container abc is already in progress"),
                ResultKind::Conflict,
                Some(ErrorCode::Conflict),
            ),
            (
                refused(
                    409,
                    "You cannot remove a running container abc. Stop the container",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(409, "cannot remove container \"/x\": container is paused"),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(
                    409,
                    "cannot remove container \"/x\": container is running: stop the container \
                     before removing or force remove",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(
                    409,
                    "cannot remove container \"/x\": container is paused and must be unpaused \
                     first",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(
                    409,
                    "cannot remove container \"x\": container is restarting: stop the container \
                     before removing or force remove",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(409, "something else"),
                ResultKind::Failed,
                Some(ErrorCode::DockerError),
            ),
            (
                refused(
                    500,
                    "cannot remove container 5e78 as it is running - running or paused \
                     containers cannot be removed without force: container state improper",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(
                    500,
                    "cannot remove container 5e78 as it is paused - running or paused \
                     containers cannot be removed without force: container state improper",
                ),
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                refused(500, "container is running on another host"),
                ResultKind::Failed,
                Some(ErrorCode::DockerError),
            ),
            (
                refused(500, "driver failed"),
                ResultKind::Failed,
                Some(ErrorCode::DockerError),
            ),
            (
                Removal::Unreachable("reset".into()),
                ResultKind::Failed,
                Some(ErrorCode::DockerError),
            ),
        ];
        for (removal, result, code) in cases {
            let outcome = decide_removal("abc", &removal).expect("answered");
            assert_eq!(
                (outcome.result, outcome.error_code),
                (result, code),
                "{removal:?}"
            );
        }
    }

    #[test]
    fn docker_messages_are_kept_verbatim() {
        let outcome = decide_removal("abc", &refused(500, "driver \"overlay2\" failed")).unwrap();
        assert!(outcome
            .error_message
            .unwrap()
            .contains("driver \"overlay2\" failed"));
    }

    #[test]
    fn a_removal_without_answer_is_confirmed_before_deciding_and_keeps_the_lease_unless_gone() {
        const UNTIL: i64 = 1_800_000_300_000;
        let wait = Duration::from_secs(30);
        for unanswered in [
            Unanswered::TimedOut,
            Unanswered::ConnectionLost("connection closed before message completed".into()),
            Unanswered::Abandoned,
        ] {
            let removal = Removal::Unanswered(unanswered.clone());
            assert_eq!(
                decide_removal("abc", &removal),
                Err(&unanswered),
                "{removal:?}"
            );
            let decide =
                |inspection| decide_after_unanswered("abc", &unanswered, wait, &inspection, UNTIL);
            assert_eq!(
                decide(Inspection::NotFound),
                Outcome::removed(),
                "gone: removed, the lease released"
            );
            for inspection in [
                Inspection::Found(info("exited", &[])),
                Inspection::Failed("timed out".into()),
                Inspection::Interrupted,
            ] {
                let shown = format!("{unanswered:?} {inspection:?}");
                let outcome = decide(inspection);
                assert_eq!(outcome.error_code, Some(ErrorCode::DockerError), "{shown}");
                assert!(!outcome.moves_record(), "{shown}");
                assert_eq!(outcome.lease_kept_until, Some(UNTIL), "{shown}");
                let message = outcome.error_message.unwrap();
                assert!(
                    message.contains("may still carry the removal out")
                        && message.contains("2027-01-15T08:05:00.000Z"),
                    "{shown}: {message}"
                );
            }
        }
        assert_eq!(
            decide_removal("abc", &Removal::Interrupted).map(|o| o.result),
            Ok(ResultKind::Deferred),
            "a removal never sent was not reached"
        );
    }

    #[test]
    fn the_prediction_for_a_gone_container_borrows_its_fixed_message() {
        // A dry run over a backlog gives most records this outcome: no copy of it per record.
        let game = FieldValue::text("g");
        let target = Target::Container(crate::candidate::ContainerRef::parse("abc").unwrap());
        let outcome = predict(&game, &target, None, Some(Lookup::Missing), None, None);
        assert_eq!(outcome.result, ResultKind::ReplayNoOp);
        assert!(matches!(outcome.error_message, Some(Cow::Borrowed(_))));
        // A long message is still cut to the limit.
        let long = Outcome::failed(ErrorCode::DockerError, "x".repeat(MAX_MESSAGE_BYTES + 10));
        assert!(long.error_message.unwrap().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn only_a_gone_container_moves_the_record() {
        assert!(Outcome::removed().moves_record());
        assert!(Outcome::replay_no_op("x").moves_record());
        assert!(!Outcome::conflict("x").moves_record());
        assert!(!Outcome::failed(ErrorCode::DockerError, "x").moves_record());
        assert!(!Outcome::deferred("x").moves_record());
    }

    #[test]
    fn log_outcomes_follow_the_contract() {
        assert_eq!(Outcome::removed().log_outcome(), Some("success"));
        assert_eq!(Outcome::replay_no_op("x").log_outcome(), Some("success"));
        assert_eq!(Outcome::conflict("x").log_outcome(), Some("success"));
        assert_eq!(
            Outcome::failed(ErrorCode::InvalidRecord, "x").log_outcome(),
            Some("failure")
        );
        assert_eq!(Outcome::deferred("x").log_outcome(), None);
    }

    #[test]
    fn the_owner_label_must_equal_the_game() {
        let game = FieldValue::text("g-1");
        assert!(check_owner(&info("exited", &[("owner", "g-1")]), "owner", &game).is_ok());
        let wrong = check_owner(&info("exited", &[("owner", "g-2")]), "owner", &game).unwrap_err();
        assert_eq!(
            wrong,
            Outcome::failed(
                ErrorCode::OwnershipMismatch,
                "container 0123456789ab has label owner=\"g-2\", not the game \"g-1\""
            ),
            "the container (its short id), the label and both values"
        );
        let blob = FieldValue::Blob(b"g-1".to_vec());
        assert!(check_owner(&info("exited", &[("owner", "g-1")]), "owner", &blob).is_err());
        let missing = check_owner(&info("exited", &[]), "owner", &game).unwrap_err();
        assert_eq!(
            missing,
            Outcome::failed(
                ErrorCode::OwnershipMismatch,
                "container 0123456789ab has no label owner"
            )
        );
    }

    fn predicted(
        job: &Job,
        lease: Option<&LiveLease>,
        lookup: Option<Lookup<'_>>,
        owner_label: Option<&str>,
    ) -> Outcome {
        predict(&job.game, &job.target, lease, lookup, None, owner_label)
    }

    #[test]
    fn a_lease_conflict_says_until_when_in_every_form_of_expiry() {
        let message = |expires_at| {
            lease_conflict(&LiveLease {
                holder: "\"rtmanager\"".into(),
                expires_at,
            })
            .error_message
            .unwrap()
            .into_owned()
        };
        assert_eq!(
            message(1_800_000_300_000),
            "the game is leased by \"rtmanager\" until 2027-01-15T08:05:00.000Z"
        );
        // An integer past year 9999 is still a time to compare, but none to show.
        assert_eq!(
            message(300_000_000_000_000),
            "the game is leased by \"rtmanager\" until 300000000000000 (epoch milliseconds)"
        );
        assert_eq!(
            message(i64::MAX),
            "the game is leased by \"rtmanager\" with an expires_at that is not a time, so it \
             never expires; only its holder can release it"
        );
    }

    #[test]
    fn a_dry_run_predicts_every_result() {
        let with_container = candidate(FieldValue::text("c"));
        let exited = info("exited", &[("owner", "g-1")]);
        let lease = LiveLease {
            holder: "rtmanager".into(),
            expires_at: 10,
        };
        let cases = [
            (
                predicted(&with_container, None, Some(Lookup::Found(&exited)), None),
                ResultKind::Removed,
            ),
            (
                predicted(&with_container, None, Some(Lookup::Missing), None),
                ResultKind::ReplayNoOp,
            ),
            (
                predicted(&candidate(FieldValue::Null), None, None, None),
                ResultKind::ReplayNoOp,
            ),
            (
                predicted(
                    &with_container,
                    Some(&lease),
                    Some(Lookup::Found(&exited)),
                    None,
                ),
                ResultKind::Conflict,
            ),
            (
                predicted(
                    &with_container,
                    None,
                    Some(Lookup::Found(&info("removing", &[]))),
                    None,
                ),
                ResultKind::Conflict,
            ),
            (
                predicted(
                    &with_container,
                    None,
                    Some(Lookup::Found(&info("running", &[]))),
                    None,
                ),
                ResultKind::Failed,
            ),
            (
                predicted(
                    &with_container,
                    None,
                    Some(Lookup::Found(&exited)),
                    Some("other"),
                ),
                ResultKind::Failed,
            ),
            (
                predicted(&candidate(FieldValue::text("../x")), None, None, None),
                ResultKind::Failed,
            ),
        ];
        for (index, (outcome, expected)) in cases.into_iter().enumerate() {
            assert_eq!(outcome.result, expected, "case {index}: {outcome:?}");
        }
    }

    #[test]
    fn a_dry_run_predicts_from_every_state_an_engine_names_and_from_one_it_does_not_know() {
        let job = candidate(FieldValue::text("c"));
        let from = |state: &str| {
            let listed = info(state, &[]);
            predicted(&job, None, Some(Lookup::Found(&listed)), None)
        };
        for (state, result, code) in [
            ("created", ResultKind::Removed, None),
            ("exited", ResultKind::Removed, None),
            ("stopped", ResultKind::Removed, None),
            (
                "running",
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                "paused",
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                "restarting",
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            (
                "stopping",
                ResultKind::Failed,
                Some(ErrorCode::ContainerRunning),
            ),
            ("removing", ResultKind::Conflict, Some(ErrorCode::Conflict)),
            ("dead", ResultKind::Failed, Some(ErrorCode::DockerError)),
            ("hibernating", ResultKind::Removed, None),
            ("", ResultKind::Removed, None),
        ] {
            let outcome = from(state);
            assert_eq!(
                (outcome.result, outcome.error_code),
                (result, code),
                "{state:?}"
            );
        }
        assert_eq!(from("stopped").error_message, None);
        let unknown = from("hibernating").error_message.unwrap();
        assert!(
            unknown.contains("does not know (\"hibernating\")"),
            "the dry run says the state was unknown: {unknown}"
        );
        let none = from("").error_message.unwrap();
        assert!(none.contains("the daemon gave none"), "{none}");
        let dead = from("dead").error_message.unwrap();
        assert!(
            dead.contains("dead after a removal that failed")
                && dead.contains("try to remove it again"),
            "{dead}"
        );
    }

    #[test]
    fn a_second_look_decides_after_the_owner_check_of_the_listing() {
        let job = candidate(FieldValue::text("c"));
        let listed = info("removing", &[("owner", "g-2")]);
        let dead = Inspection::Found(info("dead", &[("owner", "g-2")]));
        let outcome = predict(
            &job.game,
            &job.target,
            None,
            Some(Lookup::Found(&listed)),
            Some(&dead),
            Some("owner"),
        );
        assert_eq!(outcome.error_code, Some(ErrorCode::OwnershipMismatch));
        let lease = LiveLease {
            holder: "rtmanager".into(),
            expires_at: 10,
        };
        let leased = predict(
            &job.game,
            &job.target,
            Some(&lease),
            Some(Lookup::Found(&listed)),
            Some(&dead),
            None,
        );
        assert_eq!(leased.result, ResultKind::Conflict, "the lease first");
    }

    #[test]
    fn long_messages_are_cut_to_a_kibibyte_on_a_character_boundary() {
        assert_eq!(MAX_MESSAGE_BYTES, 1024, "the contract's 1 KiB");
        let message = |text: String| {
            Outcome::failed(ErrorCode::DockerError, text)
                .error_message
                .unwrap()
                .into_owned()
        };
        // A message of exactly the limit is kept whole; one byte more is cut to 1,021 bytes and
        // the three bytes of the ellipsis.
        let whole = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(message(whole.clone()), whole);
        let cut = format!("{}…", "x".repeat(1_021));
        assert_eq!(message("x".repeat(MAX_MESSAGE_BYTES + 1)), cut);
        assert_eq!(message("x".repeat(5_000)), cut);
        // Byte 1,021 falls inside a two-byte "é": the cut moves back to the character's start.
        assert_eq!(message("é".repeat(2_000)), format!("{}…", "é".repeat(510)));
        // Byte 1,021 falls inside a four-byte character begun at byte 1,019: back two bytes more.
        assert_eq!(
            message(format!("{}{}", "x".repeat(1_019), "🦀".repeat(10))),
            format!("{}…", "x".repeat(1_019))
        );
        let short = Outcome::failed(ErrorCode::DockerError, "short");
        assert_eq!(short.error_message.as_deref(), Some("short"));
        // A dry run's note is cut the same way.
        let note = Outcome::removed_noting("x".repeat(5_000));
        assert_eq!(
            (note.result, note.error_message.as_deref()),
            (ResultKind::Removed, Some(cut.as_str()))
        );
    }

    #[test]
    fn our_own_lines_never_advise_force() {
        let docker = "You cannot remove a running container abc. Stop the container before \
                      attempting removal or force remove";
        assert_eq!(
            without_force_advice(docker),
            "You cannot remove a running container abc. Stop the container before attempting \
             removal"
        );
        assert_eq!(without_force_advice("driver failed"), "driver failed");
        assert_eq!(
            without_force_advice("é: stop it first, Or Force Remove it"),
            "é: stop it first, it",
            "in any case, after any character"
        );
        assert_eq!(
            without_force_advice(" or force remove"),
            "",
            "the advice alone"
        );
        assert_eq!(without_force_advice(" or force remov"), " or force remov");
        assert_eq!(
            without_force_advice("stop it OR FORCE REMOVE"),
            "stop it",
            "the only space with an f four bytes on starts the advice"
        );
        assert!(matches!(
            without_force_advice("the container is already gone"),
            Cow::Borrowed(_)
        ));
        // The first search, in a lowercased copy, as the judge of the one in place.
        let first_search =
            |message: &str| match message.to_ascii_lowercase().find(" or force remove") {
                Some(at) => format!("{}{}", &message[..at], &message[at + 16..]),
                None => message.to_owned(),
            };
        for prefix in ["", "x", "é", "stop it first,", "a f", " f", " or  f"] {
            for advice in [
                " or force remove",
                " Or Force Remove",
                " OR FORCE REMOVE",
                " or force",
            ] {
                for suffix in ["", " it", "é", " or force remove"] {
                    let message = format!("{prefix}{advice}{suffix}");
                    assert_eq!(without_force_advice(&message), first_search(&message));
                }
            }
        }
    }
}

//! The two renderings of `explain`, as pure functions of what it found: the JSON object of
//! `--output json` and the text, a block of `key: value` lines per game (docs/contract.md, "The
//! read-only commands").

use std::io::{self, Write};
use std::time::Duration;

use super::verdict::for_people;
use super::{ContainerView, Explanation, GameExplanation, Labelled, OrphanView, Verdict};
use crate::cli::OrphanMode;
use crate::engine::{ContainerInfo, Inspection};
use crate::history::render::{write_json_row, write_text_row};
use crate::outcome::{without_force_advice, ErrorCode, Outcome, ResultKind};
use crate::render::{json_field, json_option, json_string, quote, quote_field};
use crate::summary::{freed_figures, write_json_freed, write_text_freed};
use crate::time::{format_epoch_ms, Timestamp};
use crate::value::FieldValue;

/// A time of the state file for people: RFC 3339 where it is an integer of epoch milliseconds,
/// else the value as stored.
fn time_field(value: &FieldValue) -> String {
    match value {
        FieldValue::Integer(ms) => {
            format_epoch_ms(*ms).unwrap_or_else(|| format!("{ms} (epoch milliseconds)"))
        }
        other => quote_field(other),
    }
}

/// What a pass does, in words, for the result the dry run predicts.
fn what_a_pass_does(outcome: &Outcome) -> &'static str {
    match outcome.result {
        ResultKind::Removed => "removes its container and moves the record to removed",
        ResultKind::ReplayNoOp => "finds nothing to remove and moves the record to removed",
        ResultKind::Conflict => "leaves it as it is (conflict)",
        ResultKind::Failed => "fails to remove it and leaves the record stopped",
        ResultKind::Deferred => "defers it to a later run",
    }
}

/// The sentence that says why, for one game.
fn reason(explanation: &Explanation, game: &GameExplanation) -> String {
    match &game.verdict {
        Verdict::NoRecord => {
            let labelled = match &game.labelled {
                Some(Ok(labelled)) if !labelled.is_empty() => format!(
                    "; {} labelled for it (see labelled)",
                    match labelled.len() {
                        1 => "one container is".to_owned(),
                        n => format!("{n} containers are"),
                    }
                ),
                _ => String::new(),
            };
            format!("the state file has no record of this game: a pass never selects it{labelled}")
        }
        Verdict::NotStopped { status, since } => format!(
            "its record is {} since {}: only stopped records are removed",
            quote_field(status),
            time_field(since)
        ),
        Verdict::NotExpired {
            expires_at_ms,
            in_ms,
        } => format!(
            "stopped within the retention ({}): it expires at {}, in {}; a pass after that \
             removes it",
            humantime::format_duration(Duration::from_secs(explanation.retention_seconds)),
            format_epoch_ms(*expires_at_ms).unwrap_or_else(|| expires_at_ms.to_string()),
            for_people(*in_ms)
        ),
        Verdict::Expired { position, outcome } => {
            let since = game
                .record
                .as_ref()
                .map_or_else(|| "-".to_owned(), |record| time_field(&record.last_op_at));
            let place = format!(
                "stopped at {since}, before the threshold {}; candidate {} of {}, oldest first",
                explanation.threshold,
                position + 1,
                explanation.candidates
            );
            let unasked = if explanation.daemon.is_err() {
                "; while the daemon cannot be asked, a pass exits 69 and acts on nothing"
            } else {
                ""
            };
            let because = match outcome {
                None => format!(
                    "{place}: the daemon could not be asked, so what a pass does with its \
                     container is not known"
                ),
                Some(outcome) if outcome.result == ResultKind::Deferred => format!(
                    "{place}, and --max-removals {} acts on the first {} only: a pass now {}",
                    explanation.max_removals.unwrap_or_default(),
                    explanation.max_removals.unwrap_or_default(),
                    what_a_pass_does(outcome)
                ),
                Some(outcome) => format!("{place}: a pass now {}", what_a_pass_does(outcome)),
            };
            because + unasked
        }
        Verdict::Removed { last_row } => match last_row {
            Some(row) => format!(
                "its record is removed; its newest operation_log row (id {}): op_kind {}, \
                 outcome {}, by op_source {}, finished at {}",
                row.id,
                quote_field(&row.op_kind),
                quote_field(&row.outcome),
                quote_field(&row.op_source),
                time_field(&row.finished_at)
            ),
            None => "its record is removed; no operation_log row of it is left".to_owned(),
        },
        Verdict::Changed => "its record, stopped and expired now, was not a candidate a moment \
                             before: the runtime manager wrote it while it was read; explain \
                             again"
            .to_owned(),
    }
}

/// What a pass with the explained `--orphans` mode does with an orphan, and what `--orphans
/// remove` would.
fn orphan_words(mode: OrphanMode, outcome: Option<&Outcome>) -> String {
    let remove = outcome.map_or("-", |outcome| outcome.result.as_str());
    match mode {
        OrphanMode::Off => format!(
            "an orphan; the pass (--orphans off) does not look for orphans; --orphans remove \
             would give: {remove}"
        ),
        OrphanMode::Report => format!(
            "an orphan; the pass (--orphans report) lists it and attempts nothing; --orphans \
             remove would give: {remove}"
        ),
        OrphanMode::Remove => format!("an orphan; the pass (--orphans remove) gives: {remove}"),
    }
}

/// Writes the text of `explain`: a block per game, then a closing line.
pub fn write_text(explanation: &Explanation, out: &mut impl Write) -> io::Result<()> {
    for game in &explanation.games {
        write_text_game(explanation, game, out)?;
    }
    write!(
        out,
        "rt-cleanup explain: {} game{} (retention {}, threshold {}, {} candidates)",
        explanation.games.len(),
        if explanation.games.len() == 1 {
            ""
        } else {
            "s"
        },
        humantime::format_duration(Duration::from_secs(explanation.retention_seconds)),
        explanation.threshold,
        explanation.candidates
    )?;
    if let Err(why) = &explanation.daemon {
        write!(
            out,
            "; the daemon could not be asked, so containers were not checked: {}",
            quote(why)
        )?;
    }
    out.write_all(b"\n")
}

fn write_text_game(
    explanation: &Explanation,
    game: &GameExplanation,
    out: &mut impl Write,
) -> io::Result<()> {
    write!(out, "{}: {}", quote_field(&game.game), game.verdict.name())?;
    if let Verdict::Expired {
        outcome: Some(outcome),
        ..
    } = &game.verdict
    {
        write!(out, " {}", outcome.result.as_str())?;
        if let Some(code) = outcome.error_code {
            write!(out, " error_code={}", code.as_str())?;
        }
        if let Some(message) = &outcome.error_message {
            write!(out, " message={}", quote(&without_force_advice(message)))?;
        }
        let (size, volumes) = freed_figures(explanation.disk, Some(outcome));
        write_text_freed(out, &size, &volumes)?;
    }
    writeln!(out)?;
    // Every value the sentence holds is quoted and escaped already.
    writeln!(out, "  reason: {}", reason(explanation, game))?;
    match &game.record {
        Some(record) => writeln!(
            out,
            "  record: status={} container_id={} last_op_at={}",
            quote_field(&record.status),
            quote_field(&record.container_id),
            time_field(&record.last_op_at)
        )?,
        None => writeln!(out, "  record: none")?,
    }
    match &game.lease {
        Some(lease) => writeln!(
            out,
            "  lease: holder={} until={}",
            lease.holder,
            format_epoch_ms(lease.expires_at).unwrap_or_else(|| "never".to_owned())
        )?,
        None => writeln!(out, "  lease: none")?,
    }
    write!(out, "  container: ")?;
    match &game.container {
        ContainerView::NoneNamed => writeln!(out, "none named")?,
        ContainerView::NotAReference(reason) => {
            writeln!(out, "not asked: {}", quote(reason))?;
        }
        ContainerView::NotAsked => writeln!(out, "not checked: the daemon could not be asked")?,
        ContainerView::Inspected(Inspection::Found(info)) => {
            write_text_container(info, explanation.owner_label.as_deref(), out)?;
            writeln!(out)?;
        }
        ContainerView::Inspected(Inspection::NotFound) => {
            writeln!(out, "gone: the daemon has no such container")?;
        }
        ContainerView::Inspected(Inspection::Failed(reason)) => {
            writeln!(out, "not checked: the inspection failed: {}", quote(reason))?;
        }
        ContainerView::Inspected(Inspection::Interrupted) => {
            writeln!(out, "not checked: interrupted by a signal")?;
        }
    }
    match &game.labelled {
        None => {}
        Some(Err(why)) => writeln!(out, "  labelled: not checked: {}", quote(why))?,
        Some(Ok(labelled)) if labelled.is_empty() => writeln!(out, "  labelled: none")?,
        Some(Ok(labelled)) => {
            for container in labelled {
                write!(out, "  labelled: ")?;
                write_text_container(&container.info, explanation.owner_label.as_deref(), out)?;
                writeln!(
                    out,
                    " orphan={}",
                    quote(&orphan_text(explanation.orphan_mode, container))
                )?;
            }
        }
    }
    if game.log.is_empty() {
        writeln!(out, "  log: none")?;
    }
    for row in &game.log {
        write!(out, "  log: ")?;
        write_text_row(row, out)?;
        writeln!(out)?;
    }
    Ok(())
}

/// A labelled container's orphan status in words.
fn orphan_text(mode: OrphanMode, container: &Labelled) -> String {
    match &container.orphan {
        OrphanView::Orphan(outcome) => orphan_words(mode, outcome.as_ref()),
        OrphanView::Running => "no: it runs".to_owned(),
        OrphanView::Claimed => "no: the game's record names it".to_owned(),
        OrphanView::Young => {
            "no: stopped (or created) less than the retention ago, or its times are unknown"
                .to_owned()
        }
        OrphanView::Unknown(why) => format!("not known: {why}"),
    }
}

/// A container as `key=value` pairs: its id, state, names and owner label.
fn write_text_container(
    info: &ContainerInfo,
    owner_label: Option<&str>,
    out: &mut impl Write,
) -> io::Result<()> {
    write!(
        out,
        "id={} state={} names={}",
        quote(&info.id),
        quote(&info.state),
        quote(&info.names.join(","))
    )?;
    if let Some(key) = owner_label {
        write!(
            out,
            " owner_label={}",
            info.labels
                .get(key)
                .map_or_else(|| "-".to_owned(), |value| quote(value).into_owned())
        )?;
    }
    Ok(())
}

/// Writes the JSON object of `--output json`, with a final newline.
pub fn write_json(explanation: &Explanation, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{\"state\":")?;
    json_string(out, &explanation.state)?;
    write!(
        out,
        ",\"retention_seconds\":{},\"threshold\":",
        explanation.retention_seconds
    )?;
    json_string(out, &explanation.threshold)?;
    out.write_all(b",\"now\":")?;
    json_string(out, &explanation.now)?;
    out.write_all(b",\"max_removals\":")?;
    match explanation.max_removals {
        Some(max) => write!(out, "{max}")?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"owner_label\":")?;
    json_option(out, explanation.owner_label.as_deref())?;
    out.write_all(b",\"orphans\":")?;
    json_string(out, orphan_mode_name(explanation.orphan_mode))?;
    write!(
        out,
        ",\"candidates\":{},\"daemon\":",
        explanation.candidates
    )?;
    match &explanation.daemon {
        Ok(engine) => {
            out.write_all(b"{\"engine\":")?;
            json_string(out, engine)?;
            out.write_all(b",\"error\":null}")?;
        }
        Err(why) => {
            out.write_all(b"{\"engine\":null,\"error\":")?;
            json_string(out, why)?;
            out.write_all(b"}")?;
        }
    }
    out.write_all(b",\"games\":[")?;
    for (n, game) in explanation.games.iter().enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        write_json_game(explanation, game, out)?;
    }
    out.write_all(b"]}\n")
}

fn orphan_mode_name(mode: OrphanMode) -> &'static str {
    match mode {
        OrphanMode::Off => "off",
        OrphanMode::Report => "report",
        OrphanMode::Remove => "remove",
    }
}

fn json_time(out: &mut impl Write, ms: Option<i64>) -> io::Result<()> {
    match ms.and_then(Timestamp::from_epoch_ms) {
        // An RFC 3339 time needs no escaping.
        Some(time) => write!(out, "\"{time}\""),
        None => out.write_all(b"null"),
    }
}

fn json_outcome(out: &mut impl Write, outcome: Option<&Outcome>) -> io::Result<()> {
    out.write_all(b"\"result\":")?;
    json_option(out, outcome.map(|outcome| outcome.result.as_str()))?;
    out.write_all(b",\"error_code\":")?;
    json_option(
        out,
        outcome.and_then(|outcome| outcome.error_code.map(ErrorCode::as_str)),
    )?;
    out.write_all(b",\"error_message\":")?;
    json_option(
        out,
        outcome.and_then(|outcome| outcome.error_message.as_deref()),
    )
}

fn write_json_game(
    explanation: &Explanation,
    game: &GameExplanation,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b"{\"game_id\":")?;
    json_field(out, &game.game)?;
    out.write_all(b",\"verdict\":")?;
    json_string(out, game.verdict.name())?;
    out.write_all(b",\"reason\":")?;
    json_string(out, &reason(explanation, game))?;
    out.write_all(b",")?;
    let (outcome, position) = match &game.verdict {
        Verdict::Expired { position, outcome } => (outcome.as_ref(), Some(*position + 1)),
        _ => (None, None),
    };
    json_outcome(out, outcome)?;
    // What the dry run says the removal would free, as its summary's record says it; `null`
    // where the result is not the dry run's, or not known.
    let (size, volumes) = freed_figures(explanation.disk, outcome);
    write_json_freed(out, &size, &volumes)?;
    out.write_all(b",\"position\":")?;
    match position {
        Some(position) => write!(out, "{position}")?,
        None => out.write_all(b"null")?,
    }
    let (expires_at, expires_in) = match &game.verdict {
        Verdict::NotExpired {
            expires_at_ms,
            in_ms,
        } => (Some(*expires_at_ms), Some(in_ms / 1000)),
        _ => (None, None),
    };
    out.write_all(b",\"expires_at\":")?;
    json_time(out, expires_at)?;
    out.write_all(b",\"expires_in_seconds\":")?;
    match expires_in {
        Some(seconds) => write!(out, "{seconds}")?,
        None => out.write_all(b"null")?,
    }
    write_json_record_and_lease(game, out)?;
    write_json_containers(explanation, game, out)?;
    out.write_all(b",\"log\":[")?;
    for (n, row) in game.log.iter().enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        write_json_row(row, out)?;
    }
    out.write_all(b"]}")
}

/// The game's `record` and `lease` keys.
fn write_json_record_and_lease(game: &GameExplanation, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b",\"record\":")?;
    match &game.record {
        Some(record) => {
            out.write_all(b"{\"status\":")?;
            json_field(out, &record.status)?;
            out.write_all(b",\"container_id\":")?;
            json_field(out, &record.container_id)?;
            out.write_all(b",\"last_op_at\":")?;
            json_field(out, &record.last_op_at)?;
            out.write_all(b",\"last_op_at_rfc3339\":")?;
            json_time(
                out,
                match record.last_op_at {
                    FieldValue::Integer(ms) => Some(ms),
                    _ => None,
                },
            )?;
            out.write_all(b"}")?;
        }
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"lease\":")?;
    match &game.lease {
        Some(lease) => {
            out.write_all(b"{\"holder\":")?;
            json_string(out, &lease.holder)?;
            out.write_all(b",\"until\":")?;
            json_time(out, Some(lease.expires_at))?;
            out.write_all(b"}")?;
        }
        None => out.write_all(b"null")?,
    }
    Ok(())
}

/// The game's `container`, `container_error`, `labelled` and `labelled_error` keys.
fn write_json_containers(
    explanation: &Explanation,
    game: &GameExplanation,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b",\"container\":")?;
    let mut container_error = None;
    match &game.container {
        ContainerView::Inspected(Inspection::Found(info)) => {
            write_json_container(info, explanation.owner_label.as_deref(), out)?;
        }
        ContainerView::NoneNamed => out.write_all(b"null")?,
        ContainerView::Inspected(Inspection::NotFound) => {
            out.write_all(b"null")?;
            container_error = Some("gone: the daemon has no such container".to_owned());
        }
        ContainerView::NotAReference(reason) => {
            out.write_all(b"null")?;
            container_error = Some(format!("never sent to the daemon: {reason}"));
        }
        ContainerView::Inspected(Inspection::Failed(reason)) => {
            out.write_all(b"null")?;
            container_error = Some(format!("the inspection failed: {reason}"));
        }
        ContainerView::Inspected(Inspection::Interrupted) => {
            out.write_all(b"null")?;
            container_error = Some("interrupted by a signal".to_owned());
        }
        ContainerView::NotAsked => {
            out.write_all(b"null")?;
            container_error = Some("the daemon could not be asked".to_owned());
        }
    }
    out.write_all(b",\"container_error\":")?;
    json_option(out, container_error.as_deref())?;
    out.write_all(b",\"labelled\":")?;
    match &game.labelled {
        None => out.write_all(b"null,\"labelled_error\":null")?,
        Some(Err(why)) => {
            out.write_all(b"null,\"labelled_error\":")?;
            json_string(out, why)?;
        }
        Some(Ok(labelled)) => {
            out.write_all(b"[")?;
            for (n, container) in labelled.iter().enumerate() {
                if n > 0 {
                    out.write_all(b",")?;
                }
                write_json_labelled(explanation, container, out)?;
            }
            out.write_all(b"],\"labelled_error\":null")?;
        }
    }
    Ok(())
}

fn write_json_container(
    info: &ContainerInfo,
    owner_label: Option<&str>,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b"{\"id\":")?;
    json_string(out, &info.id)?;
    out.write_all(b",\"names\":[")?;
    for (n, name) in info.names.iter().enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        json_string(out, name)?;
    }
    out.write_all(b"],\"state\":")?;
    json_string(out, &info.state)?;
    out.write_all(b",\"owner_label\":")?;
    json_option(
        out,
        owner_label
            .and_then(|key| info.labels.get(key))
            .map(String::as_str),
    )?;
    out.write_all(b"}")
}

fn write_json_labelled(
    explanation: &Explanation,
    container: &Labelled,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b"{\"container\":")?;
    write_json_container(&container.info, explanation.owner_label.as_deref(), out)?;
    let orphan = match &container.orphan {
        OrphanView::Orphan(_) => "yes",
        OrphanView::Running | OrphanView::Claimed | OrphanView::Young => "no",
        OrphanView::Unknown(_) => "unknown",
    };
    out.write_all(b",\"orphan\":")?;
    json_string(out, orphan)?;
    out.write_all(b",\"reason\":")?;
    json_string(out, &orphan_text(explanation.orphan_mode, container))?;
    out.write_all(b",\"remove\":{")?;
    let outcome = match &container.orphan {
        OrphanView::Orphan(outcome) => outcome.as_ref(),
        _ => None,
    };
    json_outcome(out, outcome)?;
    out.write_all(b"}}")
}

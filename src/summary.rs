//! The summary of a pass ("The JSON summary" in docs/contract.md) and its two renderings, as
//! pure functions.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use crate::candidate::Candidate;
use crate::config::DiskOptions;
use crate::outcome::{without_force_advice, ErrorCode, Outcome, ResultKind};
use crate::render::{json_option, json_string, write_quoted};
use crate::space::for_people;
use crate::time::Timestamp;

/// A figure that a record's (or an orphan's) report carries only when an option asks for it:
/// `size_rw_bytes` under `--measure-space`, `volumes_removed` under `--remove-volumes`. Without
/// the option the key is left out, so that the summary is the contract's as it always was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked<T> {
    /// The option is off: no key.
    Off,
    /// Asked, and not known: `null`.
    Unknown,
    /// Asked and known.
    Known(T),
}

impl<T> Asked<T> {
    /// The figure of an option that is on (`asked`), known or not.
    #[must_use]
    pub fn of(asked: bool, known: Option<T>) -> Self {
        match (asked, known) {
            (false, _) => Asked::Off,
            (true, None) => Asked::Unknown,
            (true, Some(value)) => Asked::Known(value),
        }
    }

    /// Whether the option is off, and the key left out.
    #[must_use]
    pub fn is_off(&self) -> bool {
        matches!(self, Asked::Off)
    }

    /// The figure, where it is known.
    #[must_use]
    pub fn known(&self) -> Option<&T> {
        match self {
            Asked::Known(value) => Some(value),
            Asked::Off | Asked::Unknown => None,
        }
    }
}

impl<T: Serialize> Serialize for Asked<T> {
    /// The value, or `null`; a key that is not asked for is skipped by its field.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Asked::Known(value) => value.serialize(serializer),
            Asked::Off | Asked::Unknown => serializer.serialize_none(),
        }
    }
}

/// What an outcome says its container's removal freed, as the options ask for it: unknown
/// where there is no outcome (an orphan only reported, a result the daemon was needed for and
/// could not be asked).
pub(crate) fn freed_figures(
    disk: DiskOptions,
    outcome: Option<&Outcome>,
) -> (Asked<u64>, Asked<Vec<String>>) {
    let freed = outcome.and_then(|outcome| outcome.freed.as_deref());
    (
        Asked::of(disk.measure_space, freed.and_then(|freed| freed.size_rw)),
        Asked::of(
            disk.remove_volumes,
            freed.and_then(|freed| freed.volumes.clone()),
        ),
    )
}

/// One expired candidate and its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordReport {
    /// The game; `null` where it is NULL (a table made without the contract's NOT NULL).
    pub game_id: Option<String>,
    /// The container reference as stored; `null` where it is NULL.
    pub container_id: Option<String>,
    /// `last_op_at` (RFC 3339 when shown); `null` where the row's value is not an integer.
    pub last_op_at: Option<Timestamp>,
    /// The result.
    pub result: ResultKind,
    /// The code, or `null`.
    pub error_code: Option<ErrorCode>,
    /// The explanation, or `null`.
    pub error_message: Option<Cow<'static, str>>,
    /// With `--measure-space`: the size of the container's writable layer in bytes, as measured
    /// before its removal (in a dry run, for a container predicted removed); `null` where unknown.
    #[serde(skip_serializing_if = "Asked::is_off")]
    pub size_rw_bytes: Asked<u64>,
    /// With `--remove-volumes`: the anonymous volumes that went with the container (in a dry
    /// run, that would go); `null` where unknown.
    #[serde(skip_serializing_if = "Asked::is_off")]
    pub volumes_removed: Asked<Vec<String>>,
}

impl RecordReport {
    /// Pairs a candidate with its outcome, and what the options of `disk` ask of it. The
    /// candidate's text is moved, not copied: a pass holds its candidates until their reports
    /// are made.
    #[must_use]
    pub fn new(candidate: Candidate, outcome: Outcome, disk: DiskOptions) -> Self {
        let (size_rw_bytes, volumes_removed) = freed_figures(disk, Some(&outcome));
        Self {
            game_id: candidate.row.game_id.into_text(),
            container_id: candidate.row.container_id.into_text(),
            last_op_at: candidate.last_op_at.and_then(Timestamp::from_epoch_ms),
            result: outcome.result,
            error_code: outcome.error_code,
            error_message: outcome.error_message,
            size_rw_bytes,
            volumes_removed,
        }
    }
}

/// What the removals of a pass freed (in a dry run, would free), over the containers removed
/// (predicted removed), records' and orphans' alike: the `freed` of the JSON summary, with
/// `--measure-space` or `--remove-volumes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FreedTotals {
    /// The containers removed.
    pub containers: u64,
    /// With `--measure-space`: the sum of the writable layers measured, in bytes; an estimate,
    /// since the image layers they share are not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw_bytes: Option<u64>,
    /// With `--measure-space`: the containers removed whose size could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<u64>,
    /// With `--remove-volumes`: the anonymous volumes removed with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<u64>,
}

impl FreedTotals {
    /// The totals of these reports' removed containers, or `None` where neither option is on.
    #[must_use]
    pub fn tally<'a>(
        disk: DiskOptions,
        removed: impl Iterator<Item = (&'a Asked<u64>, &'a Asked<Vec<String>>)>,
    ) -> Option<Self> {
        if !disk.looks() {
            return None;
        }
        let mut totals = Self {
            size_rw_bytes: disk.measure_space.then_some(0),
            unmeasured: disk.measure_space.then_some(0),
            volumes: disk.remove_volumes.then_some(0),
            ..Self::default()
        };
        for (size, volumes) in removed {
            totals.containers += 1;
            match size.known() {
                Some(bytes) => {
                    totals.size_rw_bytes =
                        totals.size_rw_bytes.map(|sum| sum.saturating_add(*bytes));
                }
                None => totals.unmeasured = totals.unmeasured.map(|count| count + 1),
            }
            let went = volumes.known().map_or(0, Vec::len) as u64;
            totals.volumes = totals.volumes.map(|count| count + went);
        }
        Some(totals)
    }
}

/// How many records had each result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every record with `status = 'stopped'` when the pass began.
    pub stopped: u64,
    /// Every expired candidate: the sum of the five result counts.
    pub expired: u64,
    /// `removed` results.
    pub removed: u64,
    /// `replay_no_op` results.
    pub replay_no_op: u64,
    /// `conflict` results.
    pub conflict: u64,
    /// `failed` results.
    pub failed: u64,
    /// `deferred` results.
    pub deferred: u64,
}

impl Counts {
    /// Counts the results of a pass.
    #[must_use]
    pub fn tally(stopped: u64, records: &[RecordReport]) -> Self {
        let mut counts = Self {
            stopped,
            ..Self::default()
        };
        for record in records {
            counts.expired += 1;
            *counts.slot(record.result) += 1;
        }
        counts
    }

    /// The count of one result.
    #[must_use]
    pub fn of(&self, result: ResultKind) -> u64 {
        match result {
            ResultKind::Removed => self.removed,
            ResultKind::ReplayNoOp => self.replay_no_op,
            ResultKind::Conflict => self.conflict,
            ResultKind::Failed => self.failed,
            ResultKind::Deferred => self.deferred,
        }
    }

    fn slot(&mut self, result: ResultKind) -> &mut u64 {
        match result {
            ResultKind::Removed => &mut self.removed,
            ResultKind::ReplayNoOp => &mut self.replay_no_op,
            ResultKind::Conflict => &mut self.conflict,
            ResultKind::Failed => &mut self.failed,
            ResultKind::Deferred => &mut self.deferred,
        }
    }
}

/// The summary of one pass, as docs/contract.md shows it. [`write_json`] writes exactly what
/// serde would make of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The state file, as given (bytes that are not UTF-8 shown as `\xNN`).
    pub state: String,
    /// The retention in whole seconds.
    pub retention_seconds: u64,
    /// `now - retention`.
    pub threshold: String,
    /// When the pass took `now`.
    pub started_at: String,
    /// When the pass ended.
    pub finished_at: String,
    /// The counts.
    pub counts: Counts,
    /// Every expired candidate, oldest first.
    pub records: Vec<RecordReport>,
    /// The leaked containers, when `--orphans` is not `off`: `orphans` and `orphan_counts`, or,
    /// where the search failed, both `null` and `orphan_error`.
    #[serde(flatten)]
    pub orphans: Option<OrphanSection>,
    /// The leases this run left in place (`leases_kept`), in the order of the records, then of
    /// the orphans; absent for a dry run, which takes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases_kept: Option<Vec<KeptLease>>,
    /// With `--measure-space` or `--remove-volumes`: what the removals freed (would free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freed: Option<FreedTotals>,
}

/// A lease of this run's on a game that it did not release: the removal of the game's container
/// may still be carried out by the daemon, or the state file refused the release. The runtime
/// manager can take the game once it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptLease {
    /// The game.
    pub game_id: String,
    /// When the lease expires.
    pub until: Timestamp,
}

impl Summary {
    /// Whether any record or orphan failed, or the orphan search itself: the exit status is then
    /// 1.
    #[must_use]
    pub fn has_failures(&self) -> bool {
        self.counts.failed > 0
            || self.orphans.as_ref().is_some_and(|section| match section {
                OrphanSection::Searched { orphan_counts, .. } => orphan_counts.failed > 0,
                OrphanSection::Failed { .. } => true,
            })
    }
}

/// One leaked container and, unless only reported, its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrphanReport {
    /// The full container id.
    pub container_id: String,
    /// The value of its owner label: the game it names.
    pub game_id: String,
    /// Docker's state of the container.
    pub state: String,
    /// When it stopped (Docker's `FinishedAt`), RFC 3339; `null` for one that never ran.
    pub finished_at: Option<String>,
    /// The result; `null` in `report` mode, where nothing is attempted.
    pub result: Option<ResultKind>,
    /// The code, or `null`.
    pub error_code: Option<ErrorCode>,
    /// The explanation, or `null`.
    pub error_message: Option<String>,
    /// With `--measure-space`, as a record's.
    #[serde(skip_serializing_if = "Asked::is_off")]
    pub size_rw_bytes: Asked<u64>,
    /// With `--remove-volumes`, as a record's.
    #[serde(skip_serializing_if = "Asked::is_off")]
    pub volumes_removed: Asked<Vec<String>>,
}

/// How many leaked containers were found and what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrphanCounts {
    /// Every orphan found (or planned).
    pub found: u64,
    /// `removed` results.
    pub removed: u64,
    /// `conflict` results.
    pub conflict: u64,
    /// `failed` results.
    pub failed: u64,
    /// `deferred` results.
    pub deferred: u64,
}

impl OrphanCounts {
    /// Counts the orphans and their results.
    #[must_use]
    pub fn tally(orphans: &[OrphanReport]) -> Self {
        let mut counts = Self {
            found: orphans.len() as u64,
            ..Self::default()
        };
        for orphan in orphans {
            match orphan.result {
                Some(ResultKind::Removed) => counts.removed += 1,
                Some(ResultKind::Conflict) => counts.conflict += 1,
                Some(ResultKind::Failed) => counts.failed += 1,
                Some(ResultKind::Deferred) => counts.deferred += 1,
                // An orphan is never a replay: a container that is gone is someone else's
                // removal, reported as a conflict.
                Some(ResultKind::ReplayNoOp) | None => {}
            }
        }
        counts
    }
}

/// The orphan part of a summary.
#[derive(Debug, Clone, PartialEq)]
pub enum OrphanSection {
    /// The search ran to its end.
    Searched {
        /// Every orphan, oldest first (or in the plan's order).
        orphans: Vec<OrphanReport>,
        /// Their counts.
        orphan_counts: OrphanCounts,
    },
    /// The search itself failed (a listing or an inspection refused or unanswered, or the pass
    /// stopped before it): nothing is known of the orphans, so no list and no count is claimed.
    Failed {
        /// Why, in one line.
        error: String,
    },
}

impl OrphanSection {
    /// The section of these orphans.
    #[must_use]
    pub fn new(orphans: Vec<OrphanReport>) -> Self {
        Self::Searched {
            orphan_counts: OrphanCounts::tally(&orphans),
            orphans,
        }
    }
}

impl Serialize for OrphanSection {
    /// `"orphans": […], "orphan_counts": {…}`, or `"orphans": null, "orphan_counts": null,
    /// "orphan_error": "…"` (docs/contract.md, section 7), flattened into the summary.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            OrphanSection::Searched {
                orphans,
                orphan_counts,
            } => {
                map.serialize_entry("orphans", orphans)?;
                map.serialize_entry("orphan_counts", orphan_counts)?;
            }
            OrphanSection::Failed { error } => {
                map.serialize_entry("orphans", &())?;
                map.serialize_entry("orphan_counts", &())?;
                map.serialize_entry("orphan_error", error)?;
            }
        }
        map.end()
    }
}

/// Writes the summary as the single JSON object of `--output json`, with a final newline.
///
/// It is written as it is made, never held whole in memory: a pass over 100,000 records prints
/// about 20 MB. The records, nearly all of it, are written field by field (see
/// [`json_string`]); the rest is serde's. A unit test holds it to serde's output of the
/// [`Summary`], byte for byte.
pub fn write_json(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{\"dry_run\":")?;
    out.write_all(if summary.dry_run { b"true" } else { b"false" })?;
    out.write_all(b",\"state\":")?;
    json_string(out, &summary.state)?;
    write!(
        out,
        ",\"retention_seconds\":{},\"threshold\":",
        summary.retention_seconds
    )?;
    json_string(out, &summary.threshold)?;
    out.write_all(b",\"started_at\":")?;
    json_string(out, &summary.started_at)?;
    out.write_all(b",\"finished_at\":")?;
    json_string(out, &summary.finished_at)?;
    out.write_all(b",\"counts\":")?;
    serde_json::to_writer(&mut *out, &summary.counts)?;
    out.write_all(b",\"records\":[")?;
    for (n, record) in summary.records.iter().enumerate() {
        out.write_all(if n == 0 {
            b"{\"game_id\":"
        } else {
            b",{\"game_id\":"
        })?;
        json_option(out, record.game_id.as_deref())?;
        out.write_all(b",\"container_id\":")?;
        json_option(out, record.container_id.as_deref())?;
        out.write_all(b",\"last_op_at\":")?;
        match record.last_op_at {
            // An RFC 3339 time needs no escaping.
            Some(time) => {
                out.write_all(b"\"")?;
                out.write_all(&time.rfc3339())?;
                out.write_all(b"\"")?;
            }
            None => out.write_all(b"null")?,
        }
        // A result and a code are rt-cleanup's own names, which need no escaping.
        out.write_all(b",\"result\":\"")?;
        out.write_all(record.result.as_str().as_bytes())?;
        match record.error_code {
            Some(code) => {
                out.write_all(b"\",\"error_code\":\"")?;
                out.write_all(code.as_str().as_bytes())?;
                out.write_all(b"\"")?;
            }
            None => out.write_all(b"\",\"error_code\":null")?,
        }
        out.write_all(b",\"error_message\":")?;
        json_option(out, record.error_message.as_deref())?;
        write_json_freed(out, &record.size_rw_bytes, &record.volumes_removed)?;
        out.write_all(b"}")?;
    }
    out.write_all(b"]")?;
    match &summary.orphans {
        None => {}
        Some(OrphanSection::Searched {
            orphans,
            orphan_counts,
        }) => {
            out.write_all(b",\"orphans\":")?;
            serde_json::to_writer(&mut *out, orphans)?;
            out.write_all(b",\"orphan_counts\":")?;
            serde_json::to_writer(&mut *out, orphan_counts)?;
        }
        Some(OrphanSection::Failed { error }) => {
            out.write_all(b",\"orphans\":null,\"orphan_counts\":null,\"orphan_error\":")?;
            json_string(out, error)?;
        }
    }
    if let Some(kept) = &summary.leases_kept {
        out.write_all(b",\"leases_kept\":")?;
        serde_json::to_writer(&mut *out, kept)?;
    }
    if let Some(freed) = &summary.freed {
        out.write_all(b",\"freed\":")?;
        serde_json::to_writer(&mut *out, freed)?;
    }
    out.write_all(b"}\n")
}

/// Writes a record's `size_rw_bytes` and `volumes_removed`, each where its option asks for it.
pub(crate) fn write_json_freed(
    out: &mut impl Write,
    size: &Asked<u64>,
    volumes: &Asked<Vec<String>>,
) -> io::Result<()> {
    if !size.is_off() {
        out.write_all(b",\"size_rw_bytes\":")?;
        match size.known() {
            Some(bytes) => write!(out, "{bytes}")?,
            None => out.write_all(b"null")?,
        }
    }
    if !volumes.is_off() {
        out.write_all(b",\"volumes_removed\":")?;
        serde_json::to_writer(&mut *out, volumes)?;
    }
    Ok(())
}

/// Writes a record's or an orphan's ` size_rw_bytes=…` and ` volumes_removed=…` for a text
/// line, each where its option asks for it: `-` where unknown, the names comma-separated.
pub(crate) fn write_text_freed(
    out: &mut impl Write,
    size: &Asked<u64>,
    volumes: &Asked<Vec<String>>,
) -> io::Result<()> {
    match size {
        Asked::Off => {}
        Asked::Unknown => out.write_all(b" size_rw_bytes=-")?,
        Asked::Known(bytes) => write!(out, " size_rw_bytes={bytes}")?,
    }
    match volumes {
        Asked::Off => {}
        Asked::Unknown => out.write_all(b" volumes_removed=-")?,
        Asked::Known(names) => {
            out.write_all(b" volumes_removed=")?;
            write_quoted(out, &names.join(","))?;
        }
    }
    Ok(())
}

/// The closing line's words for what the removals freed: `; freed ≈ 3.2 GiB: the writable
/// layers of 10 containers (1 not measured), image layers not counted; 3 anonymous volumes
/// removed` (a dry run: `would free`, `would be removed`).
fn freed_words(freed: &FreedTotals, dry_run: bool) -> String {
    let mut words = String::new();
    if let (Some(bytes), Some(unmeasured)) = (freed.size_rw_bytes, freed.unmeasured) {
        let plural = if freed.containers == 1 { "" } else { "s" };
        // Writing to a String cannot fail.
        let _ = write!(
            words,
            "; {} ≈ {}: the writable layers of {} container{plural}",
            if dry_run { "would free" } else { "freed" },
            for_people(bytes),
            freed.containers,
        );
        if unmeasured > 0 {
            let _ = write!(words, " ({unmeasured} not measured)");
        }
        words.push_str(", image layers not counted");
    }
    if let Some(volumes) = freed.volumes {
        let _ = write!(
            words,
            "; {volumes} anonymous volume{} {}",
            if volumes == 1 { "" } else { "s" },
            if dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
    }
    words
}

/// Writes the summary as text: one line per expired record, per orphan and per lease kept, then
/// a closing line with the counts. Every line is `key=value` pairs so that it greps well in
/// `journalctl`.
///
/// A record's line is written piece by piece, without formatting machinery: a dry run over
/// 100,000 records prints 27 MB of them (see [`write_quoted`]).
pub fn write_text(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    let mut fixed_message = FixedMessageShown::default();
    for record in &summary.records {
        write_record_line(out, record, &mut fixed_message)?;
    }
    if let Some(OrphanSection::Searched { orphans, .. }) = &summary.orphans {
        for orphan in orphans {
            out.write_all(b"orphan ")?;
            write_padded(out, orphan.result.map_or("found", ResultKind::as_str))?;
            out.write_all(b" container_id=")?;
            write_quoted(out, &orphan.container_id)?;
            out.write_all(b" game_id=")?;
            write_quoted(out, &orphan.game_id)?;
            out.write_all(b" state=")?;
            write_quoted(out, &orphan.state)?;
            out.write_all(b" finished_at=")?;
            out.write_all(orphan.finished_at.as_deref().unwrap_or("-").as_bytes())?;
            if let Some(code) = orphan.error_code {
                out.write_all(b" error_code=")?;
                out.write_all(code.as_str().as_bytes())?;
            }
            if let Some(message) = &orphan.error_message {
                out.write_all(b" message=")?;
                write_quoted(out, &without_force_advice(message))?;
            }
            write_text_freed(out, &orphan.size_rw_bytes, &orphan.volumes_removed)?;
            out.write_all(b"\n")?;
        }
    }
    let kept = summary.leases_kept.as_deref().unwrap_or_default();
    for lease in kept {
        write_padded(out, "lease_kept")?;
        out.write_all(b" game_id=")?;
        write_quoted(out, &lease.game_id)?;
        writeln!(out, " until={}", lease.until)?;
    }
    let counts = &summary.counts;
    write!(
        out,
        "{}: {} expired of {} stopped (retention {}, threshold {}): ",
        if summary.dry_run {
            "rt-cleanup dry run"
        } else {
            "rt-cleanup"
        },
        counts.expired,
        counts.stopped,
        humantime::format_duration(Duration::from_secs(summary.retention_seconds)),
        summary.threshold,
    )?;
    for (n, &result) in ResultKind::ALL.iter().enumerate() {
        let separator = if n == 0 { "" } else { ", " };
        write!(out, "{separator}{} {}", counts.of(result), result.as_str())?;
    }
    match &summary.orphans {
        None => {}
        Some(OrphanSection::Searched { orphan_counts, .. }) => write!(
            out,
            "; orphans: {} found, {} removed, {} conflict, {} failed, {} deferred",
            orphan_counts.found,
            orphan_counts.removed,
            orphan_counts.conflict,
            orphan_counts.failed,
            orphan_counts.deferred
        )?,
        Some(OrphanSection::Failed { error }) => {
            out.write_all(b"; orphans: the search failed, none is known: ")?;
            write_quoted(out, error)?;
        }
    }
    match kept.len() {
        0 => {}
        1 => out.write_all(b"; 1 lease kept")?,
        n => write!(out, "; {n} leases kept")?,
    }
    if let Some(freed) = &summary.freed {
        out.write_all(freed_words(freed, summary.dry_run).as_bytes())?;
    }
    out.write_all(b"\n")
}

/// Writes a record's line of the text summary.
fn write_record_line<'a>(
    out: &mut impl Write,
    record: &'a RecordReport,
    fixed_message: &mut FixedMessageShown<'a>,
) -> io::Result<()> {
    write_padded(out, record.result.as_str())?;
    out.write_all(b" game_id=")?;
    match &record.game_id {
        Some(game) => write_quoted(out, game)?,
        None => out.write_all(b"-")?,
    }
    out.write_all(b" container_id=")?;
    match &record.container_id {
        Some(container) => write_quoted(out, container)?,
        None => out.write_all(b"-")?,
    }
    out.write_all(b" last_op_at=")?;
    match record.last_op_at {
        Some(time) => out.write_all(&time.rfc3339())?,
        None => out.write_all(b"-")?,
    }
    if let Some(code) = record.error_code {
        out.write_all(b" error_code=")?;
        out.write_all(code.as_str().as_bytes())?;
    }
    if let Some(message) = &record.error_message {
        out.write_all(b" message=")?;
        match message {
            Cow::Borrowed(fixed) => fixed_message.write(out, fixed)?,
            Cow::Owned(message) => write_quoted(out, &without_force_advice(message))?,
        }
    }
    write_text_freed(out, &record.size_rw_bytes, &record.volumes_removed)?;
    out.write_all(b"\n")
}

/// The last fixed message (one of rt-cleanup's own, borrowed for the whole program) that a
/// record's line showed, as it was shown. Most records of a large dry run share one ("the
/// container is already gone …"): working out how to show it once instead of on every line
/// saves 4 % of the instructions of a text dry run over 100,000 records.
#[derive(Default)]
struct FixedMessageShown<'a> {
    last: Option<(&'a str, Vec<u8>)>,
}

impl<'a> FixedMessageShown<'a> {
    /// Writes a fixed message as a value of a line: as it was shown last time where it is the
    /// very same message (the same bytes at the same place), else worked out and kept.
    fn write(&mut self, out: &mut impl Write, message: &'a str) -> io::Result<()> {
        match &self.last {
            Some((last, shown)) if std::ptr::eq(*last, message) => out.write_all(shown),
            _ => {
                let mut shown = Vec::new();
                write_quoted(&mut shown, &without_force_advice(message))?;
                out.write_all(&shown)?;
                self.last = Some((message, shown));
                Ok(())
            }
        }
    }
}

/// The width of a line's first column, the longest result name (`replay_no_op`).
const COLUMN: usize = 12;

/// Writes a line's first column, padded with spaces to [`COLUMN`] characters as `{:<12}` would:
/// the names padded are ASCII, so bytes are characters.
fn write_padded(out: &mut impl Write, name: &str) -> io::Result<()> {
    out.write_all(name.as_bytes())?;
    out.write_all(&[b' '; COLUMN][..COLUMN.saturating_sub(name.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::quote;

    fn record(game: &str, result: ResultKind, code: Option<ErrorCode>) -> RecordReport {
        RecordReport {
            game_id: Some(game.into()),
            container_id: Some("4f1c".into()),
            last_op_at: Timestamp::from_epoch_ms(1_794_470_400_000),
            result,
            error_code: code,
            error_message: code.map(|_| "why it happened".into()),
            size_rw_bytes: Asked::Off,
            volumes_removed: Asked::Off,
        }
    }

    fn json_of(summary: &Summary) -> String {
        let mut out = Vec::new();
        write_json(summary, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn text_of(summary: &Summary) -> String {
        let mut out = Vec::new();
        write_text(summary, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn summary(records: Vec<RecordReport>) -> Summary {
        Summary {
            dry_run: false,
            state: "/var/lib/rtmanager/state.db".into(),
            retention_seconds: 604_800,
            threshold: "2026-11-20T12:00:00.000Z".into(),
            started_at: "2026-11-27T12:00:00.000Z".into(),
            finished_at: "2026-11-27T12:00:01.250Z".into(),
            counts: Counts::tally(40, &records),
            records,
            orphans: None,
            leases_kept: Some(Vec::new()),
            freed: None,
        }
    }

    #[test]
    fn counts_add_up_to_expired() {
        let records = vec![
            record("a", ResultKind::Removed, None),
            record("b", ResultKind::Removed, None),
            record("c", ResultKind::Failed, Some(ErrorCode::DockerError)),
            record("d", ResultKind::Deferred, None),
        ];
        let counts = Counts::tally(9, &records);
        assert_eq!(counts.stopped, 9);
        assert_eq!(counts.expired, 4);
        let sum: u64 = ResultKind::ALL.iter().map(|&r| counts.of(r)).sum();
        assert_eq!(sum, counts.expired);
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let summary = summary(vec![record("g-17", ResultKind::Removed, None)]);
        let value: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "counts",
                "dry_run",
                "finished_at",
                "leases_kept",
                "records",
                "retention_seconds",
                "started_at",
                "state",
                "threshold"
            ]
        );
        assert_eq!(value["leases_kept"], serde_json::json!([]));
        assert_eq!(
            value["counts"],
            serde_json::json!({"stopped": 40, "expired": 1, "removed": 1, "replay_no_op": 0,
                               "conflict": 0, "failed": 0, "deferred": 0})
        );
        assert_eq!(
            value["records"][0],
            serde_json::json!({"game_id": "g-17", "container_id": "4f1c",
                               "last_op_at": "2026-11-12T08:00:00.000Z", "result": "removed",
                               "error_code": null, "error_message": null})
        );
        assert_eq!(value["retention_seconds"], 604_800);
    }

    #[test]
    fn text_has_a_line_per_record_and_a_closing_count_line() {
        let summary = summary(vec![
            record("g-1", ResultKind::Removed, None),
            record("g-2", ResultKind::Failed, Some(ErrorCode::ContainerRunning)),
        ]);
        let text = text_of(&summary);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("removed      game_id=g-1 container_id=4f1c"));
        assert!(lines[1].contains("error_code=container_running message=\"why it happened\""));
        assert_eq!(
            lines[2],
            "rt-cleanup: 2 expired of 40 stopped (retention 7days, threshold \
             2026-11-20T12:00:00.000Z): 1 removed, 0 replay_no_op, 0 conflict, 1 failed, \
             0 deferred"
        );
    }

    #[test]
    fn each_lease_kept_is_named_with_when_it_expires() {
        let mut summary = summary(vec![record(
            "g-1",
            ResultKind::Failed,
            Some(ErrorCode::DockerError),
        )]);
        let until = Timestamp::from_epoch_ms(1_794_470_700_000).unwrap();
        summary.leases_kept = Some(vec![KeptLease {
            game_id: "g-1".into(),
            until,
        }]);
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert_eq!(
            json["leases_kept"],
            serde_json::json!([{"game_id": "g-1", "until": "2026-11-12T08:05:00.000Z"}])
        );
        let text = text_of(&summary);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[1],
            "lease_kept   game_id=g-1 until=2026-11-12T08:05:00.000Z"
        );
        assert!(
            lines[2].ends_with("0 deferred; 1 lease kept"),
            "{}",
            lines[2]
        );
        summary.leases_kept = None;
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert!(json.get("leases_kept").is_none(), "a dry run keeps none");
    }

    #[test]
    fn a_hostile_game_id_cannot_forge_a_line() {
        let summary = summary(vec![record(
            "x\nremoved game_id=y",
            ResultKind::Removed,
            None,
        )]);
        assert_eq!(text_of(&summary).lines().count(), 2);
    }

    fn orphan(result: Option<ResultKind>) -> OrphanReport {
        OrphanReport {
            container_id: "0123456789abcdef".into(),
            game_id: "g-9".into(),
            state: "exited".into(),
            finished_at: Some("2026-11-01T00:00:00.000Z".into()),
            result,
            error_code: None,
            error_message: None,
            size_rw_bytes: Asked::Off,
            volumes_removed: Asked::Off,
        }
    }

    #[test]
    fn orphans_appear_only_when_looked_for() {
        let mut summary = summary(vec![]);
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert!(json.get("orphans").is_none() && json.get("orphan_counts").is_none());
        summary.orphans = Some(OrphanSection::new(vec![
            orphan(Some(ResultKind::Removed)),
            orphan(Some(ResultKind::Failed)),
            orphan(None),
        ]));
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert_eq!(
            json["orphan_counts"],
            serde_json::json!({"found": 3, "removed": 1, "conflict": 0, "failed": 1,
                               "deferred": 0})
        );
        assert_eq!(
            json["orphans"][2],
            serde_json::json!({"container_id": "0123456789abcdef", "game_id": "g-9",
                               "state": "exited", "finished_at": "2026-11-01T00:00:00.000Z",
                               "result": null, "error_code": null, "error_message": null})
        );
        assert!(summary.has_failures(), "a failed orphan fails the run");
        let text = text_of(&summary);
        assert!(text.contains("orphan found        container_id=0123456789abcdef game_id=g-9"));
        assert!(text
            .lines()
            .last()
            .unwrap()
            .ends_with("; orphans: 3 found, 1 removed, 0 conflict, 1 failed, 0 deferred"));
    }

    #[test]
    fn a_failed_orphan_search_claims_no_orphan_and_no_count() {
        let mut summary = summary(vec![record("g-17", ResultKind::Removed, None)]);
        summary.orphans = Some(OrphanSection::Failed {
            error: "cannot list the containers labelled owner: no answer within 30s".into(),
        });
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert_eq!(json["orphans"], serde_json::Value::Null);
        assert_eq!(json["orphan_counts"], serde_json::Value::Null);
        assert_eq!(
            json["orphan_error"],
            "cannot list the containers labelled owner: no answer within 30s"
        );
        assert!(
            json.as_object().unwrap().contains_key("orphans"),
            "null, not absent"
        );
        assert!(summary.has_failures(), "a failed search fails the run");
        let text = text_of(&summary);
        assert!(
            text.lines().last().unwrap().ends_with(
                "; orphans: the search failed, none is known: \"cannot list the containers \
                 labelled owner: no answer within 30s\""
            ),
            "{text}"
        );
        assert!(!text.contains("orphan found"));
        assert_eq!(
            json_of(&summary),
            serde_json::to_string(&summary).unwrap() + "\n"
        );
        let searched: serde_json::Value = {
            summary.orphans = Some(OrphanSection::new(Vec::new()));
            serde_json::from_str(&json_of(&summary)).unwrap()
        };
        assert!(
            searched.get("orphan_error").is_none(),
            "only a failed search has an orphan_error: {searched}"
        );
    }

    #[test]
    fn records_that_share_a_fixed_message_each_show_it() {
        const GONE: &str = "the container is already gone (the daemon lists no such container)";
        const ODD: &str = "a fixed message with \"quotes\" or force remove";
        let messages: [Cow<'static, str>; 6] = [
            Cow::Borrowed(GONE),
            Cow::Borrowed(GONE),
            Cow::Owned(GONE.to_owned()),
            Cow::Borrowed(ODD),
            Cow::Owned("tab\there".to_owned()),
            Cow::Borrowed(GONE),
        ];
        let records = messages
            .iter()
            .map(|message| RecordReport {
                error_message: Some(message.clone()),
                ..record("g", ResultKind::ReplayNoOp, Some(ErrorCode::ReplayNoOp))
            })
            .collect();
        let text = text_of(&summary(records));
        let shown: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split_once(" message=").map(|(_, message)| message))
            .collect();
        let expected: Vec<String> = messages
            .iter()
            .map(|message| quote(&without_force_advice(message)).into_owned())
            .collect();
        assert_eq!(shown, expected);
        assert_eq!(shown[3], "\"a fixed message with \\\"quotes\\\"\"");
    }

    #[test]
    fn the_json_is_serdes_byte_for_byte() {
        let mut hostile = record("g-\"1\"\n\\x\u{1}é", ResultKind::Failed, None);
        hostile.container_id = None;
        hostile.last_op_at = None;
        hostile.error_code = Some(ErrorCode::InvalidRecord);
        hostile.error_message = Some("tab\there".into());
        let mut summary = summary(vec![
            record("g-17", ResultKind::Removed, None),
            hostile,
            record("g-18", ResultKind::Deferred, None),
        ]);
        summary.state = "/tmp/odd \"state\".db".into();
        for dry_run in [false, true] {
            summary.dry_run = dry_run;
            assert_eq!(
                json_of(&summary),
                serde_json::to_string(&summary).unwrap() + "\n"
            );
        }
        summary.orphans = Some(OrphanSection::new(vec![orphan(Some(ResultKind::Removed))]));
        assert_eq!(
            json_of(&summary),
            serde_json::to_string(&summary).unwrap() + "\n"
        );
        summary.leases_kept = Some(vec![KeptLease {
            game_id: "g-\"2\"".into(),
            until: Timestamp::from_epoch_ms(1_794_470_700_000).unwrap(),
        }]);
        assert_eq!(
            json_of(&summary),
            serde_json::to_string(&summary).unwrap() + "\n"
        );
        summary.records.clear();
        summary.leases_kept = None;
        assert_eq!(
            json_of(&summary),
            serde_json::to_string(&summary).unwrap() + "\n"
        );
    }

    #[test]
    fn with_the_options_each_record_says_what_its_removal_freed_and_the_summary_the_total() {
        let disk = DiskOptions {
            measure_space: true,
            remove_volumes: true,
        };
        let mut removed = record("g-1", ResultKind::Removed, None);
        removed.size_rw_bytes = Asked::Known(3 << 30);
        removed.volumes_removed = Asked::Known(vec!["a1".into(), "a2".into()]);
        let mut unmeasured = record("g-2", ResultKind::Removed, None);
        unmeasured.size_rw_bytes = Asked::Unknown;
        unmeasured.volumes_removed = Asked::Unknown;
        let mut failed = record("g-3", ResultKind::Failed, Some(ErrorCode::ContainerRunning));
        failed.size_rw_bytes = Asked::Known(1 << 30);
        failed.volumes_removed = Asked::Unknown;
        let records = vec![removed, unmeasured, failed];
        let mut summary = summary(records.clone());
        summary.freed = FreedTotals::tally(
            disk,
            records
                .iter()
                .filter(|record| record.result == ResultKind::Removed)
                .map(|record| (&record.size_rw_bytes, &record.volumes_removed)),
        );
        let json: serde_json::Value = serde_json::from_str(&json_of(&summary)).unwrap();
        assert_eq!(json["records"][0]["size_rw_bytes"], 3_u64 << 30);
        assert_eq!(
            json["records"][0]["volumes_removed"],
            serde_json::json!(["a1", "a2"])
        );
        assert_eq!(json["records"][1]["size_rw_bytes"], serde_json::Value::Null);
        assert_eq!(
            json["records"][1]["volumes_removed"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["freed"],
            serde_json::json!({"containers": 2, "size_rw_bytes": 3_u64 << 30, "unmeasured": 1,
                               "volumes": 2}),
            "over the containers removed only"
        );
        assert_eq!(
            json_of(&summary),
            serde_json::to_string(&summary).unwrap() + "\n"
        );
        let text = text_of(&summary);
        let lines: Vec<_> = text.lines().collect();
        assert!(
            lines[0].ends_with(" size_rw_bytes=3221225472 volumes_removed=\"a1,a2\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(" size_rw_bytes=- volumes_removed=-"),
            "{}",
            lines[1]
        );
        assert!(
            lines[3].ends_with(
                "; freed ≈ 3.0 GiB: the writable layers of 2 containers (1 not measured), image \
                 layers not counted; 2 anonymous volumes removed"
            ),
            "{}",
            lines[3]
        );
        summary.dry_run = true;
        let text = text_of(&summary);
        assert!(
            text.contains("; would free ≈ 3.0 GiB: ") && text.contains("volumes would be removed"),
            "{text}"
        );
    }

    #[test]
    fn without_the_options_no_key_of_them_is_written() {
        let summary = summary(vec![record("g-1", ResultKind::Removed, None)]);
        let json = json_of(&summary);
        for key in ["size_rw_bytes", "volumes_removed", "freed"] {
            assert!(!json.contains(key), "{json}");
        }
        assert_eq!(
            FreedTotals::tally(DiskOptions::default(), std::iter::empty()),
            None
        );
        let only_volumes = DiskOptions {
            measure_space: false,
            remove_volumes: true,
        };
        let totals = FreedTotals::tally(only_volumes, std::iter::empty()).unwrap();
        assert_eq!(
            serde_json::to_value(totals).unwrap(),
            serde_json::json!({"containers": 0, "volumes": 0})
        );
    }
}

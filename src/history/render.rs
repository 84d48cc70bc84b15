//! The two renderings of `history`, as pure functions of what was read: the JSON object of
//! `--output json` and the `key=value` lines of text (docs/contract.md, "The read-only
//! commands").

use std::io::{self, Write};

use super::History;
use crate::outcome::ResultKind;
use crate::render::{json_field, json_option, json_string, quote_field};
use crate::store::LogRow;
use crate::time::{format_epoch_ms, Timestamp};
use crate::value::FieldValue;

/// The time of a column that holds epoch milliseconds, in RFC 3339, where it is an integer
/// from 1970 to 9999.
fn time_of(value: &FieldValue) -> Option<Timestamp> {
    match value {
        FieldValue::Integer(ms) => Timestamp::from_epoch_ms(*ms),
        _ => None,
    }
}

/// Writes the JSON object of `--output json`, with a final newline: the query (the state file,
/// `now`, the window, the limit), whether more rows match than were printed, and the rows as
/// stored, each with its times also in RFC 3339 and rt-cleanup's result where the row is one of
/// its own.
pub fn write_json(history: &History, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{\"state\":")?;
    json_string(out, &history.state)?;
    out.write_all(b",\"now\":")?;
    json_option(out, format_epoch_ms(history.now_ms).as_deref())?;
    out.write_all(b",\"since\":")?;
    json_option(out, history.since_ms.and_then(format_epoch_ms).as_deref())?;
    out.write_all(b",\"until\":")?;
    json_option(out, history.until_ms.and_then(format_epoch_ms).as_deref())?;
    write!(
        out,
        ",\"limit\":{},\"more\":{},\"rows\":[",
        history.limit, history.more
    )?;
    for (n, row) in history.rows.iter().enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        write_json_row(row, out)?;
    }
    out.write_all(b"]}\n")
}

/// One row as a JSON object.
pub fn write_json_row(row: &LogRow, out: &mut impl Write) -> io::Result<()> {
    write!(out, "{{\"id\":{}", row.id)?;
    for (key, value) in [
        ("game_id", &row.game_id),
        ("op_kind", &row.op_kind),
        ("op_source", &row.op_source),
        ("outcome", &row.outcome),
        ("error_code", &row.error_code),
        ("error_message", &row.error_message),
        ("container_id", &row.container_id),
        ("started_at", &row.started_at),
        ("finished_at", &row.finished_at),
    ] {
        write!(out, ",\"{key}\":")?;
        json_field(out, value)?;
    }
    for (key, value) in [
        ("started_at_rfc3339", &row.started_at),
        ("finished_at_rfc3339", &row.finished_at),
    ] {
        write!(out, ",\"{key}\":")?;
        match time_of(value) {
            // An RFC 3339 time needs no escaping.
            Some(time) => write!(out, "\"{time}\"")?,
            None => out.write_all(b"null")?,
        }
    }
    out.write_all(b",\"result\":")?;
    json_option(out, row.result().map(ResultKind::as_str))?;
    out.write_all(b"}")
}

/// Writes the text of `history`: one line per row, newest first, then a closing line that
/// says how many rows were printed and whether the limit left some out.
pub fn write_text(history: &History, out: &mut impl Write) -> io::Result<()> {
    for row in &history.rows {
        write_text_row(row, out)?;
        out.write_all(b"\n")?;
    }
    match history.rows.len() {
        0 => out.write_all(b"rt-cleanup history: no row matches")?,
        1 => out.write_all(b"rt-cleanup history: 1 row")?,
        n => write!(out, "rt-cleanup history: {n} rows, newest first")?,
    }
    if history.more {
        write!(
            out,
            "; more rows match: raise --limit ({}) to see them",
            history.limit
        )?;
    }
    out.write_all(b"\n")
}

/// One row as a `key=value` line (without its newline), led by when it started. Every value
/// comes from the state file, and is quoted and escaped where it holds anything but plain
/// characters.
pub fn write_text_row(row: &LogRow, out: &mut impl Write) -> io::Result<()> {
    match time_of(&row.started_at) {
        Some(time) => write!(out, "{time}")?,
        None => write!(out, "started_at={}", quote_field(&row.started_at))?,
    }
    write!(
        out,
        " id={} game_id={} op_kind={} op_source={} outcome={}",
        row.id,
        quote_field(&row.game_id),
        quote_field(&row.op_kind),
        quote_field(&row.op_source),
        quote_field(&row.outcome),
    )?;
    if row.error_code != FieldValue::Null {
        write!(out, " error_code={}", quote_field(&row.error_code))?;
    }
    write!(out, " container_id={}", quote_field(&row.container_id))?;
    if row.error_message != FieldValue::Null {
        write!(out, " message={}", quote_field(&row.error_message))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Text;

    fn row(id: i64, game: FieldValue, outcome: &str, code: Option<&str>) -> LogRow {
        LogRow {
            id,
            game_id: game,
            op_kind: FieldValue::text("cleanup_container"),
            op_source: FieldValue::text("auto_ttl"),
            outcome: FieldValue::text(outcome),
            error_code: code.map_or(FieldValue::Null, FieldValue::text),
            error_message: FieldValue::Null,
            container_id: FieldValue::text("abc"),
            started_at: FieldValue::Integer(1_794_643_200_250),
            finished_at: FieldValue::Integer(1_794_643_200_900),
        }
    }

    fn history(rows: Vec<LogRow>, more: bool) -> History {
        History {
            state: "/var/lib/rtmanager/state.db".into(),
            now_ms: 1_794_643_300_000,
            since_ms: Some(1_794_556_900_000),
            until_ms: None,
            limit: 2,
            rows,
            more,
        }
    }

    fn text_of(history: &History) -> String {
        let mut out = Vec::new();
        write_text(history, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_json_keeps_the_rows_as_stored_and_adds_their_times_and_result() {
        let mut hostile = row(
            7,
            FieldValue::text("g\n\"x"),
            "failure",
            Some("docker_error"),
        );
        hostile.started_at = FieldValue::text("yesterday");
        hostile.error_message = FieldValue::text("line 1\nline 2");
        let history = history(
            vec![row(9, FieldValue::text("g-1"), "success", None), hostile],
            true,
        );
        let mut out = Vec::new();
        write_json(&history, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["more"], true);
        assert_eq!(json["limit"], 2);
        assert_eq!(json["since"], "2026-11-13T08:01:40.000Z");
        assert_eq!(json["until"], serde_json::Value::Null);
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows[0]["id"], 9);
        assert_eq!(rows[0]["started_at"], 1_794_643_200_250_i64);
        assert_eq!(rows[0]["started_at_rfc3339"], "2026-11-14T08:00:00.250Z");
        assert_eq!(rows[0]["result"], "removed");
        assert_eq!(rows[0]["error_code"], serde_json::Value::Null);
        assert_eq!(rows[1]["game_id"], "g\n\"x");
        assert_eq!(rows[1]["started_at"], "yesterday");
        assert_eq!(rows[1]["started_at_rfc3339"], serde_json::Value::Null);
        assert_eq!(rows[1]["result"], "failed");
        assert_eq!(rows[1]["error_message"], "line 1\nline 2");
    }

    #[test]
    fn a_text_line_never_holds_a_raw_control_character_or_invalid_byte() {
        let game = FieldValue::Text(Text::from_bytes(b"g\nFORGED\xff".to_vec()));
        let mut failed = row(3, game, "failure", Some("container_running"));
        failed.error_message = FieldValue::text("it runs\r\nERROR forged");
        let text = text_of(&history(vec![failed], false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(
                "2026-11-14T08:00:00.250Z id=3 game_id=\"g\\nFORGED\\\\xFF\" \
                 op_kind=cleanup_container op_source=auto_ttl outcome=failure \
                 error_code=container_running container_id=abc message="
            ),
            "{text}"
        );
        assert_eq!(lines[1], "rt-cleanup history: 1 row");
    }

    #[test]
    fn the_closing_line_says_when_the_limit_left_rows_out() {
        let rows = vec![
            row(2, FieldValue::text("g"), "success", None),
            row(1, FieldValue::text("g"), "success", Some("replay_no_op")),
        ];
        let text = text_of(&history(rows, true));
        assert!(
            text.ends_with(
                "rt-cleanup history: 2 rows, newest first; more rows match: raise --limit (2) \
                 to see them\n"
            ),
            "{text}"
        );
        assert_eq!(
            text_of(&history(Vec::new(), false)),
            "rt-cleanup history: no row matches\n"
        );
    }
}

//! Rendering shared by every command's output on stdout: JSON strings written as they are made,
//! and values quoted for the `key=value` lines of the text outputs.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::value::FieldValue;

/// Writes a JSON string. Nearly every string of a summary (ids, times, codes, messages) needs no
/// escaping and is written as it is; the others get serde's escaping.
pub fn json_string(out: &mut impl Write, value: &str) -> io::Result<()> {
    // Every byte is looked at, with no early stop at one to escape, so that the compiler checks
    // many bytes at once: printing 10,000 records took twice as long with `any`.
    let to_escape = value.bytes().fold(0_u8, |to_escape, b| {
        to_escape | u8::from(b < 0x20 || b == b'"' || b == b'\\')
    });
    if to_escape != 0 {
        serde_json::to_writer(&mut *out, value).map_err(io::Error::from)
    } else {
        out.write_all(b"\"")?;
        out.write_all(value.as_bytes())?;
        out.write_all(b"\"")
    }
}

/// Writes a JSON string, or `null`.
pub fn json_option(out: &mut impl Write, value: Option<&str>) -> io::Result<()> {
    match value {
        Some(value) => json_string(out, value),
        None => out.write_all(b"null"),
    }
}

/// Quotes a value for a `key=value` line when it is empty or holds anything but plain
/// characters, so that a hostile game id can never forge a line or a field.
pub fn quote(value: &str) -> Cow<'_, str> {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("\"{}\"", value.escape_debug()))
    }
}

/// Writes a column value as JSON, as stored: NULL as `null`, a number as a number, text as a
/// string (bytes that are not UTF-8 shown as `\xNN`), a blob as the string of its SQL hex
/// literal `X'…'`.
pub fn json_field(out: &mut impl Write, value: &FieldValue) -> io::Result<()> {
    match value {
        FieldValue::Null => out.write_all(b"null"),
        FieldValue::Integer(number) => write!(out, "{number}"),
        FieldValue::Real(number) => {
            serde_json::to_writer(&mut *out, number).map_err(io::Error::from)
        }
        FieldValue::Text(text) => json_string(out, &text.display()),
        FieldValue::Blob(_) => json_option(out, value.to_text().as_deref()),
    }
}

/// A column value for a `key=value` line: quoted where it needs to be, `-` for NULL.
#[must_use]
pub fn quote_field(value: &FieldValue) -> String {
    value
        .to_text()
        .map_or_else(|| "-".to_owned(), |text| quote(&text).into_owned())
}

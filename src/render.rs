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
/// characters (ASCII letters and digits, `-`, `_`, `.`, `:` and `/`), escaped as
/// `str::escape_debug` escapes it, so that a hostile game id can never forge a line or a field.
/// [`write_quoted`] writes the same bytes without making a string.
pub fn quote(value: &str) -> Cow<'_, str> {
    if class_of(value) == 0 && !value.is_empty() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("\"{}\"", value.escape_debug()))
    }
}

/// The classes of a value's bytes (see [`byte_class`]), together. Every byte is looked up, with
/// no early stop, so that the compiler checks many at once.
fn class_of(value: &str) -> u8 {
    value
        .bytes()
        .fold(0, |class, b| class | BYTE_CLASSES[usize::from(b)])
}

/// Writes a value of a `key=value` line, as [`quote`] shows it, without making a string: a value
/// that is empty or holds anything but plain characters is quoted, escaped as `str::escape_debug` escapes it, so that a hostile game id can
/// never forge a line or a field.
///
/// A value that needs quotes but no escaping, such as a message of printable ASCII, is copied
/// between its quotes as it is, which is what `escape_debug` would make of it; only a value with
/// a control character, a quote, a backslash or anything beyond ASCII is escaped a character at
/// a time. (Quoting every message through `format!` and `escape_debug` took half of a text dry
/// run over 100,000 records.) Every byte is looked up, with no early stop.
pub fn write_quoted(out: &mut impl Write, value: &str) -> io::Result<()> {
    let class = class_of(value);
    if class == 0 && !value.is_empty() {
        out.write_all(value.as_bytes())
    } else if class & ESCAPED == 0 {
        out.write_all(b"\"")?;
        out.write_all(value.as_bytes())?;
        out.write_all(b"\"")
    } else {
        write!(out, "\"{}\"", value.escape_debug())
    }
}

/// A byte that a value may not hold and stay unquoted (see [`byte_class`]).
const QUOTED: u8 = 1;
/// A byte that `escape_debug` may change: a control character, `"`, `'`, `\\`, DEL, or part of a
/// character beyond ASCII.
const ESCAPED: u8 = 2;

/// [`byte_class`] of every byte: looked up, a value's bytes are classified faster than by
/// comparisons (4.6 against 5.5 ms for 300,000 ids and messages in a micro-benchmark).
const BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0; 256];
    let mut b = 0;
    while b < classes.len() {
        classes[b] = byte_class(b as u8);
        b += 1;
    }
    classes
};

/// What a byte requires of the value that holds it: nothing (a plain character: ASCII letters
/// and digits, `-`, `_`, `.`, `:` and `/`), [`QUOTED`], or [`QUOTED`] and [`ESCAPED`].
const fn byte_class(b: u8) -> u8 {
    let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/');
    let escaped = b < b' ' || b > b'~' || matches!(b, b'"' | b'\'' | b'\\');
    if plain {
        0
    } else if escaped {
        QUOTED | ESCAPED
    } else {
        QUOTED
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text summary's rule for a value as it was first written: a plain value as it is,
    /// any other quoted and escaped by `escape_debug`. [`write_quoted`] must write the same bytes.
    fn quoted_as_first_written(value: &str) -> String {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
        if plain {
            value.to_owned()
        } else {
            format!("\"{}\"", value.escape_debug())
        }
    }

    fn written(value: &str) -> String {
        let mut out = Vec::new();
        write_quoted(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_quoted_and_escaped_as_escape_debug_escapes_them() {
        // Every ASCII character, and characters beyond: escape_debug escapes a grapheme extender
        // (U+0301) only at the start of a value, and unprintable ones (U+200B, U+202E, U+E0001)
        // anywhere.
        let beyond = [
            'é',
            '\u{301}',
            '\u{200b}',
            '\u{202e}',
            '\u{2028}',
            '\u{fffd}',
            '👾',
            '\u{e0001}',
        ];
        let characters = (0..=0x7f_u8).map(char::from).chain(beyond);
        for c in characters {
            for value in [
                c.to_string(),
                format!("a{c}"),
                format!("{c}b-1"),
                format!("the game is leased by {c} until then"),
            ] {
                assert_eq!(
                    written(&value),
                    quoted_as_first_written(&value),
                    "{value:?}"
                );
            }
        }
        for value in [
            "",
            " ",
            "g-17",
            "4f1c0d2e9a7b",
            "registry.example/game:2026.11",
            "the container is already gone (the daemon lists no such container)",
            "last_op_at \"X'00FF'\" is blob, not an integer of epoch milliseconds",
            "x\nremoved game_id=y",
            "tab\there",
            "a=b c",
        ] {
            assert_eq!(written(value), quoted_as_first_written(value), "{value:?}");
        }
        assert_eq!(written("g-17"), "g-17");
        assert_eq!(written("a b"), "\"a b\"");
        assert_eq!(written("x\ny"), "\"x\\ny\"");
    }
}

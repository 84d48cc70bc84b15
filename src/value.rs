//! Column values exactly as SQLite stored them.
//!
//! The state file is written by another program and may hold any type in any column, and a TEXT
//! value need not even be valid UTF-8. Values are kept as they were read, so that a game's lease,
//! its compare-and-set and its log row use the very key the runtime manager wrote; they are made
//! readable only when shown.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// A SQLite TEXT value: its bytes exactly as stored, which are UTF-8 unless the writer erred.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(Vec<u8>);

impl Text {
    /// A value from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes as stored.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as a string, when it is valid UTF-8.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The value for people: itself where it is UTF-8, with every invalid byte shown as `\xNN`
    /// otherwise, so that an invalid byte is seen rather than replaced. A valid value that holds
    /// the four characters `\xNN` looks the same; plans and the state file keep the exact bytes.
    #[must_use]
    pub fn display(&self) -> Cow<'_, str> {
        escape_invalid_utf8(&self.0)
    }
}

impl From<&str> for Text {
    fn from(value: &str) -> Self {
        Self(value.as_bytes().to_vec())
    }
}

impl From<String> for Text {
    fn from(value: String) -> Self {
        Self(value.into_bytes())
    }
}

/// Shows bytes as text: valid UTF-8 as it is, each invalid byte as `\xNN`.
#[must_use]
pub fn escape_invalid_utf8(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        shown.push_str(chunk.valid());
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(shown, "\\x{byte:02X}");
        }
    }
    Cow::Owned(shown)
}

/// Whether a character is escaped in logs and messages: every control character (C0, DEL and
/// C1), which could end a line, return to its start or drive a terminal.
fn is_escaped(character: char) -> bool {
    character.is_control()
}

/// Writes `text` to `out` with every control character written as its Rust escape (`\n`,
/// `\r`, `\t`, `\u{1b}`, ...) and everything else as it is, so that the text can neither end
/// the line it is in nor drive a terminal.
///
/// A backslash is kept as it is: a value that holds the two characters `\n` looks like one that
/// holds a newline (as [`Text::display`]'s `\xNN` does); the state file, plans, the JSON logs
/// and the journal's fields keep the exact value.
fn write_escaping_controls(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(is_escaped) {
        out.write_str(&rest[..at])?;
        let mut characters = rest[at..].chars();
        // `find` stopped at a character, so there is one.
        let control = characters.next().unwrap_or_default();
        write!(out, "{}", control.escape_debug())?;
        rest = characters.as_str();
    }
    out.write_str(rest)
}

/// A value read from the state file or the daemon, or a message built from such values, as a
/// log message shows it: its `Display` with every control character escaped
/// ([`write_escaping_controls`]). Every log message that holds such a value formats it through
/// this wrapper, so that the journal's `MESSAGE` and the JSON logs' `message` hold no line of a
/// value's own; the fields of an event carry values as they are, and each log format escapes
/// them in its own way (see `src/logging.rs`).
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// A writer that escapes the control characters of everything written through it.
pub struct EscapingWriter<W>(pub W);

impl<W: fmt::Write> fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaping_controls(&mut self.0, text)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02X}");
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// The key under which a TEXT value that is not UTF-8 is written in JSON.
const TEXT_HEX: &str = "text_hex";

impl Serialize for Text {
    /// A JSON string where the value is UTF-8; otherwise `{"text_hex": "…"}`, so that a plan
    /// names the exact bytes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(text) = self.as_str() {
            serializer.serialize_str(text)
        } else {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(TEXT_HEX, &hex(&self.0))?;
            map.end()
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Utf8(String),
            Hex { text_hex: String },
        }
        match Form::deserialize(deserializer)? {
            Form::Utf8(text) => Ok(Self::from(text)),
            Form::Hex { text_hex } => unhex(&text_hex)
                .map(Self)
                .ok_or_else(|| de::Error::custom("text_hex is not an even number of hex digits")),
        }
    }
}

/// A column value exactly as SQLite stored it.
///
/// In a plan file it is written as JSON `null`, a number, a string (or `{"text_hex": …}` for
/// text that is not UTF-8), or an array of bytes, so that a plan names each row exactly as it
/// was selected. Equality and hashing compare reals bit for bit, as the state file stores them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text, byte for byte.
    Text(Text),
    /// A blob.
    Blob(Vec<u8>),
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FieldValue::Null, FieldValue::Null) => true,
            (FieldValue::Integer(a), FieldValue::Integer(b)) => a == b,
            (FieldValue::Real(a), FieldValue::Real(b)) => a.to_bits() == b.to_bits(),
            (FieldValue::Text(a), FieldValue::Text(b)) => a == b,
            (FieldValue::Blob(a), FieldValue::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for FieldValue {}

impl Hash for FieldValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            FieldValue::Null => {}
            FieldValue::Integer(value) => value.hash(state),
            FieldValue::Real(value) => value.to_bits().hash(state),
            FieldValue::Text(value) => value.hash(state),
            FieldValue::Blob(value) => value.hash(state),
        }
    }
}

impl FieldValue {
    /// A text value.
    #[must_use]
    pub fn text(value: &str) -> Self {
        FieldValue::Text(Text::from(value))
    }

    /// The SQLite type name, as `typeof()` reports it.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Null => "null",
            FieldValue::Integer(_) => "integer",
            FieldValue::Real(_) => "real",
            FieldValue::Text(_) => "text",
            FieldValue::Blob(_) => "blob",
        }
    }

    /// The value as text for reports and the log: text as it is (invalid bytes as `\xNN`),
    /// numbers in decimal, blobs as SQL hex literals; `None` for NULL.
    #[must_use]
    pub fn to_text(&self) -> Option<String> {
        match self {
            FieldValue::Null => None,
            FieldValue::Integer(value) => Some(value.to_string()),
            FieldValue::Real(value) => Some(value.to_string()),
            FieldValue::Text(value) => Some(value.display().into_owned()),
            FieldValue::Blob(bytes) => Some(format!("X'{}'", hex(bytes))),
        }
    }
}

impl FieldValue {
    /// [`to_text`](Self::to_text), keeping the bytes of a UTF-8 text instead of copying them.
    #[must_use]
    pub fn into_text(self) -> Option<String> {
        match self {
            FieldValue::Text(Text(bytes)) => Some(
                String::from_utf8(bytes)
                    .unwrap_or_else(|error| escape_invalid_utf8(error.as_bytes()).into_owned()),
            ),
            other => other.to_text(),
        }
    }
}

impl fmt::Display for FieldValue {
    /// Shows the value shortened and escaped, fit for one line of a log or an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            None => f.write_str("NULL"),
            Some(text) => {
                let shown: String = text.chars().take(64).collect();
                let ellipsis = if shown.len() < text.len() { "…" } else { "" };
                write!(f, "\"{}{ellipsis}\"", shown.escape_debug())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_text_shows_what_to_text_shows() {
        for value in [
            FieldValue::Null,
            FieldValue::Integer(-7),
            FieldValue::Real(1.5),
            FieldValue::text("g-1"),
            FieldValue::Text(Text::from_bytes(b"g-\xff".to_vec())),
            FieldValue::Blob(vec![1, 2]),
        ] {
            assert_eq!(value.clone().into_text(), value.to_text(), "{value:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_shown_escaped_and_kept_exact() {
        let text = Text::from_bytes(b"g-\xff\xfe1".to_vec());
        assert_eq!(text.as_str(), None);
        assert_eq!(text.display(), "g-\\xFF\\xFE1");
        assert_eq!(text.as_bytes(), b"g-\xff\xfe1");
        assert_ne!(
            Text::from_bytes(b"g-\xff".to_vec()).display(),
            Text::from("g-\u{FFFD}").display(),
            "a lossy replacement would make two games look the same"
        );
    }

    #[test]
    fn every_value_round_trips_through_json_exactly() {
        let values = [
            FieldValue::Null,
            FieldValue::Integer(-5),
            FieldValue::Integer(i64::MAX),
            FieldValue::Real(1.5),
            FieldValue::Real(5.0),
            FieldValue::text("c1"),
            FieldValue::text(""),
            FieldValue::Text(Text::from_bytes(vec![b'g', 0xff])),
            FieldValue::Blob(vec![0, 255]),
            FieldValue::Blob(vec![]),
        ];
        for value in values {
            let json = serde_json::to_string(&value).unwrap();
            let back: FieldValue = serde_json::from_str(&json).unwrap();
            assert_eq!(back, value, "{json}");
            assert_eq!(back.type_name(), value.type_name(), "{json}");
        }
        assert_eq!(
            serde_json::to_string(&FieldValue::Text(Text::from_bytes(vec![b'g', 0xff]))).unwrap(),
            r#"{"text_hex":"67FF"}"#
        );
    }

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        let shown = |text: &str| Escaped(text).to_string();
        assert_eq!(shown("g-1"), "g-1");
        assert_eq!(shown("g \\n \"é\" \u{202e}"), "g \\n \"é\" \u{202e}");
        assert_eq!(
            shown("g\n2026 ERROR forged\r\t\u{1b}[31m\u{7f}\u{85}\0end"),
            "g\\n2026 ERROR forged\\r\\t\\u{1b}[31m\\u{7f}\\u{85}\\0end"
        );
        assert_eq!(
            Escaped(format_args!("game {} gone", "a\nb")).to_string(),
            "game a\\nb gone"
        );
        let mut written = String::new();
        let (text, number) = ("x\ry", 7);
        write!(EscapingWriter(&mut written), "{text}|{number}").unwrap();
        assert_eq!(written, "x\\ry|7");
    }

    #[test]
    fn malformed_hex_text_is_refused() {
        for json in [r#"{"text_hex":"6"}"#, r#"{"text_hex":"zz"}"#] {
            assert!(serde_json::from_str::<Text>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn blobs_show_as_sql_hex_literals() {
        assert_eq!(
            FieldValue::Blob(vec![1, 2]).to_text().as_deref(),
            Some("X'0102'")
        );
        assert_eq!(FieldValue::Null.to_string(), "NULL");
    }
}

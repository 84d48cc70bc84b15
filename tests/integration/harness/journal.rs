//! The journal: a systemd-journald that `scripts/test-journald.sh` started (or the machine's own),
//! and what it stored, read back with `journalctl --output=json`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The socket of journald's native protocol, which every journal client has built in.
const NATIVE_SOCKET: &str = "/run/systemd/journal/socket";

/// Panics with what to run when no journald listens.
pub fn require_journald() {
    assert!(
        Path::new(NATIVE_SOCKET).exists(),
        "no journald listens on {NATIVE_SOCKET}: run the tests through scripts/test.sh, or \
         eval \"$(scripts/test-journald.sh start)\" first"
    );
}

/// One entry of the journal, as `journalctl --output=json` shows it.
#[derive(Debug, Clone)]
pub struct JournalEntry(pub serde_json::Map<String, Value>);

impl JournalEntry {
    /// A field's bytes: journalctl shows a value as a string where it is printable UTF-8, else
    /// as an array of its bytes.
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        match self.0.get(name)? {
            Value::String(text) => Some(text.clone().into_bytes()),
            Value::Array(bytes) => bytes
                .iter()
                .map(|byte| byte.as_u64().and_then(|byte| u8::try_from(byte).ok()))
                .collect(),
            other => panic!("{name} is neither a string nor bytes: {other}"),
        }
    }

    /// A field as text (its bytes as UTF-8); `None` when the entry has no such field.
    pub fn text(&self, name: &str) -> Option<String> {
        self.bytes(name)
            .map(|bytes| String::from_utf8(bytes).expect("the field is UTF-8"))
    }

    /// A field that the entry must have, as text.
    pub fn field(&self, name: &str) -> String {
        self.text(name)
            .unwrap_or_else(|| panic!("the entry has no {name}: {:?}", self.0))
    }

    /// `MESSAGE`.
    pub fn message(&self) -> String {
        self.field("MESSAGE")
    }
}

/// The entries journald stored from process `pid` that match `filters` (`FIELD=value`, or
/// journalctl options such as `-p err`), oldest first, once `done` holds for them: journald
/// stores what it receives a little later. Panics when `done` does not hold within 10 s.
pub fn journal_entries(
    pid: u32,
    filters: &[&str],
    done: impl Fn(&[JournalEntry]) -> bool,
) -> Vec<JournalEntry> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("journalctl")
            .args(["--no-pager", "--output=json", &format!("_PID={pid}")])
            .args(filters)
            .output()
            .expect("journalctl runs");
        let entries: Vec<JournalEntry> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(fields)) => JournalEntry(fields),
                _ => panic!("journalctl wrote a line that is no JSON object: {line}"),
            })
            .collect();
        if done(&entries) {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "journalctl {filters:?} for pid {pid} did not show what was expected within 10 s \
             (stderr: {}):\n{entries:#?}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

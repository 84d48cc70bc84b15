//! Where the logs go, and how the values in them are escaped.
//!
//! * **stderr is the journal** (systemd's `JOURNAL_STREAM` names stderr's device and inode, as it
//!   does for a service whose stderr goes to the journal) and the format is text: every event
//!   goes to journald natively, through `tracing-journald`, at the priority of its level (error
//!   3, warning 4, info 6, debug and trace 7), with each of its fields as a journal field of the
//!   same name in capitals (`GAME_ID`, `CONTAINER_ID`, `RESULT`, `ERROR_CODE`, `OP_KIND`, ...),
//!   `HOLDER` (this run's lease holder name, unique to the run) on every entry, a message that
//!   says what happened to each record ([`JOURNAL_ONLY`]; stderr keeps its line of fields,
//!   [`STDERR_ONLY`]), and the pass's counts on its closing event. `--log-format json` keeps its meaning
//!   there: JSON lines on stderr, which the journal stores as they are. Where journald's socket
//!   cannot be used, the logs are text on stderr, and the first line says why.
//! * **anywhere else** (a terminal, a pipe, a file, cron's mail): text or JSON lines on stderr as
//!   `--log-format` says, as before; text is coloured only on a terminal, where a progress line
//!   ([`crate::progress::ProgressLine`]) is drawn below the logs.
//!
//! A value read from the state file or the daemon reaches no log line unescaped: the fields of
//! an event carry such values as they are, and each format escapes them its own way: the text
//! format writes a field value that holds a control character quoted, with the character
//! escaped ([`EscapedFields`]); JSON escapes it as JSON does, and the value parses back exact;
//! the journal stores every field in its binary-safe form (length-prefixed), so a value can
//! hold no field or entry of its own. Messages are formatted with such values through
//! [`Escaped`], so that no format's message holds a control character of a value's; the text
//! format escapes the control characters of every message once more, in case one was missed.

use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;
use crate::outcome::ResultKind;
use crate::progress::{NoProgress, Progress, ProgressLine};
pub use crate::value::Escaped;
use crate::value::EscapingWriter;

/// The target of the events that only the journal gets: the pass's closing event, with its
/// counts as fields. The logs on stderr stay as they were before the journal was spoken to
/// natively; there the summary on stdout says the same.
pub const JOURNAL_ONLY: &str = "rt_cleanup::journal";

/// The name of the events that only stderr gets: a job's result as one line of fields, which
/// the journal gets as an event of its own ([`JOURNAL_ONLY`]) whose message says what happened,
/// since journalctl shows only the message of an entry unless asked for more.
pub const STDERR_ONLY: &str = "rt_cleanup::stderr";

/// The `SYSLOG_IDENTIFIER` of the journal entries, the one the shipped unit sets for its lines,
/// whatever the binary is called: `journalctl -t rt-cleanup` finds both.
const SYSLOG_IDENTIFIER: &str = "rt-cleanup";

/// How the logs were set up.
pub struct Logging {
    /// The progress line, where one is drawn.
    progress: Option<Arc<ProgressLine>>,
}

impl Logging {
    /// Where the pass reports its progress: the progress line on a terminal, nowhere elsewhere.
    #[must_use]
    pub fn progress(&self) -> Arc<dyn Progress> {
        match &self.progress {
            Some(line) => Arc::clone(line) as Arc<dyn Progress>,
            None => Arc::new(NoProgress),
        }
    }
}

/// Whether stderr is the journal: `JOURNAL_STREAM` (`<device>:<inode>`, which systemd sets for a
/// service whose stdout or stderr goes to the journal) names stderr's own device and inode, as
/// `sd_journal` checks it. A variable inherited by a process whose stderr was redirected
/// elsewhere names another file, and does not count.
#[must_use]
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    stream.to_str().is_some_and(|stream| {
        nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|stat| names_file(stream, &stat))
    })
}

/// Whether a `JOURNAL_STREAM` value, `<device>:<inode>` in decimal, names the file of `stat`.
fn names_file(stream: &str, stat: &nix::sys::stat::FileStat) -> bool {
    let Some((device, inode)) = stream.split_once(':') else {
        return false;
    };
    device.parse() == Ok(stat.st_dev) && inode.parse() == Ok(stat.st_ino)
}

/// Sets up the logs, filtered by `RT_CLEANUP_LOG`, else `RUST_LOG`, else `info` (see the module
/// docs for where they go).
#[must_use]
pub fn init(format: LogFormat) -> Logging {
    let filter = std::env::var("RT_CLEANUP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (journal, unusable) = match format {
        LogFormat::Text if stderr_is_journal() => match journal_layer() {
            Ok(layer) => (Some(layer), None),
            Err(error) => (None, Some(error)),
        },
        LogFormat::Text | LogFormat::Json => (None, None),
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = (journal.is_none() && format == LogFormat::Text && terminal)
        .then(|| Arc::new(ProgressLine::on_stderr()));
    let writer = {
        let progress = progress.clone();
        move || LossyStderr {
            progress: progress.clone(),
        }
    };
    // The closing event with the counts is the journal's only.
    let not_journal_only = || filter_fn(|metadata| metadata.target() != JOURNAL_ONLY);
    let text = (journal.is_none() && format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .fmt_fields(EscapedFields)
            .with_ansi(terminal)
            // The subscriber reports its own write errors with eprintln!, which panics on a
            // closed stderr: a log line that cannot be written is simply dropped instead.
            .log_internal_errors(false)
            .with_filter(not_journal_only())
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .log_internal_errors(false)
            .with_filter(not_journal_only())
    });
    let journal = journal
        .map(|layer| layer.with_filter(filter_fn(|metadata| metadata.name() != STDERR_ONLY)));
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(text)
        .with(json)
        .init();
    if let Some(error) = unusable {
        tracing::warn!(
            "stderr is the journal, but journald's socket cannot be used ({error}): logging \
             text to stderr"
        );
    }
    Logging { progress }
}

/// The journald layer: each level at its priority, the fields under their own names in capitals
/// (no `F_` prefix), and this run's holder name on every entry.
fn journal_layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        })
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        .with_custom_fields([("HOLDER", crate::worker::run_holder())]))
}

/// The level a job's result is logged at, and so its journal priority: a failure is an error,
/// a conflict (someone else held the game, or it changed) a warning, the rest information.
#[must_use]
pub(crate) fn level_of(result: ResultKind) -> Level {
    match result {
        ResultKind::Failed => Level::ERROR,
        ResultKind::Conflict => Level::WARN,
        ResultKind::Removed | ResultKind::ReplayNoOp | ResultKind::Deferred => Level::INFO,
    }
}

/// `tracing::event!` at a level chosen at run time (the macro takes a constant one), with an
/// optional `target:` or `name:` first.
macro_rules! event_at {
    (target: $target:expr, $level:expr, $($event:tt)+) => {
        match $level {
            tracing::Level::ERROR => tracing::event!(target: $target, tracing::Level::ERROR, $($event)+),
            tracing::Level::WARN => tracing::event!(target: $target, tracing::Level::WARN, $($event)+),
            tracing::Level::INFO => tracing::event!(target: $target, tracing::Level::INFO, $($event)+),
            tracing::Level::DEBUG => tracing::event!(target: $target, tracing::Level::DEBUG, $($event)+),
            _ => tracing::event!(target: $target, tracing::Level::TRACE, $($event)+),
        }
    };
    (name: $name:expr, $level:expr, $($event:tt)+) => {
        match $level {
            tracing::Level::ERROR => tracing::event!(name: $name, tracing::Level::ERROR, $($event)+),
            tracing::Level::WARN => tracing::event!(name: $name, tracing::Level::WARN, $($event)+),
            tracing::Level::INFO => tracing::event!(name: $name, tracing::Level::INFO, $($event)+),
            tracing::Level::DEBUG => tracing::event!(name: $name, tracing::Level::DEBUG, $($event)+),
            _ => tracing::event!(name: $name, tracing::Level::TRACE, $($event)+),
        }
    };
    ($level:expr, $($event:tt)+) => {
        $crate::logging::event_at!(target: module_path!(), $level, $($event)+)
    };
}
pub(crate) use event_at;

/// stderr for the logs, where a line that cannot be written is dropped. Logging must never
/// abort a pass or change its result: `rt-cleanup … 2>&1 | head -3` closes the pipe after three
/// lines, while containers are being removed. Where a progress line is drawn, each log line is
/// written with it taken away, and it is drawn again below.
struct LossyStderr {
    progress: Option<Arc<ProgressLine>>,
}

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let write = || {
            let _ = std::io::stderr().write_all(buf);
        };
        match &self.progress {
            Some(line) => line.suspend(write),
            None => write(),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The text format's fields, as tracing-subscriber writes them (`name=value`, the message
/// first), except that no value can hold a control character: a field value that holds one is
/// written quoted, escaped as Rust escapes a string (`game_id="g\n1"`), and the message has its
/// control characters escaped in place. A value without one is written exactly as before.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor(DefaultVisitor::new(writer, true));
        fields.record(&mut visitor);
        visitor.0.finish()
    }
}

/// tracing-subscriber's own visitor, given each value escaped.
struct EscapingVisitor<'writer>(DefaultVisitor<'writer>);

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.record_debug(field, &MessageEscaped(&value));
        } else {
            // A string field is written as a quoted Rust string, control characters escaped.
            self.0.record_str(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0.record_debug(field, &MessageEscaped(value));
        } else {
            self.0.record_debug(field, &ValueEscaped(value));
        }
    }
}

/// A message: `{:?}` (which shows a message's own text) with its control characters escaped.
struct MessageEscaped<'value>(&'value dyn fmt::Debug);

impl fmt::Debug for MessageEscaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{:?}", self.0)
    }
}

/// A field's value: as `{:?}` shows it, unless that holds a control character; then quoted,
/// escaped as a Rust string.
struct ValueEscaped<'value>(&'value dyn fmt::Debug);

impl fmt::Debug for ValueEscaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = format!("{:?}", self.0);
        if shown.contains(char::is_control) {
            write!(f, "{shown:?}")
        } else {
            f.write_str(&shown)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A writer that keeps what the logs wrote.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("no test thread panics holding the lock")
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Kept {
        type Writer = Kept;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What one event with a hostile game id writes in the text format.
    fn text_of(log: impl FnOnce()) -> String {
        let kept = Kept::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(kept.clone())
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = kept.0.lock().expect("the event was written").clone();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }

    #[test]
    fn a_value_with_a_control_character_is_quoted_and_escaped_in_every_field() {
        let game = "g-1\n2026-01-01T00:00:00Z ERROR rt_cleanup: FORGED LINE";
        let line = text_of(|| {
            tracing::info!(
                game_id = %game,
                container_id = "c\r1",
                state = ?"run\u{1b}[31mning",
                plain = %"g-2",
                count = 3,
                "record {} handled",
                "g\u{7}x"
            );
        });
        assert_eq!(
            line,
            " INFO rt_cleanup::logging::tests: record g\\u{7}x handled \
             game_id=\"g-1\\n2026-01-01T00:00:00Z ERROR rt_cleanup: FORGED LINE\" \
             container_id=\"c\\r1\" state=\"run\\u{1b}[31mning\" plain=g-2 count=3\n"
        );
    }

    #[test]
    fn a_log_line_without_control_characters_is_written_as_before() {
        let event = || {
            tracing::info!(
                op_kind = "cleanup_container",
                game_id = %"g 1",
                error_message = %"cannot remove container \"/x\": it is running",
                "record handled"
            );
        };
        let kept = Kept::default();
        let before = tracing_subscriber::fmt()
            .with_writer(kept.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(before, event);
        let plain = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text_of(event), plain);
    }

    #[test]
    fn a_failure_is_an_error_and_a_conflict_a_warning() {
        assert_eq!(level_of(ResultKind::Failed), Level::ERROR);
        assert_eq!(level_of(ResultKind::Conflict), Level::WARN);
        for result in [
            ResultKind::Removed,
            ResultKind::ReplayNoOp,
            ResultKind::Deferred,
        ] {
            assert_eq!(level_of(result), Level::INFO);
        }
    }

    #[test]
    fn a_journal_stream_names_a_file_by_its_device_and_inode() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let stat = nix::sys::stat::fstat(file.as_file()).unwrap();
        assert!(names_file(
            &format!("{}:{}", stat.st_dev, stat.st_ino),
            &stat
        ));
        for other in [
            format!("{}:{}", stat.st_dev, stat.st_ino + 1),
            format!("{}:{}", stat.st_dev + 1, stat.st_ino),
            format!("{}:{}:0", stat.st_dev, stat.st_ino),
            format!("{}", stat.st_dev),
            String::new(),
            "a:b".to_owned(),
        ] {
            assert!(!names_file(&other, &stat), "{other}");
        }
    }
}

//! Time as the state file and the summaries hold it: Unix epoch milliseconds in SQLite, RFC 3339
//! UTC with milliseconds in every report.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// The largest epoch millisecond that RFC 3339 can show (9999-12-31T23:59:59.999Z).
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// Epoch milliseconds that RFC 3339 can show, which display and serialize as RFC 3339 UTC with
/// milliseconds. A summary keeps one per record and formats it only as it is written: no
/// string per record is ever held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The time of `ms` epoch milliseconds, where it lies between 1970 and 9999.
    #[must_use]
    pub fn from_epoch_ms(ms: i64) -> Option<Self> {
        u64::try_from(ms)
            .ok()
            .filter(|&ms| ms <= MAX_EPOCH_MS as u64)
            .map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds, where the value is in range.
#[must_use]
pub fn format_epoch_ms(ms: i64) -> Option<String> {
    Timestamp::from_epoch_ms(ms).map(|time| time.to_string())
}

/// Formats a time as RFC 3339 UTC with milliseconds.
#[must_use]
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Epoch milliseconds of a time (0 for times before 1970, which this tool never takes).
#[must_use]
pub fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Epoch milliseconds of an RFC 3339 UTC time as Docker writes it
/// (`2026-11-28T04:45:18.123456789Z`); `None` for Docker's "never" (`0001-01-01T00:00:00Z`) and
/// anything else before 1970 or unreadable.
#[must_use]
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let ms = time.duration_since(UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// Epoch milliseconds now.
#[must_use]
pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_shows_and_serializes_as_its_formatted_time() {
        let time = Timestamp::from_epoch_ms(1_794_643_200_250).unwrap();
        assert_eq!(time.to_string(), "2026-11-14T08:00:00.250Z");
        assert_eq!(
            serde_json::to_string(&time).unwrap(),
            "\"2026-11-14T08:00:00.250Z\""
        );
        assert_eq!(Timestamp::from_epoch_ms(-1), None);
        assert_eq!(Timestamp::from_epoch_ms(MAX_EPOCH_MS + 1), None);
        assert!(Timestamp::from_epoch_ms(MAX_EPOCH_MS).is_some());
    }

    #[test]
    fn formats_epoch_milliseconds_as_rfc3339_utc() {
        assert_eq!(
            format_epoch_ms(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            format_epoch_ms(1_794_643_200_250).as_deref(),
            Some("2026-11-14T08:00:00.250Z")
        );
        assert_eq!(format_epoch_ms(-1), None);
        assert_eq!(
            format_epoch_ms(MAX_EPOCH_MS).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(format_epoch_ms(MAX_EPOCH_MS + 1), None);
    }

    #[test]
    fn epoch_ms_round_trips_through_system_time() {
        let time = UNIX_EPOCH + Duration::from_millis(1_794_643_200_250);
        assert_eq!(epoch_ms(time), 1_794_643_200_250);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn reads_docker_times_and_its_never() {
        assert_eq!(
            parse_rfc3339_ms("2026-11-14T08:00:00.250000001Z"),
            Some(1_794_643_200_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-14T08:00:00Z"),
            Some(1_794_643_200_000)
        );
        assert_eq!(parse_rfc3339_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms(""), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}

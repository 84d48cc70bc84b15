//! Epoch milliseconds, as the state file holds them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Epoch milliseconds `days` days ago.
pub fn days_ago(days: i64) -> i64 {
    now_ms() - days * DAY_MS
}

/// Epoch milliseconds in RFC 3339 with milliseconds, as the summary and the messages show them.
pub fn rfc3339_ms(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("after 1970"));
    humantime::format_rfc3339_millis(time).to_string()
}

//! Epoch milliseconds, as the state file holds them.

use std::time::{SystemTime, UNIX_EPOCH};

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

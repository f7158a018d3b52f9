//! Times on the wire: RFC 3339 UTC with milliseconds (contract §2).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// `2026-11-22T19:49:26.123Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch (as Redis scripts keep times) as a time;
/// now for one out of chrono's range.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let t = Utc.timestamp_millis_opt(1_795_000_000_123).single();
        assert_eq!(t.map(rfc3339).as_deref(), Some("2026-11-18T11:06:40.123Z"));
    }
}

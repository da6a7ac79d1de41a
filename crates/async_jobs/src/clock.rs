//! Wall-clock time as jobs record it: seconds since the Unix epoch (what
//! Python's `time.time()` gives, so people and tools read the same numbers),
//! and the ISO 8601 form shown in listings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of `t` (0 for a time before it).
pub fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    epoch_secs(SystemTime::now())
}

/// `2026-11-23T09:53:02Z` from seconds since the epoch (UTC; whole seconds).
pub fn iso8601(secs: f64) -> String {
    let secs = secs.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_427_577.36), "2026-11-23T09:52:57Z");
        assert!(now() > 1_700_000_000.0);
    }
}

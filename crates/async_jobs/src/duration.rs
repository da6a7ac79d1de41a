//! Durations a user writes (a task's `async`, `wait`, `older_than`, the kill
//! grace period), checked before they become a `Duration` or a deadline: a
//! number too big for either would crash the program that takes it.

use std::time::Duration;

/// The longest duration anything takes: about 317 years, longer than any job
/// runs, and far inside what a `Duration` or a deadline can hold.
pub const MAX_SECS: u64 = 10_000_000_000;

/// The task environment variable that sets how long a stopped job's
/// processes get between the first signal and SIGKILL, in seconds.
pub const GRACE_ENV: &str = "NATIVE_ASYNC_KILL_GRACE";
/// The grace period when the task sets none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// The longest grace period: a stopped job must be gone in reasonable time.
pub const MAX_GRACE_SECS: u64 = 3600;

/// The grace period the environment asks for ([`GRACE_ENV`]), or why it
/// cannot be used.
pub fn kill_grace() -> Result<Duration, String> {
    let Some(text) = std::env::var_os(GRACE_ENV) else {
        return Ok(DEFAULT_GRACE);
    };
    let text = text.to_string_lossy();
    parse_secs(&text)
        .filter(|d| d.as_secs() <= MAX_GRACE_SECS)
        .ok_or_else(|| {
            format!(
                "{GRACE_ENV} must be a number of seconds from 0 to {MAX_GRACE_SECS} (how long a \
                 stopped job's processes get between SIGTERM and SIGKILL), got {text:?}"
            )
        })
}

/// A number of seconds, 0 to [`MAX_SECS`], fractions allowed; `None` for
/// anything else (negative, NaN, infinite, too big).
pub fn from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..=MAX_SECS as f64).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// A number of seconds written as text (`"2.5"`).
pub fn parse_secs(text: &str) -> Option<Duration> {
    from_secs(text.trim().parse::<f64>().ok()?)
}

/// An age: a number of seconds, or numbers with units (`90m`, `1h30m`, `7d`,
/// `2 weeks`). Empty text is not an age.
pub fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    if let Some(d) = parse_secs(&text) {
        return Some(d);
    }
    let mut total = 0f64;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604800.0,
            _ => return None,
        };
        total += number * unit;
        rest = rest[unit_len..].trim_start();
    }
    from_secs(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ages_and_refuses_what_no_duration_holds() {
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_age(" 7d "), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_age("2 weeks"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_age("0.5s"), Some(Duration::from_millis(500)));
        for bad in [
            "",
            " ",
            "x",
            "1y",
            "-5",
            "nan",
            "inf",
            "1e30",
            "18446744073709551616",
            "99999999999999999999d",
            "1..2h",
        ] {
            assert_eq!(parse_age(bad), None, "{bad:?}");
        }
        assert_eq!(from_secs(1e30), None);
        assert_eq!(from_secs(f64::NAN), None);
        assert_eq!(
            from_secs(MAX_SECS as f64),
            Some(Duration::from_secs(MAX_SECS))
        );
        assert!(
            std::time::Instant::now()
                .checked_add(Duration::from_secs(MAX_SECS))
                .is_some()
        );
    }
}

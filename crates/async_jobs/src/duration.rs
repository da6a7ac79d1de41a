//! Durations a user writes (a task's `async`, `wait`, `older_than`, the kill
//! grace period), checked before they become a `Duration` or a deadline: a
//! number too big for either would crash the program that takes it.

use crate::error::EnvError;
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
pub fn kill_grace() -> Result<Duration, EnvError> {
    let Some(text) = std::env::var_os(GRACE_ENV) else {
        return Ok(DEFAULT_GRACE);
    };
    let text = text.to_string_lossy();
    parse_secs(&text)
        .filter(|d| d.as_secs() <= MAX_GRACE_SECS)
        .ok_or_else(|| EnvError::Grace {
            text: text.into_owned(),
        })
}

/// A number of seconds, 0 to [`MAX_SECS`], fractions allowed; `None` for
/// anything else (negative, NaN, infinite, too big).
pub fn from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..=MAX_SECS as f64).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// A number of seconds written as text: `90`, `2.5`, `.5`, `1e3`, as
/// Python's `float()` reads them (but not `nan` or `inf`), 0 to [`MAX_SECS`].
/// Read digit by digit into nanoseconds: no float parser is linked for it
/// (the wrapper carries its binary to every host, every byte counts).
pub fn parse_secs(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The digits as one integer, and where the decimal point goes.
    let digits = whole.trim_start_matches('0').to_string() + fraction;
    let point = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(Duration::ZERO);
    }
    // More than MAX_SECS (11 digits) and nanoseconds (9) can hold is too long.
    if i64::try_from(digits.len()).ok()? + i64::from(point) > 11 {
        return None;
    }
    // Nanoseconds: the digits shifted by the point; digits below a nanosecond
    // are dropped (a float would round them off too).
    let shift = i64::from(point) + 9;
    let kept = i64::try_from(digits.len()).ok()? + shift.min(0);
    if kept <= 0 {
        return Some(Duration::ZERO);
    }
    let mut nanos: u128 = 0;
    for b in digits[..kept as usize].bytes() {
        nanos = nanos * 10 + u128::from(b - b'0');
    }
    if shift > 0 {
        nanos = nanos.checked_mul(10u128.checked_pow(u32::try_from(shift).ok()?)?)?;
    }
    let max = u128::from(MAX_SECS) * 1_000_000_000;
    (nanos <= max).then(|| Duration::from_nanos(nanos as u64))
}

/// A duration as people read it in a message: `3 s`, `2.5 s`, `0.25 s`.
pub fn display(d: Duration) -> String {
    let millis = d.subsec_millis();
    if millis == 0 {
        return format!("{} s", d.as_secs());
    }
    let fraction = format!("{millis:03}");
    format!("{}.{} s", d.as_secs(), fraction.trim_end_matches('0'))
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
        assert_eq!(parse_secs("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_secs(".5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_secs("3."), Some(Duration::from_secs(3)));
        assert_eq!(parse_secs("1e3"), Some(Duration::from_secs(1000)));
        assert_eq!(parse_secs("2.5E-1"), Some(Duration::from_millis(250)));
        assert_eq!(parse_secs("0.0000000015"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_secs("00010"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_secs("10000000000"),
            Some(Duration::from_secs(MAX_SECS))
        );
        for bad in [
            "",
            ".",
            "e5",
            "1e",
            "10000000000.5",
            "1e11",
            "-1",
            "+1",
            "1.2.3",
            "1_0",
            "inf",
            "nan",
            "0x10",
        ] {
            assert_eq!(parse_secs(bad), None, "{bad:?}");
        }
        // Against the float reading, on random texts of digits, points and exponents.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 1 + (state % 8) as usize;
            let text: String = (0..len)
                .map(|i| b"0123456789.e5-"[((state >> (8 + 4 * i)) % 14) as usize] as char)
                .collect();
            if text.starts_with('-') {
                continue; // "-0" is a float; no duration is written so
            }
            let ours = parse_secs(&text);
            let float = text.parse::<f64>().ok().and_then(from_secs);
            match (ours, float) {
                (Some(a), Some(b)) => assert!(
                    a.abs_diff(b) <= Duration::from_nanos(1),
                    "{text:?}: {a:?} vs {b:?}"
                ),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{text:?}: {a:?} vs {b:?}"),
            }
        }
        assert_eq!(display(Duration::from_secs(3)), "3 s");
        assert_eq!(display(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(display(Duration::from_millis(250)), "0.25 s");
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

//! Durations written like Go's `time.ParseDuration` (what CEL's `duration()` accepts): `8h`, `10s`, `1h30m`,
//! `500ms`. Only non-negative integers with units `h`, `m`, `s`, `ms` are accepted.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}: expected e.g. 8h, 10s, 1h30m, 500ms")]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Regular expression (OpenAPI `pattern`) matching what [`parse_duration`] accepts.
pub const DURATION_PATTERN: &str = "^([0-9]{1,9}(h|m|s|ms))+$";

/// Parses `8h`, `10s`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let bad = || DurationError::Invalid(s.to_string());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor_ms = match &s[unit_start..i] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return Err(bad()),
        };
        total_ms = n
            .checked_mul(factor_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `10s`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, f) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= f {
            out.push_str(&format!("{}{unit}", ms / f));
            ms %= f;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(28_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("900s").unwrap(), Duration::from_secs(900));
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "h", "10", "10d", "1.5h", "-1s", "1h 30m", "1H", "1234567890s"] {
            assert!(parse_duration(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn round_trips() {
        for s in ["8h", "1h30m", "10s", "1m1s500ms", "0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}

//! Time as brummerctl shows it: RFC 3339 timestamps (UTC) and short durations (`3h02m`).
//!
//! Printing uses humantime (UTC only). Parsing is ours because humantime rejects numeric
//! offsets (`+02:00`), which users paste from other tools (civil-date arithmetic after
//! Howard Hinnant's `days_from_civil`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// `2026-11-22T10:00:00.123Z` for microseconds since the epoch (truncated to milliseconds).
pub fn rfc3339_millis(us: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_micros(us)).to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into microseconds since the
/// epoch. `None` when it is not that shape.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if sep(i, b".") {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        // Keep microseconds, pad or cut the fraction to six digits.
        let digits: String = s[start..end]
            .chars()
            .chain("000000".chars())
            .take(6)
            .collect();
        frac_us = digits.parse().ok()?;
        i = end;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs * 1_000_000 + frac_us)
}

/// `45s`, `12m05s`, `3h02m`, `2d04h`: an uptime at a glance (truncated, never rounded up).
pub fn short_duration(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// A wait still to come: `1.2s` below ten seconds, else as [`short_duration`].
pub fn countdown(secs: f64) -> String {
    if secs < 10.0 {
        format!("{:.1}s", secs.max(0.0))
    } else {
        short_duration(secs)
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_millis() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-22T10:00:00.123456Z
        let us = 1_795_341_600_123_456;
        assert_eq!(rfc3339_millis(us), "2026-11-22T10:00:00.123Z");
        assert_eq!(
            rfc3339_millis(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.123456Z"),
            Some(1_795_341_600_123_456)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.1Z"),
            Some(1_795_341_600_100_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T11:30:00+01:30"),
            Some(1_795_341_600_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T08:00:00-02:00"),
            Some(1_795_341_600_000_000)
        );
        for us in [
            0u64,
            951_782_400_000_000,
            1_795_341_600_123_000,
            4_102_444_799_999_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_millis(us)), Some(us as i64));
        }
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-13-22T10:00:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00Zjunk",
            "2026-11-22T10:00:00+0100",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(0.0), "0s");
        assert_eq!(short_duration(45.9), "45s");
        assert_eq!(short_duration(60.0), "1m00s");
        assert_eq!(short_duration(725.0), "12m05s");
        assert_eq!(short_duration(3.0 * 3600.0 + 2.0 * 60.0 + 59.0), "3h02m");
        assert_eq!(short_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2d04h");
        assert_eq!(short_duration(-5.0), "0s");
        assert_eq!(short_duration(f64::NAN), "0s");
        assert_eq!(countdown(1.23), "1.2s");
        assert_eq!(countdown(-0.5), "0.0s");
        assert_eq!(countdown(75.0), "1m15s");
    }
}

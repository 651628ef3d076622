//! RFC 3339 timestamps (`2026-11-23T10:15:00Z`, `2026-11-23T11:15:00.25+01:00`)
//! as milliseconds since the Unix epoch: the messages of a thread are compared
//! by time, wherever their offsets put them. Platforms that speak Unix time
//! (WhatsApp's webhook sends seconds, others milliseconds) send a number,
//! or a string of digits: [`parse_time`] takes all three.

use crate::call::json::Json;
use crate::call::problem::Problem;

/// Below this a Unix time is seconds, from it milliseconds: 10^11 seconds
/// is the year 5138, 10^11 milliseconds March 1973, so no date a thread can
/// have is read the wrong way.
pub const SECONDS_BELOW: u64 = 100_000_000_000;

/// A message time as Unix milliseconds: an RFC 3339 string, or Unix
/// seconds or milliseconds as a number or a string of digits (told apart
/// by [`SECONDS_BELOW`]); seconds may have a fraction.
pub fn parse_time(value: &Json<'_>) -> Result<i64, Problem> {
    let unix = |n: f64| -> Result<i64, Problem> {
        if !(n.is_finite() && n >= 0.0) {
            return Err(Problem(
                "must be a Unix time from 1970 on, in seconds or milliseconds".into(),
            ));
        }
        let ms = if n < SECONDS_BELOW as f64 {
            n * 1000.0
        } else {
            n
        };
        if ms > 253_402_300_799_999.0 {
            return Err(Problem("is after the year 9999".into()));
        }
        Ok(ms.round() as i64)
    };
    match value {
        Json::Number(n) => unix(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s)
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 16 =>
        {
            unix(s.parse::<u64>().map_err(|e| Problem(e.to_string()))? as f64)
        }
        Json::String(s) => parse_rfc3339(s),
        other => Err(Problem(format!(
            "must be an RFC 3339 timestamp or a Unix time, not {}",
            other.kind()
        ))),
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z, or why `s` is not RFC 3339.
pub fn parse_rfc3339(s: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem(format!(
            "`{s}` is not an RFC 3339 timestamp (e.g. 2026-11-23T10:15:00Z)"
        ))
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, Problem> {
        let part = s.get(r).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms = &frac[..digits.min(3)];
        millis = ms.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(3 - ms.len() as u32);
        rest = &frac[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let v = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let (h, m) = (v(*h1, *h2), v(*m1, *m2));
            if h > 23 || m > 59 {
                return Err(bad());
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(secs * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-23T10:15:00Z"), Ok(1_795_428_900_000));
        assert_eq!(
            parse_rfc3339("2026-11-23T11:15:00+01:00"),
            parse_rfc3339("2026-11-23T10:15:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T10:15:00.25Z"),
            Ok(1_795_428_900_250)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00-00:30"),
            Ok(1_709_166_600_000)
        );
    }

    #[test]
    fn unix_seconds_and_milliseconds_are_told_apart() {
        let at = |json: &str| parse_time(&Json::parse(json.as_bytes()).unwrap());
        let want = Ok(1_795_428_900_000);
        assert_eq!(at("1795428900"), want);
        assert_eq!(at("1795428900000"), want);
        assert_eq!(at("\"1795428900\""), want);
        assert_eq!(at("\"2026-11-23T10:15:00Z\""), want);
        assert_eq!(at("1795428900.25"), Ok(1_795_428_900_250));
        assert_eq!(at("0"), Ok(0));
        for bad in ["-1", "true", "null", "1e300", "\"12ab\"", "[]"] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T10:15:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T10:15:00+1:00",
            "yesterday",
            "2026-11-23T10:15:00.Z",
            "２０２６-11-23T10:15:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}

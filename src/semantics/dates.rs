//! HTTP dates (RFC 9110 §5.6.7).

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;

/// The largest delta-seconds value (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// Parses an HTTP date (IMF-fixdate, RFC 850 or asctime) to seconds since the epoch.
///
/// The three formats of RFC 9110 §5.6.7 exactly: one space where the grammar has one,
/// two-digit days and hours, `GMT`. Names may be in any case and the weekday is not
/// checked against the date; anything else (another zone, a missing comma, doubled
/// spaces) is invalid, which for `Expires` means already expired. An RFC 850 two-digit
/// year more than 50 years ahead is taken as the last century's.
///
/// ```
/// use http::HeaderValue;
/// let d = |s: &'static str| larder::semantics::dates::parse_date(&HeaderValue::from_static(s));
/// assert_eq!(d("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
/// assert_eq!(d("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784111777));
/// assert_eq!(d("Sun Nov  6 08:49:37 1994"), Some(784111777));
/// assert_eq!(d("SUN, 06 NOV 1994 08:49:37 gmt"), Some(784111777));
/// assert_eq!(d("Sun, 06 Nov 1994 08:49:37 UTC"), None);
/// assert_eq!(d("Sun 06 Nov 1994 08:49:37 GMT"), None);
/// assert_eq!(d("0"), None);
/// ```
pub fn parse_date(v: &HeaderValue) -> Option<u64> {
    let s = v.as_bytes();
    imf_fixdate(s)
        .or_else(|| rfc850_date(s))
        .or_else(|| asctime_date(s))
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &[u8]) -> Option<u64> {
    if s.len() != 29 || &s[3..5] != b", " || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' {
        return None;
    }
    if s[25] != b' ' || !s[26..].eq_ignore_ascii_case(b"GMT") || !short_weekday(&s[..3]) {
        return None;
    }
    let (day, month, year) = (digits(&s[5..7])?, month(&s[8..11])?, digits(&s[12..16])?);
    date_secs(year, month, day, clock(&s[17..25])?)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850_date(s: &[u8]) -> Option<u64> {
    let comma = s.iter().position(|&b| b == b',')?;
    let (name, r) = (&s[..comma], s.get(comma + 1..)?);
    if !WEEKDAYS
        .iter()
        .any(|w| name.eq_ignore_ascii_case(w.as_bytes()))
    {
        return None;
    }
    if r.len() != 23 || r[0] != b' ' || r[3] != b'-' || r[7] != b'-' || r[10] != b' ' {
        return None;
    }
    if r[19] != b' ' || !r[20..].eq_ignore_ascii_case(b"GMT") {
        return None;
    }
    let (day, month, yy) = (digits(&r[1..3])?, month(&r[4..7])?, digits(&r[8..10])?);
    date_secs(full_year(yy), month, day, clock(&r[11..19])?)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime_date(s: &[u8]) -> Option<u64> {
    if s.len() != 24 || s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    if !short_weekday(&s[..3]) {
        return None;
    }
    let day = match s[8] {
        b' ' => digits(&s[9..10])?,
        _ => digits(&s[8..10])?,
    };
    date_secs(
        digits(&s[20..24])?,
        month(&s[4..7])?,
        day,
        clock(&s[11..19])?,
    )
}

fn short_weekday(b: &[u8]) -> bool {
    WEEKDAYS
        .iter()
        .any(|w| b.eq_ignore_ascii_case(&w.as_bytes()[..3]))
}

fn month(b: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    MONTHS
        .iter()
        .position(|m| b.eq_ignore_ascii_case(m))
        .map(|i| i as u64 + 1)
}

/// Exactly these ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// `08:49:37` as seconds into the day.
fn clock(b: &[u8]) -> Option<u64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..])?);
    (h <= 23 && m <= 59 && s <= 60).then_some(h * 3600 + m * 60 + s)
}

/// An RFC 850 two-digit year: this century's, unless that is more than 50 years ahead.
fn full_year(yy: u64) -> u64 {
    let this_year = 1970 + crate::time::now_ms() / 1000 / 31_556_952;
    let year = this_year / 100 * 100 + yy;
    if year > this_year + 50 {
        year - 100
    } else {
        year
    }
}

fn date_secs(year: u64, month: u64, day: u64, clock: u64) -> Option<u64> {
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + clock)
}

/// Days from 1970-01-01 to a (proleptic Gregorian) date, for years from 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How long a `Retry-After` value (RFC 9110 §10.2.3: delta-seconds or an HTTP date) asks
/// to wait, from `now` (seconds since the epoch); `None` when it is neither.
///
/// ```
/// use http::HeaderValue;
/// use larder::semantics::dates::retry_after;
/// use std::time::Duration;
/// assert_eq!(retry_after(&HeaderValue::from_static("120"), 0), Some(Duration::from_secs(120)));
/// let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
/// assert_eq!(retry_after(&date, 784111770), Some(Duration::from_secs(7)));
/// assert_eq!(retry_after(&date, 784111790), Some(Duration::ZERO));
/// assert_eq!(retry_after(&HeaderValue::from_static("soon"), 0), None);
/// ```
pub fn retry_after(v: &HeaderValue, now: u64) -> Option<Duration> {
    let text = v.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX);
        return Some(Duration::from_secs(secs));
    }
    parse_date(v).map(|at| Duration::from_secs(at.saturating_sub(now)))
}

/// Formats seconds since the epoch as an IMF-fixdate.
pub fn format_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_follow_the_grammar() {
        let d = |s: &'static str| parse_date(&HeaderValue::from_static(s));
        let aug_2050 = d("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        for same in [
            "THU, 18 AUG 2050 02:01:18 gMT",
            "Thursday, 18-Aug-50 02:01:18 GMT",
            "Thu Aug 18 02:01:18 2050",
        ] {
            assert_eq!(d(same), Some(aug_2050), "{same}");
        }
        assert_eq!(d("Thu Aug  8 02:01:18 2050"), Some(aug_2050 - 10 * 86_400));
        for invalid in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT ",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thx, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT, Fri, 19 Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(d(invalid), None, "{invalid}");
        }
    }
}

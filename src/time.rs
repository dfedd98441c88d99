//! The clock the core takes: milliseconds since the Unix epoch, as every stored time is
//! kept (entries outlive the process and cross instances, so they carry wall-clock
//! times). Everything that asks what time it is — freshness, stale windows, expiry,
//! refresh-ahead, budgets — asks [`now_ms`].
//!
//! The clock is real, plus an offset that only moves when the process runs with a manual
//! clock (`LARDER_MANUAL_CLOCK=1`, or `=N` to start N ms ahead, as a process started that
//! much later would: tests advance it through `POST /admin/clock` instead of sleeping).
//! The offset is process-wide.
//!
//! ```
//! let before = larder::time::now_ms();
//! assert!(larder::time::now_ms() >= before);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far the manual clock has been advanced past the real one.
static OFFSET_MS: AtomicU64 = AtomicU64::new(0);
/// Whether the clock may be advanced.
static MANUAL: AtomicBool = AtomicBool::new(false);

/// The variable that makes the clock manual (read once, at start).
pub const MANUAL_ENV: &str = "LARDER_MANUAL_CLOCK";

/// Milliseconds since the Unix epoch, as the core counts them.
#[inline]
pub fn now_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    real + OFFSET_MS.load(Relaxed)
}

/// Microseconds since the Unix epoch, on the same clock as [`now_ms`] (for rates finer
/// than a millisecond).
#[inline]
pub fn now_us() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    real + OFFSET_MS.load(Relaxed) * 1000
}

/// `ms` since the epoch as an RFC 3339 UTC time, to the millisecond.
///
/// ```
/// assert_eq!(larder::time::rfc3339(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(larder::time::rfc3339(1_765_000_000_123), "2025-12-06T05:46:40.123Z");
/// ```
pub fn rfc3339(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    // Civil from days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Parses an RFC 3339 UTC time (`2026-12-06T05:46:40Z`, fractions allowed) to ms since
/// the epoch.
///
/// ```
/// assert_eq!(larder::time::parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
/// assert_eq!(larder::time::parse_rfc3339(&larder::time::rfc3339(1_765_000_000_123)), Some(1_765_000_000_123));
/// assert_eq!(larder::time::parse_rfc3339("yesterday"), None);
/// ```
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = text
        .trim()
        .strip_suffix('Z')
        .or_else(|| text.trim().strip_suffix("+00:00"))?;
    let (date, time) = t.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// Makes the clock manual when `LARDER_MANUAL_CLOCK` is `true` or a number of
/// milliseconds to start ahead by (`1`: a millisecond, as good as none); returns whether
/// it is.
pub fn manual_from_env() -> bool {
    let ahead = match std::env::var(MANUAL_ENV) {
        Ok(v) if v.eq_ignore_ascii_case("true") => Some(0),
        Ok(v) => v.trim().parse::<u64>().ok(),
        Err(_) => None,
    };
    if let Some(ms) = ahead {
        MANUAL.store(true, Relaxed);
        OFFSET_MS.store(ms, Relaxed);
    }
    MANUAL.load(Relaxed)
}

/// Makes the clock manual (tests in process).
pub fn set_manual() {
    MANUAL.store(true, Relaxed);
}

/// Whether the clock is manual.
pub fn is_manual() -> bool {
    MANUAL.load(Relaxed)
}

/// Moves a manual clock forward by `by`; returns the new time, or `None` when the clock
/// is real (it never moves but by itself).
///
/// ```
/// larder::time::set_manual();
/// let before = larder::time::now_ms();
/// larder::time::advance(std::time::Duration::from_secs(60)).unwrap();
/// assert!(larder::time::now_ms() >= before + 60_000);
/// ```
pub fn advance(by: Duration) -> Option<u64> {
    if !is_manual() {
        return None;
    }
    OFFSET_MS.fetch_add(by.as_millis() as u64, Relaxed);
    Some(now_ms())
}

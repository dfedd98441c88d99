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

//! Whether a stored entry may answer a request now (RFC 9111 §4.2, §4.2.4, §5.2.1;
//! RFC 5861), and what may stand in when the upstream fails.

use http::StatusCode;

use super::request::RequestPolicy;
use crate::entry::Entry;
use crate::status::Stale;

/// What a stored entry is worth to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usable {
    /// Fresh: serve it.
    Fresh,
    /// Stale but servable now, for this reason (`WhileRevalidate`: refresh it once in the
    /// background).
    ServeStale(Stale),
    /// Not usable without going upstream (revalidate it; it may stand in if the upstream
    /// fails).
    Stale,
}

/// Classifies `entry` for a request with `policy` at `now` (ms).
pub fn classify(entry: &Entry, policy: &RequestPolicy, now: u64) -> Usable {
    if policy.revalidate {
        return Usable::Stale;
    }
    if entry.is_fresh(now) {
        let too_old = policy
            .max_age
            .is_some_and(|m| entry.age_ms(now) > m.saturating_mul(1000));
        let too_close = policy
            .min_fresh
            .is_some_and(|m| entry.ttl_ms(now) < m.saturating_mul(1000) as i64);
        return if too_old || too_close {
            Usable::Stale
        } else {
            Usable::Fresh
        };
    }
    let f = entry.freshness();
    // no-cache, must-revalidate, proxy-revalidate and s-maxage forbid stale use (§4.2.4).
    if f.must_revalidate || f.no_cache {
        return Usable::Stale;
    }
    let staleness = -entry.ttl_ms(now);
    if policy
        .max_stale
        .is_some_and(|m| staleness <= m.saturating_mul(1000) as i64)
    {
        return Usable::ServeStale(Stale::MaxStale);
    }
    if policy.max_age.is_none() && staleness <= f.stale_while_revalidate as i64 * 1000 {
        return Usable::ServeStale(Stale::WhileRevalidate);
    }
    Usable::Stale
}

/// Statuses after which a stale entry may be served instead (RFC 5861 §4): the server
/// errors, and `429` (the upstream refused to answer now).
pub fn upstream_failed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Whether `entry` may be served stale because the upstream failed.
pub fn stale_if_error_allows(entry: &Entry, now: u64) -> bool {
    let f = entry.freshness();
    let staleness = -entry.ttl_ms(now);
    !f.must_revalidate && !f.no_cache && staleness <= f.stale_if_error as i64 * 1000
}

/// Whether `entry` may be served stale because its upstream may not be asked now (over
/// its budget, rate or concurrency, or backing off): within the rule's `stale_if_budget`
/// window, or the entry's stale-if-error window (a refusal is a failure too).
pub fn stale_if_budget_allows(
    entry: &Entry,
    window: Option<std::time::Duration>,
    now: u64,
) -> bool {
    let f = entry.freshness();
    let staleness = -entry.ttl_ms(now);
    let window_ms = window.map_or(0, |w| w.as_millis() as i64);
    !f.must_revalidate
        && !f.no_cache
        && staleness <= window_ms.max(i64::from(f.stale_if_error) * 1000)
}

/// Whether a fresh entry is due a refresh-ahead: hit at least `min_hits` times (0: never)
/// and within `share` of its lifetime from expiry.
pub fn refresh_ahead_due(entry: &Entry, min_hits: u32, share: f64, now: u64) -> bool {
    if min_hits == 0 || entry.hits() < min_hits {
        return false;
    }
    let f = entry.freshness();
    let lifetime = f.lifetime_ms.saturating_sub(f.initial_age_ms);
    (entry.ttl_ms(now) as f64) <= lifetime as f64 * share
}

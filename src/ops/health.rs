//! Whether the cache is well (`/health`, `larder_health_degraded`): degraded, with the
//! reasons, while a tier is unreachable or its breaker is open, while half of an
//! upstream's recent trips (at least ten in the last 30 to 60 s) failed, while an upstream
//! backs off, has spent its budget or counts its limits on a local share, or while Redis
//! is near its maxmemory. The proxy keeps serving either way.

use crate::cache::Cache;

/// An upstream is unhealthy when at least half of at least this many recent trips failed.
const UNHEALTHY_TRIPS: u64 = 10;

/// Why the cache is degraded (empty: it is not).
pub fn reasons(cache: &Cache) -> Vec<String> {
    let mut reasons = Vec::new();
    for tier in cache.tiers().lower() {
        let report = tier.report();
        if !report.is_up() {
            reasons.push(format!(
                "{} is {} (breaker {})",
                tier.section(),
                report.status,
                report.breaker
            ));
        }
    }
    for r in cache.counters().upstream_errors.recent() {
        if r.trips >= UNHEALTHY_TRIPS && r.failed * 2 >= r.trips {
            reasons.push(format!(
                "upstream {}: {} of {} trips failed in the last minute",
                r.upstream, r.failed, r.trips
            ));
        }
    }
    reasons.extend(cache.gates().all().iter().filter_map(|g| g.trouble()));
    let warn = cache.settings().config.store.redis_memory_warn;
    if let Some(m) = cache.tiers().redis().and_then(|r| r.memory()) {
        if m.max_bytes > 0 && m.used_bytes as f64 > m.max_bytes as f64 * warn {
            reasons.push(format!(
                "redis uses {:.0}% of its maxmemory ({} of {} bytes; store.redis_memory_warn = {warn})",
                m.used_bytes as f64 * 100.0 / m.max_bytes as f64,
                m.used_bytes,
                m.max_bytes
            ));
        }
    }
    reasons
}

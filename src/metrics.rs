//! Prometheus text exposition of the cache's counters (`larder_` prefix). Label sets are
//! bounded: rules and outcomes, never URLs or users.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = larder::Cache::new(larder::Config::default()).unwrap();
//! let text = larder::metrics::render(&cache);
//! assert!(text.contains("larder_store_entries 0"));
//! # });
//! ```

use std::fmt::Write;

use crate::cache::Cache;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text format.
pub fn render(cache: &Cache) -> String {
    let stats = cache.stats();
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP larder_requests_total Requests by rule and outcome."
    );
    let _ = writeln!(out, "# TYPE larder_requests_total counter");
    for (rule, s) in &stats.per_rule {
        let rule = label(rule);
        for (outcome, n) in [
            ("hit", s.hits),
            ("miss", s.misses),
            ("stale", s.stale),
            ("bypass", s.bypass),
            ("collapsed", s.collapsed),
        ] {
            let _ = writeln!(
                out,
                "larder_requests_total{{rule=\"{rule}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP larder_stored_total Upstream answers stored, by rule."
    );
    let _ = writeln!(out, "# TYPE larder_stored_total counter");
    for (rule, s) in &stats.per_rule {
        let _ = writeln!(
            out,
            "larder_stored_total{{rule=\"{}\"}} {}",
            label(rule),
            s.stored
        );
    }
    let _ = writeln!(
        out,
        "# HELP larder_hits_total Hits by the tier that served them."
    );
    let _ = writeln!(out, "# TYPE larder_hits_total counter");
    let mut tiers: Vec<_> = stats.tiers.iter().collect();
    tiers.sort();
    for (tier, n) in tiers {
        let _ = writeln!(out, "larder_hits_total{{tier=\"{tier}\"}} {n}");
    }
    let gauges = [
        (
            "larder_store_entries",
            "Entries in the memory store.",
            stats.entries,
        ),
        (
            "larder_store_bytes",
            "Bytes held by the memory store.",
            stats.bytes,
        ),
        (
            "larder_store_max_bytes",
            "The memory store's bound.",
            stats.max_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let counters = [
        (
            "larder_store_evictions_total",
            "Entries evicted to stay within the bound.",
            stats.evictions,
        ),
        (
            "larder_invalidated_total",
            "Entries removed by invalidation or purge.",
            stats.invalidated,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    if let Some(r) = &stats.redis {
        let up = u64::from(r.status == "up");
        let _ = writeln!(out, "# HELP larder_redis_up Whether Redis answers (1) or the cache runs without it (0).\n# TYPE larder_redis_up gauge\nlarder_redis_up {up}");
        let _ = writeln!(out, "# HELP larder_redis_errors_total Failed or timed-out Redis calls.\n# TYPE larder_redis_errors_total counter\nlarder_redis_errors_total {}", r.errors);
        let _ = writeln!(out, "# HELP larder_redis_breaker_opened_total Times the Redis circuit breaker opened.\n# TYPE larder_redis_breaker_opened_total counter\nlarder_redis_breaker_opened_total {}", r.breaker_opened);
        let _ = writeln!(out, "# HELP larder_redis_breaker_state The Redis circuit breaker (1 for the current state).\n# TYPE larder_redis_breaker_state gauge");
        for state in ["closed", "half_open", "open"] {
            let _ = writeln!(
                out,
                "larder_redis_breaker_state{{state=\"{state}\"}} {}",
                u64::from(r.breaker == state)
            );
        }
    }
    out
}

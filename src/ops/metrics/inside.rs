//! Upstream limits, what each rule holds, invalidations by source and Redis's memory, as
//! metrics.

use std::fmt::Write;

use super::{label, StatsReport};
use crate::cache::Cache;

/// What each rule holds, invalidations by source, and Redis's memory.
pub(super) fn render_inside(cache: &Cache, stats: &StatsReport, out: &mut String) {
    let degraded = u8::from(!crate::ops::health::reasons(cache).is_empty());
    let _ = writeln!(out, "# HELP larder_health_degraded 1 while /health says degraded (a tier down, an upstream failing or over its limits, Redis near maxmemory).\n# TYPE larder_health_degraded gauge\nlarder_health_degraded {degraded}");
    let _ = writeln!(out, "# HELP larder_rule_entries Entries a rule holds, by tier (memory, disk; counted every 15 s).\n# TYPE larder_rule_entries gauge");
    for (rule, r) in &stats.per_rule {
        for (tier, h) in &r.held {
            let _ = writeln!(
                out,
                "larder_rule_entries{{rule=\"{}\",tier=\"{tier}\"}} {}",
                label(rule),
                h.entries
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_rule_bytes Bytes a rule's entries take, by tier.\n# TYPE larder_rule_bytes gauge");
    for (rule, r) in &stats.per_rule {
        for (tier, h) in &r.held {
            let _ = writeln!(
                out,
                "larder_rule_bytes{{rule=\"{}\",tier=\"{tier}\"}} {}",
                label(rule),
                h.bytes
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_invalidations_total Invalidations by where they came from (admin, mutation, fleet, purge, soft-purge).\n# TYPE larder_invalidations_total counter");
    let by_source = cache.counters().invalidations();
    for source in crate::cache::history::Source::ALL {
        let n = by_source.get(source.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "larder_invalidations_total{{source=\"{}\"}} {n}",
            source.as_str()
        );
    }
    let memory = cache.tiers().redis().and_then(|r| r.memory());
    let figures = [
        (
            "larder_redis_used_bytes",
            "gauge",
            "Bytes Redis uses (INFO memory used_memory, polled every 15 s).",
            memory.as_ref().map(|m| m.used_bytes),
        ),
        (
            "larder_redis_max_bytes",
            "gauge",
            "Redis's maxmemory (0: no bound).",
            memory.as_ref().map(|m| m.max_bytes),
        ),
        (
            "larder_redis_evicted_keys_total",
            "counter",
            "Keys Redis evicted since it started (INFO stats evicted_keys).",
            memory.as_ref().map(|m| m.evicted_keys),
        ),
        (
            "larder_redis_keys",
            "gauge",
            "Keys under larder's prefix in Redis (the last complete count).",
            memory.as_ref().and_then(|m| m.keys),
        ),
    ];
    for (name, kind, help, value) in figures {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        if let Some(v) = value {
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

/// Each upstream's throttled requests by reason, its budget left and its back-off.
pub(super) fn render_gates(stats: &StatsReport, out: &mut String) {
    let _ = writeln!(out, "# HELP larder_upstream_throttled_total Requests not sent to an upstream (served stale or refused), by the limit they met.\n# TYPE larder_upstream_throttled_total counter");
    for (name, g) in &stats.upstreams {
        for (reason, n) in &g.throttled {
            let _ = writeln!(
                out,
                "larder_upstream_throttled_total{{upstream=\"{}\",reason=\"{reason}\"}} {n}",
                label(name)
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_upstream_budget_remaining Units of an upstream's daily budget left (fleet-wide with Redis, as last seen).\n# TYPE larder_upstream_budget_remaining gauge");
    for (name, g) in &stats.upstreams {
        if let Some(left) = g.budget_remaining {
            let _ = writeln!(
                out,
                "larder_upstream_budget_remaining{{upstream=\"{}\"}} {left}",
                label(name)
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_upstream_budget_units An upstream's daily budget.\n# TYPE larder_upstream_budget_units gauge");
    for (name, g) in &stats.upstreams {
        if let Some(budget) = g.budget {
            let _ = writeln!(
                out,
                "larder_upstream_budget_units{{upstream=\"{}\"}} {budget}",
                label(name)
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_upstream_backoff_seconds Seconds an upstream is still left alone after its Retry-After.\n# TYPE larder_upstream_backoff_seconds gauge");
    for (name, g) in &stats.upstreams {
        let _ = writeln!(
            out,
            "larder_upstream_backoff_seconds{{upstream=\"{}\"}} {}",
            label(name),
            g.backoff_seconds
        );
    }
    let _ = writeln!(out, "# HELP larder_upstream_in_flight Requests in flight to an upstream.\n# TYPE larder_upstream_in_flight gauge");
    for (name, g) in &stats.upstreams {
        let _ = writeln!(
            out,
            "larder_upstream_in_flight{{upstream=\"{}\"}} {}",
            label(name),
            g.in_flight
        );
    }
}

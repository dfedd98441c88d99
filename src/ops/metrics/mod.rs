//! Prometheus text exposition of the cache's counters (`larder_` prefix). Label sets are
//! bounded: rules and outcomes, never URLs or users.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = larder::Cache::new(larder::Config::default()).unwrap();
//! let text = larder::ops::metrics::render(&cache);
//! assert!(text.contains("larder_store_entries 0"));
//! # });
//! ```

use std::fmt::Write;

mod inside;
mod llm;

use inside::{render_gates, render_inside};
use llm::render_llm;

use super::report::StatsReport;
use crate::cache::Cache;
use crate::stats::{HistogramSnapshot, BUCKETS_US};

fn render_upstream_errors(cache: &Cache, out: &mut String) {
    let _ = writeln!(out, "# HELP larder_upstream_errors_total Trips upstream that failed, by upstream and kind (connect, timeout, tls, status_5xx, body); larder's own 502/504 answers included.");
    let _ = writeln!(out, "# TYPE larder_upstream_errors_total counter");
    for (upstream, kind, n) in cache.counters().upstream_errors.snapshot() {
        let _ = writeln!(
            out,
            "larder_upstream_errors_total{{upstream=\"{}\",kind=\"{}\"}} {n}",
            label(&upstream),
            kind.as_str()
        );
    }
}

/// Writes one Prometheus histogram series (buckets from [`BUCKETS_US`], in seconds).
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (le, n) in BUCKETS_US.iter().zip(&h.cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {n}",
            *le as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

fn render_histograms(cache: &Cache, out: &mut String) {
    let stats = cache.counters();
    let _ = writeln!(
        out,
        "# HELP larder_hit_duration_seconds Time to answer a hit (to the response head), by tier."
    );
    let _ = writeln!(out, "# TYPE larder_hit_duration_seconds histogram");
    for tier in stats.tier_list() {
        histogram(
            out,
            "larder_hit_duration_seconds",
            &format!("tier=\"{}\"", tier.as_str()),
            &stats.hit_latency(tier),
        );
    }
    let _ = writeln!(out, "# HELP larder_upstream_duration_seconds Time the upstream took to answer (to the response head), by rule.");
    let _ = writeln!(out, "# TYPE larder_upstream_duration_seconds histogram");
    for (rule, c) in stats.rules() {
        histogram(
            out,
            "larder_upstream_duration_seconds",
            &format!("rule=\"{}\"", label(&rule)),
            &c.upstream_histogram(),
        );
    }
    let _ = writeln!(out, "# HELP larder_invalidation_apply_seconds From an invalidation to its applying here: this instance's own (the whole call) and, through Redis, other instances' (from when they sent it).");
    let _ = writeln!(out, "# TYPE larder_invalidation_apply_seconds histogram");
    histogram(
        out,
        "larder_invalidation_apply_seconds",
        &format!("instance=\"{}\"", label(&cache.tiers().instance())),
        &cache.tiers().apply_histogram().snapshot(),
    );
}

/// Per rule: answers not stored by reason, dry-run outcomes, failed trips upstream (labels
/// stay bounded: rule names and fixed sets of reasons and outcomes).
fn render_rule_outcomes(stats: &StatsReport, out: &mut String) {
    let _ = writeln!(out, "# HELP larder_not_stored_total Answers that went upstream and were not stored, by rule and reason.\n# TYPE larder_not_stored_total counter");
    for (rule, s) in &stats.per_rule {
        for (reason, n) in s.not_stored.iter() {
            let _ = writeln!(
                out,
                "larder_not_stored_total{{rule=\"{}\",reason=\"{}\"}} {n}",
                label(rule),
                reason.as_str()
            );
        }
    }
    let _ = writeln!(out, "# HELP larder_dry_run_requests_total In a dry run, requests by what the cache would have done: hit or miss.\n# TYPE larder_dry_run_requests_total counter");
    for (rule, s) in &stats.per_rule {
        for (outcome, n) in [("hit", s.would_hit), ("miss", s.would_miss)] {
            let _ = writeln!(
                out,
                "larder_dry_run_requests_total{{rule=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(rule)
            );
        }
    }
    per_rule(
        out,
        stats,
        ("larder_dry_run_hit_ratio", "gauge"),
        "In a dry run, the hit ratio the cache would have had, by rule.",
        |s| s.would_hit_ratio,
    );
    per_rule(
        out,
        stats,
        ("larder_rule_upstream_errors_total", "counter"),
        "Trips upstream that failed (unreachable, timed out, 5xx), by rule.",
        |s| s.upstream_errors as f64,
    );
}

fn render_savings(cache: &Cache, stats: &StatsReport, out: &mut String) {
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&super::report::SavedRule) -> f64,
    );
    let series: [Series; 4] = [
        (
            "larder_requests_avoided_total",
            "counter",
            "Requests answered without going upstream, by rule.",
            |s| s.requests_avoided as f64,
        ),
        (
            "larder_bytes_not_fetched_total",
            "counter",
            "Body bytes the upstream did not send, by rule.",
            |s| s.bytes_not_fetched as f64,
        ),
        (
            "larder_upstream_seconds_saved_total",
            "counter",
            "Mean miss latency times requests avoided, by rule.",
            |s| s.upstream_seconds_saved,
        ),
        (
            "larder_cost_saved_total",
            "counter",
            "miss_cost times requests avoided, by rule.",
            |s| s.cost_saved,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (rule, s) in &stats.saved.per_rule {
            let _ = writeln!(out, "{name}{{rule=\"{}\"}} {}", label(rule), get(s));
        }
    }
    let _ = writeln!(out, "# HELP larder_hit_ratio_alert 1 while a rule's hit ratio over the last window is below its alert_hit_ratio.\n# TYPE larder_hit_ratio_alert gauge");
    let _ = writeln!(out, "# HELP larder_hit_ratio_window A rule's hit ratio over the last alert window.\n# TYPE larder_hit_ratio_window gauge");
    for (rule, c) in cache.counters().rules() {
        let (alerting, ratio) = c.alert();
        let rule = label(&rule);
        let _ = writeln!(
            out,
            "larder_hit_ratio_alert{{rule=\"{rule}\"}} {}",
            u8::from(alerting)
        );
        let _ = writeln!(out, "larder_hit_ratio_window{{rule=\"{rule}\"}} {ratio}");
    }
    let w = &stats.warm;
    let _ = writeln!(out, "# HELP larder_warm_runs_total Warming runs.\n# TYPE larder_warm_runs_total counter\nlarder_warm_runs_total {}", w.runs);
    let _ = writeln!(out, "# HELP larder_warm_urls_total URLs warmed, by result.\n# TYPE larder_warm_urls_total counter");
    let _ = writeln!(out, "larder_warm_urls_total{{result=\"ok\"}} {}\nlarder_warm_urls_total{{result=\"failed\"}} {}", w.warmed, w.failed);
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text format.
pub fn render(cache: &Cache) -> String {
    let stats = super::report::stats(cache);
    let mut out = String::with_capacity(8192);
    render_histograms(cache, &mut out);
    render_savings(cache, &stats, &mut out);
    render_upstream_errors(cache, &mut out);
    render_rule_outcomes(&stats, &mut out);
    render_requests(&stats, &mut out);
    render_llm(cache, &mut out);
    render_gates(&stats, &mut out);
    render_inside(cache, &stats, &mut out);
    render_store(&stats, &mut out);
    render_lower_tiers(&stats, &mut out);
    out
}

/// Requests by rule and outcome, stored answers by rule, hits by tier.
fn render_requests(stats: &StatsReport, out: &mut String) {
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
}

/// The memory store's size and churn.
fn render_store(stats: &StatsReport, out: &mut String) {
    let series = [
        (
            "larder_store_entries",
            "gauge",
            "Entries in the memory store.",
            stats.entries,
        ),
        (
            "larder_store_bytes",
            "gauge",
            "Bytes held by the memory store.",
            stats.bytes,
        ),
        (
            "larder_store_max_bytes",
            "gauge",
            "The memory store's bound.",
            stats.max_bytes,
        ),
        (
            "larder_store_evictions_total",
            "counter",
            "Entries evicted to stay within the bound.",
            stats.evictions,
        ),
        (
            "larder_invalidated_total",
            "counter",
            "Entries removed by invalidation or purge.",
            stats.invalidated,
        ),
    ];
    write_series(out, &series);
}

/// Each tier below memory: up, errors, breaker, and the disk tier's figures.
fn render_lower_tiers(stats: &StatsReport, out: &mut String) {
    for (tier, r) in &stats.lower {
        let up = u64::from(r.is_up());
        let _ = writeln!(out, "# HELP larder_{tier}_up Whether the {tier} tier answers (1) or the cache runs without it (0).\n# TYPE larder_{tier}_up gauge\nlarder_{tier}_up {up}");
        let _ = writeln!(out, "# HELP larder_{tier}_errors_total Failed or timed-out calls to the {tier} tier.\n# TYPE larder_{tier}_errors_total counter\nlarder_{tier}_errors_total {}", r.errors);
        let _ = writeln!(out, "# HELP larder_{tier}_breaker_opened_total Times the {tier} tier's circuit breaker opened.\n# TYPE larder_{tier}_breaker_opened_total counter\nlarder_{tier}_breaker_opened_total {}", r.breaker_opened);
        let _ = writeln!(out, "# HELP larder_{tier}_breaker_state The {tier} tier's circuit breaker (1 for the current state).\n# TYPE larder_{tier}_breaker_state gauge");
        for state in ["closed", "half_open", "open"] {
            let _ = writeln!(
                out,
                "larder_{tier}_breaker_state{{state=\"{state}\"}} {}",
                u64::from(r.breaker == state)
            );
        }
        if let Some(d) = &r.disk {
            disk_series(out, d);
        }
    }
}

/// One sample per rule of a series (name, type).
fn per_rule(
    out: &mut String,
    stats: &StatsReport,
    (name, kind): (&str, &str),
    help: &str,
    value: impl Fn(&crate::stats::CountersSnapshot) -> f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (rule, s) in &stats.per_rule {
        let _ = writeln!(out, "{name}{{rule=\"{}\"}} {}", label(rule), value(s));
    }
}

/// Plain series, one sample each: name, type, help, value.
fn write_series(out: &mut String, series: &[(&str, &str, &str, u64)]) {
    for (name, kind, help, v) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

/// The disk tier's size and health.
fn disk_series(out: &mut String, d: &crate::store::DiskReport) {
    let series: [(&str, &str, &str, u64); 6] = [
        (
            "larder_disk_entries",
            "gauge",
            "Entries in the disk tier.",
            d.entries,
        ),
        (
            "larder_disk_bytes",
            "gauge",
            "Bytes of the disk tier's files.",
            d.bytes,
        ),
        (
            "larder_disk_max_bytes",
            "gauge",
            "The disk tier's bound.",
            d.max_bytes,
        ),
        (
            "larder_disk_corrupt_total",
            "counter",
            "Damaged records or files the disk tier found (each a miss).",
            d.corrupt,
        ),
        (
            "larder_disk_evictions_total",
            "counter",
            "Entries dropped with the disk tier's oldest segments.",
            d.evictions,
        ),
        (
            "larder_disk_writes_total",
            "counter",
            "Records the disk tier wrote.",
            d.writes,
        ),
    ];
    write_series(out, &series);
}

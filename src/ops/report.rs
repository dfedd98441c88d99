//! `/admin/stats` as data: counters, store size, tiers, savings and warming.

use serde::Serialize;

use crate::cache::Cache;
use crate::stats::CountersSnapshot;
use crate::store::TierReport;

/// `/admin/stats` as data.
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    /// Served fresh from the cache.
    pub hits: u64,
    /// Went upstream.
    pub misses: u64,
    /// Served stale or revalidated.
    pub stale: u64,
    /// Not handled by the cache.
    pub bypass: u64,
    /// (hits + stale) / (hits + stale + misses).
    pub hit_ratio: f64,
    /// Whether the cache runs dry (`cache.dry_run`): it forwards everything.
    pub dry_run: bool,
    /// In a dry run: requests the cache would have answered itself.
    pub would_hit: u64,
    /// In a dry run: the hit ratio the cache would have had.
    pub would_hit_ratio: f64,
    /// Entries in the store.
    pub entries: u64,
    /// Bytes in the store.
    pub bytes: u64,
    /// The store's bound.
    pub max_bytes: u64,
    /// Entries evicted.
    pub evictions: u64,
    /// Entries removed by invalidation or purge.
    pub invalidated: u64,
    /// Per rule (requests no rule matched under `"(no rule)"`).
    pub per_rule: std::collections::BTreeMap<String, RuleReport>,
    /// Hits by tier.
    pub tiers: std::collections::HashMap<&'static str, u64>,
    /// How each tier below memory is doing, by its section name (`redis`, `disk`).
    #[serde(flatten)]
    pub lower: std::collections::BTreeMap<&'static str, TierReport>,
    /// What the cache saved the upstream.
    pub saved: SavedReport,
    /// Warming: runs, URLs warmed, URLs that failed.
    pub warm: WarmReport,
    /// What LLM hits saved, per model (all rules together).
    pub llm: std::collections::BTreeMap<String, LlmReport>,
    /// Failed trips upstream, by upstream and kind (`connect`, `timeout`, `tls`,
    /// `status_5xx`, `body`).
    pub upstream_errors:
        std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, u64>>,
    /// Each upstream's limits and how it is doing against them (in flight, budget left,
    /// back-off, requests throttled by reason).
    pub upstreams: std::collections::BTreeMap<String, crate::budget::GateReport>,
}

/// One rule's counters, and what it holds (memory and disk, at the last count).
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// Its counters.
    #[serde(flatten)]
    pub counters: CountersSnapshot,
    /// Entries it holds, in memory and on disk together.
    pub entries: u64,
    /// Bytes they take.
    pub bytes: u64,
    /// The same, per tier (`memory`, `disk`).
    pub held: std::collections::BTreeMap<&'static str, crate::cache::inventory::Held>,
}

impl std::ops::Deref for RuleReport {
    type Target = CountersSnapshot;
    fn deref(&self) -> &CountersSnapshot {
        &self.counters
    }
}

/// What one model's hits saved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LlmReport {
    /// Hits.
    pub hits: u64,
    /// Tokens not paid for again.
    pub tokens_saved: TokensSaved,
    /// USD not paid for again (`[llm.prices]`).
    pub usd_saved: f64,
}

/// Input and output tokens.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TokensSaved {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

/// What LLM hits saved, per model.
fn llm_report(cache: &Cache) -> std::collections::BTreeMap<String, LlmReport> {
    let mut out: std::collections::BTreeMap<String, LlmReport> = Default::default();
    for ((_, model), s) in cache.counters().llm.snapshot() {
        let r = out.entry(model).or_default();
        r.hits += s.hits;
        r.tokens_saved.input += s.input_tokens;
        r.tokens_saved.output += s.output_tokens;
        r.usd_saved = round6(r.usd_saved + s.usd);
    }
    out
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// What the cache saved, in total and per rule.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SavedReport {
    /// Requests answered without going upstream.
    pub requests_avoided: u64,
    /// Body bytes the upstream did not have to send.
    pub bytes_not_fetched: u64,
    /// Upstream time saved: per rule, its measured mean miss latency × requests avoided.
    pub upstream_seconds_saved: f64,
    /// Per rule `miss_cost` × requests avoided (unit-free).
    pub cost_saved: f64,
    /// The same per rule.
    pub per_rule: std::collections::BTreeMap<String, SavedRule>,
}

/// What one rule saved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SavedRule {
    /// Requests answered without going upstream.
    pub requests_avoided: u64,
    /// Body bytes the upstream did not have to send.
    pub bytes_not_fetched: u64,
    /// Mean miss latency × requests avoided.
    pub upstream_seconds_saved: f64,
    /// `miss_cost` × requests avoided.
    pub cost_saved: f64,
}

/// Warming in `/admin/stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WarmReport {
    /// Warming runs (start-up, schedule, `/admin/warm`).
    pub runs: u64,
    /// URLs fetched successfully.
    pub warmed: u64,
    /// URLs that failed.
    pub failed: u64,
}

/// Counters and store size, as `/admin/stats` reports them.
pub fn stats(cache: &Cache) -> StatsReport {
    let per_rule = cache.counters().per_rule();
    let total = per_rule
        .iter()
        .fold(CountersSnapshot::default(), |acc, (_, s)| acc + *s);
    let store = cache.store_stats();
    let settings = cache.settings();
    let mut saved = SavedReport::default();
    for (name, s) in &per_rule {
        let miss_cost = settings
            .rules
            .rules()
            .iter()
            .find(|r| &r.name == name)
            .and_then(|r| r.miss_cost);
        let rule = SavedRule {
            requests_avoided: s.requests_avoided,
            bytes_not_fetched: s.bytes_not_fetched,
            upstream_seconds_saved: round3(s.upstream_mean_seconds * s.requests_avoided as f64),
            cost_saved: round3(miss_cost.unwrap_or(0.0) * s.requests_avoided as f64),
        };
        saved.requests_avoided += rule.requests_avoided;
        saved.bytes_not_fetched += rule.bytes_not_fetched;
        saved.upstream_seconds_saved =
            round3(saved.upstream_seconds_saved + rule.upstream_seconds_saved);
        saved.cost_saved = round3(saved.cost_saved + rule.cost_saved);
        saved.per_rule.insert(name.clone(), rule);
    }
    let (runs, warmed, failed) = cache.counters().warm();
    StatsReport {
        hits: total.hits,
        misses: total.misses,
        stale: total.stale,
        bypass: total.bypass,
        hit_ratio: total.hit_ratio,
        dry_run: settings.config.cache.dry_run,
        would_hit: total.would_hit,
        would_hit_ratio: total.would_hit_ratio,
        entries: store.entries,
        bytes: store.bytes,
        max_bytes: store.max_bytes,
        evictions: store.evictions,
        invalidated: cache.counters().invalidated(),
        per_rule: rule_reports(cache, per_rule),
        tiers: cache.counters().tiers(),
        lower: cache
            .tiers()
            .lower()
            .iter()
            .map(|t| (t.section(), t.report()))
            .collect(),
        saved,
        warm: WarmReport {
            runs,
            warmed,
            failed,
        },
        llm: llm_report(cache),
        upstream_errors: {
            let mut by: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<&'static str, u64>,
            > = Default::default();
            for (upstream, kind, n) in cache.counters().upstream_errors.snapshot() {
                *by.entry(upstream)
                    .or_default()
                    .entry(kind.as_str())
                    .or_default() += n;
            }
            by
        },
        upstreams: cache
            .gates()
            .all()
            .iter()
            .map(|g| (g.name().to_string(), g.report()))
            .collect(),
    }
}

/// Each rule's counters with what it holds.
fn rule_reports(
    cache: &Cache,
    per_rule: Vec<(String, CountersSnapshot)>,
) -> std::collections::BTreeMap<String, RuleReport> {
    let mut held = cache.inventory();
    per_rule
        .into_iter()
        .map(|(name, counters)| {
            let held = held.remove(&name).unwrap_or_default();
            let entries = held.values().map(|h| h.entries).sum();
            let bytes = held.values().map(|h| h.bytes).sum();
            (
                name,
                RuleReport {
                    counters,
                    entries,
                    bytes,
                    held,
                },
            )
        })
        .collect()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

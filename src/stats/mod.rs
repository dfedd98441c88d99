//! The counters every part records into: per rule, per tier, per upstream, and latency
//! histograms, kept in atomics so counting costs the hit path no lock and no allocation;
//! `/admin/stats` and `/metrics` read them.
//!
//! ```
//! use larder::stats::Counters;
//! use larder::status::CacheStatus;
//! let c = Counters::default();
//! c.record(&CacheStatus::hit(10));
//! c.record_avoided(1024);
//! assert_eq!(c.snapshot().hits, 1);
//! assert_eq!(c.snapshot().bytes_not_fetched, 1024);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::status::Tier;

mod counters;
mod histogram;
mod llm;
mod upstream;

pub use counters::{Counters, CountersSnapshot, NotStored};
pub use histogram::{Histogram, HistogramSnapshot, BUCKETS_US};
pub use llm::{LlmSaved, LlmSavings};
pub use upstream::{RecentTrips, UpstreamError, UpstreamErrors};

/// All counters: per rule name (kept across config reloads) and the cache-wide ones.
#[derive(Default, Debug)]
pub struct Stats {
    rules: Mutex<Vec<(String, Arc<Counters>)>>,
    /// The tiers this cache has, by slot.
    tiers: Mutex<Vec<Tier>>,
    tier_hits: [AtomicU64; Tier::SLOTS],
    hit_latency: [Histogram; Tier::SLOTS],
    invalidated: AtomicU64,
    /// Upstream failures, shared with the upstream clients.
    pub(crate) upstream_errors: UpstreamErrors,
    warm_runs: AtomicU64,
    warmed: AtomicU64,
    warm_failed: AtomicU64,
    /// What LLM hits saved.
    pub llm: LlmSavings,
    /// Invalidations by source (`admin`, `mutation`, `fleet`, `purge`, `soft-purge`).
    invalidations: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// The name under which requests that matched no rule are counted.
pub const UNMATCHED: &str = "(no rule)";

impl Stats {
    /// The counters of the rule named `name`, created on first use.
    pub fn rule(&self, name: &str) -> Arc<Counters> {
        let mut rules = self.rules.lock();
        if let Some((_, c)) = rules.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Arc::new(Counters::default());
        rules.push((name.to_string(), c.clone()));
        c
    }

    /// Every rule's counters, by name.
    pub fn rules(&self) -> Vec<(String, Arc<Counters>)> {
        self.rules.lock().clone()
    }

    /// Registers a tier this cache has (so stats and metrics list it).
    pub fn add_tier(&self, tier: Tier) {
        let mut tiers = self.tiers.lock();
        if !tiers.contains(&tier) {
            tiers.push(tier);
        }
    }

    /// The tiers this cache has.
    pub fn tier_list(&self) -> Vec<Tier> {
        self.tiers.lock().clone()
    }

    /// Counts which tier served a hit.
    pub fn record_tier(&self, tier: Tier) {
        self.tier_hits[tier.slot()].fetch_add(1, Relaxed);
    }

    /// Records how long a hit took to answer (up to the response head).
    pub fn record_hit_latency(&self, tier: Tier, us: u64) {
        self.hit_latency[tier.slot()].observe_us(us);
    }

    /// The hit latency histogram of a tier.
    pub fn hit_latency(&self, tier: Tier) -> HistogramSnapshot {
        self.hit_latency[tier.slot()].snapshot()
    }

    /// Counts invalidated entries.
    pub fn record_invalidated(&self, n: u64) {
        self.invalidated.fetch_add(n, Relaxed);
    }

    /// Counts one invalidation by where it came from.
    pub fn record_invalidation_source(&self, source: &'static str) {
        *self.invalidations.lock().entry(source).or_default() += 1;
    }

    /// Invalidations by source.
    pub fn invalidations(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.invalidations.lock().clone()
    }

    /// Counts a warming run and its outcome.
    pub fn record_warm(&self, warmed: u64, failed: u64) {
        self.warm_runs.fetch_add(1, Relaxed);
        self.warmed.fetch_add(warmed, Relaxed);
        self.warm_failed.fetch_add(failed, Relaxed);
    }

    /// Warming runs, URLs warmed, URLs that failed.
    pub fn warm(&self) -> (u64, u64, u64) {
        (
            self.warm_runs.load(Relaxed),
            self.warmed.load(Relaxed),
            self.warm_failed.load(Relaxed),
        )
    }

    /// Per-rule snapshots in first-seen order.
    pub fn per_rule(&self) -> Vec<(String, CountersSnapshot)> {
        self.rules
            .lock()
            .iter()
            .map(|(n, c)| (n.clone(), c.snapshot()))
            .collect()
    }

    /// Hits by tier.
    pub fn tiers(&self) -> HashMap<&'static str, u64> {
        self.tier_list()
            .into_iter()
            .map(|t| (t.as_str(), self.tier_hits[t.slot()].load(Relaxed)))
            .collect()
    }

    /// Entries removed by invalidation, purge included.
    pub fn invalidated(&self) -> u64 {
        self.invalidated.load(Relaxed)
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for (_, c) in self.rules.lock().iter() {
            c.reset();
        }
        for c in self.tier_hits.iter().chain([
            &self.invalidated,
            &self.warm_runs,
            &self.warmed,
            &self.warm_failed,
        ]) {
            c.store(0, Relaxed);
        }
        for h in &self.hit_latency {
            h.reset();
        }
        self.llm.reset();
    }
}

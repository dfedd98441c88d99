//! Counters per rule, kept in atomics so counting costs the hit path no lock and no
//! allocation; `/admin/stats` reads them.
//!
//! ```
//! use larder::stats::Counters;
//! use larder::status::CacheStatus;
//! let c = Counters::default();
//! c.record(&CacheStatus::hit(10));
//! assert_eq!(c.snapshot().hits, 1);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::status::{CacheStatus, Outcome, Tier};

/// Request counters of one rule (or of requests no rule matched).
#[derive(Default, Debug)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypass: AtomicU64,
    collapsed: AtomicU64,
    stored: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct CountersSnapshot {
    /// Served fresh from the cache.
    pub hits: u64,
    /// Went upstream.
    pub misses: u64,
    /// Served stale or revalidated.
    pub stale: u64,
    /// Not handled by the cache.
    pub bypass: u64,
    /// Hits answered from another request's fetch.
    pub collapsed: u64,
    /// Upstream answers stored.
    pub stored: u64,
    /// (hits + stale) / (hits + stale + misses); bypassed requests do not count.
    pub hit_ratio: f64,
}

impl Counters {
    /// Counts one request.
    pub fn record(&self, status: &CacheStatus) {
        let c = match status.outcome {
            Outcome::Hit => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Stale => &self.stale,
            Outcome::Bypass => &self.bypass,
        };
        c.fetch_add(1, Relaxed);
        if status.collapsed {
            self.collapsed.fetch_add(1, Relaxed);
        }
        if status.stored {
            self.stored.fetch_add(1, Relaxed);
        }
    }

    /// The current values.
    pub fn snapshot(&self) -> CountersSnapshot {
        let mut s = CountersSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale: self.stale.load(Relaxed),
            bypass: self.bypass.load(Relaxed),
            collapsed: self.collapsed.load(Relaxed),
            stored: self.stored.load(Relaxed),
            hit_ratio: 0.0,
        };
        s.hit_ratio = ratio(s.hits + s.stale, s.hits + s.stale + s.misses);
        s
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for c in [
            &self.hits,
            &self.misses,
            &self.stale,
            &self.bypass,
            &self.collapsed,
            &self.stored,
        ] {
            c.store(0, Relaxed);
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}

impl std::ops::Add for CountersSnapshot {
    type Output = CountersSnapshot;
    fn add(self, o: CountersSnapshot) -> CountersSnapshot {
        let mut s = CountersSnapshot {
            hits: self.hits + o.hits,
            misses: self.misses + o.misses,
            stale: self.stale + o.stale,
            bypass: self.bypass + o.bypass,
            collapsed: self.collapsed + o.collapsed,
            stored: self.stored + o.stored,
            hit_ratio: 0.0,
        };
        s.hit_ratio = ratio(s.hits + s.stale, s.hits + s.stale + s.misses);
        s
    }
}

/// All counters: per rule name (kept across config reloads) and the cache-wide ones.
#[derive(Default, Debug)]
pub struct Stats {
    rules: Mutex<Vec<(String, Arc<Counters>)>>,
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    invalidated: AtomicU64,
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

    /// Counts which tier served a hit.
    pub fn record_tier(&self, tier: Tier) {
        match tier {
            Tier::L1 => &self.l1_hits,
            Tier::L2 => &self.l2_hits,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts invalidated entries.
    pub fn record_invalidated(&self, n: u64) {
        self.invalidated.fetch_add(n, Relaxed);
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
        HashMap::from([
            ("l1", self.l1_hits.load(Relaxed)),
            ("l2", self.l2_hits.load(Relaxed)),
        ])
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
        for c in [&self.l1_hits, &self.l2_hits, &self.invalidated] {
            c.store(0, Relaxed);
        }
    }
}

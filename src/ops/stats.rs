//! Counters per rule and latency histograms, kept in atomics so counting costs the hit
//! path no lock and no allocation; `/admin/stats` and `/metrics` read them.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::status::{CacheStatus, NoCacheReason, Outcome, Tier};

/// Histogram bucket bounds in microseconds (Prometheus `le`), from 50 µs to 30 s.
pub const BUCKETS_US: [u64; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// A latency histogram with fixed buckets: one atomic add per observation.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`]: cumulative bucket counts (as Prometheus wants them).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket of [`BUCKETS_US`].
    pub cumulative: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of observations in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_us(&self, us: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
        }
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum_us.store(0, Relaxed);
    }
}

/// Request counters of one rule (or of requests no rule matched).
#[derive(Default, Debug)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypass: AtomicU64,
    collapsed: AtomicU64,
    stored: AtomicU64,
    /// Answers given without a trip upstream, and their decoded body bytes.
    avoided: AtomicU64,
    bytes_avoided: AtomicU64,
    /// Trips upstream for this rule, with their latency.
    upstream: Histogram,
    /// Trips upstream that failed (unreachable, timed out, 5xx).
    upstream_errors: AtomicU64,
    /// Answers not stored, by reason.
    not_stored: [AtomicU64; NoCacheReason::ALL.len()],
    /// In a dry run: requests the cache would have answered, and those it would not.
    would_hit: AtomicU64,
    would_miss: AtomicU64,
    /// The hit-ratio alert: raised for the last window, and that window's ratio.
    alerting: AtomicBool,
    window_ratio: AtomicU64,
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
    /// Requests answered without going upstream.
    pub requests_avoided: u64,
    /// Body bytes of those answers (decoded): what the upstream did not send.
    pub bytes_not_fetched: u64,
    /// Trips upstream (misses, revalidations, bypasses).
    pub upstream_requests: u64,
    /// Mean time of a trip upstream, in seconds.
    pub upstream_mean_seconds: f64,
    /// Trips upstream that failed (unreachable, timed out, 5xx; larder's own 502/504).
    pub upstream_errors: u64,
    /// upstream_errors / upstream_requests.
    pub error_rate: f64,
    /// Answers that went upstream and were not stored, by reason.
    pub not_stored: NotStored,
    /// In a dry run (`cache.dry_run`): requests the cache would have answered itself...
    pub would_hit: u64,
    /// ...and requests it would have sent upstream.
    pub would_miss: u64,
    /// would_hit / (would_hit + would_miss).
    pub would_hit_ratio: f64,
}

/// Answers not stored, by reason (serialised as a map of the reasons seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotStored(pub [u64; NoCacheReason::ALL.len()]);

impl Default for NotStored {
    fn default() -> Self {
        NotStored([0; NoCacheReason::ALL.len()])
    }
}

impl NotStored {
    /// The reasons seen, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (NoCacheReason, u64)> + '_ {
        NoCacheReason::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
    }
}

impl Serialize for NotStored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (reason, n) in self.iter() {
            map.serialize_entry(reason.as_str(), &n)?;
        }
        map.end()
    }
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
        } else if let Some(reason) = status.detail.filter(|_| status.outcome != Outcome::Hit) {
            self.not_stored[reason.slot()].fetch_add(1, Relaxed);
        }
    }

    /// Counts a dry-run request: whether the cache would have answered it.
    pub fn record_dry_run(&self, would_hit: bool) {
        let c = if would_hit {
            &self.would_hit
        } else {
            &self.would_miss
        };
        c.fetch_add(1, Relaxed);
    }

    /// Counts an answer given without going upstream, of `bytes` decoded body bytes.
    pub fn record_avoided(&self, bytes: u64) {
        self.avoided.fetch_add(1, Relaxed);
        self.bytes_avoided.fetch_add(bytes, Relaxed);
    }

    /// Counts a trip upstream that took `us` microseconds and answered `status`.
    pub fn record_upstream(&self, us: u64, status: http::StatusCode) {
        self.upstream.observe_us(us);
        if status.is_server_error() {
            self.upstream_errors.fetch_add(1, Relaxed);
        }
    }

    /// The upstream latency histogram.
    pub fn upstream_histogram(&self) -> HistogramSnapshot {
        self.upstream.snapshot()
    }

    /// The current values.
    pub fn snapshot(&self) -> CountersSnapshot {
        let upstream = self.upstream.snapshot();
        let mut s = CountersSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale: self.stale.load(Relaxed),
            bypass: self.bypass.load(Relaxed),
            collapsed: self.collapsed.load(Relaxed),
            stored: self.stored.load(Relaxed),
            hit_ratio: 0.0,
            requests_avoided: self.avoided.load(Relaxed),
            bytes_not_fetched: self.bytes_avoided.load(Relaxed),
            upstream_requests: upstream.count,
            upstream_mean_seconds: if upstream.count == 0 {
                0.0
            } else {
                upstream.sum_us as f64 / upstream.count as f64 / 1e6
            },
            upstream_errors: self.upstream_errors.load(Relaxed),
            error_rate: 0.0,
            not_stored: NotStored(std::array::from_fn(|i| self.not_stored[i].load(Relaxed))),
            would_hit: self.would_hit.load(Relaxed),
            would_miss: self.would_miss.load(Relaxed),
            would_hit_ratio: 0.0,
        };
        s.hit_ratio = ratio(s.hits + s.stale, s.hits + s.stale + s.misses);
        s.error_rate = ratio(s.upstream_errors, s.upstream_requests);
        s.would_hit_ratio = ratio(s.would_hit, s.would_hit + s.would_miss);
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
            &self.avoided,
            &self.bytes_avoided,
            &self.upstream_errors,
            &self.would_hit,
            &self.would_miss,
        ]
        .into_iter()
        .chain(&self.not_stored)
        {
            c.store(0, Relaxed);
        }
        self.upstream.reset();
        self.alerting.store(false, Relaxed);
    }

    /// Sets the hit-ratio alert state for the window that just ended.
    pub fn set_alert(&self, alerting: bool, ratio: f64) {
        self.alerting.store(alerting, Relaxed);
        self.window_ratio.store(ratio.to_bits(), Relaxed);
    }

    /// Whether the hit-ratio alert is raised, and the last window's ratio.
    pub fn alert(&self) -> (bool, f64) {
        (
            self.alerting.load(Relaxed),
            f64::from_bits(self.window_ratio.load(Relaxed)),
        )
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
        let upstream_requests = self.upstream_requests + o.upstream_requests;
        let mut s = CountersSnapshot {
            hits: self.hits + o.hits,
            misses: self.misses + o.misses,
            stale: self.stale + o.stale,
            bypass: self.bypass + o.bypass,
            collapsed: self.collapsed + o.collapsed,
            stored: self.stored + o.stored,
            hit_ratio: 0.0,
            requests_avoided: self.requests_avoided + o.requests_avoided,
            bytes_not_fetched: self.bytes_not_fetched + o.bytes_not_fetched,
            upstream_requests,
            upstream_mean_seconds: if upstream_requests == 0 {
                0.0
            } else {
                (self.upstream_mean_seconds * self.upstream_requests as f64
                    + o.upstream_mean_seconds * o.upstream_requests as f64)
                    / upstream_requests as f64
            },
            upstream_errors: self.upstream_errors + o.upstream_errors,
            error_rate: 0.0,
            not_stored: NotStored(std::array::from_fn(|i| {
                self.not_stored.0[i] + o.not_stored.0[i]
            })),
            would_hit: self.would_hit + o.would_hit,
            would_miss: self.would_miss + o.would_miss,
            would_hit_ratio: 0.0,
        };
        s.hit_ratio = ratio(s.hits + s.stale, s.hits + s.stale + s.misses);
        s.error_rate = ratio(s.upstream_errors, s.upstream_requests);
        s.would_hit_ratio = ratio(s.would_hit, s.would_hit + s.would_miss);
        s
    }
}

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
}

/// How a trip upstream failed (the `kind` label of `larder_upstream_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpstreamError {
    /// It could not be reached (refused, reset, no route).
    Connect,
    /// It did not answer in time.
    Timeout,
    /// The TLS handshake failed (an untrusted or mismatched certificate, say).
    Tls,
    /// It answered 5xx.
    Status5xx,
    /// Its body failed mid-way.
    Body,
}

impl UpstreamError {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Tls => "tls",
            UpstreamError::Status5xx => "status_5xx",
            UpstreamError::Body => "body",
        }
    }
}

/// Upstream failures by upstream name and kind (labels stay bounded: configured names,
/// five kinds), and each upstream's recent trips and failures, for `/health`.
#[derive(Clone, Default, Debug)]
pub struct UpstreamErrors(Arc<UpstreamCounts>);

#[derive(Default, Debug)]
struct UpstreamCounts {
    by_kind: Mutex<std::collections::BTreeMap<(String, UpstreamError), u64>>,
    recent: Mutex<std::collections::BTreeMap<String, Window>>,
}

/// Trips and failures in the current and the previous window of [`Window::SPAN_MS`].
#[derive(Default, Debug)]
struct Window {
    start: u64,
    trips: [u64; 2],
    failed: [u64; 2],
}

impl Window {
    const SPAN_MS: u64 = 30_000;

    /// Moves the window on to `now`.
    fn roll(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.start);
        if elapsed < Window::SPAN_MS {
            return;
        }
        if elapsed < 2 * Window::SPAN_MS {
            self.trips = [0, self.trips[0]];
            self.failed = [0, self.failed[0]];
        } else {
            self.trips = [0; 2];
            self.failed = [0; 2];
        }
        self.start = now - elapsed % Window::SPAN_MS;
    }
}

/// One upstream's trips and failures over the last 30 to 60 seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentTrips {
    /// The upstream's name.
    pub upstream: String,
    /// Trips (answers, including larder's own 502/504).
    pub trips: u64,
    /// Those that failed: unreachable, timed out, TLS, 5xx.
    pub failed: u64,
}

impl UpstreamErrors {
    /// Counts one failure.
    pub fn record(&self, upstream: &str, kind: UpstreamError) {
        let mut map = self.0.by_kind.lock();
        match map.get_mut(&(upstream.to_string(), kind)) {
            Some(n) => *n += 1,
            None => {
                map.insert((upstream.to_string(), kind), 1);
            }
        }
    }

    /// Counts one trip and whether it failed.
    pub fn record_trip(&self, upstream: &str, failed: bool) {
        let now = crate::policy::now_ms();
        let mut recent = self.0.recent.lock();
        let w = match recent.get_mut(upstream) {
            Some(w) => w,
            None => recent.entry(upstream.to_string()).or_insert(Window {
                start: now,
                ..Window::default()
            }),
        };
        w.roll(now);
        w.trips[0] += 1;
        w.failed[0] += u64::from(failed);
    }

    /// Each upstream's trips and failures over the last 30 to 60 seconds.
    pub fn recent(&self) -> Vec<RecentTrips> {
        let now = crate::policy::now_ms();
        self.0
            .recent
            .lock()
            .iter_mut()
            .map(|(name, w)| {
                w.roll(now);
                RecentTrips {
                    upstream: name.clone(),
                    trips: w.trips.iter().sum(),
                    failed: w.failed.iter().sum(),
                }
            })
            .collect()
    }

    /// Every count so far.
    pub fn snapshot(&self) -> Vec<(String, UpstreamError, u64)> {
        self.0
            .by_kind
            .lock()
            .iter()
            .map(|((u, k), n)| (u.clone(), *k, *n))
            .collect()
    }
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
    }
}

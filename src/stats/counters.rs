//! Request counters of one rule, in atomics: counting costs the hit path no lock and no
//! allocation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::{Histogram, HistogramSnapshot};
use crate::status::{CacheStatus, NoCacheReason, Outcome};

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
    /// Trips upstream for a key whose entry had expired (asked for again after its ttl).
    after_expiry: AtomicU64,
    /// How the query parameters of the first misses vary (for advice).
    queries: parking_lot::Mutex<QuerySketch>,
}

/// The query parameters of a rule's first misses: per name, in how many misses it
/// appeared and how many distinct values it had (up to 64 kept).
#[derive(Debug, Default)]
struct QuerySketch {
    misses: u64,
    params: std::collections::HashMap<String, (u64, std::collections::HashSet<u64>)>,
}

/// Misses looked at for the query sketch.
const SKETCHED: u64 = 500;

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
        if status.outcome == Outcome::Miss && status.fwd == Some(crate::status::Fwd::Stale) {
            self.after_expiry.fetch_add(1, Relaxed);
        }
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

    /// Notes a miss's query (the first few hundred misses only: a bounded sketch).
    pub fn record_miss_query(&self, query: &str) {
        let mut q = self.queries.lock();
        if q.misses >= SKETCHED {
            return;
        }
        q.misses += 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name.len() > 64 || (q.params.len() >= 32 && !q.params.contains_key(name)) {
                continue;
            }
            let (seen, values) = q.params.entry(name.to_string()).or_default();
            *seen += 1;
            if values.len() < 64 {
                use std::hash::{BuildHasher, BuildHasherDefault};
                let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                    .hash_one(value);
                values.insert(h);
            }
        }
    }

    /// The query parameter that differs the most across misses: its name, in how many of
    /// the sketched misses it appeared, its distinct values (up to 64), and the misses
    /// sketched.
    pub fn query_spread(&self) -> Option<(String, u64, u64, u64)> {
        let q = self.queries.lock();
        q.params
            .iter()
            .map(|(n, (seen, values))| (n.clone(), *seen, values.len() as u64, q.misses))
            .max_by_key(|(_, seen, distinct, _)| (*distinct, *seen))
    }

    /// Trips upstream for keys whose entry had expired.
    pub fn after_expiry(&self) -> u64 {
        self.after_expiry.load(Relaxed)
    }

    /// Counts an answer that was streamed as stored but turned out not to be storable
    /// (an LLM stream without its terminal event, say).
    pub fn record_not_stored(&self, reason: NoCacheReason) {
        let _ = self
            .stored
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        self.not_stored[reason.slot()].fetch_add(1, Relaxed);
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
            &self.after_expiry,
        ]
        .into_iter()
        .chain(&self.not_stored)
        {
            c.store(0, Relaxed);
        }
        self.upstream.reset();
        self.alerting.store(false, Relaxed);
        *self.queries.lock() = QuerySketch::default();
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

//! Upstream failures by upstream and kind, and each upstream's recent trips (for `/health`).

use std::sync::Arc;

use parking_lot::Mutex;

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
        let now = crate::time::now_ms();
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
        let now = crate::time::now_ms();
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

//! A metered upstream: it records when each request arrived and the most it held at once,
//! takes a while to answer, and can be told to refuse with `429`/`503` and `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{full, ok, response, Origin};

#[derive(Default)]
struct Meter {
    arrivals: Mutex<Vec<Instant>>,
    in_flight: AtomicU64,
    most: AtomicU64,
    refusal: Mutex<Option<(u16, String)>>,
}

/// The metered upstream.
pub struct Metered {
    pub origin: Origin,
    meter: Arc<Meter>,
}

impl Metered {
    /// Starts one that takes `hold` to answer each request (a body naming its path,
    /// fresh for a minute).
    pub async fn start(hold: Duration) -> Metered {
        let meter = Arc::new(Meter::default());
        let m = meter.clone();
        let origin = Origin::start(move |seen| {
            let m = m.clone();
            async move {
                m.arrivals.lock().unwrap().push(Instant::now());
                let now = m.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                m.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                m.in_flight.fetch_sub(1, Ordering::SeqCst);
                let refusal = m.refusal.lock().unwrap().clone();
                match refusal {
                    Some((status, retry_after)) if retry_after.is_empty() => {
                        response(status, &[("content-type", "text/plain")], full("slow down"))
                    }
                    Some((status, retry_after)) => response(
                        status,
                        &[
                            ("content-type", "text/plain"),
                            ("retry-after", &retry_after),
                        ],
                        full("slow down"),
                    ),
                    None => ok(
                        &[("cache-control", "max-age=60")],
                        format!("body of {}", seen.uri.path()),
                    ),
                }
            }
        })
        .await;
        Metered { origin, meter }
    }

    /// From now on, answers `status` with this `Retry-After` ("" for none).
    pub fn refuse(&self, status: u16, retry_after: &str) {
        *self.meter.refusal.lock().unwrap() = Some((status, retry_after.to_string()));
    }

    /// From now on, answers normally.
    pub fn answer(&self) {
        *self.meter.refusal.lock().unwrap() = None;
    }

    /// Requests that arrived.
    pub fn count(&self) -> usize {
        self.meter.arrivals.lock().unwrap().len()
    }

    /// The gaps between consecutive arrivals.
    pub fn gaps(&self) -> Vec<Duration> {
        let mut at = self.meter.arrivals.lock().unwrap().clone();
        at.sort();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The most requests it held at once.
    pub fn most_in_flight(&self) -> u64 {
        self.meter.most.load(Ordering::SeqCst)
    }
}

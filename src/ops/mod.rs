//! Operating a cache: counters and reports, Prometheus metrics, the access log, hit-ratio
//! alerts, warming, hot reload — and [`Tasks`], the one place the background work is
//! started and stopped.

pub mod access;
pub mod advice;
pub(crate) mod alerts;
pub mod health;
pub mod metrics;
pub mod report;

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use tokio::task::JoinHandle;

use crate::cache::{Cache, WeakCache};
use crate::config::Config;
use crate::time::now_ms;

/// The background tasks of one cache. Each holds the cache weakly and ends when it is
/// gone; [`Tasks::shutdown`] stops them at once.
#[derive(Debug, Default)]
pub struct Tasks {
    handles: Vec<JoinHandle<()>>,
}

/// Runs `step` every `every` (read afresh each time) while the cache lives.
fn every<P, S>(
    handle: &tokio::runtime::Handle,
    cache: WeakCache,
    period: P,
    mut step: S,
) -> JoinHandle<()>
where
    P: Fn(&Cache) -> Duration + Send + 'static,
    S: FnMut(&Cache) + Send + 'static,
{
    handle.spawn(async move {
        loop {
            let wait = match cache.upgrade() {
                Some(c) => period(&c),
                None => return,
            };
            tokio::time::sleep(wait).await;
            let Some(c) = cache.upgrade() else { return };
            step(&c);
        }
    })
}

impl Tasks {
    /// Starts what every cache runs: dropping expired entries every few seconds, and the
    /// hit-ratio alerts once per `cache.alert_window`. Without a Tokio runtime, nothing.
    pub fn start(cache: &Cache) -> Tasks {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Tasks::default();
        };
        let weak = cache.downgrade();
        let sweeper = every(
            &handle,
            weak.clone(),
            |_| Duration::from_secs(5),
            |c| {
                // Off the async workers: a purge's entries may be many.
                let c = c.clone();
                tokio::task::spawn_blocking(move || c.memory_store().sweep(now_ms()));
            },
        );
        let hot = every(
            &handle,
            weak.clone(),
            |_| Duration::from_secs(30),
            |c| c.sample_hot(),
        );
        let inventory = every(
            &handle,
            weak.clone(),
            |_| Duration::from_secs(15),
            |c| {
                c.take_inventory();
            },
        );
        let history = handle.spawn({
            let weak = weak.clone();
            async move {
                // What was kept before the restart comes first (once a tier below answers).
                if let Some(c) = weak.upgrade() {
                    for tier in c.tiers().lower() {
                        tier.wait_ready(Duration::from_secs(5)).await;
                    }
                    c.restore_history().await;
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let Some(c) = weak.upgrade() else { return };
                    c.keep_history().await;
                }
            }
        });
        let mut previous: HashMap<String, (u64, u64)> = HashMap::new();
        let alerts = every(
            &handle,
            weak,
            |c| c.settings().config.cache.alert_window,
            move |c| alerts::check_hit_ratios(c, &mut previous),
        );
        Tasks {
            handles: vec![sweeper, hot, alerts, history, inventory],
        }
    }

    /// Adds what the sidecar runs besides: `[warm]` at start-up and on its schedule (read
    /// afresh each time, so a reload applies), and a reload on SIGHUP, refused unless
    /// `check` (what `larder serve` checks at start) passes.
    pub fn start_sidecar(&mut self, cache: &Cache, check: fn(&Config) -> Result<(), crate::Error>) {
        self.handles
            .push(tokio::spawn(warm_on_schedule(cache.clone())));
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hangups) = signal(SignalKind::hangup()) {
            let cache = cache.clone();
            self.handles.push(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    // The outcome (and any error, as file:line:col) is logged by reload_file.
                    let _ = cache.reload_file_checked(check);
                }
            }));
        }
    }

    /// Stops every task.
    pub fn shutdown(self) {
        for h in self.handles {
            h.abort();
        }
    }
}

async fn warm_on_schedule(cache: Cache) {
    // What was hot before the restart comes back first.
    cache.restore_hot().await;
    if let Some(w) = cache.warm_top().await {
        tracing::info!(
            warmed = w.warmed,
            failed = w.failed.len(),
            "warmed the hottest entries"
        );
    }
    let mut first = true;
    loop {
        let warm = cache.settings().config.warm.clone();
        if (!first || warm.at_start) && !warm.urls.is_empty() {
            let mut headers = HeaderMap::new();
            for (n, v) in &warm.headers {
                headers.append(n.clone(), v.clone());
            }
            match cache.warm(&warm.urls, &headers, warm.concurrency).await {
                Ok(w) if w.failed.is_empty() => tracing::info!(warmed = w.warmed, "warmed"),
                Ok(w) => {
                    tracing::warn!(warmed = w.warmed, failed = ?w.failed, "warming: some URLs failed")
                }
                Err(e) => tracing::warn!(error = %e, "warming failed"),
            }
        }
        first = false;
        match warm.every {
            Some(every) => tokio::time::sleep(every).await,
            // Look again later in case a reload adds a schedule.
            None => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    }
}

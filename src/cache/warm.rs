//! Warming: URLs fetched through the cache like a client would (start-up, schedule,
//! `/admin/warm`), and related paths prefetched after a miss.

use std::sync::Arc;

use serde::Serialize;

use super::Cache;

/// The result of a warming run.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Warmed {
    /// URLs fetched with a 2xx.
    pub warmed: u64,
    /// URLs that failed, with why.
    pub failed: Vec<String>,
}

impl Cache {
    /// Fetches `urls` through the cache with `headers`, `concurrency` at a time.
    pub async fn warm(
        &self,
        urls: &[String],
        headers: &http::HeaderMap,
        concurrency: usize,
    ) -> Result<Warmed, crate::Error> {
        let warmer = self.warmer().ok_or(crate::Error::NoWarmer)?;
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let settings = self.settings();
        // The budget: at most `[warm] rate` requests a second to each upstream, shared by
        // every warming run (start-up, schedule, re-warms, after a purge).
        let gap = std::time::Duration::from_secs_f64(1.0 / settings.config.warm.rate);
        for url in urls {
            let path = url.split('?').next().unwrap_or("");
            let upstream = settings
                .rules
                .find(&http::Method::GET, &crate::key::normalize_percent(path))
                .and_then(|r| r.upstream.clone());
            let at = {
                let now = tokio::time::Instant::now();
                let mut slots = self.inner.warm_slots.lock();
                let slot = slots.entry(upstream).or_insert(now);
                let at = (*slot).max(now);
                *slot = at + gap;
                at
            };
            let (warmer, limit, url, headers) =
                (warmer.clone(), limit.clone(), url.clone(), headers.clone());
            tasks.spawn(async move {
                tokio::time::sleep_until(at).await;
                let _permit = limit.acquire_owned().await;
                let result = warmer.get(url.clone(), headers).await;
                (url, result)
            });
        }
        let mut out = Warmed::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((_, Ok(status))) if (200..300).contains(&status) => out.warmed += 1,
                Ok((url, Ok(status))) => out.failed.push(format!("{url}: status {status}")),
                Ok((url, Err(e))) => out.failed.push(format!("{url}: {e}")),
                Err(e) => out.failed.push(format!("warming task failed: {e}")),
            }
        }
        out.failed.sort();
        self.inner
            .stats
            .record_warm(out.warmed, out.failed.len() as u64);
        Ok(out)
    }

    /// Fetches related paths in the background (a rule's `prefetch`), with the headers
    /// that identify the requester, so per-user entries fill for the right user.
    pub(crate) fn prefetch(&self, paths: Vec<String>, headers: http::HeaderMap) {
        let Some(warmer) = self.warmer() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for path in paths {
                if let Err(e) = warmer.get(path.clone(), headers.clone()).await {
                    tracing::debug!(path, error = e, "prefetch failed");
                }
            }
        });
    }
}

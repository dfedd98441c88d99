//! Warming from traffic: the memory store's hit counters sampled into the hot list (shared
//! entries only), the list kept in the tiers below memory that last (the disk tier, else
//! Redis) so it survives restarts, and its top re-fetched at start-up and after a purge.

use std::collections::HashMap;

use super::{Cache, Settings, Warmed};
use crate::store::hot::{Hot, CAPACITY};

/// The rule a URL's GET falls under if its entries are shared and fetched by a plain GET:
/// not `per_user`, not keyed by a body (those are never warmed without their user or
/// body); no rule at all only when no rule (for any method) matches the path.
fn shared_rule(s: &Settings, url: &str) -> Option<String> {
    let path = crate::key::normalize_percent(url.split('?').next().unwrap_or(""));
    match s.rules.find(&http::Method::GET, &path) {
        Some(r) if !r.per_user && !r.key_body && r.caches(&http::Method::GET) => {
            Some(r.name.clone())
        }
        Some(_) => None,
        None if s
            .rules
            .rules()
            .iter()
            .any(|r| r.pattern.captures(&path).is_some()) =>
        {
            None
        }
        None => Some(crate::stats::UNMATCHED.to_string()),
    }
}

/// The name the hot list is kept under in the tiers below memory.
const KEPT: &str = "hot";

impl Cache {
    /// Samples the memory store's hit counters into the hot list (shared entries only:
    /// never one keyed to a user) and keeps the list in the tiers below memory.
    pub fn sample_hot(&self) {
        let settings = self.settings();
        // One row per URL: variants (Vary, hosts) of one URL add up.
        let mut by_url: HashMap<String, (String, u32)> = HashMap::new();
        for (url, hits, _) in self.inner.tiers.memory().top(2 * CAPACITY) {
            let Some(rule) = shared_rule(&settings, &url) else {
                continue;
            };
            let row = by_url.entry(url).or_insert((rule, 0));
            row.1 = row.1.saturating_add(hits);
        }
        let sample: Vec<(String, String, u32)> = by_url
            .into_iter()
            .map(|(url, (rule, hits))| (url, rule, hits))
            .collect();
        self.inner.hot.observe(&sample);
        let cache = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { cache.keep_hot().await });
        }
    }

    /// Keeps the hot list in the tiers below memory (for the next start).
    pub async fn keep_hot(&self) {
        let bytes = self.inner.hot.encode();
        for tier in self.tiers().lower() {
            tier.keep(KEPT, bytes.clone()).await;
        }
    }

    /// The hottest shared entries.
    pub fn hot(&self, n: usize) -> Vec<Hot> {
        self.inner.hot.top(n)
    }

    /// Loads the hot list kept by an earlier run (from the first tier below memory that
    /// has one).
    pub async fn restore_hot(&self) {
        for tier in self.tiers().lower() {
            if let Some(bytes) = tier.kept(KEPT).await {
                self.inner.hot.load(&bytes);
                return;
            }
        }
    }

    /// Fetches the `[warm] top` hottest shared entries through the cache (start-up, after
    /// a purge), within the warming budget.
    pub async fn warm_top(&self) -> Option<Warmed> {
        let warm = self.settings().config.warm.clone();
        if warm.top == 0 {
            return None;
        }
        // Re-checked against the rules in force: a kept list may predate a reload.
        let settings = self.settings();
        let urls: Vec<String> = self
            .hot(warm.top)
            .into_iter()
            .filter(|h| shared_rule(&settings, &h.url).is_some())
            .map(|h| h.url)
            .collect();
        if urls.is_empty() {
            return None;
        }
        self.warm(&urls, &http::HeaderMap::new(), warm.concurrency)
            .await
            .ok()
    }
}

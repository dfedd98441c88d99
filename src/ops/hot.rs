//! Warming from traffic: a bounded, decaying list of the hottest shared entries, built by
//! sampling the memory store's hit counters (nothing on the hit path), kept in the tier
//! below memory that lasts (the disk tier, else Redis) so it survives restarts, and
//! re-fetched — the top `[warm] top` — at start-up and after a purge.
//!
//! ```
//! use larder::ops::hot::HotList;
//! let hot = HotList::default();
//! hot.observe(&[("/videos/1".into(), "video".into(), 40), ("/videos/2".into(), "video".into(), 3)]);
//! hot.observe(&[("/videos/1".into(), "video".into(), 45), ("/videos/2".into(), "video".into(), 30)]);
//! let top = hot.top(1);
//! assert_eq!(top[0].url, "/videos/1"); // 45 hits in all beats 30
//! let saved = hot.encode();
//! let restored = HotList::default();
//! restored.load(&saved);
//! assert_eq!(restored.top(2).len(), 2);
//! ```

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How many entries the list holds at most.
pub const CAPACITY: usize = 1024;
/// Each sample multiplies every score by this (a half-life of about ten samples).
const DECAY: f64 = 0.933;
/// Scores below this are forgotten.
const FLOOR: f64 = 0.05;

/// One hot entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hot {
    /// Its URL (`path?query`).
    pub url: String,
    /// The rule it falls under.
    pub rule: String,
    /// Its decaying score: recent hits count most.
    pub score: f64,
}

#[derive(Default)]
struct Tracked {
    rule: String,
    score: f64,
    /// The entry's hit counter at the last sample.
    seen: u32,
}

/// The hot list (see the [module docs](self)).
#[derive(Default)]
pub struct HotList {
    entries: Mutex<HashMap<String, Tracked>>,
}

impl std::fmt::Debug for HotList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotList")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl HotList {
    /// Takes one sample: `(url, rule, hits so far)` of shared entries. Every score decays;
    /// each entry gains the hits since the last sample (all of them if its counter
    /// restarted: it was stored anew).
    pub fn observe(&self, sample: &[(String, String, u32)]) {
        let mut entries = self.entries.lock();
        for t in entries.values_mut() {
            t.score *= DECAY;
        }
        for (url, rule, hits) in sample {
            let t = entries.entry(url.clone()).or_default();
            let gained = if *hits >= t.seen {
                hits - t.seen
            } else {
                *hits
            };
            t.score += f64::from(gained);
            t.seen = *hits;
            t.rule.clone_from(rule);
        }
        entries.retain(|_, t| t.score >= FLOOR);
        if entries.len() > CAPACITY {
            let mut scores: Vec<f64> = entries.values().map(|t| t.score).collect();
            scores.sort_by(|a, b| b.total_cmp(a));
            let cut = scores[CAPACITY - 1];
            entries.retain(|_, t| t.score >= cut);
        }
    }

    /// The `n` hottest, hottest first.
    pub fn top(&self, n: usize) -> Vec<Hot> {
        let mut all: Vec<Hot> = self
            .entries
            .lock()
            .iter()
            .map(|(url, t)| Hot {
                url: url.clone(),
                rule: t.rule.clone(),
                score: (t.score * 100.0).round() / 100.0,
            })
            .collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.url.cmp(&b.url)));
        all.truncate(n);
        all
    }

    /// The list as bytes, to keep across restarts.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.top(CAPACITY)).unwrap_or_default()
    }

    /// Adds a kept list (scores add to what is tracked; damaged bytes are ignored).
    pub fn load(&self, bytes: &[u8]) {
        let Ok(list) = serde_json::from_slice::<Vec<Hot>>(bytes) else {
            return;
        };
        let mut entries = self.entries.lock();
        for hot in list.into_iter().take(CAPACITY) {
            if !hot.score.is_finite() || hot.score <= 0.0 || !hot.url.starts_with('/') {
                continue;
            }
            let t = entries.entry(hot.url).or_default();
            t.score += hot.score;
            t.rule = hot.rule;
        }
    }
}

use crate::cache::{Cache, Settings};

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
        None => Some(crate::ops::stats::UNMATCHED.to_string()),
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
    pub async fn warm_top(&self) -> Option<crate::ops::warm::Warmed> {
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

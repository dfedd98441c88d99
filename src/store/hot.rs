//! The hot list: a bounded, decaying list of the hottest shared entries, fed by samples
//! of the memory store's hit counters (nothing on the hit path) and kept as bytes in a
//! tier below memory across restarts. The cache samples it and warms its top
//! (`[warm] top`) at start-up and after a purge.
//!
//! ```
//! use larder::store::hot::HotList;
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

//! What each rule holds: entries and bytes per rule in memory and on disk, counted by a
//! walk of the tiers' own directories off the request path (every 15 s), so the figures
//! cost the hit path nothing. Labels stay bounded: rule names, `(no rule)`, and the tiers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Cache;
use crate::stats::UNMATCHED;

/// Entries and bytes.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Held {
    /// Entries.
    pub entries: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// Per rule, per tier (`memory`, `disk`).
pub type Inventory = BTreeMap<String, BTreeMap<&'static str, Held>>;

impl Cache {
    /// Walks memory and the disk tier's directory and counts what each rule holds.
    pub fn take_inventory(&self) -> Inventory {
        let settings = self.settings();
        let mut out: Inventory = BTreeMap::new();
        let rule_of = |url: &str| -> String {
            let path = url.split('?').next().unwrap_or("");
            settings
                .rules
                .find(&http::Method::GET, path)
                .or_else(|| settings.rules.find(&http::Method::POST, path))
                .map_or_else(|| UNMATCHED.to_string(), |r| r.name.clone())
        };
        let mut count = |tier: &'static str, url: &str, size: u64| {
            let held = out
                .entry(rule_of(url))
                .or_default()
                .entry(tier)
                .or_default();
            held.entries += 1;
            held.bytes += size;
        };
        self.tiers()
            .memory()
            .each(&mut |url, size| count("memory", url, size));
        for tier in self.tiers().lower() {
            let name = tier.section();
            tier.each_entry(&mut |url, size| count(name, url, size));
        }
        *self.inner.inventory.lock() = (crate::time::now_ms(), out.clone());
        out
    }

    /// What each rule holds: the last count, or a new one if that is older than 5 s.
    pub fn inventory(&self) -> Inventory {
        let (at, last) = self.inner.inventory.lock().clone();
        if crate::time::now_ms().saturating_sub(at) > 5_000 {
            return self.take_inventory();
        }
        last
    }
}

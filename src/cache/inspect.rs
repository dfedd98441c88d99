//! Looking inside: one URL's entries in every tier (`/admin/entry`) and pages of what is
//! cached (`/admin/keys`). Neither holds a credential or a user hash: entries are found by
//! their URL's tag and, for a user, by the tags that user's identity hashes to.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::Cache;
use crate::entry::Entry;
use crate::key::{self, CacheKey};
use crate::rules::Rule;
use crate::time::now_ms;

/// The most entries of one URL read from one tier.
const PER_URL: usize = 64;

/// Why an inspection cannot be answered as asked.
#[derive(Debug, PartialEq, Eq)]
pub enum InspectError {
    /// The URL's rule keys entries per user, and no user was given.
    NeedsUser(String),
}

impl std::fmt::Display for InspectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectError::NeedsUser(rule) => {
                write!(f, "rule {rule} keys its entries per user: add user_id")
            }
        }
    }
}

/// One row of a key listing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyRow {
    /// The normalised URL.
    pub url: String,
    /// The rule its path matches now (`null`: none).
    pub rule: Option<String>,
    /// `memory`, `disk` or `redis`.
    pub tier: &'static str,
    /// Bytes stored.
    pub size: u64,
    /// Seconds until it can be dropped.
    pub ttl: i64,
}

/// What the memory tier, then each tier below, is called in listings and cursors.
fn tier_names(cache: &Cache) -> Vec<&'static str> {
    let mut names = vec!["memory"];
    names.extend(cache.tiers().lower().iter().map(|t| t.section()));
    names
}

impl Cache {
    /// What every tier holds for `url` (`/path?query`): per tier, whether an entry is
    /// there and what it is. `None` when it is cached nowhere. `user_id` picks one user's
    /// entries of a `per_user` rule (it is required there).
    pub async fn inspect(
        &self,
        url: &str,
        method: &http::Method,
        user_id: Option<&str>,
    ) -> Result<Option<Value>, InspectError> {
        let settings = self.settings();
        let path = key::normalize_percent(url.split('?').next().unwrap_or(url)).into_owned();
        let rule = settings.rules.find(method, &path);
        if let (Some(r), None) = (rule, user_id) {
            if r.per_user {
                return Err(InspectError::NeedsUser(r.name.clone()));
            }
        }
        let users: Vec<u64> = user_id
            .map(|id| {
                settings
                    .users
                    .hash_identity(id)
                    .iter()
                    .map(key::user_tag)
                    .collect()
            })
            .unwrap_or_default();
        let tag = settings.url_tag(url);
        let mine = |e: &Arc<Entry>| users.is_empty() || e.tags().any(|t| users.contains(&t));
        let mut tiers = serde_json::Map::new();
        let mut anywhere = false;
        let memory: Vec<_> = self.tiers().memory().tagged(tag, PER_URL);
        let found = |entries: Vec<(CacheKey, Arc<Entry>)>| -> Vec<Arc<Entry>> {
            entries
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| mine(e))
                .collect()
        };
        let memory = found(memory);
        anywhere |= memory.iter().any(|e| !e.is_vary_marker());
        tiers.insert("memory".into(), describe(&memory, rule, &path, true));
        for tier in self.tiers().lower() {
            let below = found(tier.tagged(tag, PER_URL).await);
            anywhere |= below.iter().any(|e| !e.is_vary_marker());
            tiers.insert(tier.section().into(), describe(&below, rule, &path, false));
        }
        if !anywhere {
            return Ok(None);
        }
        Ok(Some(json!({
            "url": url,
            "method": method.as_str(),
            "rule": rule.map(|r| r.name.clone()),
            "tiers": tiers,
        })))
    }

    /// A page of what is cached: up to `limit` entries from `cursor` (memory, then each
    /// tier below), those whose URL starts with `prefix` and whose path's rule is `rule`.
    /// Returns the rows and the cursor of the next page (`None`: the last).
    pub async fn keys(
        &self,
        prefix: &str,
        rule: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> (Vec<KeyRow>, Option<String>) {
        let names = tier_names(self);
        let (mut at, mut inner) = match cursor.and_then(|c| c.split_once(':')) {
            Some((t, c)) => (
                names.iter().position(|n| *n == t).unwrap_or(names.len()),
                Some(c.to_string()),
            ),
            None => (0, None),
        };
        let settings = self.settings();
        let now = now_ms();
        let mut rows = Vec::new();
        // Pages are read until `limit` rows pass the filters, or ten pages were read.
        for _ in 0..10 {
            let Some(name) = names.get(at) else { break };
            let page = self.page_of(at, inner.as_deref(), limit).await;
            for l in page.entries {
                if !l.url.starts_with(prefix) {
                    continue;
                }
                let path = l.url.split('?').next().unwrap_or("");
                let matched = settings
                    .rules
                    .find(&http::Method::GET, path)
                    .or_else(|| settings.rules.find(&http::Method::POST, path));
                if rule.is_some_and(|r| matched.map(|m| m.name.as_str()) != Some(r)) {
                    continue;
                }
                rows.push(KeyRow {
                    url: l.url,
                    rule: matched.map(|m| m.name.clone()),
                    tier: name,
                    size: l.size,
                    ttl: (l.expires_at as i64 - now as i64) / 1000,
                });
            }
            match page.next {
                Some(next) => inner = Some(next),
                None => {
                    at += 1;
                    inner = None;
                }
            }
            if rows.len() >= limit {
                break;
            }
        }
        let next = names
            .get(at)
            .map(|t| format!("{t}:{}", inner.unwrap_or_default()));
        (rows, next)
    }

    async fn page_of(&self, at: usize, cursor: Option<&str>, limit: usize) -> crate::store::Page {
        let cursor = cursor.filter(|c| !c.is_empty());
        if at == 0 {
            let after = cursor.and_then(CacheKey::from_hex);
            let (entries, next) = self.tiers().memory().list(after, limit);
            return crate::store::Page {
                entries,
                next: next.map(|k| k.to_string()),
            };
        }
        match self.tiers().lower().get(at - 1) {
            Some(tier) => tier.list(cursor, limit).await,
            None => crate::store::Page::default(),
        }
    }
}

/// One tier's entries of a URL, as `/admin/entry` shows them.
fn describe(entries: &[Arc<Entry>], rule: Option<&Rule>, path: &str, counts_hits: bool) -> Value {
    let vary: Vec<String> = entries
        .iter()
        .filter(|e| e.is_vary_marker())
        .flat_map(|e| e.vary_names())
        .map(|n| n.to_string())
        .collect();
    let variants: Vec<&Arc<Entry>> = entries.iter().filter(|e| !e.is_vary_marker()).collect();
    let Some(e) = variants.first() else {
        return json!({ "present": false });
    };
    let now = now_ms();
    let f = e.freshness();
    json!({
        "present": true,
        "status": e.status().as_u16(),
        "stored_at": crate::time::rfc3339(e.response_time()),
        "age": e.age_ms(now) / 1000,
        "ttl": e.ttl_ms(now) / 1000,
        "stale_while_revalidate": f.stale_while_revalidate,
        "stale_if_error": f.stale_if_error,
        "stale_if_budget": f.stale_if_budget,
        "size": e.bytes().len(),
        "decoded_size": e.identity_len(),
        "encoding": if e.is_gzip() { "gzip" } else { "identity" },
        "tags": tag_names(e, rule, path),
        "variants": variants.len(),
        "vary": vary,
        "hits": counts_hits.then(|| variants.iter().map(|v| u64::from(v.hits())).sum::<u64>()),
    })
}

/// The rule's tags this entry carries, by name (other tags — the upstream's, the URL's,
/// a user's — are ids only and not shown).
fn tag_names(e: &Entry, rule: Option<&Rule>, path: &str) -> Vec<String> {
    let Some(r) = rule else { return Vec::new() };
    let caps = r.pattern.captures(path).unwrap_or_default();
    let carried: Vec<u64> = e.tags().collect();
    r.tags
        .iter()
        .map(|t| t.render(&caps))
        .filter(|name| carried.contains(&key::tag_id(name)))
        .collect()
}

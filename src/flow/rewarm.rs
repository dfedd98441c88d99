//! Re-warming after a mutation (`rewarm_on_invalidate`, `warm_created`): what a 2xx
//! mutation drops — the entries its invalidation names that belong to a re-warming rule, and
//! its own target — and the `Location` it created are fetched again through the cache, as a
//! client would, once the invalidation is applied. So the next poll after
//! `POST /jobs/7/approve` is a hit with the new state.
//!
//! A `per_user` rule's URLs are fetched with the mutating request's identity headers, so
//! only that user's entry is refilled; shared ones without any identity. The fetches are
//! ordinary fills: one that races a newer invalidation is not stored. The mutation's answer
//! waits for them at most [`WAIT`], after which they finish in the background.

use std::time::Duration;

use http::HeaderMap;

use crate::cache::{Cache, Settings};
use crate::key::normalize_percent;
use crate::store::Invalidation;

/// How long a mutation's answer waits for its re-warm.
pub(crate) const WAIT: Duration = Duration::from_secs(2);

/// URLs to fetch again after a mutation, by whether they are fetched as the mutating user.
#[derive(Default)]
pub(crate) struct Rewarm {
    as_user: Vec<String>,
    shared: Vec<String>,
}

impl Rewarm {
    /// What `what` is about to drop that a re-warming rule governs, plus `target` (the
    /// mutation's own URL) if its rule re-warms.
    pub(crate) fn planned(
        cache: &Cache,
        s: &Settings,
        what: &Invalidation,
        target: &str,
    ) -> Rewarm {
        let mut plan = Rewarm::default();
        if !s.rules.rules().iter().any(|r| r.rewarm_on_invalidate) {
            return plan;
        }
        let mut urls = cache.tiers().memory().urls_of(what);
        urls.push(target.to_string());
        for url in urls {
            plan.add(s, url, |r| r.rewarm_on_invalidate);
        }
        plan
    }

    /// Adds `url` if the rule its path matches for GET satisfies `wanted`.
    pub(crate) fn add(
        &mut self,
        s: &Settings,
        url: String,
        wanted: impl Fn(&crate::rules::Rule) -> bool,
    ) {
        let path = url.split('?').next().unwrap_or("");
        let Some(rule) = s.rules.find(&http::Method::GET, &normalize_percent(path)) else {
            return;
        };
        if !wanted(rule) || !rule.caches(&http::Method::GET) {
            return;
        }
        let list = if rule.per_user {
            &mut self.as_user
        } else {
            &mut self.shared
        };
        if !list.contains(&url) {
            list.push(url);
        }
    }

    /// Fetches the URLs through the cache; waits at most [`WAIT`].
    pub(crate) async fn run(self, cache: &Cache, identity: HeaderMap) {
        if self.as_user.is_empty() && self.shared.is_empty() {
            return;
        }
        let cache = cache.clone();
        let task = tokio::spawn(async move {
            let concurrency = cache.settings().config.warm.concurrency;
            if !self.as_user.is_empty() {
                let _ = cache.warm(&self.as_user, &identity, concurrency).await;
            }
            if !self.shared.is_empty() {
                let _ = cache
                    .warm(&self.shared, &HeaderMap::new(), concurrency)
                    .await;
            }
        });
        let _ = tokio::time::timeout(WAIT, task).await;
    }
}

//! Re-warming after a mutation (`rewarm_on_invalidate`, `warm_created`): what a 2xx
//! mutation drops — the entries its invalidation names that belong to a re-warming rule, and
//! its own target — and the `Location` it created are fetched again through the cache, as a
//! client would, once the invalidation is applied. So the next poll after
//! `POST /jobs/7/approve` is a hit with the new state.
//!
//! A `per_user` rule's URLs are fetched with the mutating request's identity headers, and
//! only those the mutating user had entries for, so only that user's entries are refilled;
//! shared ones without any identity. At most [`MOST`] URLs per mutation. The fetches are
//! ordinary fills: one that races a newer invalidation is not stored. The mutation's answer
//! waits for them at most [`WAIT`], after which they finish in the background.

use std::collections::HashSet;
use std::time::Duration;

use http::HeaderMap;

use crate::cache::{Cache, Settings};
use crate::key::{normalize_percent, user_tag, UserId};
use crate::store::Invalidation;

/// How long a mutation's answer waits for its re-warm.
pub(crate) const WAIT: Duration = Duration::from_secs(2);

/// The most URLs one mutation re-warms (a tag on thousands of entries must not turn one
/// POST into thousands of fetches).
pub(crate) const MOST: usize = 32;

/// URLs to fetch again after a mutation, by whether they are fetched as the mutating user.
#[derive(Default)]
pub(crate) struct Rewarm {
    as_user: Vec<String>,
    shared: Vec<String>,
}

impl Rewarm {
    /// What `what` is about to drop that a re-warming rule governs, plus `target` (the
    /// mutation's own URL) if its rule re-warms. A `per_user` entry counts only if it is
    /// `user`'s own: another user's URL is never fetched with this user's credentials.
    pub(crate) fn planned(
        cache: &Cache,
        s: &Settings,
        what: &Invalidation,
        target: &str,
        user: Option<UserId>,
    ) -> Rewarm {
        let mut plan = Rewarm::default();
        if !s.rules.rules().iter().any(|r| r.rewarm_on_invalidate) {
            return plan;
        }
        let memory = cache.tiers().memory();
        let own: HashSet<String> = user
            .map(|u| memory.urls_of(&Invalidation::Tags(vec![user_tag(&u)])))
            .unwrap_or_default()
            .into_iter()
            .collect();
        plan.add(s, target.to_string(), true, |r| r.rewarm_on_invalidate);
        for url in memory.urls_of(what) {
            let owned = own.contains(&url);
            plan.add(s, url, owned, |r| r.rewarm_on_invalidate);
        }
        plan
    }

    /// Adds `url` if the rule its path matches for GET satisfies `wanted` (a `per_user` one
    /// only if the URL is the mutating user's: `owned`), up to [`MOST`].
    pub(crate) fn add(
        &mut self,
        s: &Settings,
        url: String,
        owned: bool,
        wanted: impl Fn(&crate::rules::Rule) -> bool,
    ) {
        if self.as_user.len() + self.shared.len() >= MOST {
            return;
        }
        let path = url.split('?').next().unwrap_or("");
        let Some(rule) = s.rules.find(&http::Method::GET, &normalize_percent(path)) else {
            return;
        };
        if !wanted(rule) || !rule.caches(&http::Method::GET) || rule.key_body {
            return;
        }
        let list = match (rule.per_user, owned) {
            (true, true) => &mut self.as_user,
            (true, false) => return,
            (false, _) => &mut self.shared,
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

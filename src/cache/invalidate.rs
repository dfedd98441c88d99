//! Invalidation as the admin API, mutations and library users ask for it: by tag, URL,
//! prefix, user or everything, hard or soft, reaching every tier and every instance.

use super::Cache;
use crate::key;
use crate::store::Invalidation;

/// What to invalidate, as a user names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Entries carrying any of these tags.
    Tags(Vec<String>),
    /// Every entry of these URLs (`/path?query`): all methods, users, bodies and variants.
    Urls(Vec<String>),
    /// Every entry whose normalised URL starts with this prefix.
    Prefix(String),
    /// Every entry stored for the user with this identity: the value of the header or
    /// cookie the user came from, or the claim of a verified JWT (`user_id`), under
    /// whichever source it was found.
    User(String),
    /// Everything.
    All,
}

impl Cache {
    /// What `target` names, in the one invalidation model every tier applies.
    pub fn resolve(&self, target: &Target) -> Invalidation {
        match target {
            Target::Tags(tags) => Invalidation::Tags(tags.iter().map(|t| key::tag_id(t)).collect()),
            Target::Urls(urls) => {
                let settings = self.settings();
                Invalidation::Tags(urls.iter().map(|u| settings.url_tag(u)).collect())
            }
            Target::Prefix(p) => Invalidation::Prefix(key::normalize_percent(p).into_owned()),
            Target::User(identity) => Invalidation::Tags(
                self.settings()
                    .users
                    .hash_identity(identity)
                    .iter()
                    .map(key::user_tag)
                    .collect(),
            ),
            Target::All => Invalidation::All,
        }
    }

    /// Removes what `target` names (with `soft`, marks it stale instead, so it stays usable
    /// for revalidation and within its stale windows while it is refreshed). Returns how
    /// many entries it touched (with Redis: across every instance).
    ///
    /// If a lower tier is unavailable the invalidation applies to memory at once and is
    /// replayed there when it is back.
    pub async fn invalidate(&self, target: &Target, soft: bool) -> u64 {
        self.apply(&self.resolve(target), soft).await
    }

    /// Applies an invalidation to every tier and counts it.
    pub async fn apply(&self, what: &Invalidation, soft: bool) -> u64 {
        let n = self.inner.tiers.invalidate(what, soft).await;
        self.inner.stats.record_invalidated(n);
        n
    }

    /// Removes every entry carrying any of `tags`; returns how many.
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> u64 {
        let tags = tags.iter().map(|t| t.as_ref().to_string()).collect();
        self.invalidate(&Target::Tags(tags), false).await
    }

    /// Removes everything; returns how many entries.
    pub async fn purge(&self) -> u64 {
        self.invalidate(&Target::All, false).await
    }
}

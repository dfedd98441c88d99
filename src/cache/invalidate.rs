//! Invalidation as the admin API, mutations and library users ask for it: by tag, URL,
//! prefix, user or everything, hard or soft, reaching every tier and every instance.

use super::history::Source;
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
    /// Every entry whose path matches this glob: `*` one segment, `**` any number
    /// (`/videos/*/comments`).
    Pattern(String),
    /// Every entry carrying a tag that starts with this prefix, which ends in one of
    /// [`crate::key::TAG_PREFIX_ENDS`] (`job:`): entries carry their tags' prefixes, so
    /// this costs what one tag costs.
    TagPrefix(String),
    /// Only the entries every one of these names (`"match": "all"`).
    Every(Vec<Target>),
    /// The entries any of these names (several scopes in one call).
    Any(Vec<Target>),
    /// Everything.
    All,
}

impl Target {
    /// How the history names it: tags, URLs, prefixes and patterns as given, a user as a
    /// short hash of the hash it keys by (never the identity).
    pub fn describe(&self, cache: &Cache) -> String {
        match self {
            Target::Tags(ts) => format!("tags {}", ts.join(" ")),
            Target::Urls(us) => format!("urls {}", us.join(" ")),
            Target::Prefix(p) => format!("prefix {p}"),
            Target::Pattern(g) => format!("pattern {g}"),
            Target::TagPrefix(p) => format!("tag prefix {p}"),
            Target::User(id) => {
                let users = cache.settings().users.hash_identity(id);
                let short = users
                    .first()
                    .map(|u| format!("{:08x}", key::user_tag(u) >> 32))
                    .unwrap_or_default();
                format!("user {short}")
            }
            Target::Every(parts) => {
                let each: Vec<String> = parts.iter().map(|p| p.describe(cache)).collect();
                format!("all of ({})", each.join("; "))
            }
            Target::Any(parts) => {
                let each: Vec<String> = parts.iter().map(|p| p.describe(cache)).collect();
                each.join("; ")
            }
            Target::All => "everything".to_string(),
        }
    }

    /// Why this target cannot be applied as given, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match self {
            Target::Pattern(g) if !g.starts_with('/') => {
                Some(format!("pattern {g:?} must start with '/'"))
            }
            Target::Pattern(g) if g.matches('*').count() > 8 => {
                Some(format!("pattern {g:?} has too many '*'"))
            }
            Target::TagPrefix(p) if !p.ends_with(key::TAG_PREFIX_ENDS) => Some(format!(
                "tag_prefix {p:?} must end with one of {}",
                key::TAG_PREFIX_ENDS
                    .iter()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            Target::Every(parts) | Target::Any(parts) => parts.iter().find_map(Target::problem),
            _ => None,
        }
    }
}

/// What an invalidation did: entries touched, and which instances applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidated {
    /// Entries removed (or marked stale) — the largest count of any tier.
    pub entries: u64,
    /// Each tier's count (`memory`, `disk`, `redis`).
    pub per_tier: Vec<(&'static str, u64)>,
    /// The instances that applied it in time (this one first), when asked to wait.
    pub applied: Vec<String>,
    /// Live instances that did not apply it in time.
    pub missing: Vec<String>,
    /// Whether the fleet could be asked at all (Redis answered).
    pub fleet_answered: bool,
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
            Target::Pattern(g) => Invalidation::Pattern(key::normalize_percent(g).into_owned()),
            Target::TagPrefix(p) => Invalidation::Tags(vec![key::tag_prefix_id(p)]),
            Target::Every(parts) => {
                let mut all = Vec::new();
                for part in parts {
                    match self.resolve(part) {
                        Invalidation::Every(inner) => all.extend(inner),
                        Invalidation::All => {}
                        one => all.push(one),
                    }
                }
                match all.len() {
                    0 => Invalidation::All,
                    1 => all.remove(0),
                    _ => Invalidation::Every(all),
                }
            }
            Target::Any(parts) => {
                let mut any = Vec::new();
                for part in parts {
                    match self.resolve(part) {
                        Invalidation::All => return Invalidation::All,
                        Invalidation::Any(inner) => any.extend(inner),
                        one => any.push(one),
                    }
                }
                // Tags merge into one part; one part is itself.
                let (tags, mut rest): (Vec<_>, Vec<_>) = any
                    .into_iter()
                    .partition(|w| matches!(w, Invalidation::Tags(_)));
                let ids: Vec<u64> = tags
                    .into_iter()
                    .flat_map(|w| match w {
                        Invalidation::Tags(ts) => ts,
                        _ => Vec::new(),
                    })
                    .collect();
                if !ids.is_empty() {
                    rest.insert(0, Invalidation::Tags(ids));
                }
                match rest.len() {
                    0 => Invalidation::Tags(Vec::new()),
                    1 => rest.remove(0),
                    _ => Invalidation::Any(rest),
                }
            }
            Target::All => Invalidation::All,
        }
    }

    /// Invalidates like [`Cache::invalidate`]; with `wait`, also waits that long at most
    /// for every other live instance of the fleet to apply it, and says which did.
    pub async fn invalidate_confirmed(
        &self,
        target: &Target,
        soft: bool,
        wait: Option<std::time::Duration>,
    ) -> Invalidated {
        let what = self.resolve(target);
        let (per_tier, acks) = self
            .inner
            .tiers
            .invalidate_confirmed(&what, soft, wait)
            .await;
        let entries = per_tier.iter().map(|(_, n)| *n).max().unwrap_or(0);
        self.inner.stats.record_invalidated(entries);
        let source = match (target, soft) {
            (_, true) => Source::SoftPurge,
            (Target::All, false) => Source::Purge,
            _ => Source::Admin,
        };
        self.record_invalidation(source, None, target.describe(self), &per_tier);
        let fleet_answered = acks.is_some();
        let acks = acks.unwrap_or_default();
        Invalidated {
            entries,
            per_tier,
            applied: acks.applied,
            missing: acks.missing,
            fleet_answered,
        }
    }

    /// Removes what `target` names (with `soft`, marks it stale instead, so it stays usable
    /// for revalidation and within its stale windows while it is refreshed). Returns how
    /// many entries it touched (with Redis: across every instance).
    ///
    /// If a lower tier is unavailable the invalidation applies to memory at once and is
    /// replayed there when it is back.
    pub async fn invalidate(&self, target: &Target, soft: bool) -> u64 {
        self.invalidate_confirmed(target, soft, None).await.entries
    }

    /// Applies an invalidation to every tier and counts it (as the admin's, in the
    /// history).
    pub async fn apply(&self, what: &Invalidation, soft: bool) -> u64 {
        let source = if soft {
            Source::SoftPurge
        } else {
            Source::Admin
        };
        self.apply_as(what, soft, (source, None)).await
    }

    /// [`Cache::apply`], recorded in the history as coming from `source` (`by`: who).
    pub async fn apply_as(
        &self,
        what: &Invalidation,
        soft: bool,
        (source, by): (Source, Option<String>),
    ) -> u64 {
        let per_tier = self.inner.tiers.invalidate_each(what, soft).await;
        let n = per_tier.iter().map(|(_, n)| *n).max().unwrap_or(0);
        self.inner.stats.record_invalidated(n);
        // A mutation that dropped nothing is not history.
        let nothing = matches!(what, Invalidation::Tags(t) if t.is_empty())
            || (source == Source::Mutation && n == 0);
        if !nothing {
            self.record_invalidation(source, by, super::history::describe(what), &per_tier);
        }
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

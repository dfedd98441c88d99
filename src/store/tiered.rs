//! The tiers composed in one place: memory first (synchronous), then the disk tier, then
//! Redis — nearest first: a disk read is a page-cache copy of microseconds, a Redis read a
//! network round trip. A lookup that finds an entry below memory promotes it into memory;
//! a fill writes every tier whose fill token it holds and its rule allows (`tiers`); an
//! invalidation reaches every tier, and memory is cleared again after the tiers below, so a
//! copy promoted in between does not survive. Under Redis, the disk tier follows the
//! fleet's invalidations: events at once, the Redis log at start and every few seconds.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use tokio::sync::Notify;

mod write;

use super::disk::{DiskSettings, DiskTier};
use super::follow::{fleet_name, follow, listen, Heard, HeardEvent};
use super::redis::{Acks, RedisSettings, RedisTier};
use super::{FillToken, Invalidation, LowerTier, MemoryStore};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::policy::{classify, now_ms, RequestPolicy, Usable};
use crate::status::{Stale, Tier, TierSet};

/// What the tiers hold for a key, seen from one request.
pub enum Found {
    /// Fresh: serve it (stored under this key).
    Fresh(Arc<Entry>, CacheKey),
    /// Stale but servable now, for this reason (`WhileRevalidate`: refresh it once in the
    /// background).
    ServeStale(Arc<Entry>, CacheKey, Stale),
    /// Present but not usable without going upstream (revalidate it; it may stand in if
    /// the upstream fails).
    Stale(Arc<Entry>, CacheKey),
    /// The URL is cached, but not this variant.
    VaryMiss,
    /// Nothing.
    Miss,
}

impl Found {
    /// `entry` (stored under `key`) as a request with `policy` sees it at `now`.
    pub fn of(entry: Arc<Entry>, key: CacheKey, policy: &RequestPolicy, now: u64) -> Found {
        match classify(&entry, policy, now) {
            Usable::Fresh => Found::Fresh(entry, key),
            Usable::ServeStale(why) => Found::ServeStale(entry, key, why),
            Usable::Stale => Found::Stale(entry, key),
        }
    }

    /// Whether it can be served without going upstream.
    pub fn servable(&self) -> bool {
        matches!(self, Found::Fresh(..) | Found::ServeStale(..))
    }
}

/// What one request asks of the tiers: its headers (they pick a `Vary` variant), its
/// cache directives, the tiers its rule allows, and whose entry it expects.
pub struct Asked<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The request's cache directives.
    pub policy: &'a RequestPolicy,
    /// The tiers the rule's entries may live in.
    pub allowed: TierSet,
    /// Whose entry it is.
    pub owner: Owner<'a>,
}

/// Whose entry a request expects. A tier below memory keeps its records where others may
/// write them (a directory on a shared volume, a Redis server), so what it reads under a
/// key must be the entry that key stands for: the same normalised URL and, for a key with
/// a user, that user's tag. Anything else is damage, never an answer.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// The normalised URL (`path?query`) the entry was stored for.
    pub url: &'a str,
    /// The user's tag (`key::user_tag`), for a per-user key.
    pub user_tag: Option<u64>,
}

impl Owner<'_> {
    /// Whether `entry` is this request's.
    pub fn owns(&self, entry: &Entry) -> bool {
        entry.url() == self.url && self.user_tag.is_none_or(|u| entry.tags().any(|t| t == u))
    }
}

/// Reads `key` from `tier`: an entry that is not `owner`'s is rejected (damage), one kept
/// in a coding larder no longer stores (other than gzip) is a miss.
async fn read_owned(
    tier: &Arc<dyn LowerTier>,
    key: &CacheKey,
    owner: &Owner<'_>,
) -> Option<Arc<Entry>> {
    let entry = tier.get(key).await?;
    if !owner.owns(&entry) {
        tier.reject(key);
        return None;
    }
    (!entry.other_encoding()).then_some(entry)
}

/// The starting points of one fill in each tier's invalidation history.
#[derive(Clone, Debug)]
pub struct FillTokens {
    memory: FillToken,
    /// Per lower tier; `None`: the tier did not answer, so the fill does not write there.
    lower: Vec<Option<u64>>,
}

/// What tiers to open: the memory bound, the disk tier and Redis if any, and how memory
/// serves in front of them.
#[derive(Clone, Debug)]
pub struct TierSettings {
    /// The memory tier's bound in bytes.
    pub memory_max: u64,
    /// The disk tier (its `fleet` is set when Redis is there too).
    pub disk: Option<DiskSettings>,
    /// Redis.
    pub redis: Option<RedisSettings>,
    /// Whether memory answers lookups in front of lower tiers (`store.l1`).
    pub l1: bool,
    /// A shorter life for memory copies of entries that live below (`store.l1_ttl`).
    pub l1_ttl: Option<Duration>,
}

/// Every tier of one cache.
pub struct Tiers {
    memory: Arc<MemoryStore>,
    /// Whether the memory tier serves (always without lower tiers; `store.l1` with them).
    serve_memory: bool,
    /// A shorter life for memory copies of entries that live below.
    memory_ttl: Option<Duration>,
    lower: Vec<Arc<dyn LowerTier>>,
    /// The shared tier, for what only it does (fleet acknowledgements).
    redis: Option<Arc<RedisTier>>,
    /// How long invalidations took to apply here: this instance's own (the whole call)
    /// and, through Redis, other instances' (from when they were sent).
    applied: Arc<crate::stats::Histogram>,
    /// Other instances' invalidations applied here, for the history.
    heard: Heard,
    /// Writes following answers already sent (rules with `write = "back"`).
    following: Arc<write::Following>,
}

impl std::fmt::Debug for Tiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiers")
            .field("memory", &self.memory)
            .field(
                "lower",
                &self.lower.iter().map(|t| t.tier()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Tiers {
    /// Memory alone.
    pub fn memory_only(memory_max: u64) -> Tiers {
        Tiers {
            memory: Arc::new(MemoryStore::new(memory_max)),
            serve_memory: true,
            memory_ttl: None,
            lower: Vec::new(),
            redis: None,
            applied: Arc::default(),
            heard: Heard::default(),
            following: Arc::default(),
        }
    }

    /// The tiers `settings` asks for: memory, then the disk tier (read back before this
    /// returns), then Redis (connected in the background). The disk tier and Redis need a
    /// Tokio runtime.
    pub fn open(settings: TierSettings) -> Result<Tiers, crate::Error> {
        let mut tiers = Tiers::memory_only(settings.memory_max);
        if (settings.redis.is_some() || settings.disk.is_some())
            && tokio::runtime::Handle::try_current().is_err()
        {
            return Err(crate::Error::Runtime(
                "the disk and redis tiers need a Tokio runtime".into(),
            ));
        }
        let fleet = settings
            .redis
            .as_ref()
            .map(|r| fleet_name(&r.url, &r.prefix));
        let disk = match settings.disk {
            Some(d) => Some(Arc::new(DiskTier::open(DiskSettings { fleet, ..d })?)),
            None => None,
        };
        if let Some(disk) = &disk {
            tiers.lower.push(disk.clone());
        }
        if let Some(r) = settings.redis {
            let redis = RedisTier::new(r)?;
            let nudge = Arc::new(Notify::new());
            let heard = tiers.heard.clone();
            listen(&redis, &tiers.memory, disk.as_ref(), (nudge.clone(), heard));
            redis.count_applies_in(tiers.applied.clone());
            tiers.redis = Some(redis.clone());
            if let Some(disk) = &disk {
                tokio::spawn(follow(Arc::downgrade(&redis), Arc::downgrade(disk), nudge));
            }
            tiers.lower.push(redis);
        }
        if !tiers.lower.is_empty() {
            tiers.serve_memory = settings.l1;
            tiers.memory_ttl = settings.l1_ttl;
        }
        Ok(tiers)
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// The tiers below memory, in lookup order.
    pub fn lower(&self) -> &[Arc<dyn LowerTier>] {
        &self.lower
    }

    /// Every tier's name, memory first.
    pub fn names(&self) -> Vec<Tier> {
        std::iter::once(Tier::L1)
            .chain(self.lower.iter().map(|t| t.tier()))
            .collect()
    }

    /// Whether memory answers lookups.
    pub fn serves_memory(&self) -> bool {
        self.serve_memory
    }

    /// Looks `primary` up in memory, following a `Vary` marker to the request's variant.
    /// Synchronous: this is the hit path.
    pub fn lookup_memory(
        &self,
        primary: CacheKey,
        headers: &HeaderMap,
        policy: &RequestPolicy,
        now: u64,
        allowed: TierSet,
    ) -> Found {
        if !self.serve_memory || !allowed.contains(Tier::L1) {
            return Found::Miss;
        }
        let Some(entry) = self.memory.get(&primary, now) else {
            return Found::Miss;
        };
        if !entry.is_vary_marker() {
            return Found::of(entry, primary, policy, now);
        }
        let variant = primary.variant(&entry.vary_names(), headers);
        match self.memory.get(&variant, now) {
            Some(e) => Found::of(e, variant, policy, now),
            None => Found::VaryMiss,
        }
    }

    /// Looks `primary` up in the tiers below memory that `asked.allowed` names, in order,
    /// promoting what it finds into memory (if allowed). `None` when none has the URL. An
    /// entry that is not [`Owner`]'s is damage: counted, dropped, a miss.
    pub async fn lookup_lower(
        &self,
        primary: CacheKey,
        asked: &Asked<'_>,
    ) -> Option<(Found, Tier)> {
        let promote = asked.allowed.contains(Tier::L1);
        for tier in self
            .lower
            .iter()
            .filter(|t| asked.allowed.contains(t.tier()))
        {
            // Taken before reading: an invalidation arriving meanwhile keeps the copy out
            // of memory.
            let token = self.memory.begin_fill();
            let Some(entry) = read_owned(tier, &primary, &asked.owner).await else {
                continue;
            };
            let (entry, key) = if entry.is_vary_marker() {
                let variant = primary.variant(&entry.vary_names(), asked.headers);
                if promote {
                    self.promote(primary, entry, token);
                }
                match read_owned(tier, &variant, &asked.owner).await {
                    Some(e) => (e, variant),
                    None => return Some((Found::VaryMiss, tier.tier())),
                }
            } else {
                (entry, primary)
            };
            if promote {
                self.promote(key, entry.clone(), token);
            }
            return Some((Found::of(entry, key, asked.policy, now_ms()), tier.tier()));
        }
        None
    }

    /// Memory, then the tiers below.
    pub async fn lookup(&self, primary: CacheKey, asked: &Asked<'_>) -> (Found, Tier) {
        let found = self.lookup_memory(
            primary,
            asked.headers,
            asked.policy,
            now_ms(),
            asked.allowed,
        );
        if found.servable() {
            return (found, Tier::L1);
        }
        match self.lookup_lower(primary, asked).await {
            Some(below) => below,
            None => (found, Tier::L1),
        }
    }

    /// Copies an entry found below into memory (with the memory ttl, if shorter).
    fn promote(&self, key: CacheKey, entry: Arc<Entry>, token: FillToken) -> bool {
        if !self.serve_memory {
            return false;
        }
        let until = self.memory_ttl.map(|t| now_ms() + t.as_millis() as u64);
        self.memory.insert_until(key, entry, token, until)
    }

    /// Remembers every tier's invalidation epoch before a fill goes upstream.
    pub async fn begin_fill(&self) -> FillTokens {
        let memory = self.memory.begin_fill();
        let mut lower = Vec::with_capacity(self.lower.len());
        for tier in &self.lower {
            lower.push(tier.begin_fill().await);
        }
        FillTokens { memory, lower }
    }

    /// Drops one key from memory.
    pub fn remove(&self, key: &CacheKey) {
        self.memory.remove(key);
    }

    /// Keeps the decoded body of a gzip entry in memory (see
    /// [`MemoryStore::keep_decoded`]).
    pub fn keep_decoded(&self, key: &CacheKey, entry: &Arc<Entry>) {
        self.memory.keep_decoded(key, entry);
    }

    /// Invalidates what `what` names in every tier (with `soft`, marks it stale). Returns
    /// the largest count any tier reported.
    pub async fn invalidate(&self, what: &Invalidation, soft: bool) -> u64 {
        self.invalidate_each(what, soft)
            .await
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// [`Tiers::invalidate`], with each tier's count (`memory`, then `disk`, `redis`; a
    /// tier that could not be reached is left out).
    pub async fn invalidate_each(
        &self,
        what: &Invalidation,
        soft: bool,
    ) -> Vec<(&'static str, u64)> {
        if matches!(what, Invalidation::Tags(t) if t.is_empty()) {
            return Vec::new();
        }
        let in_memory = || {
            if soft {
                self.memory.soften(what, now_ms())
            } else {
                self.memory.invalidate(what)
            }
        };
        let mut counts = vec![("memory", in_memory())];
        for tier in &self.lower {
            if let Some(below) = tier.invalidate(what, soft).await {
                counts.push((tier.section(), below));
            }
        }
        if !self.lower.is_empty() {
            // A request may have copied an entry from below into memory between the two
            // steps; this instance does not hear its own events, so look again (a tag
            // purge is noted again, which covers such copies without a count).
            counts[0].1 += match (what, soft) {
                (Invalidation::Tags(tags), false) => self.memory.purge_again(tags),
                _ => in_memory(),
            };
        }
        // What a tag purge made unservable is removed off the request path.
        self.memory.reclaim_soon();
        counts
    }

    /// Invalidates like [`Tiers::invalidate`], counts how long that took here, and with
    /// `wait` waits that long at most for every other live instance of the fleet to apply
    /// it too. The acknowledgements are `None` when Redis did not answer.
    pub async fn invalidate_confirmed(
        &self,
        what: &Invalidation,
        soft: bool,
        wait: Option<Duration>,
    ) -> (Vec<(&'static str, u64)>, Option<Acks>) {
        let started = std::time::Instant::now();
        let n = self.invalidate_each(what, soft).await;
        self.applied
            .observe_us(started.elapsed().as_micros() as u64);
        let acks = match (&self.redis, wait) {
            (Some(redis), Some(wait)) => redis.confirm(Some(wait)).await,
            _ => Some(Acks {
                applied: vec![self.instance()],
                missing: Vec::new(),
            }),
        };
        (n, acks)
    }

    /// This instance's name in the fleet (`local` without Redis).
    pub fn instance(&self) -> String {
        self.redis
            .as_ref()
            .map_or_else(|| "local".to_string(), |r| r.instance().to_string())
    }

    /// How long invalidations took to apply here.
    pub fn apply_histogram(&self) -> &crate::stats::Histogram {
        &self.applied
    }

    /// Other instances' invalidations applied here since the last call.
    pub fn heard(&self) -> Vec<HeardEvent> {
        self.heard.take()
    }

    /// The shared tier, if there is one.
    pub fn redis(&self) -> Option<&Arc<RedisTier>> {
        self.redis.as_ref()
    }

    /// The first tier that offers a fleet-wide fill lease.
    pub fn fleet(&self) -> Option<&Arc<dyn LowerTier>> {
        self.lower.iter().find(|t| t.fleet().is_some())
    }

    /// Makes every tier's acknowledged writes durable (at shutdown).
    pub async fn flush(&self) {
        self.following.settled(Duration::from_secs(5)).await;
        for tier in &self.lower {
            tier.flush().await;
        }
    }
}

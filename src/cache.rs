//! The cache as a shared handle: settings (swappable on reload), the store, the
//! single-flight table and the counters. The layer serves through it; the admin API
//! invalidates and reads stats through it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = larder::Cache::new(larder::Config::default()).unwrap();
//! assert_eq!(cache.invalidate_tags(&["jobs"]).await, 0);
//! assert_eq!(cache.stats().entries, 0);
//! # });
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderName;
use serde::Serialize;

use crate::coalesce::Coalescer;
use crate::config::{Backend, Config, ConfigError};
use crate::key::CacheKey;
use crate::key::{self, Users};
use crate::policy::now_ms;
use crate::rules::RuleSet;
use crate::stats::{Counters, CountersSnapshot, Stats, UNMATCHED};
use crate::store::redis::{Event, RedisSettings, RedisTier};
use crate::store::{FillToken, Invalidation, MemoryStore, StoreStats};

/// Everything a request needs to know from the config, compiled once per (re)load.
pub struct Settings {
    /// The config these settings came from.
    pub config: Config,
    /// The compiled rules.
    pub rules: RuleSet,
    /// Counters by rule index.
    pub(crate) counters: Vec<Arc<Counters>>,
    /// Counters of requests no rule matched.
    pub(crate) unmatched: Arc<Counters>,
    /// User identification.
    pub(crate) users: Users,
    /// The `Cache-Status` header name.
    pub(crate) cache_status: HeaderName,
    /// Whether the request's host is part of keys.
    pub(crate) key_host: bool,
    /// Targeted cache-control fields this cache obeys, most specific first (RFC 9213).
    pub(crate) targeted: Vec<HeaderName>,
}

impl Settings {
    fn new(config: Config, stats: &Stats, secret: &[u8]) -> Settings {
        let rules = RuleSet::new(config.rules.clone());
        let counters = rules.rules().iter().map(|r| stats.rule(&r.name)).collect();
        let users = Users::new(config.users.sources.clone(), secret);
        Settings {
            rules,
            counters,
            unmatched: stats.rule(UNMATCHED),
            users,
            cache_status: HeaderName::from_static("cache-status"),
            key_host: config.cache.key_host.unwrap_or(true),
            targeted: config
                .cache
                .targeted_header
                .iter()
                .cloned()
                .chain(
                    config
                        .cache
                        .cdn_cache_control
                        .then(|| HeaderName::from_static("cdn-cache-control")),
                )
                .chain(
                    config
                        .cache
                        .surrogate_control
                        .then(|| HeaderName::from_static("surrogate-control")),
                )
                .collect(),
            config,
        }
    }

    /// The counters for a rule index, or the unmatched counters.
    pub(crate) fn counters(&self, rule: Option<usize>) -> &Counters {
        rule.and_then(|i| self.counters.get(i))
            .unwrap_or(&self.unmatched)
    }
}

pub(crate) struct Inner {
    pub(crate) settings: ArcSwap<Settings>,
    /// The in-process store: the whole store, or the L1 in front of Redis.
    pub(crate) store: MemoryStore,
    /// Redis, the shared tier, when `store.backend = "redis"`.
    pub(crate) l2: Option<Arc<RedisTier>>,
    /// Whether the memory store serves (always, without Redis).
    pub(crate) l1: bool,
    /// A shorter life for L1 copies under Redis.
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) coalescer: Coalescer,
    pub(crate) stats: Stats,
    secret: Vec<u8>,
    /// Sends requests through the cache for warming and prefetch (set by the sidecar).
    warmer: std::sync::OnceLock<Arc<dyn Warm>>,
}

/// Sends a GET through the cache the way a client would — for warming and related
/// prefetch. The sidecar provides one; a layer user can set their own with
/// [`Cache::set_warmer`].
pub trait Warm: Send + Sync + 'static {
    /// Fetches `path_and_query` with `headers`; the answer's status, or why it failed.
    fn get(
        &self,
        path_and_query: String,
        headers: http::HeaderMap,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u16, String>> + Send>>;
}

/// The result of a warming run.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Warmed {
    /// URLs fetched with a 2xx.
    pub warmed: u64,
    /// URLs that failed, with why.
    pub failed: Vec<String>,
}

/// A handle on one cache; clones share it.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store)
            .finish()
    }
}

/// `/admin/stats` as data.
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    /// Served fresh from the cache.
    pub hits: u64,
    /// Went upstream.
    pub misses: u64,
    /// Served stale or revalidated.
    pub stale: u64,
    /// Not handled by the cache.
    pub bypass: u64,
    /// (hits + stale) / (hits + stale + misses).
    pub hit_ratio: f64,
    /// Entries in the store.
    pub entries: u64,
    /// Bytes in the store.
    pub bytes: u64,
    /// The store's bound.
    pub max_bytes: u64,
    /// Entries evicted.
    pub evictions: u64,
    /// Entries removed by invalidation or purge.
    pub invalidated: u64,
    /// Per rule (requests no rule matched under `"(no rule)"`).
    pub per_rule: std::collections::BTreeMap<String, CountersSnapshot>,
    /// Hits by tier.
    pub tiers: std::collections::HashMap<&'static str, u64>,
    /// The shared tier's health, with the redis backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReport>,
    /// What the cache saved the upstream.
    pub saved: SavedReport,
    /// Warming: runs, URLs warmed, URLs that failed.
    pub warm: WarmReport,
}

/// What the cache saved, in total and per rule.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SavedReport {
    /// Requests answered without going upstream.
    pub requests_avoided: u64,
    /// Body bytes the upstream did not have to send.
    pub bytes_not_fetched: u64,
    /// Upstream time saved: per rule, its measured mean miss latency × requests avoided.
    pub upstream_seconds_saved: f64,
    /// Per rule `miss_cost` × requests avoided (unit-free).
    pub cost_saved: f64,
    /// The same per rule.
    pub per_rule: std::collections::BTreeMap<String, SavedRule>,
}

/// What one rule saved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SavedRule {
    /// Requests answered without going upstream.
    pub requests_avoided: u64,
    /// Body bytes the upstream did not have to send.
    pub bytes_not_fetched: u64,
    /// Mean miss latency × requests avoided.
    pub upstream_seconds_saved: f64,
    /// `miss_cost` × requests avoided.
    pub cost_saved: f64,
}

/// Warming in `/admin/stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WarmReport {
    /// Warming runs (start-up, schedule, `/admin/warm`).
    pub runs: u64,
    /// URLs fetched successfully.
    pub warmed: u64,
    /// URLs that failed.
    pub failed: u64,
}

/// The shared tier in `/admin/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct RedisReport {
    /// `up` or `down`.
    pub status: &'static str,
    /// The circuit breaker: `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Failed or timed-out Redis calls.
    pub errors: u64,
}

fn user_secret(config: &Config) -> Result<Vec<u8>, crate::Error> {
    let per_user = config.rules.iter().any(|r| r.per_user);
    match std::env::var(&config.users.secret_env) {
        Ok(s) if !s.is_empty() => Ok(s.into_bytes()),
        // Instances sharing a Redis must key a user alike, or they would neither share
        // that user's entries nor drop them on a per-user invalidation.
        _ if per_user && config.store.backend == Backend::Redis => Err(crate::Error(format!(
            "per_user rules on the redis backend need the same user secret on every instance: set ${}",
            config.users.secret_env
        ))),
        _ => {
            let mut buf = [0u8; 32];
            if getrandom::fill(&mut buf).is_err() {
                // No OS randomness: fall back to something unguessable enough per process.
                let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
                buf.copy_from_slice(blake3::hash(seed.as_bytes()).as_bytes());
            }
            if per_user {
                tracing::warn!(
                    env = %config.users.secret_env,
                    "no user secret set; per-user keys use a random secret and do not survive a restart"
                );
            }
            Ok(buf.to_vec())
        }
    }
}

impl Cache {
    /// A cache for `config` (the user secret is read from `users.secret_env`).
    ///
    /// Fails when `per_user` rules meet the redis backend without a user secret: the
    /// instances sharing the Redis would each key users differently.
    ///
    /// With `store.backend = "redis"` it connects in the background (requests work from
    /// the start, from L1 or the upstream, until Redis answers); that needs a Tokio runtime.
    pub fn new(config: Config) -> Result<Cache, crate::Error> {
        let secret = user_secret(&config)?;
        Cache::with_secret(config, &secret)
    }

    /// A cache for `config` with an explicit user secret.
    pub fn with_secret(config: Config, secret: &[u8]) -> Result<Cache, crate::Error> {
        let stats = Stats::default();
        let store = MemoryStore::new(config.store.memory_max);
        let l2 = match (config.store.backend, &config.store.redis_url) {
            (Backend::Redis, Some(url)) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(crate::Error(
                        "the redis backend needs a Tokio runtime".into(),
                    ));
                }
                Some(RedisTier::new(RedisSettings {
                    url: url.clone(),
                    prefix: config.store.redis_prefix.clone(),
                    pool: config.store.redis_pool,
                    timeout: config.store.redis_timeout,
                    connect_timeout: config.store.redis_connect_timeout,
                    lease: config.store.redis_lease,
                })?)
            }
            _ => None,
        };
        let l1 = l2.is_none() || config.store.l1;
        let l1_ttl = config.store.l1_ttl.filter(|_| l2.is_some());
        let settings = Settings::new(config, &stats, secret);
        let cache = Cache {
            inner: Arc::new(Inner {
                settings: ArcSwap::from_pointee(settings),
                store,
                l2,
                l1,
                l1_ttl,
                coalescer: Coalescer::default(),
                stats,
                secret: secret.to_vec(),
                warmer: std::sync::OnceLock::new(),
            }),
        };
        cache.spawn_sweeper();
        if let Some(l2) = &cache.inner.l2 {
            let (on_event, on_resubscribe) =
                (Arc::downgrade(&cache.inner), Arc::downgrade(&cache.inner));
            l2.start(
                move |event| {
                    let Some(inner) = on_event.upgrade() else {
                        return;
                    };
                    match event {
                        Event::Invalidate(what) => {
                            inner.store.invalidate(&what);
                        }
                        Event::Soften(what) => {
                            inner.store.soften(&what, now_ms());
                        }
                        Event::Filled(_) => {}
                    }
                },
                move || {
                    // The subscription was down: invalidations may have been missed.
                    if let Some(inner) = on_resubscribe.upgrade() {
                        inner.store.invalidate(&Invalidation::All);
                    }
                },
            );
        }
        Ok(cache)
    }

    /// Stores an entry in L1 (if L1 serves), with the L1 ttl when there is one.
    pub(crate) fn l1_insert(
        &self,
        key: CacheKey,
        entry: Arc<crate::entry::Entry>,
        fill: FillToken,
    ) -> bool {
        if !self.inner.l1 {
            return false;
        }
        let until = self.inner.l1_ttl.map(|t| now_ms() + t.as_millis() as u64);
        self.inner.store.insert_until(key, entry, fill, until)
    }

    /// Sets what warming and prefetch send requests through (once).
    pub fn set_warmer(&self, warmer: Arc<dyn Warm>) {
        let _ = self.inner.warmer.set(warmer);
    }

    /// Fetches `urls` through the cache with `headers`, `concurrency` at a time.
    pub async fn warm(
        &self,
        urls: &[String],
        headers: &http::HeaderMap,
        concurrency: usize,
    ) -> Result<Warmed, crate::Error> {
        let warmer = self.inner.warmer.get().cloned().ok_or_else(|| {
            crate::Error("warming needs the sidecar, or a warmer set with Cache::set_warmer".into())
        })?;
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for url in urls {
            let (warmer, limit, url, headers) =
                (warmer.clone(), limit.clone(), url.clone(), headers.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = warmer.get(url.clone(), headers).await;
                (url, result)
            });
        }
        let mut out = Warmed::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((_, Ok(status))) if (200..300).contains(&status) => out.warmed += 1,
                Ok((url, Ok(status))) => out.failed.push(format!("{url}: status {status}")),
                Ok((url, Err(e))) => out.failed.push(format!("{url}: {e}")),
                Err(e) => out.failed.push(format!("warming task failed: {e}")),
            }
        }
        out.failed.sort();
        self.inner
            .stats
            .record_warm(out.warmed, out.failed.len() as u64);
        Ok(out)
    }

    /// Fetches related paths in the background (a rule's `prefetch`), with the headers
    /// that identify the requester, so per-user entries fill for the right user.
    pub(crate) fn prefetch(&self, paths: Vec<String>, headers: http::HeaderMap) {
        let Some(warmer) = self.inner.warmer.get().cloned() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for path in paths {
                if let Err(e) = warmer.get(path.clone(), headers.clone()).await {
                    tracing::debug!(path, error = e, "prefetch failed");
                }
            }
        });
    }

    /// The in-process store (the L1 under Redis).
    pub fn memory_store(&self) -> &MemoryStore {
        &self.inner.store
    }

    /// The shared tier, if any.
    pub fn redis(&self) -> Option<&Arc<RedisTier>> {
        self.inner.l2.as_ref()
    }

    /// A Tower layer serving through this cache.
    pub fn layer(&self) -> crate::CacheLayer {
        crate::CacheLayer::from_cache(self.clone())
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.load_full()
    }

    /// Swaps in a new config's rules and cache settings; entries and counters stay.
    pub fn reload(&self, mut config: Config) {
        if config.cache.key_host.is_none() {
            // Keep how keys were made (the sidecar resolves this at start).
            config.cache.key_host = Some(self.inner.settings.load().key_host);
        }
        let settings = Settings::new(config, &self.inner.stats, &self.inner.secret);
        self.inner.settings.store(Arc::new(settings));
    }

    /// Re-reads the config file, validates it fully and swaps in its rules and cache
    /// settings. A bad file is refused (the old config stays) with its
    /// `file:line:col: field: message` error. Returns the settings that changed but only
    /// take effect after a restart (listeners, upstream, store).
    pub fn reload_file(&self) -> Result<Vec<String>, ConfigError> {
        let old = self.settings();
        let new = match Config::load(&old.config.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running config stays in force");
                return Err(e);
            }
        };
        let restart = old.config.restart_needed(&new);
        self.reload(new);
        if restart.is_empty() {
            tracing::info!(path = %old.config.path.display(), "config reloaded");
        } else {
            tracing::warn!(path = %old.config.path.display(), restart_needed = ?restart, "config reloaded; these changes need a restart");
        }
        Ok(restart)
    }

    /// Drops expired entries every few seconds while a Tokio runtime is around.
    fn spawn_sweeper(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.store.sweep(now_ms());
            }
        });
        // Hit-ratio alerts: one look per window at each rule that sets alert_hit_ratio.
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut previous: HashMap<String, (u64, u64)> = HashMap::new();
            loop {
                let window = match weak.upgrade() {
                    Some(inner) => inner.settings.load().config.cache.alert_window,
                    None => return,
                };
                tokio::time::sleep(window).await;
                let Some(inner) = weak.upgrade() else { return };
                check_hit_ratios(&inner, &mut previous);
            }
        });
    }

    /// Invalidates what `what` names: removes it, or with `soft` marks it stale so it
    /// stays usable for revalidation and within its stale windows (`stale-if-error`) while
    /// it is refreshed. Returns how many entries it touched.
    ///
    /// With Redis, the count is Redis's (every instance's entries); L1 copies everywhere
    /// are evicted through Redis pub/sub. If Redis is unavailable the invalidation applies
    /// to this instance's L1 at once and is replayed in Redis when it is back.
    pub async fn apply(&self, what: &Invalidation, soft: bool) -> u64 {
        if matches!(what, Invalidation::Tags(t) if t.is_empty()) {
            return 0;
        }
        let apply_local = || {
            if soft {
                self.inner.store.soften(what, now_ms())
            } else {
                self.inner.store.invalidate(what)
            }
        };
        let local = apply_local();
        let n = match &self.inner.l2 {
            Some(l2) => {
                let n = l2.invalidate(what, soft).await.unwrap_or(local);
                // A request may have copied an entry from Redis into L1 between the two
                // steps; this instance does not hear its own event, so look again.
                apply_local();
                n
            }
            None => local,
        };
        self.inner.stats.record_invalidated(n);
        n
    }

    /// The entries carrying any of `tags`.
    pub fn target_tags<S: AsRef<str>>(&self, tags: &[S]) -> Invalidation {
        Invalidation::Tags(tags.iter().map(|t| key::tag_id(t.as_ref())).collect())
    }

    /// Every entry of these URLs (`/path?query`): all methods, users, bodies and variants.
    pub fn target_urls<S: AsRef<str>>(&self, urls: &[S]) -> Invalidation {
        let settings = self.settings();
        Invalidation::Tags(urls.iter().map(|u| settings.url_tag(u.as_ref())).collect())
    }

    /// Every entry whose normalised URL starts with `prefix`.
    pub fn target_prefix(&self, prefix: &str) -> Invalidation {
        Invalidation::Prefix(key::normalize_percent(prefix).into_owned())
    }

    /// Every entry stored for the user with this identity (the raw value of the header or
    /// cookie the user came from).
    pub fn target_user(&self, identity: &str) -> Invalidation {
        let settings = self.settings();
        Invalidation::Tags(
            settings
                .users
                .hash_identity(identity)
                .iter()
                .map(key::user_tag)
                .collect(),
        )
    }

    /// Removes every entry carrying any of `tags`; returns how many.
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> u64 {
        self.apply(&self.target_tags(tags), false).await
    }

    /// Removes every entry carrying any of these tag ids.
    pub(crate) async fn invalidate_tag_ids(&self, ids: Vec<u64>) -> u64 {
        self.apply(&Invalidation::Tags(ids), false).await
    }

    /// Removes every entry of these URLs (see [`Cache::target_urls`]).
    pub async fn invalidate_urls<S: AsRef<str>>(&self, urls: &[S]) -> u64 {
        self.apply(&self.target_urls(urls), false).await
    }

    /// Removes every entry whose normalised URL starts with `prefix`.
    pub async fn invalidate_prefix(&self, prefix: &str) -> u64 {
        self.apply(&self.target_prefix(prefix), false).await
    }

    /// Removes every entry stored for the user with this identity.
    pub async fn invalidate_user(&self, identity: &str) -> u64 {
        self.apply(&self.target_user(identity), false).await
    }

    /// Removes everything; returns how many entries.
    pub async fn purge(&self) -> u64 {
        self.apply(&Invalidation::All, false).await
    }

    /// The store's size.
    pub fn store_stats(&self) -> StoreStats {
        self.inner.store.stats()
    }

    /// Counters and store size, as `/admin/stats` reports them.
    pub fn stats(&self) -> StatsReport {
        let per_rule = self.inner.stats.per_rule();
        let total = per_rule
            .iter()
            .fold(CountersSnapshot::default(), |acc, (_, s)| acc + *s);
        let store = self.store_stats();
        let settings = self.settings();
        let mut saved = SavedReport::default();
        for (name, s) in &per_rule {
            let miss_cost = settings
                .rules
                .rules()
                .iter()
                .find(|r| &r.name == name)
                .and_then(|r| r.miss_cost);
            let rule = SavedRule {
                requests_avoided: s.requests_avoided,
                bytes_not_fetched: s.bytes_not_fetched,
                upstream_seconds_saved: round3(s.upstream_mean_seconds * s.requests_avoided as f64),
                cost_saved: round3(miss_cost.unwrap_or(0.0) * s.requests_avoided as f64),
            };
            saved.requests_avoided += rule.requests_avoided;
            saved.bytes_not_fetched += rule.bytes_not_fetched;
            saved.upstream_seconds_saved =
                round3(saved.upstream_seconds_saved + rule.upstream_seconds_saved);
            saved.cost_saved = round3(saved.cost_saved + rule.cost_saved);
            saved.per_rule.insert(name.clone(), rule);
        }
        let (runs, warmed, failed) = self.inner.stats.warm();
        StatsReport {
            hits: total.hits,
            misses: total.misses,
            stale: total.stale,
            bypass: total.bypass,
            hit_ratio: total.hit_ratio,
            entries: store.entries,
            bytes: store.bytes,
            max_bytes: store.max_bytes,
            evictions: store.evictions,
            invalidated: self.inner.stats.invalidated(),
            per_rule: per_rule.into_iter().collect(),
            tiers: self.inner.stats.tiers(),
            redis: self.inner.l2.as_ref().map(|r| RedisReport {
                status: if r.is_up() { "up" } else { "down" },
                breaker: r.breaker_state().as_str(),
                breaker_opened: r.breaker_opened(),
                errors: r.errors(),
            }),
            saved,
            warm: WarmReport {
                runs,
                warmed,
                failed,
            },
        }
    }

    /// The counters (for metrics).
    pub(crate) fn counters(&self) -> &Stats {
        &self.inner.stats
    }

    /// Sets the counters to zero (entries stay).
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// The most-hit entries: `(url, hits, bytes)`.
    pub fn top_entries(&self, n: usize) -> Vec<(String, u32, usize)> {
        self.inner.store.top(n)
    }
}

/// Compares each alerting rule's hit ratio over the window that just ended with its
/// `alert_hit_ratio`: below it (with enough requests), one warning and the gauge set.
fn check_hit_ratios(inner: &Inner, previous: &mut HashMap<String, (u64, u64)>) {
    let settings = inner.settings.load();
    let min = settings.config.cache.alert_min_requests;
    for rule in settings.rules.rules() {
        let counters = settings.counters(Some(rule.index));
        let s = counters.snapshot();
        let now = (s.hits + s.stale, s.misses);
        let before = previous.insert(rule.name.clone(), now).unwrap_or((0, 0));
        let Some(threshold) = rule.alert_hit_ratio else {
            continue;
        };
        let served = now.0.saturating_sub(before.0);
        let total = served + now.1.saturating_sub(before.1);
        if total == 0 || total < min {
            counters.set_alert(false, 0.0);
            continue;
        }
        let ratio = served as f64 / total as f64;
        let alerting = ratio < threshold;
        if alerting {
            tracing::warn!(
                rule = %rule.name,
                hit_ratio = format!("{ratio:.3}"),
                alert_hit_ratio = threshold,
                requests = total,
                "hit ratio below the alert threshold over the last window"
            );
        }
        counters.set_alert(alerting, ratio);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Settings {
    /// The implicit tag of a URL, normalised the way the rule for its path keys it.
    pub(crate) fn url_tag(&self, url: &str) -> u64 {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        let path = key::normalize_percent(path);
        let rule = self.rules.find(&http::Method::GET, &path);
        key::url_tag(
            &self.config.cache.namespace,
            &path,
            query,
            &self.config.cache.ignore_params,
            rule.and_then(|r| r.key_query.as_deref()),
        )
    }
}

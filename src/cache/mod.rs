//! The cache as a shared handle: settings (swapped whole on reload), the tiers, the
//! single-flight table and the counters. The layer serves through it; the admin API and
//! library users invalidate and read stats through it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = larder::Cache::new(larder::Config::default()).unwrap();
//! assert_eq!(cache.invalidate_tags(&["jobs"]).await, 0);
//! assert_eq!(cache.store_stats().entries, 0);
//! # });
//! ```

pub mod history;
mod hot;
mod inspect;
mod invalidate;
pub mod inventory;
mod reload;
mod settings;
pub(crate) mod tiers;
mod warm;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

pub use inspect::{InspectError, KeyRow};
pub use invalidate::{Invalidated, Target};
pub use settings::Settings;
pub use warm::Warmed;

use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::stats::Stats;
use crate::store::{MemoryStore, StoreStats, Tiers};
pub(crate) use settings::user_secret;

/// Sends a GET through the cache the way a client would — for warming, re-warming and
/// related prefetch. The sidecar provides one; a layer user can set their own with
/// [`Cache::set_warmer`].
pub trait Warm: Send + Sync + 'static {
    /// Fetches `path_and_query` with `headers`; the answer's status, or why it failed.
    fn get(
        &self,
        path_and_query: String,
        headers: http::HeaderMap,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>>;
}

pub(crate) struct Inner {
    pub(crate) settings: ArcSwap<Settings>,
    pub(crate) tiers: Tiers,
    pub(crate) coalescer: Coalescer,
    pub(crate) stats: Stats,
    pub(crate) hot: crate::store::hot::HotList,
    /// When each upstream may take its next warming request (one budget for all warming).
    pub(crate) warm_slots:
        parking_lot::Mutex<std::collections::HashMap<Option<Arc<str>>, tokio::time::Instant>>,
    /// What each upstream may be asked (built at start: the limits need a restart).
    pub(crate) gates: crate::budget::Gates,
    /// The invalidation history.
    pub(crate) history: history::History,
    /// What each rule held at the last count.
    inventory: parking_lot::Mutex<(u64, inventory::Inventory)>,
    /// The config the cache started with (what restart-only settings still are).
    started: Config,
    /// When the config was last reloaded (ms since the epoch; 0: never).
    reloaded_at: std::sync::atomic::AtomicU64,
    secret: Vec<u8>,
    warmer: OnceLock<Arc<dyn Warm>>,
}

/// A handle on a cache that does not keep it alive.
#[derive(Clone)]
pub struct WeakCache(std::sync::Weak<Inner>);

impl WeakCache {
    /// The cache, while it lives.
    pub fn upgrade(&self) -> Option<Cache> {
        self.0.upgrade().map(|inner| Cache { inner })
    }
}

/// A handle on one cache; clones share it.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("tiers", &self.inner.tiers)
            .finish()
    }
}

impl Cache {
    /// A cache for `config` (the user secret is read from `users.secret_env`).
    ///
    /// Fails when `per_user` rules meet the redis backend without a user secret: the
    /// instances sharing the Redis would each key users differently.
    ///
    /// With `store.backend = "redis"` it connects in the background (requests work from
    /// the start, from memory or the upstream, until Redis answers); that needs a Tokio
    /// runtime.
    pub fn new(config: Config) -> Result<Cache, crate::Error> {
        let secret = settings::user_secret(&config)?;
        Cache::with_secret(config, &secret)
    }

    /// A cache for `config` with an explicit user secret.
    pub fn with_secret(config: Config, secret: &[u8]) -> Result<Cache, crate::Error> {
        let stats = Stats::default();
        let settings = Settings::new(config, &stats, secret)?;
        let tiers = tiers::open(&settings.config.store)?;
        Ok(Cache::from_parts(settings, stats, secret, tiers))
    }

    /// A cache over settings and tiers built already.
    pub(crate) fn from_parts(
        settings: Settings,
        stats: Stats,
        secret: &[u8],
        tiers: Tiers,
    ) -> Cache {
        for tier in tiers.names() {
            stats.add_tier(tier);
        }
        let fleet = tiers.lower().iter().find(|t| t.budget().is_some()).cloned();
        let gates = gates(&settings.config, fleet);
        let started = settings.config.clone();
        Cache {
            inner: Arc::new(Inner {
                settings: ArcSwap::from_pointee(settings),
                tiers,
                coalescer: Coalescer::default(),
                stats,
                hot: crate::store::hot::HotList::default(),
                warm_slots: parking_lot::Mutex::default(),
                gates,
                history: history::History::default(),
                inventory: parking_lot::Mutex::default(),
                started,
                reloaded_at: std::sync::atomic::AtomicU64::new(0),
                secret: secret.to_vec(),
                warmer: OnceLock::new(),
            }),
        }
    }

    /// A handle that does not keep the cache alive (background tasks hold one and end
    /// with the cache).
    pub fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.inner))
    }

    /// The settings in force, without taking a reference count (the hit path's way: a
    /// guard for the length of one call).
    #[inline]
    pub(crate) fn settings_guard(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.inner.settings.load()
    }

    /// The fills in flight, one per key.
    pub(crate) fn coalescer(&self) -> &Coalescer {
        &self.inner.coalescer
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.load_full()
    }

    /// Swaps in a new config's rules and cache settings; entries and counters stay. Fails
    /// (and keeps the settings in force) when a `jwt:` source has no usable key.
    pub fn reload(&self, mut config: Config) -> Result<(), crate::Error> {
        if config.cache.key_host.is_none() {
            // Keep how keys were made (the sidecar resolves this at start).
            config.cache.key_host = Some(self.inner.settings.load().key_host);
        }
        let settings = Settings::new(config, &self.inner.stats, &self.inner.secret)?;
        self.inner.settings.store(Arc::new(settings));
        self.inner
            .reloaded_at
            .store(crate::time::now_ms(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// When the config was last reloaded (ms since the epoch), if it was.
    pub fn reloaded_at(&self) -> Option<u64> {
        let at = self
            .inner
            .reloaded_at
            .load(std::sync::atomic::Ordering::Relaxed);
        (at > 0).then_some(at)
    }

    /// The settings changed by reloads since the start that only a restart applies.
    pub fn restart_pending(&self) -> Vec<String> {
        self.inner.started.restart_needed(&self.settings().config)
    }

    /// What each upstream may be asked, and how each is doing.
    pub fn gates(&self) -> &crate::budget::Gates {
        &self.inner.gates
    }

    /// The tiers.
    pub fn tiers(&self) -> &Tiers {
        &self.inner.tiers
    }

    /// The in-process store (the L1 above lower tiers).
    pub fn memory_store(&self) -> &MemoryStore {
        self.inner.tiers.memory()
    }

    /// Sets what warming and prefetch send requests through (once).
    pub fn set_warmer(&self, warmer: Arc<dyn Warm>) {
        let _ = self.inner.warmer.set(warmer);
    }

    /// What warming and prefetch send requests through, if set.
    pub fn warmer(&self) -> Option<Arc<dyn Warm>> {
        self.inner.warmer.get().cloned()
    }

    /// The memory tier's size.
    pub fn store_stats(&self) -> StoreStats {
        self.inner.tiers.memory().stats()
    }

    /// The counters (for metrics and reports).
    pub(crate) fn counters(&self) -> &Stats {
        &self.inner.stats
    }

    /// Sets the counters to zero (entries stay).
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// The most-hit entries: `(url, hits, bytes)`.
    pub fn top_entries(&self, n: usize) -> Vec<(String, u32, usize)> {
        self.inner.tiers.memory().top(n)
    }
}

/// A gate per upstream: each `[[upstream]]`, and the default (`[proxy]`'s limits) even
/// where the layer has no upstream of its own. `fleet` is the tier that may share them.
fn gates(config: &Config, fleet: Option<Arc<dyn crate::store::LowerTier>>) -> crate::budget::Gates {
    let mut named: Vec<(String, crate::config::UpstreamLimits)> = config
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.limits))
        .collect();
    if !named.iter().any(|(name, _)| name == "default") {
        named.push(("default".into(), config.proxy.limits));
    }
    crate::budget::Gates::new(&named, fleet)
}

//! Where entries live: the memory tier (concrete, so a hit stays synchronous and
//! allocation-free), the tiers below it behind [`LowerTier`], and [`Tiers`], which composes
//! them in one place — lookups in order with promotion, writes with fill tokens, and one
//! invalidation model ([`invalidation`]) that every tier applies.
//!
//! A tier below memory (the disk tier, Redis) implements [`LowerTier`]; nothing outside
//! this folder names a concrete lower tier.

pub mod disk;
mod follow;
pub use follow::HeardEvent;
pub mod hot;
pub mod invalidation;
mod memory;
pub mod redis;
mod tiered;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

pub use invalidation::{Invalidation, InvalidationLog};
pub use memory::MemoryStore;
pub use tiered::{Asked, FillTokens, Found, Owner, TierSettings, Tiers};

use crate::entry::Entry;
use crate::key::CacheKey;
use crate::status::Tier;

/// A boxed future, as the lower tiers return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A fill's starting point in the memory tier's invalidation history: a fill is refused if
/// something it carries was invalidated after it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillToken(pub u64);

/// Size and churn of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes held (bodies, headers and bookkeeping).
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
}

/// How a lower tier is doing, for `/health`, `/admin/stats` and `/metrics`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TierReport {
    /// `up` or `down`.
    pub status: &'static str,
    /// The circuit breaker: `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Failed or timed-out calls.
    pub errors: u64,
    /// Size and health of a disk tier.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskReport>,
    /// Redis's memory, as last polled (`used_bytes`, `max_bytes`, `evicted_keys`,
    /// `policy`, `keys`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub memory: Option<redis::RedisMemory>,
}

/// What a disk tier adds to its report.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct DiskReport {
    /// Entries held.
    pub entries: u64,
    /// Bytes of its files.
    pub bytes: u64,
    /// Bytes of the records it points to (the rest is overwritten, expired or invalidated,
    /// reclaimed when its segment goes).
    pub live_bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Damaged records found (each a miss).
    pub corrupt: u64,
    /// Entries dropped with the oldest segments to stay within the bound.
    pub evictions: u64,
    /// Records written.
    pub writes: u64,
}

impl TierReport {
    /// Whether the tier answers.
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// The outcome of asking for a fleet-wide fill lease.
#[derive(Debug)]
pub enum Lease {
    /// This instance fills; release with the token.
    Acquired(String),
    /// Another instance is filling.
    Busy,
    /// The tier did not answer: fill without a lease.
    Unavailable,
}

/// One entry written to a tier below memory.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// Its key.
    pub key: &'a CacheKey,
    /// The entry.
    pub entry: &'a Arc<Entry>,
    /// The tier's invalidation epoch when the fill began: the write is refused if
    /// something the entry carries was invalidated since.
    pub epoch: u64,
    /// The fleet tier's epoch when the fill began (a tier that follows the fleet's
    /// invalidations keeps it with the entry).
    pub fleet: Option<u64>,
    /// Whether the entry must be durable in the tier before `put` returns (a rule with
    /// `write = "through"`), whatever the tier's own write mode.
    pub durable: bool,
}

/// A tier below memory. Every call is bounded in time; a tier that does not answer makes
/// a lookup a miss and a write a no-op, never an error for the client.
pub trait LowerTier: Send + Sync + 'static {
    /// The tier's name in `Cache-Status` (`detail=…`), stats and metrics.
    fn tier(&self) -> Tier;

    /// The name of its section in `/admin/stats` and `/health` (`redis`, `disk`).
    fn section(&self) -> &'static str;

    /// Reads an entry (a corrupt record is `None`).
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>>;

    /// The entry read under `key` is not what the key stands for (another URL, another
    /// user): count it as damage and drop it.
    fn reject(&self, _key: &CacheKey) {}

    /// The tier's invalidation epoch before a fill goes upstream; `None`: the fill must not
    /// write to this tier (it could not tell what was invalidated meanwhile).
    fn begin_fill(&self) -> BoxFuture<'_, Option<u64>>;

    /// Writes an entry unless something it carries was invalidated since the write's
    /// epoch; returns whether it is stored.
    fn put<'a>(&'a self, write: Write<'a>) -> BoxFuture<'a, bool>;

    /// Invalidates (or with `soft`, marks stale) what `what` names. Returns how many entries
    /// it touched, or `None` when the tier could not be reached (it must then apply the
    /// invalidation before serving anything again).
    fn invalidate<'a>(&'a self, what: &'a Invalidation, soft: bool) -> BoxFuture<'a, Option<u64>>;

    /// How the tier is doing.
    fn report(&self) -> TierReport;

    /// Waits (at most `limit`) until the tier answers; whether it did.
    fn wait_ready(&self, limit: Duration) -> BoxFuture<'_, bool>;

    /// Fleet-wide single flight, for tiers several instances share.
    fn fleet(&self) -> Option<&dyn FleetLease> {
        None
    }

    /// Fleet-wide upstream limits, for tiers several instances share.
    fn budget(&self) -> Option<&dyn FleetBudget> {
        None
    }

    /// Makes every acknowledged write durable (at shutdown).
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Keeps a small named record (the hot list) across restarts, if the tier lasts.
    fn keep<'a>(&'a self, _name: &'a str, _bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    /// A record kept earlier, if any.
    fn kept<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(None))
    }

    /// Up to `limit` entries carrying `tag`, read whole (for inspecting one URL's entries).
    fn tagged(&self, _tag: u64, _limit: usize) -> BoxFuture<'_, Vec<(CacheKey, Arc<Entry>)>> {
        Box::pin(std::future::ready(Vec::new()))
    }

    /// Calls `f` with each entry's URL and stored size, from the tier's own directory
    /// (no record is read; tiers without a local directory do nothing).
    fn each_entry(&self, _f: &mut dyn FnMut(&str, u64)) {}

    /// A page of about `limit` entries from `cursor` (`None`: the start), without reading
    /// their bodies; never a walk that blocks the tier.
    fn list<'a>(&'a self, _cursor: Option<&'a str>, _limit: usize) -> BoxFuture<'a, Page> {
        Box::pin(std::future::ready(Page::default()))
    }
}

/// One entry as a key listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: CacheKey,
    /// Its normalised URL.
    pub url: String,
    /// Bytes stored.
    pub size: u64,
    /// When it can be dropped (ms since the epoch).
    pub expires_at: u64,
}

/// One page of a tier's entries, and where the next begins (`None`: that was the last).
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The entries.
    pub entries: Vec<Listed>,
    /// The cursor of the next page.
    pub next: Option<String>,
}

/// What an instance asks of an upstream's fleet-wide limits for one request.
#[derive(Clone, Copy, Debug)]
pub struct BudgetAsk<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// Now (µs since the epoch).
    pub now_us: u64,
    /// The rate as GCRA parameters: emission interval and burst tolerance (µs).
    pub rate: Option<(u64, u64)>,
    /// Budget units this request spends.
    pub cost: u64,
    /// Units per UTC day.
    pub budget: Option<u64>,
    /// How long to the next UTC midnight (when the budget resets).
    pub reset: std::time::Duration,
}

/// The fleet's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetAnswer {
    /// Go: the rate and the units are spent.
    Granted {
        /// Units left today.
        remaining: Option<u64>,
    },
    /// The rate is reached: a slot comes after `wait`.
    Rate {
        /// Until the next slot.
        wait: Duration,
    },
    /// Today's budget is spent.
    Budget {
        /// Until it resets.
        reset: Duration,
        /// Units left (fewer than the request costs).
        remaining: Option<u64>,
    },
    /// The upstream is backing off.
    Backoff {
        /// Until it may be asked again.
        left: Duration,
    },
}

/// Upstream limits one tier keeps for every instance sharing it.
pub trait FleetBudget: Send + Sync {
    /// Checks and spends a request against the shared limits (`Err`: the tier did not
    /// answer; count locally).
    fn take<'a>(&'a self, ask: BudgetAsk<'a>) -> BoxFuture<'a, Result<BudgetAnswer, ()>>;

    /// Backs an upstream off fleet-wide.
    fn back_off<'a>(&'a self, upstream: &'a str, left: Duration) -> BoxFuture<'a, ()>;
}

/// One fill per key across every instance sharing a tier.
pub trait FleetLease: Send + Sync {
    /// Asks for the fill lease of `key`.
    fn lease<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Lease>;

    /// Releases a lease this instance holds and tells waiters the fill is done.
    fn release<'a>(&'a self, key: &'a CacheKey, token: &'a str) -> BoxFuture<'a, ()>;

    /// Registers interest in another instance's fill of `key`.
    fn fill_waiter(&self, key: &CacheKey) -> watch::Receiver<()>;

    /// Waits (at most `limit`) for the fill `waiter` was registered for.
    fn wait_fill<'a>(
        &'a self,
        key: &'a CacheKey,
        waiter: watch::Receiver<()>,
        limit: Duration,
    ) -> BoxFuture<'a, ()>;
}

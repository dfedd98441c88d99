//! Redis as the shared tier (L2), through `fred`: entries, tag indexes, invalidation
//! across instances, fleet-wide single flight, and a circuit breaker so that a slow or
//! dead Redis never becomes an outage.
//!
//! Layout (nothing needs keys from two slots, so it works on a Redis Cluster):
//! - `{prefix}:e:{key}` — an entry's bytes (the same encoding as in memory), `PX` its expiry.
//! - `{prefix}:t:{tag}` — a sorted set of the keys carrying the tag, scored by their expiry;
//!   trimmed of expired members on every write and expiring with its last member.
//! - `{prefix}:l:{key}` — a fill lease (`SET NX PX` with a token; only the holder deletes it).
//! - `{{prefix}}:epoch`, `{{prefix}}:log` — the invalidation counter and the recent
//!   invalidations (one hash slot, updated together by one script). A fill reads the epoch
//!   before going upstream and writes only if nothing its entry carries was invalidated
//!   since (one script on a single Redis; check, write, re-check and undo on a cluster):
//!   a slow fill cannot resurrect invalidated data.
//! - channel `{prefix}:events` — invalidations, soft purges and "filled" notices, so every
//!   instance evicts its L1 copies within milliseconds and fleet waiters wake up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::{Pool, SubscriberClient};
use fred::interfaces::{ClientLike, KeysInterface, LuaInterface, SortedSetsInterface};
use fred::types::config::{Config as FredConfig, Options, ReconnectPolicy, TcpConfig};
use fred::types::{Builder, Expiration, ExpireOptions, Value};

use parking_lot::Mutex;
use tokio::sync::watch;

mod acks;
pub mod breaker;
mod budget;
mod events;
mod inspect;
mod invalidate;
mod lease;
mod listen;
mod scripts;
mod sweep;
mod tier;

pub use acks::Acks;
pub use breaker::{Breaker, State};
pub use events::Event;
pub use inspect::RedisMemory;
use scripts::PUT_SCRIPT;

use super::Invalidation;
use crate::entry::Entry;
use crate::key::{hex, CacheKey};
use crate::time::now_ms;

/// How many recent invalidations the log keeps for the fill check.
const LOG_KEEP: u64 = 10_000;

/// Settings of the shared tier.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://user:pass@host:port/db`, `rediss://…`, `redis-cluster://host:port?node=…`.
    pub url: String,
    /// Prefix of every key and of the event channel.
    pub prefix: String,
    /// Connections in the pool.
    pub pool: usize,
    /// Longest wait for one command.
    pub timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// How long a fill lease lasts.
    pub lease: Duration,
}

/// Why a Redis call did not happen or failed.
#[derive(Debug)]
pub struct Unavailable;

/// The shared tier.
pub struct RedisTier {
    pool: Pool,
    subscriber: SubscriberClient,
    settings: RedisSettings,
    options: Options,
    breaker: Breaker,
    instance: String,
    errors: AtomicU64,
    /// Local waiters for fills happening on other instances.
    waiters: Mutex<HashMap<CacheKey, watch::Sender<()>>>,
    /// Invalidations that could not reach Redis, replayed when it is back.
    pending: Mutex<Vec<(Invalidation, bool)>>,
    pending_overflow: std::sync::atomic::AtomicBool,
    /// Whether the event channel subscription went through.
    subscribed: watch::Sender<bool>,
    /// The next mark this instance sends after an invalidation.
    next_mark: AtomicU64,
    /// Senders waiting for acknowledgements of their marks.
    ack_waiters: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<String>>>,
    /// How long other instances' invalidations took to apply here.
    applied: std::sync::OnceLock<Arc<crate::stats::Histogram>>,
    /// Redis's memory, as last polled.
    watch: inspect::MemoryWatch,
    /// The tags being purged (see `sweep`), and the nudge that sweeps them at once.
    purging: sweep::Purging,
    sweep_now: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.settings.prefix)
            .finish()
    }
}

/// This instance's name in the fleet: its host, its process and a random part (no
/// spaces: events are space-separated).
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "larder".to_string()
    } else {
        host
    };
    format!("{host}-{}-{}", std::process::id(), random_hex(3))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        buf.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..bytes]);
    }
    hex(&buf)
}

impl RedisTier {
    /// Builds the clients (no connection is made yet; see [`RedisTier::start`]).
    pub fn new(settings: RedisSettings) -> Result<Arc<RedisTier>, crate::Error> {
        let config = FredConfig::from_url(&settings.url)
            .map_err(|e| crate::Error::Store(format!("store.redis_url: {e}")))?;
        let mut builder = Builder::from_config(config);
        let (timeout, connect_timeout) = (settings.timeout, settings.connect_timeout);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                // Commands never queue without bound while Redis is away.
                c.max_command_buffer_len = 10_000;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // Events queue here between Redis and the task applying them; a burst of
                // fills must not overrun it (an overrun clears L1, see `start`).
                p.broadcast_channel_capacity = 4096;
            })
            // Without a policy a dead Redis looks connected and commands hang.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        let pool = builder
            .build_pool(settings.pool.max(1))
            .map_err(|e| crate::Error::Store(format!("store.redis_url: {e}")))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| crate::Error::Store(format!("store.redis_url: {e}")))?;
        Ok(Arc::new(RedisTier {
            pool,
            subscriber,
            options: Options {
                timeout: Some(settings.timeout),
                fail_fast: true,
                max_attempts: Some(1),
                ..Options::default()
            },
            settings,
            breaker: Breaker::new(3, 1_000),
            instance: instance_name(),
            errors: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            pending_overflow: std::sync::atomic::AtomicBool::new(false),
            subscribed: watch::channel(false).0,
            next_mark: AtomicU64::new(1),
            ack_waiters: Mutex::new(HashMap::new()),
            applied: std::sync::OnceLock::new(),
            watch: inspect::MemoryWatch::default(),
            purging: sweep::Purging::default(),
            sweep_now: Arc::default(),
        }))
    }

    /// Connects in the background and listens for other instances' events: `on_event`
    /// applies them to L1, `on_resubscribe` runs after the subscription came back (L1 may
    /// have missed invalidations meanwhile).
    pub fn start(
        self: &Arc<Self>,
        on_event: impl Fn(&str, Event) + Send + Sync + 'static,
        on_resubscribe: impl Fn() + Send + Sync + 'static,
    ) {
        // These spawn the connection and resubscription tasks; their handles are not needed.
        drop(self.pool.connect());
        drop(self.subscriber.connect());
        drop(self.subscriber.manage_subscriptions());
        self.subscribe();
        // After a gap in the event channel, purges may have been missed: the tags being
        // purged are read again before an entry is served from Redis.
        let me = Arc::downgrade(self);
        let on_resubscribe = Arc::new(move || {
            if let Some(tier) = me.upgrade() {
                tier.purging.unload();
            }
            on_resubscribe()
        });
        self.start_sweeping();
        self.clear_on_reconnect(on_resubscribe.clone());
        self.probe();
        self.follow_events(on_event, on_resubscribe);
    }

    fn channel(&self) -> String {
        format!("{}:events", self.settings.prefix)
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}:e:{key}", self.settings.prefix)
    }

    fn tag_key(&self, tag: u64) -> String {
        format!("{}:t:{tag:016x}", self.settings.prefix)
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}:l:{key}", self.settings.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{{{}}}:epoch", self.settings.prefix)
    }

    fn log_key(&self) -> String {
        format!("{{{}}}:log", self.settings.prefix)
    }

    /// Whether Redis is connected and the breaker lets calls through.
    pub fn is_up(&self) -> bool {
        self.breaker.state(now_ms()) == State::Closed
            && self.pool.clients().iter().any(|c| c.is_connected())
    }

    /// Waits (at most `limit`) until the pool is connected and the event channel
    /// subscribed; returns whether that happened.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let mut subscribed = self.subscribed.subscribe();
        tokio::time::timeout(limit, async {
            let _ = self.pool.wait_for_connect().await;
            let _ = subscribed.wait_for(|s| *s).await;
        })
        .await
        .is_ok()
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> State {
        self.breaker.state(now_ms())
    }

    /// Times the breaker opened.
    pub fn breaker_opened(&self) -> u64 {
        self.breaker.times_opened()
    }

    /// Failed or timed-out Redis calls.
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    /// Runs one Redis call under the breaker, with the command timeout.
    async fn call<T, E: std::fmt::Display>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Unavailable> {
        if !self.breaker.allow(now_ms()) {
            return Err(Unavailable);
        }
        // fred enforces the timeout per command; this bounds calls made of several.
        match tokio::time::timeout(self.settings.timeout * 4, fut).await {
            Ok(Ok(v)) => {
                if self.breaker.success() {
                    tracing::info!("redis is back");
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                self.fail(what, &e.to_string());
                Err(Unavailable)
            }
            Err(_) => {
                self.fail(what, "timed out");
                Err(Unavailable)
            }
        }
    }

    fn fail(&self, what: &str, error: &str) {
        self.errors.fetch_add(1, Relaxed);
        let was_closed = self.breaker.state(now_ms()) == State::Closed;
        self.breaker.failure(now_ms());
        if was_closed && self.breaker.state(now_ms()) != State::Closed {
            tracing::warn!(
                op = what,
                error,
                "redis unavailable: serving from L1 or the upstream"
            );
        } else {
            tracing::debug!(op = what, error, "redis call failed");
        }
    }

    /// Reads an entry.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let client = self.pool.next().with_options(&self.options);
        let bytes: Option<Bytes> = self
            .call("get", client.get(self.entry_key(key)))
            .await
            .ok()?;
        let entry = Entry::decode(bytes?).ok()?;
        if self.set_aside(key, &entry).await {
            return None;
        }
        Some(Arc::new(entry))
    }

    /// Keeps a small named record (`{prefix}:kept:{name}`), shared by the fleet.
    pub async fn keep(&self, name: &str, bytes: Vec<u8>) {
        let client = self.pool.next().with_options(&self.options);
        let key = format!("{}:kept:{name}", self.settings.prefix);
        let set = client.set::<(), _, _>(key, Bytes::from(bytes), None, None, false);
        let _ = self.call("keep", set).await;
    }

    /// A record kept earlier.
    pub async fn kept(&self, name: &str) -> Option<Vec<u8>> {
        let client = self.pool.next().with_options(&self.options);
        let key = format!("{}:kept:{name}", self.settings.prefix);
        let got: Option<Bytes> = self.call("kept", client.get(key)).await.ok()?;
        got.map(|b| b.to_vec())
    }

    /// The invalidation epoch before a fill goes upstream (`None`: do not write to L2).
    pub async fn begin_fill(&self) -> Option<u64> {
        let client = self.pool.next().with_options(&self.options);
        let epoch: Option<u64> = self
            .call("begin_fill", client.get(self.epoch_key()))
            .await
            .ok()?;
        Some(epoch.unwrap_or(0))
    }

    /// Writes an entry and indexes its tags, unless something it carries was invalidated
    /// since `epoch` (read before the fill went upstream). Returns whether it is stored.
    ///
    /// On one Redis the check and the write are one script: no reader ever sees an entry
    /// that an invalidation should have kept out. On a cluster the entry, its tags and the
    /// log live in different slots, so the fill checks, writes, and checks again, undoing
    /// the write if an invalidation landed in between; a reader can then meet the entry
    /// only for the one round trip between the write and the undo.
    pub async fn put(&self, key: &CacheKey, entry: &Entry, epoch: u64) -> bool {
        let now = now_ms();
        let expires = entry.expires_at();
        let ttl = expires.saturating_sub(now).max(1) as i64;
        let ekey = self.entry_key(key);
        let member = key.to_string();
        let client = self.pool.next();
        if !client.is_clustered() {
            let mut keys = vec![ekey, self.epoch_key(), self.log_key()];
            keys.extend(entry.tags().map(|t| self.tag_key(t)));
            let mut args: Vec<Value> = vec![
                (epoch as i64).into(),
                (LOG_KEEP as i64).into(),
                Value::Bytes(entry.bytes().clone()),
                ttl.into(),
                (expires as i64).into(),
                (now as i64).into(),
                member.as_str().into(),
                entry.url().into(),
            ];
            args.extend(entry.tags().map(|t| Value::from(format!("{t:016x}"))));
            let written: Result<i64, _> =
                self.call("put", client.eval(PUT_SCRIPT, keys, args)).await;
            return matches!(written, Ok(1));
        }
        if !matches!(self.invalidated_since(entry, epoch).await, Ok(false)) {
            return false;
        }
        let write = async {
            let pipe = client.pipeline();
            let _: () = pipe
                .set(
                    ekey.as_str(),
                    entry.bytes().clone(),
                    Some(Expiration::PX(ttl)),
                    None,
                    false,
                )
                .await?;
            for tag in entry.tags() {
                let tkey = self.tag_key(tag);
                let _: () = pipe
                    .zadd(
                        tkey.as_str(),
                        None,
                        None,
                        false,
                        false,
                        (expires as f64, member.as_str()),
                    )
                    .await?;
                let _: () = pipe
                    .zremrangebyscore(tkey.as_str(), f64::NEG_INFINITY, now as f64)
                    .await?;
                let _: () = pipe
                    .pexpire(tkey.as_str(), ttl, Some(ExpireOptions::NX))
                    .await?;
                let _: () = pipe
                    .pexpire(tkey.as_str(), ttl, Some(ExpireOptions::GT))
                    .await?;
            }
            let _: Vec<Value> = pipe.all().await?;
            Ok::<_, fred::error::Error>(())
        };
        if self.call("put", write).await.is_err() {
            return false;
        }
        if !matches!(self.invalidated_since(entry, epoch).await, Ok(false)) {
            let _ = self
                .call("put_undo", client.del::<i64, _>(ekey.as_str()))
                .await;
            return false;
        }
        true
    }

    /// Whether anything `entry` carries was invalidated after `epoch` (or too long ago to
    /// tell).
    async fn invalidated_since(&self, entry: &Entry, epoch: u64) -> Result<bool, Unavailable> {
        let client = self.pool.next();
        let check = async {
            let pipe = client.pipeline();
            let _: () = pipe
                .zrangebyscore(self.log_key(), format!("({epoch}"), "+inf", false, None)
                .await?;
            let _: () = pipe.get(self.epoch_key()).await?;
            let (log, current): (Vec<String>, Option<u64>) = pipe.all().await?;
            Ok::<_, fred::error::Error>((log, current.unwrap_or(0)))
        };
        let (log, current) = self.call("put_check", check).await?;
        let tags: Vec<u64> = entry.tags().collect();
        let hit = log.iter().any(|m| {
            // Members are `<epoch>:<log member>`.
            let member = m.split_once(':').map_or("", |(_, rest)| rest);
            Invalidation::from_log_member(member).is_some_and(|w| w.matches(&tags, entry.url()))
        });
        Ok(current > epoch + LOG_KEEP || hit)
    }
}

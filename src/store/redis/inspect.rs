//! Looking inside the shared tier without stalling it: one URL's entries through its tag
//! set, pages of entries by `SCAN` cursor (never `KEYS`), and Redis's memory, polled off the
//! request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use fred::interfaces::{ClientLike, KeysInterface, SortedSetsInterface};
use fred::types::{CustomCommand, InfoKind, Value};
use futures_util::StreamExt;

use super::RedisTier;
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::store::{Listed, Page};

/// What Redis says of its memory (polled about every 15 s).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedisMemory {
    /// `used_memory`.
    pub used_bytes: u64,
    /// `maxmemory` (0: no bound).
    pub max_bytes: u64,
    /// `evicted_keys` since Redis started.
    pub evicted_keys: u64,
    /// `maxmemory_policy`.
    pub policy: String,
    /// Keys under larder's prefix, as of the last complete count (`None` before one).
    pub keys: Option<u64>,
}

/// The state of the polls: the last figures, and the key count in progress.
#[derive(Default)]
pub(super) struct MemoryWatch {
    pub last: parking_lot::Mutex<Option<RedisMemory>>,
    counting: parking_lot::Mutex<(u64, u64)>,
    warned: std::sync::atomic::AtomicBool,
    pub keys: AtomicU64,
}

/// The most bytes of an entry read to list it (its index fields come first).
const PEEK: i64 = 4095;

impl RedisTier {
    /// Up to `limit` entries carrying `tag`.
    pub async fn tagged_entries(&self, tag: u64, limit: usize) -> Vec<(CacheKey, Arc<Entry>)> {
        let client = self.pool.next().with_options(&self.options);
        let read = client.zrange::<Vec<String>, _, _, _>(
            self.tag_key(tag),
            0,
            limit as i64 - 1,
            None,
            false,
            None,
            false,
        );
        let Ok(members) = self.call("tagged", read).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in members {
            let Some(key) = CacheKey::from_hex(&m) else {
                continue;
            };
            if let Some(e) = self.get(&key).await {
                out.push((key, e));
            }
        }
        out
    }

    /// A page of entries from `cursor` (a `SCAN` cursor; on a cluster, an offset).
    pub async fn page(&self, cursor: Option<&str>, limit: usize) -> Page {
        let pattern = format!("{}:e:*", self.settings.prefix);
        let client = self.pool.next().with_options(&self.options);
        let (keys, next) = if client.is_clustered() {
            let skip: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
            let mut stream =
                std::pin::pin!(client.scan_cluster_buffered(pattern.as_str(), Some(1000), None));
            let mut keys = Vec::new();
            let mut seen = 0usize;
            while let Some(Ok(k)) = stream.next().await {
                seen += 1;
                if seen > skip {
                    keys.extend(k.as_str().map(str::to_string));
                }
                if keys.len() >= limit {
                    break;
                }
            }
            let next = (keys.len() >= limit).then(|| (skip + keys.len()).to_string());
            (keys, next)
        } else {
            let scan = CustomCommand::new_static("SCAN", None, false);
            let args: Vec<Value> = vec![
                cursor.unwrap_or("0").into(),
                "MATCH".into(),
                pattern.as_str().into(),
                "COUNT".into(),
                (limit.max(10) as i64).into(),
            ];
            let Ok((next, keys)) = self
                .call(
                    "scan",
                    client.custom::<(String, Vec<String>), Value>(scan, args),
                )
                .await
            else {
                return Page::default();
            };
            (keys, (next != "0").then_some(next))
        };
        Page {
            entries: self.peek_all(&keys).await,
            next,
        }
    }

    /// The index fields and size of each of `keys`' entries (pipelined).
    async fn peek_all(&self, keys: &[String]) -> Vec<Listed> {
        if keys.is_empty() {
            return Vec::new();
        }
        let client = self.pool.next();
        let read = async {
            let pipe = client.pipeline();
            for k in keys {
                let _: () = pipe.getrange(k.as_str(), 0, PEEK as usize).await?;
                let _: () = pipe.strlen(k.as_str()).await?;
            }
            pipe.all::<Vec<Value>>().await
        };
        let Ok(values) = self.call("peek", read).await else {
            return Vec::new();
        };
        let prefix = format!("{}:e:", self.settings.prefix);
        keys.iter()
            .zip(values.chunks(2))
            .filter_map(|(k, pair)| {
                let head: Bytes = pair.first()?.as_bytes().map(Bytes::copy_from_slice)?;
                let size = pair.get(1)?.as_u64()?;
                let peeked = Entry::peek(&head)?;
                Some(Listed {
                    key: CacheKey::from_hex(k.strip_prefix(&prefix)?)?,
                    url: peeked.url,
                    size,
                    expires_at: peeked.expires_at,
                })
            })
            .collect()
    }

    /// Reads Redis's memory figures, and counts larder's keys a slice at a time.
    pub(super) async fn poll_memory(&self) {
        let client = self.pool.next().with_options(&self.options);
        let memory = self
            .call("info", client.info::<String>(Some(InfoKind::Memory)))
            .await;
        let stats = self
            .call("info", client.info::<String>(Some(InfoKind::Stats)))
            .await;
        let (Ok(memory), Ok(stats)) = (memory, stats) else {
            return;
        };
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        let number = |text: &str, name: &str| {
            field(text, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let now = RedisMemory {
            used_bytes: number(&memory, "used_memory"),
            max_bytes: number(&memory, "maxmemory"),
            evicted_keys: number(&stats, "evicted_keys"),
            policy: field(&memory, "maxmemory_policy").unwrap_or_default(),
            keys: self.count_keys().await,
        };
        if !self.watch.warned.swap(true, Relaxed) {
            if now.max_bytes == 0 {
                tracing::warn!("redis has no maxmemory: it grows until the host runs out; set maxmemory and an LRU policy (see compose.yaml)");
            } else if now.policy == "noeviction" {
                tracing::warn!("redis evicts nothing (maxmemory-policy noeviction): writes fail once it is full; use allkeys-lru");
            }
        }
        *self.watch.last.lock() = Some(now);
    }

    /// One slice of an incremental `SCAN` count of larder's entries; the count of the last
    /// complete pass (on a cluster: not counted).
    async fn count_keys(&self) -> Option<u64> {
        let client = self.pool.next().with_options(&self.options);
        if client.is_clustered() {
            return None;
        }
        let pattern = format!("{}:*", self.settings.prefix);
        let (mut cursor, mut counted) = *self.watch.counting.lock();
        for _ in 0..100 {
            let scan = CustomCommand::new_static("SCAN", None, false);
            let args: Vec<Value> = vec![
                cursor.to_string().into(),
                "MATCH".into(),
                pattern.as_str().into(),
                "COUNT".into(),
                1000i64.into(),
            ];
            let Ok((next, keys)) = self
                .call(
                    "scan",
                    client.custom::<(String, Vec<Value>), Value>(scan, args),
                )
                .await
            else {
                break;
            };
            counted += keys.len() as u64;
            cursor = next.parse().unwrap_or(0);
            if cursor == 0 {
                self.watch.keys.store(counted, Relaxed);
                counted = 0;
                break;
            }
        }
        *self.watch.counting.lock() = (cursor, counted);
        let keys = self.watch.keys.load(Relaxed);
        (keys > 0 || cursor == 0).then_some(keys)
    }

    /// The last memory figures, if a poll went through.
    pub fn memory(&self) -> Option<RedisMemory> {
        self.watch.last.lock().clone()
    }
}

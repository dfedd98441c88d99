//! Invalidation on Redis: logged under a new epoch (one script), applied to the entries it
//! names, told to every instance, and queued while Redis is away to be replayed after.

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{
    ClientLike, KeysInterface, LuaInterface, PubsubInterface, SortedSetsInterface,
};
use fred::types::{Expiration, SetOptions, Value};
use futures_util::StreamExt;
use std::sync::atomic::Ordering::Relaxed;

use super::events::Event;
use super::scripts::INVALIDATE_SCRIPT;
use super::{RedisTier, Unavailable, LOG_KEEP};
use crate::entry::Entry;
use crate::store::disk::FleetLog;
use crate::store::Invalidation;
use crate::time::now_ms;

impl RedisTier {
    /// Invalidates (or with `soft`, marks stale) what `what` names, for every instance.
    /// Returns how many entries it touched in Redis, or `None` when Redis was unavailable
    /// (the invalidation is then queued and replayed when Redis is back).
    pub async fn invalidate(&self, what: &Invalidation, soft: bool) -> Option<u64> {
        match self.apply(what, soft).await {
            Ok(n) => {
                let event = if soft {
                    Event::Soften(what.clone())
                } else {
                    Event::Invalidate(what.clone())
                };
                self.publish(&event).await;
                self.confirm(None).await;
                Some(n)
            }
            Err(Unavailable) => {
                let mut pending = self.pending.lock();
                if pending.len() < 10_000 {
                    pending.push((what.clone(), soft));
                } else {
                    self.pending_overflow.store(true, Relaxed);
                }
                None
            }
        }
    }

    async fn apply(&self, what: &Invalidation, soft: bool) -> Result<u64, Unavailable> {
        let client = self.pool.next();
        if let (Invalidation::Tags(tags), false, false) = (what, soft, client.is_clustered()) {
            // O(1) whatever the tags' size: members set aside, swept in the background.
            return self.purge_tags(tags, what).await;
        }
        let mut members = what.log_members();
        members.push(LOG_KEEP.to_string());
        let keys = vec![self.epoch_key(), self.log_key()];
        let _: u64 = self
            .call(
                "log",
                client
                    .with_options(&self.options)
                    .eval(INVALIDATE_SCRIPT, keys, members),
            )
            .await?;
        let entry_keys = self.covered(what, client).await?;
        if soft {
            return self.soften(&entry_keys, client).await;
        }
        self.delete(&entry_keys).await
    }

    /// The keys of the entries `what` covers: a tag's members (read and the tag dropped);
    /// for the rest, the members of its candidate tags (a prefix's or pattern's directory,
    /// a conjunction's narrowest part), each checked; a scan only for everything or the
    /// root.
    async fn covered(
        &self,
        what: &Invalidation,
        client: &Client,
    ) -> Result<Vec<String>, Unavailable> {
        if let Invalidation::Tags(tags) = what {
            let mut out = Vec::new();
            for &t in tags {
                let members = self.members(t, client, true).await?;
                out.extend(members.iter().map(|m| self.member_key(m)));
            }
            return Ok(out);
        }
        if let Some(tags) = what.candidates() {
            let mut out = Vec::new();
            for &t in &tags {
                let members = self.members(t, client, false).await?;
                let keys: Vec<String> = members.iter().map(|m| self.member_key(m)).collect();
                out.extend(self.only_covered(what, keys).await?);
            }
            out.sort();
            out.dedup();
            return Ok(out);
        }
        let pattern = format!("{}:e:*", self.settings.prefix);
        let keys = self.call("scan", self.scan(&pattern)).await?;
        if matches!(what, Invalidation::All) {
            let tags = self
                .call("scan", self.scan(&format!("{}:t:*", self.settings.prefix)))
                .await?;
            self.delete(&tags).await?;
            return Ok(keys);
        }
        self.only_covered(what, keys).await
    }

    /// A tag's members (with `drop`, the tag goes too).
    async fn members(
        &self,
        tag: u64,
        client: &Client,
        drop: bool,
    ) -> Result<Vec<String>, Unavailable> {
        let tkey = self.tag_key(tag);
        if !drop {
            let read = client.zrange::<Vec<String>, _, _, _>(
                tkey.as_str(),
                0,
                -1,
                None,
                false,
                None,
                false,
            );
            return self.call("tag_members", read).await;
        }
        let collect = async {
            let pipe = client.pipeline();
            let _: () = pipe
                .zrange(tkey.as_str(), 0, -1, None, false, None, false)
                .await?;
            let _: () = pipe.del(tkey.as_str()).await?;
            let (members, _): (Vec<String>, i64) = pipe.all().await?;
            Ok::<_, fred::error::Error>(members)
        };
        self.call("tag_members", collect).await
    }

    fn member_key(&self, member: &str) -> String {
        format!("{}:e:{member}", self.settings.prefix)
    }

    /// Those of `keys` whose entries `what` covers (read in pipelined batches).
    async fn only_covered(
        &self,
        what: &Invalidation,
        keys: Vec<String>,
    ) -> Result<Vec<String>, Unavailable> {
        let client = self.pool.next();
        let mut out = Vec::new();
        for chunk in keys.chunks(256) {
            let read = async {
                let pipe = client.pipeline();
                for k in chunk {
                    let _: () = pipe.get(k.as_str()).await?;
                }
                pipe.all::<Vec<Option<Bytes>>>().await
            };
            let bodies = self.call("get", read).await?;
            for (k, bytes) in chunk.iter().zip(bodies) {
                let covered = bytes
                    .and_then(|b| Entry::decode(b).ok())
                    .is_some_and(|e| what.covers(&e));
                if covered {
                    out.push(k.clone());
                }
            }
        }
        Ok(out)
    }

    /// Marks the fresh entries of `keys` stale (their ttl kept); how many it marked.
    async fn soften(&self, keys: &[String], client: &Client) -> Result<u64, Unavailable> {
        let mut n = 0;
        let now = now_ms();
        for k in keys {
            let Some(e) = self.get_raw(k).await? else {
                continue;
            };
            if !e.is_fresh(now) || e.is_vary_marker() {
                continue;
            }
            let stale = e.expired_copy(now);
            let with = client.with_options(&self.options);
            let set = with.set::<(), _, _>(
                k.as_str(),
                stale.bytes().clone(),
                Some(Expiration::KEEPTTL),
                Some(SetOptions::XX),
                false,
            );
            self.call("soften", set).await?;
            n += 1;
        }
        Ok(n)
    }

    /// The invalidation log after epoch `since`, for a disk tier catching up; `None` when
    /// Redis does not answer.
    pub async fn fleet_log(&self, since: u64) -> Option<FleetLog> {
        let client = self.pool.next();
        let generation_key = format!("{{{}}}:gen", self.settings.prefix);
        let fresh = crate::key::hex(&crate::key::random_secret()[..8]);
        let read = async {
            let pipe = client.pipeline();
            // The log's generation: made once; a Redis that lost its data makes a new one.
            let _: () = pipe
                .set(
                    generation_key.as_str(),
                    fresh.as_str(),
                    None,
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            let _: () = pipe.get(generation_key.as_str()).await?;
            let _: () = pipe.get(self.epoch_key()).await?;
            let _: () = pipe
                .zrangebyscore(self.log_key(), format!("({since}"), "+inf", false, None)
                .await?;
            let _: () = pipe
                .zrange(self.log_key(), 0, 0, None, false, None, false)
                .await?;
            let _: () = pipe.zcard(self.log_key()).await?;
            #[allow(clippy::type_complexity)]
            let (_, generation, current, after, oldest, kept): (
                Value,
                Option<String>,
                Option<u64>,
                Vec<String>,
                Vec<String>,
                u64,
            ) = pipe.all().await?;
            Ok::<_, fred::error::Error>((generation, current.unwrap_or(0), after, oldest, kept))
        };
        let (generation, current, after, oldest, kept) = self.call("fleet_log", read).await.ok()?;
        let epoch_of = |m: &str| m.split_once(':').and_then(|(e, _)| e.parse::<u64>().ok());
        // Trimming drops the oldest members first: the log is whole after `since` if it
        // was never trimmed or still holds something at or before `since`.
        let complete = current >= since
            && (kept < LOG_KEEP
                || oldest
                    .first()
                    .and_then(|m| epoch_of(m))
                    .is_some_and(|e| e <= since));
        let items = after
            .iter()
            .map(|m| {
                let (epoch, member) = m.split_once(':').unwrap_or(("0", ""));
                let what = Invalidation::from_log_member(member).unwrap_or(Invalidation::All);
                (epoch.parse().unwrap_or(current), what)
            })
            .collect();
        Some(FleetLog {
            current,
            items,
            complete,
            generation: generation.unwrap_or(fresh),
        })
    }

    async fn get_raw(&self, full_key: &str) -> Result<Option<Entry>, Unavailable> {
        let client = self.pool.next().with_options(&self.options);
        let bytes: Option<Bytes> = self.call("get", client.get(full_key)).await?;
        Ok(bytes.and_then(|b| Entry::decode(b).ok()))
    }

    /// Deletes keys one command each (they live in different slots), pipelined.
    pub(super) async fn delete(&self, keys: &[String]) -> Result<u64, Unavailable> {
        let client = self.pool.next();
        let mut n = 0;
        for chunk in keys.chunks(256) {
            let run = async {
                let pipe = client.pipeline();
                for k in chunk {
                    let _: () = pipe.del(k.as_str()).await?;
                }
                let counts: Vec<i64> = pipe.all().await?;
                Ok::<_, fred::error::Error>(counts.iter().sum::<i64>())
            };
            n += self.call("delete", run).await? as u64;
        }
        Ok(n)
    }

    /// All keys matching `pattern`, on every primary of a cluster.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, fred::error::Error> {
        let client = self.pool.next();
        let mut out = Vec::new();
        if client.is_clustered() {
            let mut stream =
                std::pin::pin!(client.scan_cluster_buffered(pattern, Some(1000), None));
            while let Some(k) = stream.next().await {
                out.extend(k?.as_str().map(str::to_string));
            }
        } else {
            let mut stream = std::pin::pin!(client.scan_buffered(pattern, Some(1000), None));
            while let Some(k) = stream.next().await {
                out.extend(k?.as_str().map(str::to_string));
            }
        }
        Ok(out)
    }

    pub(super) async fn publish(&self, event: &Event) {
        let client = self.pool.next().with_options(&self.options);
        let _ = self
            .call(
                "publish",
                client.publish::<i64, _, _>(self.channel(), event.encode(&self.instance)),
            )
            .await;
    }

    /// Replays invalidations that could not reach Redis while it was away.
    pub(super) async fn replay(&self) {
        if self.pending_overflow.swap(false, Relaxed) {
            tracing::warn!("too many invalidations were missed while redis was away: purging it");
            self.pending.lock().clear();
            let _ = self.invalidate(&Invalidation::All, false).await;
            return;
        }
        let pending: Vec<(Invalidation, bool)> = std::mem::take(&mut *self.pending.lock());
        for (what, soft) in pending {
            let _ = self.invalidate(&what, soft).await;
        }
    }
}

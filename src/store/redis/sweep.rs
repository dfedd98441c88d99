//! Tag purges in O(1) on one Redis: the purge logs the tag under a new epoch and renames
//! its member set aside (`…:t:TAG` → `…:t:TAG:purging`, one script, whatever its size),
//! notes the tag in `{prefix}:purging`, and answers. Until a background sweep (every
//! instance takes part, `ZPOPMIN` shares the work, batches yield to traffic) has deleted
//! the set-aside entries, a read of an entry that carries a tag being purged asks whether
//! the entry is in that set (`ZSCORE`), and is a miss if it is.
//!
//! Why this design rather than per-tag generations stamped into every entry: the entry
//! format and the write path stay as they are, only reads of entries under a tag being
//! purged pay (one round trip, for seconds), and the set-aside members are exactly what
//! the purge covered — an entry filled after it goes into the fresh tag set, and a fill
//! that raced it is refused by the fill-epoch check as before.
//!
//! Every instance keeps the tags being purged in memory: added when a purge is heard (its
//! own, or another's event), confirmed against `{prefix}:purging` every second (that
//! removes swept tags). Until that set has been read once — at start, and after the event
//! channel was down — reads ask Redis first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::interfaces::{ClientLike, LuaInterface, SortedSetsInterface};
use fred::types::Value;
use parking_lot::Mutex;

use super::{RedisTier, Unavailable, LOG_KEEP};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::store::Invalidation;

/// Logs a purge of tags and sets their members aside. KEYS: epoch, log, the purging
/// set (tags by epoch), then each tag's set and its set-aside set. ARGV: how many log members (m), the
/// members, the log size, then each tag in hex. Returns {epoch, entries set aside}.
const PURGE_SCRIPT: &str = r"
local m = tonumber(ARGV[1])
local keep = tonumber(ARGV[m + 2])
local e = redis.call('INCR', KEYS[1])
for i = 2, m + 1 do redis.call('ZADD', KEYS[2], e, e .. ':' .. ARGV[i]) end
local n = redis.call('ZCARD', KEYS[2])
if n > keep then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - keep - 1) end
local count, t = 0, 0
for i = 4, #KEYS, 2 do
  t = t + 1
  local c = redis.call('ZCARD', KEYS[i])
  if c > 0 then
    count = count + c
    if redis.call('EXISTS', KEYS[i + 1]) == 1 then
      redis.call('ZUNIONSTORE', KEYS[i + 1], 2, KEYS[i + 1], KEYS[i])
      redis.call('DEL', KEYS[i])
    else
      redis.call('RENAME', KEYS[i], KEYS[i + 1])
    end
    redis.call('ZADD', KEYS[3], e, ARGV[m + 2 + t])
  end
end
return {e, count}
";

/// The stored value of an entry, or 0 when it is in one of the set-aside sets. KEYS: the
/// entry, the set-aside sets of its tags being purged. ARGV: the entry's member.
const CHECK_SCRIPT: &str = r"
for i = 2, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then return 0 end
end
return redis.call('GET', KEYS[1]) or 0
";

/// Forgets a swept tag, unless a later purge set members aside again. KEYS: the purging
/// set, the set-aside set. ARGV: the tag in hex.
const SWEPT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// The tags being purged, as this instance knows them.
#[derive(Debug, Default)]
pub(super) struct Purging {
    /// Tag → the count of notes when it was added (a refresh keeps what was added while
    /// it read Redis).
    tags: Mutex<HashMap<u64, u64>>,
    notes: AtomicU64,
    /// Whether `{prefix}:purging` has been read since start or the last event gap.
    loaded: AtomicBool,
    any: AtomicBool,
}

impl Purging {
    /// A purge of these tags was heard.
    pub(super) fn note(&self, tags: &[u64]) {
        let n = self.notes.fetch_add(1, SeqCst) + 1;
        let mut map = self.tags.lock();
        for &t in tags {
            map.insert(t, n);
        }
        self.any.store(true, SeqCst);
    }

    /// Events may have been missed: read the purging set again before trusting the map.
    pub(super) fn unload(&self) {
        self.loaded.store(false, SeqCst);
    }

    /// The tags of `entry` being purged.
    fn of(&self, entry: &Entry) -> Vec<u64> {
        if !self.any.load(SeqCst) {
            return Vec::new();
        }
        let map = self.tags.lock();
        entry.tags().filter(|t| map.contains_key(t)).collect()
    }
}

impl RedisTier {
    fn purging_key(&self) -> String {
        format!("{}:purging", self.settings.prefix)
    }

    fn set_aside_key(&self, tag: u64) -> String {
        format!("{}:t:{tag:016x}:purging", self.settings.prefix)
    }

    /// A hard purge of tags on one Redis: logged, the members set aside, the tags noted.
    /// Returns the entries set aside.
    pub(super) async fn purge_tags(
        &self,
        tags: &[u64],
        what: &Invalidation,
    ) -> Result<u64, Unavailable> {
        let client = self.pool.next();
        let members = what.log_members();
        let mut keys = vec![self.epoch_key(), self.log_key(), self.purging_key()];
        for &t in tags {
            keys.push(self.tag_key(t));
            keys.push(self.set_aside_key(t));
        }
        let mut args: Vec<String> = vec![members.len().to_string()];
        args.extend(members);
        args.push(LOG_KEEP.to_string());
        args.extend(tags.iter().map(|t| format!("{t:016x}")));
        let (_epoch, count): (u64, u64) = self
            .call(
                "purge",
                client
                    .with_options(&self.options)
                    .eval(PURGE_SCRIPT, keys, args),
            )
            .await?;
        self.purging.note(tags);
        self.sweep_now.notify_one();
        Ok(count)
    }

    /// Whether `entry` (stored under `key`) was set aside by a purge not yet swept: then
    /// it must not be served. Checked in one script after the read: the entry is served
    /// only if it is in no set-aside set and still the stored value (a sweep deletes an
    /// entry before it leaves the set, so a read racing the sweep sees one or the other).
    /// Unsure (Redis away) counts as set aside.
    pub(super) async fn set_aside(&self, key: &CacheKey, entry: &Entry) -> bool {
        if !self.purging.loaded.load(SeqCst) && self.refresh_purging().await.is_err() {
            return true;
        }
        let tags = self.purging.of(entry);
        if tags.is_empty() {
            return false;
        }
        let mut keys = vec![self.entry_key(key)];
        keys.extend(tags.iter().map(|&t| self.set_aside_key(t)));
        let client = self.pool.next().with_options(&self.options);
        let check = client.eval::<Value, _, _, _>(CHECK_SCRIPT, keys, vec![key.to_string()]);
        match self.call("purged", check).await {
            Ok(Value::Bytes(now)) => now != *entry.bytes(),
            Ok(Value::String(now)) => now.as_bytes() != &entry.bytes()[..],
            _ => true,
        }
    }

    /// Whether the tags being purged are known (read now if they are not).
    pub(super) async fn set_aside_known(&self) -> bool {
        self.purging.loaded.load(SeqCst) || self.refresh_purging().await.is_ok()
    }

    /// Reads `{prefix}:purging`: the tags still being purged. Tags noted meanwhile stay.
    async fn refresh_purging(&self) -> Result<Vec<u64>, Unavailable> {
        let started = self.purging.notes.load(SeqCst);
        let client = self.pool.next().with_options(&self.options);
        let read = client.zrange::<Vec<String>, _, _, _>(
            self.purging_key(),
            0,
            -1,
            None,
            false,
            None,
            false,
        );
        let tags: Vec<u64> = self
            .call("purging", read)
            .await?
            .iter()
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect();
        let mut map = self.purging.tags.lock();
        map.retain(|t, noted| tags.contains(t) || *noted > started);
        for &t in &tags {
            map.entry(t).or_insert(started);
        }
        self.purging.any.store(!map.is_empty(), SeqCst);
        self.purging.loaded.store(true, SeqCst);
        Ok(tags)
    }

    /// Deletes what a purge set aside for `tag`, a batch at a time, yielding between
    /// batches; then forgets the tag (unless a later purge set more aside). An entry
    /// leaves the set-aside set only after it is deleted, so a read never finds it in
    /// neither.
    async fn sweep(&self, tag: u64) -> Result<(), Unavailable> {
        let aside = self.set_aside_key(tag);
        loop {
            let client = self.pool.next();
            let batch = client.zrange::<Vec<String>, _, _, _>(
                aside.as_str(),
                0,
                255,
                None,
                false,
                None,
                false,
            );
            let members: Vec<String> = self.call("sweep", batch).await?;
            if members.is_empty() {
                break;
            }
            let keys: Vec<String> = members
                .iter()
                .map(|m| format!("{}:e:{m}", self.settings.prefix))
                .collect();
            self.delete(&keys).await?;
            let done = client.zrem::<i64, _, _>(aside.as_str(), members);
            self.call("sweep", done).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let client = self.pool.next().with_options(&self.options);
        let keys = vec![self.purging_key(), aside];
        let forget = client.eval::<i64, _, _, _>(SWEPT_SCRIPT, keys, vec![format!("{tag:016x}")]);
        self.call("swept", forget).await?;
        Ok(())
    }

    /// Every second (and at once after a purge): the tags being purged read again, and
    /// each swept.
    pub(super) fn start_sweeping(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(tier) = weak.upgrade() else { return };
                if let Ok(tags) = tier.refresh_purging().await {
                    for t in tags {
                        if tier.sweep(t).await.is_err() {
                            break;
                        }
                    }
                }
                let nudge = tier.sweep_now.clone();
                drop(tier);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = nudge.notified() => {}
                }
            }
        });
    }
}

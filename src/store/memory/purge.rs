//! Tag purges in O(1): the purge is logged and each tag noted with its epoch; from then on
//! a read of an entry that carries the tag and was filled before that epoch is a miss.
//! The entries themselves are removed right after on a blocking thread (and by the sweep
//! every few seconds), off the request path, and the tag forgotten once its older entries
//! are gone. Soft purges (`soften`) and the URLs a purge is about to drop (`urls_of`, for
//! re-warming) live here too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{weight, MemoryStore, Slot};
use crate::key::CacheKey;
use crate::store::Invalidation;

/// Tags purged whose older entries are not all removed yet: tag → the purge's epoch.
#[derive(Debug, Default)]
pub(super) struct Purged {
    tags: RwLock<HashMap<u64, u64>>,
    any: AtomicBool,
}

impl Purged {
    /// Whether `slot` was filled before a purge of one of its tags.
    pub(super) fn covers(&self, slot: &Slot) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        let tags = self.tags.read();
        slot.entry
            .tags()
            .any(|t| tags.get(&t).is_some_and(|&e| e > slot.epoch))
    }
}

impl MemoryStore {
    /// Purges `tags` at `epoch` (already logged): noted, not removed. Returns how many
    /// servable entries carry them (read from the tag index, nothing written).
    pub(super) fn purge_tags(&self, tags: &[u64], epoch: u64) -> u64 {
        let live = self
            .keys_for(&Invalidation::Tags(tags.to_vec()))
            .into_iter()
            .filter(|k| self.live(k))
            .count() as u64;
        self.note(tags, epoch);
        live
    }

    /// Notes a purge of `tags` again, at a new epoch (covering copies made since the first
    /// note); counts nothing.
    pub fn purge_again(&self, tags: &[u64]) -> u64 {
        let epoch = self.log_invalidation(&Invalidation::Tags(tags.to_vec()));
        self.note(tags, epoch);
        0
    }

    fn note(&self, tags: &[u64], epoch: u64) {
        let mut pending = self.purged.tags.write();
        for &t in tags {
            pending.insert(t, epoch);
        }
        self.purged.any.store(true, Relaxed);
    }

    /// Whether `key` holds an entry no purge has made unservable.
    pub(super) fn live(&self, key: &CacheKey) -> bool {
        let shard = self.shard(key).read();
        shard.map.get(key).is_some_and(|s| !self.purged.covers(s))
    }

    /// Reclaims a purge's entries soon, on a blocking thread (not on the request path).
    pub fn reclaim_soon(self: &Arc<Self>) {
        if !self.purged.any.load(Relaxed) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn_blocking(move || me.reclaim());
        }
    }

    /// Removes the entries purged tags made unservable, and forgets each tag whose older
    /// entries are all gone (unless it was purged again meanwhile). Returns how many.
    pub fn reclaim(&self) -> u64 {
        let pending: Vec<(u64, u64)> = self
            .purged
            .tags
            .read()
            .iter()
            .map(|(t, e)| (*t, *e))
            .collect();
        let mut removed = 0;
        for (tag, epoch) in pending {
            for key in self.keys_for(&Invalidation::Tags(vec![tag])) {
                removed += u64::from(self.remove_slot_if(key, |s| s.epoch < epoch).is_some());
            }
            let mut tags = self.purged.tags.write();
            if tags.get(&tag) == Some(&epoch) {
                tags.remove(&tag);
            }
            self.purged.any.store(!tags.is_empty(), Relaxed);
        }
        removed
    }

    /// The URLs of the entries `what` names (each once), for re-warming what an
    /// invalidation is about to drop.
    pub fn urls_of(&self, what: &Invalidation) -> Vec<String> {
        let mut urls: Vec<String> = self
            .keys_for(what)
            .into_iter()
            .filter_map(|k| {
                let shard = self.shard(&k).read();
                shard.map.get(&k).map(|slot| slot.entry.url().to_string())
            })
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Marks what `what` names stale instead of removing it (a soft purge): entries stay
    /// usable for revalidation and within their stale windows (e.g. `stale-if-error`)
    /// while they are refreshed. Returns how many.
    pub fn soften(&self, what: &Invalidation, now: u64) -> u64 {
        self.log_invalidation(what);
        let mut n = 0;
        for key in self.keys_for(what) {
            let mut shard = self.shard(&key).write();
            let Some(slot) = shard.map.get_mut(&key) else {
                continue;
            };
            if !slot.entry.is_fresh(now) || slot.entry.is_vary_marker() {
                continue;
            }
            let stale = Arc::new(slot.entry.expired_copy(now));
            self.bytes.fetch_add(weight(&stale), Relaxed);
            self.bytes.fetch_sub(weight(&slot.entry), Relaxed);
            slot.entry = stale;
            n += 1;
        }
        n
    }
}

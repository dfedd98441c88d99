//! Looking inside the memory store without holding it up: each entry's URL and size, one
//! URL's entries through the tag index, pages of entries by key.

use std::sync::Arc;

use super::{weight, MemoryStore};
use crate::entry::Entry;
use crate::key::CacheKey;

impl MemoryStore {
    /// Calls `f` with each entry's URL and stored size (a read lock per shard at a time).
    pub fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        for shard in self.shards.iter() {
            let s = shard.read();
            for slot in s.map.values().filter(|slot| !slot.entry.is_vary_marker()) {
                f(slot.entry.url(), weight(&slot.entry) as u64);
            }
        }
    }

    /// Up to `limit` entries carrying `tag` (through the tag index, directories
    /// included), with their keys.
    pub fn tagged(&self, tag: u64, limit: usize) -> Vec<(CacheKey, Arc<Entry>)> {
        let keys: Vec<CacheKey> = {
            let set = self.tag_shard(tag).lock();
            set.range((tag, CacheKey([0; 16]))..=(tag, CacheKey([0xff; 16])))
                .map(|(_, k)| *k)
                .take(limit)
                .collect()
        };
        keys.into_iter()
            .filter_map(|k| {
                let shard = self.shard(&k).read();
                shard.map.get(&k).map(|slot| (k, slot.entry.clone()))
            })
            .collect()
    }

    /// A page of up to `limit` entries after `after`, in key order (one short read lock
    /// per shard; no body is copied).
    pub fn list(
        &self,
        after: Option<CacheKey>,
        limit: usize,
    ) -> (Vec<crate::store::Listed>, Option<CacheKey>) {
        let mut all: Vec<crate::store::Listed> = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.read();
            all.extend(
                s.map
                    .iter()
                    .filter(|(k, slot)| {
                        after.is_none_or(|a| **k > a) && !slot.entry.is_vary_marker()
                    })
                    .map(|(k, slot)| crate::store::Listed {
                        key: *k,
                        url: slot.entry.url().to_string(),
                        size: slot.entry.bytes().len() as u64,
                        expires_at: slot.entry.expires_at(),
                    }),
            );
        }
        all.sort_unstable_by_key(|l| l.key);
        let more = all.len() > limit;
        all.truncate(limit);
        let next = more.then(|| all.last().map(|l| l.key)).flatten();
        (all, next)
    }
}

//! The in-process store: bounded by bytes, CLOCK eviction, per-entry expiry and a tag
//! index, sharded so a hit takes one shard's read lock for a hash lookup.
//!
//! - A hit marks the entry as visited (an atomic flag); eviction walks a per-shard FIFO
//!   and gives visited entries a second chance (CLOCK, an LRU approximation that costs
//!   the hit path no lock upgrade and no list move).
//! - The tag index maps `(tag, key)` pairs in B-trees, so invalidating a tag costs its
//!   entries, not a scan of the store.
//! - Every invalidation is logged with an epoch; a fill that started before a matching
//!   invalidation is refused, so an in-flight fetch cannot resurrect invalidated data.
//!
//! ```
//! use std::sync::Arc;
//! use larder::entry::{Entry, NewEntry, StoredBody};
//! use larder::key::CacheKey;
//! use larder::policy::Freshness;
//! use larder::store::{Invalidation, MemoryStore};
//!
//! let store = MemoryStore::new(1 << 20);
//! let headers = http::HeaderMap::new();
//! let entry = Arc::new(Entry::encode(&NewEntry {
//!     status: http::StatusCode::OK,
//!     headers: &headers,
//!     body: StoredBody::Identity(b"hi"),
//!     url: "/a",
//!     tags: &[42],
//!     freshness: Freshness { lifetime_ms: 60_000, ..Freshness::default() },
//!     response_time: larder::policy::now_ms(),
//!     vary: None,
//! }));
//! let key = CacheKey([1; 16]);
//! let fill = store.begin_fill();
//! assert!(store.insert(key, entry, fill));
//! assert!(store.get(&key, larder::policy::now_ms()).is_some());
//! assert_eq!(store.invalidate(&Invalidation::Tags(vec![42])), 1);
//! assert!(store.get(&key, larder::policy::now_ms()).is_none());
//! ```

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

mod hasher;
mod inspect;
mod purge;

use super::{FillToken, Invalidation, InvalidationLog, StoreStats};
use crate::entry::Entry;
use crate::key::CacheKey;
pub(crate) use hasher::KeyHasherBuilder;

/// Per-entry bookkeeping counted against the byte bound (map slot, FIFO slot, allocator).
const SLOT_OVERHEAD: usize = 96;
/// Per-tag bookkeeping (one B-tree element and its share of a node).
const TAG_OVERHEAD: usize = 40;
/// How many invalidations are remembered for the fill-race check.
const LOG_CAPACITY: usize = 4096;

type KeyMap<V> = HashMap<CacheKey, V, KeyHasherBuilder>;

/// `(tag, key)` pairs: a tag's keys are one range.
type TagIndex = BTreeSet<(u64, CacheKey)>;

struct Slot {
    entry: Arc<Entry>,
    /// The invalidation epoch when its fill began: a later purge of one of its tags makes
    /// it unservable at once (see `purge`).
    epoch: u64,
    visited: AtomicBool,
    /// An earlier end than the entry's own (seconds since the epoch; 0: none), for an L1
    /// in front of Redis with a shorter ttl.
    until: u32,
}

#[derive(Default)]
struct Shard {
    map: KeyMap<Slot>,
    fifo: VecDeque<CacheKey>,
}

impl Shard {
    fn compact_fifo(&mut self) {
        if self.fifo.len() <= 2 * self.map.len() + 64 {
            return;
        }
        let mut seen: HashSet<CacheKey, KeyHasherBuilder> =
            HashSet::with_hasher(KeyHasherBuilder(self.map.hasher().0));
        let map = &self.map;
        self.fifo.retain(|k| map.contains_key(k) && seen.insert(*k));
    }
}

/// The bounded in-process store.
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    tags: Box<[Mutex<TagIndex>]>,
    max_bytes: usize,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    evictions: AtomicU64,
    hand: AtomicUsize,
    log: Mutex<InvalidationLog>,
    purged: purge::Purged,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish()
    }
}

fn weight(entry: &Entry) -> usize {
    entry.weight() + SLOT_OVERHEAD + entry.tags().count() * TAG_OVERHEAD
}

/// What the tag index finds an entry by: its tags, and its path's directories (a URL
/// prefix or a pattern finds it through them, whoever made the entry).
fn index_ids(entry: &Entry) -> Vec<u64> {
    let mut ids: Vec<u64> = entry.tags().collect();
    for id in crate::key::path_prefix_ids(entry.url()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

impl MemoryStore {
    /// A store holding at most `max_bytes` (entries, headers, bodies and bookkeeping).
    pub fn new(max_bytes: u64) -> MemoryStore {
        let shards = 64;
        MemoryStore {
            shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
            tags: (0..16).map(|_| Mutex::new(BTreeSet::new())).collect(),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            hand: AtomicUsize::new(0),
            log: Mutex::new(InvalidationLog::new(LOG_CAPACITY)),
            purged: purge::Purged::default(),
        }
    }

    fn shard(&self, key: &CacheKey) -> &RwLock<Shard> {
        &self.shards[key.0[15] as usize % self.shards.len()]
    }

    fn tag_shard(&self, tag: u64) -> &Mutex<TagIndex> {
        &self.tags[(tag >> 60) as usize % self.tags.len()]
    }

    /// The largest entry the store accepts (an eighth of the bound).
    pub fn max_entry(&self) -> usize {
        self.max_bytes / 8
    }

    /// Looks up `key`; entries past their expiry (`now`, ms) are treated as absent.
    pub fn get(&self, key: &CacheKey, now: u64) -> Option<Arc<Entry>> {
        let shard = self.shard(key).read();
        let slot = shard.map.get(key)?;
        if slot.entry.expires_at() <= now
            || (slot.until != 0 && (slot.until as u64) * 1000 <= now)
            || self.purged.covers(slot)
        {
            return None;
        }
        if !slot.visited.load(Ordering::Relaxed) {
            slot.visited.store(true, Ordering::Relaxed);
        }
        Some(slot.entry.clone())
    }

    /// Keeps the decoded body of a gzip entry that is still stored under `key`, counting
    /// it against the bound (done under the shard's lock, so removal sees the same weight).
    pub fn keep_decoded(&self, key: &CacheKey, entry: &Arc<Entry>) {
        let added = {
            let shard = self.shard(key).read();
            match shard.map.get(key) {
                Some(slot) if Arc::ptr_eq(&slot.entry, entry) => entry.keep_decoded(),
                _ => 0,
            }
        };
        if added > 0 {
            self.bytes.fetch_add(added, Ordering::Relaxed);
            while self.bytes.load(Ordering::Relaxed) > self.max_bytes {
                if !self.evict_some() {
                    break;
                }
            }
        }
    }

    /// Starts a fill: remember the invalidation epoch before going upstream.
    pub fn begin_fill(&self) -> FillToken {
        FillToken(self.log.lock().epoch())
    }

    // Every change to a shard's map and the matching changes to the tag index and the
    // counters happen while that shard is write-locked (lock order: shard, then tag
    // shard), so a refill racing a removal can never lose or leak a tag or a byte.

    fn register_tags(&self, key: CacheKey, entry: &Entry) {
        for t in index_ids(entry) {
            self.tag_shard(t).lock().insert((t, key));
        }
    }

    /// Bookkeeping for an entry that just left its (still locked) shard.
    fn forget_locked(&self, key: CacheKey, entry: &Entry) {
        for t in index_ids(entry) {
            self.tag_shard(t).lock().remove(&(t, key));
        }
        self.bytes.fetch_sub(weight(entry), Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stores `entry` under `key` unless an invalidation that matches it happened since
    /// `fill` began; returns whether it was stored.
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>, fill: FillToken) -> bool {
        self.insert_until(key, entry, fill, None)
    }

    /// [`MemoryStore::insert`], treating the entry as gone at `until` (ms since the
    /// epoch) if that comes before its own expiry.
    pub fn insert_until(
        &self,
        key: CacheKey,
        entry: Arc<Entry>,
        fill: FillToken,
        until: Option<u64>,
    ) -> bool {
        let w = weight(&entry);
        if w > self.max_entry() {
            return false;
        }
        {
            let mut shard = self.shard(&key).write();
            let old = shard.map.insert(
                key,
                Slot {
                    entry: entry.clone(),
                    epoch: fill.0,
                    visited: AtomicBool::new(false),
                    until: until.map_or(0, |ms| (ms / 1000).min(u32::MAX as u64) as u32),
                },
            );
            self.register_tags(key, &entry);
            self.bytes.fetch_add(w, Ordering::Relaxed);
            match &old {
                Some(old) => {
                    self.bytes.fetch_sub(weight(&old.entry), Ordering::Relaxed);
                    let keep = index_ids(&entry);
                    for t in index_ids(&old.entry)
                        .into_iter()
                        .filter(|t| !keep.contains(t))
                    {
                        self.tag_shard(t).lock().remove(&(t, key));
                    }
                }
                None => {
                    self.entries.fetch_add(1, Ordering::Relaxed);
                    shard.fifo.push_back(key);
                    shard.compact_fifo();
                }
            }
        }
        if self.invalidated_since(fill, &entry) {
            self.remove_if(key, |e| Arc::ptr_eq(e, &entry));
            return false;
        }
        while self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            if !self.evict_some() {
                break;
            }
        }
        true
    }

    fn invalidated_since(&self, fill: FillToken, entry: &Entry) -> bool {
        let tags: Vec<u64> = entry.tags().collect();
        self.log
            .lock()
            .invalidated_since(fill.0, &tags, entry.url())
    }

    /// Removes `key` if its slot satisfies `pred`; returns the removed entry.
    fn remove_slot_if(
        &self,
        key: CacheKey,
        pred: impl FnOnce(&Slot) -> bool,
    ) -> Option<Arc<Entry>> {
        let mut shard = self.shard(&key).write();
        let removed = match shard.map.get(&key) {
            Some(slot) if pred(slot) => shard.map.remove(&key).map(|s| s.entry),
            _ => None,
        };
        if let Some(e) = &removed {
            self.forget_locked(key, e);
        }
        removed
    }

    /// Removes `key` if its entry satisfies `pred`; returns the removed entry.
    fn remove_if(
        &self,
        key: CacheKey,
        pred: impl FnOnce(&Arc<Entry>) -> bool,
    ) -> Option<Arc<Entry>> {
        self.remove_slot_if(key, |slot| pred(&slot.entry))
    }

    /// Removes one key.
    pub fn remove(&self, key: &CacheKey) -> bool {
        self.remove_if(*key, |_| true).is_some()
    }

    /// Evicts from the next shard under the clock hand; false if the store is empty.
    fn evict_some(&self) -> bool {
        for _ in 0..self.shards.len() {
            let i = self.hand.fetch_add(1, Ordering::Relaxed) % self.shards.len();
            let victim = {
                let mut shard = self.shards[i].write();
                let mut found = None;
                // One turn of the clock: visited entries get their second chance and the
                // hand moves on to the next shard rather than coming back to them.
                let mut budget = shard.fifo.len();
                while budget > 0 {
                    budget -= 1;
                    let Some(k) = shard.fifo.pop_front() else {
                        break;
                    };
                    let Some(slot) = shard.map.get(&k) else {
                        continue;
                    };
                    if slot.visited.swap(false, Ordering::Relaxed) {
                        shard.fifo.push_back(k);
                        continue;
                    }
                    found = shard.map.remove(&k).map(|s| (k, s.entry));
                    break;
                }
                if let Some((k, e)) = &found {
                    self.forget_locked(*k, e);
                }
                found
            };
            if victim.is_some() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// The keys of the entries `what` names: candidates through the tag index (a tag, a
    /// prefix's or a pattern's directory, the narrowest part of a conjunction), checked
    /// against all of it; a walk only for everything or the root.
    fn keys_for(&self, what: &Invalidation) -> Vec<CacheKey> {
        let mut keys = Vec::new();
        let Some(tags) = what.candidates() else {
            for shard in self.shards.iter() {
                let s = shard.read();
                keys.extend(
                    s.map
                        .iter()
                        .filter(|(_, slot)| {
                            matches!(what, Invalidation::All) || what.covers(&slot.entry)
                        })
                        .map(|(k, _)| *k),
                );
            }
            return keys;
        };
        for &t in &tags {
            let set = self.tag_shard(t).lock();
            keys.extend(
                set.range((t, CacheKey([0; 16]))..=(t, CacheKey([0xff; 16])))
                    .map(|(_, k)| *k),
            );
        }
        keys.sort();
        keys.dedup();
        if !matches!(what, Invalidation::Tags(_)) {
            keys.retain(|k| {
                let shard = self.shard(k).read();
                shard
                    .map
                    .get(k)
                    .is_some_and(|slot| what.covers(&slot.entry))
            });
        }
        keys
    }

    fn log_invalidation(&self, what: &Invalidation) -> u64 {
        self.log.lock().record(what.clone())
    }

    /// Removes what `what` names; returns how many entries were removed.
    pub fn invalidate(&self, what: &Invalidation) -> u64 {
        let epoch = self.log_invalidation(what);
        match what {
            Invalidation::All => self.remove_matching(|_| true),
            // O(1) whatever the tags' size: noted now, removed by the next sweep.
            Invalidation::Tags(tags) => self.purge_tags(tags, epoch),
            // Counted: what was servable (a purged entry not yet reclaimed is not).
            _ => self
                .keys_for(what)
                .into_iter()
                .filter(|k| self.live(k) & self.remove(k))
                .count() as u64,
        }
    }

    fn remove_matching(&self, pred: impl Fn(&Entry) -> bool) -> u64 {
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut s = shard.write();
            let keys: Vec<CacheKey> = s
                .map
                .iter()
                .filter(|(_, slot)| pred(&slot.entry))
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                if let Some(slot) = s.map.remove(&k) {
                    self.forget_locked(k, &slot.entry);
                    n += 1;
                }
            }
        }
        n
    }

    /// Drops entries whose expiry has passed; returns how many.
    pub fn sweep(&self, now: u64) -> u64 {
        self.remove_matching(|e| e.expires_at() <= now) + self.reclaim()
    }

    /// Entries, bytes and evictions.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.entries.load(Ordering::Relaxed) as u64,
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
            max_bytes: self.max_bytes as u64,
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The `n` entries with the most hits: `(url, hits, bytes)`.
    pub fn top(&self, n: usize) -> Vec<(String, u32, usize)> {
        let mut all: Vec<(String, u32, usize)> = Vec::new();
        for shard in self.shards.iter() {
            let s = shard.read();
            for slot in s.map.values() {
                if !slot.entry.is_vary_marker() && slot.entry.hits() > 0 {
                    all.push((
                        slot.entry.url().to_string(),
                        slot.entry.hits(),
                        slot.entry.bytes().len(),
                    ));
                }
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.1));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{NewEntry, StoredBody};
    use crate::policy::{now_ms, Freshness};

    fn entry(url: &str, tags: &[u64], body: &[u8]) -> Arc<Entry> {
        entry_with(url, tags, body, 0)
    }

    fn entry_with(url: &str, tags: &[u64], body: &[u8], stale_if_error: u32) -> Arc<Entry> {
        let headers = http::HeaderMap::new();
        Arc::new(Entry::encode(&NewEntry {
            status: http::StatusCode::OK,
            headers: &headers,
            body: StoredBody::Identity(body),
            url,
            tags,
            freshness: Freshness {
                lifetime_ms: 60_000,
                stale_if_error,
                ..Freshness::default()
            },
            response_time: now_ms(),
            vary: None,
        }))
    }

    fn key(i: u32) -> CacheKey {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[15] = (i % 251) as u8;
        CacheKey(blake3::hash(&k).as_bytes()[..16].try_into().unwrap())
    }

    #[test]
    fn bounded_by_bytes_and_counts_evictions() {
        let store = MemoryStore::new(1 << 20);
        let body = vec![b'x'; 1000];
        for i in 0..5000 {
            store.insert(key(i), entry("/a", &[], &body), store.begin_fill());
        }
        let s = store.stats();
        assert!(s.bytes <= 1 << 20, "{s:?}");
        assert!(s.evictions > 3000, "{s:?}");
        assert_eq!(s.entries + s.evictions, 5000);
    }

    #[test]
    fn visited_entries_survive_eviction() {
        let store = MemoryStore::new(1 << 20);
        let body = vec![b'x'; 1000];
        let hot = key(999_999);
        store.insert(hot, entry("/hot", &[], &body), store.begin_fill());
        for i in 0..20_000 {
            assert!(
                store.get(&hot, now_ms()).is_some(),
                "hot key evicted at {i}"
            );
            store.insert(key(i), entry("/cold", &[], &body), store.begin_fill());
        }
    }

    #[test]
    fn tags_prefix_and_purge() {
        let store = MemoryStore::new(1 << 20);
        let fill = store.begin_fill();
        store.insert(key(1), entry("/jobs/1", &[1, 9], b"a"), fill);
        store.insert(key(2), entry("/jobs/2", &[2, 9], b"b"), fill);
        store.insert(key(3), entry("/other", &[3], b"c"), fill);
        assert_eq!(store.invalidate(&Invalidation::Tags(vec![1])), 1);
        assert_eq!(store.invalidate(&Invalidation::Tags(vec![9])), 1);
        assert_eq!(store.invalidate(&Invalidation::Tags(vec![9])), 0);
        store.insert(key(4), entry("/jobs/4", &[], b"d"), store.begin_fill());
        assert_eq!(store.invalidate(&Invalidation::Prefix("/jobs/".into())), 1);
        assert_eq!(store.invalidate(&Invalidation::All), 1);
        assert_eq!(store.stats().entries, 0);
        assert_eq!(store.stats().bytes, 0);
    }

    #[test]
    fn fill_racing_an_invalidation_is_refused() {
        let store = MemoryStore::new(1 << 20);
        let fill = store.begin_fill();
        store.invalidate(&Invalidation::Tags(vec![7]));
        assert!(!store.insert(key(1), entry("/j", &[7], b"old"), fill));
        assert!(store.get(&key(1), now_ms()).is_none());
        // A different tag does not block the fill.
        assert!(store.insert(key(2), entry("/k", &[8], b"ok"), fill));
        // A fill that began after the invalidation is fine.
        assert!(store.insert(key(1), entry("/j", &[7], b"new"), store.begin_fill()));
    }

    #[test]
    fn soft_purge_keeps_entries_stale() {
        let store = MemoryStore::new(1 << 20);
        store.insert(
            key(1),
            entry_with("/a", &[1], b"v1", 600),
            store.begin_fill(),
        );
        store.insert(key(2), entry("/b", &[2], b"v2"), store.begin_fill());
        let now = now_ms();
        assert_eq!(store.soften(&Invalidation::Tags(vec![1]), now), 1);
        let e = store.get(&key(1), now).expect("still stored");
        assert!(!e.is_fresh(now));
        assert!(store.get(&key(2), now).unwrap().is_fresh(now));
        assert_eq!(store.stats().entries, 2);
        // A fill that began before the soft purge is refused like after a hard one.
        let fill = store.begin_fill();
        store.soften(&Invalidation::Tags(vec![2]), now);
        assert!(!store.insert(key(2), entry("/b", &[2], b"old"), fill));
    }

    #[test]
    fn replacing_an_entry_moves_its_tags() {
        let store = MemoryStore::new(1 << 20);
        store.insert(key(1), entry("/a", &[1], b"v1"), store.begin_fill());
        store.insert(key(1), entry("/a", &[2], b"v2"), store.begin_fill());
        assert_eq!(store.invalidate(&Invalidation::Tags(vec![1])), 0);
        assert_eq!(store.invalidate(&Invalidation::Tags(vec![2])), 1);
        // Purged at once, reclaimed by the next sweep.
        assert!(store.get(&key(1), now_ms()).is_none());
        assert_eq!(store.stats().entries, 1);
        assert_eq!(store.reclaim(), 1);
        assert_eq!(store.stats().entries, 0);
    }

    #[test]
    fn sweep_drops_expired() {
        let store = MemoryStore::new(1 << 20);
        store.insert(key(1), entry("/a", &[1], b"v1"), store.begin_fill());
        assert_eq!(store.sweep(now_ms()), 0);
        assert_eq!(store.sweep(now_ms() + 120_000), 1);
        assert!(store.tags.iter().all(|t| t.lock().is_empty()));
    }
}

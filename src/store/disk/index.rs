//! The disk tier's directory, in memory: where each key's newest record is, with what an
//! expiry or an invalidation needs to know without reading the record (its expiry, tags
//! and URL), and which keys each segment holds so a deleted segment drops them at once.

use std::collections::{BTreeMap, HashMap};

use super::super::memory::KeyHasherBuilder;
use crate::key::CacheKey;
use crate::store::Invalidation;

/// Where one key's newest record lives.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub seg: u32,
    pub offset: u64,
    /// Bytes of the whole record.
    pub total: u32,
    /// Its sequence number (later writes and invalidations have higher ones).
    pub seq: u64,
    /// Redis's invalidation epoch when its fill began (0 without Redis).
    pub fleet: u64,
    pub expires_at: u64,
    pub tags: Box<[u64]>,
    pub url: Box<str>,
}

impl Slot {
    fn covered_by(&self, what: &Invalidation) -> bool {
        what.matches(&self.tags, &self.url)
    }
}

/// Which invalidation a slot is tested against.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scope {
    /// Every entry written before the invalidation (by sequence number).
    Before(u64),
    /// Every entry written before `seq` whose fill began before fleet epoch `epoch`.
    FleetBefore { seq: u64, epoch: u64 },
}

impl Scope {
    fn holds(self, slot: &Slot) -> bool {
        match self {
            Scope::Before(seq) => slot.seq < seq,
            Scope::FleetBefore { seq, epoch } => slot.seq < seq && slot.fleet < epoch,
        }
    }
}

/// The directory.
#[derive(Default)]
pub(super) struct Index {
    map: HashMap<CacheKey, Slot, KeyHasherBuilder>,
    /// Keys written to each segment (some since overwritten or dropped).
    by_segment: BTreeMap<u32, Vec<CacheKey>>,
    /// Bytes of the records the directory points to.
    live: u64,
}

impl Index {
    /// Entries it points to.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of the records it points to.
    pub fn live_bytes(&self) -> u64 {
        self.live
    }

    pub fn get(&self, key: &CacheKey) -> Option<&Slot> {
        self.map.get(key)
    }

    /// Points `key` at a new record, unless it already points at a newer one.
    pub fn insert(&mut self, key: CacheKey, slot: Slot) {
        if self.map.get(&key).is_some_and(|old| old.seq > slot.seq) {
            return;
        }
        self.by_segment.entry(slot.seg).or_default().push(key);
        self.live += u64::from(slot.total);
        if let Some(old) = self.map.insert(key, slot) {
            self.live -= u64::from(old.total);
        }
    }

    pub fn remove(&mut self, key: &CacheKey) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.live -= u64::from(slot.total);
        Some(slot)
    }

    /// Drops what segment `id` held; returns how many entries that was.
    pub fn drop_segment(&mut self, id: u32) -> u64 {
        let Some(keys) = self.by_segment.remove(&id) else {
            return 0;
        };
        let mut n = 0;
        for key in keys {
            if self.map.get(&key).is_some_and(|s| s.seg == id) {
                self.remove(&key);
                n += 1;
            }
        }
        n
    }

    /// Calls `f` with each entry's URL and record size.
    pub fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        for s in self.map.values() {
            f(&s.url, u64::from(s.total));
        }
    }

    /// Up to `limit` keys whose entries carry `tag`.
    pub fn tagged(&self, tag: u64, limit: usize) -> Vec<CacheKey> {
        self.map
            .iter()
            .filter(|(_, s)| s.tags.contains(&tag))
            .map(|(k, _)| *k)
            .take(limit)
            .collect()
    }

    /// A page of up to `limit` entries after `after`, in key order.
    pub fn page(
        &self,
        after: Option<CacheKey>,
        limit: usize,
    ) -> (Vec<crate::store::Listed>, Option<CacheKey>) {
        let mut all: Vec<crate::store::Listed> = self
            .map
            .iter()
            .filter(|(k, _)| after.is_none_or(|a| **k > a))
            .map(|(k, s)| crate::store::Listed {
                key: *k,
                url: s.url.to_string(),
                size: u64::from(s.total),
                expires_at: s.expires_at,
            })
            .collect();
        all.sort_unstable_by_key(|l| l.key);
        let more = all.len() > limit;
        all.truncate(limit);
        let next = more.then(|| all.last().map(|l| l.key)).flatten();
        (all, next)
    }

    /// The keys `what` covers, with the fleet epoch each was filled under.
    pub fn covered(&self, what: &Invalidation) -> Vec<(CacheKey, u64)> {
        self.map
            .iter()
            .filter(|(_, s)| s.covered_by(what))
            .map(|(k, s)| (*k, s.fleet))
            .collect()
    }

    /// Drops every entry `what` covers within `scope`; returns how many.
    pub fn invalidate(&mut self, what: &Invalidation, scope: Scope) -> u64 {
        let doomed: Vec<CacheKey> = self
            .map
            .iter()
            .filter(|(_, s)| scope.holds(s) && s.covered_by(what))
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            self.remove(key);
        }
        doomed.len() as u64
    }

    /// Drops every entry an earlier invalidation covers (the journal's lines, replayed at
    /// start): one pass over the entries, the invalidations grouped by what they name.
    pub fn replay<'a>(&mut self, lines: impl Iterator<Item = (Scope, &'a Invalidation)>) {
        let mut all = Vec::new();
        let mut tags: HashMap<u64, Vec<Scope>> = HashMap::new();
        let mut prefixes = Vec::new();
        let mut others = Vec::new();
        for (scope, what) in lines {
            match what {
                Invalidation::All => all.push(scope),
                Invalidation::Tags(ts) => {
                    for t in ts {
                        tags.entry(*t).or_default().push(scope);
                    }
                }
                Invalidation::Prefix(p) => prefixes.push((scope, p.as_str())),
                Invalidation::Pattern(_) | Invalidation::Every(_) | Invalidation::Any(_) => {
                    others.push((scope, what))
                }
            }
        }
        let doomed: Vec<CacheKey> = self
            .map
            .iter()
            .filter(|(_, s)| {
                all.iter().any(|sc| sc.holds(s))
                    || s.tags
                        .iter()
                        .filter_map(|t| tags.get(t))
                        .any(|scopes| scopes.iter().any(|sc| sc.holds(s)))
                    || prefixes
                        .iter()
                        .any(|(sc, p)| sc.holds(s) && s.url.starts_with(p))
                    || others.iter().any(|(sc, w)| sc.holds(s) && s.covered_by(w))
            })
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            self.remove(key);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.by_segment.clear();
        self.live = 0;
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let before = self.map.len();
        let mut freed = 0;
        self.map.retain(|_, s| {
            let keep = s.expires_at > now;
            if !keep {
                freed += u64::from(s.total);
            }
            keep
        });
        self.live -= freed;
        (before - self.map.len()) as u64
    }

    /// Forgets keys of a segment list that no longer point there (after churn).
    pub fn tidy(&mut self) {
        let map = &self.map;
        for (id, keys) in self.by_segment.iter_mut() {
            keys.retain(|k| map.get(k).is_some_and(|s| s.seg == *id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(seg: u32, seq: u64, fleet: u64, tags: &[u64], url: &str) -> Slot {
        Slot {
            seg,
            offset: 0,
            total: 100,
            seq,
            fleet,
            expires_at: u64::MAX,
            tags: tags.into(),
            url: url.into(),
        }
    }

    #[test]
    fn newer_records_win_and_scopes_spare_later_writes() {
        let mut index = Index::default();
        let (a, b) = (CacheKey([1; 16]), CacheKey([2; 16]));
        index.insert(a, slot(0, 5, 0, &[7], "/a"));
        index.insert(a, slot(0, 3, 0, &[7], "/a"));
        assert_eq!(index.get(&a).map(|s| s.seq), Some(5));
        index.insert(b, slot(1, 9, 4, &[7], "/b"));
        assert_eq!(index.live_bytes(), 200);
        // An invalidation at sequence 6 drops `a` (written before it), not `b`.
        assert_eq!(
            index.invalidate(&Invalidation::Tags(vec![7]), Scope::Before(6)),
            1
        );
        assert!(index.get(&a).is_none() && index.get(&b).is_some());
        // A fleet invalidation at epoch 4 spares a fill that began at epoch 4.
        assert_eq!(
            index.invalidate(&Invalidation::All, Scope::FleetBefore { seq: 99, epoch: 4 }),
            0
        );
        assert_eq!(
            index.invalidate(&Invalidation::All, Scope::FleetBefore { seq: 99, epoch: 5 }),
            1
        );
        assert_eq!((index.len(), index.live_bytes()), (0, 0));
    }

    #[test]
    fn a_dropped_segment_takes_only_what_still_points_there() {
        let mut index = Index::default();
        let (a, b) = (CacheKey([1; 16]), CacheKey([2; 16]));
        index.insert(a, slot(0, 1, 0, &[], "/a"));
        index.insert(b, slot(0, 2, 0, &[], "/b"));
        index.insert(a, slot(1, 3, 0, &[], "/a"));
        assert_eq!(index.drop_segment(0), 1);
        assert_eq!(index.get(&a).map(|s| s.seg), Some(1));
        assert!(index.get(&b).is_none());
    }
}

//! The persistent tier on local disk: entries survive restarts and crashes, and nothing
//! invalidated comes back.
//!
//! What lives in `[store.disk].path`:
//! - numbered segment files (`00000001.seg`, …) holding entry records back to back (see
//!   [`record`]: magic, format version, CRC-32, sequence number). Records are only ever
//!   appended; when the tier is over `max`, the oldest segment is deleted (a circular log,
//!   as in Traffic Server), so a write is one sequential append and eviction one unlink;
//! - `journal.log`, every invalidation the tier acknowledged, made durable before the
//!   acknowledgement and replayed at start;
//! - `lock`, held (`flock`) while a process uses the directory.
//!
//! The directory of keys lives in memory ([`index`]). At start it is rebuilt from each
//! record's header and the entry's first bytes (expiry, tags, URL), not from the bodies,
//! whose checksums are verified when they are read; a torn tail (a crash mid-append) is
//! cut off. Then the journal drops what it covers.
//!
//! Writes: `write = "through"` appends and syncs (`fdatasync`) before the fill is
//! acknowledged, concurrent fills sharing one sync; `"back"` queues the entry (readers see
//! it at once) and a flush every 100 ms appends and syncs the queue.
//!
//! Failures: a record whose checksum, key or sequence number does not match is a miss
//! (counted); a failed write or sync (a full or read-only disk) disables the tier: it drops
//! its entries, the cache serves from memory, Redis and the upstream, `/health` says
//! `degraded`, and a probe brings the tier back, empty, once the disk has room and takes
//! writes again.

mod fleet;
mod index;
mod journal;
mod lifecycle;
mod load;
pub mod record;
mod segments;
mod write;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

pub use fleet::FleetLog;
use index::{Index, Slot};
use journal::Journal;
use record::{Kind, Record, HEADER};
use segments::Segment;

use super::memory::KeyHasherBuilder;
use super::{BoxFuture, Invalidation, InvalidationLog, LowerTier, Page, TierReport, Write};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::status::Tier;
use crate::time::now_ms;

/// When a write to the disk tier is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// On disk (synced) before the fill completes.
    Through,
    /// Queued, and on disk within about 100 ms.
    Back,
}

/// Settings of the disk tier.
#[derive(Clone, Debug)]
pub struct DiskSettings {
    /// The directory it keeps its files in (created if absent).
    pub path: PathBuf,
    /// Bound of its files in bytes.
    pub max: u64,
    /// When a write is durable.
    pub write: WriteMode,
    /// The Redis whose invalidation log it follows, if any (a name for it; the tier waits
    /// for the log before serving).
    pub fleet: Option<String>,
}

/// How many recent invalidations the fill check remembers.
const RECENT: usize = 4096;

/// The persistent tier (see the [module docs](self)).
pub struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max: u64,
    write: WriteMode,
    segment_size: u64,
    fleet: Option<String>,
    state: Mutex<State>,
    /// Taken only where `state` is not held.
    journal: Mutex<Journal>,
    /// One batch of writes (or a purge) at a time.
    flushing: tokio::sync::Mutex<()>,
    /// False once a write failed, until the probe brings the tier back.
    up: AtomicBool,
    /// False until the fleet's invalidation log is applied (true at once without Redis).
    ready: watch::Sender<bool>,
    counters: Counters,
    /// Held for the tier's life: one process per directory.
    _lock: File,
}

#[derive(Default)]
struct Counters {
    corrupt: AtomicU64,
    errors: AtomicU64,
    evictions: AtomicU64,
    writes: AtomicU64,
}

struct State {
    index: Index,
    /// Oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    /// Write-back entries not yet on disk, by key (readers look here first).
    pending: HashMap<CacheKey, (u64, Arc<Entry>), KeyHasherBuilder>,
    /// Writes waiting for the next flush.
    queue: Vec<Queued>,
    /// Recent invalidations, for the fill check.
    log: InvalidationLog,
    next_seq: u64,
    /// The fleet epoch the journal has applied up to.
    watermark: u64,
    /// The generation of the Redis log the watermark counts in (a Redis that lost its log
    /// starts a new one).
    generation: Option<String>,
    /// Whether the journal holds a watermark for this fleet (until it does, a restart
    /// cannot tell what it missed).
    marked: bool,
}

/// A write waiting for a flush.
struct Queued {
    key: CacheKey,
    entry: Arc<Entry>,
    seq: u64,
    fleet: u64,
    /// The fill's starting point in `State::log`.
    epoch: u64,
}

fn store_error(dir: &Path, what: &str, e: io::Error) -> crate::Error {
    crate::Error::Store(format!("store.disk.path {}: {what}: {e}", dir.display()))
}

/// Takes the directory's lock, so two processes never append to the same files. A holder
/// that is still shutting down (a restart) gets two seconds to let go.
fn lock_dir(dir: &Path) -> Result<File, crate::Error> {
    let file = File::create(dir.join("lock")).map_err(|e| store_error(dir, "lock", e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(crate::Error::Store(format!(
                    "store.disk.path {}: in use by another larder process",
                    dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(store_error(dir, "lock", e)),
        }
    }
}

impl DiskTier {
    /// Opens (or creates) the tier in `settings.path`: reads the directory back from the
    /// segments, cuts a torn tail, replays the journal. Blocks while it reads.
    pub fn open(settings: DiskSettings) -> Result<DiskTier, crate::Error> {
        let dir = settings.path.clone();
        std::fs::create_dir_all(&dir).map_err(|e| store_error(&dir, "create", e))?;
        let lock = lock_dir(&dir)?;
        let segment_size = (settings.max / 16).clamp(256 << 10, 64 << 20);
        let loaded = load::Loaded::read(&dir, settings.max, settings.fleet.as_deref())
            .map_err(|e| store_error(&dir, "read", e))?;
        let ready = settings.fleet.is_none();
        let inner = Arc::new(Inner {
            dir,
            max: settings.max,
            write: settings.write,
            segment_size,
            fleet: settings.fleet,
            state: Mutex::new(State {
                index: loaded.index,
                segments: loaded.segments,
                pending: HashMap::default(),
                queue: Vec::new(),
                log: InvalidationLog::new(RECENT),
                next_seq: loaded.next_seq,
                watermark: loaded.watermark.as_ref().map_or(0, |w| w.0),
                generation: loaded.watermark.as_ref().and_then(|w| w.1.clone()),
                marked: loaded.watermark.is_some(),
            }),
            journal: Mutex::new(loaded.journal),
            flushing: tokio::sync::Mutex::new(()),
            up: AtomicBool::new(true),
            ready: watch::channel(ready).0,
            counters: Counters {
                corrupt: AtomicU64::new(loaded.corrupt),
                ..Counters::default()
            },
            _lock: lock,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(maintain(Arc::downgrade(&inner)));
        }
        Ok(DiskTier { inner })
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        let st = self.inner.state.lock();
        st.index.len() + st.pending.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops serving until the next catch-up with the fleet (after a gap in the fleet's
    /// events, when invalidations may have been missed).
    pub fn suspend(&self) {
        self.inner.ready.send_replace(false);
    }

    /// Writes everything queued and syncs it (at shutdown).
    pub async fn flush(&self) {
        self.inner.flush().await;
    }
}

impl Inner {
    fn usable(&self) -> bool {
        self.up.load(Relaxed) && *self.ready.borrow()
    }

    /// Reads `key`'s record and checks it; a damaged one is dropped and counted.
    fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        if !self.usable() {
            return None;
        }
        let (file, slot) = {
            let mut st = self.state.lock();
            if let Some((_, entry)) = st.pending.get(key) {
                return Some(entry.clone());
            }
            let slot = st.index.get(key)?.clone();
            if slot.expires_at <= now_ms() {
                st.index.remove(key);
                return None;
            }
            let at = st.segments.binary_search_by_key(&slot.seg, |s| s.id).ok()?;
            (st.segments[at].file.clone(), slot)
        };
        match read_entry(&file, key, &slot) {
            Some(entry) => Some(Arc::new(entry)),
            None => {
                self.drop_damaged(key, Some(slot.seq));
                None
            }
        }
    }

    /// Counts a record that cannot be served (its bytes damaged, or an entry that is not
    /// what its key stands for) and drops it from the directory (only the record with
    /// sequence number `seq`, when given: a newer write stays).
    fn drop_damaged(&self, key: &CacheKey, seq: Option<u64>) {
        self.counters.corrupt.fetch_add(1, Relaxed);
        tracing::warn!(key = %key, "a damaged record on disk: dropped, served as a miss");
        let mut st = self.state.lock();
        if st
            .index
            .get(key)
            .is_some_and(|s| seq.is_none_or(|q| s.seq == q))
        {
            st.index.remove(key);
        }
        st.pending.remove(key);
    }
}

impl State {
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Drops queued write-back entries `what` covers; returns how many.
    fn drop_pending(&mut self, what: &Invalidation) -> u64 {
        let before = self.pending.len();
        self.pending
            .retain(|_, (_, e)| !what.matches(&e.tags().collect::<Vec<_>>(), e.url()));
        (before - self.pending.len()) as u64
    }

    fn clear(&mut self) {
        self.index.clear();
        self.pending.clear();
        self.queue.clear();
    }
}

/// Reads and checks one record: its checksum, then that it is the key's and the one the
/// directory points to, then the entry inside.
fn read_entry(file: &File, key: &CacheKey, slot: &Slot) -> Option<Entry> {
    let mut buf = vec![0u8; slot.total as usize];
    file.read_exact_at(&mut buf, slot.offset).ok()?;
    let header = Record::verify(&buf).ok()?;
    if header.kind != Kind::Entry || header.key != key.0 || header.seq != slot.seq {
        return None;
    }
    Entry::decode(Bytes::from(buf).slice(HEADER..)).ok()
}

/// The tier's housekeeping: write-back flushes, expiry, journal compaction, and the probe
/// that brings a disabled tier back.
async fn maintain(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let Some(inner) = inner.upgrade() else { return };
        if inner.up.load(Relaxed) {
            // (A fill waiting for its write flushes itself; this is for write-back.)
            if !inner.state.lock().queue.is_empty() {
                inner.flush().await;
            }
            if n.is_multiple_of(300) {
                inner.tidy().await;
            }
        } else if n.is_multiple_of(50) {
            inner.probe().await;
        }
    }
}

impl LowerTier for DiskTier {
    fn tier(&self) -> Tier {
        Tier::DISK
    }

    fn section(&self) -> &'static str {
        "disk"
    }

    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>> {
        // Reads are served inline: a record in the page cache is a copy of microseconds,
        // far less than handing it to a blocking thread.
        let found = self.inner.get(key);
        Box::pin(std::future::ready(found))
    }

    fn reject(&self, key: &CacheKey) {
        self.inner.drop_damaged(key, None);
    }

    fn begin_fill(&self) -> BoxFuture<'_, Option<u64>> {
        let token = self
            .inner
            .usable()
            .then(|| self.inner.state.lock().log.epoch());
        Box::pin(std::future::ready(token))
    }

    fn put<'a>(&'a self, w: Write<'a>) -> BoxFuture<'a, bool> {
        Box::pin(self.inner.put(w))
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation, soft: bool) -> BoxFuture<'a, Option<u64>> {
        if soft {
            return Box::pin(self.inner.soften(what));
        }
        Box::pin(self.inner.invalidate(what))
    }

    fn report(&self) -> TierReport {
        self.inner.report()
    }

    fn each_entry(&self, f: &mut dyn FnMut(&str, u64)) {
        self.inner.state.lock().index.each(f);
    }

    fn tagged(&self, tag: u64, limit: usize) -> BoxFuture<'_, Vec<(CacheKey, Arc<Entry>)>> {
        let keys = self.inner.state.lock().index.tagged(tag, limit);
        let found = keys
            .into_iter()
            .filter_map(|k| self.inner.get(&k).map(|e| (k, e)))
            .collect();
        Box::pin(std::future::ready(found))
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> BoxFuture<'a, Page> {
        let after = cursor.and_then(CacheKey::from_hex);
        let (entries, next) = self.inner.state.lock().index.page(after, limit);
        Box::pin(std::future::ready(Page {
            entries,
            next: next.map(|k| k.to_string()),
        }))
    }

    fn wait_ready(&self, limit: Duration) -> BoxFuture<'_, bool> {
        let mut ready = self.inner.ready.subscribe();
        Box::pin(async move {
            tokio::time::timeout(limit, ready.wait_for(|r| *r))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.flush())
    }

    fn keep<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        let path = kept_path(&self.inner.dir, name);
        Box::pin(async move {
            let Some(path) = path else { return };
            let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes));
            if let Ok(Err(e)) = written.await {
                tracing::debug!(error = %e, "the disk tier could not keep a record");
            }
        })
    }

    fn kept<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let path = kept_path(&self.inner.dir, name);
        Box::pin(async move {
            let path = path?;
            tokio::task::spawn_blocking(move || std::fs::read(path).ok())
                .await
                .ok()
                .flatten()
        })
    }
}

/// Where a kept record lives (`<name>.kept`; plain names only).
fn kept_path(dir: &Path, name: &str) -> Option<PathBuf> {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        .then(|| dir.join(format!("{name}.kept")))
}

/// Replaces a file's contents so that a crash leaves the old contents or the new.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A temporary name of its own: two writers never share one.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Relaxed);
    let tmp = path.with_extension(format!("kept.{}.{n}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        segments::sync_dir(dir)?;
    }
    Ok(())
}

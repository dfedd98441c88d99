//! Invalidations, purges, failure and recovery: the operations that change what the tier
//! may serve. Each runs in a task of its own, so a caller that goes away (a client that
//! disconnects mid-request) neither cuts it short nor loses its error; writes, purges and
//! the probe also hold `flushing`, so at most one of them touches the files at a time.
//!
//! Every one of them records what it drops in the fill check (`State::log`) before anything
//! else, so a fill that began earlier cannot store what it dropped — not even across a
//! failure and the probe that brings the tier back.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::index::Scope;
use super::journal::Line;
use super::{segments, Inner};
use crate::store::Invalidation;

impl Inner {
    /// Runs `job` to the end in a task of its own and returns its result.
    async fn detached<T, F>(self: &Arc<Self>, job: impl FnOnce(Arc<Inner>) -> F) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = Option<T>> + Send + 'static,
    {
        tokio::spawn(job(self.clone())).await.ok().flatten()
    }

    /// Runs blocking `job` while holding `flushing`, to the end; a failure disables the
    /// tier.
    pub(super) async fn exclusive<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        job: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Option<T> {
        self.detached(move |me| async move {
            let _one = me.flushing.lock().await;
            let worker = me.clone();
            match tokio::task::spawn_blocking(move || job(&worker)).await {
                Ok(Ok(v)) => Some(v),
                Ok(Err(e)) => {
                    me.fail(what, e);
                    None
                }
                Err(_) => None,
            }
        })
        .await
    }

    /// Applies an invalidation durably: out of the directory at once, in the journal before
    /// this returns. `None` when the journal could not be written (the tier is then
    /// disabled and its files dropped).
    pub(super) async fn invalidate(self: &Arc<Self>, what: &Invalidation) -> Option<u64> {
        if !self.up.load(Relaxed) {
            // Nothing is served or kept; a fill in flight must still not store it.
            self.state.lock().log.record(what.clone());
            return Some(0);
        }
        if matches!(what, Invalidation::All) {
            return self.exclusive("purge", |me| me.purge()).await;
        }
        let (seq, n) = {
            let mut st = self.state.lock();
            let seq = st.take_seq();
            st.log.record(what.clone());
            let n = st.index.invalidate(what, Scope::Before(seq));
            (seq, n + st.drop_pending(what))
        };
        let line = Line::Local(what.clone());
        self.detached(move |me| async move {
            let worker = me.clone();
            let appended = tokio::task::spawn_blocking(move || {
                worker.journal.lock().append(vec![(seq, line)])
            })
            .await;
            match appended {
                Ok(Ok(())) => Some(n),
                Ok(Err(e)) => {
                    me.fail("journal", e);
                    None
                }
                Err(_) => None,
            }
        })
        .await
    }

    /// Marks what `what` covers stale (a soft purge): each fresh entry is written again as
    /// a copy whose freshness ends now, so after a restart too it is served only to
    /// revalidate or within its stale windows. While the tier is down, it drops instead
    /// (a copy it could not mark must not come back fresh).
    pub(super) async fn soften(self: &Arc<Self>, what: &Invalidation) -> Option<u64> {
        if !self.usable() {
            return self.invalidate(what).await;
        }
        let (covered, epoch) = {
            let st = self.state.lock();
            (st.index.covered(what), st.log.epoch())
        };
        let now = crate::time::now_ms();
        let mut n = 0;
        for (key, fleet) in covered {
            // Read inline, as lookups are (a record in the page cache is a copy).
            let Some(entry) = self.get(&key) else {
                continue;
            };
            if !entry.is_fresh(now) || entry.is_vary_marker() {
                continue;
            }
            let stale = Arc::new(entry.expired_copy(now));
            let w = crate::store::Write {
                key: &key,
                entry: &stale,
                epoch,
                fleet: Some(fleet),
                durable: false,
            };
            if self.put(w).await {
                n += 1;
            }
        }
        Some(n)
    }

    /// Drops everything: the journal says so (durably) first, then the segments go.
    fn purge(&self) -> io::Result<u64> {
        let seq = {
            let mut st = self.state.lock();
            st.log.record(Invalidation::All);
            st.take_seq()
        };
        self.journal
            .lock()
            .append(vec![(seq, Line::Local(Invalidation::All))])?;
        let (old, next, n) = {
            let mut st = self.state.lock();
            let n = (st.index.len() + st.pending.len()) as u64;
            st.clear();
            let next = st.next_segment()?;
            let old: Vec<u32> = st.segments.drain(..).map(|s| s.id).collect();
            (old, next, n)
        };
        let fresh = segments::open(&self.dir, next)?;
        self.state.lock().segments.push_back(fresh);
        segments::remove(&self.dir, &old)?;
        self.journal.lock().compact(|s, _| s >= seq)?;
        Ok(n)
    }

    /// A write failed: the tier stops serving, refuses fills in flight, and drops its
    /// files (every segment in the directory, if it still can).
    pub(super) fn fail(&self, what: &str, e: io::Error) {
        self.counters.errors.fetch_add(1, Relaxed);
        if self.up.swap(false, Relaxed) {
            tracing::error!(error = %e, op = what, dir = %self.dir.display(),
                "the disk tier failed a write: disabled until the disk takes writes again");
        }
        let mut ids: Vec<u32> = {
            let mut st = self.state.lock();
            st.log.record(Invalidation::All);
            st.clear();
            st.segments.drain(..).map(|s| s.id).collect()
        };
        ids.extend(segments::list(&self.dir).unwrap_or_default());
        let dir = self.dir.clone();
        let remove = move || {
            if let Err(e) = segments::remove(&dir, &ids) {
                tracing::warn!(error = %e, "the disk tier could not delete its segments");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }

    /// Brings a disabled tier back, empty, once the disk has room (twice a segment) and
    /// takes writes: every segment deleted, the journal rewritten from scratch.
    pub(super) async fn probe(self: &Arc<Self>) {
        let back = self
            .detached(move |me| async move {
                let _one = me.flushing.lock().await;
                let worker = me.clone();
                tokio::task::spawn_blocking(move || worker.try_probe().ok())
                    .await
                    .ok()
                    .flatten()
            })
            .await;
        if back.is_some() {
            tracing::info!(dir = %self.dir.display(), "the disk tier takes writes again");
        }
    }

    fn try_probe(&self) -> io::Result<()> {
        if segments::free_bytes(&self.dir)? < 2 * self.segment_size {
            return Err(io::Error::other("not enough free space"));
        }
        let ids = segments::list(&self.dir)?;
        segments::remove(&self.dir, &ids)?;
        let (seq, next) = {
            let mut st = self.state.lock();
            st.log.record(Invalidation::All);
            st.clear();
            let next = st.next_segment()?.max(ids.last().map_or(1, |l| l + 1));
            st.segments.clear();
            (st.take_seq(), next)
        };
        let mut journal = self.journal.lock();
        journal.compact(|_, _| false)?;
        journal.append(vec![(seq, Line::Local(Invalidation::All))])?;
        let fresh = segments::open(&self.dir, next)?;
        self.state.lock().segments.push_back(fresh);
        self.up.store(true, Relaxed);
        Ok(())
    }
}

impl Inner {
    /// How the tier is doing.
    pub(super) fn report(&self) -> crate::store::TierReport {
        let up = self.up.load(Relaxed);
        let st = self.state.lock();
        let bytes: u64 = st.segments.iter().map(|s| s.len).sum();
        crate::store::TierReport {
            status: match (up, *self.ready.borrow()) {
                (false, _) => "down",
                (true, false) => "starting",
                (true, true) => "up",
            },
            breaker: if up { "closed" } else { "open" },
            breaker_opened: 0,
            errors: self.counters.errors.load(Relaxed),
            disk: Some(crate::store::DiskReport {
                entries: (st.index.len() + st.pending.len()) as u64,
                bytes,
                live_bytes: st.index.live_bytes(),
                max_bytes: self.max,
                corrupt: self.counters.corrupt.load(Relaxed),
                evictions: self.counters.evictions.load(Relaxed),
                writes: self.counters.writes.load(Relaxed),
            }),
            memory: None,
        }
    }
}

//! The write side: a fill queues its entry under a sequence number; a flush reserves room
//! for the queue in the active segment (opening the next one when it is full), writes each
//! run of records with one call, syncs, and only then points the directory at them. The
//! oldest segments go when the tier is over its bound, and the journal loses the lines no
//! record on disk is older than.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::index::Slot;
use super::journal::Line;
use super::record::{Kind, Record, HEADER, MAX_PAYLOAD};
use super::{segments, Inner, Queued, State, WriteMode};
use crate::store::Write;
use crate::time::now_ms;

/// Where one queued record goes.
struct Placed {
    seg: u32,
    offset: u64,
    file: Arc<File>,
    write: Queued,
}

impl Inner {
    /// Stores `entry` unless something it carries was invalidated since `epoch`. Through:
    /// returns once it is on disk; back: once it is queued.
    pub(super) async fn put(self: &Arc<Self>, w: Write<'_>) -> bool {
        let Write {
            key,
            entry,
            epoch,
            fleet,
            durable,
        } = w;
        let total = HEADER + entry.bytes().len();
        if !self.usable()
            || total as u64 > self.max / 2
            || total > MAX_PAYLOAD
            || entry.expires_at() <= now_ms()
        {
            return false;
        }
        let tags: Vec<u64> = entry.tags().collect();
        let seq = {
            let mut st = self.state.lock();
            if st.log.invalidated_since(epoch, &tags, entry.url()) {
                return false;
            }
            let seq = st.take_seq();
            // Without the fleet's epoch at the fill, the last one applied: a fleet
            // invalidation not yet applied then drops this entry too.
            let fleet = fleet.unwrap_or(st.watermark);
            st.queue.push(Queued {
                key: *key,
                entry: entry.clone(),
                seq,
                fleet,
                epoch,
            });
            if self.write == WriteMode::Back {
                st.pending.insert(*key, (seq, entry.clone()));
            }
            seq
        };
        if self.write == WriteMode::Back && !durable {
            return true;
        }
        self.flush().await;
        self.state
            .lock()
            .index
            .get(key)
            .is_some_and(|s| s.seq == seq)
    }

    /// Writes and syncs everything queued (one batch at a time; a fill waiting for its
    /// write shares the sync of whatever batch carries it).
    pub(super) async fn flush(self: &Arc<Self>) {
        self.exclusive("write", |me| {
            let batch = std::mem::take(&mut me.state.lock().queue);
            if batch.is_empty() {
                return Ok(());
            }
            me.write_batch(batch)
        })
        .await;
    }

    fn write_batch(&self, batch: Vec<Queued>) -> std::io::Result<()> {
        let (placed, created) = {
            let mut st = self.state.lock();
            let mut created = false;
            let mut placed = Vec::with_capacity(batch.len());
            for write in batch {
                let total = (HEADER + write.entry.bytes().len()) as u64;
                let (seg, offset, file, new) =
                    st.reserve(&self.dir, self.segment_size, total, write.seq)?;
                created |= new;
                placed.push(Placed {
                    seg,
                    offset,
                    file,
                    write,
                });
            }
            (placed, created)
        };
        write_runs(&placed)?;
        if created {
            segments::sync_dir(&self.dir)?;
        }
        self.counters.writes.fetch_add(placed.len() as u64, Relaxed);
        let evicted = {
            let mut st = self.state.lock();
            // A tier that failed meanwhile points at nothing (the probe starts it empty).
            let up = self.up.load(Relaxed);
            for p in placed.into_iter().filter(|_| up) {
                st.point_at(p, self.write);
            }
            let (ids, dropped) = st.evict(self.max);
            self.counters.evictions.fetch_add(dropped, Relaxed);
            ids
        };
        if !evicted.is_empty() {
            segments::remove(&self.dir, &evicted)?;
            self.compact_journal()?;
        }
        Ok(())
    }

    /// Drops expired entries from the directory and journal lines nothing needs.
    pub(super) async fn tidy(self: &Arc<Self>) {
        self.exclusive("journal", |me| {
            {
                let mut st = me.state.lock();
                st.index.expire(now_ms());
                st.index.tidy();
            }
            me.compact_journal()
        })
        .await;
    }

    /// Rewrites the journal without the lines older than every record on disk or queued
    /// (they cover nothing any more).
    pub(super) fn compact_journal(&self) -> std::io::Result<()> {
        let floor = {
            let st = self.state.lock();
            let on_disk = st.segments.iter().map(|s| s.min_seq);
            let queued = st.queue.iter().map(|q| q.seq);
            on_disk.chain(queued).min().unwrap_or(st.next_seq)
        };
        let mut journal = self.journal.lock();
        // The anchor and the last watermark are always kept: they alone do not call for a
        // rewrite.
        let stale = |(seq, line): &(u64, Line)| *seq <= floor && !line.is_kept();
        if journal.lines().iter().any(stale) {
            journal.compact(|seq, _| seq > floor)?;
        }
        Ok(())
    }
}

/// Writes the records, one call per run of records adjacent in one file, then syncs each
/// file written.
fn write_runs(placed: &[Placed]) -> std::io::Result<()> {
    let mut runs: Vec<(&Arc<File>, u64, Vec<u8>)> = Vec::new();
    for p in placed {
        let w = &p.write;
        let adjacent = runs.last().is_some_and(|(f, start, buf)| {
            Arc::ptr_eq(f, &p.file) && start + buf.len() as u64 == p.offset
        });
        if !adjacent {
            runs.push((&p.file, p.offset, Vec::new()));
        }
        if let Some((_, _, buf)) = runs.last_mut() {
            Record::encode_into(buf, Kind::Entry, w.seq, w.fleet, &w.key.0, w.entry.bytes());
        }
    }
    for (file, offset, buf) in &runs {
        file.write_all_at(buf, *offset)?;
    }
    let mut synced: Vec<&Arc<File>> = Vec::new();
    for (file, _, _) in &runs {
        if !synced.iter().any(|f| Arc::ptr_eq(f, file)) {
            file.sync_data()?;
            synced.push(file);
        }
    }
    Ok(())
}

impl State {
    /// Room for a record of `total` bytes at the end of the active segment (opening the
    /// next segment first if it would not fit); whether a segment was created.
    fn reserve(
        &mut self,
        dir: &Path,
        segment_size: u64,
        total: u64,
        seq: u64,
    ) -> std::io::Result<(u32, u64, Arc<File>, bool)> {
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.len > 0 && s.len + total > segment_size);
        if full {
            let next = self.next_segment()?;
            self.segments.push_back(segments::open(dir, next)?);
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(std::io::Error::other("no segment to append to"));
        };
        let offset = seg.len;
        seg.len += total;
        seg.min_seq = seg.min_seq.min(seq);
        Ok((seg.id, offset, seg.file.clone(), full))
    }

    /// Points the directory at a record just written — unless a newer write of the key
    /// is queued, or it was invalidated while it was being written.
    fn point_at(&mut self, p: Placed, mode: WriteMode) {
        let w = p.write;
        if mode == WriteMode::Back {
            if self.pending.get(&w.key).is_none_or(|(s, _)| *s != w.seq) {
                return;
            }
            self.pending.remove(&w.key);
        }
        let tags: Vec<u64> = w.entry.tags().collect();
        if self.log.invalidated_since(w.epoch, &tags, w.entry.url()) {
            return;
        }
        self.index.insert(
            w.key,
            Slot {
                seg: p.seg,
                offset: p.offset,
                total: (HEADER + w.entry.bytes().len()) as u32,
                seq: w.seq,
                fleet: w.fleet,
                expires_at: w.entry.expires_at(),
                tags: tags.into(),
                url: w.entry.url().into(),
            },
        );
    }

    /// The id of the next segment.
    pub(super) fn next_segment(&self) -> std::io::Result<u32> {
        let next = self.segments.back().map_or(1, |s| s.id + 1);
        if next > segments::MAX_ID {
            return Err(std::io::Error::other("segment ids exhausted"));
        }
        Ok(next)
    }

    /// Deletes the oldest segments while the files are over `max` (the active one stays);
    /// returns their ids and how many entries went with them.
    fn evict(&mut self, max: u64) -> (Vec<u32>, u64) {
        let mut total: u64 = self.segments.iter().map(|s| s.len).sum();
        let mut ids = Vec::new();
        let mut dropped = 0;
        while total > max && self.segments.len() > 1 {
            let Some(oldest) = self.segments.pop_front() else {
                break;
            };
            total -= oldest.len;
            dropped += self.index.drop_segment(oldest.id);
            ids.push(oldest.id);
        }
        (ids, dropped)
    }
}

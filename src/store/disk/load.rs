//! Start: the directory rebuilt from the segments (a torn tail cut off), the journal
//! replayed over it, expired entries dropped. A damaged journal, a journal that lost its
//! anchor (deleted or emptied beside segments holding records), or a disk tier that
//! followed no Redis (or another one) now asked to follow one, starts empty: what it
//! missed cannot be known.
//!
//! What start reads is bounded by `[store.disk] max`, not by what the directory holds:
//! the newest segments that fit are kept, older ones (they would be evicted at once) are
//! deleted unread. A record claiming a sequence number no tier could have reached is
//! damage, and so is a record whose index fields run past what any entry needs.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use super::index::{Index, Scope, Slot};
use super::journal::{Journal, Line, Opened};
use super::record::MAX_SEQ;
use super::segments::{self, Segment};
use crate::key::CacheKey;
use crate::store::Invalidation;
use crate::time::now_ms;

/// What a disk tier finds at start.
pub(super) struct Loaded {
    pub index: Index,
    pub segments: VecDeque<Segment>,
    pub journal: Journal,
    pub next_seq: u64,
    /// The fleet epoch the journal applied up to and the generation of the log it counts
    /// in, if it followed this fleet.
    pub watermark: Option<(u64, Option<String>)>,
    /// Damaged records or files found.
    pub corrupt: u64,
}

impl Loaded {
    /// Reads the tier in `dir` (at most `max` bytes of segments); `fleet` names the Redis
    /// it is to follow, if any.
    pub fn read(dir: &Path, max: u64, fleet: Option<&str>) -> io::Result<Loaded> {
        let Opened {
            mut journal,
            damaged,
        } = Journal::open(dir)?;
        let ids = within_bound(dir, segments::list(dir)?, max)?;
        let Scanned {
            mut index,
            mut segs,
            max_seq,
            corrupt: damaged_records,
        } = scan_segments(dir, &ids)?;
        let mut corrupt = u64::from(damaged) + damaged_records;
        let journal_seq = journal.lines().iter().map(|(s, _)| *s).max().unwrap_or(0);
        // Both are at most MAX_SEQ (larger ones are damage), so this cannot wrap.
        let mut next_seq = max_seq.max(journal_seq).saturating_add(1);
        let followed = journal.watermark().and_then(|(epoch, mark)| {
            let (name, generation) = match mark.split_once('@') {
                Some((n, g)) => (n, Some(g.to_string())),
                None => (mark, None),
            };
            (Some(name) == fleet).then_some((epoch, generation))
        });
        let watermark = followed.clone();
        let unfollowed = fleet.is_some() && followed.is_none() && index.len() > 0;
        // Records on disk and no anchor: the journal that covered them is gone.
        let unanchored = !journal.anchored() && max_seq > 0;
        if damaged || unfollowed || unanchored {
            tracing::warn!(
                damaged_journal = damaged,
                lost_journal = unanchored,
                "the disk tier cannot tell what was invalidated while it was away: starting it empty"
            );
            corrupt += u64::from(unanchored);
            index.clear();
            let ids: Vec<u32> = segs.drain(..).map(|s| s.id).collect();
            segments::remove(dir, &ids)?;
            journal.compact(|_, _| false)?;
        } else {
            index.replay(
                journal
                    .lines()
                    .iter()
                    .filter_map(|(seq, line)| scoped(*seq, line)),
            );
        }
        if !journal.anchored() {
            journal.append(vec![(next_seq, Line::Anchor(now_ms()))])?;
            next_seq += 1;
        }
        index.expire(now_ms());
        if segs.is_empty() {
            let next = ids.last().map_or(1, |id| id + 1);
            if next > segments::MAX_ID {
                return Err(io::Error::other("segment ids exhausted"));
            }
            segs.push_back(segments::open(dir, next)?);
        }
        Ok(Loaded {
            index,
            segments: segs,
            journal,
            next_seq,
            watermark,
            corrupt,
        })
    }
}

/// What the segments hold.
struct Scanned {
    index: Index,
    segs: VecDeque<Segment>,
    /// The highest sequence number of a sound record.
    max_seq: u64,
    /// Damaged records and segments.
    corrupt: u64,
}

/// Reads the segments `ids` (oldest first) into a directory: a torn tail of the last one
/// is cut off, damage elsewhere drops what follows it in that segment.
fn scan_segments(dir: &Path, ids: &[u32]) -> io::Result<Scanned> {
    let mut out = Scanned {
        index: Index::default(),
        segs: VecDeque::new(),
        max_seq: 0,
        corrupt: 0,
    };
    for (i, &id) in ids.iter().enumerate() {
        let mut seg = segments::open(dir, id)?;
        let mut min_seq = u64::MAX;
        let good = segments::scan(&seg, |f| {
            if f.seq > MAX_SEQ {
                out.corrupt += 1;
                return;
            }
            min_seq = min_seq.min(f.seq);
            out.max_seq = out.max_seq.max(f.seq);
            out.index.insert(
                CacheKey(f.key),
                Slot {
                    seg: id,
                    offset: f.offset,
                    total: f.total,
                    seq: f.seq,
                    fleet: f.fleet,
                    expires_at: f.meta.expires_at,
                    tags: f.meta.tags.into(),
                    url: f.meta.url.into(),
                },
            );
        })?;
        seg.min_seq = min_seq;
        if good < seg.len {
            if i + 1 == ids.len() {
                // The tail a crash cut off mid-append: never acknowledged.
                seg.file.set_len(good)?;
                seg.len = good;
            } else {
                out.corrupt += 1;
                tracing::warn!(
                    segment = id,
                    at = good,
                    "a damaged segment: the records after the damage are dropped"
                );
            }
        }
        out.segs.push_back(seg);
    }
    Ok(out)
}

/// What a journal line drops: entries written before it (and, for a fleet invalidation,
/// whose fill began before its epoch).
fn scoped(seq: u64, line: &Line) -> Option<(Scope, &Invalidation)> {
    match line {
        Line::Local(what) => Some((Scope::Before(seq), what)),
        Line::Fleet(epoch, what) => Some((Scope::FleetBefore { seq, epoch: *epoch }, what)),
        Line::Watermark(..) | Line::Anchor(_) => None,
    }
}

/// The newest segments of `ids` whose files fit in `max` bytes, oldest first; the older
/// ones are deleted unread (the tier would evict them at once, and reading them first
/// would cost memory the bound does not allow).
fn within_bound(dir: &Path, ids: Vec<u32>, max: u64) -> io::Result<Vec<u32>> {
    let mut total = 0u64;
    let mut keep = ids.len();
    for (i, id) in ids.iter().enumerate().rev() {
        let len = std::fs::metadata(segments::path(dir, *id)).map_or(0, |m| m.len());
        total = total.saturating_add(len);
        if total > max {
            break;
        }
        keep = i;
    }
    if keep > 0 {
        tracing::warn!(
            segments = keep,
            "the disk tier's directory holds more than store.disk.max: the oldest segments are deleted unread"
        );
        segments::remove(dir, &ids[..keep])?;
    }
    Ok(ids[keep..].to_vec())
}

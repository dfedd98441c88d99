//! A disk tier under a fleet: other instances invalidate through Redis while this one may
//! be down. Every entry records Redis's invalidation epoch when its fill began; the journal
//! records the epoch the tier has applied the fleet's log up to (the watermark). At start,
//! and every few seconds after, the log beyond the watermark is applied — each logged
//! invalidation dropping the entries whose fill began before it — and the tier serves only
//! once that is done. A log that no longer reaches back to the watermark (or a Redis that
//! lost it) starts the tier empty.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::index::Scope;
use super::journal::Line;
use super::{DiskTier, Inner};
use crate::store::Invalidation;

/// The fleet's invalidation log beyond a disk tier's watermark.
#[derive(Clone, Debug, Default)]
pub struct FleetLog {
    /// Redis's invalidation epoch now.
    pub current: u64,
    /// The logged invalidations after the watermark, with their epochs, oldest first.
    pub items: Vec<(u64, Invalidation)>,
    /// Whether the log still reaches back to the watermark.
    pub complete: bool,
    /// The log's generation: a Redis that lost its data starts a new one, and a watermark
    /// of another generation counts nothing.
    pub generation: String,
}

impl DiskTier {
    /// The fleet epoch the tier has applied the log up to.
    pub fn watermark(&self) -> u64 {
        self.inner.state.lock().watermark
    }

    /// Applies another instance's invalidation at once (the next catch-up makes it
    /// durable, from the log).
    pub fn fleet_event(&self, what: &Invalidation) -> u64 {
        let mut st = self.inner.state.lock();
        let seq = st.next_seq;
        st.log.record(what.clone());
        let n = st.index.invalidate(what, Scope::Before(seq));
        n + st.drop_pending(what)
    }

    /// Applies what the fleet's log holds beyond the watermark, in the journal before it
    /// counts; then the tier serves. Returns whether the tier is in step.
    pub async fn catch_up(&self, log: FleetLog) -> bool {
        let inner = &self.inner;
        if !inner.up.load(Relaxed) {
            // A disabled tier comes back empty; nothing to apply.
            let mut st = inner.state.lock();
            st.watermark = log.current;
            st.generation = Some(log.generation);
            drop(st);
            inner.ready.send_replace(true);
            return true;
        }
        let (mark, in_step) = {
            let st = inner.state.lock();
            let same = st.generation.as_deref() == Some(log.generation.as_str());
            (st.watermark, st.marked && same)
        };
        if in_step && log.complete && log.current == mark {
            inner.ready.send_replace(true);
            return true;
        }
        let lost = !log.complete || log.current < mark || (mark > 0 && !in_step);
        if lost {
            tracing::warn!(
                watermark = mark,
                epoch = log.current,
                "the fleet's invalidation log no longer reaches back to this disk tier: starting it empty"
            );
            if inner.invalidate(&Invalidation::All).await.is_none() {
                return false;
            }
        }
        let (current, generation) = (log.current, log.generation.clone());
        let lines = applied_lines(inner, log, if lost { 0 } else { mark });
        if !write_journal(inner, lines).await {
            return false;
        }
        let mut st = inner.state.lock();
        st.watermark = current;
        st.generation = Some(generation);
        st.marked = true;
        drop(st);
        inner.ready.send_replace(true);
        true
    }
}

/// Applies the log's invalidations after epoch `after` to the directory (one pass for the
/// whole log) and returns the journal lines that record them, with the new watermark.
fn applied_lines(inner: &Inner, log: FleetLog, after: u64) -> Vec<(u64, Line)> {
    let name = inner.fleet.clone().unwrap_or_default();
    let mut st = inner.state.lock();
    let mut scoped = Vec::new();
    for (epoch, what) in log.items.into_iter().filter(|(e, _)| *e > after) {
        let seq = st.take_seq();
        st.log.record(what.clone());
        st.drop_pending(&what);
        scoped.push((seq, epoch, what));
    }
    st.index.replay(scoped.iter().map(|(seq, epoch, w)| {
        (
            Scope::FleetBefore {
                seq: *seq,
                epoch: *epoch,
            },
            w,
        )
    }));
    let mut lines: Vec<(u64, Line)> = scoped
        .into_iter()
        .map(|(seq, epoch, what)| (seq, Line::Fleet(epoch, what)))
        .collect();
    let mark = format!("{name}@{}", log.generation);
    lines.push((st.take_seq(), Line::Watermark(log.current, mark)));
    lines
}

/// Appends `lines` to the journal in a task of its own (a caller that goes away does not
/// cut it short); a failure disables the tier. Whether they are durable.
async fn write_journal(inner: &Arc<Inner>, lines: Vec<(u64, Line)>) -> bool {
    let me = inner.clone();
    let written = tokio::spawn(async move {
        let worker = me.clone();
        match tokio::task::spawn_blocking(move || worker.journal.lock().append(lines)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                me.fail("journal", e);
                false
            }
            Err(_) => false,
        }
    })
    .await;
    matches!(written, Ok(true))
}

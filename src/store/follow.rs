//! Following the fleet through Redis: other instances' invalidations applied to memory
//! and the disk tier as they arrive, and the disk tier kept in step with the fleet's
//! invalidation log.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::disk::DiskTier;
use super::redis::{Event, RedisTier};
use super::{Invalidation, MemoryStore};
use crate::time::now_ms;

/// A name for the Redis a disk tier follows (a hash: the URL may hold a password).
pub(super) fn fleet_name(url: &str, prefix: &str) -> String {
    let hash = blake3::hash(format!("{url}\n{prefix}").as_bytes());
    hash.to_hex()[..16].to_string()
}

/// Another instance's invalidation as this one applied it (for the history).
#[derive(Clone, Debug)]
pub struct HeardEvent {
    /// When it was applied here (ms since the epoch).
    pub at: u64,
    /// The instance that sent it.
    pub from: String,
    /// What it named.
    pub what: Invalidation,
    /// Whether it was a soft purge.
    pub soft: bool,
    /// Entries it dropped here, per tier.
    pub dropped: Vec<(&'static str, u64)>,
}

/// Other instances' invalidations applied here and not yet taken into the history
/// (at most the last thousand).
#[derive(Clone, Default)]
pub struct Heard(Arc<parking_lot::Mutex<std::collections::VecDeque<HeardEvent>>>);

impl Heard {
    fn push(&self, e: HeardEvent) {
        let mut q = self.0.lock();
        if q.len() >= 1000 {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// Takes what was heard since the last call.
    pub fn take(&self) -> Vec<HeardEvent> {
        self.0.lock().drain(..).collect()
    }
}

/// Applies other instances' invalidations as they arrive: to memory, and to the disk tier
/// (made durable by its next catch-up). After a gap in the subscription memory is cleared,
/// and the disk tier stops serving until it has caught up from the log (at once).
pub(super) fn listen(
    redis: &Arc<RedisTier>,
    memory: &Arc<MemoryStore>,
    disk: Option<&Arc<DiskTier>>,
    (nudge, heard): (Arc<Notify>, Heard),
) {
    let (on_event, on_gap) = (Arc::downgrade(memory), Arc::downgrade(memory));
    let disk = disk.map(Arc::downgrade);
    let disk_gap = disk.clone();
    redis.start(
        move |from, event| {
            let (what, soft) = match &event {
                Event::Invalidate(what) => (what, false),
                Event::Soften(what) => (what, true),
                Event::Filled(_) | Event::Mark { .. } | Event::Ack { .. } => return,
            };
            let mut dropped = Vec::new();
            if let Some(memory) = on_event.upgrade() {
                let n = if soft {
                    memory.soften(what, now_ms())
                } else {
                    memory.invalidate(what)
                };
                memory.reclaim_soon();
                dropped.push(("memory", n));
            }
            if let Some(disk) = disk.as_ref().and_then(|d| d.upgrade()) {
                dropped.push(("disk", disk.fleet_event(what)));
            }
            heard.push(HeardEvent {
                at: now_ms(),
                from: from.to_string(),
                what: what.clone(),
                soft,
                dropped,
            });
        },
        move || {
            // The subscription was down: invalidations may have been missed. The disk
            // serves again once it has caught up with the log.
            if let Some(disk) = disk_gap.as_ref().and_then(|d| d.upgrade()) {
                disk.suspend();
            }
            if let Some(memory) = on_gap.upgrade() {
                memory.invalidate(&Invalidation::All);
            }
            nudge.notify_one();
        },
    );
}

/// Keeps the disk tier in step with the fleet's invalidation log: at start (the tier
/// serves once this is done), every two seconds, and at once after a subscription gap.
pub(super) async fn follow(redis: Weak<RedisTier>, disk: Weak<DiskTier>, nudge: Arc<Notify>) {
    loop {
        let (Some(redis), Some(disk)) = (redis.upgrade(), disk.upgrade()) else {
            return;
        };
        let caught_up = match redis.fleet_log(disk.watermark()).await {
            Some(log) => disk.catch_up(log).await,
            None => false,
        };
        drop((redis, disk));
        let pause = Duration::from_millis(if caught_up { 2000 } else { 250 });
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = nudge.notified() => {}
        }
    }
}

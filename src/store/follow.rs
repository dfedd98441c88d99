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

/// Applies other instances' invalidations as they arrive: to memory, and to the disk tier
/// (made durable by its next catch-up). After a gap in the subscription memory is cleared,
/// and the disk tier stops serving until it has caught up from the log (at once).
pub(super) fn listen(
    redis: &Arc<RedisTier>,
    memory: &Arc<MemoryStore>,
    disk: Option<&Arc<DiskTier>>,
    nudge: Arc<Notify>,
) {
    let (on_event, on_gap) = (Arc::downgrade(memory), Arc::downgrade(memory));
    let disk = disk.map(Arc::downgrade);
    let disk_gap = disk.clone();
    redis.start(
        move |event| {
            let (what, soft) = match &event {
                Event::Invalidate(what) => (what, false),
                Event::Soften(what) => (what, true),
                Event::Filled(_) | Event::Mark { .. } | Event::Ack { .. } => return,
            };
            if let Some(memory) = on_event.upgrade() {
                if soft {
                    memory.soften(what, now_ms());
                } else {
                    memory.invalidate(what);
                }
            }
            if let Some(disk) = disk.as_ref().and_then(|d| d.upgrade()) {
                disk.fleet_event(what);
            }
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

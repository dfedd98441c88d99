//! Invalidations acknowledged across the fleet: every instance keeps its name in a
//! registry (`{prefix}:instances`, scored by its last heartbeat), each invalidation is
//! followed by a mark that receivers time (`larder_invalidation_apply_seconds`) and, when
//! the sender waits (`?wait=all`), acknowledge.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fred::interfaces::{ClientLike, PubsubInterface, SortedSetsInterface};
use tokio::sync::mpsc;

use super::events::Event;
use super::RedisTier;
use crate::time::now_ms;

/// An instance is live while its heartbeat is younger than this.
const LIVE_MS: u64 = 15_000;

/// Which live instances applied an invalidation in time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acks {
    /// Instances that applied it (this one first).
    pub applied: Vec<String>,
    /// Live instances that did not say so within the wait.
    pub missing: Vec<String>,
}

impl RedisTier {
    /// This instance's name in the fleet.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn instances_key(&self) -> String {
        format!("{}:instances", self.settings.prefix)
    }

    /// Says this instance is alive (and forgets instances silent for an hour).
    pub(super) async fn heartbeat(&self) {
        let client = self.pool.next().with_options(&self.options);
        let now = now_ms();
        let key = self.instances_key();
        let beat = async {
            let _: () = client
                .zadd(
                    key.as_str(),
                    None,
                    None,
                    false,
                    false,
                    (now as f64, self.instance.as_str()),
                )
                .await?;
            client
                .zremrangebyscore::<(), _, _, _>(
                    key.as_str(),
                    f64::NEG_INFINITY,
                    (now - 3_600_000.min(now)) as f64,
                )
                .await
        };
        let _ = self.call("heartbeat", beat).await;
    }

    /// The other instances whose heartbeat is recent.
    async fn others_live(&self) -> Option<Vec<String>> {
        let client = self.pool.next().with_options(&self.options);
        let since = now_ms().saturating_sub(LIVE_MS) as f64;
        let read = client.zrangebyscore::<Vec<String>, _, _, _>(
            self.instances_key(),
            since,
            f64::INFINITY,
            false,
            None,
        );
        let mut live = self.call("instances", read).await.ok()?;
        live.retain(|i| *i != self.instance);
        Some(live)
    }

    /// Marks the invalidation just published (receivers time it); with `wait`, marks it
    /// again asking for acknowledgements and waits that long at most for every other live
    /// instance to apply it. `None` when Redis did not answer.
    pub async fn confirm(&self, wait: Option<Duration>) -> Option<Acks> {
        let id = self.next_mark.fetch_add(1, Relaxed);
        let mut acks = Acks {
            applied: vec![self.instance.clone()],
            missing: Vec::new(),
        };
        let Some(wait) = wait else {
            self.publish(&Event::Mark {
                id,
                sent_ms: now_ms(),
                ack: false,
            })
            .await;
            return Some(acks);
        };
        let mut expected = self.others_live().await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.ack_waiters.lock().insert(id, tx);
        self.publish(&Event::Mark {
            id,
            sent_ms: now_ms(),
            ack: true,
        })
        .await;
        let deadline = tokio::time::Instant::now() + wait;
        while !expected.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(from)) => {
                    if let Some(at) = expected.iter().position(|i| *i == from) {
                        acks.applied.push(expected.swap_remove(at));
                    }
                }
                _ => break,
            }
        }
        self.ack_waiters.lock().remove(&id);
        expected.sort();
        acks.missing = expected;
        Some(acks)
    }

    /// Another instance's mark: counts how long its invalidation took to reach this one
    /// (applied by now: events are applied in order), or, when the sender waits,
    /// acknowledges it (a second mark of the same invalidation, not counted again).
    pub(super) async fn on_mark(&self, from: &str, id: u64, sent_ms: u64, ack: bool) {
        if !ack {
            let took = now_ms().saturating_sub(sent_ms);
            if let Some(h) = self.applied.get() {
                h.observe_us(took.saturating_mul(1000));
            }
        } else {
            let client = self.pool.next().with_options(&self.options);
            let event = Event::Ack {
                id,
                to: from.to_string(),
            };
            let _ = self
                .call(
                    "ack",
                    client.publish::<i64, _, _>(self.channel(), event.encode(&self.instance)),
                )
                .await;
        }
    }

    /// An acknowledgement of one of this instance's marks.
    pub(super) fn on_ack(&self, from: &str, id: u64) {
        if let Some(tx) = self.ack_waiters.lock().get(&id) {
            let _ = tx.send(from.to_string());
        }
    }

    /// Where this instance counts how long invalidations take to apply here.
    pub fn count_applies_in(&self, histogram: std::sync::Arc<crate::stats::Histogram>) {
        let _ = self.applied.set(histogram);
    }
}

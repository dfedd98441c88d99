//! Listening to the fleet: the event channel subscribed (and re-subscribed), L1 cleared
//! when events may have been missed, the breaker probed, and queued invalidations replayed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tokio::sync::broadcast::error::RecvError;

use super::breaker::State;
use super::events::Event;
use super::RedisTier;
use crate::store::Invalidation;
use crate::time::now_ms;

impl RedisTier {
    /// Subscribes to the event channel. Subscribing fails while Redis is away;
    /// `manage_subscriptions` resubscribes on every reconnect once this has gone through.
    pub(super) fn subscribe(&self) {
        let channel = self.channel();
        let sub = self.subscriber.clone();
        let subscribed = self.subscribed.clone();
        tokio::spawn(async move {
            loop {
                if sub.subscribe(channel.clone()).await.is_ok() {
                    subscribed.send_replace(true);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// Runs `cleared` after every reconnect of the subscriber (events may have been missed).
    pub(super) fn clear_on_reconnect(&self, cleared: Arc<impl Fn() + Send + Sync + 'static>) {
        let mut reconnects = self.subscriber.reconnect_rx();
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(async move {
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if !first.swap(false, Relaxed) {
                            tracing::info!("redis subscription back: clearing L1");
                        }
                        cleared();
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// A breaker that opened is probed (so it closes, and `/health` recovers, without
    /// waiting for traffic), and invalidations that could not reach Redis are replayed once
    /// it answers again.
    pub(super) fn probe(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            // Every 20 ticks (5 s), a heartbeat in the fleet's registry.
            let mut beats = 0u64;
            loop {
                tick.tick().await;
                let Some(tier) = weak.upgrade() else { return };
                beats += 1;
                if beats % 20 == 1 && tier.breaker.state(now_ms()) == State::Closed {
                    tier.heartbeat().await;
                }
                // Every 15 s (and soon after start), Redis's memory.
                if beats % 60 == 4 && tier.breaker.state(now_ms()) == State::Closed {
                    tier.poll_memory().await;
                }
                let queued = !tier.pending.lock().is_empty() || tier.pending_overflow.load(Relaxed);
                let state = tier.breaker.state(now_ms());
                if (queued || state == State::HalfOpen) && state != State::Open {
                    // The probe: a PING through the breaker.
                    let client = tier.pool.next().with_options(&tier.options);
                    if tier.call("ping", client.ping::<()>(None)).await.is_ok() && queued {
                        tier.replay().await;
                    }
                }
            }
        });
    }

    /// Applies other instances' events as they arrive (`on_event`), wakes waiters of fills,
    /// and clears L1 (`overran`) when events were dropped unseen.
    pub(super) fn follow_events(
        self: &Arc<Self>,
        on_event: impl Fn(&str, Event) + Send + Sync + 'static,
        overran: Arc<impl Fn() + Send + Sync + 'static>,
    ) {
        let mut messages = self.subscriber.message_rx();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let message = match messages.recv().await {
                    Ok(m) => m,
                    // Events were dropped unseen: any of them may have been an invalidation.
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "redis events overran this instance: clearing L1"
                        );
                        overran();
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Some(tier) = weak.upgrade() else { return };
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                let Some((from, event)) = Event::decode(&text) else {
                    continue;
                };
                if let (Event::Invalidate(Invalidation::Tags(tags)), false) =
                    (&event, from == tier.instance)
                {
                    tier.purging.note(tags);
                }
                match &event {
                    Event::Filled(key) => tier.wake(key),
                    _ if from == tier.instance => {}
                    Event::Mark { id, sent_ms, ack } => {
                        let (tier, from, id, sent_ms, ack) =
                            (tier.clone(), from.to_string(), *id, *sent_ms, *ack);
                        tokio::spawn(async move { tier.on_mark(&from, id, sent_ms, ack).await });
                    }
                    Event::Ack { id, to } => {
                        if *to == tier.instance {
                            tier.on_ack(from, *id);
                        }
                    }
                    _ => on_event(from, event),
                }
            }
        });
    }
}

//! Fleet-wide single flight on Redis: one instance fills a key, the others wait for its
//! entry (woken by its "filled" event), bounded.

use std::time::Duration;

use fred::interfaces::{ClientLike, KeysInterface, LuaInterface};
use fred::types::{Expiration, SetOptions};
use tokio::sync::watch;

use super::events::Event;
use super::scripts::RELEASE_SCRIPT;
use super::{random_hex, RedisTier, Unavailable};
use crate::key::CacheKey;
use crate::store::Lease;

impl RedisTier {
    /// Asks for the fill lease of `key`.
    pub async fn lease(&self, key: &CacheKey) -> Lease {
        let token = random_hex(8);
        let ms = self.settings.lease.as_millis().max(1) as i64;
        let client = self.pool.next().with_options(&self.options);
        let set = client.set::<Option<String>, _, _>(
            self.lease_key(key),
            token.as_str(),
            Some(Expiration::PX(ms)),
            Some(SetOptions::NX),
            false,
        );
        match self.call("lease", set).await {
            Ok(Some(_)) => Lease::Acquired(token),
            Ok(None) => Lease::Busy,
            Err(Unavailable) => Lease::Unavailable,
        }
    }

    /// Releases a lease this instance holds and tells waiters the fill is done.
    pub async fn release(&self, key: &CacheKey, token: &str) {
        let client = self.pool.next().with_options(&self.options);
        let _ = self
            .call(
                "release",
                client.eval::<i64, _, _, _>(
                    RELEASE_SCRIPT,
                    vec![self.lease_key(key)],
                    vec![token.to_string()],
                ),
            )
            .await;
        self.publish(&Event::Filled(*key)).await;
    }

    /// Registers interest in another instance's fill of `key`; resolves when it is done.
    pub fn fill_waiter(&self, key: &CacheKey) -> watch::Receiver<()> {
        let mut waiters = self.waiters.lock();
        waiters
            .entry(*key)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Waits (at most `limit`) for the fill `waiter` was registered for.
    pub async fn wait_fill(
        &self,
        key: &CacheKey,
        mut waiter: watch::Receiver<()>,
        limit: Duration,
    ) {
        let _ =
            tokio::time::timeout(limit, async { while waiter.changed().await.is_ok() {} }).await;
        drop(waiter);
        let mut waiters = self.waiters.lock();
        if waiters.get(key).is_some_and(|tx| tx.receiver_count() == 0) {
            waiters.remove(key);
        }
    }

    pub(super) fn wake(&self, key: &CacheKey) {
        // Dropping the sender wakes every receiver.
        self.waiters.lock().remove(key);
    }
}

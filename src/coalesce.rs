//! Single flight per key: concurrent misses on one key make one upstream request; the
//! others wait (bounded) for it and then read what it stored.
//!
//! Waiters share a key, and the key includes the user for `per_user` rules, so a waiter
//! only ever reads an entry its own request could have stored. When the leader's answer
//! was not storable, waiters find nothing and go upstream themselves.
//!
//! ```
//! use larder::coalesce::{Coalescer, Role};
//! use larder::key::CacheKey;
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let c = Coalescer::default();
//! let key = CacheKey([7; 16]);
//! let Role::Leader(guard) = c.join(key) else { panic!() };
//! let Role::Follower(wait) = c.join(key) else { panic!() };
//! drop(guard); // the leader finished
//! assert!(wait.wait(std::time::Duration::from_secs(1)).await);
//! # });
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::key::CacheKey;

/// The in-flight fetches, by key.
#[derive(Default, Debug)]
pub struct Coalescer {
    inflight: Arc<Mutex<HashMap<CacheKey, watch::Sender<()>>>>,
}

/// What a request does about a miss.
pub enum Role {
    /// Fetch; followers wake when this guard drops.
    Leader(LeaderGuard),
    /// Wait for the leader.
    Follower(Follower),
}

/// Held by the request that fetches.
pub struct LeaderGuard {
    key: CacheKey,
    inflight: Arc<Mutex<HashMap<CacheKey, watch::Sender<()>>>>,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        // Dropping the sender closes the channel and wakes every follower.
        self.inflight.lock().remove(&self.key);
    }
}

/// Held by a request waiting for a leader.
pub struct Follower(watch::Receiver<()>);

impl Follower {
    /// Waits until the leader is done or `limit` passes; true if the leader finished.
    pub async fn wait(mut self, limit: Duration) -> bool {
        // `changed` fails once the sender is dropped, i.e. when the leader finished.
        tokio::time::timeout(limit, async { while self.0.changed().await.is_ok() {} })
            .await
            .is_ok()
    }
}

impl Coalescer {
    /// Joins the fetch for `key`: the first caller leads, later ones follow.
    pub fn join(&self, key: CacheKey) -> Role {
        let mut map = self.inflight.lock();
        if let Some(tx) = map.get(&key) {
            return Role::Follower(Follower(tx.subscribe()));
        }
        let (tx, _rx) = watch::channel(());
        map.insert(key, tx);
        Role::Leader(LeaderGuard {
            key,
            inflight: self.inflight.clone(),
        })
    }

    /// Whether a fetch for `key` is in flight.
    pub fn is_in_flight(&self, key: &CacheKey) -> bool {
        self.inflight.lock().contains_key(key)
    }

    /// Fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().len()
    }
}

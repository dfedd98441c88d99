//! Single flight per key: concurrent misses on one key make one upstream request; the
//! others wait (bounded) for it and then read what it stored — or, while it streams, join
//! it ([`stream`]) and follow it live.
//!
//! Waiters share a key, and the key includes the user for `per_user` rules, so a waiter
//! only ever reads an entry its own request could have stored. When the leader's answer
//! was not storable, waiters find nothing and go upstream themselves. A waiter joins a
//! streaming fill only when the fill's [`stream::Audience`] includes it (the answer's
//! `Vary` selects the same variant for its request); one it does not include stops
//! waiting at once and goes upstream itself.
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
//! let me = larder::coalesce::JoinAs { key, headers: &http::HeaderMap::new(), gzip: None, events_only: false };
//! assert!(matches!(wait.wait(std::time::Duration::from_secs(1), me).await, larder::coalesce::Waited::Done));
//! # });
//! ```

pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::key::CacheKey;
use stream::FillStream;

/// What followers of a fill can see: nothing yet, or the fill streaming.
type Shared = Arc<Mutex<HashMap<CacheKey, watch::Sender<Option<Arc<FillStream>>>>>>;

/// The in-flight fetches, by key.
#[derive(Default, Debug)]
pub struct Coalescer {
    inflight: Shared,
}

/// What a request does about a miss.
pub enum Role {
    /// Fetch; followers wake when this guard drops.
    Leader(LeaderGuard),
    /// Wait for the leader.
    Follower(Follower),
}

/// Held by the request that fetches (and, while it streams, by the fill).
pub struct LeaderGuard {
    key: CacheKey,
    inflight: Shared,
}

impl LeaderGuard {
    /// Lets followers join the fill as it streams.
    pub fn publish(&self, stream: Arc<FillStream>) {
        if let Some(tx) = self.inflight.lock().get(&self.key) {
            tx.send_replace(Some(stream));
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        // Dropping the sender closes the channel and wakes every follower.
        self.inflight.lock().remove(&self.key);
    }
}

/// Held by a request waiting for a leader.
pub struct Follower(watch::Receiver<Option<Arc<FillStream>>>);

/// What a follower's wait came to.
pub enum Waited {
    /// The leader finished: read what it stored.
    Done,
    /// The leader's fill is streaming: follow it.
    Streaming(Arc<FillStream>),
    /// The leader took longer than the wait allows.
    TimedOut,
    /// The leader's answer is for another variant: go upstream without waiting.
    OtherVariant,
}

/// Who is waiting: the request's key and headers (to tell whether a fill's answer is for
/// its variant) and whether it can take a streaming fill's bytes as they come (`gzip`:
/// `Some(whether it accepts gzip)`; `None` waits for the stored entry).
#[derive(Clone, Copy)]
pub struct JoinAs<'a> {
    /// The key the request waits on.
    pub key: CacheKey,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// `Some(accepts gzip)` when it can follow a fill live.
    pub gzip: Option<bool>,
    /// It follows live only a fill whose answer is an event stream (an LLM request that
    /// asked for a stream; a JSON answer filling meanwhile is converted once stored).
    pub events_only: bool,
}

impl Follower {
    /// Waits until the leader is done or `limit` passes — or, for a follower that can
    /// join (`me.gzip`), until the leader's fill streams in a coding it can take, still
    /// whole. A fill whose answer is for another variant of the request ends the wait at
    /// once ([`Waited::OtherVariant`]).
    pub async fn wait(mut self, limit: Duration, me: JoinAs<'_>) -> Waited {
        let outcome = tokio::time::timeout(limit, async {
            loop {
                let stream = self.0.borrow_and_update().clone();
                if let Some(s) = stream {
                    if !s.audience().includes(&me.key, me.headers) {
                        return Waited::OtherVariant;
                    }
                    let shape_ok = !me.events_only || s.is_event_stream();
                    let takes = |gzip| shape_ok && s.joinable() && s.servable_to(gzip);
                    if me.gzip.is_some_and(takes) {
                        return Waited::Streaming(s);
                    }
                }
                // `changed` fails once the sender is dropped: the leader finished.
                if self.0.changed().await.is_err() {
                    return Waited::Done;
                }
            }
        })
        .await;
        outcome.unwrap_or(Waited::TimedOut)
    }
}

impl Coalescer {
    /// Joins the fetch for `key`: the first caller leads, later ones follow.
    pub fn join(&self, key: CacheKey) -> Role {
        let mut map = self.inflight.lock();
        if let Some(tx) = map.get(&key) {
            return Role::Follower(Follower(tx.subscribe()));
        }
        let (tx, _rx) = watch::channel(None);
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

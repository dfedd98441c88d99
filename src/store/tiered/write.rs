//! Writing a fill's entries to the tiers as its rule's write policy says: memory and every
//! tier below before the answer (`through`), memory first and the tiers below after the
//! answer (`back`), or only the tiers below (`around`). Every write carries the tier's
//! epoch from the fill's start, so an invalidation in between still refuses it.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{FillTokens, Tiers};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::status::{Tier, TierSet, WritePolicy};
use crate::store::{LowerTier, Write};

/// The writes still following answers already sent (`back`), so shutdown can wait for them.
#[derive(Debug, Default)]
pub(super) struct Following {
    count: AtomicUsize,
    idle: Notify,
}

/// One write following its answer; done when dropped.
struct Followed(Arc<Following>);

impl Drop for Followed {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Following {
    fn start(self: &Arc<Self>) -> Followed {
        self.count.fetch_add(1, SeqCst);
        Followed(self.clone())
    }

    /// Returns once no write follows an answer, or after `limit`.
    pub(super) async fn settled(&self, limit: Duration) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.count.load(SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// A tier below memory a fill may write, with its epoch at the fill's start.
type Target = (Arc<dyn LowerTier>, u64);

impl Tiers {
    /// Stores entries (a `Vary` marker and its variant, or one entry) in every tier the
    /// fill may write and `allowed` names, as `policy` says (`None`: memory, then each
    /// lower tier as configured). Returns whether any tier stored them all (with `back`:
    /// whether memory did, or will have them below).
    pub async fn store(
        &self,
        entries: &[(CacheKey, Arc<Entry>)],
        tokens: &FillTokens,
        (allowed, policy): (TierSet, Option<WritePolicy>),
    ) -> bool {
        let memory = self.serve_memory
            && allowed.contains(Tier::L1)
            && policy.is_none_or(WritePolicy::in_memory);
        let in_memory = memory
            && entries.iter().fold(true, |all, (key, entry)| {
                self.promote(*key, entry.clone(), tokens.memory) & all
            });
        if !memory {
            // An older copy in memory would hide the new one: the next read fills it.
            for (key, _) in entries {
                self.memory.remove(key);
            }
        }
        let (targets, fleet) = self.targets(tokens, allowed);
        if targets.is_empty() {
            return in_memory;
        }
        if policy.is_some_and(WritePolicy::answers_first) {
            let entries = entries.to_vec();
            let followed = self.following.start();
            tokio::spawn(async move {
                put_all(&targets, &entries, fleet, false).await;
                drop(followed);
            });
            return in_memory || !memory;
        }
        let durable = policy == Some(WritePolicy::Through);
        put_all(&targets, entries, fleet, durable).await | in_memory
    }

    /// The lower tiers this fill writes (those that answered at its start and `allowed`
    /// names), and the fleet's epoch at its start (kept with disk entries).
    fn targets(&self, tokens: &FillTokens, allowed: TierSet) -> (Vec<Target>, Option<u64>) {
        let fleet = self
            .lower
            .iter()
            .zip(&tokens.lower)
            .find(|(t, _)| t.fleet().is_some())
            .and_then(|(_, epoch)| *epoch);
        let targets = self
            .lower
            .iter()
            .zip(&tokens.lower)
            .filter(|(tier, _)| allowed.contains(tier.tier()))
            .filter_map(|(tier, epoch)| epoch.map(|e| (tier.clone(), e)))
            .collect();
        (targets, fleet)
    }
}

/// Writes every entry to every target; whether one target stored them all.
async fn put_all(
    targets: &[Target],
    entries: &[(CacheKey, Arc<Entry>)],
    fleet: Option<u64>,
    durable: bool,
) -> bool {
    let mut stored = false;
    for (tier, epoch) in targets {
        let mut all = true;
        for (key, entry) in entries {
            let write = Write {
                key,
                entry,
                epoch: *epoch,
                fleet,
                durable,
            };
            all &= tier.put(write).await;
        }
        stored |= all;
    }
    stored
}

//! A miss's state: the phase it is in ([`Phase`], pingora-cache's `CachePhase` is the
//! model) and what it holds while it runs ([`Miss`]): the request, the fill's facts, and the
//! guards that keep other requests waiting for it.

use std::sync::Arc;

use http::request::Parts;
use http::Response;

use super::admit::{self, FillRequest};
use super::route::Plan;
use super::Ctx;
use crate::body::CacheBody;
use crate::coalesce::LeaderGuard;
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::status::{Fwd, Tier};
use crate::store::{Asked, FillTokens, Found, LowerTier, Owner};

/// A stale entry that may be revalidated, or stand in if the upstream fails.
pub(super) type StaleEntry = (Arc<Entry>, CacheKey);

/// Where a miss is in its flow.
pub(crate) enum Phase<ResB> {
    /// The key is known; look below memory (unless that was done already).
    Lookup(Found),
    /// What the tiers hold is known: serve it, or go upstream.
    Decide(Found, Tier),
    /// Going upstream: first join a fill of the same key (in process, then fleet-wide).
    Join(Option<StaleEntry>, Fwd),
    /// The request goes upstream.
    Fetch(Option<StaleEntry>, Fwd, FillTokens),
    /// The upstream answered: refresh a revalidated entry, let a stale one stand in for a
    /// failure, or admit the answer.
    Admit(Fetched<ResB>),
    /// The answer is admitted and complete: write the tiers.
    Store(admit::Admitted, Fwd, FillTokens),
    /// Answered.
    Respond(Response<CacheBody<ResB>>),
}

/// What the upstream answered, and what the fill knew when it asked.
pub(crate) struct Fetched<ResB> {
    pub(super) response: http::response::Parts,
    pub(super) body: ResB,
    pub(super) stale: Option<StaleEntry>,
    pub(super) fwd: Fwd,
    pub(super) conditional: bool,
    pub(super) tokens: FillTokens,
    pub(super) request_time: u64,
    pub(super) response_time: u64,
}

/// One miss being worked on: the request and what it holds.
pub(super) struct Miss<S, B> {
    pub(super) ctx: Ctx<S>,
    pub(super) parts: Parts,
    pub(super) body: Option<CacheBody<B>>,
    pub(super) plan: Plan,
    pub(super) key: CacheKey,
    /// The request-side facts admission needs (set before going upstream).
    pub(super) fill: Option<FillRequest>,
    /// Held until the fill is done: waiters in this process wake when it drops.
    pub(super) _leader: Option<LeaderGuard>,
    /// Held until the fill is done: the fleet-wide lease.
    pub(super) _lease: Option<LeaseGuard>,
    /// A dry run where the tiers held a servable entry: the answer fetched anyway is not
    /// stored (the entry keeps the life it would really have had).
    pub(super) dry_hit: bool,
    /// Whose entry this request expects from a tier below memory.
    pub(super) owner: OwnedBy,
    /// Its place upstream (its upstream's `max_concurrent`), held until the answer is
    /// read (or, streamed to the client, stored).
    pub(super) slot: Option<crate::budget::Slot>,
    /// Send the client's one range upstream rather than fetch the whole: the whole was too
    /// large to keep, or a part of it is stored already (see `partial`).
    pub(super) ask_range: bool,
}

/// Whose entry a request expects: its normalised URL and its user's tag.
pub(super) struct OwnedBy {
    pub url: String,
    pub user_tag: Option<u64>,
}

impl OwnedBy {
    /// The owner of `plan`'s entry for `uri`.
    pub fn of(s: &crate::cache::Settings, plan: &Plan, uri: &http::Uri) -> OwnedBy {
        OwnedBy {
            url: super::route::entry_url(s, s.rule(plan.rule), uri),
            user_tag: plan.user.as_ref().map(crate::key::user_tag),
        }
    }

    /// What a request with `headers` and `policy` asks of the tiers.
    pub fn asked<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        policy: &'a crate::policy::RequestPolicy,
        plan: &Plan,
    ) -> Asked<'a> {
        Asked {
            headers,
            policy,
            allowed: plan.tiers,
            owner: Owner {
                url: &self.url,
                user_tag: self.user_tag,
            },
        }
    }
}

/// A fleet-wide fill lease; released (and waiters told) when the fill is done, however it
/// ends.
pub(super) struct LeaseGuard {
    pub(super) tier: Arc<dyn LowerTier>,
    pub(super) key: CacheKey,
    pub(super) token: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (tier, key, token) = (self.tier.clone(), self.key, std::mem::take(&mut self.token));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(fleet) = tier.fleet() {
                    fleet.release(&key, &token).await;
                }
            });
        }
    }
}

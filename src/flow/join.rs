//! The Join phase: one fetch per key in this process (the others wait for it, then read
//! what it stored), then one per key in the fleet, through the lease of a shared tier.

use std::sync::Arc;

use http::{Request, Response};
use tower::Service;

use super::miss::{LeaseGuard, Miss, Phase, StaleEntry};
use super::respond::stamp;
use super::stream;
use crate::body::CacheBody;
use crate::coalesce::stream::FillStream;
use crate::coalesce::{JoinAs, Role, Waited};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::policy::{now_ms, RequestPolicy};
use crate::status::{CacheStatus, Fwd, Tier};
use crate::store::{Found, Lease, LowerTier};

impl<S, B> Miss<S, B>
where
    S: Service<Request<CacheBody<B>>>,
{
    /// Join: one fetch per key in this process (the others wait for it, then read what it
    /// stored), then one per key in the fleet (others wait for its entry in the shared
    /// tier, then fetch themselves if none came).
    pub(super) async fn join<ResB>(&mut self, stale: Option<StaleEntry>, fwd: Fwd) -> Phase<ResB> {
        let cache = self.ctx.cache.clone();
        if self.plan.dry_run {
            // Every request of a dry run goes upstream itself.
            let tokens = cache.tiers().begin_fill().await;
            return Phase::Fetch(stale, fwd, tokens);
        }
        let wait = self.fill_wait();
        match cache.coalescer().join(self.key) {
            Role::Leader(guard) => self._leader = Some(guard),
            // Someone is fetching it already: a background refresh has nothing to add.
            Role::Follower(_) if self.plan.background => {
                return Phase::Respond(Response::new(CacheBody::empty()))
            }
            Role::Follower(follower) => {
                let me = JoinAs {
                    key: self.key,
                    headers: &self.parts.headers,
                    gzip: self.streamable().then_some(self.plan.info.gzip),
                    events_only: self.plan.info.llm.is_some(),
                };
                match follower.wait(wait, me).await {
                    Waited::Streaming(fill) => return Phase::Respond(self.follow(&fill)),
                    Waited::OtherVariant => {
                        // The fill in flight answers another variant of this URL: this
                        // request makes its own (and stores its own variant).
                        let tokens = cache.tiers().begin_fill().await;
                        return Phase::Fetch(stale, fwd, tokens);
                    }
                    Waited::Done => {
                        // The leader's answer is newer than this request, whatever it asked.
                        let any = RequestPolicy::default();
                        let asked = self.owner.asked(&self.parts.headers, &any, &self.plan);
                        let (found, tier) = cache.tiers().lookup(self.key, &asked).await;
                        if let Found::Fresh(entry, key) = found {
                            return Phase::Respond(self.collapsed(&entry, &key, tier));
                        }
                    }
                    Waited::TimedOut => {}
                }
            }
        }
        let fleet = cache.tiers().fleet();
        if let Some(tier) = fleet.filter(|t| self.plan.tiers.contains(t.tier())) {
            if let Some(hit) = self.fleet_lease(tier, wait).await {
                return Phase::Respond(hit);
            }
        }
        let tokens = cache.tiers().begin_fill().await;
        Phase::Fetch(stale, fwd, tokens)
    }

    /// How long a request waits for another's fill: `cache.coalesce_wait`, or for an LLM
    /// answer as long as the upstream may take (a second paid call is what waiting saves).
    fn fill_wait(&self) -> std::time::Duration {
        let c = &self.ctx.settings.config;
        match self.plan.info.llm {
            Some(_) => c.cache.coalesce_wait.max(c.proxy.upstream_timeout),
            None => c.cache.coalesce_wait,
        }
    }

    /// Joins another request's fill as it streams: the bytes so far at once, then the rest
    /// as they arrive (a hit, collapsed: this request caused no trip upstream).
    fn follow<ResB>(&self, fill: &Arc<FillStream>) -> Response<CacheBody<ResB>> {
        let status = CacheStatus::hit(0).collapsed(true).tier(Tier::L1);
        self.answering().record(&status);
        let mut resp = Response::new(stream::fill_body(fill.reader(), &self.plan.info));
        *resp.status_mut() = fill.status();
        *resp.headers_mut() = fill.headers().clone();
        stamp(resp.headers_mut(), &status, &self.ctx.settings);
        resp
    }

    /// A hit on another request's fill.
    fn collapsed<ResB>(
        &self,
        entry: &Arc<Entry>,
        key: &CacheKey,
        tier: Tier,
    ) -> Response<CacheBody<ResB>> {
        let now = now_ms();
        let status = CacheStatus::hit(entry.ttl_ms(now) / 1000)
            .collapsed(true)
            .tier(tier);
        self.answering().entry((entry, key), status, now)
    }

    /// Takes the fleet-wide lease, or waits for the instance holding it and answers from
    /// its entry.
    async fn fleet_lease<ResB>(
        &mut self,
        tier: &Arc<dyn LowerTier>,
        wait: std::time::Duration,
    ) -> Option<Response<CacheBody<ResB>>> {
        let fleet = tier.fleet()?;
        let waiter = fleet.fill_waiter(&self.key);
        match fleet.lease(&self.key).await {
            Lease::Acquired(token) => {
                self._lease = Some(LeaseGuard {
                    tier: tier.clone(),
                    key: self.key,
                    token,
                });
                None
            }
            Lease::Busy => {
                fleet.wait_fill(&self.key, waiter, wait).await;
                let any = RequestPolicy::default();
                let asked = self.owner.asked(&self.parts.headers, &any, &self.plan);
                let below = self.ctx.cache.tiers().lookup_lower(self.key, &asked).await;
                match below {
                    Some((Found::Fresh(entry, key), tier)) => {
                        Some(self.collapsed(&entry, &key, tier))
                    }
                    _ => None,
                }
            }
            Lease::Unavailable => None,
        }
    }
}

//! The miss path: a request the memory tier could not answer, driven phase by phase
//! (pingora-cache's `CachePhase` is the model). [`run`] is the only place that awaits the
//! tiers, the fill locks or the upstream; each phase is a function of the request's state
//! that returns the next phase.
//!
//! ```text
//! Lookup ─► Decide ─┬─► Respond (fresh, or stale that may be served)
//!                   └─► Join ─┬─► Respond (another request's fill, collapsed)
//!                             └─► Fetch ─► Admit ─┬─► Respond (304 refreshed, stale-if-error,
//!                                                 │            uncacheable, too large)
//!                                                 └─► Store ─► Respond
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::{Service, ServiceExt};

use super::admit::{self, FillRequest};
use super::respond::{error_response, pass_on, respond, stamp, Answering};
use super::revalidate;
use super::route::{body_hash, primary_key, Plan};
use super::Ctx;
use crate::cache::{Cache, Settings};
use crate::coalesce::{LeaderGuard, Role};
use crate::entry::Entry;
use crate::key::{normalize_percent, BodyKeyError, CacheKey};
use crate::layer::{buffer, buffer_within, BoxError, Buffered, CacheBody};
use crate::policy::{now_ms, stale_if_error_allows, upstream_failed, Freshness, RequestPolicy};
use crate::status::{CacheStatus, Fwd, NoCacheReason, Stale, Tier};
use crate::store::{FillTokens, Found, Lease, LowerTier};

type Answer<B, E> = Result<Response<CacheBody<B>>, E>;

/// A stale entry that may be revalidated, or stand in if the upstream fails.
type StaleEntry = (Arc<Entry>, CacheKey);

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
    response: http::response::Parts,
    body: ResB,
    stale: Option<StaleEntry>,
    fwd: Fwd,
    conditional: bool,
    tokens: FillTokens,
    request_time: u64,
    response_time: u64,
}

/// One miss being worked on: the request and what it holds.
struct Miss<S, B> {
    ctx: Ctx<S>,
    parts: Parts,
    body: Option<CacheBody<B>>,
    plan: Plan,
    key: CacheKey,
    /// The request-side facts admission needs (set before going upstream).
    fill: Option<FillRequest>,
    /// Held until the fill is done: waiters in this process wake when it drops.
    _leader: Option<LeaderGuard>,
    /// Held until the fill is done: the fleet-wide lease.
    _lease: Option<LeaseGuard>,
}

/// Serves a miss, or an entry that needs going upstream: look below memory, fetch
/// (revalidating a stale entry when it can), admit, store, answer. In the background
/// (`plan.background`) it refreshes an entry served stale and answers nobody.
pub(crate) async fn run<S, B, ResB>(
    ctx: Ctx<S>,
    req: Request<B>,
    plan: Plan,
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    // key_body rules: the key needs the body.
    let (key, body, found) = match plan.primary {
        Some(k) => (k, CacheBody::stream(body), found),
        None => match keyed_by_body(&ctx.cache, &ctx.settings, &parts, body, &plan).await {
            Ok(keyed) => keyed,
            Err(answer) => return answer.resolve(ctx, parts).await,
        },
    };
    let mut miss = Miss {
        ctx,
        parts,
        body: Some(body),
        plan,
        key,
        fill: None,
        _leader: None,
        _lease: None,
    };
    let mut phase = Phase::Lookup(found);
    loop {
        phase = match phase {
            Phase::Lookup(found) => miss.lookup(found).await,
            Phase::Decide(found, tier) => miss.decide(found, tier),
            Phase::Join(stale, fwd) => miss.join(stale, fwd).await,
            Phase::Fetch(stale, fwd, tokens) => miss.fetch(stale, fwd, tokens).await?,
            Phase::Admit(fetched) => miss.admit(fetched).await,
            Phase::Store(admitted, fwd, tokens) => miss.store(admitted, fwd, tokens).await,
            Phase::Respond(resp) => return Ok(resp),
        };
    }
}

/// A memory miss with tiers below: answer from them if they have it fresh, else [`run`].
/// (The whole miss path is a large future; it is only built and boxed when the tiers below
/// miss too, so a hit below memory stays small.)
pub(crate) async fn below_then_run<S, B, ResB>(
    ctx: Ctx<S>,
    req: Request<B>,
    mut plan: Plan,
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let Some(key) = plan.primary else {
        return Box::pin(run(ctx, req, plan, found)).await;
    };
    let below = ctx
        .cache
        .tiers()
        .lookup_lower(key, req.headers(), &plan.policy)
        .await;
    let found = match below {
        Some((Found::Fresh(entry, key), tier)) => {
            let now = now_ms();
            let answering = Answering {
                cache: &ctx.cache,
                settings: &ctx.settings,
                rule: plan.rule,
                info: &plan.info,
                background: plan.background,
                started: plan.started,
            };
            let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(tier);
            return Ok(answering.entry((&entry, &key), status, now));
        }
        Some((found, tier)) => {
            plan.looked_below = Some(tier);
            found
        }
        None => {
            plan.looked_below = Some(Tier::L1);
            found
        }
    };
    Box::pin(run(ctx, req, plan, found)).await
}

/// A `key_body` request answered before it could be keyed.
enum Unkeyed<B> {
    /// Forward it as it is, counted as a bypass.
    Bypass(NoCacheReason, CacheBody<B>),
    /// Answer this.
    Refuse(StatusCode, &'static str),
}

impl<B> Unkeyed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    async fn resolve<S, ResB>(self, ctx: Ctx<S>, parts: Parts) -> Answer<ResB, S::Error>
    where
        S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    {
        match self {
            Unkeyed::Refuse(status, message) => Ok(error_response(status, message)),
            Unkeyed::Bypass(reason, body) => {
                let status = CacheStatus::bypass(reason);
                // A key_body request is never a background refresh: count it.
                ctx.settings.counters(None).record(&status);
                let resp = ctx.inner.oneshot(Request::from_parts(parts, body)).await?;
                let (rparts, rbody) = resp.into_parts();
                Ok(pass_on(
                    rparts,
                    CacheBody::stream(rbody),
                    false,
                    status,
                    &ctx.settings,
                ))
            }
        }
    }
}

/// Reads a `key_body` request's body (bounded in size and time), keys it and looks the key
/// up in memory.
async fn keyed_by_body<B>(
    cache: &Cache,
    s: &Settings,
    parts: &Parts,
    body: B,
    plan: &Plan,
) -> Result<(CacheKey, CacheBody<B>, Found), Unkeyed<B>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = s.config.cache.key_body_max as usize;
    let bytes = match buffer_within(body, limit, s.config.proxy.upstream_timeout).await {
        Buffered::Complete(bytes) => bytes,
        Buffered::TooLarge(rest) => return Err(Unkeyed::Bypass(NoCacheReason::BodyTooLarge, rest)),
        Buffered::Failed(_) => {
            return Err(Unkeyed::Refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            ))
        }
        Buffered::TimedOut => {
            return Err(Unkeyed::Refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time\n",
            ))
        }
    };
    let hash = match body_hash(&parts.headers, &bytes) {
        Ok(h) => h,
        Err(BodyKeyError::TooDeep) => {
            return Err(Unkeyed::Bypass(
                NoCacheReason::BodyTooDeep,
                CacheBody::full(bytes),
            ))
        }
    };
    let path = normalize_percent(parts.uri.path());
    let key = primary_key(
        s,
        s.rule(plan.rule),
        (&parts.method, &parts.uri, &parts.headers),
        &path,
        plan.user,
        Some(hash),
    );
    let found = cache
        .tiers()
        .lookup_memory(key, &parts.headers, &plan.policy, now_ms());
    Ok((key, CacheBody::full(bytes), found))
}

impl<S, B> Miss<S, B>
where
    S: Service<Request<CacheBody<B>>>,
{
    fn answering(&self) -> Answering<'_> {
        Answering {
            cache: &self.ctx.cache,
            settings: &self.ctx.settings,
            rule: self.plan.rule,
            info: &self.plan.info,
            background: self.plan.background,
            started: self.plan.started,
        }
    }

    /// Lookup: below memory, unless memory's answer is servable or that was done.
    async fn lookup<ResB>(&mut self, found: Found) -> Phase<ResB> {
        if let Some(tier) = self.plan.looked_below {
            return Phase::Decide(found, tier);
        }
        if found.servable() || self.ctx.cache.tiers().lower().is_empty() {
            return Phase::Decide(found, Tier::L1);
        }
        self.plan.looked_below = Some(Tier::L1);
        let tiers = self.ctx.cache.tiers();
        match tiers
            .lookup_lower(self.key, &self.parts.headers, &self.plan.policy)
            .await
        {
            Some((below, tier)) => Phase::Decide(below, tier),
            None => Phase::Decide(found, Tier::L1),
        }
    }

    /// Decide: serve what the tiers hold, or go upstream (and why).
    fn decide<ResB>(&mut self, found: Found, tier: Tier) -> Phase<ResB> {
        let now = now_ms();
        let fwd = match &found {
            Found::Stale(..) | Found::ServeStale(..) if self.plan.policy.revalidate => Fwd::Request,
            Found::Stale(..) | Found::ServeStale(..) => Fwd::Stale,
            Found::VaryMiss => Fwd::VaryMiss,
            Found::Fresh(..) | Found::Miss => Fwd::Miss,
        };
        let stale = match found {
            Found::Fresh(entry, key) => {
                let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(tier);
                return Phase::Respond(self.answering().entry((&entry, &key), status, now));
            }
            Found::ServeStale(entry, key, Stale::MaxStale) => {
                let status =
                    CacheStatus::stale(Stale::MaxStale, entry.ttl_ms(now) / 1000).tier(tier);
                return Phase::Respond(self.answering().entry((&entry, &key), status, now));
            }
            // (A request body is not replayed in the background: revalidate in the
            // foreground.)
            Found::ServeStale(entry, key, _) | Found::Stale(entry, key) => Some((entry, key)),
            Found::VaryMiss | Found::Miss => None,
        };
        if self.plan.policy.only_if_cached {
            let status = CacheStatus::forwarded(fwd);
            self.answering().record(&status);
            let mut resp = error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "not in the cache (only-if-cached)\n",
            );
            stamp(resp.headers_mut(), &status, &self.ctx.settings);
            return Phase::Respond(resp);
        }
        Phase::Join(stale, fwd)
    }

    /// Join: one fetch per key in this process (the others wait for it, then read what it
    /// stored), then one per key in the fleet (others wait for its entry in the shared
    /// tier, then fetch themselves if none came).
    async fn join<ResB>(&mut self, stale: Option<StaleEntry>, fwd: Fwd) -> Phase<ResB> {
        let cache = self.ctx.cache.clone();
        let wait = self.ctx.settings.config.cache.coalesce_wait;
        match cache.inner.coalescer.join(self.key) {
            Role::Leader(guard) => self._leader = Some(guard),
            // Someone is fetching it already: a background refresh has nothing to add.
            Role::Follower(_) if self.plan.background => {
                return Phase::Respond(Response::new(CacheBody::empty()))
            }
            Role::Follower(follower) => {
                if follower.wait(wait).await {
                    // The leader's answer is newer than this request, whatever it asked.
                    let (found, tier) = cache
                        .tiers()
                        .lookup(self.key, &self.parts.headers, &RequestPolicy::default())
                        .await;
                    if let Found::Fresh(entry, key) = found {
                        return Phase::Respond(self.collapsed(&entry, &key, tier));
                    }
                }
            }
        }
        if let Some(tier) = cache.tiers().fleet() {
            if let Some(hit) = self.fleet_lease(tier, wait).await {
                return Phase::Respond(hit);
            }
        }
        let tokens = cache.tiers().begin_fill().await;
        Phase::Fetch(stale, fwd, tokens)
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
                let tiers = self.ctx.cache.tiers();
                let below = tiers
                    .lookup_lower(self.key, &self.parts.headers, &RequestPolicy::default())
                    .await;
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

impl<S, B, ResB> Miss<S, B>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    /// Fetch: the whole representation goes upstream, conditional on the stale entry's
    /// validators when it has some. HEAD is fetched as GET, so it fills the GET entry.
    async fn fetch(
        &mut self,
        stale: Option<StaleEntry>,
        fwd: Fwd,
        tokens: FillTokens,
    ) -> Result<Phase<ResB>, S::Error> {
        let mut parts = self.parts.clone();
        if parts.method == http::Method::HEAD {
            parts.method = http::Method::GET;
        }
        self.fill = Some(FillRequest {
            key: self.key,
            method: parts.method.clone(),
            path: normalize_percent(parts.uri.path()).into_owned(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            user: self.plan.user,
        });
        let conditional = revalidate::prepare(
            &mut parts.headers,
            &parts.method,
            self.plan.info.gzip,
            stale.as_ref().map(|(e, _)| &**e),
        );
        let body = self.body.take().unwrap_or_else(CacheBody::empty);
        let request_time = now_ms();
        let sent = std::time::Instant::now();
        let inner = self.ctx.inner.clone();
        let result = inner.oneshot(Request::from_parts(parts, body)).await;
        self.ctx
            .settings
            .counters(self.plan.rule)
            .record_upstream(sent.elapsed().as_micros() as u64);
        let response_time = now_ms();
        // The upstream failed: a stale entry may stand in (RFC 5861 stale-if-error).
        let failed = match &result {
            Err(_) => Some(StatusCode::BAD_GATEWAY),
            Ok(r) if upstream_failed(r.status()) => Some(r.status()),
            Ok(_) => None,
        };
        if let (Some(code), Some((entry, key))) = (failed, &stale) {
            if stale_if_error_allows(entry, response_time) {
                let status = CacheStatus::stale(Stale::IfError, entry.ttl_ms(response_time) / 1000)
                    .fwd_status(code.as_u16());
                let resp = self.answering().entry((entry, key), status, response_time);
                return Ok(Phase::Respond(resp));
            }
        }
        let (response, body) = result?.into_parts();
        Ok(Phase::Admit(Fetched {
            response,
            body,
            stale,
            fwd,
            conditional,
            tokens,
            request_time,
            response_time,
        }))
    }

    /// Whether and for how long the answer may be stored.
    fn decision(
        &self,
        status: StatusCode,
        response: &http::HeaderMap,
        (request_time, response_time): (u64, u64),
    ) -> Result<Freshness, NoCacheReason> {
        let s = &*self.ctx.settings;
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        admit::decide(
            s,
            s.rule(self.plan.rule),
            fill,
            &self.plan.policy,
            status,
            response,
            request_time,
            response_time,
        )
    }

    /// Admit: a `304` refreshes the stale entry (RFC 9111 §4.3.4); an answer that may not
    /// be stored, or is too large, is handed on as it streams; a storable one is read whole.
    async fn admit(&mut self, f: Fetched<ResB>) -> Phase<ResB> {
        if f.conditional && f.response.status == StatusCode::NOT_MODIFIED {
            if let Some(stale) = f.stale.clone() {
                return self.refresh(&stale, f).await;
            }
        }
        let s = self.ctx.settings.clone();
        let head = self.plan.info.head;
        let times = (f.request_time, f.response_time);
        let freshness = match self.decision(f.response.status, &f.response.headers, times) {
            Ok(freshness) => freshness,
            Err(reason) => {
                let status = self.uncached(f.fwd, reason);
                return Phase::Respond(pass_on(
                    f.response,
                    CacheBody::stream(f.body),
                    head,
                    status,
                    &s,
                ));
            }
        };
        let limit =
            (s.config.proxy.max_body as usize).min(self.ctx.cache.memory_store().max_entry());
        if f.body.size_hint().lower() > limit as u64 {
            let status = self.uncached(f.fwd, NoCacheReason::TooLarge);
            return Phase::Respond(pass_on(
                f.response,
                CacheBody::stream(f.body),
                head,
                status,
                &s,
            ));
        }
        let bytes = match buffer(f.body, limit).await {
            Buffered::Complete(b) => b,
            Buffered::TooLarge(rest) => {
                let status = self.uncached(f.fwd, NoCacheReason::TooLarge);
                return Phase::Respond(pass_on(f.response, rest, head, status, &s));
            }
            Buffered::Failed(_) | Buffered::TimedOut => {
                self.uncached(f.fwd, NoCacheReason::UpstreamBody);
                return Phase::Respond(error_response(
                    StatusCode::BAD_GATEWAY,
                    "the upstream response body failed\n",
                ));
            }
        };
        let kept = match admit::keep_body(&s, &f.response.headers, bytes) {
            Ok(kept) => kept,
            Err(bytes) => {
                let status = self.uncached(f.fwd, NoCacheReason::UpstreamBody);
                return Phase::Respond(pass_on(
                    f.response,
                    CacheBody::full(bytes),
                    head,
                    status,
                    &s,
                ));
            }
        };
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        let admitted = admit::build(
            &s,
            s.rule(self.plan.rule),
            fill,
            (f.response.status, &f.response.headers),
            &kept,
            freshness,
            f.response_time,
        );
        Phase::Store(admitted, f.fwd, f.tokens)
    }

    /// Counts an answer handed on uncached, and says why.
    fn uncached(&self, fwd: Fwd, reason: NoCacheReason) -> CacheStatus {
        let status = CacheStatus::forwarded(fwd).detail(reason);
        self.answering().record(&status);
        status
    }

    /// A `304` for a revalidated entry: its headers and freshness refreshed and stored, or
    /// (when the merged answer may no longer be stored) served once and dropped.
    async fn refresh(&mut self, (entry, key): &StaleEntry, f: Fetched<ResB>) -> Phase<ResB> {
        let Fetched {
            response,
            tokens,
            request_time,
            response_time,
            ..
        } = f;
        let s = self.ctx.settings.clone();
        let rule = s.rule(self.plan.rule);
        let merged = revalidate::merge_304(entry, &response.headers);
        let headers =
            admit::stored_headers(&merged, rule, &s, entry.is_gzip(), entry.other_encoding());
        let status = CacheStatus::revalidated(304);
        let decision = self.decision(entry.status(), &merged, (request_time, response_time));
        let cache = self.ctx.cache.clone();
        let (refreshed, status) = match decision {
            Ok(freshness) => {
                let refreshed = Arc::new(entry.refreshed(&headers, freshness, response_time));
                let stored = cache
                    .tiers()
                    .store(&[(*key, refreshed.clone())], &tokens)
                    .await;
                (refreshed, status.stored(stored))
            }
            Err(reason) => {
                cache.tiers().remove(key);
                let once = Arc::new(entry.refreshed(&headers, Freshness::default(), response_time));
                (once, status.detail(reason))
            }
        };
        Phase::Respond(self.answering().entry((&refreshed, key), status, now_ms()))
    }

    /// Store: the entries written to every tier the fill may write; then the related
    /// paths prefetched, and the answer served from the entry.
    async fn store(
        &mut self,
        admitted: admit::Admitted,
        fwd: Fwd,
        tokens: FillTokens,
    ) -> Phase<ResB> {
        let stored = self.ctx.cache.tiers().store(&admitted.store, &tokens).await;
        let mut status = CacheStatus::forwarded(fwd).stored(stored);
        if !stored {
            status = status.detail(NoCacheReason::Invalidated);
        }
        self.answering().record(&status);
        let s = &*self.ctx.settings;
        // Related paths the next request will likely want (a rule's `prefetch`).
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        let prefetch = s
            .rule(self.plan.rule)
            .filter(|r| stored && !self.plan.background && !r.prefetch.is_empty());
        if let Some(r) = prefetch {
            let caps = r.pattern.captures(&fill.path).unwrap_or_default();
            let paths = r.prefetch.iter().map(|t| t.render(&caps)).collect();
            self.ctx
                .cache
                .prefetch(paths, s.users.identity_headers(&fill.headers));
        }
        Phase::Respond(respond(
            &admitted.entry,
            &self.plan.info,
            status,
            s,
            now_ms(),
        ))
    }
}

/// A fleet-wide fill lease; released (and waiters told) when the fill is done, however it
/// ends.
struct LeaseGuard {
    tier: Arc<dyn LowerTier>,
    key: CacheKey,
    token: String,
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

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

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Service, ServiceExt};

use super::admit::{self, FillRequest};
use super::keyed::keyed_by_body;
use super::miss::{Fetched, Miss, OwnedBy, Phase, StaleEntry};
use super::respond::{append_all, error_response, pass_on, respond, stamp, Answering, X_CACHE};
use super::revalidate;
use super::route::{keyed_target, route_to, Plan};
use super::stream::{self, drain_ready, Drained};
use super::Ctx;
use crate::body::{buffer, Buffered, CacheBody, Inner, PassBody};
use crate::cache::Settings;
use crate::key::normalize_percent;
use crate::policy::{now_ms, stale_if_error_allows, upstream_failed, Freshness};
use crate::status::{CacheStatus, Fwd, NoCacheReason, Stale, Tier};
use crate::store::{FillTokens, Found};

type Answer<B, E> = Result<Response<CacheBody<B>>, E>;

/// Serves a request memory could not answer: from a tier below if it has the entry fresh
/// (a small future), else through the whole miss path ([`drive`], boxed only then).
pub(crate) async fn run<S, B, ResB>(
    ctx: Ctx<S>,
    req: Request<B>,
    mut plan: Plan,
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Inner<B, ResB>,
    B: PassBody,
    ResB: PassBody,
{
    let owner = OwnedBy::of(&ctx.settings, &plan, req.uri());
    if let (Some(key), false) = (plan.primary, ctx.cache.tiers().lower().is_empty()) {
        if !found.servable() && !plan.background {
            let asked = owner.asked(req.headers(), &plan.policy, &plan);
            let below = ctx.cache.tiers().lookup_lower(key, &asked).await;
            if let (Some((Found::Fresh(entry, key), tier)), false) = (&below, plan.dry_run) {
                let now = now_ms();
                let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(*tier);
                let answering = Answering::of(&ctx, &plan);
                return Ok(answering.entry((entry, key), status, now));
            }
            let (found, tier) = below.unwrap_or((found, Tier::L1));
            plan.looked_below = Some(tier);
            let dry = plan.dry_run.then(|| ctx.settings.clone());
            let answer = Box::pin(drive(ctx, req.into_parts(), (plan, owner), found)).await;
            return dry_run_stamped(answer, dry);
        }
    }
    let dry = plan.dry_run.then(|| ctx.settings.clone());
    let answer = Box::pin(drive(ctx, req.into_parts(), (plan, owner), found)).await;
    dry_run_stamped(answer, dry)
}

/// A dry run's answer says so: `Cache-Status: <name>; fwd=bypass; detail=dry-run` and
/// `X-Cache: BYPASS`, whatever the miss path did behind it.
fn dry_run_stamped<B, E>(answer: Answer<B, E>, dry_run: Option<Arc<Settings>>) -> Answer<B, E> {
    let Some(settings) = dry_run else {
        return answer;
    };
    let mut resp = answer?;
    let headers = resp.headers_mut();
    if headers.get(X_CACHE).is_some_and(|v| v == "BYPASS") {
        // Not cacheable anyway (a body that cannot be keyed, say): its own reason stands.
        return Ok(resp);
    }
    let mut statuses: Vec<HeaderValue> = headers
        .get_all(&settings.cache_status)
        .iter()
        .cloned()
        .collect();
    statuses.pop();
    statuses
        .push(CacheStatus::bypass(NoCacheReason::DryRun).header_value(&settings.config.cache.name));
    headers.remove(&settings.cache_status);
    for v in statuses {
        headers.append(settings.cache_status.clone(), v);
    }
    headers.insert(X_CACHE, HeaderValue::from_static("BYPASS"));
    Ok(resp)
}

/// The miss path, phase by phase. In the background (`plan.background`) it refreshes an
/// entry served stale and answers nobody.
async fn drive<S, B, ResB>(
    ctx: Ctx<S>,
    (parts, body): (Parts, B),
    (plan, owner): (Plan, OwnedBy),
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Inner<B, ResB>,
    B: PassBody,
    ResB: PassBody,
{
    // key_body rules: the key needs the body.
    let (key, body, found) = match plan.primary {
        Some(k) => (k, CacheBody::stream(body), found),
        None => match keyed_by_body(&ctx.cache, &ctx.settings, &parts, body, &plan).await {
            Ok(keyed) => keyed,
            Err(answer) => return answer.resolve(ctx, parts, plan.rule).await,
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
        dry_hit: false,
        owner,
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

impl<S, B> Miss<S, B>
where
    S: Service<Request<CacheBody<B>>>,
{
    pub(super) fn answering(&self) -> Answering<'_> {
        Answering::of(&self.ctx, &self.plan)
    }

    /// Whether this request can take a fill's bytes as they come: a plain GET (no HEAD,
    /// no preconditions, no range, which are answered from the whole entry) that someone
    /// waits for.
    pub(super) fn streamable(&self) -> bool {
        let info = &self.plan.info;
        !self.plan.background
            && !info.head
            && info.range.is_none()
            && info.conditions.is_empty()
            && info.conditions.if_range.is_none()
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
        let asked = self
            .owner
            .asked(&self.parts.headers, &self.plan.policy, &self.plan);
        match tiers.lookup_lower(self.key, &asked).await {
            Some((below, tier)) => Phase::Decide(below, tier),
            None => Phase::Decide(found, Tier::L1),
        }
    }

    /// Decide: serve what the tiers hold, or go upstream (and why). In a dry run, count
    /// what would have been served, and go upstream for a fresh copy whatever it is.
    fn decide<ResB>(&mut self, found: Found, tier: Tier) -> Phase<ResB> {
        if self.plan.dry_run {
            self.dry_hit = found.servable();
            self.ctx
                .settings
                .counters(self.plan.rule)
                .record_dry_run(self.dry_hit);
            return Phase::Join(None, Fwd::Miss);
        }
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
}

impl<S, B, ResB> Miss<S, B>
where
    S: Inner<B, ResB> + Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: PassBody,
    ResB: PassBody,
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
        let rule = self.ctx.settings.rule(self.plan.rule);
        if let Some(keyed) = keyed_target(&self.ctx.settings, rule, &parts.uri) {
            parts.uri = keyed;
        }
        route_to(&mut parts.extensions, rule);
        let body = self.body.take().unwrap_or_else(CacheBody::empty);
        let request_time = now_ms();
        let sent = std::time::Instant::now();
        let inner = self.ctx.inner.clone();
        let result = inner.oneshot(Request::from_parts(parts, body)).await;
        let answered = match &result {
            Ok(r) => r.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        };
        self.ctx
            .settings
            .counters(self.plan.rule)
            .record_upstream(sent.elapsed().as_micros() as u64, answered);
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
        if self.dry_hit {
            return Err(NoCacheReason::DryRun);
        }
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
        let body = if self.streamable() {
            // What is ready now decides: complete answers take the buffered path below.
            let mut body = Box::pin(f.body);
            match drain_ready(&mut body, limit) {
                Drained::Complete(b) => Buffered::Complete(b),
                Drained::TooLarge(prefix) => Buffered::TooLarge(CacheBody::prefixed(prefix, body)),
                Drained::Failed => Buffered::TimedOut,
                Drained::Pending(prefix) => {
                    let status = CacheStatus::forwarded(f.fwd).stored(true);
                    self.answering().record(&status);
                    let later = stream::Later {
                        cache: self.ctx.cache.clone(),
                        settings: s.clone(),
                        rule: self.plan.rule,
                        fill: self.fill.take().expect("fill is set before going upstream"),
                        response: (f.response.status, f.response.headers),
                        freshness,
                        tokens: f.tokens,
                        response_time: f.response_time,
                        limit,
                        leader: self._leader.take(),
                        _lease: self._lease.take(),
                    };
                    return Phase::Respond(stream::start(later, status, prefix, body));
                }
            }
        } else {
            buffer(f.body, limit).await
        };
        let bytes = match body {
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
                    .store(&[(*key, refreshed.clone())], &tokens, self.plan.tiers)
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
        let stored = self
            .ctx
            .cache
            .tiers()
            .store(&admitted.store, &tokens, self.plan.tiers)
            .await;
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
        let mut resp = respond(&admitted.entry, &self.plan.info, status, s, now_ms());
        // What is this request's own (a cookie, a field a qualified `private` names)
        // reaches it with the answer, never from the entry.
        append_all(resp.headers_mut(), &admitted.own);
        Phase::Respond(resp)
    }
}

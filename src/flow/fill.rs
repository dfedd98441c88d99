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
use tower::Service;

use super::keyed::keyed_by_body;
use super::miss::{Miss, OwnedBy, Phase};
use super::respond::{error_response, stamp, Answering, X_CACHE};
use super::route::Plan;
use super::Ctx;
use crate::body::{CacheBody, Inner, PassBody};
use crate::cache::Settings;
use crate::policy::now_ms;
use crate::status::{CacheStatus, Fwd, NoCacheReason, Stale, Tier};
use crate::store::Found;

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
    B: PassBody,
    ResB: PassBody,
    S: Inner<B, ResB>,
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
    (mut parts, body): (Parts, B),
    (mut plan, mut owner): (Plan, OwnedBy),
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
        None => match keyed_by_body(&ctx.cache, &ctx.settings, &mut parts, body, &mut plan).await {
            Ok(keyed) => {
                // An LLM request's tenant keys it like a user.
                owner.user_tag = plan.user.as_ref().map(crate::key::user_tag);
                keyed
            }
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
        slot: None,
        ask_range: false,
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
        let json_llm = info
            .llm
            .is_some_and(|(_, ask)| ask.shape == crate::llm::Shape::Json);
        !self.plan.background
            && !json_llm
            && !info.head
            && info.range.is_none()
            && info.conditions.is_empty()
            && info.conditions.if_range.is_none()
    }

    /// Lookup: below memory, unless memory's answer is servable or that was done; with
    /// nothing stored for the URL, a stored part may answer a range.
    async fn lookup<ResB>(&mut self, found: Found) -> Phase<ResB> {
        let (found, tier) = self.look_below(found).await;
        if matches!(found, Found::Miss) {
            if let Some(hit) = self.part_hit().await {
                return hit;
            }
        }
        Phase::Decide(found, tier)
    }

    async fn look_below(&mut self, found: Found) -> (Found, Tier) {
        if let Some(tier) = self.plan.looked_below {
            return (found, tier);
        }
        if found.servable() || self.ctx.cache.tiers().lower().is_empty() {
            return (found, Tier::L1);
        }
        self.plan.looked_below = Some(Tier::L1);
        let tiers = self.ctx.cache.tiers();
        let asked = self
            .owner
            .asked(&self.parts.headers, &self.plan.policy, &self.plan);
        match tiers.lookup_lower(self.key, &asked).await {
            Some(below) => below,
            None => (found, Tier::L1),
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
        if let (Fwd::Miss, Some(query)) = (fwd, self.parts.uri.query()) {
            // For advice: which query parameters make keys differ.
            self.ctx
                .settings
                .counters(self.plan.rule)
                .record_miss_query(query);
        }
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

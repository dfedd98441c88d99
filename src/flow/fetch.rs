//! The Fetch phase: the request goes upstream — the whole representation, conditional on a
//! stale entry's validators, with the query as it was keyed — and a stale entry stands in
//! if the upstream fails (RFC 5861 stale-if-error).

use http::{Request, Response, StatusCode};
use tower::{Service, ServiceExt};

use super::admit::FillRequest;
use super::gate;
use super::miss::{Fetched, Miss, Phase, StaleEntry};
use super::revalidate;
use super::route::{keyed_target, route_to};
use crate::body::{CacheBody, Inner, PassBody};
use crate::budget::Refused;
use crate::key::normalize_percent;
use crate::policy::{now_ms, stale_if_budget_allows, stale_if_error_allows, upstream_failed};
use crate::status::{CacheStatus, Fwd, Stale};
use crate::store::FillTokens;

impl<S, B, ResB> Miss<S, B>
where
    S: Inner<B, ResB> + Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: PassBody,
    ResB: PassBody,
{
    /// Fetch: the whole representation goes upstream, conditional on the stale entry's
    /// validators when it has some. HEAD is fetched as GET, so it fills the GET entry;
    /// with a stale GET entry it goes upstream as HEAD, whose answer updates that entry
    /// (RFC 9111 §4.3.5).
    pub(super) async fn fetch(
        &mut self,
        stale: Option<StaleEntry>,
        fwd: Fwd,
        tokens: FillTokens,
    ) -> Result<Phase<ResB>, S::Error> {
        let (mut parts, conditional) = self.upstream_request(stale.as_ref());
        let rule = self.ctx.settings.rule(self.plan.rule);
        if let Some(keyed) = keyed_target(&self.ctx.settings, rule, &parts.uri) {
            parts.uri = keyed;
        }
        route_to(&mut parts.extensions, rule);
        let background = self.plan.background;
        match gate::admit(&self.ctx.cache, rule, &parts.extensions, background).await {
            Ok(slot) => self.slot = Some(slot),
            Err(refused) => return Ok(Phase::Respond(self.refused(refused, stale, fwd))),
        }
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
        if let Ok(r) = &result {
            gate::heed(&self.ctx.cache, rule, r.status(), r.headers()).await;
        }
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

    /// The request that goes upstream, and whether it is conditional: HEAD as GET unless
    /// a stale entry is being brought up to date, the fill's facts noted, validators of the
    /// stale entry added, and the client's range kept when only a part will be.
    fn upstream_request(&mut self, stale: Option<&StaleEntry>) -> (http::request::Parts, bool) {
        let mut parts = self.parts.clone();
        if parts.method == http::Method::HEAD && stale.is_none() {
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
            stale.map(|(e, _)| &**e),
        );
        if stale.is_none() && self.ask_range && self.ranged().is_some() {
            // The whole will not be kept: ask for just the range, kept as a part.
            if let Some(range) = self.parts.headers.get(http::header::RANGE) {
                parts.headers.insert(http::header::RANGE, range.clone());
                let identity = http::HeaderValue::from_static("identity");
                parts
                    .headers
                    .insert(http::header::ACCEPT_ENCODING, identity);
            }
        }
        (parts, conditional)
    }

    /// No slot upstream came in time: the stale entry within the rule's `stale_if_budget`
    /// (or stale-if-error) window, else the over-budget answer.
    fn refused(
        &self,
        refused: Refused,
        stale: Option<StaleEntry>,
        fwd: Fwd,
    ) -> Response<CacheBody<ResB>> {
        let now = now_ms();
        let window = self
            .ctx
            .settings
            .rule(self.plan.rule)
            .and_then(|r| r.stale_if_budget);
        if let Some((entry, key)) = stale.filter(|(e, _)| stale_if_budget_allows(e, window, now)) {
            let why = Stale::Throttled(refused.reason);
            let status = CacheStatus::stale(why, entry.ttl_ms(now) / 1000);
            return self.answering().entry((&entry, &key), status, now);
        }
        let status = CacheStatus::forwarded(fwd).detail(refused.reason.reason());
        self.answering().record(&status);
        gate::refused(refused, &status, &self.ctx.settings)
    }
}

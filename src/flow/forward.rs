//! Forwarding: a request the cache does not handle goes upstream as it is, and a
//! successful mutation then invalidates what it changed (the rule's `invalidate_on` and
//! `invalidates` tags, and the target's URL and any same-origin `Location` / `Content-Location`,
//! RFC 9111 §4.4).

use bytes::Bytes;
use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower::{Service, ServiceExt};

use super::gate;
use super::respond::pass_on;
use super::rewarm::Rewarm;
use super::route::{route_to, Forward};
use super::Ctx;
use crate::body::{BoxError, CacheBody};
use crate::budget::Refused;
use crate::cache::history::Source;
use crate::cache::{Cache, Settings};
use crate::key::normalize_percent;
use crate::rules::Rule;
use crate::status::{CacheStatus, NoCacheReason};
use crate::store::Invalidation;

/// Tags to drop once a forwarded mutation succeeded.
struct Invalidations {
    /// Rule tags, dropped after a 2xx.
    rule_tags: Vec<String>,
    /// URL tags of the target (RFC 9111 §4.4), dropped after a 2xx or 3xx.
    url_tags: Vec<u64>,
    /// The request's authority, to tell same-origin `Location`s.
    host: Option<String>,
    /// The target (`path?query`), re-warmed if its rule says so.
    target: String,
    /// The request's identity headers, for re-warming `per_user` entries as its user.
    identity: HeaderMap,
    /// A `POST` whose rule warms what it creates.
    warm_created: bool,
    /// The request's user, when re-warming needs to know whose entries to refill.
    user: Option<crate::key::UserId>,
    /// Who it is in the history: `rule METHOD /path`.
    by: String,
}

impl Invalidations {
    fn of<B>(s: &Settings, req: &Request<B>, rule: Option<&Rule>) -> Invalidations {
        let path = normalize_percent(req.uri().path());
        let mut rule_tags = Vec::new();
        if let Some(r) = rule {
            let caps = r.pattern.captures(&path).unwrap_or_default();
            // `{user_id}` in a tag is the mutating request's user.
            let needs_user = r.tags.iter().chain(&r.invalidates).any(|t| t.uses_user());
            let user = needs_user
                .then(|| s.users.identify(req.headers()))
                .flatten();
            let render = |t: &crate::rules::Template| t.render_for(&caps, user.as_ref());
            if r.invalidate_on.contains(req.method()) {
                rule_tags.extend(r.tags.iter().filter_map(render));
            }
            rule_tags.extend(r.invalidates.iter().filter_map(render));
        }
        let target = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let by = format!(
            "{} {} {}",
            rule.map_or(crate::stats::UNMATCHED, |r| r.name.as_str()),
            req.method(),
            req.uri().path()
        );
        Invalidations {
            by,
            rule_tags,
            url_tags: vec![s.url_tag(&target)],
            host,
            target,
            identity: s.users.identity_headers(req.headers()),
            warm_created: req.method() == Method::POST && rule.is_some_and(|r| r.warm_created),
            user: s
                .rules
                .rules()
                .iter()
                .any(|r| r.rewarm_on_invalidate || r.warm_created)
                .then(|| s.users.identify(req.headers()))
                .flatten(),
        }
    }

    /// Applies what the response status allows; returns entries removed.
    async fn apply(
        mut self,
        cache: &Cache,
        s: &Settings,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> u64 {
        if !(status.is_success() || status.is_redirection()) {
            return 0;
        }
        let mut created = None;
        for name in [LOCATION, CONTENT_LOCATION] {
            let Some(uri) = headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Uri>().ok())
            else {
                continue;
            };
            let same_origin = match uri.authority() {
                None => true,
                Some(a) => self.host.as_deref() == Some(a.as_str()),
            };
            if same_origin && uri.path().starts_with('/') {
                let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
                self.url_tags.push(s.url_tag(target));
                if name == LOCATION {
                    created = Some(target.to_string());
                }
            }
        }
        // What re-warming rules are about to lose, found before it goes.
        let mut rewarm = if status.is_success() {
            let mut ids = self.url_tags.clone();
            ids.extend(self.rule_tags.iter().map(|t| crate::key::tag_id(t)));
            Rewarm::planned(cache, s, &Invalidation::Tags(ids), &self.target, self.user)
        } else {
            Rewarm::default()
        };
        let by = || (Source::Mutation, Some(self.by.clone()));
        let mut n = cache
            .apply_as(&Invalidation::Tags(self.url_tags.clone()), false, by())
            .await;
        if status.is_success() && !self.rule_tags.is_empty() {
            let ids = self
                .rule_tags
                .iter()
                .map(|t| crate::key::tag_id(t))
                .collect();
            n += cache.apply_as(&Invalidation::Tags(ids), false, by()).await;
        }
        if let Some(location) = created.filter(|_| status.is_success()) {
            let warm_created = self.warm_created;
            rewarm.add(s, location, true, |r| warm_created || r.warm_created);
        }
        rewarm.run(cache, self.identity).await;
        n
    }
}

/// Forwards a request the cache does not handle.
pub(crate) async fn forward<S, B, ResB>(
    ctx: Ctx<S>,
    req: Request<B>,
    fwd: Forward,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let Ctx {
        inner,
        cache,
        settings,
    } = ctx;
    let rule = settings.rule(fwd.rule);
    let invalidations = fwd
        .invalidate
        .then(|| Invalidations::of(&settings, &req, rule));
    let mut req = req.map(CacheBody::stream);
    route_to(req.extensions_mut(), rule);
    let _slot = match gate::admit(&cache, rule, req.extensions(), false).await {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused_here(refused, fwd.rule, &settings)),
    };
    let sent = std::time::Instant::now();
    let resp = inner.oneshot(req).await?;
    settings
        .counters(fwd.rule)
        .record_upstream(sent.elapsed().as_micros() as u64, resp.status());
    gate::heed(&cache, rule, resp.status(), resp.headers()).await;
    if let Some(inv) = invalidations {
        inv.apply(&cache, &settings, resp.status(), resp.headers())
            .await;
    }
    let status = CacheStatus::bypass(fwd.reason);
    settings.counters(fwd.rule).record(&status);
    let (parts, body) = resp.into_parts();
    Ok(pass_on(
        parts,
        CacheBody::stream(body),
        false,
        status,
        &settings,
    ))
}

/// Forwards a request as it is, counted as a bypass for `reason`.
pub(crate) async fn pass_through<S, B, ResB>(
    ctx: Ctx<S>,
    mut req: Request<CacheBody<B>>,
    rule: Option<usize>,
    reason: NoCacheReason,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let status = CacheStatus::bypass(reason);
    let the_rule = ctx.settings.rule(rule);
    route_to(req.extensions_mut(), the_rule);
    let _slot = match gate::admit(&ctx.cache, the_rule, req.extensions(), false).await {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused_here(refused, rule, &ctx.settings)),
    };
    ctx.settings.counters(rule).record(&status);
    let (parts, body) = ctx.inner.oneshot(req).await?.into_parts();
    gate::heed(&ctx.cache, the_rule, parts.status, &parts.headers).await;
    Ok(pass_on(
        parts,
        CacheBody::stream(body),
        false,
        status,
        &ctx.settings,
    ))
}

/// The answer to a forwarded request its upstream's gate refused, counted with the limit
/// it met.
fn refused_here<B>(
    refused: Refused,
    rule: Option<usize>,
    settings: &Settings,
) -> Response<CacheBody<B>> {
    let status = CacheStatus::bypass(refused.reason.reason());
    settings.counters(rule).record(&status);
    gate::refused(refused, &status, settings)
}

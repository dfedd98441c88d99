//! Routing: the request matched to a rule and decided on — forwarded past the cache (and
//! why), or planned for a lookup with its key. Pure: no await, no store.

use std::time::Instant;

use http::header::{CONTENT_TYPE, HOST, RANGE};
use http::{HeaderMap, Method, Request, Uri};

use super::respond::ReqInfo;
use crate::cache::Settings;
use crate::key::{normalize_percent, BodyHash, BodyKeyError, CacheKey, KeyInput, UserId};
use crate::policy::RequestPolicy;
use crate::rules::Rule;
use crate::semantics::hygiene::FORWARDING_KEYED;
use crate::semantics::ranges::{parse_range, RangeRequest};
use crate::status::{NoCacheReason, Tier, TierSet};

/// The upstream a request goes to, by name (`rule.upstream`): put in the request's
/// extensions by the layer before it calls the inner service, read by the sidecar's
/// upstream client. Absent: the default upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTo(pub std::sync::Arc<str>);

/// A request the cache will not serve: forward it, and maybe invalidate afterwards.
pub(crate) struct Forward {
    pub rule: Option<usize>,
    pub reason: NoCacheReason,
    /// An unsafe method: invalidate on success.
    pub invalidate: bool,
}

/// A request the cache may serve.
#[derive(Clone)]
pub(crate) struct Plan {
    pub rule: Option<usize>,
    /// `None` until the body is read, for `key_body` rules.
    pub primary: Option<CacheKey>,
    pub user: Option<UserId>,
    pub policy: RequestPolicy,
    pub info: ReqInfo,
    /// A refresh nobody waits for (stale-while-revalidate, refresh-ahead).
    pub background: bool,
    /// The tiers below memory were asked already (and which one answered, or memory).
    pub looked_below: Option<Tier>,
    /// The tiers the rule's entries may live in.
    pub tiers: TierSet,
    /// When its entries reach those tiers (the rule's `write`).
    pub write: Option<crate::status::WritePolicy>,
    /// `cache.dry_run`: go upstream whatever the tiers hold; count what they would have
    /// served.
    pub dry_run: bool,
    /// When the request arrived.
    pub started: Instant,
}

/// What routing decided.
// Lives on the stack for one call; boxing the large variant would allocate per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Route {
    Forward(Forward),
    Cache(Plan),
}

/// Matches the request to a rule and decides whether the cache handles it.
pub(crate) fn route<B>(s: &Settings, req: &Request<B>, upgrade: bool) -> Route {
    let method = req.method();
    let path = normalize_percent(req.uri().path());
    let rule = s.rules.find(method, &path);
    let unsafe_method = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let forward = |reason, invalidate| {
        Route::Forward(Forward {
            rule: rule.map(|r| r.index),
            reason,
            invalidate,
        })
    };
    if upgrade {
        return forward(NoCacheReason::Upgrade, false);
    }
    match rule {
        Some(r) if !r.caches(method) => {
            let reason = if r.cache {
                NoCacheReason::Method
            } else {
                NoCacheReason::Rule
            };
            return forward(reason, unsafe_method);
        }
        None if !matches!(*method, Method::GET | Method::HEAD) => {
            return forward(NoCacheReason::Method, unsafe_method)
        }
        _ => {}
    }
    // One byte range is served from the cache; several (or another unit) pass through.
    if let Some(range) = req.headers().get(RANGE) {
        if parse_range(range) == RangeRequest::Other {
            return forward(NoCacheReason::Range, false);
        }
    }
    let user = match rule {
        Some(r) if r.per_user => match s.users.identify(req.headers()) {
            Some(u) => Some(u),
            None => return forward(NoCacheReason::NoUser, false),
        },
        _ => None,
    };
    let mut policy = RequestPolicy::from_headers(req.headers());
    if !s.config.cache.honor_client_no_cache {
        // Reload storms: clients' no-cache / max-age=0 do not reach the upstream.
        policy.revalidate = false;
        policy.max_age = None;
    }
    let primary = match rule {
        Some(r) if r.key_body => None,
        _ => Some(primary_key(
            s,
            rule,
            (req.method(), req.uri(), req.headers()),
            &path,
            user,
            None,
        )),
    };
    Route::Cache(Plan {
        rule: rule.map(|r| r.index),
        primary,
        user,
        policy,
        info: ReqInfo::new(req),
        background: false,
        looked_below: None,
        tiers: rule.map_or(TierSet::ALL, |r| r.tiers),
        write: rule.and_then(|r| r.write),
        dry_run: s.config.cache.dry_run,
        started: Instant::now(),
    })
}

/// The primary key of a request (HEAD keyed as GET).
pub(crate) fn primary_key(
    s: &Settings,
    rule: Option<&Rule>,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
    path: &str,
    user: Option<UserId>,
    body: Option<BodyHash>,
) -> CacheKey {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let host = if s.key_host {
        uri.authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
    } else {
        None
    };
    let key = CacheKey::primary(
        &KeyInput {
            host,
            query: uri.query(),
            only_params: rule.and_then(|r| r.key_query.as_deref()),
            version: rule.and_then(|r| r.version.as_deref()),
            user,
            body,
            ..KeyInput::new(&s.config.cache.namespace, method, path)
        },
        &s.config.cache.ignore_params,
    );
    // Forwarding fields reach the upstream only from trusted proxies; when they do, they
    // may change the answer, so they are part of the key.
    let forwarded = !s.config.proxy.trusted_proxies.is_empty()
        && FORWARDING_KEYED.iter().any(|n| headers.contains_key(n));
    if forwarded {
        key.variant(&FORWARDING_KEYED, headers)
    } else {
        key
    }
}

/// The target a fill sends upstream when the key leaves query parameters out (`ignore_params`,
/// `key_query`): the query as it was keyed, so the origin never acts on a parameter the key
/// did not see (an origin that also splits on `;`, or lets the last duplicate win, would
/// otherwise answer another request and have it stored under this key). `None`: the key
/// saw every parameter, and the target goes as it came.
pub(crate) fn keyed_target(s: &Settings, rule: Option<&Rule>, uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    let ignore = &s.config.cache.ignore_params;
    let only = rule.and_then(|r| r.key_query.as_deref());
    if ignore.is_empty() && only.is_none() {
        return None;
    }
    let path = uri.path();
    let keyed = crate::key::normalized_url(path, Some(query), ignore, only);
    if keyed == crate::key::normalized_url(path, Some(query), &[], None) {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(keyed.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The normalised URL an entry for `uri` is stored with (`path?query` as keyed).
pub(crate) fn entry_url(s: &Settings, rule: Option<&Rule>, uri: &Uri) -> String {
    crate::key::normalized_url(
        &normalize_percent(uri.path()),
        uri.query(),
        &s.config.cache.ignore_params,
        rule.and_then(|r| r.key_query.as_deref()),
    )
}

/// Names the upstream of `rule` in a request about to go to the inner service.
pub(crate) fn route_to(extensions: &mut http::Extensions, rule: Option<&Rule>) {
    if let Some(name) = rule.and_then(|r| r.upstream.clone()) {
        extensions.insert(RouteTo(name));
    }
}

/// The body hash of a `key_body` request: the whole body, or the rule's chosen fields.
pub(crate) fn body_hash(
    headers: &HeaderMap,
    body: &[u8],
    fields: Option<&[String]>,
) -> Result<BodyHash, BodyKeyError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match fields {
        Some(pointers) => BodyHash::of_fields(content_type, body, pointers),
        None => BodyHash::of(content_type, body),
    }
}

//! The trip upstream: forward a request the cache does not handle (and invalidate after
//! a successful mutation), or fetch a miss → decide → store → serve.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LOCATION, HOST, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LOCATION, RANGE, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower::{Service, ServiceExt};

use crate::body::{buffer, BoxError, Buffered, CacheBody};
use crate::cache::{Cache, Settings};
use crate::coalesce::Role;
use crate::entry::{Entry, NewEntry, StoredBody};
use crate::key::{self, normalize_percent, BodyKeyError, CacheKey};
use crate::layer::{body_hash, classify, lookup, serve_entry, Forward, Found, Lookup};
use crate::policy::{self, now_ms, RequestPolicy, StoreInput};
use crate::rules::Rule;
use crate::serve::{self, error_response, stamp};
use crate::status::{CacheStatus, Fwd, NoCacheReason, Stale, Tier};
use crate::store::redis::{Lease, RedisTier};

type Answer<B, E> = Result<Response<CacheBody<B>>, E>;

/// Tags to drop once a forwarded mutation succeeded.
struct Invalidations {
    /// Rule tags, dropped after a 2xx.
    rule_tags: Vec<String>,
    /// URL tags of the target (RFC 9111 §4.4), dropped after a 2xx or 3xx.
    url_tags: Vec<u64>,
    /// The request's authority, to tell same-origin `Location`s.
    host: Option<String>,
}

impl Invalidations {
    fn of<B>(s: &Settings, req: &Request<B>, rule: Option<&Rule>) -> Invalidations {
        let path = normalize_percent(req.uri().path());
        let mut rule_tags = Vec::new();
        if let Some(r) = rule {
            let caps = r.pattern.captures(&path).unwrap_or_default();
            if r.invalidate_on.contains(req.method()) {
                rule_tags.extend(r.tags.iter().map(|t| t.render(&caps)));
            }
            rule_tags.extend(r.invalidates.iter().map(|t| t.render(&caps)));
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
        Invalidations {
            rule_tags,
            url_tags: vec![s.url_tag(&target)],
            host,
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
            }
        }
        let mut n = cache.invalidate_tag_ids(self.url_tags).await;
        if status.is_success() && !self.rule_tags.is_empty() {
            n += cache.invalidate_tags(&self.rule_tags).await;
        }
        n
    }
}

/// Forwards a request the cache does not handle.
pub(crate) async fn forward<S, B, ResB>(
    inner: S,
    cache: Cache,
    settings: Arc<Settings>,
    req: Request<B>,
    fwd: Forward,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let rule = fwd.rule.map(|i| &settings.rules.rules()[i]);
    let invalidations = fwd
        .invalidate
        .then(|| Invalidations::of(&settings, &req, rule));
    let sent = std::time::Instant::now();
    let resp = inner.oneshot(req.map(CacheBody::stream)).await?;
    settings
        .counters(fwd.rule)
        .record_upstream(sent.elapsed().as_micros() as u64);
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

/// Hands the upstream's answer on uncached: tag header stripped, status stamped.
fn pass_on<B>(
    mut parts: http::response::Parts,
    body: CacheBody<B>,
    head: bool,
    status: CacheStatus,
    s: &Settings,
) -> Response<CacheBody<B>> {
    serve::strip_cache_fields(&mut parts.headers, s);
    stamp(&mut parts.headers, &status, s);
    Response::from_parts(parts, if head { CacheBody::empty() } else { body })
}

/// The request-side facts the store step needs, taken before the request goes upstream.
struct Fill {
    key: CacheKey,
    method: Method,
    path: String,
    query: Option<String>,
    request_headers: HeaderMap,
}

/// Statuses after which a stale entry may be served instead (RFC 5861 §4).
fn upstream_failed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Whether `entry` may be served stale because the upstream failed.
fn stale_if_error_allows(entry: &Entry, now: u64) -> bool {
    let f = entry.freshness();
    let staleness = -entry.ttl_ms(now);
    !f.must_revalidate && !f.no_cache && staleness <= f.stale_if_error as i64 * 1000
}

/// Headers of a stored response updated from a `304` (RFC 9111 §3.2): every field the
/// `304` carries replaces the stored one, except framing and hop-by-hop fields.
fn merge_304(entry: &Entry, update: &HeaderMap) -> HeaderMap {
    let mut merged: HeaderMap = entry.headers().collect();
    let mut update = update.clone();
    serve::strip_hop_by_hop(&mut update);
    for name in [
        http::header::CONTENT_LENGTH,
        CONTENT_ENCODING,
        http::header::CONTENT_RANGE,
    ] {
        update.remove(name);
    }
    for name in update.keys() {
        merged.remove(name);
    }
    for (name, value) in update.iter() {
        merged.append(name.clone(), value.clone());
    }
    merged
}

/// Serves a miss, or an entry that needs going upstream: fetch (revalidating a stale
/// entry when it can), decide, store, serve. In the background (`plan.background`) it
/// refreshes an entry served stale and answers nobody.
pub(crate) async fn fetch<S, B, ResB>(
    inner: S,
    cache: Cache,
    settings: Arc<Settings>,
    req: Request<B>,
    plan: Lookup,
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let s = &*settings;
    let store = &cache.inner.store;
    let counters = s.counters(plan.rule);
    // A background refresh answers nobody, so it is not counted as a request.
    let count = |status: &CacheStatus| {
        if !plan.background {
            counters.record(status);
        }
    };
    let (mut parts, body) = req.into_parts();
    let path = normalize_percent(parts.uri.path()).into_owned();

    // key_body rules: the key needs the body.
    let (key, body, found) = match plan.primary {
        Some(k) => (k, CacheBody::stream(body), found),
        None => match read_key_body(body, s).await {
            Buffered::Complete(bytes) => {
                let hash = match body_hash(&parts.headers, &bytes) {
                    Ok(h) => h,
                    Err(BodyKeyError::TooDeep) => {
                        let status = CacheStatus::bypass(NoCacheReason::BodyTooDeep);
                        count(&status);
                        let req = Request::from_parts(parts, CacheBody::full(bytes));
                        let (rparts, rbody) = inner.oneshot(req).await?.into_parts();
                        return Ok(pass_on(rparts, CacheBody::stream(rbody), false, status, s));
                    }
                };
                let rule = plan.rule.map(|i| &s.rules.rules()[i]);
                let k = crate::layer::primary_key(
                    s,
                    rule,
                    (&parts.method, &parts.uri, &parts.headers),
                    &path,
                    plan.user,
                    Some(hash),
                );
                let found = lookup(store, k, &parts.headers, &plan.policy, now_ms());
                (k, CacheBody::full(bytes), found)
            }
            Buffered::TooLarge(rest) => {
                let status = CacheStatus::bypass(NoCacheReason::BodyTooLarge);
                count(&status);
                let resp = inner.oneshot(Request::from_parts(parts, rest)).await?;
                let (rparts, rbody) = resp.into_parts();
                return Ok(pass_on(rparts, CacheBody::stream(rbody), false, status, s));
            }
            Buffered::Failed(_) => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                ));
            }
            Buffered::TimedOut => {
                return Ok(error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                ));
            }
        },
    };

    // Not usable from L1: the shared tier may have it (another instance filled it).
    let (found, tier) = match (found, &cache.inner.l2) {
        (f @ (Found::Fresh(..) | Found::ServeStale(..)), _) | (f, None) => (f, Tier::L1),
        (f, Some(_)) if plan.l2_looked => (f, Tier::L2),
        (l1, Some(_)) => match lookup_l2(&cache, key, &parts.headers, &plan.policy).await {
            Some(f) => (f, Tier::L2),
            None => (l1, Tier::L1),
        },
    };
    let now = now_ms();
    let fwd = match &found {
        Found::Stale(..) | Found::ServeStale(..) if plan.policy.revalidate => Fwd::Request,
        Found::Stale(..) | Found::ServeStale(..) => Fwd::Stale,
        Found::VaryMiss => Fwd::VaryMiss,
        Found::Fresh(..) | Found::Miss => Fwd::Miss,
    };
    let stale = match found {
        Found::Fresh(entry, key) => {
            let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(tier);
            return Ok(serve_entry(&cache, s, &plan, (&entry, &key), status, now));
        }
        Found::ServeStale(entry, key, Stale::MaxStale) => {
            let status = CacheStatus::stale(Stale::MaxStale, entry.ttl_ms(now) / 1000).tier(tier);
            return Ok(serve_entry(&cache, s, &plan, (&entry, &key), status, now));
        }
        // (A request body is not replayed in the background: revalidate in the foreground.)
        Found::ServeStale(entry, key, _) | Found::Stale(entry, key) => Some((entry, key)),
        Found::VaryMiss | Found::Miss => None,
    };
    if plan.policy.only_if_cached {
        let status = CacheStatus::forwarded(fwd);
        count(&status);
        let mut resp = error_response(
            StatusCode::GATEWAY_TIMEOUT,
            "not in the cache (only-if-cached)\n",
        );
        stamp(resp.headers_mut(), &status, s);
        return Ok(resp);
    }

    // One fetch per key; the others wait for it, then read what it stored.
    let _leader = match cache.inner.coalescer.join(key) {
        Role::Leader(guard) => Some(guard),
        // Someone is fetching it already: a background refresh has nothing to add.
        Role::Follower(_) if plan.background => return Ok(Response::new(CacheBody::empty())),
        Role::Follower(wait) => {
            if wait.wait(s.config.cache.coalesce_wait).await {
                // The leader's answer is newer than this request, whatever it asked.
                let (found, tier) =
                    lookup_tiers(&cache, key, &parts.headers, &RequestPolicy::default()).await;
                let now = now_ms();
                if let Found::Fresh(entry, key) = found {
                    let status = CacheStatus::hit(entry.ttl_ms(now) / 1000)
                        .collapsed(true)
                        .tier(tier);
                    return Ok(serve_entry(&cache, s, &plan, (&entry, &key), status, now));
                }
            }
            None
        }
    };

    // Fleet-wide single flight: one instance goes upstream for a key, the others wait for
    // its entry in Redis (bounded), then fetch themselves if none came.
    let mut _lease = None;
    let mut l2_epoch = None;
    if let Some(l2) = &cache.inner.l2 {
        let waiter = l2.fill_waiter(&key);
        match l2.lease(&key).await {
            Lease::Acquired(token) => {
                _lease = Some(LeaseGuard {
                    l2: l2.clone(),
                    key,
                    token,
                })
            }
            Lease::Busy => {
                l2.wait_fill(&key, waiter, s.config.cache.coalesce_wait)
                    .await;
                if let Some(Found::Fresh(entry, key)) =
                    lookup_l2(&cache, key, &parts.headers, &RequestPolicy::default()).await
                {
                    let now = now_ms();
                    let status = CacheStatus::hit(entry.ttl_ms(now) / 1000)
                        .collapsed(true)
                        .tier(Tier::L2);
                    return Ok(serve_entry(&cache, s, &plan, (&entry, &key), status, now));
                }
            }
            Lease::Unavailable => drop(waiter),
        }
        l2_epoch = l2.begin_fill().await;
    }

    let token = store.begin_fill();
    let head = parts.method == Method::HEAD;
    if head {
        // Fetch the whole representation so HEAD fills the GET entry.
        parts.method = Method::GET;
    }
    let fill = Fill {
        key,
        method: parts.method.clone(),
        path,
        query: parts.uri.query().map(str::to_string),
        request_headers: parts.headers.clone(),
    };
    // A fill fetches the whole, unconditional representation for everyone; the client's
    // own conditions and ranges are evaluated against the stored entry.
    for h in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_RANGE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        RANGE,
    ] {
        parts.headers.remove(h);
    }
    // larder decodes gzip for clients that cannot take it, so gzip is all it asks for; a
    // client that cannot take gzip gets identity, so an answer that turns out not to be
    // storable reaches it in a coding it understands.
    let coding = if plan.info.gzip { "gzip" } else { "identity" };
    parts
        .headers
        .insert(ACCEPT_ENCODING, HeaderValue::from_static(coding));
    // Revalidate a stale entry with its validators (RFC 9111 §4.3.1).
    let mut conditional = false;
    if let Some((entry, _)) = &stale {
        if parts.method == Method::GET {
            if let Some(etag) = entry.etag() {
                let etag = match etag.as_bytes().strip_prefix(b"W/") {
                    // Stored weak only because larder compressed it: ask with the origin's.
                    Some(strong) if entry.etag_weakened() => {
                        HeaderValue::from_bytes(strong).unwrap_or(etag)
                    }
                    _ => etag,
                };
                parts.headers.insert(IF_NONE_MATCH, etag);
                conditional = true;
            }
            if let Some(lm) = entry.last_modified() {
                parts.headers.insert(IF_MODIFIED_SINCE, lm);
                conditional = true;
            }
        }
    }

    let request_time = now_ms();
    let sent = std::time::Instant::now();
    let result = inner.oneshot(Request::from_parts(parts, body)).await;
    counters.record_upstream(sent.elapsed().as_micros() as u64);
    let response_time = now_ms();
    let info = &plan.info;
    let rule = plan.rule.map(|i| &s.rules.rules()[i]);
    let input = |status: StatusCode,
                 response: &'_ HeaderMap|
     -> Result<crate::policy::Freshness, NoCacheReason> {
        if plan.policy.no_store {
            return Err(NoCacheReason::RequestNoStore);
        }
        policy::decide(&StoreInput {
            method: &fill.method,
            request: &fill.request_headers,
            status,
            response,
            rule,
            credentials: s.users.present(&fill.request_headers),
            targeted: &s.targeted,
            heuristic: s
                .config
                .cache
                .heuristic
                .then_some(s.config.cache.heuristic_max),
            statuses: &s.config.cache.statuses,
            default_ttl: s.config.cache.default_ttl,
            respect_origin: s.config.cache.respect_origin,
            request_time,
            response_time,
        })
    };

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
            return Ok(serve_entry(
                &cache,
                s,
                &plan,
                (entry, key),
                status,
                response_time,
            ));
        }
    }
    let (rparts, rbody) = result?.into_parts();

    // Not modified: refresh the stored entry's headers and freshness (RFC 9111 §4.3.4).
    if let (true, StatusCode::NOT_MODIFIED, Some((entry, entry_key))) =
        (conditional, rparts.status, &stale)
    {
        let merged = merge_304(entry, &rparts.headers);
        let headers =
            serve::stored_headers(&merged, rule, s, entry.is_gzip(), entry.other_encoding());
        let status = CacheStatus::revalidated(304);
        let refreshed = match input(entry.status(), &merged) {
            Ok(freshness) => {
                let refreshed = Arc::new(entry.refreshed(&headers, freshness, response_time));
                let stored = cache.l1_insert(*entry_key, refreshed.clone(), token)
                    | put_l2(&cache, l2_epoch, &[(*entry_key, &refreshed)]).await;
                (refreshed, status.stored(stored))
            }
            Err(reason) => {
                store.remove(entry_key);
                let once = Arc::new(entry.refreshed(
                    &headers,
                    crate::policy::Freshness::default(),
                    response_time,
                ));
                (once, status.detail(reason))
            }
        };
        return Ok(serve_entry(
            &cache,
            s,
            &plan,
            (&refreshed.0, entry_key),
            refreshed.1,
            now_ms(),
        ));
    }

    let uncached = |reason: NoCacheReason| {
        let status = CacheStatus::forwarded(fwd).detail(reason);
        count(&status);
        status
    };
    let freshness = match input(rparts.status, &rparts.headers) {
        Ok(f) => f,
        Err(reason) => {
            return Ok(pass_on(
                rparts,
                CacheBody::stream(rbody),
                head,
                uncached(reason),
                s,
            ))
        }
    };
    let limit = (s.config.proxy.max_body as usize).min(store.max_entry());
    if rbody.size_hint().lower() > limit as u64 {
        return Ok(pass_on(
            rparts,
            CacheBody::stream(rbody),
            head,
            uncached(NoCacheReason::TooLarge),
            s,
        ));
    }
    let bytes = match buffer(rbody, limit).await {
        Buffered::Complete(b) => b,
        Buffered::TooLarge(rest) => {
            return Ok(pass_on(
                rparts,
                rest,
                head,
                uncached(NoCacheReason::TooLarge),
                s,
            ))
        }
        Buffered::Failed(_) | Buffered::TimedOut => {
            uncached(NoCacheReason::UpstreamBody);
            return Ok(error_response(
                StatusCode::BAD_GATEWAY,
                "the upstream response body failed\n",
            ));
        }
    };

    // Encoding: keep the origin's gzip, compress identity bodies worth it, keep others as-is.
    let coding = rparts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let compressed;
    let body = match coding.as_deref() {
        None | Some("") | Some("identity") => {
            let worth = bytes.len() as u64 >= s.config.cache.compress_min
                && crate::compress::compressible(&rparts.headers);
            compressed = if worth {
                crate::compress::gzip_if_smaller(&bytes)
            } else {
                None
            };
            match &compressed {
                Some(gz) => StoredBody::Gzip {
                    data: gz,
                    identity_len: bytes.len() as u32,
                    from_origin: false,
                },
                None => StoredBody::Identity(&bytes),
            }
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            if crate::compress::gunzip_into(&bytes, &mut out, s.config.proxy.max_body as usize)
                .is_err()
            {
                let status = uncached(NoCacheReason::UpstreamBody);
                return Ok(pass_on(rparts, CacheBody::full(bytes), head, status, s));
            }
            StoredBody::Gzip {
                data: &bytes,
                identity_len: out.len() as u32,
                from_origin: true,
            }
        }
        Some(_) => StoredBody::Encoded(&bytes),
    };
    let gzip = matches!(body, StoredBody::Gzip { .. });
    let other = matches!(body, StoredBody::Encoded(_));
    let headers = serve::stored_headers(&rparts.headers, rule, s, gzip, other);
    let tags = entry_tags(s, rule, &fill, &rparts.headers, plan.user);
    let url = key::normalized_url(
        &fill.path,
        fill.query.as_deref(),
        &s.config.cache.ignore_params,
        rule.and_then(|r| r.key_query.as_deref()),
    );
    let entry = Arc::new(Entry::encode(&NewEntry {
        status: rparts.status,
        headers: &headers,
        body,
        url: &url,
        tags: &tags,
        freshness,
        response_time,
        vary: None,
    }));
    let vary = vary_names(&rparts.headers, other);
    let entry_key = if vary.is_empty() {
        fill.key
    } else {
        fill.key.variant(&vary, &fill.request_headers)
    };
    let stored = if vary.is_empty() {
        cache.l1_insert(fill.key, entry.clone(), token)
            | put_l2(&cache, l2_epoch, &[(fill.key, &entry)]).await
    } else {
        // The marker lives as long as its variants can be used (same validators, same
        // grace), so a stale variant is found and revalidated rather than refetched.
        let marker = Arc::new(Entry::encode(&NewEntry {
            status: rparts.status,
            headers: &headers,
            body: StoredBody::Identity(b""),
            url: &url,
            tags: &tags,
            freshness,
            response_time,
            vary: Some(&vary),
        }));
        let l1 = cache.l1_insert(fill.key, marker.clone(), token)
            && cache.l1_insert(entry_key, entry.clone(), token);
        l1 | put_l2(
            &cache,
            l2_epoch,
            &[(fill.key, &marker), (entry_key, &entry)],
        )
        .await
    };
    let mut status = CacheStatus::forwarded(fwd).stored(stored);
    if !stored {
        status = status.detail(NoCacheReason::Invalidated);
    }
    count(&status);
    // Related paths the next request will likely want (a rule's `prefetch`).
    if let Some(r) = rule.filter(|r| stored && !plan.background && !r.prefetch.is_empty()) {
        let caps = r.pattern.captures(&fill.path).unwrap_or_default();
        let paths = r.prefetch.iter().map(|t| t.render(&caps)).collect();
        cache.prefetch(paths, s.users.identity_headers(&fill.request_headers));
    }
    Ok(serve::respond(&entry, info, status, s, now_ms()))
}

/// An L1 miss with Redis: answer from L2 if it has the entry, else go upstream. (The trip
/// upstream is a large future; it is only built and boxed when L2 misses too.)
pub(crate) async fn from_l2_or_fetch<S, B, ResB>(
    inner: S,
    cache: Cache,
    settings: Arc<Settings>,
    req: Request<B>,
    mut plan: Lookup,
    found: Found,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let Some(key) = plan.primary else {
        return Box::pin(fetch(inner, cache, settings, req, plan, found)).await;
    };
    let found = match lookup_l2(&cache, key, req.headers(), &plan.policy).await {
        Some(Found::Fresh(entry, key)) => {
            let now = now_ms();
            let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(Tier::L2);
            return Ok(serve_entry(
                &cache,
                &settings,
                &plan,
                (&entry, &key),
                status,
                now,
            ));
        }
        Some(f) => f,
        None => found,
    };
    plan.l2_looked = true;
    Box::pin(fetch(inner, cache, settings, req, plan, found)).await
}

/// Looks a key up in the shared tier (following a `Vary` marker), refilling L1 with what it
/// finds. `None` without Redis or when Redis has nothing for the URL.
async fn lookup_l2(
    cache: &Cache,
    primary: CacheKey,
    headers: &HeaderMap,
    policy: &RequestPolicy,
) -> Option<Found> {
    let l2 = cache.inner.l2.as_ref()?;
    // Taken before reading: an invalidation arriving meanwhile keeps the copy out of L1.
    let token = cache.inner.store.begin_fill();
    let entry = l2.get(&primary).await?;
    let (entry, key) = if entry.is_vary_marker() {
        let variant = primary.variant(&entry.vary_names(), headers);
        cache.l1_insert(primary, entry, token);
        match l2.get(&variant).await {
            Some(e) => (e, variant),
            None => return Some(Found::VaryMiss),
        }
    } else {
        (entry, primary)
    };
    cache.l1_insert(key, entry.clone(), token);
    Some(classify(entry, key, policy, now_ms()))
}

/// L1, then the shared tier.
async fn lookup_tiers(
    cache: &Cache,
    key: CacheKey,
    headers: &HeaderMap,
    policy: &RequestPolicy,
) -> (Found, Tier) {
    let l1 = if cache.inner.l1 {
        lookup(&cache.inner.store, key, headers, policy, now_ms())
    } else {
        Found::Miss
    };
    match l1 {
        f @ (Found::Fresh(..) | Found::ServeStale(..)) => (f, Tier::L1),
        l1 => match lookup_l2(cache, key, headers, policy).await {
            Some(f) => (f, Tier::L2),
            None => (l1, Tier::L1),
        },
    }
}

/// Writes entries to the shared tier when the fill began with Redis answering.
async fn put_l2(cache: &Cache, epoch: Option<u64>, entries: &[(CacheKey, &Arc<Entry>)]) -> bool {
    let (Some(l2), Some(epoch)) = (&cache.inner.l2, epoch) else {
        return false;
    };
    let mut all = true;
    for (key, entry) in entries {
        all &= l2.put(key, entry, epoch).await;
    }
    all
}

/// A fill lease held in Redis; released (and waiters told) when the fill is done, however
/// it ends.
struct LeaseGuard {
    l2: Arc<RedisTier>,
    key: CacheKey,
    token: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (l2, key, token) = (self.l2.clone(), self.key, std::mem::take(&mut self.token));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { l2.release(&key, &token).await });
        }
    }
}

/// The request headers a response varies on, lower-cased; `Accept-Encoding` is left out
/// when larder negotiates the encoding itself.
fn vary_names(headers: &HeaderMap, keep_accept_encoding: bool) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| keep_accept_encoding || n != ACCEPT_ENCODING)
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// An entry's tags: the rule's templates, the upstream's tag header, its URL and its user.
fn entry_tags(
    s: &Settings,
    rule: Option<&Rule>,
    fill: &Fill,
    response: &HeaderMap,
    user: Option<key::UserId>,
) -> Vec<u64> {
    let mut tags = Vec::new();
    if let Some(r) = rule {
        if !r.tags.is_empty() {
            let caps = r.pattern.captures(&fill.path).unwrap_or_default();
            tags.extend(r.tags.iter().map(|t| key::tag_id(&t.render(&caps))));
        }
    }
    if let Some(h) = &s.config.cache.tag_header {
        for v in response.get_all(h).iter().filter_map(|v| v.to_str().ok()) {
            tags.extend(v.split_whitespace().map(key::tag_id));
        }
    }
    tags.push(key::url_tag(
        &s.config.cache.namespace,
        &fill.path,
        fill.query.as_deref(),
        &s.config.cache.ignore_params,
        rule.and_then(|r| r.key_query.as_deref()),
    ));
    if let Some(u) = &user {
        tags.push(key::user_tag(u));
    }
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// Reads a `key_body` request's body (up to `cache.key_body_max`), within
/// `proxy.upstream_timeout` in all, so a client trickling it cannot hold the fill.
async fn read_key_body<B>(body: B, s: &Settings) -> Buffered<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    crate::body::buffer_within(
        body,
        s.config.cache.key_body_max as usize,
        s.config.proxy.upstream_timeout,
    )
    .await
}

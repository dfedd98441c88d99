//! The Tower layer: [`CacheLayer`] wraps any service into a [`CacheService`].
//!
//! One request flows one way: match a rule → derive the key → look up → serve a fresh
//! entry at once, or fetch from the inner service → decide → store → serve. A hit in
//! memory never allocates a future: [`ResponseFuture`] is ready.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = larder::Config::parse_str("inline.toml", r#"
//!     [[rule]]
//!     path = "/hello"
//!     ttl = "60s"
//! "#).unwrap();
//! let layer = larder::CacheLayer::from_config(&config).unwrap();
//! let mut svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<_>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
//! });
//! let req = || Request::get("/hello").body(Full::new(Bytes::new())).unwrap();
//! let first = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(first.headers()["x-cache"], "MISS");
//! let second = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(second.headers()["x-cache"], "HIT");
//! assert_eq!(second.into_body().collect().await.unwrap().to_bytes(), "hi");
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, RANGE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower::{Layer, Service};

use crate::access::Access;
use crate::body::{BoxError, CacheBody};
use crate::cache::{Cache, Settings};
use crate::config::Config;
use crate::entry::Entry;
use crate::fetch;
use crate::key::{normalize_percent, BodyHash, BodyKeyError, CacheKey, KeyInput, UserId};
use crate::policy::{now_ms, RequestPolicy};
use crate::proxy::ClientAddr;
use crate::rules::Rule;
use crate::semantics::hygiene::{admit, Refused, FORWARDING_KEYED};
use crate::serve::{self, ReqInfo};
use crate::status::{CacheStatus, NoCacheReason, Stale, Tier};
use crate::store::MemoryStore;

/// Mounts a [`Cache`] in front of a service.
#[derive(Clone, Debug)]
pub struct CacheLayer {
    cache: Cache,
}

impl CacheLayer {
    /// A layer with its own cache for `config`.
    ///
    /// Fails for a Redis backend without a Tokio runtime or with a URL fred rejects.
    pub fn from_config(config: &Config) -> Result<CacheLayer, crate::Error> {
        Ok(CacheLayer::from_cache(Cache::new(config.clone())?))
    }

    /// A layer serving through an existing cache (so the admin API can share it).
    pub fn from_cache(cache: Cache) -> CacheLayer {
        CacheLayer { cache }
    }

    /// The cache behind the layer.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The caching service; see [`CacheLayer`].
#[derive(Clone, Debug)]
pub struct CacheService<S> {
    inner: S,
    cache: Cache,
}

impl<S> CacheService<S> {
    /// Wraps `inner` with `cache`.
    pub fn new(inner: S, cache: Cache) -> Self {
        CacheService { inner, cache }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The response future of [`CacheService`]: ready for hits, boxed for trips upstream.
pub struct ResponseFuture<B, E> {
    kind: Kind<B, E>,
}

enum Kind<B, E> {
    Ready(Option<Result<Response<CacheBody<B>>, E>>),
    Boxed(BoxFuture<Result<Response<CacheBody<B>>, E>>),
}

// The ready value is never pinned (it is only moved out), and the boxed future is Unpin.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(v) => {
                Poll::Ready(v.take().expect("ResponseFuture polled after completion"))
            }
            Kind::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

impl<B, E> ResponseFuture<B, E> {
    /// Runs `f` on the response once there is one (at once for a ready hit).
    fn inspect(self, f: impl FnOnce(&Response<CacheBody<B>>) + Send + 'static) -> Self
    where
        B: Send + 'static,
        E: Send + 'static,
    {
        match self.kind {
            Kind::Ready(Some(Ok(resp))) => {
                f(&resp);
                ResponseFuture::ready(resp)
            }
            Kind::Ready(other) => ResponseFuture {
                kind: Kind::Ready(other),
            },
            Kind::Boxed(fut) => ResponseFuture::boxed(async move {
                let result = fut.await;
                if let Ok(resp) = &result {
                    f(resp);
                }
                result
            }),
        }
    }

    fn ready(resp: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(Ok(resp))),
        }
    }

    fn boxed(f: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static) -> Self {
        ResponseFuture {
            kind: Kind::Boxed(Box::pin(f)),
        }
    }
}

/// A request the cache will not serve: forward it, and maybe invalidate afterwards.
pub(crate) struct Forward {
    pub rule: Option<usize>,
    pub reason: NoCacheReason,
    /// An unsafe method: invalidate on success.
    pub invalidate: bool,
}

/// A request the cache may serve.
#[derive(Clone)]
pub(crate) struct Lookup {
    pub rule: Option<usize>,
    /// `None` until the body is read, for `key_body` rules.
    pub primary: Option<CacheKey>,
    pub user: Option<UserId>,
    pub policy: RequestPolicy,
    pub info: ReqInfo,
    /// A refresh nobody waits for (stale-while-revalidate).
    pub background: bool,
    /// The shared tier was asked already.
    pub l2_looked: bool,
    /// When the request arrived.
    pub started: Instant,
}

// Lives on the stack for one call; boxing the large variant would allocate per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Route {
    Forward(Forward),
    Cache(Lookup),
}

/// Matches the request to a rule and decides whether the cache handles it.
pub(crate) fn route<B>(s: &Settings, req: &Request<B>, upgrade: bool) -> Route {
    let method = req.method();
    let path = normalize_percent(req.uri().path());
    let rule = s.rules.find(method, &path);
    let rule_index = rule.map(|r| r.index);
    let unsafe_method = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let forward = |reason, invalidate| {
        Route::Forward(Forward {
            rule: rule_index,
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
        if serve::parse_range(range) == serve::RangeRequest::Other {
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
    Route::Cache(Lookup {
        rule: rule_index,
        primary,
        user,
        policy,
        info: ReqInfo::new(req),
        background: false,
        l2_looked: false,
        started: Instant::now(),
    })
}

/// The primary key of a request (HEAD keyed as GET).
pub(crate) fn primary_key(
    s: &Settings,
    rule: Option<&Rule>,
    parts: (&Method, &Uri, &HeaderMap),
    path: &str,
    user: Option<UserId>,
    body: Option<BodyHash>,
) -> CacheKey {
    let (method, uri, headers) = parts;
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

/// The body hash of a `key_body` request.
pub(crate) fn body_hash(headers: &HeaderMap, body: &[u8]) -> Result<BodyHash, BodyKeyError> {
    BodyHash::of(
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        body,
    )
}

/// What the store holds for a key, seen from one request.
pub(crate) enum Found {
    /// Fresh: serve it (stored under this key).
    Fresh(Arc<Entry>, CacheKey),
    /// Stale but servable now, for this reason (`WhileRevalidate`: refresh it once in the
    /// background).
    ServeStale(Arc<Entry>, CacheKey, Stale),
    /// Present but not usable without going upstream (revalidate it; it may stand in if
    /// the upstream fails).
    Stale(Arc<Entry>, CacheKey),
    /// The URL is cached, but not this variant.
    VaryMiss,
    /// Nothing.
    Miss,
}

/// Looks `primary` up in memory, following a `Vary` marker to the request's variant.
pub(crate) fn lookup(
    store: &MemoryStore,
    primary: CacheKey,
    headers: &HeaderMap,
    policy: &RequestPolicy,
    now: u64,
) -> Found {
    let Some(entry) = store.get(&primary, now) else {
        return Found::Miss;
    };
    let (entry, key) = if entry.is_vary_marker() {
        let variant = primary.variant(&entry.vary_names(), headers);
        match store.get(&variant, now) {
            Some(e) => (e, variant),
            None => return Found::VaryMiss,
        }
    } else {
        (entry, primary)
    };
    classify(entry, key, policy, now)
}

/// Whether a stored entry may be used for this request (RFC 9111 §4.2, §4.2.4, §5.2.1;
/// RFC 5861).
pub(crate) fn classify(
    entry: Arc<Entry>,
    key: CacheKey,
    policy: &RequestPolicy,
    now: u64,
) -> Found {
    if policy.revalidate {
        return Found::Stale(entry, key);
    }
    if entry.is_fresh(now) {
        let too_old = policy
            .max_age
            .is_some_and(|m| entry.age_ms(now) > m.saturating_mul(1000));
        let too_close = policy
            .min_fresh
            .is_some_and(|m| entry.ttl_ms(now) < m.saturating_mul(1000) as i64);
        return if too_old || too_close {
            Found::Stale(entry, key)
        } else {
            Found::Fresh(entry, key)
        };
    }
    let f = entry.freshness();
    // no-cache, must-revalidate, proxy-revalidate and s-maxage forbid stale use (§4.2.4).
    if f.must_revalidate || f.no_cache {
        return Found::Stale(entry, key);
    }
    let staleness = -entry.ttl_ms(now);
    if policy
        .max_stale
        .is_some_and(|m| staleness <= m.saturating_mul(1000) as i64)
    {
        return Found::ServeStale(entry, key, Stale::MaxStale);
    }
    if policy.max_age.is_none() && staleness <= f.stale_while_revalidate as i64 * 1000 {
        return Found::ServeStale(entry, key, Stale::WhileRevalidate);
    }
    Found::Stale(entry, key)
}

/// Whether a fresh entry is due a refresh-ahead: hit often enough and close enough to
/// its expiry (`cache.refresh_ahead_hits`, `cache.refresh_ahead_share`).
fn refresh_ahead_due(settings: &Settings, entry: &Entry, now: u64) -> bool {
    let c = &settings.config.cache;
    if c.refresh_ahead_hits == 0 || entry.hits() < c.refresh_ahead_hits {
        return false;
    }
    let lifetime = entry
        .freshness()
        .lifetime_ms
        .saturating_sub(entry.freshness().initial_age_ms);
    (entry.ttl_ms(now) as f64) <= lifetime as f64 * c.refresh_ahead_share
}

/// Answers from an entry with `status` (a hit, a stale entry, a collapsed request) and
/// counts it.
pub(crate) fn serve_entry<B>(
    cache: &Cache,
    settings: &Settings,
    plan: &Lookup,
    (entry, key): (&Arc<Entry>, &CacheKey),
    status: CacheStatus,
    now: u64,
) -> Response<CacheBody<B>> {
    let status = if status.fwd.is_none() && status.tier.is_none() {
        status.tier(Tier::L1)
    } else {
        status
    };
    entry.record_hit();
    if !plan.info.gzip && entry.is_gzip() && !entry.has_decoded() {
        // Decode once for clients that cannot take gzip, not on every hit.
        cache.inner.store.keep_decoded(key, entry);
    }
    let resp = serve::respond(entry, &plan.info, status, settings, now);
    if !plan.background {
        let counters = settings.counters(plan.rule);
        counters.record(&status);
        if let (None, Some(tier)) = (status.fwd, status.tier) {
            // Answered without a trip upstream.
            counters.record_avoided(entry.identity_len());
            cache.inner.stats.record_tier(tier);
            cache
                .inner
                .stats
                .record_hit_latency(tier, plan.started.elapsed().as_micros() as u64);
        }
    }
    resp
}

impl<S, B, ResB> Service<Request<B>> for CacheService<S>
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<CacheBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness inside the future, only on a miss.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.handle(req)
    }
}

impl<S> CacheService<S> {
    /// Refreshes a stale entry with one background request (RFC 5861
    /// stale-while-revalidate), unless one is in flight for it already.
    fn refresh_in_background<B, ResB>(
        &self,
        settings: Arc<Settings>,
        req: Request<B>,
        mut plan: Lookup,
        found: Found,
    ) where
        S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        ResB: Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let busy = plan
            .primary
            .is_some_and(|k| self.cache.inner.coalescer.is_in_flight(&k));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if busy {
            return;
        }
        plan.background = true;
        let refresh = fetch::fetch(
            self.inner.clone(),
            self.cache.clone(),
            settings,
            req,
            plan,
            found,
        );
        runtime.spawn(async move {
            let _ = refresh.await;
        });
    }

    /// Serves one request; `call` without needing `&mut self` (servers share one service).
    pub fn handle<B, ResB>(&self, req: Request<B>) -> ResponseFuture<ResB, S::Error>
    where
        S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        ResB: Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let mut req = req;
        let trusted = self.trusted_peer(&req);
        let upgrade = match admit(&mut req, trusted) {
            Ok(admitted) => admitted.upgrade,
            Err(refused) => return ResponseFuture::ready(self.refuse(refused)),
        };
        match Access::begin(&self.cache, &req) {
            None => self.serve(req, upgrade),
            Some(access) => self
                .serve(req, upgrade)
                .inspect(move |resp| access.log(resp)),
        }
    }

    /// Whether the request came from a configured proxy (the sidecar puts the peer's
    /// address in the request's extensions as [`ClientAddr`]).
    fn trusted_peer<B>(&self, req: &Request<B>) -> bool {
        let Some(ClientAddr(peer)) = req.extensions().get::<ClientAddr>() else {
            return false;
        };
        let settings = self.cache.inner.settings.load();
        settings
            .config
            .proxy
            .trusted_proxies
            .iter()
            .any(|net| net.contains(peer.ip()))
    }

    /// A request refused at the trust boundary: `400`, counted as a bypass.
    fn refuse<ResB>(&self, refused: Refused) -> Response<CacheBody<ResB>> {
        let settings = self.cache.inner.settings.load();
        let status = CacheStatus::bypass(NoCacheReason::BadRequest);
        settings.counters(None).record(&status);
        let mut resp = serve::error_response(StatusCode::BAD_REQUEST, refused.message());
        serve::stamp(resp.headers_mut(), &status, &settings);
        resp
    }

    fn serve<B, ResB>(&self, req: Request<B>, upgrade: bool) -> ResponseFuture<ResB, S::Error>
    where
        S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        ResB: Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let guard = self.cache.inner.settings.load();
        let settings: &Settings = &guard;
        let now = now_ms();
        let plan = match route(settings, &req, upgrade) {
            Route::Forward(fwd) => {
                let settings = arc_swap::Guard::into_inner(guard);
                return ResponseFuture::boxed(fetch::forward(
                    self.inner.clone(),
                    self.cache.clone(),
                    settings,
                    req,
                    fwd,
                ));
            }
            Route::Cache(plan) => plan,
        };
        let found = match plan.primary {
            Some(primary) if self.cache.inner.l1 => lookup(
                &self.cache.inner.store,
                primary,
                req.headers(),
                &plan.policy,
                now,
            ),
            _ => Found::Miss,
        };
        match found {
            Found::Fresh(entry, key) => {
                let status = CacheStatus::hit(entry.ttl_ms(now) / 1000);
                let resp = serve_entry(&self.cache, settings, &plan, (&entry, &key), status, now);
                if refresh_ahead_due(settings, &entry, now) && entry.claim_refresh() {
                    // A hot entry close to expiry: refresh it once, so it never misses.
                    let settings = arc_swap::Guard::into_inner(guard);
                    self.refresh_in_background(settings, req, plan, Found::Stale(entry, key));
                }
                return ResponseFuture::ready(resp);
            }
            Found::ServeStale(entry, key, why) => {
                let status = CacheStatus::stale(why, entry.ttl_ms(now) / 1000);
                let resp = serve_entry(&self.cache, settings, &plan, (&entry, &key), status, now);
                if why == Stale::WhileRevalidate {
                    let settings = arc_swap::Guard::into_inner(guard);
                    self.refresh_in_background(settings, req, plan, Found::Stale(entry, key));
                }
                return ResponseFuture::ready(resp);
            }
            _ => {}
        }
        let settings = arc_swap::Guard::into_inner(guard);
        let (inner, cache) = (self.inner.clone(), self.cache.clone());
        if self.cache.inner.l2.is_some() {
            // A small future for the L2 hit; the whole trip upstream only when it misses.
            return ResponseFuture::boxed(fetch::from_l2_or_fetch(
                inner, cache, settings, req, plan, found,
            ));
        }
        ResponseFuture::boxed(fetch::fetch(inner, cache, settings, req, plan, found))
    }
}

//! [`CacheService`]: the trust boundary, routing and the memory lookup run synchronously in
//! `call`; a hit is answered there. Everything else is one boxed future ([`crate::flow`]).

use std::sync::Arc;

use arc_swap::Guard;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::Service;

use super::{CacheBody, ClientAddr, Inner, PassBody, ResponseFuture};
use crate::cache::{Cache, Settings};
use crate::flow::{self, fill, Answering, Ctx, Plan, Route};
use crate::ops::access::Access;
use crate::policy::{now_ms, refresh_ahead_due};
use crate::semantics::hygiene::{admit, Refused};
use crate::status::{CacheStatus, NoCacheReason, Stale};
use crate::store::Found;

/// The caching service; see [`crate::CacheLayer`].
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

impl<S, B, ResB> Service<Request<B>> for CacheService<S>
where
    S: Inner<B, ResB> + Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: PassBody,
    ResB: PassBody,
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
    /// Serves one request; `call` without needing `&mut self` (servers share one service).
    pub fn handle<B, ResB>(&self, mut req: Request<B>) -> ResponseFuture<ResB, S::Error>
    where
        S: Inner<B, ResB>,
        B: PassBody,
        ResB: PassBody,
    {
        // A guard, not a clone of the Arc: the hit path takes no reference count.
        let settings = self.cache.settings_guard();
        let trusted = trusted_peer(&settings, &req);
        let upgrade = match admit(&mut req, trusted) {
            Ok(admitted) => admitted.upgrade,
            Err(refused) => return ResponseFuture::ready(refuse(&settings, refused)),
        };
        match Access::begin(&settings, &req) {
            None => self.serve(settings, req, upgrade),
            Some(access) => self
                .serve(settings, req, upgrade)
                .inspect(move |resp| access.log(resp)),
        }
    }

    fn ctx(&self, settings: Arc<Settings>) -> Ctx<S>
    where
        S: Clone,
    {
        Ctx {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            settings,
        }
    }

    fn serve<B, ResB>(
        &self,
        settings: Guard<Arc<Settings>>,
        req: Request<B>,
        upgrade: bool,
    ) -> ResponseFuture<ResB, S::Error>
    where
        S: Inner<B, ResB>,
        B: PassBody,
        ResB: PassBody,
    {
        let plan = match flow::route(&settings, &req, upgrade) {
            Route::Forward(fwd) => {
                let settings = Guard::into_inner(settings);
                return ResponseFuture::boxed(flow::forward(self.ctx(settings), req, fwd));
            }
            Route::Cache(plan) => plan,
        };
        let now = now_ms();
        let found = match plan.primary {
            Some(primary) => self.cache.tiers().lookup_memory(
                primary,
                req.headers(),
                &plan.policy,
                now,
                plan.tiers,
            ),
            None => Found::Miss,
        };
        if plan.dry_run {
            // Nothing is served from the cache: the miss path goes upstream and counts
            // what `found` would have answered.
            let settings = Guard::into_inner(settings);
            return ResponseFuture::boxed(fill::run(self.ctx(settings), req, plan, found));
        }
        let answering = Answering::new(&self.cache, &settings, &plan);
        let c = &settings.config.cache;
        match found {
            Found::Fresh(entry, key) => {
                let status = CacheStatus::hit(entry.ttl_ms(now) / 1000);
                let resp = answering.entry((&entry, &key), status, now);
                if refresh_ahead_due(&entry, c.refresh_ahead_hits, c.refresh_ahead_share, now)
                    && entry.claim_refresh()
                {
                    // A hot entry close to expiry: refresh it once, so it never misses.
                    let settings = Guard::into_inner(settings);
                    self.refresh_in_background(settings, req, plan, Found::Stale(entry, key));
                }
                ResponseFuture::ready(resp)
            }
            Found::ServeStale(entry, key, why) => {
                let status = CacheStatus::stale(why, entry.ttl_ms(now) / 1000);
                let resp = answering.entry((&entry, &key), status, now);
                if why == Stale::WhileRevalidate {
                    let settings = Guard::into_inner(settings);
                    self.refresh_in_background(settings, req, plan, Found::Stale(entry, key));
                }
                ResponseFuture::ready(resp)
            }
            found => {
                let settings = Guard::into_inner(settings);
                ResponseFuture::boxed(fill::run(self.ctx(settings), req, plan, found))
            }
        }
    }

    /// Refreshes a stale entry with one background request (RFC 5861
    /// stale-while-revalidate), unless one is in flight for it already.
    fn refresh_in_background<B, ResB>(
        &self,
        settings: Arc<Settings>,
        req: Request<B>,
        mut plan: Plan,
        found: Found,
    ) where
        S: Inner<B, ResB>,
        B: PassBody,
        ResB: PassBody,
    {
        let busy = plan
            .primary
            .is_some_and(|k| self.cache.coalescer().is_in_flight(&k));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if busy {
            return;
        }
        plan.background = true;
        let refresh = fill::run(self.ctx(settings), req, plan, found);
        runtime.spawn(async move {
            let _ = refresh.await;
        });
    }
}

/// Whether the request came from a configured proxy (the sidecar puts the peer's address
/// in the request's extensions as [`ClientAddr`]).
fn trusted_peer<B>(settings: &Settings, req: &Request<B>) -> bool {
    let Some(ClientAddr(peer)) = req.extensions().get::<ClientAddr>() else {
        return false;
    };
    settings
        .config
        .proxy
        .trusted_proxies
        .iter()
        .any(|net| net.contains(peer.ip()))
}

/// A request refused at the trust boundary: `400`, counted as a bypass.
fn refuse<ResB>(settings: &Settings, refused: Refused) -> Response<CacheBody<ResB>> {
    let status = CacheStatus::bypass(NoCacheReason::BadRequest);
    settings.counters(None).record(&status);
    let mut resp = flow::error_response(StatusCode::BAD_REQUEST, refused.message());
    flow::respond::stamp(resp.headers_mut(), &status, settings);
    resp
}

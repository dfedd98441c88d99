//! `key_body` rules: the key needs the body, so it is read first (bounded in size and
//! time), canonicalised and hashed; a body that cannot be keyed is forwarded uncached.

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::forward::pass_through;
use super::respond::error_response;
use super::route::{body_hash, primary_key, Plan};
use super::Ctx;
use crate::body::{buffer_within, BoxError, Buffered, CacheBody};
use crate::cache::{Cache, Settings};
use crate::key::{normalize_percent, BodyKeyError, CacheKey};
use crate::status::NoCacheReason;
use crate::store::Found;
use crate::time::now_ms;

/// A `key_body` request answered before it could be keyed.
pub(super) enum Unkeyed<B> {
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
    pub(super) async fn resolve<S, ResB>(
        self,
        ctx: Ctx<S>,
        parts: Parts,
        rule: Option<usize>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error>
    where
        S: Service<Request<CacheBody<B>>, Response = Response<ResB>>,
        ResB: Body<Data = Bytes>,
        ResB::Error: Into<BoxError>,
    {
        match self {
            Unkeyed::Refuse(status, message) => Ok(error_response(status, message)),
            // A key_body request is never a background refresh: it is counted.
            Unkeyed::Bypass(reason, body) => {
                pass_through(ctx, Request::from_parts(parts, body), rule, reason).await
            }
        }
    }
}

/// Reads a `key_body` request's body (bounded in size and time), keys it and looks the key
/// up in memory.
pub(super) async fn keyed_by_body<B>(
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
    let fields = s.rule(plan.rule).and_then(|r| r.key_body_fields.as_deref());
    let hash = match body_hash(&parts.headers, &bytes, fields) {
        Ok(h) => h,
        Err(e) => {
            let reason = match e {
                BodyKeyError::TooDeep => NoCacheReason::BodyTooDeep,
                BodyKeyError::NotJson => NoCacheReason::BodyNotJson,
            };
            return Err(Unkeyed::Bypass(reason, CacheBody::full(bytes)));
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
    let found =
        cache
            .tiers()
            .lookup_memory(key, &parts.headers, &plan.policy, now_ms(), plan.tiers);
    Ok((key, CacheBody::full(bytes), found))
}

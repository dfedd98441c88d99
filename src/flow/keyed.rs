//! `key_body` rules: the key needs the body, so it is read first (bounded in size and
//! time), canonicalised and hashed; a body that cannot be keyed is forwarded uncached.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
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
use crate::key::{normalize_percent, BodyHash, BodyKeyError, CacheKey};
use crate::llm::Provider;
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
/// up in memory. An LLM request is keyed by its meaning and its tenant (`plan.user`, unless
/// the rule is `shared`), says in `plan.info.llm` which shape it wants, and goes upstream
/// with the body the API needs (a streaming chat request asks for its usage).
pub(super) async fn keyed_by_body<B>(
    cache: &Cache,
    s: &Settings,
    parts: &mut Parts,
    body: B,
    plan: &mut Plan,
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
    let rule = s.rule(plan.rule);
    let (hash, bytes) = match rule.and_then(|r| r.llm.map(|p| (p, r.shared))) {
        Some((provider, shared)) => llm_meaning(s, parts, bytes, plan, (provider, shared))?,
        None => {
            let fields = rule.and_then(|r| r.key_body_fields.as_deref());
            match body_hash(&parts.headers, &bytes, fields) {
                Ok(h) => (h, bytes),
                Err(e) => {
                    let reason = match e {
                        BodyKeyError::TooDeep => NoCacheReason::BodyTooDeep,
                        BodyKeyError::NotJson => NoCacheReason::BodyNotJson,
                    };
                    return Err(Unkeyed::Bypass(reason, CacheBody::full(bytes)));
                }
            }
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

/// An LLM request's key part (its meaning), its tenant and shape (into `plan`), and the
/// body it goes upstream with (`Content-Length` set to match).
fn llm_meaning<B>(
    s: &Settings,
    parts: &mut Parts,
    bytes: Bytes,
    plan: &mut Plan,
    (provider, shared): (Provider, bool),
) -> Result<(BodyHash, Bytes), Unkeyed<B>> {
    let Ok((meaning, ask)) = provider.meaning(&bytes) else {
        return Err(Unkeyed::Bypass(
            NoCacheReason::BodyNotJson,
            CacheBody::full(bytes),
        ));
    };
    plan.info.llm = Some((provider, ask));
    if !shared {
        plan.user = s.users.tenant(&parts.headers);
    }
    let hash = BodyHash::of_meaning(provider.name(), &meaning);
    let sent = match provider.forwarded(&bytes, ask) {
        Some(body) => {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            Bytes::from(body)
        }
        None => bytes,
    };
    Ok((hash, sent))
}

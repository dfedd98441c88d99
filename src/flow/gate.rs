//! The upstream's gate on the way out: a slot before a request goes upstream (its
//! upstream's concurrency, rate, budget and back-off), the answer when none comes in time,
//! and the back-off an upstream's own `429`/`503` with `Retry-After` asks for.

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::respond::{error_response, stamp};
use crate::body::CacheBody;
use crate::budget::{Refused, Slot};
use crate::cache::{Cache, Settings};
use crate::rules::Rule;
use crate::semantics::dates::retry_after;
use crate::status::CacheStatus;

/// Marks a request sent by the cache itself — warming, re-warming, prefetch — so it draws
/// on its upstream's limits as a background fetch: it never waits for a slot and yields
/// to clients' misses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Background;

/// The longest back-off an upstream's `Retry-After` may ask for.
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// The upstream a rule's requests go to, by the name its gate has.
pub(super) fn upstream_of(rule: Option<&Rule>) -> &str {
    rule.and_then(|r| r.upstream.as_deref())
        .unwrap_or("default")
}

/// A slot on the rule's upstream for one request going there.
pub(super) async fn admit(
    cache: &Cache,
    rule: Option<&Rule>,
    extensions: &http::Extensions,
    background: bool,
) -> Result<Slot, Refused> {
    let background = background || extensions.get::<Background>().is_some();
    let cost = rule.map_or(1, |r| r.cost);
    cache
        .gates()
        .admit(upstream_of(rule), cost, background)
        .await
}

/// The answer to a request no slot came for: `429` (or the upstream's own `503` while it
/// backs off) with `Retry-After`, and `Cache-Status` saying which limit it met.
pub(super) fn refused<B>(
    refused: Refused,
    status: &CacheStatus,
    settings: &Settings,
) -> Response<CacheBody<B>> {
    let code = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let message = match refused.reason {
        crate::status::Throttle::Budget => "the upstream's budget for today is spent\n",
        crate::status::Throttle::Rate => "the upstream's rate limit is reached\n",
        crate::status::Throttle::Concurrency => "the upstream is busy\n",
        crate::status::Throttle::Backoff => "the upstream asked to be left alone for a while\n",
    };
    let mut resp = error_response(code, message);
    let secs = refused.retry_after.as_millis().div_ceil(1000).max(1) as u64;
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    stamp(resp.headers_mut(), status, settings);
    resp
}

/// Heeds an upstream's `429`/`503` with `Retry-After`: it is left alone until then, here
/// and across the fleet.
pub(super) async fn heed(
    cache: &Cache,
    rule: Option<&Rule>,
    status: StatusCode,
    headers: &HeaderMap,
) {
    if !matches!(status.as_u16(), 429 | 503) {
        return;
    }
    let now = crate::time::now_ms() / 1000;
    let Some(left) = headers.get(RETRY_AFTER).and_then(|v| retry_after(v, now)) else {
        return;
    };
    if left.is_zero() {
        return;
    }
    cache
        .gates()
        .back_off(upstream_of(rule), status.as_u16(), left.min(MAX_BACKOFF))
        .await;
}

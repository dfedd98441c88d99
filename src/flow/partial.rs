//! Partial content kept for later ranges (RFC 9111 §3.3–3.4). A single-range GET that finds
//! nothing stored fetches the whole, as long as the whole can be kept; when it is too large
//! (or a part of it is stored already) it asks the upstream for its range alone, and the
//! `206` it answers is kept as a *part*
//! (its own entry, next to the URL's full entry), serves later ranges it holds, and is
//! combined with the stored part when both carry the same strong `ETag` and their ranges
//! meet. A part that grows to the whole representation becomes the full `200` entry.
//! Parts are never kept for answers that vary, are encoded, or have no complete length.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::Service;

use super::admit::{self, FillRequest, Kept};
use super::miss::{Fetched, Miss, Phase};
use super::respond::error_response;
use crate::body::{buffer, Buffered, CacheBody, Inner, PassBody};
use crate::entry::Entry;
use crate::policy::now_ms;
use crate::semantics::ranges::{parse_content_range, ByteRange};
use crate::status::{CacheStatus, NoCacheReason};
use crate::store::Found;

/// Bytes `first..=last` of a representation `complete` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    first: u64,
    last: u64,
    complete: u64,
}

impl Span {
    fn of(headers: &HeaderMap) -> Option<Span> {
        let (first, last, complete) = parse_content_range(headers.get(CONTENT_RANGE)?)?;
        Some(Span {
            first,
            last,
            complete,
        })
    }

    fn len(self) -> u64 {
        self.last - self.first + 1
    }

    /// The bytes of `range` within this span, as offsets into the span's body.
    fn holds(self, range: ByteRange) -> Option<(usize, usize)> {
        let (first, last) = range.resolve(self.complete)?;
        (first >= self.first && last <= self.last)
            .then(|| ((first - self.first) as usize, (last - self.first) as usize))
    }

    fn header(self) -> Option<HeaderValue> {
        let Span {
            first,
            last,
            complete,
        } = self;
        HeaderValue::from_str(&format!("bytes {first}-{last}/{complete}")).ok()
    }
}

/// The answer from a stored part to a range it holds (a `206` for just that range).
pub(crate) fn from_part<B>(
    entry: &Entry,
    range: Option<ByteRange>,
    mut headers: HeaderMap,
) -> Response<CacheBody<B>> {
    let span = Span::of(&headers);
    let (Some(span), Some(range), Ok(body)) = (span, range, entry.decoded_body()) else {
        return error_response(StatusCode::BAD_GATEWAY, "the stored part is unusable\n");
    };
    let Some((from, to)) = span.holds(range).filter(|(_, to)| *to < body.len()) else {
        return error_response(StatusCode::BAD_GATEWAY, "the stored part lacks the range\n");
    };
    let first = span.first + from as u64;
    let asked = Span {
        first,
        last: first + (to - from) as u64,
        ..span
    };
    if let Some(v) = asked.header() {
        headers.insert(CONTENT_RANGE, v);
    }
    let mut resp = Response::new(CacheBody::full(body.slice(from..=to)));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    *resp.headers_mut() = headers;
    resp
}

/// A strong `ETag`: what two parts must share to be combined (RFC 9111 §3.4).
fn strong_etag(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers
        .get(ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
}

impl<S, B> Miss<S, B>
where
    S: Service<Request<CacheBody<B>>>,
{
    /// The one byte range this request asks for, if a part may serve or be kept for it:
    /// a GET without `If-Range`.
    pub(super) fn ranged(&self) -> Option<ByteRange> {
        let info = &self.plan.info;
        let plain = self.parts.method == Method::GET && info.conditions.if_range.is_none();
        info.range.filter(|_| plain && !self.plan.dry_run)
    }

    /// The stored part of this URL, fresh or not.
    async fn stored_part(&mut self) -> Option<(Found, crate::status::Tier)> {
        self.ranged()?;
        let asked = self
            .owner
            .asked(&self.parts.headers, &self.plan.policy, &self.plan);
        let found = self
            .ctx
            .cache
            .tiers()
            .lookup(self.key.partial(), &asked)
            .await;
        Some(found)
    }

    /// A fresh stored part that holds the whole range asked for answers it. Any part
    /// stored means the whole is not kept: a miss asks for its range only.
    pub(super) async fn part_hit<ResB>(&mut self) -> Option<Phase<ResB>> {
        let range = self.ranged()?;
        let (found, tier) = self.stored_part().await?;
        self.ask_range = !matches!(found, Found::Miss | Found::VaryMiss);
        let Found::Fresh(entry, key) = found else {
            return None;
        };
        let headers: HeaderMap = entry.headers().collect();
        Span::of(&headers)?.holds(range)?;
        let now = now_ms();
        let status = CacheStatus::hit(entry.ttl_ms(now) / 1000).tier(tier);
        Some(Phase::Respond(self.answering().entry(
            (&entry, &key),
            status,
            now,
        )))
    }

    /// The bytes of the stored part joined to `span` of `bytes` when both are parts of the
    /// same representation (the same strong `ETag`) and meet or overlap; the new bytes win
    /// where they overlap. Within `limit`, else `span` alone.
    async fn combined(
        &mut self,
        span: Span,
        bytes: Bytes,
        etag: &HeaderValue,
        limit: u64,
    ) -> (Span, Bytes) {
        let Some((
            Found::Fresh(entry, _) | Found::Stale(entry, _) | Found::ServeStale(entry, _, _),
            _,
        )) = self.stored_part().await
        else {
            return (span, bytes);
        };
        let stored: HeaderMap = entry.headers().collect();
        let (Some(old), Ok(old_bytes)) = (Span::of(&stored), entry.decoded_body()) else {
            return (span, bytes);
        };
        let meets = old.first <= span.last + 1 && span.first <= old.last + 1;
        let joined = Span {
            first: old.first.min(span.first),
            last: old.last.max(span.last),
            complete: span.complete,
        };
        let same = strong_etag(&stored) == Some(etag) && old.complete == span.complete;
        if !same || !meets || joined.len() > limit || old_bytes.len() as u64 != old.len() {
            return (span, bytes);
        }
        let mut out = BytesMut::zeroed(joined.len() as usize);
        let at = |s: Span| (s.first - joined.first) as usize;
        out[at(old)..at(old) + old_bytes.len()].copy_from_slice(&old_bytes);
        out[at(span)..at(span) + bytes.len()].copy_from_slice(&bytes);
        (joined, out.freeze())
    }
}

impl<S, B, ResB> Miss<S, B>
where
    S: Inner<B, ResB> + Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: PassBody,
    ResB: PassBody,
{
    /// Admit for a `206` to a ranged fill: kept as a part (combined with the stored one
    /// when it can be), or as the full entry once it holds every byte; handed on when it
    /// may not be kept.
    pub(super) async fn part_admit(&mut self, f: Fetched<ResB>) -> Phase<ResB> {
        let span = Span::of(&f.response.headers);
        let keepable = match (self.ranged(), span) {
            (Some(range), Some(span)) => {
                span.holds(range).is_some()
                    && !f.response.headers.contains_key(CONTENT_ENCODING)
                    && crate::policy::vary_names(&f.response.headers, false).is_empty()
            }
            _ => false,
        };
        let (Some(span), true) = (span, keepable) else {
            let body = CacheBody::stream(f.body);
            return self.hand_on(f.response, body, f.fwd, NoCacheReason::Range);
        };
        let times = (f.request_time, f.response_time);
        let freshness = match self.decision(StatusCode::OK, &f.response.headers, times) {
            Ok(freshness) => freshness,
            Err(reason) => {
                return self.hand_on(f.response, CacheBody::stream(f.body), f.fwd, reason)
            }
        };
        let limit = self.keep_limit() as u64;
        if span.len() > limit {
            let body = CacheBody::stream(f.body);
            return self.hand_on(f.response, body, f.fwd, NoCacheReason::TooLarge);
        }
        let Fetched {
            response,
            body,
            fwd,
            tokens,
            response_time,
            ..
        } = f;
        let bytes = match buffer(body, limit as usize).await {
            Buffered::Complete(b) if b.len() as u64 == span.len() => b,
            _ => return self.body_failed(fwd),
        };
        let (span, bytes) = match strong_etag(&response.headers).cloned() {
            Some(etag) => self.combined(span, bytes, &etag, limit).await,
            None => (span, bytes),
        };
        let admitted = self.part_entry(&response.headers, span, bytes, (freshness, response_time));
        Phase::Store(admitted, fwd, tokens)
    }

    /// The entry for `span`: the full `200` when it holds every byte (the part is dropped),
    /// else a part.
    fn part_entry(
        &self,
        headers: &HeaderMap,
        span: Span,
        bytes: Bytes,
        (freshness, response_time): (crate::policy::Freshness, u64),
    ) -> admit::Admitted {
        let mut headers = headers.clone();
        headers.remove(CONTENT_LENGTH);
        let whole = span.first == 0 && span.len() == span.complete;
        let (status, key) = if whole {
            headers.remove(CONTENT_RANGE);
            self.ctx.cache.tiers().remove(&self.key.partial());
            (StatusCode::OK, self.key)
        } else {
            if let Some(v) = span.header() {
                headers.insert(CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, self.key.partial())
        };
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        let fill = FillRequest {
            key,
            method: fill.method.clone(),
            path: fill.path.clone(),
            query: fill.query.clone(),
            headers: fill.headers.clone(),
            user: fill.user,
        };
        let s = &self.ctx.settings;
        let rule = s.rule(self.plan.rule);
        let body = Kept::Identity(bytes);
        admit::build(
            s,
            rule,
            &fill,
            (status, &headers),
            &body,
            freshness,
            response_time,
        )
    }
}

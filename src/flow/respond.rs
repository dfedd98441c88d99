//! Answering: a response built from a stored entry (a hit, a stale entry, a collapsed
//! request, a fill just stored) — the one place hits are answered and counted — and an
//! upstream answer handed on uncached. Every answer carries `Cache-Status` and `X-Cache`;
//! answers from the cache carry `Age`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, RANGE,
};
use http::{Method, Request, Response, StatusCode};

use crate::body::CacheBody;
use crate::cache::{Cache, Settings};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::llm::{Ask, Provider};

use super::llm::Facts;
use crate::semantics::conditionals::{strengthen_etag, weaken_etag, Conditions};
use crate::semantics::ranges::{parse_range, ByteRange, RangeRequest};
use crate::status::{CacheStatus, Tier};

pub use crate::status::X_CACHE;

/// What of the request shapes the answer from an entry.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReqInfo {
    pub head: bool,
    pub gzip: bool,
    pub conditions: Conditions,
    /// A single byte range asked for with GET.
    pub range: Option<ByteRange>,
    /// An LLM request: its API and the shape it wants the answer in.
    pub llm: Option<(Provider, Ask)>,
}

impl ReqInfo {
    pub fn new<B>(req: &Request<B>) -> ReqInfo {
        let h = req.headers();
        let range = match h
            .get(RANGE)
            .filter(|_| req.method() == Method::GET)
            .map(parse_range)
        {
            Some(RangeRequest::Single(r)) => Some(r),
            _ => None,
        };
        ReqInfo {
            head: req.method() == Method::HEAD,
            gzip: crate::compress::accepts_gzip(h),
            conditions: Conditions::of(req.method(), h),
            range,
            llm: None,
        }
    }
}

/// Who is being answered, and how to count it.
pub(crate) struct Answering<'a> {
    pub cache: &'a Cache,
    pub settings: &'a Settings,
    pub rule: Option<usize>,
    pub info: &'a ReqInfo,
    /// A refresh nobody waits for: answered to no one, so not counted.
    pub background: bool,
    pub started: Instant,
}

impl<'a> Answering<'a> {
    /// Answering for the request `plan` describes.
    pub fn new(cache: &'a Cache, settings: &'a Settings, plan: &'a super::Plan) -> Answering<'a> {
        Answering {
            cache,
            settings,
            rule: plan.rule,
            info: &plan.info,
            background: plan.background,
            started: plan.started,
        }
    }

    /// Answering for the request of a flow.
    pub fn of<S>(ctx: &'a super::Ctx<S>, plan: &'a super::Plan) -> Answering<'a> {
        Answering::new(&ctx.cache, &ctx.settings, plan)
    }

    /// Answers from an entry with `status` (a hit, a stale entry, a collapsed request, a
    /// fill) and counts it.
    pub fn entry<B>(
        &self,
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
        if !self.info.gzip && entry.is_gzip() && !entry.has_decoded() {
            // Decode once for clients that cannot take gzip, not on every hit.
            self.cache.tiers().keep_decoded(key, entry);
        }
        let resp = respond(entry, self.info, status, self.settings, now);
        self.count(&status, entry);
        resp
    }

    fn count(&self, status: &CacheStatus, entry: &Entry) {
        if self.background {
            return;
        }
        let counters = self.settings.counters(self.rule);
        counters.record(status);
        if let (None, Some(tier)) = (status.fwd, status.tier) {
            // Answered without a trip upstream.
            counters.record_avoided(entry.identity_len());
            let stats = self.cache.counters();
            stats.record_tier(tier);
            stats.record_hit_latency(tier, self.started.elapsed().as_micros() as u64);
            if let Some((provider, _)) = self.info.llm {
                self.record_llm_saving(provider, entry);
            }
        }
    }

    /// Counts the tokens and dollars an LLM hit saved (the entry's usage, read once).
    fn record_llm_saving(&self, provider: Provider, entry: &Entry) {
        let Some(u) = &Facts::of(entry, provider).usage else {
            return;
        };
        let rule = self
            .settings
            .rule(self.rule)
            .map_or("", |r| r.name.as_str());
        let usd = self.settings.config.llm.price(&u.model).map_or(0.0, |p| {
            (u.input as f64 * p.input + u.output as f64 * p.output) / 1e6
        });
        self.cache
            .counters()
            .llm
            .record(rule, &u.model, (u.input, u.output), usd);
    }

    /// Counts an answer that was not served from an entry.
    pub fn record(&self, status: &CacheStatus) {
        if !self.background {
            self.settings.counters(self.rule).record(status);
        }
    }
}

/// Hands the upstream's answer on uncached: tag header stripped, framing checked, status
/// stamped.
pub(crate) fn pass_on<B>(
    mut parts: http::response::Parts,
    body: CacheBody<B>,
    head: bool,
    status: CacheStatus,
    s: &Settings,
) -> Response<CacheBody<B>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    strip_cache_fields(&mut parts.headers, s);
    if !head {
        let exact = http_body::Body::size_hint(&body).exact();
        keep_length_if(&mut parts.headers, exact);
    }
    stamp(&mut parts.headers, &status, s);
    Response::from_parts(parts, if head { CacheBody::empty() } else { body })
}

/// Keeps the upstream's `Content-Length` only when it is the length of the body actually
/// sent (`exact`, when known): an answer framed by `Transfer-Encoding` (which wins over a
/// `Content-Length` beside it, RFC 9112 §6.3), or with two lengths, is passed on without
/// one, so no client reads a cut body as complete.
pub(crate) fn keep_length_if(headers: &mut HeaderMap, exact: Option<u64>) {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let declared = match (lengths.next(), lengths.next()) {
        (None, _) => return,
        (Some(v), None) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()),
        _ => None,
    };
    if declared.is_none() || declared != exact {
        headers.remove(CONTENT_LENGTH);
    }
}

/// Appends every field of `from` to `to`.
pub(crate) fn append_all(to: &mut HeaderMap, from: &HeaderMap) {
    for (name, value) in from {
        to.append(name.clone(), value.clone());
    }
}

/// Removes the fields meant for this cache only: the tag header, this cache's own
/// targeted field (`Larder-Cache-Control`) and `Surrogate-Control`. `CDN-Cache-Control`
/// targets every CDN-class cache, so it is passed on for those in front (RFC 9213 §3).
pub(crate) fn strip_cache_fields(h: &mut HeaderMap, settings: &Settings) {
    if let Some(t) = &settings.config.cache.tag_header {
        h.remove(t);
    }
    for t in settings
        .targeted
        .iter()
        .filter(|t| **t != CDN_CACHE_CONTROL)
    {
        h.remove(t);
    }
}

const CDN_CACHE_CONTROL: http::HeaderName = http::HeaderName::from_static("cdn-cache-control");

/// Stamps a response the cache answered or passed on: `Cache-Status` appended after any
/// from caches in front, `X-Cache` set.
pub(crate) fn stamp(headers: &mut HeaderMap, status: &CacheStatus, settings: &Settings) {
    headers.append(
        settings.cache_status.clone(),
        status.header_value(&settings.config.cache.name),
    );
    headers.insert(X_CACHE, status.x_cache());
}

/// Builds the answer from an entry.
pub(crate) fn respond<B>(
    entry: &Entry,
    info: &ReqInfo,
    status: CacheStatus,
    settings: &Settings,
    now: u64,
) -> Response<CacheBody<B>> {
    // Stored headers plus Age, Cache-Status, X-Cache and Content-Encoding.
    let mut headers = HeaderMap::with_capacity(entry.header_count() + 4);
    for (n, v) in entry.headers() {
        headers.append(n, v);
    }
    // Ranges are served from the decoded bytes.
    let gzip_out = entry.is_gzip() && info.gzip && info.range.is_none();
    // The ETag is strong only for the bytes the origin sent (RFC 9110 §8.8.1).
    let transformed = entry.is_gzip() && gzip_out != entry.origin_gzip();
    match (transformed, entry.etag_weakened()) {
        (true, false) => weaken_etag(&mut headers),
        (false, true) => strengthen_etag(&mut headers),
        _ => {}
    }
    headers.insert(AGE, age_value(entry.age_ms(now) / 1000));
    stamp(&mut headers, &status, settings);
    // Preconditions only apply to what would otherwise be a 2xx (RFC 9110 §13.2.1).
    let success = entry.status().is_success();
    if success && info.conditions.precondition_failed(&headers) {
        let mut resp = error_response(StatusCode::PRECONDITION_FAILED, "precondition failed\n");
        stamp(resp.headers_mut(), &status, settings);
        return resp;
    }
    if success && info.conditions.not_modified(&headers) {
        let mut resp = Response::new(CacheBody::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.headers_mut() = headers;
        return resp;
    }
    if entry.status() == StatusCode::PARTIAL_CONTENT {
        return super::partial::from_part(entry, info.range, headers);
    }
    if let Some(range) = info.range.filter(|_| entry.status() == StatusCode::OK) {
        if info.conditions.range_applies(&headers) {
            return partial(entry, range, headers);
        }
    }
    let body = if entry.is_gzip() && !gzip_out {
        match entry.decoded_body() {
            Ok(b) => b,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "the stored response could not be decoded\n",
                )
            }
        }
    } else {
        entry.body()
    };
    if gzip_out {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let body = if info.head {
        let status = entry.status();
        if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        CacheBody::empty()
    } else {
        CacheBody::full(body)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = entry.status();
    *resp.headers_mut() = headers;
    match info.llm {
        Some(llm) if !info.head => reshaped(resp, entry, llm),
        _ => resp,
    }
}

/// An LLM answer in the shape its request wants: a stored stream for a JSON request, a
/// stored object for a streaming one, a chat stream without the usage chunk nobody asked
/// for. Served as stored when it already is that shape.
fn reshaped<B>(
    mut resp: Response<CacheBody<B>>,
    entry: &Entry,
    (provider, ask): (Provider, Ask),
) -> Response<CacheBody<B>> {
    let Some(new) = Facts::of(entry, provider).rendering(entry, provider, ask) else {
        return resp;
    };
    let h = resp.headers_mut();
    h.remove(CONTENT_ENCODING);
    h.remove(CONTENT_LENGTH);
    h.remove(http::header::ETAG);
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(Provider::content_type(ask.shape)),
    );
    *resp.body_mut() = CacheBody::full(new);
    resp
}

/// A `206` with one range of the decoded representation, or a `416` when it cannot be
/// satisfied (RFC 9110 §14.1, §15.3.7, §15.5.17).
fn partial<B>(entry: &Entry, range: ByteRange, mut headers: HeaderMap) -> Response<CacheBody<B>> {
    let Ok(body) = entry.decoded_body() else {
        return error_response(
            StatusCode::BAD_GATEWAY,
            "the stored response could not be decoded\n",
        );
    };
    let len = body.len() as u64;
    headers.remove(CONTENT_ENCODING);
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut resp = match range.resolve(len) {
        Some((first, last)) => {
            let content_range = format!("bytes {first}-{last}/{len}");
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(CONTENT_RANGE, v);
            }
            let mut r = Response::new(CacheBody::full(body.slice(first as usize..=last as usize)));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r
        }
        None => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(CONTENT_RANGE, v);
            }
            let mut r = Response::new(CacheBody::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r
        }
    };
    *resp.headers_mut() = headers;
    resp
}

/// Ages below this are served from a table of static values (no allocation per hit).
const AGE_TABLE: usize = 4096;

/// The `Age` header value for `secs`.
fn age_value(secs: u64) -> HeaderValue {
    static TABLE: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        // One leaked string holds every number; each value is a static slice of it.
        let mut all = String::new();
        let mut ends = Vec::with_capacity(AGE_TABLE);
        for n in 0..AGE_TABLE {
            all.push_str(&n.to_string());
            ends.push(all.len());
        }
        let all: &'static str = Box::leak(all.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let v = HeaderValue::from_static(&all[start..end]);
                start = end;
                v
            })
            .collect()
    });
    match table.get(secs as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(secs),
    }
}

/// A short plain-text answer (errors the cache or proxy itself produces).
pub fn error_response<B>(status: StatusCode, message: &'static str) -> Response<CacheBody<B>> {
    let mut resp = Response::new(CacheBody::full(Bytes::from_static(message.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_values() {
        assert_eq!(age_value(0), "0");
        assert_eq!(age_value(4095), "4095");
        assert_eq!(age_value(4096), "4096");
        assert_eq!(age_value(86_400), "86400");
    }
}

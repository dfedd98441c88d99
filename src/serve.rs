//! Responses built from stored entries, and the header hygiene of what gets stored.
//!
//! A hit clones the body as a `Bytes` pointer: gzip-accepting clients get the stored
//! compressed bytes as they are; others get them decoded. Every answer from the cache
//! carries `Age`, `Cache-Status` and `X-Cache`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, AGE, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_RANGE, ETAG, EXPIRES, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, PRAGMA, RANGE, SET_COOKIE, VARY,
};
use http::{Method, Request, Response, StatusCode};

use crate::body::CacheBody;
use crate::cache::Settings;
use crate::entry::Entry;
use crate::policy::parse_date;
use crate::rules::Rule;
use crate::status::CacheStatus;

/// `X-Cache`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What of the request shapes the answer from an entry.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReqInfo {
    pub head: bool,
    pub gzip: bool,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    pub if_match: Option<HeaderValue>,
    pub if_unmodified_since: Option<HeaderValue>,
    /// A single byte range asked for with GET.
    pub range: Option<ByteRange>,
    pub if_range: Option<HeaderValue>,
}

/// What a `Range` header asks for (RFC 9110 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// One byte range: served from the cache.
    Single(ByteRange),
    /// Several ranges, or another unit: passed through to the upstream.
    Other,
    /// Not a valid range: ignored (the whole representation is served).
    Invalid,
}

/// One byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The inclusive byte positions within a representation of `len` bytes, or `None`
    /// when unsatisfiable.
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(first, _) if first >= len => None,
            ByteRange::From(first, last) => Some((first, last.map_or(len - 1, |l| l.min(len - 1)))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if len == 0 => None,
            ByteRange::Suffix(n) => Some((len.saturating_sub(n), len - 1)),
        }
    }
}

/// Parses a `Range` header value.
pub(crate) fn parse_range(v: &HeaderValue) -> RangeRequest {
    let Ok(text) = v.to_str() else {
        return RangeRequest::Invalid;
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeRequest::Other;
    };
    if spec.contains(',') {
        return RangeRequest::Other;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Invalid;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        (true, _, Some(n)) => RangeRequest::Single(ByteRange::Suffix(n)),
        (false, Some(first), None) if b.trim().is_empty() => {
            RangeRequest::Single(ByteRange::From(first, None))
        }
        (false, Some(first), Some(last)) if last >= first => {
            RangeRequest::Single(ByteRange::From(first, Some(last)))
        }
        _ => RangeRequest::Invalid,
    }
}

impl ReqInfo {
    pub fn new<B>(req: &Request<B>) -> ReqInfo {
        let h = req.headers();
        let conditional = matches!(*req.method(), Method::GET | Method::HEAD);
        ReqInfo {
            head: req.method() == Method::HEAD,
            gzip: crate::compress::accepts_gzip(h),
            if_none_match: h.get(IF_NONE_MATCH).filter(|_| conditional).cloned(),
            if_modified_since: h.get(IF_MODIFIED_SINCE).filter(|_| conditional).cloned(),
            if_match: h.get(IF_MATCH).filter(|_| conditional).cloned(),
            if_unmodified_since: h.get(IF_UNMODIFIED_SINCE).filter(|_| conditional).cloned(),
            range: match h
                .get(RANGE)
                .filter(|_| req.method() == Method::GET)
                .map(parse_range)
            {
                Some(RangeRequest::Single(r)) => Some(r),
                _ => None,
            },
            if_range: h.get(IF_RANGE).cloned(),
        }
    }
}

pub(crate) use crate::semantics::hygiene::strip_hop_by_hop;

/// The headers to store for a response: hop-by-hop, framing, `Age`, cookies and the tag
/// header removed; the rule's `cache_control` in place of the origin's; `Vary:
/// Accept-Encoding` added when the stored body is gzip.
pub(crate) fn stored_headers(
    response: &HeaderMap,
    rule: Option<&Rule>,
    settings: &Settings,
    gzip: bool,
    keep_encoding: bool,
) -> HeaderMap {
    let mut h = response.clone();
    strip_hop_by_hop(&mut h);
    h.remove(CONTENT_LENGTH);
    if !keep_encoding {
        h.remove(CONTENT_ENCODING);
    }
    h.remove(AGE);
    h.remove(SET_COOKIE);
    h.remove(X_CACHE);
    strip_cache_fields(&mut h, settings);
    if let Some(cc) = rule.and_then(|r| r.cache_control.as_ref()) {
        h.insert(CACHE_CONTROL, cc.clone());
        h.remove(EXPIRES);
        h.remove(PRAGMA);
    } else if rule.is_some_and(|r| r.per_user) {
        make_private(&mut h);
    }
    if gzip && !vary_lists(&h, "accept-encoding") {
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h
}

/// Removes the fields meant for this cache only: the tag header and the targeted
/// cache-control fields (RFC 9213), which clients never see.
pub(crate) fn strip_cache_fields(h: &mut HeaderMap, settings: &Settings) {
    if let Some(t) = &settings.config.cache.tag_header {
        h.remove(t);
    }
    for t in &settings.targeted {
        h.remove(t);
    }
}

/// Marks a per-user answer `private` for caches downstream, dropping what would let them
/// share it (`public`, `s-maxage`).
fn make_private(h: &mut HeaderMap) {
    let mut directives = vec!["private".to_string()];
    for v in h
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let name = d
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !matches!(name.as_str(), "public" | "s-maxage" | "private") {
                directives.push(d.to_string());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        h.insert(CACHE_CONTROL, v);
    }
}

fn vary_lists(h: &HeaderMap, name: &str) -> bool {
    h.get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name))
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2).
fn etag_matches_weakly(list: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = etag.to_str().map(strip).unwrap_or_default();
    list.trim() == "*" || list.split(',').any(|t| strip(t) == ours)
}

/// Strong comparison of entity tags (RFC 9110 §8.8.3.2) for `If-Match`.
fn etag_matches_strongly(list: &HeaderValue, etag: Option<&HeaderValue>) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let Some(ours) = etag.and_then(|e| e.to_str().ok()).map(str::trim) else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    !ours.starts_with("W/") && list.split(',').any(|t| t.trim() == ours)
}

/// Whether a precondition fails (RFC 9110 §13.2.2 steps 1–2): answer 412.
fn precondition_failed(info: &ReqInfo, headers: &HeaderMap) -> bool {
    if let Some(im) = &info.if_match {
        return !etag_matches_strongly(im, headers.get(ETAG));
    }
    if let Some(ius) = &info.if_unmodified_since {
        let lm = headers.get(LAST_MODIFIED).and_then(parse_date);
        return match (parse_date(ius), lm) {
            (Some(since), Some(lm)) => lm > since,
            _ => false,
        };
    }
    false
}

/// Whether a client's conditional GET can be answered 304 (RFC 9110 §13.2.2 steps 3–4).
fn not_modified(info: &ReqInfo, headers: &HeaderMap) -> bool {
    if let Some(inm) = &info.if_none_match {
        return headers
            .get(ETAG)
            .is_some_and(|e| etag_matches_weakly(inm, e));
    }
    if let Some(ims) = &info.if_modified_since {
        // Without a Last-Modified, the stored response's Date stands in (RFC 9111 §4.3.2).
        let (Some(since), Some(lm)) = (
            parse_date(ims),
            headers
                .get(LAST_MODIFIED)
                .or(headers.get(http::header::DATE))
                .and_then(parse_date),
        ) else {
            return false;
        };
        return lm <= since;
    }
    false
}

fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(e) = headers.get(ETAG) {
        if e.as_bytes().first() == Some(&b'"') {
            let mut v = Vec::with_capacity(e.len() + 2);
            v.extend_from_slice(b"W/");
            v.extend_from_slice(e.as_bytes());
            if let Ok(w) = HeaderValue::from_bytes(&v) {
                headers.insert(ETAG, w);
            }
        }
    }
}

/// Restores the origin's strong tag (stored weakened for the gzip bytes larder made).
fn strengthen_etag(headers: &mut HeaderMap) {
    if let Some(e) = headers.get(ETAG) {
        if let Some(strong) = e.as_bytes().strip_prefix(b"W/") {
            if let Ok(v) = HeaderValue::from_bytes(strong) {
                headers.insert(ETAG, v);
            }
        }
    }
}

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
    if success && precondition_failed(info, &headers) {
        let mut resp = error_response(StatusCode::PRECONDITION_FAILED, "precondition failed\n");
        stamp(resp.headers_mut(), &status, settings);
        return resp;
    }
    if success && not_modified(info, &headers) {
        let mut resp = Response::new(CacheBody::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.headers_mut() = headers;
        return resp;
    }
    if let Some(range) = info.range.filter(|_| entry.status() == StatusCode::OK) {
        if if_range_holds(info, &headers) {
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
    resp
}

/// Whether an `If-Range` (if any) still matches, so the range applies (RFC 9110 §13.1.5):
/// a strong entity tag, or the exact `Last-Modified` date.
fn if_range_holds(info: &ReqInfo, headers: &HeaderMap) -> bool {
    let Some(cond) = &info.if_range else {
        return true;
    };
    let Ok(text) = cond.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        return !text.starts_with("W/")
            && headers.get(ETAG).and_then(|e| e.to_str().ok()) == Some(text);
    }
    headers
        .get(LAST_MODIFIED)
        .is_some_and(|lm| lm.as_bytes() == text.as_bytes())
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
    fn ranges() {
        let p = |v: &str| parse_range(&v.parse().unwrap());
        assert_eq!(
            p("bytes=0-9"),
            RangeRequest::Single(ByteRange::From(0, Some(9)))
        );
        assert_eq!(
            p("bytes=5-"),
            RangeRequest::Single(ByteRange::From(5, None))
        );
        assert_eq!(p("bytes=-3"), RangeRequest::Single(ByteRange::Suffix(3)));
        assert_eq!(p("bytes=0-1,4-5"), RangeRequest::Other);
        assert_eq!(p("items=0-1"), RangeRequest::Other);
        assert_eq!(p("bytes=9-2"), RangeRequest::Invalid);
        assert_eq!(p("bytes=x-2"), RangeRequest::Invalid);
        assert_eq!(ByteRange::From(0, Some(99)).resolve(10), Some((0, 9)));
        assert_eq!(ByteRange::From(10, None).resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 9)));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some((0, 9)));
    }

    #[test]
    fn range_parsing_holds_for_any_input() {
        // A bounded property test (the parsers' others are in tests/parsers.rs): no input
        // panics, and a resolved range always lies inside the representation.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"bytes=-,0123456789 x";
        for _ in 0..5_000 {
            let mut text = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let Ok(v) = HeaderValue::from_bytes(&text) else {
                continue;
            };
            if let RangeRequest::Single(r) = parse_range(&v) {
                for len in [0u64, 1, 10, 1 << 40] {
                    if let Some((first, last)) = r.resolve(len) {
                        assert!(first <= last && last < len, "{v:?} {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn age_values() {
        assert_eq!(age_value(0), "0");
        assert_eq!(age_value(4095), "4095");
        assert_eq!(age_value(4096), "4096");
        assert_eq!(age_value(86_400), "86400");
    }

    #[test]
    fn weak_etag_comparison() {
        let e: HeaderValue = "\"abc\"".parse().unwrap();
        assert!(etag_matches_weakly(&"W/\"abc\"".parse().unwrap(), &e));
        assert!(etag_matches_weakly(&"\"x\", \"abc\"".parse().unwrap(), &e));
        assert!(etag_matches_weakly(&"*".parse().unwrap(), &e));
        assert!(!etag_matches_weakly(&"\"abcd\"".parse().unwrap(), &e));
    }

    #[test]
    fn hygiene() {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONNECTION, "x-private-hop".parse().unwrap());
        h.insert("x-private-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("surrogate-key", "a b".parse().unwrap());
        h.insert(SET_COOKIE, "s=1".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("cdn-cache-control", "max-age=60".parse().unwrap());
        h.insert("larder-cache-control", "max-age=60".parse().unwrap());
        let settings = crate::Cache::new(crate::Config::default())
            .unwrap()
            .settings();
        let out = stored_headers(&h, None, &settings, true, false);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out.get(VARY).unwrap(), "Accept-Encoding");
        let mut rule = Rule::new("r", "/a").unwrap();
        rule.per_user = true;
        h.insert(
            CACHE_CONTROL,
            "public, max-age=60, s-maxage=600".parse().unwrap(),
        );
        let out = stored_headers(&h, Some(&rule), &settings, false, false);
        assert_eq!(out.get(CACHE_CONTROL).unwrap(), "private, max-age=60");
    }
}

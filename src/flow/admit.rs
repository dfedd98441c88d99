//! Admission: whether the upstream's answer may be stored and for how long (RFC 9111,
//! through [`crate::policy::decide`]), and the entry made of it — headers cleaned, the body
//! in the form it is kept (gzip once), tags, and a `Vary` marker with its variant.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    EXPIRES, PRAGMA, SET_COOKIE, VARY,
};
use http::{Method, StatusCode};

use super::respond::{strip_cache_fields, X_CACHE};
use crate::cache::Settings;
use crate::entry::{Entry, NewEntry, StoredBody};
use crate::key::{self, CacheKey, UserId};
use crate::policy::{self, vary_names, Freshness, RequestPolicy, StoreInput};
use crate::rules::Rule;
use crate::semantics::hygiene::strip_hop_by_hop;
use crate::semantics::lists::{has_token, tokens};
use crate::status::NoCacheReason;

/// The request-side facts admission needs, taken before the request goes upstream.
pub(crate) struct FillRequest {
    pub key: CacheKey,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub user: Option<UserId>,
}

/// Whether an answer to `fill` may be stored, and its freshness.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    s: &Settings,
    rule: Option<&Rule>,
    fill: &FillRequest,
    request: &RequestPolicy,
    status: StatusCode,
    response: &HeaderMap,
    request_time: u64,
    response_time: u64,
) -> Result<Freshness, NoCacheReason> {
    if request.no_store {
        return Err(NoCacheReason::RequestNoStore);
    }
    if !servable_coding(response) {
        return Err(NoCacheReason::Coding);
    }
    let c = &s.config.cache;
    policy::decide(&StoreInput {
        method: &fill.method,
        request: &fill.headers,
        status,
        response,
        rule,
        credentials: s.users.present(&fill.headers),
        targeted: &s.targeted,
        heuristic: c.heuristic.then_some(c.heuristic_max),
        statuses: &c.statuses,
        default_ttl: c.default_ttl,
        respect_origin: c.respect_origin,
        request_time,
        response_time,
    })
}

/// Whether an answer's content coding is one the cache serves to every client: none, or
/// gzip (decoded here for clients that do not take it). Another coding (an upstream that
/// ignored the `Accept-Encoding` larder sent) would reach clients that never accepted it.
fn servable_coding(response: &HeaderMap) -> bool {
    let mut codings = response.get_all(CONTENT_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(v), None) => {
            let v = v.as_bytes().trim_ascii();
            v.is_empty()
                || [&b"identity"[..], b"gzip", b"x-gzip"]
                    .iter()
                    .any(|c| v.eq_ignore_ascii_case(c))
        }
        _ => false,
    }
}

/// The fields of an answer that belong to the request that caused it and to no other:
/// `Set-Cookie`, and what a qualified `no-cache` or `private` names (RFC 9111 §5.2.2.4,
/// §5.2.2.7), whatever a rule overrides. Never stored, never seen by a follower of the
/// fill; the request that caused the fill gets them with its answer. Under an LLM rule,
/// the provider's per-call fields too (request ids, rate limits, processing times).
pub(crate) fn personal_fields(
    response: &HeaderMap,
    settings: &Settings,
    rule: Option<&Rule>,
) -> Vec<HeaderName> {
    let mut names = crate::policy::withheld_fields(response, &settings.targeted);
    names.push(SET_COOKIE);
    if rule.is_some_and(|r| r.llm.is_some()) {
        names.extend(
            response
                .keys()
                .filter(|n| crate::llm::is_per_call_header(n.as_str()))
                .cloned(),
        );
    }
    names
}

/// The values of `names` in `response`, to hand back to the request that caused a fill.
pub(crate) fn own_fields(response: &HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut own = HeaderMap::new();
    for name in names {
        for v in response.get_all(name) {
            own.append(name.clone(), v.clone());
        }
    }
    own
}

/// The headers to store for a response: hop-by-hop, framing, `Age`, the personal fields
/// ([`personal_fields`]) and the tag header removed; the rule's `cache_control` in place
/// of the origin's; `Vary: Accept-Encoding` added when the stored body is gzip.
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
    for name in personal_fields(response, settings, rule) {
        h.remove(name);
    }
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

/// Marks a per-user answer `private` for caches downstream, dropping what would let them
/// share it (`public`, `s-maxage`).
fn make_private(h: &mut HeaderMap) {
    let mut directives = vec!["private".to_string()];
    for d in tokens(h, &CACHE_CONTROL) {
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
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        h.insert(CACHE_CONTROL, v);
    }
}

fn vary_lists(h: &HeaderMap, name: &str) -> bool {
    has_token(h, &VARY, name)
}

/// A body in the form it is kept.
pub(crate) enum Kept {
    /// As the origin sent it, unencoded.
    Identity(Bytes),
    /// gzip: the origin's bytes, or compressed here (`identity_len` decoded bytes).
    Gzip {
        data: Bytes,
        identity_len: u32,
        from_origin: bool,
    },
}

impl Kept {
    fn stored(&self) -> StoredBody<'_> {
        match self {
            Kept::Identity(b) => StoredBody::Identity(b),
            Kept::Gzip {
                data,
                identity_len,
                from_origin,
            } => StoredBody::Gzip {
                data,
                identity_len: *identity_len,
                from_origin: *from_origin,
            },
        }
    }
}

/// Whether an LLM rule's answer is one to keep: complete (its terminal event, no error),
/// and not cut by its length or a filter unless the rule stores those. Other rules keep
/// every complete body.
pub(crate) fn complete_answer(
    rule: Option<&Rule>,
    response: &HeaderMap,
    body: &[u8],
) -> Result<(), NoCacheReason> {
    let Some((r, provider)) = rule.and_then(|r| r.llm.map(|p| (r, p))) else {
        return Ok(());
    };
    let shape = crate::llm::shape_of(
        response
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let mut decoded = Vec::new();
    let body = match response.get(CONTENT_ENCODING) {
        Some(_) if crate::compress::gunzip_into(body, &mut decoded, 64 << 20).is_ok() => {
            &decoded[..]
        }
        _ => body,
    };
    match provider.judge(shape, body) {
        crate::llm::Verdict::Complete(_) => Ok(()),
        crate::llm::Verdict::Truncated(_) if r.store_truncated => Ok(()),
        crate::llm::Verdict::Truncated(_) => Err(NoCacheReason::Truncated),
        crate::llm::Verdict::Incomplete => Err(NoCacheReason::Incomplete),
    }
}

/// The form a complete body is kept in: the origin's gzip kept (if it decodes), identity
/// bodies worth it compressed once. `Err` when the origin's gzip does not decode, or the
/// coding is another (admission refuses those first).
pub(crate) fn keep_body(s: &Settings, response: &HeaderMap, bytes: Bytes) -> Result<Kept, Bytes> {
    let coding = response
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("") | Some("identity") => {
            let worth = bytes.len() as u64 >= s.config.cache.compress_min
                && crate::compress::compressible(response);
            match worth
                .then(|| crate::compress::gzip_if_smaller(&bytes))
                .flatten()
            {
                Some(gz) => Ok(Kept::Gzip {
                    data: Bytes::from(gz),
                    identity_len: bytes.len() as u32,
                    from_origin: false,
                }),
                None => Ok(Kept::Identity(bytes)),
            }
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            match crate::compress::gunzip_into(&bytes, &mut out, s.config.proxy.max_body as usize) {
                Ok(_) => Ok(Kept::Gzip {
                    identity_len: out.len() as u32,
                    data: bytes,
                    from_origin: true,
                }),
                Err(_) => Err(bytes),
            }
        }
        Some(_) => Err(bytes),
    }
}

/// An admitted answer made into entries: the one to serve, and what to store (the entry,
/// or a `Vary` marker under the primary key and the entry under its variant key).
pub(crate) struct Admitted {
    pub entry: Arc<Entry>,
    pub store: Vec<(CacheKey, Arc<Entry>)>,
    /// The fields that are the causing request's own ([`personal_fields`]).
    pub own: HeaderMap,
}

/// Builds the entries for a complete, storable answer.
pub(crate) fn build(
    s: &Settings,
    rule: Option<&Rule>,
    fill: &FillRequest,
    (status, response): (StatusCode, &HeaderMap),
    body: &Kept,
    freshness: Freshness,
    response_time: u64,
) -> Admitted {
    let gzip = matches!(body, Kept::Gzip { .. });
    let headers = stored_headers(response, rule, s, gzip, false);
    let tags = entry_tags(s, rule, fill, response);
    let url = key::normalized_url(
        &fill.path,
        fill.query.as_deref(),
        &s.config.cache.ignore_params,
        rule.and_then(|r| r.key_query.as_deref()),
    );
    let new = |body, vary| NewEntry {
        status,
        headers: &headers,
        body,
        url: &url,
        tags: &tags,
        freshness,
        response_time,
        vary,
    };
    let entry = Arc::new(Entry::encode(&new(body.stored(), None)));
    let own = own_fields(response, &personal_fields(response, s, rule));
    let vary = vary_names(response, false);
    if vary.is_empty() {
        return Admitted {
            store: vec![(fill.key, entry.clone())],
            entry,
            own,
        };
    }
    // The marker lives as long as its variants can be used (same validators, same grace),
    // so a stale variant is found and revalidated rather than refetched.
    let marker = Arc::new(Entry::encode(&new(StoredBody::Identity(b""), Some(&vary))));
    let variant = fill.key.variant(&vary, &fill.headers);
    Admitted {
        store: vec![(fill.key, marker), (variant, entry.clone())],
        entry,
        own,
    }
}

/// An entry's tags: the rule's templates, the upstream's tag header, its URL and its user.
fn entry_tags(
    s: &Settings,
    rule: Option<&Rule>,
    fill: &FillRequest,
    response: &HeaderMap,
) -> Vec<u64> {
    let mut names: Vec<String> = Vec::new();
    if let Some(r) = rule.filter(|r| !r.tags.is_empty()) {
        let caps = r.pattern.captures(&fill.path).unwrap_or_default();
        let user = fill.user.as_ref();
        names.extend(r.tags.iter().filter_map(|t| t.render_for(&caps, user)));
    }
    if let Some(h) = &s.config.cache.tag_header {
        for v in response.get_all(h).iter().filter_map(|v| v.to_str().ok()) {
            names.extend(v.split_whitespace().map(str::to_string));
        }
    }
    // Each tag, and the prefixes it can be invalidated by (`tag_prefix`).
    let mut tags: Vec<u64> = names.iter().map(|t| key::tag_id(t)).collect();
    tags.extend(names.iter().flat_map(|t| key::tag_prefix_ids(t)));
    tags.push(key::url_tag(
        &s.config.cache.namespace,
        &fill.path,
        fill.query.as_deref(),
        &s.config.cache.ignore_params,
        rule.and_then(|r| r.key_query.as_deref()),
    ));
    // The directories of its path (a URL prefix or a pattern finds it by them).
    tags.extend(key::path_prefix_ids(&fill.path));
    if let Some(u) = &fill.user {
        tags.push(key::user_tag(u));
    }
    tags.sort_unstable();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // CDN-Cache-Control is kept for CDNs in front; our own targeted field is not.
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out.get("cdn-cache-control").unwrap(), "max-age=60");
        assert!(out.get("larder-cache-control").is_none());
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

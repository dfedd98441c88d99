//! Revalidation (RFC 9111 §4.3): the upstream request a fill sends — the whole,
//! unconditional representation for everyone, with the stale entry's validators when it
//! has some — and a stored response refreshed from a `304`.

use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::Method;

use crate::entry::Entry;
use crate::semantics::hygiene::strip_hop_by_hop;

/// Shapes the request a fill sends upstream; returns whether it is conditional (carries
/// `stale`'s validators).
///
/// The client's own conditions and ranges are evaluated against the stored entry later,
/// so they are removed. larder decodes gzip for clients that cannot take it, so gzip is all
/// it asks for; a client that cannot take gzip asks for identity, so an answer that turns
/// out not to be storable reaches it in a coding it understands.
pub(crate) fn prepare(
    headers: &mut HeaderMap,
    method: &Method,
    gzip_client: bool,
    stale: Option<&Entry>,
) -> bool {
    for h in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_RANGE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        RANGE,
    ] {
        headers.remove(h);
    }
    let coding = if gzip_client { "gzip" } else { "identity" };
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(coding));
    let Some(entry) = stale.filter(|_| method == Method::GET) else {
        return false;
    };
    let mut conditional = false;
    if let Some(etag) = entry.etag() {
        let etag = match etag.as_bytes().strip_prefix(b"W/") {
            // Stored weak only because larder compressed it: ask with the origin's.
            Some(strong) if entry.etag_weakened() => {
                HeaderValue::from_bytes(strong).unwrap_or(etag)
            }
            _ => etag,
        };
        headers.insert(IF_NONE_MATCH, etag);
        conditional = true;
    }
    if let Some(lm) = entry.last_modified() {
        headers.insert(IF_MODIFIED_SINCE, lm);
        conditional = true;
    }
    conditional
}

/// Whether a `200` to a `HEAD` still describes the stored `GET` response (RFC 9111
/// §4.3.5): an `ETag`, `Last-Modified` or `Content-Length` it carries that differs from the
/// stored one means the representation changed, and the stored response must not be
/// updated from it.
pub(crate) fn head_matches(entry: &Entry, head: &HeaderMap) -> bool {
    let same = |theirs: Option<&HeaderValue>, ours: Option<HeaderValue>| {
        theirs.is_none_or(|t| ours.is_none_or(|o| *t == o))
    };
    let length = head
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A length is comparable when the upstream sent the body as larder keeps it decoded.
    let coded = head.contains_key(CONTENT_ENCODING);
    // An ETag stored weak only because larder compressed the body compares as the origin's.
    let etag = entry
        .etag()
        .map(|e| match e.as_bytes().strip_prefix(b"W/") {
            Some(strong) if entry.etag_weakened() => HeaderValue::from_bytes(strong).unwrap_or(e),
            _ => e,
        });
    same(head.get(http::header::ETAG), etag)
        && same(head.get(http::header::LAST_MODIFIED), entry.last_modified())
        && (coded || length.is_none_or(|n| n == entry.identity_len()))
}

/// Headers of a stored response updated from a `304` (RFC 9111 §3.2): every field the
/// `304` carries replaces the stored one, except framing and hop-by-hop fields.
pub(crate) fn merge_304(entry: &Entry, update: &HeaderMap) -> HeaderMap {
    let mut merged: HeaderMap = entry.headers().collect();
    let mut update = update.clone();
    strip_hop_by_hop(&mut update);
    for name in [CONTENT_LENGTH, CONTENT_ENCODING, CONTENT_RANGE] {
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

//! What a request itself asks of the cache (RFC 9111 §5.2.1).

use http::header::{HeaderMap, CACHE_CONTROL, PRAGMA};

use super::directives::Directives;
use crate::semantics::lists::has_token;

/// What the request itself asks of the cache (RFC 9111 §5.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestPolicy {
    /// `no-store`: do not store the response.
    pub no_store: bool,
    /// `no-cache` or `max-age=0` (or `Pragma: no-cache`): do not serve a stored response
    /// without going upstream.
    pub revalidate: bool,
    /// `only-if-cached`: never go upstream.
    pub only_if_cached: bool,
    /// `max-age` limit on the age of a served response, in seconds.
    pub max_age: Option<u64>,
    /// `max-stale`, in seconds.
    pub max_stale: Option<u64>,
    /// `min-fresh`, in seconds.
    pub min_fresh: Option<u64>,
}

impl RequestPolicy {
    /// Reads the request's directives.
    pub fn from_headers(headers: &HeaderMap) -> RequestPolicy {
        if !headers.contains_key(CACHE_CONTROL) && !headers.contains_key(PRAGMA) {
            return RequestPolicy::default();
        }
        let d = Directives::from_headers(headers);
        let pragma_no_cache = !d.present && has_token(headers, &PRAGMA, "no-cache");
        RequestPolicy {
            no_store: d.no_store,
            revalidate: d.no_cache || !d.no_cache_fields.is_empty() || pragma_no_cache,
            only_if_cached: d.only_if_cached,
            max_age: d.max_age,
            max_stale: d.max_stale,
            min_fresh: d.min_fresh,
        }
    }
}

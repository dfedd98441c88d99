//! Conditional requests (RFC 9110 §13): a request's preconditions evaluated against the
//! stored response's validators, and entity-tag strength.
//!
//! ```
//! use larder::semantics::conditionals::Conditions;
//! let mut req = http::HeaderMap::new();
//! req.insert("if-none-match", "W/\"v1\"".parse().unwrap());
//! let c = Conditions::of(&http::Method::GET, &req);
//! let mut stored = http::HeaderMap::new();
//! stored.insert("etag", "\"v1\"".parse().unwrap());
//! assert!(c.not_modified(&stored));
//! assert!(!c.precondition_failed(&stored));
//! ```

use http::header::{
    HeaderMap, HeaderValue, DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::Method;

use super::dates::parse_date;

/// The preconditions of a request.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// `If-None-Match` (GET/HEAD only).
    pub if_none_match: Option<HeaderValue>,
    /// `If-Modified-Since` (GET/HEAD only).
    pub if_modified_since: Option<HeaderValue>,
    /// `If-Match`.
    pub if_match: Option<HeaderValue>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<HeaderValue>,
    /// `If-Range`.
    pub if_range: Option<HeaderValue>,
}

impl Conditions {
    /// The preconditions of a request with `method` and `headers`.
    pub fn of(method: &Method, headers: &HeaderMap) -> Conditions {
        let conditional = matches!(*method, Method::GET | Method::HEAD);
        let get = |name| headers.get(name).filter(|_| conditional).cloned();
        Conditions {
            if_none_match: get(IF_NONE_MATCH),
            if_modified_since: get(IF_MODIFIED_SINCE),
            if_match: get(IF_MATCH),
            if_unmodified_since: get(IF_UNMODIFIED_SINCE),
            if_range: headers.get(IF_RANGE).cloned(),
        }
    }

    /// Whether the request has none of the preconditions that change a `200`.
    pub fn is_empty(&self) -> bool {
        self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_match.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Whether a precondition fails against the stored headers (RFC 9110 §13.2.2 steps
    /// 1–2): answer `412`.
    pub fn precondition_failed(&self, stored: &HeaderMap) -> bool {
        if let Some(im) = &self.if_match {
            return !etag_matches_strongly(im, stored.get(ETAG));
        }
        if let Some(ius) = &self.if_unmodified_since {
            let lm = stored.get(LAST_MODIFIED).and_then(parse_date);
            return match (parse_date(ius), lm) {
                (Some(since), Some(lm)) => lm > since,
                _ => false,
            };
        }
        false
    }

    /// Whether a conditional GET can be answered `304` (RFC 9110 §13.2.2 steps 3–4).
    pub fn not_modified(&self, stored: &HeaderMap) -> bool {
        if let Some(inm) = &self.if_none_match {
            return stored
                .get(ETAG)
                .is_some_and(|e| etag_matches_weakly(inm, e));
        }
        if let Some(ims) = &self.if_modified_since {
            // Without a Last-Modified, the stored response's Date stands in (RFC 9111 §4.3.2).
            let (Some(since), Some(lm)) = (
                parse_date(ims),
                stored
                    .get(LAST_MODIFIED)
                    .or(stored.get(DATE))
                    .and_then(parse_date),
            ) else {
                return false;
            };
            return lm <= since;
        }
        false
    }

    /// Whether an `If-Range` (if any) still matches, so the range applies (RFC 9110
    /// §13.1.5): a strong entity tag, or the exact `Last-Modified` date.
    pub fn range_applies(&self, stored: &HeaderMap) -> bool {
        let Some(cond) = &self.if_range else {
            return true;
        };
        let Ok(text) = cond.to_str() else {
            return false;
        };
        let text = text.trim();
        if text.starts_with('"') || text.starts_with("W/") {
            return !text.starts_with("W/")
                && stored.get(ETAG).and_then(|e| e.to_str().ok()) == Some(text);
        }
        stored
            .get(LAST_MODIFIED)
            .is_some_and(|lm| lm.as_bytes() == text.as_bytes())
    }
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2).
pub fn etag_matches_weakly(list: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = etag.to_str().map(strip).unwrap_or_default();
    list.trim() == "*" || list.split(',').any(|t| strip(t) == ours)
}

/// Strong comparison of entity tags (RFC 9110 §8.8.3.2) for `If-Match`.
pub fn etag_matches_strongly(list: &HeaderValue, etag: Option<&HeaderValue>) -> bool {
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

/// Makes a strong `ETag` weak (the bytes were transformed, RFC 9110 §8.8.1).
pub fn weaken_etag(headers: &mut HeaderMap) {
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

/// Restores a strong `ETag` stored weakened.
pub fn strengthen_etag(headers: &mut HeaderMap) {
    let strong = headers
        .get(ETAG)
        .and_then(|e| e.as_bytes().strip_prefix(b"W/"))
        .and_then(|s| HeaderValue::from_bytes(s).ok());
    if let Some(v) = strong {
        headers.insert(ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_etag_comparison() {
        let e: HeaderValue = "\"abc\"".parse().unwrap();
        assert!(etag_matches_weakly(&"W/\"abc\"".parse().unwrap(), &e));
        assert!(etag_matches_weakly(&"\"x\", \"abc\"".parse().unwrap(), &e));
        assert!(etag_matches_weakly(&"*".parse().unwrap(), &e));
        assert!(!etag_matches_weakly(&"\"abcd\"".parse().unwrap(), &e));
    }
}

//! The body part of a key (`key_body` rules): JSON canonicalised, anything else raw.

use super::json;

/// The hash of a request body for `key_body` rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BodyHash(pub [u8; 16]);

/// Why a body cannot be part of a key: the request bypasses the cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BodyKeyError {
    /// JSON nested deeper than [`json::MAX_DEPTH`]: refused rather than canonicalised.
    TooDeep,
}

impl BodyHash {
    /// Hashes a body: JSON (by content type, or when none is given and it parses) is
    /// canonicalised first, so key order and whitespace do not matter. A body that is not
    /// JSON, or that no parser reads one way (a duplicate key), is hashed as raw bytes; a
    /// JSON body nested too deep is refused.
    ///
    /// ```
    /// use larder::key::{BodyHash, BodyKeyError};
    /// let json = Some("application/json");
    /// assert_eq!(BodyHash::of(json, br#"{"a":1, "b":[1,2]}"#), BodyHash::of(json, br#"{ "b":[1,2],"a":1 }"#));
    /// assert_ne!(BodyHash::of(json, br#"{"a":1}"#), BodyHash::of(json, br#"{"a":2}"#));
    /// let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    /// assert_eq!(BodyHash::of(json, deep.as_bytes()), Err(BodyKeyError::TooDeep));
    /// ```
    pub fn of(content_type: Option<&str>, body: &[u8]) -> Result<BodyHash, BodyKeyError> {
        let json_type = content_type.map(|ct| {
            let ct = media_type(ct);
            ct == "application/json" || ct.ends_with("+json")
        });
        let canonical = match json_type {
            Some(false) => json::Canonical::NotJson,
            _ => json::canonicalize(body),
        };
        let mut h = blake3::Hasher::new();
        match &canonical {
            json::Canonical::Json(c) => {
                h.update(b"json\0");
                h.update(c);
            }
            json::Canonical::TooDeep => return Err(BodyKeyError::TooDeep),
            json::Canonical::NotJson | json::Canonical::Ambiguous => {
                h.update(b"raw\0");
                h.update(body);
            }
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Ok(BodyHash(out))
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// JSON with object keys sorted and insignificant whitespace removed; `None` if the body
/// is not JSON, is ambiguous (a duplicate key, which parsers resolve differently) or is
/// nested too deep. Numbers keep their exact text, so no two different values merge.
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    match json::canonicalize(body) {
        json::Canonical::Json(c) => Some(c),
        _ => None,
    }
}

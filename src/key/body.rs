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
    /// Not a JSON document, where only chosen fields of one key the entry.
    NotJson,
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

impl BodyHash {
    /// Hashes an LLM request's meaning (canonical JSON, noise left out), for `api`.
    pub fn of_meaning(api: &str, meaning: &[u8]) -> BodyHash {
        let mut h = blake3::Hasher::new();
        h.update(b"llm\0");
        h.update(api.as_bytes());
        h.update(b"\0");
        h.update(meaning);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        BodyHash(out)
    }

    /// Hashes only the fields at `pointers` (RFC 6901 JSON pointers, in the rule's order)
    /// of a JSON body, each canonicalised; a field the body lacks is hashed as absent. A body
    /// that is not a JSON document (or is ambiguous) is [`BodyKeyError::NotJson`].
    ///
    /// ```
    /// use larder::key::{BodyHash, BodyKeyError};
    /// let json = Some("application/json");
    /// let fields = ["/transcript".to_string(), "/options/length".to_string()];
    /// let a = BodyHash::of_fields(json, br#"{"transcript":"t","options":{"length":"short"},"request_id":1}"#, &fields);
    /// let b = BodyHash::of_fields(json, br#"{"request_id":2,"options":{"length":"short"},"transcript":"t"}"#, &fields);
    /// assert_eq!(a, b);
    /// let absent = BodyHash::of_fields(json, br#"{"transcript":"t"}"#, &fields);
    /// assert_ne!(a, absent);
    /// assert_eq!(BodyHash::of_fields(json, b"not json", &fields), Err(BodyKeyError::NotJson));
    /// ```
    pub fn of_fields(
        content_type: Option<&str>,
        body: &[u8],
        pointers: &[String],
    ) -> Result<BodyHash, BodyKeyError> {
        let json_type = content_type.map(|ct| {
            let ct = media_type(ct);
            ct == "application/json" || ct.ends_with("+json")
        });
        if json_type == Some(false) {
            return Err(BodyKeyError::NotJson);
        }
        let canonical = match json::canonicalize(body) {
            json::Canonical::Json(c) => c,
            json::Canonical::TooDeep => return Err(BodyKeyError::TooDeep),
            json::Canonical::NotJson | json::Canonical::Ambiguous => {
                return Err(BodyKeyError::NotJson)
            }
        };
        let mut h = blake3::Hasher::new();
        h.update(b"fields\0");
        for pointer in pointers {
            h.update(pointer.as_bytes());
            match field(&canonical, pointer) {
                Some(raw) => {
                    h.update(b"\0=");
                    h.update(raw.as_bytes());
                }
                None => {
                    h.update(b"\0absent");
                }
            }
            h.update(b"\0");
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Ok(BodyHash(out))
    }
}

/// The canonical text of the value at `pointer` in a canonical JSON document, if present.
fn field(canonical: &[u8], pointer: &str) -> Option<String> {
    let mut current: Box<serde_json::value::RawValue> = serde_json::from_slice(canonical).ok()?;
    if pointer.is_empty() {
        return Some(current.get().to_string());
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = current.get();
        current = if text.starts_with('{') {
            let mut map: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(text).ok()?;
            map.remove(&token)?
        } else if text.starts_with('[') {
            let mut items: Vec<Box<serde_json::value::RawValue>> =
                serde_json::from_str(text).ok()?;
            let i: usize = token
                .parse()
                .ok()
                .filter(|_| token == "0" || !token.starts_with('0'))?;
            (i < items.len()).then(|| items.swap_remove(i))?
        } else {
            return None;
        };
    }
    Some(current.get().to_string())
}

/// Whether `text` is an RFC 6901 JSON pointer (`""`, or `/`-separated tokens whose `~` is
/// `~0` or `~1`).
pub fn is_json_pointer(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|token| {
        let mut chars = token.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return false;
            }
        }
        true
    })
}

pub use crate::semantics::media::media_type;

/// JSON with object keys sorted and insignificant whitespace removed; `None` if the body
/// is not JSON, is ambiguous (a duplicate key, which parsers resolve differently) or is
/// nested too deep. Numbers keep their exact text, so no two different values merge.
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    match json::canonicalize(body) {
        json::Canonical::Json(c) => Some(c),
        _ => None,
    }
}

//! Cache keys: namespace + method + normalised path and query + rule version + user +
//! body hash, then the request headers named by the stored response's `Vary`.
//!
//! Every component is length-prefixed before hashing (blake3, truncated to 16 bytes), so
//! no crafted path, query or header value can make two different requests share a key.
//! The user part is a keyed hash: no key, log line or metric ever holds a credential.
//!
//! ```
//! use larder::key::{CacheKey, KeyInput};
//! let a = CacheKey::primary(&KeyInput {
//!     query: Some("b=2&a=1&utm_source=x"),
//!     ..KeyInput::new("v1", &http::Method::GET, "/items")
//! }, &["utm_*".to_string()]);
//! let b = CacheKey::primary(&KeyInput {
//!     query: Some("a=1&b=2"),
//!     ..KeyInput::new("v1", &http::Method::GET, "/items")
//! }, &["utm_*".to_string()]);
//! assert_eq!(a, b);
//! ```

use std::fmt;

use http::header::{HeaderMap, HeaderName};
use http::Method;

mod body;
pub use crate::semantics::json;
pub mod jwt;
mod source;
mod tags;
mod url;
mod user;

pub use body::{canonical_json, is_json_pointer, media_type, BodyHash, BodyKeyError};
pub use source::UserSource;
pub use tags::{
    glob_directory, glob_matches, path_prefix_id, path_prefix_ids, tag_id, tag_prefix_id,
    tag_prefix_ids, url_tag, user_tag, TAG_PREFIX_ENDS,
};
pub use url::{normalize_percent, normalized_url};
use url::{param_matches, QueryParams};
use user::trim;
pub use user::{random_secret, UserId, Users};

/// A cache key: 16 bytes of a blake3 hash over length-prefixed components.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 16]);

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already a uniform hash: one word is enough for any hasher.
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(w));
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", hex(&self.0))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The request-side components of a primary key.
#[derive(Clone, Debug)]
pub struct KeyInput<'a> {
    /// The config's namespace.
    pub namespace: &'a str,
    /// The method (HEAD is keyed as GET by the caller).
    pub method: &'a Method,
    /// The request's host, when responses may depend on it.
    pub host: Option<&'a str>,
    /// The normalised path.
    pub path: &'a str,
    /// The raw query, if any.
    pub query: Option<&'a str>,
    /// If set, only these query parameters are keyed.
    pub only_params: Option<&'a [String]>,
    /// The rule's version.
    pub version: Option<&'a str>,
    /// The hashed user for `per_user` rules.
    pub user: Option<UserId>,
    /// The body hash for `key_body` rules.
    pub body: Option<BodyHash>,
}

impl<'a> KeyInput<'a> {
    /// The minimal input; fill the other fields with struct update syntax.
    pub fn new(namespace: &'a str, method: &'a Method, path: &'a str) -> Self {
        KeyInput {
            namespace,
            method,
            host: None,
            path,
            query: None,
            only_params: None,
            version: None,
            user: None,
            body: None,
        }
    }
}

/// Collects the length-prefixed components in one buffer (on the stack for usual sizes)
/// and hashes them in one call: far cheaper than feeding blake3 piece by piece.
struct Hasher {
    inline: [u8; 512],
    len: usize,
    spill: Vec<u8>,
}

impl Hasher {
    fn new(domain: &[u8]) -> Self {
        let mut h = Hasher {
            inline: [0; 512],
            len: 0,
            spill: Vec::new(),
        };
        h.push(domain);
        h
    }
    fn push(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() && self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.extend_from_slice(bytes);
        }
    }
    fn part(&mut self, tag: u8, bytes: &[u8]) {
        self.push(&[tag]);
        self.push(&(bytes.len() as u64).to_le_bytes());
        self.push(bytes);
    }
    /// A component lower-cased on the way in (no allocation).
    fn part_lower(&mut self, tag: u8, bytes: &[u8]) {
        self.push(&[tag]);
        self.push(&(bytes.len() as u64).to_le_bytes());
        for chunk in bytes.chunks(64) {
            let mut lower = [0u8; 64];
            for (l, b) in lower.iter_mut().zip(chunk) {
                *l = b.to_ascii_lowercase();
            }
            self.push(&lower[..chunk.len()]);
        }
    }
    fn finish16(&self) -> [u8; 16] {
        let bytes = if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill[..]
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
        out
    }
}

impl CacheKey {
    /// The primary key of a request (before `Vary`).
    pub fn primary(input: &KeyInput<'_>, ignore_params: &[String]) -> CacheKey {
        let mut h = Hasher::new(b"larder key v1\0");
        h.part(b'n', input.namespace.as_bytes());
        h.part(b'm', input.method.as_str().as_bytes());
        if let Some(host) = input.host {
            h.part_lower(b'h', host.as_bytes());
        }
        h.part(b'p', input.path.as_bytes());
        hash_query(&mut h, input.query, ignore_params, input.only_params);
        if let Some(v) = input.version {
            h.part(b'r', v.as_bytes());
        }
        if let Some(u) = &input.user {
            h.part(b'u', &u.0);
        }
        if let Some(b) = &input.body {
            h.part(b'b', &b.0);
        }
        CacheKey(h.finish16())
    }

    /// The key of one variant: this primary key plus the normalised request headers
    /// named by the stored response's `Vary`.
    pub fn variant(&self, names: &[HeaderName], headers: &HeaderMap) -> CacheKey {
        let mut h = Hasher::new(b"larder variant v1\0");
        h.part(b'k', &self.0);
        for name in names {
            h.part(b'h', name.as_str().as_bytes());
            match vary_value(headers, name) {
                Some(v) => h.part(b'v', &v),
                None => h.part(b'-', b""),
            }
        }
        CacheKey(h.finish16())
    }

    /// The key of the stored part of this key's representation (a `206` kept for later
    /// ranges, RFC 9111 §3.3): the same URL, user and request, another entry.
    pub fn partial(&self) -> CacheKey {
        let mut h = Hasher::new(b"larder partial v1\0");
        h.part(b'k', &self.0);
        CacheKey(h.finish16())
    }

    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Option<CacheKey> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(CacheKey(out))
    }
}

/// Feeds the normalised query to the hasher: for the usual query (no escapes, at most 16
/// parameters) straight from the request, sorted on the stack; otherwise through
/// [`QueryParams`].
fn hash_query(h: &mut Hasher, query: Option<&str>, ignore: &[String], only: Option<&[String]>) {
    let q = query.unwrap_or("");
    let mut inline: [(&str, Option<&str>); 16] = [("", None); 16];
    let mut n = 0;
    let simple = !q.contains('%')
        && q.split('&').filter(|p| !p.is_empty()).all(|part| {
            let (k, v) = match part.find('=') {
                Some(i) => (&part[..i], Some(&part[i + 1..])),
                None => (part, None),
            };
            let keep = match only {
                Some(only) => only.iter().any(|o| o == k),
                None => !ignore.iter().any(|pat| param_matches(pat, k)),
            };
            if !keep {
                return true;
            }
            if n == inline.len() {
                return false;
            }
            inline[n] = (k, v);
            n += 1;
            true
        });
    let write =
        |h: &mut Hasher, pairs: &mut dyn Iterator<Item = (&str, Option<&str>)>, count: usize| {
            h.part(b'q', &(count as u64).to_le_bytes());
            for (k, v) in pairs {
                h.part(b'k', k.as_bytes());
                match v {
                    Some(v) => h.part(b'v', v.as_bytes()),
                    None => h.part(b'-', b""),
                }
            }
        };
    if simple {
        // Stable sort by name: values of one name keep their order.
        inline[..n].sort_by(|a, b| a.0.cmp(b.0));
        write(h, &mut inline[..n].iter().copied(), n);
    } else {
        let params = QueryParams::new(query, ignore, only);
        let count = params.pairs.len();
        write(
            h,
            &mut params.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_deref())),
            count,
        );
    }
}

/// A request header's value normalised for `Vary`; `None` if the header is absent.
///
/// For the content-negotiation headers (`Accept`, `Accept-Charset`, `Accept-Encoding`,
/// `Accept-Language`), whose members are case-insensitive, members are trimmed and
/// lower-cased, in their order (an origin may prefer the first of equal weight). Any other
/// header keeps its exact bytes, line by line (two lines are not one line with a comma: an
/// origin that reads only the first would answer them differently). Values are bytes,
/// never decoded: two values that differ in any byte (non-UTF-8 ones included) are two
/// variants.
///
/// ```
/// use http::{HeaderMap, HeaderName, HeaderValue};
/// let name = HeaderName::from_static("x-lang");
/// let value = |v: &[&[u8]]| {
///     let mut h = HeaderMap::new();
///     for line in v {
///         h.append(name.clone(), HeaderValue::from_bytes(line).unwrap());
///     }
///     larder::key::vary_value(&h, &name)
/// };
/// assert_ne!(value(&[b"\xff"]), value(&[b"\xfe"]));
/// assert_ne!(value(&[b"a , b"]), value(&[b"a,b"]));
/// assert_ne!(value(&[b"a", b"b"]), value(&[b"a, b"]));
/// ```
pub fn vary_value(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let negotiation = matches!(
        name.as_str(),
        "accept" | "accept-charset" | "accept-encoding" | "accept-language"
    );
    let mut out: Vec<u8> = Vec::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            // No field value holds a line feed: lines stay apart.
            out.push(b'\n');
        }
        if !negotiation {
            out.extend_from_slice(trim(v.as_bytes()));
            continue;
        }
        let members = v
            .as_bytes()
            .split(|&b| b == b',')
            .map(trim)
            .filter(|m| !m.is_empty());
        for (j, member) in members.enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend(
                member
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .map(u8::to_ascii_lowercase),
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    fn key(path: &str, query: Option<&str>) -> CacheKey {
        CacheKey::primary(
            &KeyInput {
                query,
                ..KeyInput::new("v1", &Method::GET, path)
            },
            &["utm_*".to_string()],
        )
    }

    #[test]
    fn query_order_and_ignored_params() {
        assert_eq!(key("/a", Some("x=1&y=2")), key("/a", Some("y=2&x=1")));
        assert_eq!(key("/a", Some("x=1&utm_medium=z")), key("/a", Some("x=1")));
        assert_ne!(key("/a", Some("x=1&x=2")), key("/a", Some("x=2&x=1")));
        assert_ne!(key("/a", Some("x")), key("/a", Some("x=")));
        assert_eq!(key("/a", None), key("/a", Some("")));
        assert_eq!(
            normalized_url("/a", Some("b=2&a=1&utm_x=3"), &["utm_*".into()], None),
            "/a?a=1&b=2"
        );
    }

    #[test]
    fn the_fast_query_path_agrees_with_the_general_one() {
        // Escaped (general path) and plain (fast path) spellings of one query.
        assert_eq!(
            key("/a", Some("b=2&a=1&a=0")),
            key("/a", Some("b=2&%61=1&a=0"))
        );
        let many: Vec<String> = (0..20).map(|i| format!("p{i}={i}")).collect();
        let shuffled: Vec<String> = many.iter().rev().cloned().collect();
        assert_eq!(
            key("/a", Some(&many.join("&"))),
            key("/a", Some(&shuffled.join("&")))
        );
    }

    #[test]
    fn components_cannot_be_shifted() {
        // A path that contains what would be a query must not collide with the query.
        assert_ne!(key("/a?x=1", None), key("/a", Some("x=1")));
        assert_ne!(key("/a", Some("b=c&d")), key("/a", Some("b=c%26d")));
        let m = Method::GET;
        let a = CacheKey::primary(&KeyInput::new("v1x", &m, "/a"), &[]);
        let b = CacheKey::primary(&KeyInput::new("v1", &m, "x/a"), &[]);
        assert_ne!(a, b);
    }

    #[test]
    fn users_are_keyed_and_sources_separate() {
        let users = Users::new(
            vec![
                UserSource::Header(HeaderName::from_static("x-user-id")),
                UserSource::Cookie("session".into()),
            ],
            b"s1",
        );
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=b; session=42".parse().unwrap());
        let by_cookie = users.identify(&h).unwrap();
        let mut h2 = HeaderMap::new();
        h2.insert("x-user-id", "42".parse().unwrap());
        let by_header = users.identify(&h2).unwrap();
        assert_ne!(
            by_cookie, by_header,
            "a cookie must not impersonate a header identity"
        );
        assert_eq!(users.hash_identity("42"), vec![by_header, by_cookie]);
        let other_secret = Users::new(
            vec![UserSource::Header(HeaderName::from_static("x-user-id"))],
            b"s2",
        );
        assert_ne!(other_secret.identify(&h2).unwrap(), by_header);
    }

    #[test]
    fn vary_values_normalised() {
        let mut a = HeaderMap::new();
        a.insert("accept-language", "EN, fr ".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("accept-language", "en,fr".parse().unwrap());
        let mut c = HeaderMap::new();
        c.insert("accept-language", "fr,en".parse().unwrap());
        let name = HeaderName::from_static("accept-language");
        let k = key("/a", None);
        let v = |h: &HeaderMap| k.variant(std::slice::from_ref(&name), h);
        assert_eq!(v(&a), v(&b));
        // The order of preference is the client's: an origin may pick the first.
        assert_ne!(v(&b), v(&c));
        assert_ne!(
            k.variant(std::slice::from_ref(&name), &a),
            k.variant(std::slice::from_ref(&name), &HeaderMap::new())
        );
    }

    #[test]
    fn body_hash_is_exact_about_numbers_and_duplicates() {
        let j = Some("application/json");
        assert_eq!(
            canonical_json(br#"{ "b" : [1, 2.50], "a":{"y":1,"x":"s"} }"#).unwrap(),
            br#"{"a":{"x":"s","y":1},"b":[1,2.50]}"#
        );
        assert_ne!(
            BodyHash::of(j, b"[18446744073709551616]"),
            BodyHash::of(j, b"[18446744073709551617]")
        );
        assert_ne!(BodyHash::of(j, b"[1.0]"), BodyHash::of(j, b"[1.00]"));
        // Duplicate keys are ambiguous: hashed raw, so they never share a key with the
        // object some parser would read them as.
        assert!(canonical_json(br#"{"q":"evil","q":"benign"}"#).is_none());
        assert_ne!(
            BodyHash::of(j, br#"{"q":"evil","q":"benign"}"#),
            BodyHash::of(j, br#"{"q":"benign"}"#)
        );
        assert_ne!(
            BodyHash::of(Some("text/plain"), b"{}"),
            BodyHash::of(j, b"{}")
        );
    }

    #[test]
    fn vary_values_keep_case_outside_negotiation_headers() {
        let name = HeaderName::from_static("x-tenant");
        let mut a = HeaderMap::new();
        a.insert("x-tenant", "Acme".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("x-tenant", "acme".parse().unwrap());
        assert_ne!(vary_value(&a, &name), vary_value(&b, &name));
    }

    #[test]
    fn host_is_part_of_the_key_when_given() {
        let m = Method::GET;
        let a = CacheKey::primary(
            &KeyInput {
                host: Some("a.example"),
                ..KeyInput::new("v1", &m, "/")
            },
            &[],
        );
        let b = CacheKey::primary(
            &KeyInput {
                host: Some("B.example"),
                ..KeyInput::new("v1", &m, "/")
            },
            &[],
        );
        let b2 = CacheKey::primary(
            &KeyInput {
                host: Some("b.example"),
                ..KeyInput::new("v1", &m, "/")
            },
            &[],
        );
        assert_ne!(a, b);
        assert_eq!(b, b2);
    }

    #[test]
    fn percent_normalisation() {
        assert_eq!(normalize_percent("%7e%"), "~%25");
        assert_eq!(normalize_percent("%%361dmin"), "%2561dmin");
        assert_eq!(normalize_percent("%4"), "%254");
        assert_eq!(normalize_percent("%e2%82%ac"), "%E2%82%AC");
        assert_eq!(normalize_percent("%zz"), "%25zz");
    }
}

//! The trust boundary: what a client's request may carry past larder.
//!
//! Clients are untrusted; upstreams and configured proxies are trusted. Before a request is
//! routed, keyed or forwarded, [`admit`]:
//! - refuses a body on `GET`/`HEAD` (an origin that ignores it would read it as the next
//!   request on a pooled connection), and an HTTP/2 `host` that disagrees with `:authority`;
//! - makes the `Host` field the request target's authority when the target has one (RFC
//!   9112 §3.2.2), so the key and what is forwarded come from one value;
//! - removes hop-by-hop fields and every field `Connection` names (RFC 9110 §7.6.1), so a
//!   variant is never keyed by a header the origin did not receive;
//! - removes forwarding fields (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) unless the
//!   peer is a configured proxy, and request-rewriting fields (`X-Original-URL`,
//!   `X-Rewrite-URL`, `X-HTTP-Method-Override`, …) always;
//! - normalises the target: unreserved percent-escapes decoded, a stray `%` escaped, dot
//!   segments removed (RFC 3986 §6.2.2), so rules, keys and the upstream see one path.
//!
//! ```
//! use larder::semantics::hygiene::{admit, Admitted};
//! let mut req = http::Request::get("/a/./b/../c%7e?x=%41")
//!     .header("connection", "x-lang")
//!     .header("x-lang", "fr")
//!     .header("x-forwarded-host", "evil.test")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())
//!     .unwrap();
//! assert!(matches!(admit(&mut req, false), Ok(Admitted { upgrade: false })));
//! assert_eq!(req.uri(), "/a/c~?x=A");
//! assert!(req.headers().is_empty());
//! ```

use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body::Body;

use crate::semantics::uri::normalize_percent;

/// The hop-by-hop fields (RFC 9110 §7.6.1), never stored or forwarded.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    http::header::PROXY_AUTHORIZATION,
];

/// Forwarding fields: kept only from configured proxies (and then part of the key).
pub const FORWARDING: [HeaderName; 5] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// The forwarding fields that can change an answer, so a variant is keyed by them.
pub const FORWARDING_KEYED: [HeaderName; 3] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// Fields some frameworks obey to rewrite the method or target: never from a client.
pub const REWRITING: [HeaderName; 5] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Why a request is refused before anything else sees it (answered `400`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A `GET` or `HEAD` with a body.
    BodyOnSafeMethod,
    /// HTTP/2 `host` and `:authority` name different hosts.
    HostMismatch,
    /// The request target could not be normalised.
    BadTarget,
}

impl Refused {
    /// The short answer body.
    pub fn message(self) -> &'static str {
        match self {
            Refused::BodyOnSafeMethod => "a GET or HEAD request must not carry a body\n",
            Refused::HostMismatch => "the host header and :authority disagree\n",
            Refused::BadTarget => "bad request target\n",
        }
    }
}

/// What admission learned about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The client asked for a protocol upgrade (the fields asking for it are removed).
    pub upgrade: bool,
}

/// Whether the request declares or may carry a body.
fn carries_body<B: Body>(req: &Request<B>) -> bool {
    let declared = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    declared || !req.body().is_end_stream()
}

/// Checks and cleans a request at the trust boundary; see the module docs.
/// `trusted_peer`: the request comes from a configured proxy.
pub fn admit<B: Body>(req: &mut Request<B>, trusted_peer: bool) -> Result<Admitted, Refused> {
    if matches!(*req.method(), Method::GET | Method::HEAD) && carries_body(req) {
        return Err(Refused::BodyOnSafeMethod);
    }
    if let Some(authority) = req.uri().authority() {
        let host = req.headers().get(HOST);
        if req.version() == Version::HTTP_2
            && host.is_some_and(|h| {
                !h.as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
            })
        {
            return Err(Refused::HostMismatch);
        }
        if host.is_none_or(|h| h.as_bytes() != authority.as_str().as_bytes()) {
            let value =
                HeaderValue::from_str(authority.as_str()).map_err(|_| Refused::BadTarget)?;
            req.headers_mut().insert(HOST, value);
        }
    }
    let upgrade = clean_fields(req.headers_mut(), trusted_peer);
    normalize_target(req)?;
    Ok(Admitted { upgrade })
}

fn names_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        || headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| list_has(v.as_bytes(), b"upgrade"))
}

fn list_has(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop, untrusted forwarding and rewriting fields in one pass over the
/// names (a request usually has none, and then nothing is looked up twice). Returns
/// whether the request asked for an upgrade.
fn clean_fields(headers: &mut HeaderMap, trusted_peer: bool) -> bool {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let drop = HOP_BY_HOP.contains(name)
            || REWRITING.contains(name)
            || (!trusted_peer && FORWARDING.contains(name));
        if drop {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return false;
    }
    let upgrade = names_upgrade(headers);
    strip_hop_by_hop(headers);
    for name in doomed {
        headers.remove(name);
    }
    upgrade
}

/// Removes hop-by-hop fields and those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    headers.remove(http::header::PROXY_AUTHENTICATE);
}

/// Decodes unreserved percent-escapes, escapes stray `%`s and removes dot segments in the
/// request target, so the key, the rule match and what the upstream receives agree.
fn normalize_target<B>(req: &mut Request<B>) -> Result<(), Refused> {
    let uri = req.uri();
    let path = uri.path();
    let escaped = path.contains('%') || uri.query().is_some_and(|q| q.contains('%'));
    let dotted = has_dot_segment(path);
    if !escaped && !dotted {
        return Ok(());
    }
    let decoded = normalize_percent(path);
    let path = remove_dot_segments(&decoded);
    let target = match uri.query() {
        Some(q) => format!("{path}?{}", normalize_percent(q)),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| Refused::BadTarget)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Refused::BadTarget)?;
    Ok(())
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments dropped, `..` removes the one before
/// (never above the root).
///
/// ```
/// use larder::semantics::hygiene::remove_dot_segments;
/// assert_eq!(remove_dot_segments("/a/b/../c/./d"), "/a/c/d");
/// assert_eq!(remove_dot_segments("/../../x"), "/x");
/// assert_eq!(remove_dot_segments("/a/.."), "/");
/// assert_eq!(remove_dot_segments("/a/b/."), "/a/b/");
/// ```
pub fn remove_dot_segments(path: &str) -> String {
    if !has_dot_segment(path) {
        return path.to_string();
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a directory: keep the final '/'.
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// An address range (`10.0.0.0/8`, `::1`, `192.168.1.7`), for `proxy.trusted_proxies`.
///
/// ```
/// use larder::semantics::hygiene::Cidr;
/// let net: Cidr = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("::1".parse::<Cidr>().unwrap().contains("::1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or range such as \"10.0.0.0/8\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    fn req(method: Method, uri: &str) -> Request<Empty<Bytes>> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Empty::new())
            .unwrap()
    }

    #[test]
    fn bodies_on_get_and_head_are_refused() {
        let mut r = Request::get("/a")
            .body(Full::new(Bytes::from_static(b"GET /x HTTP/1.1\r\n\r\n")))
            .unwrap();
        assert_eq!(admit(&mut r, false), Err(Refused::BodyOnSafeMethod));
        let mut r = req(Method::HEAD, "/a");
        r.headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(admit(&mut r, false), Err(Refused::BodyOnSafeMethod));
        let mut r = req(Method::GET, "/a");
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(admit(&mut r, false).is_ok());
        let mut r = Request::post("/a")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert!(admit(&mut r, false).is_ok());
    }

    #[test]
    fn the_target_authority_wins_over_host() {
        let mut r = req(Method::GET, "http://victim.test/x");
        r.headers_mut()
            .insert(HOST, HeaderValue::from_static("evil.test"));
        admit(&mut r, false).unwrap();
        assert_eq!(r.headers()[HOST], "victim.test");
        let mut r = req(Method::GET, "http://victim.test/x");
        *r.version_mut() = Version::HTTP_2;
        r.headers_mut()
            .insert(HOST, HeaderValue::from_static("evil.test"));
        assert_eq!(admit(&mut r, false), Err(Refused::HostMismatch));
    }

    #[test]
    fn forwarding_fields_only_from_trusted_peers() {
        let mk = || {
            let mut r = req(Method::GET, "/x");
            for n in FORWARDING.iter().chain(REWRITING.iter()) {
                r.headers_mut()
                    .insert(n.clone(), HeaderValue::from_static("v"));
            }
            r
        };
        let mut r = mk();
        admit(&mut r, false).unwrap();
        assert!(r.headers().is_empty(), "{:?}", r.headers());
        let mut r = mk();
        admit(&mut r, true).unwrap();
        assert_eq!(r.headers().len(), FORWARDING.len());
    }

    #[test]
    fn upgrade_is_noticed_before_its_fields_go() {
        let mut r = req(Method::GET, "/ws");
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        r.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(admit(&mut r, false), Ok(Admitted { upgrade: true }));
        assert!(r.headers().is_empty());
    }

    #[test]
    fn dot_segments_and_escapes() {
        for (given, want) in [
            ("/u/static/%2e%2e/jobs/1", "/u/jobs/1"),
            ("/u/static/..%2fjobs/1", "/u/static/..%2Fjobs/1"),
            ("/%%361dmin", "/%2561dmin"),
            ("/a/./b", "/a/b"),
        ] {
            let mut r = req(Method::GET, given);
            admit(&mut r, false).unwrap();
            assert_eq!(r.uri().path(), want, "{given}");
        }
    }
}

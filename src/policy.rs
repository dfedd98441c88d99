//! HTTP caching rules in one place (RFC 9111): `Cache-Control` directives, freshness and
//! age, and whether a response may be stored by this shared cache.
//!
//! ```
//! use larder::policy::Directives;
//! let headers: Vec<http::HeaderValue> = vec!["public, max-age=60, s-maxage=30".parse().unwrap()];
//! let d = Directives::parse(headers.iter());
//! assert_eq!(d.s_maxage, Some(30));
//! assert!(d.public && !d.no_store);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderName;
use http::header::{
    HeaderMap, HeaderValue, AGE, AUTHORIZATION, CACHE_CONTROL, DATE, ETAG, EXPIRES, LAST_MODIFIED,
    SET_COOKIE, VARY,
};
use http::{Method, StatusCode};

use crate::rules::{Rule, TtlMode};
use crate::status::NoCacheReason;

/// The largest delta-seconds value (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// Parsed `Cache-Control` directives (request or response).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age` (request or response).
    pub max_age: Option<u64>,
    /// `s-maxage` (response).
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names).
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `immutable`.
    pub immutable: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// `max-stale` (request); `Some(DELTA_MAX)` when given without a value.
    pub max_stale: Option<u64>,
    /// `min-fresh` (request).
    pub min_fresh: Option<u64>,
    /// Whether any directive was present.
    pub present: bool,
}

fn parse_delta(v: Option<&str>) -> Option<u64> {
    let v = v?.trim().trim_matches('"');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().map_or(DELTA_MAX, |n| n.min(DELTA_MAX)))
}

impl Directives {
    /// Parses every value of a `Cache-Control`-like field. Unknown directives are ignored;
    /// an invalid `max-age`/`s-maxage` counts as 0 (stale), as RFC 9111 §4.2.1 encourages;
    /// the first occurrence of a repeated directive wins.
    pub fn parse<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Directives {
        let mut d = Directives::default();
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            for item in split_list(text) {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                d.present = true;
                let (name, arg) = match item.find('=') {
                    Some(i) => (item[..i].trim(), Some(item[i + 1..].trim())),
                    None => (item, None),
                };
                let name = name.to_ascii_lowercase();
                match name.as_str() {
                    "max-age" if d.max_age.is_none() => {
                        d.max_age = Some(parse_delta(arg).unwrap_or(0))
                    }
                    "s-maxage" if d.s_maxage.is_none() => {
                        d.s_maxage = Some(parse_delta(arg).unwrap_or(0))
                    }
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "no-transform" => d.no_transform = true,
                    "immutable" => d.immutable = true,
                    "must-understand" => d.must_understand = true,
                    "only-if-cached" => d.only_if_cached = true,
                    "stale-while-revalidate" if d.stale_while_revalidate.is_none() => {
                        d.stale_while_revalidate = parse_delta(arg)
                    }
                    "stale-if-error" if d.stale_if_error.is_none() => {
                        d.stale_if_error = parse_delta(arg)
                    }
                    "max-stale" if d.max_stale.is_none() => {
                        d.max_stale = match arg {
                            None => Some(DELTA_MAX),
                            Some(a) => parse_delta(Some(a)),
                        };
                    }
                    "min-fresh" if d.min_fresh.is_none() => d.min_fresh = parse_delta(arg),
                    _ => {}
                }
            }
        }
        d
    }

    /// Parses the `Cache-Control` fields of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Directives {
        Directives::parse(headers.get_all(CACHE_CONTROL).iter())
    }
}

/// The directives that govern this cache (RFC 9213 §2.1): the first targeted field (in
/// `targeted` order) with a valid, non-empty value, else `Cache-Control`. The second value
/// says whether a targeted field was used (then `Expires` is ignored too).
pub fn cache_directives(headers: &HeaderMap, targeted: &[HeaderName]) -> (Directives, bool) {
    for name in targeted {
        let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
        if values.is_empty() {
            continue;
        }
        let joined: Option<Vec<&str>> = values.iter().map(|v| v.to_str().ok()).collect();
        let Some(joined) = joined else { continue };
        let text = joined.join(", ");
        let valid = if name.as_str() == "surrogate-control" {
            // Surrogate-Control (W3C Edge Architecture) uses Cache-Control's syntax.
            true
        } else {
            valid_sf_dictionary(&text) && typed_directives(&text)
        };
        if !text.trim().is_empty() && valid {
            return (Directives::parse(values.into_iter()), true);
        }
    }
    (Directives::from_headers(headers), false)
}

/// Whether the known directives of a targeted field have the types RFC 9213 gives them:
/// integers for the delta-seconds ones, booleans (or a string list for `no-cache` and
/// `private`) for the others. A value of the wrong type invalidates the whole field.
fn typed_directives(text: &str) -> bool {
    split_list(text).all(|member| {
        let member = member.trim();
        let (key, value) = match member.split_once('=') {
            Some((k, v)) => (k, Some(v.split(';').next().unwrap_or("").trim())),
            None => (member.split(';').next().unwrap_or(""), None),
        };
        let integer = |v: Option<&str>| {
            v.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        };
        let boolean = |v: Option<&str>| v.is_none_or(|v| v == "?1" || v == "?0");
        match key {
            "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error" => integer(value),
            "no-cache" | "private" => boolean(value) || value.is_some_and(|v| v.starts_with('"')),
            "no-store" | "public" | "must-revalidate" | "proxy-revalidate" | "no-transform"
            | "immutable" => boolean(value),
            _ => true,
        }
    })
}

/// Whether `text` is a valid Structured Fields Dictionary (RFC 8941 §3.2), as targeted
/// cache-control fields must be; an invalid one is ignored as a whole.
pub fn valid_sf_dictionary(text: &str) -> bool {
    split_list(text).all(|member| valid_sf_member(member.trim()))
}

fn valid_sf_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'*')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
}

fn valid_sf_bare_item(v: &str) -> bool {
    let bytes = v.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'"') => {
            // A quoted string of printable ASCII with only \" and \\ escapes.
            let inner = &bytes[1..];
            let mut escaped = false;
            for (i, &c) in inner.iter().enumerate() {
                if escaped {
                    if c != b'"' && c != b'\\' {
                        return false;
                    }
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    return i == inner.len() - 1;
                } else if !(0x20..0x7f).contains(&c) {
                    return false;
                }
            }
            false
        }
        Some(b'?') => v == "?0" || v == "?1",
        Some(b':') => {
            v.len() >= 2
                && v.ends_with(':')
                && v[1..v.len() - 1]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let digits = v.strip_prefix('-').unwrap_or(v);
            let (int, frac) = match digits.split_once('.') {
                Some((i, f)) => (i, Some(f)),
                None => (digits, None),
            };
            !int.is_empty()
                && int.bytes().all(|c| c.is_ascii_digit())
                && match frac {
                    None => int.len() <= 15,
                    Some(f) => {
                        int.len() <= 12
                            && !f.is_empty()
                            && f.len() <= 3
                            && f.bytes().all(|c| c.is_ascii_digit())
                    }
                }
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)),
        _ => false,
    }
}

fn valid_sf_params(mut rest: &str) -> bool {
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let end = r.find(';').unwrap_or(r.len());
        let (param, next) = r.split_at(end);
        let ok = match param.split_once('=') {
            Some((k, v)) => valid_sf_key(k) && valid_sf_bare_item(v),
            None => valid_sf_key(param),
        };
        if !ok {
            return false;
        }
        rest = next;
    }
    rest.is_empty()
}

fn valid_sf_member(member: &str) -> bool {
    let key_end = member.find(['=', ';']).unwrap_or(member.len());
    let (key, rest) = member.split_at(key_end);
    if !valid_sf_key(key) {
        return false;
    }
    match rest.strip_prefix('=') {
        None => valid_sf_params(rest),
        Some(value) if value.starts_with('(') => value.contains(')'),
        Some(value) => {
            // The item, then its parameters (a ';' inside a string is part of the string).
            let item_end = if let Some(rest) = value.strip_prefix('"') {
                rest.find('"').map_or(value.len(), |i| i + 2)
            } else {
                value.find(';').unwrap_or(value.len())
            };
            let (item, params) = value.split_at(item_end.min(value.len()));
            valid_sf_bare_item(item) && valid_sf_params(params)
        }
    }
}

/// Splits a comma-separated list, keeping commas inside quoted strings.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                cuts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&text[start..]);
    cuts.into_iter()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses an HTTP date (IMF-fixdate, RFC 850 or asctime) to seconds since the epoch.
///
/// The three formats of RFC 9110 §5.6.7 exactly: one space where the grammar has one,
/// two-digit days and hours, `GMT`. Names may be in any case and the weekday is not
/// checked against the date; anything else (another zone, a missing comma, doubled
/// spaces) is invalid, which for `Expires` means already expired. An RFC 850 two-digit
/// year more than 50 years ahead is taken as the last century's.
///
/// ```
/// use http::HeaderValue;
/// let d = |s: &'static str| larder::policy::parse_date(&HeaderValue::from_static(s));
/// assert_eq!(d("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
/// assert_eq!(d("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784111777));
/// assert_eq!(d("Sun Nov  6 08:49:37 1994"), Some(784111777));
/// assert_eq!(d("SUN, 06 NOV 1994 08:49:37 gmt"), Some(784111777));
/// assert_eq!(d("Sun, 06 Nov 1994 08:49:37 UTC"), None);
/// assert_eq!(d("Sun 06 Nov 1994 08:49:37 GMT"), None);
/// assert_eq!(d("0"), None);
/// ```
pub fn parse_date(v: &HeaderValue) -> Option<u64> {
    let s = v.as_bytes();
    imf_fixdate(s)
        .or_else(|| rfc850_date(s))
        .or_else(|| asctime_date(s))
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &[u8]) -> Option<u64> {
    if s.len() != 29 || &s[3..5] != b", " || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' {
        return None;
    }
    if s[25] != b' ' || !s[26..].eq_ignore_ascii_case(b"GMT") || !short_weekday(&s[..3]) {
        return None;
    }
    let (day, month, year) = (digits(&s[5..7])?, month(&s[8..11])?, digits(&s[12..16])?);
    date_secs(year, month, day, clock(&s[17..25])?)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850_date(s: &[u8]) -> Option<u64> {
    let comma = s.iter().position(|&b| b == b',')?;
    let (name, r) = (&s[..comma], s.get(comma + 1..)?);
    if !WEEKDAYS
        .iter()
        .any(|w| name.eq_ignore_ascii_case(w.as_bytes()))
    {
        return None;
    }
    if r.len() != 23 || r[0] != b' ' || r[3] != b'-' || r[7] != b'-' || r[10] != b' ' {
        return None;
    }
    if r[19] != b' ' || !r[20..].eq_ignore_ascii_case(b"GMT") {
        return None;
    }
    let (day, month, yy) = (digits(&r[1..3])?, month(&r[4..7])?, digits(&r[8..10])?);
    date_secs(full_year(yy), month, day, clock(&r[11..19])?)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime_date(s: &[u8]) -> Option<u64> {
    if s.len() != 24 || s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    if !short_weekday(&s[..3]) {
        return None;
    }
    let day = match s[8] {
        b' ' => digits(&s[9..10])?,
        _ => digits(&s[8..10])?,
    };
    date_secs(
        digits(&s[20..24])?,
        month(&s[4..7])?,
        day,
        clock(&s[11..19])?,
    )
}

fn short_weekday(b: &[u8]) -> bool {
    WEEKDAYS
        .iter()
        .any(|w| b.eq_ignore_ascii_case(&w.as_bytes()[..3]))
}

fn month(b: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    MONTHS
        .iter()
        .position(|m| b.eq_ignore_ascii_case(m))
        .map(|i| i as u64 + 1)
}

/// Exactly these ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// `08:49:37` as seconds into the day.
fn clock(b: &[u8]) -> Option<u64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..])?);
    (h <= 23 && m <= 59 && s <= 60).then_some(h * 3600 + m * 60 + s)
}

/// An RFC 850 two-digit year: this century's, unless that is more than 50 years ahead.
fn full_year(yy: u64) -> u64 {
    let this_year = 1970 + now_ms() / 1000 / 31_556_952;
    let year = this_year / 100 * 100 + yy;
    if year > this_year + 50 {
        year - 100
    } else {
        year
    }
}

fn date_secs(year: u64, month: u64, day: u64, clock: u64) -> Option<u64> {
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + clock)
}

/// Days from 1970-01-01 to a (proleptic Gregorian) date, for years from 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds since the epoch as an IMF-fixdate.
pub fn format_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Statuses that are heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// How long a stored response stays fresh and what may be done with it once stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime in milliseconds.
    pub lifetime_ms: u64,
    /// Corrected initial age in milliseconds (RFC 9111 §4.2.3).
    pub initial_age_ms: u64,
    /// Must be revalidated before every use (`no-cache`).
    pub no_cache: bool,
    /// Must not be served stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// `stale-while-revalidate` window in seconds.
    pub stale_while_revalidate: u32,
    /// `stale-if-error` window in seconds.
    pub stale_if_error: u32,
}

/// Everything the store decision needs to know.
pub struct StoreInput<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request headers.
    pub request: &'a HeaderMap,
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub response: &'a HeaderMap,
    /// The matched rule, if any.
    pub rule: Option<&'a Rule>,
    /// The request carries a user identity (a configured user source); it is treated like
    /// `Authorization` (RFC 9111 §3.5).
    pub credentials: bool,
    /// Targeted cache-control fields for this cache, most specific first (RFC 9213).
    pub targeted: &'a [HeaderName],
    /// The cap on heuristic freshness, when heuristic freshness is enabled.
    pub heuristic: Option<Duration>,
    /// Statuses a rule stores.
    pub statuses: &'a [u16],
    /// Ttl of a matched rule without one, when the origin gives no freshness.
    pub default_ttl: Duration,
    /// Honour the origin's freshness where the rule sets no ttl.
    pub respect_origin: bool,
    /// When the request was sent upstream (ms since epoch).
    pub request_time: u64,
    /// When the response arrived (ms since epoch).
    pub response_time: u64,
}

/// The corrected initial age of a response in milliseconds (RFC 9111 §4.2.3).
pub fn initial_age_ms(headers: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    // A list-valued Age (invalid, but seen) counts by its first member.
    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| parse_delta(s.split(',').next()))
        .unwrap_or(0)
        .saturating_mul(1000);
    let date = headers.get(DATE).and_then(parse_date).map(|s| s * 1000);
    let apparent = date.map_or(0, |d| response_time.saturating_sub(d));
    let response_delay = response_time.saturating_sub(request_time);
    apparent.max(age_value.saturating_add(response_delay))
}

/// The origin's explicit freshness lifetime for a shared cache, in seconds:
/// `s-maxage` over `max-age` over `Expires` minus `Date`.
pub fn explicit_lifetime(d: &Directives, headers: &HeaderMap, response_time: u64) -> Option<u64> {
    if let Some(s) = d.s_maxage {
        return Some(s);
    }
    if let Some(m) = d.max_age {
        return Some(m);
    }
    expires_lifetime(headers, response_time)
}

/// `Expires` minus `Date` in seconds (0 for an invalid `Expires`).
fn expires_lifetime(headers: &HeaderMap, response_time: u64) -> Option<u64> {
    let mut all = headers.get_all(EXPIRES).iter();
    let expires = all.next()?;
    // An invalid Expires (e.g. "0"), or more than one, means already expired.
    let Some(exp) = parse_date(expires).filter(|_| all.next().is_none()) else {
        return Some(0);
    };
    let date = headers
        .get(DATE)
        .and_then(parse_date)
        .unwrap_or(response_time / 1000);
    Some(exp.saturating_sub(date))
}

/// Whether the response carries a validator.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED)
}

/// Whether the `Vary` of a response contains `*`.
pub fn vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|s| s.trim() == "*")
}

/// Decides whether this shared cache may store a response, and for how long it is fresh.
pub fn decide(input: &StoreInput<'_>) -> Result<Freshness, NoCacheReason> {
    let (d, targeted) = cache_directives(input.response, input.targeted);
    let rule = input.rule;
    let per_user = rule.is_some_and(|r| r.per_user);
    let code = input.status.as_u16();
    match rule {
        Some(_) if !input.statuses.contains(&code) => return Err(NoCacheReason::Status),
        None if matches!(code, 206 | 304) || code < 200 => return Err(NoCacheReason::Status),
        _ => {}
    }
    // must-understand: a cache that understands the status ignores no-store (RFC 9111
    // §5.2.2.3); one that does not must not store.
    let understood = matches!(
        code,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    );
    if d.must_understand && !understood {
        return Err(NoCacheReason::Status);
    }
    if d.no_store && !(d.must_understand && understood) {
        return Err(NoCacheReason::NoStore);
    }
    if d.private && !per_user {
        return Err(NoCacheReason::Private);
    }
    if input.response.contains_key(SET_COOKIE) && !rule.is_some_and(|r| r.allow_set_cookie) {
        return Err(NoCacheReason::SetCookie);
    }
    if vary_star(input.response) {
        return Err(NoCacheReason::VaryStar);
    }
    // A shared cache stores answers to requests with credentials only when the response
    // says it may be shared (RFC 9111 §3.5). Any configured user identity (a session
    // cookie, an `X-User-Id`) counts as a credential like `Authorization`: a path that
    // looks static may be an alias of a per-user endpoint (cache deception). Only a
    // `per_user` rule (keyed by the user) or a `shared` rule (declared the same for every
    // caller) stores such answers without the origin's say-so.
    let credentials = input.request.contains_key(AUTHORIZATION) || input.credentials;
    let shareable = d.public || d.s_maxage.is_some() || d.must_revalidate;
    if credentials && !per_user && !shareable && !rule.is_some_and(|r| r.shared) {
        return Err(NoCacheReason::Authorization);
    }
    let initial_age_ms = initial_age_ms(input.response, input.request_time, input.response_time);
    let origin = if d.no_cache {
        Some(0)
    } else if targeted {
        // A targeted field replaces Cache-Control and Expires for this cache.
        d.s_maxage.or(d.max_age)
    } else {
        explicit_lifetime(&d, input.response, input.response_time)
    };
    let secs = |d: Duration| d.as_secs().min(u32::MAX as u64) as u32;
    let mut f = Freshness {
        lifetime_ms: 0,
        initial_age_ms,
        no_cache: false,
        must_revalidate: d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some(),
        stale_while_revalidate: rule
            .and_then(|r| r.stale_while_revalidate)
            .map(secs)
            .or(d
                .stale_while_revalidate
                .map(|s| s.min(u32::MAX as u64) as u32))
            .unwrap_or(0),
        stale_if_error: rule
            .and_then(|r| r.stale_if_error)
            .map(secs)
            .or(d.stale_if_error.map(|s| s.min(u32::MAX as u64) as u32))
            .unwrap_or(0),
    };
    match rule {
        Some(r) => {
            let origin_ms = if input.respect_origin {
                origin.map(|s| s * 1000)
            } else {
                None
            };
            f.lifetime_ms = match (r.ttl, r.ttl_mode) {
                // The rule decides: it lives `ttl` here, whatever age it arrived with.
                (Some(ttl), TtlMode::Override) => initial_age_ms + ttl.as_millis() as u64,
                (Some(ttl), TtlMode::Cap) => {
                    let o =
                        origin_ms.unwrap_or(initial_age_ms + input.default_ttl.as_millis() as u64);
                    if d.no_cache && input.respect_origin {
                        f.no_cache = true;
                    }
                    o.min(initial_age_ms + ttl.as_millis() as u64)
                }
                (None, _) => match origin_ms {
                    Some(o) => {
                        f.no_cache = d.no_cache;
                        o
                    }
                    None => initial_age_ms + input.default_ttl.as_millis() as u64,
                },
            };
            if f.no_cache && !has_validator(input.response) {
                return Err(NoCacheReason::NoCache);
            }
        }
        None => match origin {
            Some(s) => {
                f.lifetime_ms = s * 1000;
                f.no_cache = d.no_cache;
                // Stale on arrival is only worth keeping if it can be revalidated or
                // served stale.
                let usable_stale = !f.must_revalidate
                    && !f.no_cache
                    && (f.stale_while_revalidate > 0 || f.stale_if_error > 0);
                if f.lifetime_ms <= initial_age_ms
                    && !has_validator(input.response)
                    && !usable_stale
                {
                    return Err(NoCacheReason::NoFreshness);
                }
            }
            None => {
                if let Some(h) = heuristic_lifetime(input, &d) {
                    f.lifetime_ms = h;
                } else if has_validator(input.response) {
                    // Stored stale: every use is revalidated with the validator.
                    f.lifetime_ms = 0;
                } else {
                    return Err(NoCacheReason::NoFreshness);
                }
            }
        },
    }
    Ok(f)
}

/// Heuristic freshness (RFC 9111 §4.2.2): 10% of the time since `Last-Modified`, capped,
/// for heuristically cacheable statuses (or `public` responses), when enabled.
fn heuristic_lifetime(input: &StoreInput<'_>, d: &Directives) -> Option<u64> {
    let cap = input.heuristic?;
    if !(heuristically_cacheable(input.status) || d.public) {
        return None;
    }
    let lm = input.response.get(LAST_MODIFIED).and_then(parse_date)? * 1000;
    let date = input
        .response
        .get(DATE)
        .and_then(parse_date)
        .map_or(input.response_time, |d| d * 1000);
    let lifetime = date.saturating_sub(lm) / 10;
    (lifetime > 0).then(|| lifetime.min(cap.as_millis() as u64))
}

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
        if !headers.contains_key(CACHE_CONTROL) && !headers.contains_key(http::header::PRAGMA) {
            return RequestPolicy::default();
        }
        let d = Directives::from_headers(headers);
        let pragma_no_cache = !d.present
            && headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
                });
        RequestPolicy {
            no_store: d.no_store,
            revalidate: d.no_cache || pragma_no_cache,
            only_if_cached: d.only_if_cached,
            max_age: d.max_age,
            max_stale: d.max_stale,
            min_fresh: d.min_fresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_follow_the_grammar() {
        let d = |s: &'static str| parse_date(&HeaderValue::from_static(s));
        let aug_2050 = d("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        for same in [
            "THU, 18 AUG 2050 02:01:18 gMT",
            "Thursday, 18-Aug-50 02:01:18 GMT",
            "Thu Aug 18 02:01:18 2050",
        ] {
            assert_eq!(d(same), Some(aug_2050), "{same}");
        }
        assert_eq!(d("Thu Aug  8 02:01:18 2050"), Some(aug_2050 - 10 * 86_400));
        for invalid in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT ",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thx, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT, Fri, 19 Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(d(invalid), None, "{invalid}");
        }
        // Two Expires lines: neither counts.
        let two = hm(&[
            ("expires", "Thu, 18 Aug 2050 02:01:18 GMT"),
            ("expires", "Thu, 18 Aug 2050 02:01:19 GMT"),
        ]);
        assert_eq!(expires_lifetime(&two, now_ms()), Some(0));
    }

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn input<'a>(
        req: &'a HeaderMap,
        resp: &'a HeaderMap,
        rule: Option<&'a Rule>,
    ) -> StoreInput<'a> {
        StoreInput {
            method: &Method::GET,
            request: req,
            status: StatusCode::OK,
            response: resp,
            rule,
            credentials: false,
            targeted: &[],
            heuristic: None,
            statuses: &[200, 203, 204, 300, 301, 404, 410],
            default_ttl: Duration::from_secs(300),
            respect_origin: true,
            request_time: 1_000_000,
            response_time: 1_000_000,
        }
    }

    #[test]
    fn directives_parse() {
        let v: Vec<HeaderValue> = vec![
            "Max-Age=10, no-cache=\"set-cookie, x\"".parse().unwrap(),
            "max-age=99, private".parse().unwrap(),
        ];
        let d = Directives::parse(v.iter());
        assert_eq!(d.max_age, Some(10));
        assert!(d.no_cache && d.private);
        let v: Vec<HeaderValue> = vec!["max-age=abc".parse().unwrap()];
        assert_eq!(Directives::parse(v.iter()).max_age, Some(0));
        let v: Vec<HeaderValue> = vec!["max-age=99999999999999999999".parse().unwrap()];
        assert_eq!(Directives::parse(v.iter()).max_age, Some(DELTA_MAX));
    }

    #[test]
    fn origin_freshness_order() {
        let req = HeaderMap::new();
        let resp = hm(&[("cache-control", "max-age=10, s-maxage=20")]);
        assert_eq!(
            decide(&input(&req, &resp, None)).unwrap().lifetime_ms,
            20_000
        );
        let resp = hm(&[
            ("date", "Thu, 01 Jan 1970 00:16:40 GMT"),
            ("expires", "Thu, 01 Jan 1970 00:17:40 GMT"),
        ]);
        assert_eq!(
            decide(&input(&req, &resp, None)).unwrap().lifetime_ms,
            60_000
        );
        let resp = hm(&[]);
        assert_eq!(
            decide(&input(&req, &resp, None)),
            Err(NoCacheReason::NoFreshness)
        );
        let resp = hm(&[("etag", "\"x\"")]);
        assert_eq!(decide(&input(&req, &resp, None)).unwrap().lifetime_ms, 0);
    }

    #[test]
    fn shared_cache_refusals() {
        let req = HeaderMap::new();
        let rule = Rule::new("r", "/a").unwrap();
        for (cc, reason) in [
            ("no-store", NoCacheReason::NoStore),
            ("private, max-age=9", NoCacheReason::Private),
        ] {
            let resp = hm(&[("cache-control", cc)]);
            assert_eq!(decide(&input(&req, &resp, Some(&rule))), Err(reason));
        }
        let resp = hm(&[("set-cookie", "a=b")]);
        assert_eq!(
            decide(&input(&req, &resp, Some(&rule))),
            Err(NoCacheReason::SetCookie)
        );
        let auth = hm(&[("authorization", "Bearer x")]);
        let resp = hm(&[("cache-control", "max-age=60")]);
        assert_eq!(
            decide(&input(&auth, &resp, None)),
            Err(NoCacheReason::Authorization)
        );
        let resp = hm(&[("cache-control", "public, max-age=60")]);
        assert!(decide(&input(&auth, &resp, None)).is_ok());
        let resp = hm(&[("cache-control", "max-age=60")]);
        let cookie = StoreInput {
            credentials: true,
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&cookie), Err(NoCacheReason::Authorization));
        let cookie_with_rule = StoreInput {
            credentials: true,
            ..input(&req, &resp, Some(&rule))
        };
        assert_eq!(decide(&cookie_with_rule), Err(NoCacheReason::Authorization));
        let mut per_user = rule.clone();
        per_user.per_user = true;
        let resp = hm(&[("cache-control", "private, max-age=60")]);
        assert!(decide(&input(&auth, &resp, Some(&per_user))).is_ok());
        // A token on the request: a rule stores only what it declares `shared`.
        let resp = hm(&[("cache-control", "max-age=60")]);
        assert_eq!(
            decide(&input(&auth, &resp, Some(&rule))),
            Err(NoCacheReason::Authorization)
        );
        let mut shared = rule.clone();
        shared.shared = true;
        assert!(decide(&input(&auth, &resp, Some(&shared))).is_ok());
        // Shared does not override what the origin forbids.
        let resp = hm(&[("cache-control", "private, max-age=60")]);
        assert_eq!(
            decide(&input(&auth, &resp, Some(&shared))),
            Err(NoCacheReason::Private)
        );
    }

    #[test]
    fn rule_ttl_override_and_cap() {
        let req = HeaderMap::new();
        let mut rule = Rule::new("r", "/a").unwrap();
        rule.ttl = Some(Duration::from_secs(60));
        let resp = hm(&[("cache-control", "max-age=5")]);
        assert_eq!(
            decide(&input(&req, &resp, Some(&rule)))
                .unwrap()
                .lifetime_ms,
            60_000
        );
        rule.ttl_mode = TtlMode::Cap;
        assert_eq!(
            decide(&input(&req, &resp, Some(&rule)))
                .unwrap()
                .lifetime_ms,
            5_000
        );
        let resp = hm(&[("cache-control", "max-age=500")]);
        assert_eq!(
            decide(&input(&req, &resp, Some(&rule)))
                .unwrap()
                .lifetime_ms,
            60_000
        );
        rule.ttl = None;
        let resp = hm(&[]);
        assert_eq!(
            decide(&input(&req, &resp, Some(&rule)))
                .unwrap()
                .lifetime_ms,
            300_000
        );
    }

    #[test]
    fn targeted_fields_override_cache_control() {
        let req = HeaderMap::new();
        let targeted = [
            HeaderName::from_static("larder-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ];
        let resp = hm(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=30"),
            ("expires", "0"),
        ]);
        let i = StoreInput {
            targeted: &targeted,
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i).unwrap().lifetime_ms, 30_000);
        let resp = hm(&[
            ("cdn-cache-control", "max-age=30"),
            ("larder-cache-control", "max-age=5"),
        ]);
        let i = StoreInput {
            targeted: &targeted,
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i).unwrap().lifetime_ms, 5_000);
        // An invalid targeted field is ignored as a whole.
        let resp = hm(&[
            ("cache-control", "max-age=7"),
            ("cdn-cache-control", "max-age=30, Bad Key"),
        ]);
        let i = StoreInput {
            targeted: &targeted,
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i).unwrap().lifetime_ms, 7_000);
        let resp = hm(&[("cdn-cache-control", "no-store")]);
        let i = StoreInput {
            targeted: &targeted,
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i), Err(NoCacheReason::NoStore));
    }

    #[test]
    fn structured_field_validation() {
        for ok in [
            "max-age=60",
            "max-age=60, private",
            "no-cache=\"a, b\"",
            "x;a=1;b=?0",
            "s=-1.5",
            "t=tok/en",
            "b=:YWJj:",
            "l=(1 2)",
        ] {
            assert!(valid_sf_dictionary(ok), "{ok}");
        }
        for bad in [
            "Max-Age=60",
            "max-age=",
            "max-age=60 60",
            "a=\"unterminated",
            "a=?2",
            "9x=1",
            "a=1.2345",
        ] {
            assert!(!valid_sf_dictionary(bad), "{bad}");
        }
        assert!(typed_directives("max-age=60, private, no-cache=\"x\""));
        for wrong in ["max-age=\"60\"", "max-age=1.5", "no-store=5", "private=tok"] {
            assert!(!typed_directives(wrong), "{wrong}");
        }
    }

    #[test]
    fn heuristic_freshness_only_when_enabled() {
        let req = HeaderMap::new();
        // Last modified 1000 s before Date: 10% is 100 s.
        let resp = hm(&[
            ("date", "Thu, 01 Jan 1970 00:16:40 GMT"),
            ("last-modified", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ]);
        let i = StoreInput {
            heuristic: Some(Duration::from_secs(3600)),
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i).unwrap().lifetime_ms, 100_000);
        let i = StoreInput {
            heuristic: Some(Duration::from_secs(30)),
            ..input(&req, &resp, None)
        };
        assert_eq!(decide(&i).unwrap().lifetime_ms, 30_000);
        // Disabled: a Last-Modified alone only makes it revalidatable.
        assert_eq!(decide(&input(&req, &resp, None)).unwrap().lifetime_ms, 0);
    }

    #[test]
    fn rule_stale_windows_apply() {
        let req = HeaderMap::new();
        let mut rule = Rule::new("r", "/a").unwrap();
        rule.stale_if_error = Some(Duration::from_secs(600));
        let resp = hm(&[("cache-control", "max-age=5, stale-while-revalidate=9")]);
        let f = decide(&input(&req, &resp, Some(&rule))).unwrap();
        assert_eq!((f.stale_while_revalidate, f.stale_if_error), (9, 600));
    }

    #[test]
    fn age_counts() {
        let resp = hm(&[("age", "30")]);
        assert_eq!(initial_age_ms(&resp, 0, 500), 30_500);
    }
}

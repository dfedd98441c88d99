//! Whether a response may be stored by this shared cache and for how long it is fresh
//! (RFC 9111 §3, §4.2).

use std::time::Duration;

use http::header::{
    HeaderMap, HeaderName, AGE, AUTHORIZATION, DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::{Method, StatusCode};

use super::directives::{cache_directives, parse_delta, Directives};
use crate::rules::{Rule, TtlMode};
use crate::semantics::dates::parse_date;
use crate::semantics::lists::tokens;
use crate::status::NoCacheReason;

/// Statuses that are heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

pub use crate::entry::Freshness;

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

/// The request headers a response varies on, lower-cased and sorted; `Accept-Encoding` is
/// left out when larder negotiates the encoding itself (`keep_accept_encoding` false).
pub fn vary_names(headers: &HeaderMap, keep_accept_encoding: bool) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = tokens(headers, &VARY)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .filter(|n| keep_accept_encoding || n != http::header::ACCEPT_ENCODING)
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// Whether the `Vary` of a response contains `*`.
pub fn vary_star(headers: &HeaderMap) -> bool {
    tokens(headers, &VARY).any(|t| t == "*")
}

/// Decides whether this shared cache may store a response, and for how long it is fresh.
pub fn decide(input: &StoreInput<'_>) -> Result<Freshness, NoCacheReason> {
    let (d, targeted) = cache_directives(input.response, input.targeted);
    if let Some(reason) = refusal(input, &d) {
        return Err(reason);
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
    let rule = input.rule;
    let secs = |d: Duration| d.as_secs().min(u32::MAX as u64) as u32;
    let window = |from_rule: Option<Duration>, from_origin: Option<u64>| {
        from_rule
            .map(secs)
            .or(from_origin.map(|s| s.min(u32::MAX as u64) as u32))
            .unwrap_or(0)
    };
    let mut f = Freshness {
        lifetime_ms: 0,
        initial_age_ms,
        no_cache: false,
        must_revalidate: d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some(),
        stale_while_revalidate: window(
            rule.and_then(|r| r.stale_while_revalidate),
            d.stale_while_revalidate,
        ),
        stale_if_error: window(rule.and_then(|r| r.stale_if_error), d.stale_if_error),
        stale_if_budget: rule.and_then(|r| r.stale_if_budget).map_or(0, secs),
    };
    match rule {
        Some(r) => rule_lifetime(input, r, &d, origin, &mut f)?,
        None => origin_lifetime(input, &d, origin, &mut f)?,
    }
    Ok(f)
}

/// Why a response must not be stored at all, if it must not (RFC 9111 §3, §3.5, §5.2.2).
fn refusal(input: &StoreInput<'_>, d: &Directives) -> Option<NoCacheReason> {
    let rule = input.rule;
    // Keyed by the user (or, for an LLM rule, by the tenant's credential).
    let per_user = rule.is_some_and(|r| r.per_user || r.llm.is_some());
    let code = input.status.as_u16();
    match rule {
        Some(_) if !input.statuses.contains(&code) => return Some(NoCacheReason::Status),
        None if matches!(code, 206 | 304) || code < 200 => return Some(NoCacheReason::Status),
        _ => {}
    }
    // must-understand: a cache that understands the status ignores no-store (RFC 9111
    // §5.2.2.3); one that does not must not store.
    let understood = matches!(
        code,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    );
    if d.must_understand && !understood {
        return Some(NoCacheReason::Status);
    }
    if d.no_store && !(d.must_understand && understood) {
        return Some(NoCacheReason::NoStore);
    }
    if d.private && !per_user {
        return Some(NoCacheReason::Private);
    }
    // An LLM provider's bot-management cookie belongs to one call: never stored, never
    // replayed, no reason to refuse the answer.
    let cookies_ok = rule.is_some_and(|r| r.allow_set_cookie || r.llm.is_some());
    if input.response.contains_key(SET_COOKIE) && !cookies_ok {
        return Some(NoCacheReason::SetCookie);
    }
    if vary_star(input.response) {
        return Some(NoCacheReason::VaryStar);
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
        return Some(NoCacheReason::Authorization);
    }
    None
}

/// The lifetime under a rule: its ttl overrides or caps the origin's (`origin`, seconds).
fn rule_lifetime(
    input: &StoreInput<'_>,
    r: &Rule,
    d: &Directives,
    origin: Option<u64>,
    f: &mut Freshness,
) -> Result<(), NoCacheReason> {
    let initial_age_ms = f.initial_age_ms;
    let origin_ms = if input.respect_origin {
        origin.map(|s| s * 1000)
    } else {
        None
    };
    let default_ms = initial_age_ms + input.default_ttl.as_millis() as u64;
    f.lifetime_ms = match (r.ttl, r.ttl_mode) {
        // The rule decides: it lives `ttl` here, whatever age it arrived with.
        (Some(ttl), TtlMode::Override) => initial_age_ms + ttl.as_millis() as u64,
        (Some(ttl), TtlMode::Cap) => {
            if d.no_cache && input.respect_origin {
                f.no_cache = true;
            }
            origin_ms
                .unwrap_or(default_ms)
                .min(initial_age_ms + ttl.as_millis() as u64)
        }
        (None, _) => match origin_ms {
            Some(o) => {
                f.no_cache = d.no_cache;
                o
            }
            None => default_ms,
        },
    };
    if f.no_cache && !has_validator(input.response) {
        return Err(NoCacheReason::NoCache);
    }
    Ok(())
}

/// The lifetime without a rule: the origin's, heuristic freshness, or none (then only a
/// validator makes it worth storing).
fn origin_lifetime(
    input: &StoreInput<'_>,
    d: &Directives,
    origin: Option<u64>,
    f: &mut Freshness,
) -> Result<(), NoCacheReason> {
    match origin {
        Some(s) => {
            f.lifetime_ms = s * 1000;
            f.no_cache = d.no_cache;
            // Stale on arrival is only worth keeping if it can be revalidated or served
            // stale.
            let usable_stale = !f.must_revalidate
                && !f.no_cache
                && (f.stale_while_revalidate > 0 || f.stale_if_error > 0);
            if f.lifetime_ms <= f.initial_age_ms && !has_validator(input.response) && !usable_stale
            {
                return Err(NoCacheReason::NoFreshness);
            }
        }
        None => {
            if let Some(h) = heuristic_lifetime(input, d) {
                f.lifetime_ms = h;
            } else if has_validator(input.response) {
                // Stored stale: every use is revalidated with the validator.
                f.lifetime_ms = 0;
            } else {
                return Err(NoCacheReason::NoFreshness);
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::now_ms;

    #[test]
    fn two_expires_lines_mean_expired() {
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
        let decide_with = |pairs: &[(&str, &str)]| {
            let resp = hm(pairs);
            decide(&StoreInput {
                targeted: &targeted,
                ..input(&req, &resp, None)
            })
            .map(|f| f.lifetime_ms)
        };
        let no_store_but_cdn = [
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=30"),
            ("expires", "0"),
        ];
        assert_eq!(decide_with(&no_store_but_cdn), Ok(30_000));
        let most_specific = [
            ("cdn-cache-control", "max-age=30"),
            ("larder-cache-control", "max-age=5"),
        ];
        assert_eq!(decide_with(&most_specific), Ok(5_000));
        // An invalid targeted field is ignored as a whole.
        let invalid = [
            ("cache-control", "max-age=7"),
            ("cdn-cache-control", "max-age=30, Bad Key"),
        ];
        assert_eq!(decide_with(&invalid), Ok(7_000));
        assert_eq!(
            decide_with(&[("cdn-cache-control", "no-store")]),
            Err(NoCacheReason::NoStore)
        );
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

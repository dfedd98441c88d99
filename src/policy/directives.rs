//! `Cache-Control` directives, and which field governs this cache (RFC 9111 §5.2, RFC 9213).
//!
//! ```
//! use larder::policy::Directives;
//! let headers: Vec<http::HeaderValue> = vec!["public, max-age=60, s-maxage=30".parse().unwrap()];
//! let d = Directives::parse(headers.iter());
//! assert_eq!(d.s_maxage, Some(30));
//! assert!(d.public && !d.no_store);
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL};

use crate::semantics::lists::split_list;
use crate::semantics::structured::valid_sf_dictionary;

pub use crate::semantics::dates::DELTA_MAX;

/// Parsed `Cache-Control` directives (request or response).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age` (request or response).
    pub max_age: Option<u64>,
    /// `s-maxage` (response).
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` without field names: the whole response is revalidated before each use.
    pub no_cache: bool,
    /// The fields a qualified `no-cache="…"` names (lower-case): never reused without
    /// revalidation, so never stored (RFC 9111 §5.2.2.4).
    pub no_cache_fields: Vec<String>,
    /// `private` without field names: a shared cache does not store the response.
    pub private: bool,
    /// The fields a qualified `private="…"` names (lower-case): a shared cache stores the
    /// rest, never these (RFC 9111 §5.2.2.7).
    pub private_fields: Vec<String>,
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

pub(crate) fn parse_delta(v: Option<&str>) -> Option<u64> {
    let v = v?.trim().trim_matches('"');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().map_or(DELTA_MAX, |n| n.min(DELTA_MAX)))
}

/// The field names of a qualified `no-cache` or `private` (`"a, b"`, or a bare token),
/// lower-cased; `None` for the unqualified form (or an empty list, taken as unqualified:
/// the safe side).
fn field_names(arg: Option<&str>) -> Option<Vec<String>> {
    let list = arg?.trim().trim_matches('"');
    let names: Vec<String> = list
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    (!names.is_empty()).then_some(names)
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
                    "no-cache" => match field_names(arg) {
                        Some(fields) => d.no_cache_fields.extend(fields),
                        None => d.no_cache = true,
                    },
                    "private" => match field_names(arg) {
                        Some(fields) => d.private_fields.extend(fields),
                        None => d.private = true,
                    },
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

    /// Parses a targeted field (RFC 9213 §2): a Structured Fields dictionary, whose members
    /// are read as cache directives: parameters are ignored, `?1` is the bare directive and
    /// `?0` is no directive at all (`no-store=?0` does not forbid storing).
    ///
    /// ```
    /// use larder::policy::Directives;
    /// let d = Directives::parse_targeted(["max-age=30;a=1, no-store=?0, no-cache=?1, public;x"].into_iter());
    /// assert_eq!(d.max_age, Some(30));
    /// assert!(!d.no_store && d.no_cache && d.no_cache_fields.is_empty() && d.public);
    /// ```
    pub fn parse_targeted<'a>(values: impl Iterator<Item = &'a str>) -> Directives {
        let mut members = Vec::new();
        for text in values {
            for member in split_list(text) {
                let member = without_parameters(member.trim());
                let (name, value) = match member.split_once('=') {
                    Some((name, value)) => (name.trim(), Some(value.trim())),
                    None => (member, None),
                };
                match value {
                    Some("?0") => {}
                    None | Some("?1") => members.push(name.to_string()),
                    Some(v) => members.push(format!("{name}={v}")),
                }
            }
        }
        match HeaderValue::from_str(&members.join(", ")) {
            Ok(v) => Directives::parse(std::iter::once(&v)),
            Err(_) => Directives::default(),
        }
    }

    /// Parses the `Cache-Control` fields of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Directives {
        Directives::parse(headers.get_all(CACHE_CONTROL).iter())
    }
}

/// A Structured Fields item without its parameters (`;key=value` after the bare item,
/// outside a quoted string).
fn without_parameters(item: &str) -> &str {
    let mut quoted = false;
    for (i, b) in item.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => return item[..i].trim(),
            _ => {}
        }
    }
    item
}

/// The response fields this cache must never store or hand to another request: those a
/// qualified `no-cache` or `private` names, in `Cache-Control` or in any targeted field
/// (all of them: the safe side).
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("cache-control", r#"max-age=60, private="x-user", no-cache="set-cookie""#.parse().unwrap());
/// let fields = larder::policy::withheld_fields(&h, &[]);
/// assert_eq!(fields, ["set-cookie", "x-user"]);
/// ```
pub fn withheld_fields(headers: &HeaderMap, targeted: &[HeaderName]) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = std::iter::once(&CACHE_CONTROL)
        .chain(targeted)
        .filter(|n| headers.contains_key(*n))
        .flat_map(|n| {
            let d = match n == CACHE_CONTROL {
                true => Directives::parse(headers.get_all(n).iter()),
                false => Directives::parse_targeted(texts(headers, n)),
            };
            d.no_cache_fields.into_iter().chain(d.private_fields)
        })
        .filter_map(|f| HeaderName::from_bytes(f.as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The values of `name` that are text.
fn texts<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
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
            let d = match name.as_str() {
                "surrogate-control" => Directives::parse(values.into_iter()),
                _ => Directives::parse_targeted(std::iter::once(text.as_str())),
            };
            return (d, true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::structured::valid_sf_dictionary;

    #[test]
    fn directives_parse() {
        let v: Vec<HeaderValue> = vec![
            "Max-Age=10, no-cache=\"set-cookie, x\"".parse().unwrap(),
            "max-age=99, private".parse().unwrap(),
        ];
        let d = Directives::parse(v.iter());
        assert_eq!(d.max_age, Some(10));
        assert!(!d.no_cache && d.private);
        assert_eq!(d.no_cache_fields, ["set-cookie", "x"]);
        let v: Vec<HeaderValue> = vec!["max-age=abc".parse().unwrap()];
        assert_eq!(Directives::parse(v.iter()).max_age, Some(0));
        let v: Vec<HeaderValue> = vec!["max-age=99999999999999999999".parse().unwrap()];
        assert_eq!(Directives::parse(v.iter()).max_age, Some(DELTA_MAX));
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
}

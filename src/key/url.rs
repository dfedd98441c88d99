//! The URL part of a key: percent-escapes normalised (RFC 3986 §6.2.2), query parameters
//! sorted, ignored ones left out.

use std::borrow::Cow;

pub use crate::semantics::uri::normalize_percent;

/// `path?query` with the query normalised (sorted, ignored parameters removed).
pub fn normalized_url(
    path: &str,
    query: Option<&str>,
    ignore_params: &[String],
    only: Option<&[String]>,
) -> String {
    let params = QueryParams::new(query, ignore_params, only);
    let mut out = String::with_capacity(path.len() + query.map_or(0, str::len) + 1);
    out.push_str(path);
    for (i, (k, v)) in params.pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Query parameters normalised for keys: sorted by name (values of one name keep their
/// order), ignored names removed, unreserved percent-escapes decoded.
pub(crate) struct QueryParams<'a> {
    pub(crate) pairs: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
}

impl<'a> QueryParams<'a> {
    pub(crate) fn new(query: Option<&'a str>, ignore: &[String], only: Option<&[String]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(q) = query {
            for part in q.split('&') {
                if part.is_empty() {
                    continue;
                }
                let (k, v) = match part.find('=') {
                    Some(i) => (&part[..i], Some(&part[i + 1..])),
                    None => (part, None),
                };
                let k = normalize_percent(k);
                if let Some(only) = only {
                    if !only.iter().any(|o| o == k.as_ref()) {
                        continue;
                    }
                } else if ignore.iter().any(|pat| param_matches(pat, &k)) {
                    continue;
                }
                pairs.push((k, v.map(normalize_percent)));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        QueryParams { pairs }
    }
}

pub(crate) fn param_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

//! The URL part of a key: percent-escapes normalised (RFC 3986 §6.2.2), query parameters
//! sorted, ignored ones left out.

use std::borrow::Cow;

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

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes percent-escapes of unreserved characters and upper-cases the hex digits of the
/// others (RFC 3986 §6.2.2), so equivalent spellings of a URL share one key and one rule.
///
/// ```
/// assert_eq!(larder::key::normalize_percent("/jobs/%34%32"), "/jobs/42");
/// assert_eq!(larder::key::normalize_percent("/a%2fb"), "/a%2Fb");
/// assert_eq!(larder::key::normalize_percent("/plain"), "/plain");
/// ```
pub fn normalize_percent(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (h, l) = (
                bytes.get(i + 1).copied().and_then(hex_val),
                bytes.get(i + 2).copied().and_then(hex_val),
            );
            if let (Some(h), Some(l)) = (h, l) {
                let b = h * 16 + l;
                if is_unreserved(b) {
                    out.push(b);
                } else {
                    out.push(b'%');
                    out.push(bytes[i + 1].to_ascii_uppercase());
                    out.push(bytes[i + 2].to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
            // A '%' that starts no escape is itself escaped, so decoding never makes one
            // out of what follows ("%%361" must not become "%61").
            out.extend_from_slice(b"%25");
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were produced from ASCII escapes; the rest is copied from a str.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

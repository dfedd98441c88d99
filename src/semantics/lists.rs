//! Comma-separated field values (RFC 9110 §5.6.1): one splitter for every list larder
//! reads, aware of quoted strings.
//!
//! ```
//! use larder::semantics::lists::{split_list, has_token};
//! let parts: Vec<&str> = split_list("a, \"b,c\", d").map(str::trim).collect();
//! assert_eq!(parts, ["a", "\"b,c\"", "d"]);
//! let mut h = http::HeaderMap::new();
//! h.append("connection", "keep-alive, Upgrade".parse().unwrap());
//! assert!(has_token(&h, &http::header::CONNECTION, "upgrade"));
//! ```

use http::header::{HeaderMap, HeaderName};

/// Splits a comma-separated list, keeping commas inside quoted strings.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
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

/// The trimmed, non-empty members of every `name` field in `headers` (values that are not
/// visible ASCII are skipped).
pub fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_list)
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether any `name` field lists `token` (compared case-insensitively).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

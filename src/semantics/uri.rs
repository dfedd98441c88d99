//! URIs (RFC 3986): percent-escapes normalised, so equivalent spellings of a target share
//! one key, one rule and one upstream request.

use std::borrow::Cow;

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
/// assert_eq!(larder::semantics::uri::normalize_percent("/jobs/%34%32"), "/jobs/42");
/// assert_eq!(larder::semantics::uri::normalize_percent("/a%2fb"), "/a%2Fb");
/// assert_eq!(larder::semantics::uri::normalize_percent("/plain"), "/plain");
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

//! Byte ranges (RFC 9110 §14): one range is served from the cache, several pass through.
//!
//! ```
//! use larder::semantics::ranges::{parse_range, ByteRange, RangeRequest};
//! let r = parse_range(&"bytes=-3".parse().unwrap());
//! assert_eq!(r, RangeRequest::Single(ByteRange::Suffix(3)));
//! assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 9)));
//! ```

use http::HeaderValue;

/// What a `Range` header asks for (RFC 9110 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// One byte range: served from the cache.
    Single(ByteRange),
    /// Several ranges, or another unit: passed through to the upstream.
    Other,
    /// Not a valid range: ignored (the whole representation is served).
    Invalid,
}

/// One byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The inclusive byte positions within a representation of `len` bytes, or `None`
    /// when unsatisfiable.
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(first, _) if first >= len => None,
            ByteRange::From(first, last) => Some((first, last.map_or(len - 1, |l| l.min(len - 1)))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if len == 0 => None,
            ByteRange::Suffix(n) => Some((len.saturating_sub(n), len - 1)),
        }
    }
}

/// One `Content-Range: bytes first-last/complete` (RFC 9110 §14.4) with a known complete
/// length and a satisfied range; `None` for anything else.
///
/// ```
/// use larder::semantics::ranges::parse_content_range;
/// assert_eq!(parse_content_range(&"bytes 10-19/100".parse().unwrap()), Some((10, 19, 100)));
/// assert_eq!(parse_content_range(&"bytes 10-19/*".parse().unwrap()), None);
/// ```
pub fn parse_content_range(v: &HeaderValue) -> Option<(u64, u64, u64)> {
    let rest = v.to_str().ok()?.trim().strip_prefix("bytes ")?;
    let (span, complete) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let digits = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last, complete) = (digits(first)?, digits(last)?, digits(complete)?);
    (first <= last && last < complete).then_some((first, last, complete))
}

/// Parses a `Range` header value.
pub fn parse_range(v: &HeaderValue) -> RangeRequest {
    let Ok(text) = v.to_str() else {
        return RangeRequest::Invalid;
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeRequest::Other;
    };
    if spec.contains(',') {
        return RangeRequest::Other;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Invalid;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        (true, _, Some(n)) => RangeRequest::Single(ByteRange::Suffix(n)),
        (false, Some(first), None) if b.trim().is_empty() => {
            RangeRequest::Single(ByteRange::From(first, None))
        }
        (false, Some(first), Some(last)) if last >= first => {
            RangeRequest::Single(ByteRange::From(first, Some(last)))
        }
        _ => RangeRequest::Invalid,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str| parse_range(&v.parse().unwrap());
        assert_eq!(
            p("bytes=0-9"),
            RangeRequest::Single(ByteRange::From(0, Some(9)))
        );
        assert_eq!(
            p("bytes=5-"),
            RangeRequest::Single(ByteRange::From(5, None))
        );
        assert_eq!(p("bytes=-3"), RangeRequest::Single(ByteRange::Suffix(3)));
        assert_eq!(p("bytes=0-1,4-5"), RangeRequest::Other);
        assert_eq!(p("items=0-1"), RangeRequest::Other);
        assert_eq!(p("bytes=9-2"), RangeRequest::Invalid);
        assert_eq!(p("bytes=x-2"), RangeRequest::Invalid);
        assert_eq!(ByteRange::From(0, Some(99)).resolve(10), Some((0, 9)));
        assert_eq!(ByteRange::From(10, None).resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 9)));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some((0, 9)));
    }

    #[test]
    fn range_parsing_holds_for_any_input() {
        // A bounded property test (the parsers' others are in tests/parsers.rs): no input
        // panics, and a resolved range always lies inside the representation.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"bytes=-,0123456789 x";
        for _ in 0..5_000 {
            let mut text = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let Ok(v) = HeaderValue::from_bytes(&text) else {
                continue;
            };
            if let RangeRequest::Single(r) = parse_range(&v) {
                for len in [0u64, 1, 10, 1 << 40] {
                    if let Some((first, last)) = r.resolve(len) {
                        assert!(first <= last && last < len, "{v:?} {len}");
                    }
                }
            }
        }
    }
}

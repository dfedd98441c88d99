//! The stored header block: `name:value\n` lines, names lower-case, read back without
//! copying (values share the entry's buffer).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, ETAG};

/// Writes `headers` as a header block; with `weaken_etag`, a strong `ETag` is written weak.
/// Returns whether it weakened one.
pub(super) fn write_head(out: &mut BytesMut, headers: &HeaderMap, weaken_etag: bool) -> bool {
    let mut weakened = false;
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_u8(b':');
        if weaken_etag && name == ETAG && value.as_bytes().first() == Some(&b'"') {
            out.put_slice(b"W/");
            weakened = true;
        }
        out.put_slice(value.as_bytes());
        out.put_u8(b'\n');
    }
    weakened
}

/// Iterates a header block.
pub struct HeaderIter<'a> {
    pub(super) buf: &'a Bytes,
    pub(super) pos: usize,
    pub(super) end: usize,
}

impl Iterator for HeaderIter<'_> {
    type Item = (HeaderName, HeaderValue);

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.end {
            let line = &self.buf[self.pos..self.end];
            let nl = memchr::memchr(b'\n', line).unwrap_or(line.len());
            let start = self.pos;
            self.pos += nl + 1;
            let Some(colon) = memchr::memchr(b':', &line[..nl]) else {
                continue;
            };
            let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
                continue;
            };
            let value = self.buf.slice(start + colon + 1..start + nl);
            if let Ok(value) = HeaderValue::from_maybe_shared(value) {
                return Some((name, value));
            }
        }
        None
    }
}

//! gzip once at store time, and `Accept-Encoding` negotiation at serve time.
//!
//! ```
//! let body = b"hello hello hello hello hello hello".repeat(10);
//! let mut gz = Vec::new();
//! larder::compress::gzip_into(&body, &mut gz).unwrap();
//! let mut back = Vec::new();
//! larder::compress::gunzip_into(&gz, &mut back, 1 << 20).unwrap();
//! assert_eq!(back, body);
//!
//! let mut h = http::HeaderMap::new();
//! h.insert("accept-encoding", "br, gzip;q=0.8".parse().unwrap());
//! assert!(larder::compress::accepts_gzip(&h));
//! h.insert("accept-encoding", "gzip;q=0, identity".parse().unwrap());
//! assert!(!larder::compress::accepts_gzip(&h));
//! ```

use std::cell::RefCell;
use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use http::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_TYPE};

/// The gzip level used for stored entries: compressed once, served many times.
pub const LEVEL: u32 = 6;

thread_local! {
    /// The deflate state (a few hundred KiB), kept per thread: allocating and zeroing a
    /// fresh one per entry cost more in page faults than compressing 1 KiB does.
    static DEFLATE: RefCell<Option<(Compress, Vec<u8>)>> = const { RefCell::new(None) };
}

/// The gzip member header: deflate, no flags, no time, unknown OS (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses `input` with gzip into `out`.
pub fn gzip_into<W: Write>(input: &[u8], mut out: W) -> io::Result<W> {
    DEFLATE.with(|cell| -> io::Result<()> {
        let mut slot = cell.borrow_mut();
        let (deflate, buf) =
            slot.get_or_insert_with(|| (Compress::new(Compression::new(LEVEL), false), Vec::new()));
        deflate.reset();
        buf.clear();
        buf.reserve(input.len() / 2 + 64);
        loop {
            let consumed = deflate.total_in() as usize;
            let status = deflate
                .compress_vec(&input[consumed..], buf, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            match status {
                Status::StreamEnd => break,
                // Out of room: grow and go on.
                Status::Ok | Status::BufError => buf.reserve(buf.capacity().max(1024)),
            }
        }
        let mut crc = Crc::new();
        crc.update(input);
        out.write_all(&GZIP_HEADER)?;
        out.write_all(buf)?;
        out.write_all(&crc.sum().to_le_bytes())?;
        out.write_all(&(input.len() as u32).to_le_bytes())?;
        // A rare huge body should not pin its buffer to the thread.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(())
    })?;
    Ok(out)
}

/// Compresses `input` if that saves at least 10%; `None` when it does not pay.
///
/// ```
/// let text = "the same words again and again ".repeat(100);
/// let gz = larder::compress::gzip_if_smaller(text.as_bytes()).unwrap();
/// assert!(gz.len() < text.len() / 4);
/// let mut x = 88172645463325252u64;
/// let noise: Vec<u8> = (0..4096).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
/// assert!(larder::compress::gzip_if_smaller(&noise).is_none());
/// ```
pub fn gzip_if_smaller(input: &[u8]) -> Option<Vec<u8>> {
    let out = gzip_into(input, Vec::with_capacity(input.len() / 3 + 64)).ok()?;
    (out.len() * 10 <= input.len() * 9).then_some(out)
}

/// Decompresses gzip `input` into `out`, refusing to produce more than `limit` bytes.
pub fn gunzip_into(input: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let mut dec = MultiGzDecoder::new(input).take(limit as u64 + 1);
    dec.read_to_end(out)?;
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "decompressed body exceeds the limit",
        ));
    }
    Ok(())
}

/// The most bytes of decoded bodies kept by [`gunzip_recent`], and the largest one kept.
const RECENT_MAX: usize = 16 << 20;
const RECENT_BODY_MAX: usize = 1 << 20;

/// Bodies decoded lately, by the exact gzip bytes they came from (a CRC finds the slot;
/// the bytes are compared whole), oldest first out.
#[derive(Default)]
struct Recent {
    by_crc: std::collections::HashMap<u32, (bytes::Bytes, bytes::Bytes)>,
    order: std::collections::VecDeque<u32>,
    bytes: usize,
}

static RECENT: std::sync::LazyLock<parking_lot::Mutex<Recent>> =
    std::sync::LazyLock::new(Default::default);

/// Decompresses a stored gzip body of `len` bytes, reusing the decoded bytes of the same
/// gzip bytes seen lately: a hit from a lower tier (a fresh copy of the entry each time)
/// for a client that does not take gzip decodes once, not every time. The answer is a
/// function of the exact bytes, so reusing it shares nothing between requests that
/// would not have been served the same.
///
/// ```
/// let gz = bytes::Bytes::from(larder::compress::gzip_into(b"same same same", Vec::new()).unwrap());
/// let a = larder::compress::gunzip_recent(&gz, 14).unwrap();
/// let b = larder::compress::gunzip_recent(&gz.clone(), 14).unwrap();
/// assert_eq!((&a[..], a.as_ptr()), (&b"same same same"[..], b.as_ptr()));
/// ```
pub fn gunzip_recent(gz: &bytes::Bytes, len: usize) -> io::Result<bytes::Bytes> {
    let mut crc = Crc::new();
    crc.update(gz);
    let sum = crc.sum();
    if let Some((seen, plain)) = RECENT.lock().by_crc.get(&sum) {
        // (A record claiming fewer bytes than its body decodes to is refused as before.)
        if seen == gz && plain.len() <= len {
            return Ok(plain.clone());
        }
    }
    let mut out = Vec::with_capacity(len.min(1 << 24));
    gunzip_into(gz, &mut out, len)?;
    let plain = bytes::Bytes::from(out);
    if plain.len() <= RECENT_BODY_MAX {
        let mut recent = RECENT.lock();
        let size = gz.len() + plain.len();
        while recent.bytes + size > RECENT_MAX {
            let Some(old) = recent.order.pop_front() else {
                break;
            };
            if let Some((g, p)) = recent.by_crc.remove(&old) {
                recent.bytes -= g.len() + p.len();
            }
        }
        if let Some((g, p)) = recent.by_crc.insert(sum, (gz.clone(), plain.clone())) {
            recent.bytes -= g.len() + p.len();
        } else {
            recent.order.push_back(sum);
        }
        recent.bytes += size;
    }
    Ok(plain)
}

/// Whether the request accepts `gzip` (RFC 9110 §12.5.3: `gzip`, `x-gzip` or `*` with a
/// non-zero q-value).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    // The common case, e.g. "gzip, deflate, br": gzip named, no q-values anywhere.
    let mut values = headers.get_all(ACCEPT_ENCODING).iter();
    if let (Some(v), None) = (values.next(), values.next()) {
        let b = v.as_bytes();
        if !b.contains(&b';') {
            return b.split(|&c| c == b',').any(|t| {
                let t = t.trim_ascii();
                t.eq_ignore_ascii_case(b"gzip") || t.eq_ignore_ascii_case(b"x-gzip") || t == b"*"
            });
        }
    }
    let mut gzip: Option<bool> = None;
    let mut star: Option<bool> = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_ok = parts
                .filter_map(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
                })
                .next()
                .is_none_or(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || q_ok);
            } else if coding == "*" {
                star = Some(q_ok);
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether a body of this content type is worth compressing (not already-compressed media).
pub fn compressible(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let ct = crate::semantics::media::media_type(ct);
    !(ct.starts_with("image/") && ct != "image/svg+xml"
        || ct.starts_with("video/")
        || ct.starts_with("audio/")
        || ct.starts_with("font/woff")
        || matches!(
            ct.as_str(),
            "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/zstd"
                | "application/octet-stream"
                | "application/pdf"
                | "application/x-7z-compressed"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, v.parse().unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn negotiation() {
        assert!(ae("gzip"));
        assert!(ae("gzip, deflate, br"));
        assert!(ae("*"));
        assert!(ae("x-gzip"));
        assert!(!ae("br"));
        assert!(!ae("identity"));
        assert!(!ae("*;q=0"));
        assert!(!ae("gzip;q=0"));
        assert!(!ae("gzip;q=0.000, *"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn bomb_limit() {
        let body = vec![0u8; 100_000];
        let gz = gzip_into(&body, Vec::new()).unwrap();
        let mut out = Vec::new();
        assert!(gunzip_into(&gz, &mut out, 1000).is_err());
    }

    #[test]
    fn the_reused_deflate_state_starts_clean_for_every_body() {
        // Sizes around the buffer's growth steps, incompressible data, and nothing at all;
        // each member must decode (CRC and length checked) to exactly its input.
        let mut x = 88172645463325252u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = b"{\"id\":1,\"name\":\"item\"},".repeat(40_000);
        for input in [
            &b""[..],
            b"a",
            &text[..1024],
            &noise[..70_000],
            &text,
            &noise,
            b"end",
        ] {
            let gz = gzip_into(input, Vec::new()).unwrap();
            assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
            let mut out = Vec::new();
            gunzip_into(&gz, &mut out, 1 << 24).unwrap();
            assert_eq!(out, input);
        }
    }
}

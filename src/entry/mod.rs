//! The stored entry: one contiguous, versioned byte buffer holding the metadata, tags,
//! URL, response headers and body.
//!
//! The same bytes are the in-memory entry and the value written to Redis, so a refill of
//! L1 from L2 copies nothing, and a hit clones the body as a `Bytes` pointer.
//!
//! Layout (little-endian): a 64-byte fixed header, then `ntags` u64 tag ids, the URL, the
//! header block (`name:value\n` lines, names lower-case) and the body.
//!
//! ```
//! use larder::entry::{Entry, NewEntry, StoredBody};
//! use larder::policy::Freshness;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("content-type", "application/json".parse().unwrap());
//! let entry = Entry::encode(&NewEntry {
//!     status: http::StatusCode::OK,
//!     headers: &headers,
//!     body: StoredBody::Identity(b"{\"ok\":true}"),
//!     url: "/health",
//!     tags: &[7],
//!     freshness: Freshness { lifetime_ms: 60_000, ..Freshness::default() },
//!     response_time: 1_000,
//!     vary: None,
//! });
//! assert_eq!(entry.body().as_ref(), b"{\"ok\":true}");
//! assert_eq!(entry.url(), "/health");
//! let again = Entry::decode(entry.bytes().clone()).unwrap();
//! assert_eq!(again.tags().collect::<Vec<_>>(), vec![7]);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, ETAG, LAST_MODIFIED};
use http::StatusCode;

mod freshness;
mod headers;

pub use freshness::Freshness;

use headers::write_head;
pub use headers::HeaderIter;

const MAGIC: u8 = b'L';
/// 2: entries carry their tags' prefix ids and their path's directory ids (what a
/// `tag_prefix`, URL prefix or pattern invalidation finds them by); a record of 1 lacks
/// them and is read as a miss, so nothing such an invalidation should drop is served.
const VERSION: u8 = 2;
const FIXED: usize = 64;
/// Upper bound of stored times (ms): RFC 9111's largest delta-seconds, so sums never overflow.
const TIME_MAX: u64 = crate::semantics::dates::DELTA_MAX * 1000;
/// Upper bound of a stored body's decoded length.
const IDENTITY_MAX: u32 = 1 << 30;

/// Entry flags.
mod flag {
    /// The body is stored gzip-compressed.
    pub const GZIP: u16 = 1;
    /// The origin sent the body gzip-encoded (so the gzip bytes are the origin's).
    pub const ORIGIN_GZIP: u16 = 1 << 1;
    /// The origin sent another content coding; served as-is.
    pub const OTHER_ENCODING: u16 = 1 << 2;
    /// Revalidate before every use.
    pub const NO_CACHE: u16 = 1 << 3;
    /// Never serve stale.
    pub const MUST_REVALIDATE: u16 = 1 << 4;
    /// A marker: the real entries are per variant of the headers listed in the head.
    pub const VARY: u16 = 1 << 5;
    /// The stored `ETag` was weakened because larder compressed the body: it is right for
    /// the gzip bytes; the origin's strong tag is right for the decoded ones.
    pub const ETAG_WEAKENED: u16 = 1 << 6;
    /// The entry has a validator (`ETag` or `Last-Modified`).
    pub const VALIDATOR: u16 = 1 << 7;
}

/// The body to store.
#[derive(Clone, Copy, Debug)]
pub enum StoredBody<'a> {
    /// Unencoded.
    Identity(&'a [u8]),
    /// gzip-encoded, by the origin or by larder at store time.
    Gzip {
        /// The gzip bytes.
        data: &'a [u8],
        /// The decoded length.
        identity_len: u32,
        /// Whether these are the origin's own bytes (serving them decoded is then the
        /// transformation; otherwise serving them encoded is).
        from_origin: bool,
    },
    /// Encoded by the origin with a coding larder does not decode (kept as-is; its
    /// `Content-Encoding` stays in the headers).
    Encoded(&'a [u8]),
}

/// What a new entry is made of.
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    /// The response status.
    pub status: StatusCode,
    /// The headers to store (already filtered).
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: StoredBody<'a>,
    /// The normalised URL (`path?query`).
    pub url: &'a str,
    /// Tag ids.
    pub tags: &'a [u64],
    /// Freshness.
    pub freshness: Freshness,
    /// When the response arrived (ms since epoch).
    pub response_time: u64,
    /// For a `Vary` marker: the request headers the variants differ by.
    pub vary: Option<&'a [HeaderName]>,
}

/// The index fields of an encoded entry (see [`Entry::peek`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeked {
    /// When it can be dropped (ms since the epoch).
    pub expires_at: u64,
    /// Its tag ids.
    pub tags: Vec<u64>,
    /// Its normalised URL.
    pub url: String,
    /// Bytes of the entry these came from.
    pub len: usize,
}

/// An immutable stored response.
pub struct Entry {
    buf: Bytes,
    hits: AtomicU32,
    /// Whether a background refresh-ahead was started for this entry.
    refresh_claimed: AtomicBool,
    /// What is kept beside the bytes once asked for: the decoded body of a gzip entry (a
    /// client that cannot take gzip asked; the store counts it against its bound), and
    /// derived facts.
    extra: OnceLock<Box<Extra>>,
}

/// What an entry keeps beside its bytes once someone asks (allocated only then, so an
/// entry that never needs it pays one pointer).
#[derive(Default)]
struct Extra {
    /// The decoded body of a gzip entry.
    decoded: OnceLock<Bytes>,
    /// A fact derived from the bytes once (an LLM answer's usage, say), by whoever asks.
    derived: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("status", &self.status())
            .field("url", &self.url())
            .field("bytes", &self.buf.len())
            .finish()
    }
}

/// Why stored bytes could not be read as an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid stored entry: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// When an entry can be dropped: its fresh lifetime, plus the stale windows it may be
/// served in (none when stale use is forbidden), plus a grace period: a minute or its
/// lifetime if longer when it has a validator (to revalidate rather than refetch), else up
/// to a minute (for clients' `max-stale`).
fn expiry(
    response_time: u64,
    initial_age: u64,
    lifetime: u64,
    f: &Freshness,
    has_validator: bool,
) -> u64 {
    let stale_ms = if f.must_revalidate || f.no_cache {
        0
    } else {
        f.stale_while_revalidate
            .max(f.stale_if_error)
            .max(f.stale_if_budget) as u64
            * 1000
    };
    let grace = if has_validator {
        lifetime.max(60_000)
    } else {
        lifetime.min(60_000)
    };
    (response_time + lifetime + stale_ms + grace).saturating_sub(initial_age)
}

/// Seconds as whole minutes, rounded up (what the header keeps of `stale_if_budget`).
fn minutes(secs: u32) -> u16 {
    secs.div_ceil(60).min(u32::from(u16::MAX)) as u16
}

/// The header block of a new entry (its `Vary` names, for a marker) and the flags it
/// sets.
fn head_block(new: &NewEntry<'_>) -> (BytesMut, u16) {
    let mut flags = 0u16;
    if new.freshness.no_cache {
        flags |= flag::NO_CACHE;
    }
    if new.freshness.must_revalidate {
        flags |= flag::MUST_REVALIDATE;
    }
    let mut head = BytesMut::with_capacity(256);
    match new.vary {
        Some(names) => {
            flags |= flag::VARY;
            for n in names {
                head.put_slice(b"vary:");
                head.put_slice(n.as_str().as_bytes());
                head.put_u8(b'\n');
            }
        }
        None => {
            // Gzip clients are the common case: store the tag right for the bytes they get.
            let compressed_here = matches!(
                new.body,
                StoredBody::Gzip {
                    from_origin: false,
                    ..
                }
            );
            if write_head(&mut head, new.headers, compressed_here) {
                flags |= flag::ETAG_WEAKENED;
            }
        }
    }
    (head, flags)
}

/// Appends the body; its decoded length and the flags its form sets.
fn put_body(buf: &mut BytesMut, body: StoredBody<'_>) -> (usize, u16) {
    match body {
        StoredBody::Identity(b) => {
            buf.put_slice(b);
            (b.len(), 0)
        }
        StoredBody::Encoded(b) => {
            buf.put_slice(b);
            (b.len(), flag::OTHER_ENCODING)
        }
        StoredBody::Gzip {
            data,
            identity_len,
            from_origin,
        } => {
            buf.put_slice(data);
            let origin = if from_origin { flag::ORIGIN_GZIP } else { 0 };
            (identity_len as usize, flag::GZIP | origin)
        }
    }
}

impl Entry {
    /// Encodes a new entry (compressing the body if asked).
    pub fn encode(new: &NewEntry<'_>) -> Entry {
        let f = &new.freshness;
        let (head, mut flags) = head_block(new);
        let body_len = match new.body {
            StoredBody::Identity(b) | StoredBody::Encoded(b) => b.len(),
            StoredBody::Gzip { data, .. } => data.len(),
        };
        let mut buf = BytesMut::with_capacity(
            FIXED + new.tags.len() * 8 + new.url.len() + head.len() + body_len,
        );
        buf.put_bytes(0, FIXED);
        // The count is a u16: never write more tags than it can say.
        let ntags = new.tags.len().min(u16::MAX as usize);
        for t in &new.tags[..ntags] {
            buf.put_u64_le(*t);
        }
        buf.put_slice(new.url.as_bytes());
        buf.put_slice(&head);
        let (identity_len, body_flags) = put_body(&mut buf, new.body);
        flags |= body_flags;
        let h = &mut buf[..FIXED];
        h[0] = MAGIC;
        h[1] = VERSION;
        h[4..6].copy_from_slice(&new.status.as_u16().to_le_bytes());
        h[6..8].copy_from_slice(&(ntags as u16).to_le_bytes());
        h[8..12].copy_from_slice(&(new.url.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(head.len() as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(identity_len.min(IDENTITY_MAX as usize) as u32).to_le_bytes());
        h[20..24].copy_from_slice(&f.stale_while_revalidate.to_le_bytes());
        h[24..28].copy_from_slice(&f.stale_if_error.to_le_bytes());
        let lines = memchr::memchr_iter(b'\n', &head)
            .count()
            .min(u16::MAX as usize) as u16;
        h[28..30].copy_from_slice(&lines.to_le_bytes());
        h[30..32].copy_from_slice(&minutes(f.stale_if_budget).to_le_bytes());
        let initial_age = f.initial_age_ms.min(TIME_MAX);
        let lifetime = f.lifetime_ms.min(TIME_MAX);
        let response_time = new.response_time.min(TIME_MAX * 4);
        let has_validator =
            new.headers.contains_key(ETAG) || new.headers.contains_key(LAST_MODIFIED);
        if has_validator {
            flags |= flag::VALIDATOR;
        }
        h[2..4].copy_from_slice(&flags.to_le_bytes());
        let expires_at = expiry(response_time, initial_age, lifetime, f, has_validator);
        h[32..40].copy_from_slice(&response_time.to_le_bytes());
        h[40..48].copy_from_slice(&initial_age.to_le_bytes());
        h[48..56].copy_from_slice(&lifetime.to_le_bytes());
        h[56..64].copy_from_slice(&expires_at.to_le_bytes());
        Entry {
            buf: buf.freeze(),
            hits: AtomicU32::new(0),
            refresh_claimed: AtomicBool::new(false),
            extra: OnceLock::new(),
        }
    }

    /// What an index needs from the start of an encoded entry, without the rest: its
    /// expiry, tags and URL, and how many bytes that took. `None` if `prefix` is too short
    /// or not an entry.
    pub fn peek(prefix: &[u8]) -> Option<Peeked> {
        if prefix.len() < FIXED || prefix[0] != MAGIC || prefix[1] != VERSION {
            return None;
        }
        let ntags = u16_at(prefix, 6) as usize;
        let url_len = u32_at(prefix, 8) as usize;
        let need = FIXED + ntags * 8 + url_len;
        let tags_and_url = prefix.get(FIXED..need)?;
        let tags = (0..ntags).map(|i| u64_at(tags_and_url, i * 8)).collect();
        let url = std::str::from_utf8(&tags_and_url[ntags * 8..])
            .ok()?
            .to_string();
        Some(Peeked {
            expires_at: u64_at(prefix, 56),
            tags,
            url,
            len: need,
        })
    }

    /// How many bytes [`Entry::peek`] needs to see, given the first 64.
    pub fn peek_len(fixed: &[u8]) -> Option<usize> {
        if fixed.len() < FIXED {
            return None;
        }
        Some(FIXED + u16_at(fixed, 6) as usize * 8 + u32_at(fixed, 8) as usize)
    }

    /// Reads an entry from stored bytes, checking every length.
    pub fn decode(buf: Bytes) -> Result<Entry, DecodeError> {
        if buf.len() < FIXED {
            return Err(DecodeError("too short"));
        }
        if buf[0] != MAGIC {
            return Err(DecodeError("bad magic byte"));
        }
        if buf[1] != VERSION {
            return Err(DecodeError("unknown format version"));
        }
        let ntags = u16_at(&buf, 6) as usize;
        let url_len = u32_at(&buf, 8) as usize;
        let head_len = u32_at(&buf, 12) as usize;
        let need = FIXED
            .checked_add(ntags * 8)
            .and_then(|n| n.checked_add(url_len))
            .and_then(|n| n.checked_add(head_len))
            .ok_or(DecodeError("lengths overflow"))?;
        if need > buf.len() {
            return Err(DecodeError("truncated"));
        }
        if StatusCode::from_u16(u16_at(&buf, 4)).is_err() {
            return Err(DecodeError("bad status"));
        }
        if u64_at(&buf, 40) > TIME_MAX
            || u64_at(&buf, 48) > TIME_MAX
            || u64_at(&buf, 32) > TIME_MAX * 4
            || u32_at(&buf, 16) > IDENTITY_MAX
        {
            return Err(DecodeError("times or lengths out of range"));
        }
        if std::str::from_utf8(&buf[FIXED + ntags * 8..FIXED + ntags * 8 + url_len]).is_err() {
            return Err(DecodeError("url is not UTF-8"));
        }
        Ok(Entry {
            buf,
            hits: AtomicU32::new(0),
            refresh_claimed: AtomicBool::new(false),
            extra: OnceLock::new(),
        })
    }

    /// The encoded bytes (what Redis stores).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    fn flags(&self) -> u16 {
        u16_at(&self.buf, 2)
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(u16_at(&self.buf, 4)).unwrap_or(StatusCode::OK)
    }

    fn ntags(&self) -> usize {
        u16_at(&self.buf, 6) as usize
    }

    fn url_range(&self) -> (usize, usize) {
        let start = FIXED + self.ntags() * 8;
        (start, start + u32_at(&self.buf, 8) as usize)
    }

    fn head_range(&self) -> (usize, usize) {
        let (_, start) = self.url_range();
        (start, start + u32_at(&self.buf, 12) as usize)
    }

    /// The tag ids.
    pub fn tags(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.ntags()).map(move |i| u64_at(&self.buf, FIXED + i * 8))
    }

    /// The normalised URL.
    pub fn url(&self) -> &str {
        let (a, b) = self.url_range();
        std::str::from_utf8(&self.buf[a..b]).unwrap_or("")
    }

    /// The stored body (gzip bytes when [`Entry::is_gzip`]).
    pub fn body(&self) -> Bytes {
        let (_, end) = self.head_range();
        self.buf.slice(end..)
    }

    /// The length of the decoded body.
    pub fn identity_len(&self) -> u64 {
        u32_at(&self.buf, 16) as u64
    }

    /// Whether the body is stored gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.flags() & flag::GZIP != 0
    }

    /// Whether the stored gzip bytes are exactly what the origin sent.
    pub fn origin_gzip(&self) -> bool {
        self.flags() & flag::ORIGIN_GZIP != 0
    }

    /// Whether the body carries a coding larder does not decode.
    pub fn other_encoding(&self) -> bool {
        self.flags() & flag::OTHER_ENCODING != 0
    }

    /// Whether the stored `ETag` was weakened for the compressed bytes larder made.
    pub fn etag_weakened(&self) -> bool {
        self.flags() & flag::ETAG_WEAKENED != 0
    }

    /// Whether this is a `Vary` marker.
    pub fn is_vary_marker(&self) -> bool {
        self.flags() & flag::VARY != 0
    }

    /// The headers a `Vary` marker lists.
    pub fn vary_names(&self) -> Vec<HeaderName> {
        self.headers()
            .filter(|(n, _)| n == http::header::VARY)
            .filter_map(|(_, v)| HeaderName::from_bytes(v.as_bytes()).ok())
            .collect()
    }

    /// Freshness as stored.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            lifetime_ms: u64_at(&self.buf, 48),
            initial_age_ms: u64_at(&self.buf, 40),
            no_cache: self.flags() & flag::NO_CACHE != 0,
            must_revalidate: self.flags() & flag::MUST_REVALIDATE != 0,
            stale_while_revalidate: u32_at(&self.buf, 20),
            stale_if_error: u32_at(&self.buf, 24),
            stale_if_budget: u32::from(u16::from_le_bytes([self.buf[30], self.buf[31]])) * 60,
        }
    }

    /// When the response arrived (ms since epoch).
    pub fn response_time(&self) -> u64 {
        u64_at(&self.buf, 32)
    }

    /// Current age in milliseconds (RFC 9111 §4.2.3).
    pub fn age_ms(&self, now: u64) -> u64 {
        u64_at(&self.buf, 40).saturating_add(now.saturating_sub(self.response_time()))
    }

    /// Remaining freshness in milliseconds; negative once stale.
    pub fn ttl_ms(&self, now: u64) -> i64 {
        // Both are bounded by TIME_MAX (well inside i64) at encode and decode.
        (u64_at(&self.buf, 48) as i64).saturating_sub(self.age_ms(now).min(i64::MAX as u64) as i64)
    }

    /// Whether the entry is fresh at `now` (and not `no-cache`).
    pub fn is_fresh(&self, now: u64) -> bool {
        self.flags() & flag::NO_CACHE == 0 && self.ttl_ms(now) > 0
    }

    /// When the entry can be dropped (ms since epoch): fresh lifetime plus any stale
    /// windows, plus a grace period for revalidation when it has a validator.
    pub fn expires_at(&self) -> u64 {
        u64_at(&self.buf, 56)
    }

    /// The stored header lines as `(name, value)` pairs, values sharing the entry's buffer.
    pub fn headers(&self) -> HeaderIter<'_> {
        let (a, b) = self.head_range();
        HeaderIter {
            buf: &self.buf,
            pos: a,
            end: b,
        }
    }

    /// How many header lines are stored (to size a header map once).
    pub fn header_count(&self) -> usize {
        u16_at(&self.buf, 28) as usize
    }

    /// The stored `ETag`, if any.
    pub fn etag(&self) -> Option<HeaderValue> {
        self.headers().find(|(n, _)| n == ETAG).map(|(_, v)| v)
    }

    /// The stored `Last-Modified`, if any.
    pub fn last_modified(&self) -> Option<HeaderValue> {
        self.headers()
            .find(|(n, _)| n == LAST_MODIFIED)
            .map(|(_, v)| v)
    }

    /// Whether the entry has a validator.
    pub fn has_validator(&self) -> bool {
        self.flags() & flag::VALIDATOR != 0
    }

    /// The same stored response with new headers and freshness (after a `304`, RFC 9111
    /// §4.3.4): body, URL and tags stay.
    pub fn refreshed(
        &self,
        headers: &HeaderMap,
        freshness: Freshness,
        response_time: u64,
    ) -> Entry {
        let body = self.body();
        let stored = if self.is_gzip() {
            StoredBody::Gzip {
                data: &body,
                identity_len: self.identity_len() as u32,
                from_origin: self.origin_gzip(),
            }
        } else if self.other_encoding() {
            StoredBody::Encoded(&body)
        } else {
            StoredBody::Identity(&body)
        };
        let tags: Vec<u64> = self.tags().collect();
        Entry::encode(&NewEntry {
            status: self.status(),
            headers,
            body: stored,
            url: self.url(),
            tags: &tags,
            freshness,
            response_time,
            vary: None,
        })
    }

    /// A copy that is stale from `now` on (a soft purge): its freshness ends at its
    /// current age; its stale windows and validators stay usable.
    pub fn expired_copy(&self, now: u64) -> Entry {
        let mut buf = self.buf.to_vec();
        let mut f = self.freshness();
        f.lifetime_ms = f.lifetime_ms.min(self.age_ms(now));
        buf[48..56].copy_from_slice(&f.lifetime_ms.to_le_bytes());
        let expires = expiry(
            self.response_time(),
            f.initial_age_ms,
            f.lifetime_ms,
            &f,
            self.has_validator(),
        );
        buf[56..64].copy_from_slice(&expires.to_le_bytes());
        Entry {
            buf: Bytes::from(buf),
            hits: AtomicU32::new(0),
            refresh_claimed: AtomicBool::new(false),
            extra: OnceLock::new(),
        }
    }

    /// Counts a hit and returns the new count.
    pub fn record_hit(&self) -> u32 {
        self.hits.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Claims the one refresh-ahead of this entry; true for the first caller.
    pub fn claim_refresh(&self) -> bool {
        !self.refresh_claimed.swap(true, Ordering::Relaxed)
    }

    /// Hits so far (in this process).
    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Bytes the entry occupies in memory (buffers plus bookkeeping).
    pub fn weight(&self) -> usize {
        self.buf.len() + self.kept_decoded().map_or(0, |b| b.len()) + std::mem::size_of::<Entry>()
    }

    /// A fact derived from the entry, computed by `make` the first time it is asked for
    /// (`None` when a fact of another type was derived first).
    pub fn derived<T: std::any::Any + Send + Sync>(
        &self,
        make: impl FnOnce(&Entry) -> T,
    ) -> Option<&T> {
        self.extra()
            .derived
            .get_or_init(|| Box::new(make(self)))
            .downcast_ref()
    }

    fn extra(&self) -> &Extra {
        self.extra.get_or_init(Box::default)
    }

    /// The kept decoded copy, if any.
    fn kept_decoded(&self) -> Option<&Bytes> {
        self.extra.get().and_then(|x| x.decoded.get())
    }

    /// The value of the stored header `name` (lower-case), if any.
    pub fn header_value(&self, name: &str) -> Option<HeaderValue> {
        self.headers()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }

    /// The decoded body: the stored body itself unless it is gzip, else the kept decoded
    /// copy, else a fresh decode.
    pub fn decoded_body(&self) -> std::io::Result<Bytes> {
        if !self.is_gzip() {
            return Ok(self.body());
        }
        if let Some(b) = self.kept_decoded() {
            return Ok(Bytes::clone(b));
        }
        self.gunzip_body()
    }

    fn gunzip_body(&self) -> std::io::Result<Bytes> {
        crate::compress::gunzip_recent(&self.body(), self.identity_len() as usize)
    }

    /// Decodes a gzip body once and keeps the result; returns the bytes added (0 if it was
    /// kept already, is not gzip, or does not decode).
    pub fn keep_decoded(&self) -> usize {
        if !self.is_gzip() || self.kept_decoded().is_some() {
            return 0;
        }
        match self.gunzip_body() {
            Ok(b) => {
                let n = b.len();
                if self.extra().decoded.set(b).is_ok() {
                    n
                } else {
                    0
                }
            }
            Err(_) => 0,
        }
    }

    /// Whether a decoded copy is kept.
    pub fn has_decoded(&self) -> bool {
        self.kept_decoded().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_entry<'a>(headers: &'a HeaderMap, body: StoredBody<'a>) -> Entry {
        Entry::encode(&NewEntry {
            status: StatusCode::NOT_FOUND,
            headers,
            body,
            url: "/x?a=1",
            tags: &[1, 2, 3],
            freshness: Freshness {
                lifetime_ms: 10_000,
                initial_age_ms: 2_000,
                stale_if_error: 5,
                ..Freshness::default()
            },
            response_time: 100_000,
            vary: None,
        })
    }

    #[test]
    fn round_trip() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-custom", "a: b".parse().unwrap());
        h.insert(ETAG, "\"v1\"".parse().unwrap());
        let e = new_entry(&h, StoredBody::Identity(b"hello"));
        let d = Entry::decode(e.bytes().clone()).unwrap();
        assert_eq!(d.status(), StatusCode::NOT_FOUND);
        assert_eq!(d.url(), "/x?a=1");
        assert_eq!(d.tags().collect::<Vec<_>>(), vec![1, 2, 3]);
        let headers: Vec<_> = d.headers().collect();
        assert_eq!(headers.len(), 3);
        assert_eq!(d.etag().unwrap(), "\"v1\"");
        assert_eq!(
            headers.iter().find(|(n, _)| n == "x-custom").unwrap().1,
            "a: b"
        );
        assert_eq!(d.body().as_ref(), b"hello");
        assert_eq!(d.age_ms(103_000), 5_000);
        assert_eq!(d.ttl_ms(103_000), 5_000);
        assert!(d.is_fresh(103_000));
        assert!(!d.is_fresh(108_000));
        assert_eq!(d.freshness().stale_if_error, 5);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(Entry::decode(Bytes::from_static(b"nope")).is_err());
        let h = HeaderMap::new();
        let e = new_entry(&h, StoredBody::Identity(b"x"));
        let mut bad = e.bytes().to_vec();
        bad.truncate(FIXED + 10);
        assert!(Entry::decode(Bytes::from(bad)).is_err());
        let mut bad = e.bytes().to_vec();
        bad[1] = 99;
        assert!(Entry::decode(Bytes::from(bad)).is_err());
    }
}

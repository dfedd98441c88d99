//! What happened to a request, as one value: it drives `Cache-Status` (RFC 9211),
//! `X-Cache`, the stats and the access log, so those can never disagree.
//!
//! ```
//! use larder::status::{CacheStatus, Fwd};
//! let hit = CacheStatus::hit(42);
//! assert_eq!(hit.header_value("larder"), "larder; hit; ttl=42");
//! assert_eq!(hit.x_cache(), "HIT");
//! let miss = CacheStatus::forwarded(Fwd::Miss).stored(true);
//! assert_eq!(miss.header_value("larder"), "larder; fwd=miss; stored");
//! let revalidated = CacheStatus::revalidated(304);
//! assert_eq!(revalidated.header_value("larder"), "larder; fwd=stale; fwd-status=304");
//! assert_eq!(revalidated.x_cache(), "STALE");
//! ```

use std::fmt::Write;

/// `X-Cache`: `HIT`, `MISS`, `BYPASS` or `STALE`, for tools that expect it.
pub const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");

use http::HeaderValue;

mod reason;
mod tier;

pub use reason::NoCacheReason;
pub use tier::{Tier, TierSet, WritePolicy};

/// The outcome class of a request, as counted in stats and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Served from the cache without going upstream.
    Hit,
    /// Went upstream (and maybe stored the answer).
    Miss,
    /// Served a stale entry (while revalidating, on error) or revalidated it with a 304.
    Stale,
    /// The cache was not used for this request.
    Bypass,
}

impl Outcome {
    /// Lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Bypass => "bypass",
        }
    }
}

/// Why a request was forwarded (RFC 9211 §2.2 `fwd` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The request method is not cacheable.
    Method,
    /// No entry for the URL.
    UriMiss,
    /// An entry for the URL, but not for this variant.
    VaryMiss,
    /// No usable entry.
    Miss,
    /// The request's own directives asked to go upstream.
    Request,
    /// The entry was stale and had to be revalidated.
    Stale,
}

impl Fwd {
    /// The RFC 9211 token.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// A small buffer on the stack for building header values (longer text is cut).
struct StackBuf {
    buf: [u8; 160],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl StackBuf {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// The cache's account of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStatus {
    /// Hit, miss, stale or bypass.
    pub outcome: Outcome,
    /// Why it went upstream, if it did.
    pub fwd: Option<Fwd>,
    /// Whether the upstream's answer was stored.
    pub stored: bool,
    /// Whether it was answered from another request's fetch.
    pub collapsed: bool,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// The upstream's status when it went upstream for validation.
    pub fwd_status: Option<u16>,
    /// Extra detail: why not stored, why bypassed.
    pub detail: Option<NoCacheReason>,
    /// Which tier served a hit.
    pub tier: Option<Tier>,
    /// Why a stale entry was served.
    pub stale: Option<Stale>,
}

/// Why a stale entry was served (RFC 5861, RFC 9111 §4.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Served at once while one background request refreshes it.
    WhileRevalidate,
    /// Served because the upstream failed.
    IfError,
    /// The client allowed it with `max-stale`.
    MaxStale,
    /// Served because the upstream is over one of its limits (`stale_if_budget`).
    Throttled(Throttle),
}

/// Why an upstream could not be asked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Throttle {
    /// Its daily budget is spent.
    Budget,
    /// Its rate is reached.
    Rate,
    /// Its requests in flight are at `max_concurrent`.
    Concurrency,
    /// It asked to be left alone (a `429`/`503` with `Retry-After`).
    Backoff,
}

impl Throttle {
    /// Every reason, in slot order.
    pub const ALL: [Throttle; 4] = [
        Throttle::Budget,
        Throttle::Rate,
        Throttle::Concurrency,
        Throttle::Backoff,
    ];

    /// The `detail` token (and the `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Throttle::Budget => "budget",
            Throttle::Rate => "rate",
            Throttle::Concurrency => "concurrency",
            Throttle::Backoff => "backoff",
        }
    }

    /// Its slot in [`Throttle::ALL`].
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The reason an answer that did not go upstream for it carries.
    pub fn reason(self) -> NoCacheReason {
        match self {
            Throttle::Budget => NoCacheReason::OverBudget,
            Throttle::Rate => NoCacheReason::OverRate,
            Throttle::Concurrency => NoCacheReason::OverConcurrency,
            Throttle::Backoff => NoCacheReason::BackingOff,
        }
    }
}

impl Stale {
    /// The `detail` token.
    pub fn as_str(self) -> &'static str {
        match self {
            Stale::WhileRevalidate => "stale-while-revalidate",
            Stale::IfError => "stale-if-error",
            Stale::MaxStale => "max-stale",
            Stale::Throttled(t) => t.as_str(),
        }
    }
}

impl CacheStatus {
    /// A fresh hit with `ttl` seconds left.
    pub fn hit(ttl: i64) -> CacheStatus {
        CacheStatus {
            outcome: Outcome::Hit,
            fwd: None,
            stored: false,
            collapsed: false,
            ttl: Some(ttl),
            fwd_status: None,
            detail: None,
            tier: None,
            stale: None,
        }
    }

    /// A stale entry served for `why`, `ttl` seconds past freshness (negative).
    pub fn stale(why: Stale, ttl: i64) -> CacheStatus {
        let base = match why {
            Stale::IfError => CacheStatus::forwarded(Fwd::Stale).ttl(ttl),
            Stale::WhileRevalidate | Stale::MaxStale | Stale::Throttled(_) => CacheStatus::hit(ttl),
        };
        CacheStatus {
            outcome: Outcome::Stale,
            stale: Some(why),
            ..base
        }
    }

    /// Revalidated with the upstream (`fwd-status` is what it answered) and served from
    /// the cache.
    pub fn revalidated(fwd_status: u16) -> CacheStatus {
        CacheStatus {
            outcome: Outcome::Stale,
            fwd_status: Some(fwd_status),
            ..CacheStatus::forwarded(Fwd::Stale)
        }
    }

    /// Sets `fwd-status`.
    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    /// Forwarded upstream for `fwd`.
    pub fn forwarded(fwd: Fwd) -> CacheStatus {
        CacheStatus {
            outcome: if matches!(fwd, Fwd::Bypass | Fwd::Method) {
                Outcome::Bypass
            } else {
                Outcome::Miss
            },
            fwd: Some(fwd),
            ..CacheStatus::hit(0)
        }
        .no_ttl()
    }

    /// Bypassed for `reason`.
    pub fn bypass(reason: NoCacheReason) -> CacheStatus {
        let fwd = match reason {
            NoCacheReason::Method => Fwd::Method,
            NoCacheReason::RequestNoStore => Fwd::Request,
            _ => Fwd::Bypass,
        };
        CacheStatus {
            outcome: Outcome::Bypass,
            detail: Some(reason),
            ..CacheStatus::forwarded(fwd)
        }
    }

    fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// Sets `stored`.
    pub fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    /// Sets `collapsed`.
    pub fn collapsed(mut self, collapsed: bool) -> Self {
        self.collapsed = collapsed;
        self
    }

    /// Sets `detail`.
    pub fn detail(mut self, reason: NoCacheReason) -> Self {
        self.detail = Some(reason);
        self
    }

    /// Sets `ttl`.
    pub fn ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the tier.
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// The `Cache-Status` member for this cache, e.g. `larder; hit; ttl=42`.
    pub fn header_value(&self, name: &str) -> HeaderValue {
        let mut s = StackBuf::default();
        s.put(name.as_bytes());
        match self.fwd {
            None => s.put(b"; hit"),
            Some(f) => {
                s.put(b"; fwd=");
                s.put(f.as_str().as_bytes());
            }
        }
        if let Some(code) = self.fwd_status {
            let _ = write!(s, "; fwd-status={code}");
        }
        if self.stored {
            s.put(b"; stored");
        }
        if self.collapsed {
            s.put(b"; collapsed");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(s, "; ttl={ttl}");
        }
        let detail = self
            .detail
            .map(NoCacheReason::as_str)
            .or(self.stale.map(Stale::as_str))
            .or(self.tier.map(Tier::as_str));
        if let Some(d) = detail {
            s.put(b"; detail=");
            s.put(d.as_bytes());
        }
        // Built on the stack from a validated token and fixed ASCII: one allocation, the
        // value's own.
        HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("larder"))
    }

    /// The `X-Cache` value.
    pub fn x_cache(&self) -> HeaderValue {
        HeaderValue::from_static(match self.outcome {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Bypass => "BYPASS",
        })
    }
}

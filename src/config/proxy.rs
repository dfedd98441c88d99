//! `[proxy]`: the sidecar's listener, its upstream and the limits it enforces.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Uri};

use super::table::{Key, Reload::*, Table};
use super::ConfigError;
use crate::semantics::hygiene::Cidr;

/// The `[proxy]` section.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where the sidecar listens.
    pub listen: SocketAddr,
    /// The default upstream (`http://` or `https://`); required by `larder serve`.
    pub upstream: Option<Uri>,
    /// PEM certificates trusted for the default upstream besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Time allowed for the upstream's response head; exceeded → 504.
    pub upstream_timeout: Duration,
    /// Time allowed to connect to the upstream; exceeded → 502.
    pub connect_timeout: Duration,
    /// Responses larger than this stream through uncached.
    pub max_body: u64,
    /// Which `Host` the upstream sees.
    pub host: HostHeader,
    /// Longest time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Worker threads of the server's runtime (default: one per core).
    pub workers: Option<usize>,
    /// The largest request head (request line and fields); larger is answered 431.
    pub max_header: u64,
    /// The most request header fields; more is answered 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, counted from the connection's
    /// start or the end of its previous response; then the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Open client connections at most; at the cap the longest-idle one is closed to make
    /// room, or the new one if none is idle. `None`: derived from the file-descriptor limit.
    pub max_connections: Option<usize>,
    /// Peers whose forwarding fields (`X-Forwarded-*`, `Forwarded`) are kept.
    pub trusted_proxies: Vec<Cidr>,
    /// The default upstream's limits (`max_concurrent`, `rate`, `budget`, `queue`, …).
    pub limits: super::UpstreamLimits,
    /// `tls_cert` and `tls_key`: serve HTTPS on `listen` (re-read on reload).
    pub tls: Option<TlsPair>,
}

/// A listener's certificate chain and private key, PEM files checked at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPair {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key of the leaf.
    pub key: std::path::PathBuf,
}

/// The keys that make a listener speak TLS; both are re-read on every reload.
pub(super) const TLS_KEYS: &[Key] = &[("tls_cert", Live), ("tls_key", Live)];

/// `tls_cert` and `tls_key` of a listener's section: both or neither, and a pair that
/// makes a TLS server (the key belongs to the certificate).
pub(super) fn tls_pair(t: &mut Table<'_>) -> Result<Option<TlsPair>, ConfigError> {
    let spans = (t.span_of("tls_cert"), t.span_of("tls_key"));
    let cert = t.parsed("tls_cert", None, super::upstream::existing_file)?;
    let key = t.parsed("tls_key", None, super::upstream::existing_file)?;
    let pair = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => TlsPair { cert, key },
        (Some(_), None) => {
            let at = spans.0.unwrap_or(0);
            return Err(t.error(at, "tls_key", "tls_cert is set, so tls_key must be too"));
        }
        (None, Some(_)) => {
            let at = spans.1.unwrap_or(0);
            return Err(t.error(at, "tls_cert", "tls_key is set, so tls_cert must be too"));
        }
    };
    crate::tls::server::check_pair(&pair.cert, &pair.key)
        .map_err(|e| t.error(spans.0.unwrap_or(0), "tls_cert", e))?;
    Ok(Some(pair))
}

/// Which `Host` header the upstream receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostHeader {
    /// The upstream's authority (default).
    Upstream,
    /// The client's `Host`, unchanged.
    Preserve,
    /// A fixed value.
    Fixed(HeaderValue),
}

/// The keys of `[proxy]`: the listener and the upstream client are built once, so only
/// `max_body` and `trusted_proxies` change on reload.
pub(super) const KEYS: &[Key] = &[
    ("listen", Restart),
    ("upstream", Restart),
    ("ca_file", Restart),
    ("upstream_timeout", Restart),
    ("connect_timeout", Restart),
    ("max_body", Live),
    ("host", Restart),
    ("shutdown_grace", Restart),
    ("workers", Restart),
    ("max_header", Restart),
    ("max_headers", Restart),
    ("header_read_timeout", Restart),
    ("idle_timeout", Restart),
    ("max_connections", Restart),
    ("trusted_proxies", Live),
];

pub(super) fn host_header(text: &str) -> Result<HostHeader, String> {
    match text {
        "upstream" => Ok(HostHeader::Upstream),
        "preserve" => Ok(HostHeader::Preserve),
        other => HeaderValue::from_str(other)
            .map(HostHeader::Fixed)
            .map_err(|_| "expected \"upstream\", \"preserve\" or a host name".into()),
    }
}

impl ProxyConfig {
    pub(super) fn read(
        mut t: Table<'_>,
    ) -> Result<(ProxyConfig, Vec<super::Setting>), ConfigError> {
        let trusted_proxies = t.parsed_list("trusted_proxies", str::parse)?;
        let proxy = ProxyConfig {
            listen: t.addr("listen", "127.0.0.1:8080")?,
            upstream: t.parsed("upstream", None, super::upstream::upstream_url)?,
            ca_file: t.parsed("ca_file", None, super::upstream::existing_file)?,
            upstream_timeout: t.positive_duration("upstream_timeout", "30s")?,
            connect_timeout: t.positive_duration("connect_timeout", "5s")?,
            max_body: t.size("max_body", 8 << 20, 0..=u64::MAX)?,
            host: t
                .parsed("host", Some("upstream"), host_header)?
                .unwrap_or(HostHeader::Upstream),
            shutdown_grace: t.duration("shutdown_grace", "10s")?,
            workers: t.opt_int("workers", 1..=1024)?.map(|n| n as usize),
            max_header: t.size("max_header", 64 << 10, 1024..=16 << 20)?,
            max_headers: t.int("max_headers", 100, 8..=10_000)? as usize,
            header_read_timeout: t.positive_duration("header_read_timeout", "10s")?,
            idle_timeout: t.positive_duration("idle_timeout", "60s")?,
            max_connections: t
                .opt_int("max_connections", 1..=1_000_000)?
                .map(|n| n as usize),
            trusted_proxies,
            limits: super::UpstreamLimits::read(&mut t, &Default::default())?,
            tls: tls_pair(&mut t)?,
        };
        let keys: Vec<Key> = (KEYS.iter().chain(super::limits::KEYS))
            .chain(TLS_KEYS)
            .copied()
            .collect();
        Ok((proxy, t.finish(&keys)?))
    }
}

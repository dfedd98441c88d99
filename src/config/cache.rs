//! `[cache]`: naming, keying, freshness defaults and the knobs of HTTP caching semantics.

use std::time::Duration;

use http::HeaderName;

use super::table::{Key, Reload::*, Table};
use super::{ConfigError, Setting};

/// The `[cache]` section.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// The cache's name in `Cache-Status`.
    pub name: String,
    /// Part of every key: change it to drop everything at once.
    pub namespace: String,
    /// Ttl of a matched rule that sets none when the origin gives none either.
    pub default_ttl: Duration,
    /// Bodies at or over this size are stored gzip-compressed.
    pub compress_min: u64,
    /// Upstream response header with space-separated tags; stripped before the client.
    pub tag_header: Option<HeaderName>,
    /// Honour the upstream's `Cache-Control`/`Expires` where a rule sets no ttl.
    pub respect_origin: bool,
    /// Query parameters left out of keys (`*` at the end matches a prefix, e.g. `utm_*`).
    pub ignore_params: Vec<String>,
    /// Statuses a rule stores.
    pub statuses: Vec<u16>,
    /// Request bodies over this size bypass `key_body` rules.
    pub key_body_max: u64,
    /// How long concurrent misses on one key wait for the first one's answer.
    pub coalesce_wait: Duration,
    /// Whether the request's host is part of keys. Unset: yes for the layer; for the
    /// sidecar, only when the upstream sees the client's `Host` (`proxy.host = "preserve"`).
    pub key_host: Option<bool>,
    /// Heuristic freshness (10% of the time since `Last-Modified`) for responses without
    /// explicit freshness and no rule (RFC 9111 §4.2.2).
    pub heuristic: bool,
    /// The cap on heuristic freshness.
    pub heuristic_max: Duration,
    /// The cache-specific targeted field (RFC 9213), e.g. `Larder-Cache-Control`.
    pub targeted_header: Option<HeaderName>,
    /// Whether `CDN-Cache-Control` applies to this cache.
    pub cdn_cache_control: bool,
    /// Whether `Surrogate-Control` applies to this cache (after the RFC 9213 fields).
    pub surrogate_control: bool,
    /// Whether a client's `no-cache` / `max-age=0` makes larder go upstream.
    pub honor_client_no_cache: bool,
    /// The window over which hit-ratio alerts are computed.
    pub alert_window: Duration,
    /// Fewer requests than this in a window raise no alert.
    pub alert_min_requests: u64,
    /// Refresh-ahead: an entry hit this many times (0: off)...
    pub refresh_ahead_hits: u32,
    /// ...and within this share of its lifetime from expiry is refreshed in the
    /// background, once.
    pub refresh_ahead_share: f64,
    /// Forward everything and serve nothing from the cache, but decide, store and count
    /// what would have been served (the would-be hits and hit ratio per rule).
    pub dry_run: bool,
}

/// The keys of `[cache]`: all change on reload but `key_host` (how keys are made).
pub(super) const KEYS: &[Key] = &[
    ("name", Live),
    ("namespace", Live),
    ("default_ttl", Live),
    ("compress_min", Live),
    ("tag_header", Live),
    ("respect_origin", Live),
    ("ignore_params", Live),
    ("statuses", Live),
    ("key_body_max", Live),
    ("coalesce_wait", Live),
    ("key_host", Restart),
    ("heuristic", Live),
    ("heuristic_max", Live),
    ("targeted_header", Live),
    ("cdn_cache_control", Live),
    ("surrogate_control", Live),
    ("honor_client_no_cache", Live),
    ("alert_window", Live),
    ("alert_min_requests", Live),
    ("refresh_ahead_hits", Live),
    ("refresh_ahead_share", Live),
    ("dry_run", Live),
];

fn token(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
    if ok {
        Ok(name.to_string())
    } else {
        Err("must be a token (letters, digits, '-', '_', '.')".into())
    }
}

fn optional_header(text: &str) -> Result<Option<HeaderName>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    HeaderName::from_bytes(text.as_bytes())
        .map(Some)
        .map_err(|_| "not a valid header name".into())
}

fn targeted(text: &str) -> Result<Option<HeaderName>, String> {
    let name = text.to_ascii_lowercase();
    if !name.is_empty() && (!name.ends_with("-cache-control") || name == "cdn-cache-control") {
        return Err(
            "expected a name like \"Larder-Cache-Control\" (RFC 9213 targeted field)".into(),
        );
    }
    optional_header(&name)
}

impl CacheConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(CacheConfig, Vec<Setting>), ConfigError> {
        let statuses = match t.ints("statuses")? {
            None => vec![200, 203, 204, 300, 301, 404, 410],
            Some(list) => {
                let mut out = Vec::new();
                for (i, (v, at)) in list.into_iter().enumerate() {
                    if !(200..=599).contains(&v) || v == 206 || v == 304 {
                        return Err(t.error(
                            at,
                            &format!("statuses[{i}]"),
                            format!("{v} cannot be stored; expected a final status 200..599 other than 206 and 304"),
                        ));
                    }
                    out.push(v as u16);
                }
                out
            }
        };
        let shown: Vec<String> = statuses.iter().map(u16::to_string).collect();
        t.show("statuses", format!("[{}]", shown.join(", ")));
        let cache = CacheConfig {
            name: t.parsed("name", Some("larder"), token)?.unwrap_or_default(),
            namespace: t.string("namespace", "v1")?,
            default_ttl: t.positive_duration("default_ttl", "5m")?,
            compress_min: t.size("compress_min", 1024, 0..=u64::MAX)?,
            tag_header: t
                .parsed("tag_header", Some("Surrogate-Key"), optional_header)?
                .flatten(),
            respect_origin: t.bool("respect_origin", true)?,
            ignore_params: t
                .strings("ignore_params")?
                .map(|l| l.into_iter().map(|s| s.value).collect())
                .unwrap_or_default(),
            statuses,
            key_body_max: t.size("key_body_max", 1 << 20, 0..=u64::MAX)?,
            coalesce_wait: t.duration("coalesce_wait", "10s")?,
            key_host: t.opt_bool("key_host")?,
            heuristic: t.bool("heuristic", false)?,
            heuristic_max: t.duration("heuristic_max", "1d")?,
            targeted_header: t
                .parsed("targeted_header", Some("Larder-Cache-Control"), targeted)?
                .flatten(),
            cdn_cache_control: t.bool("cdn_cache_control", true)?,
            surrogate_control: t.bool("surrogate_control", true)?,
            honor_client_no_cache: t.bool("honor_client_no_cache", true)?,
            alert_window: t.positive_duration("alert_window", "1m")?,
            alert_min_requests: t.int("alert_min_requests", 20, 0..=i64::MAX)? as u64,
            refresh_ahead_hits: t.int("refresh_ahead_hits", 0, 0..=i64::from(u32::MAX))? as u32,
            refresh_ahead_share: t
                .opt_float(
                    "refresh_ahead_share",
                    |x| x > 0.0 && x < 1.0,
                    "must be between 0 and 1 (exclusive)",
                )?
                .unwrap_or(0.1),
            dry_run: t.bool("dry_run", false)?,
        };
        Ok((cache, t.finish(KEYS)?))
    }
}

//! `[[upstream]]`: named upstreams a rule can send its requests to (`rule.upstream`);
//! `[proxy].upstream` is the default one, named `default`.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use super::proxy::{host_header, HostHeader, ProxyConfig};
use super::table::{Key, Reload::Restart, Table};
use super::{ConfigError, Setting};
use crate::units::format_duration;

/// One upstream: where it is, how larder talks to it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Its name (`default` for `[proxy].upstream`).
    pub name: String,
    /// `http://` or `https://` host, port and an optional base path.
    pub url: Uri,
    /// PEM certificates trusted besides the system's roots (https only).
    pub ca_file: Option<PathBuf>,
    /// Time allowed for the response head; exceeded → 504.
    pub timeout: Duration,
    /// Time allowed to connect (TLS handshake included); exceeded → 502.
    pub connect_timeout: Duration,
    /// Which `Host` it sees.
    pub host: HostHeader,
    /// Idle connections kept open to it.
    pub max_idle: usize,
    /// A path prefix removed before the request goes to it (a prefix-mounted API:
    /// `/llm/v1/chat` with `strip_prefix = "/llm"` and `url = "https://llm.example.com"`
    /// reaches `https://llm.example.com/v1/chat`).
    pub strip_prefix: Option<String>,
    /// What it may be asked (requests in flight, rate, daily budget, queue, retries).
    pub limits: super::UpstreamLimits,
}

pub(super) const KEYS: &[Key] = &[
    ("name", Restart),
    ("url", Restart),
    ("ca_file", Restart),
    ("timeout", Restart),
    ("connect_timeout", Restart),
    ("host", Restart),
    ("max_idle", Restart),
    ("strip_prefix", Restart),
];

/// Parses an upstream URL: absolute `http://` or `https://` with a host, an optional base
/// path, no query.
pub(super) fn upstream_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
        return Err(format!(
            "{text:?} must be an absolute http:// or https:// URL such as \"https://api.example.com\""
        ));
    }
    if uri.authority().is_none() {
        return Err("the upstream URL needs a host".into());
    }
    if uri.query().is_some() {
        return Err("the upstream URL must not have a query; requests keep their own".into());
    }
    Ok(uri)
}

/// A file that exists (checked at load, so a typo is an error with its place).
pub(super) fn existing_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{text:?} is not a readable file"))
    }
}

impl UpstreamConfig {
    /// The default upstream, from `[proxy]`.
    pub(super) fn default_of(proxy: &ProxyConfig) -> Option<UpstreamConfig> {
        Some(UpstreamConfig {
            name: "default".into(),
            url: proxy.upstream.clone()?,
            ca_file: proxy.ca_file.clone(),
            timeout: proxy.upstream_timeout,
            connect_timeout: proxy.connect_timeout,
            host: proxy.host.clone(),
            max_idle: 256,
            strip_prefix: None,
            limits: proxy.limits,
        })
    }

    /// Reads one `[[upstream]]` table; names are unique and `default` is taken.
    pub(super) fn read(
        mut t: Table<'_>,
        proxy: &ProxyConfig,
        earlier: &[UpstreamConfig],
    ) -> Result<(UpstreamConfig, Vec<Setting>), ConfigError> {
        let name = t
            .text("name")?
            .ok_or_else(|| t.error(t.at, "", "missing field `name`"))?;
        let valid = !name.value.is_empty()
            && name
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(t.error(name.at, "name", "must be letters, digits, '-', '_' or '.'"));
        }
        if name.value == "default" || earlier.iter().any(|u| u.name == name.value) {
            return Err(t.error(
                name.at,
                "name",
                format!("an upstream named {:?} already exists", name.value),
            ));
        }
        let url = t
            .parsed("url", None, upstream_url)?
            .ok_or_else(|| t.error(t.at, "", "missing field `url`"))?;
        let strip_prefix = t.parsed("strip_prefix", None, |p| {
            if p.starts_with('/') && !p.ends_with('/') {
                Ok(p.to_string())
            } else {
                Err("expected a path prefix such as \"/llm\" (starting with '/', not ending with one)".to_string())
            }
        })?;
        let upstream = UpstreamConfig {
            name: name.value,
            url,
            ca_file: t.parsed("ca_file", None, existing_file)?,
            timeout: t.positive_duration("timeout", &format_duration(proxy.upstream_timeout))?,
            connect_timeout: t
                .positive_duration("connect_timeout", &format_duration(proxy.connect_timeout))?,
            host: t
                .parsed("host", Some("upstream"), host_header)?
                .unwrap_or(HostHeader::Upstream),
            max_idle: t.int("max_idle", 256, 0..=100_000)? as usize,
            strip_prefix,
            limits: super::UpstreamLimits::read(&mut t, &proxy.limits)?,
        };
        let keys: Vec<Key> = KEYS.iter().chain(super::limits::KEYS).copied().collect();
        Ok((upstream, t.finish(&keys)?))
    }

    /// Whether it is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.url.scheme_str() == Some("https")
    }
}

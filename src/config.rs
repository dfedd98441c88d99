//! The TOML config: schema, defaults and validation with `file:line:col` errors.
//!
//! Unknown keys are errors (a typo must not silently disable caching). Every value is
//! checked at load: patterns compile, tag templates only name captures that exist, methods
//! are real, ttls are positive, addresses parse. An error reads
//! `PATH:LINE:COL: field.path: what is wrong`.
//!
//! ```
//! let cfg = larder::Config::parse_str("inline.toml", r#"
//! [[rule]]
//! name = "job"
//! path = "/jobs/{job_id}"
//! ttl = "60s"
//! tags = ["job:{job_id}"]
//! "#).unwrap();
//! assert_eq!(cfg.rules[0].name, "job");
//!
//! let err = larder::Config::parse_str("bad.toml", "[[rule]]\npath = \"/a\"\nttl = \"0s\"\n")
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "bad.toml:3:7: rule[0].ttl: ttl must be greater than zero");
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderValue, Method, Uri};
use serde::Deserialize;
use toml::Spanned;

use crate::rules::{MethodSet, Pattern, Rule, Template, TtlMode};
use crate::units::{format_duration, format_size, parse_duration, parse_size};

/// A config error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted path of the offending field, e.g. `rule[2].ttl`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// The `[proxy]` section.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where the sidecar listens.
    pub listen: SocketAddr,
    /// The upstream origin (`http://host:port`); required by `larder serve`.
    pub upstream: Option<Uri>,
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
    pub trusted_proxies: Vec<crate::semantics::hygiene::Cidr>,
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

/// The `[admin]` section.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where the admin API listens.
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token for `/admin/*`.
    pub token_env: String,
}

/// Which store holds the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-memory store.
    Memory,
    /// Redis as the shared tier, with the memory store as L1.
    Redis,
}

/// The `[store]` section.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Which store.
    pub backend: Backend,
    /// Bound of the in-process store in bytes (the L1 under Redis).
    pub memory_max: u64,
    /// The Redis URL, for `backend = "redis"`.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    pub redis_prefix: String,
    /// Connections to Redis.
    pub redis_pool: usize,
    /// Longest wait for one Redis command before falling back (L1, or the upstream).
    pub redis_timeout: Duration,
    /// Longest wait for a connection to Redis.
    pub redis_connect_timeout: Duration,
    /// How long a fleet-wide fill lease lasts.
    pub redis_lease: Duration,
    /// Whether the memory store serves as L1 in front of Redis.
    pub l1: bool,
    /// A shorter ttl for L1 copies than the entries' own.
    pub l1_ttl: Option<Duration>,
}

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
}

/// The `[warm]` section: URLs fetched through the cache at start-up and on a schedule.
#[derive(Clone, Debug, Default)]
pub struct WarmConfig {
    /// Paths (with query) to warm.
    pub urls: Vec<String>,
    /// Request headers sent with them (e.g. a user's credentials for per-user entries).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Warm again this often (none: only at start-up).
    pub every: Option<Duration>,
    /// Warm at start-up.
    pub at_start: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// The `[log]` section.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// One structured line per request (target `larder::access`).
    pub access: bool,
}

/// Where a request's user comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSource {
    /// A request header, e.g. `header:Authorization`.
    Header(HeaderName),
    /// A cookie, e.g. `cookie:session`.
    Cookie(String),
}

impl fmt::Display for UserSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSource::Header(h) => write!(f, "header:{h}"),
            UserSource::Cookie(c) => write!(f, "cookie:{c}"),
        }
    }
}

/// The `[users]` section.
#[derive(Clone, Debug)]
pub struct UsersConfig {
    /// Sources tried in order; the first present wins.
    pub sources: Vec<UserSource>,
    /// The environment variable holding the secret that keys user hashes.
    pub secret_env: String,
}

/// A validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[users]`.
    pub users: UsersConfig,
    /// `[[rule]]`s in file order.
    pub rules: Vec<Rule>,
    /// `[warm]`.
    pub warm: WarmConfig,
    /// `[log]`.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_str("<default>", "").expect("the empty config is valid")
    }
}

type Opt<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    proxy: Opt<RawProxy>,
    admin: Opt<RawAdmin>,
    store: Opt<RawStore>,
    cache: Opt<RawCache>,
    users: Opt<RawUsers>,
    warm: Opt<RawWarm>,
    log: Opt<RawLog>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWarm {
    urls: Opt<Vec<Spanned<String>>>,
    headers: Opt<std::collections::BTreeMap<String, Spanned<String>>>,
    every: Opt<String>,
    at_start: Opt<bool>,
    concurrency: Opt<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    access: Opt<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Opt<String>,
    upstream: Opt<String>,
    upstream_timeout: Opt<String>,
    connect_timeout: Opt<String>,
    max_body: Opt<String>,
    host: Opt<String>,
    shutdown_grace: Opt<String>,
    workers: Opt<i64>,
    max_header: Opt<String>,
    max_headers: Opt<i64>,
    header_read_timeout: Opt<String>,
    idle_timeout: Opt<String>,
    max_connections: Opt<i64>,
    trusted_proxies: Opt<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Opt<String>,
    token_env: Opt<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: Opt<String>,
    memory_max: Opt<String>,
    redis_url: Opt<String>,
    redis_prefix: Opt<String>,
    redis_pool: Opt<i64>,
    redis_timeout: Opt<String>,
    redis_connect_timeout: Opt<String>,
    redis_lease: Opt<String>,
    l1: Opt<bool>,
    l1_ttl: Opt<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    name: Opt<String>,
    namespace: Opt<String>,
    default_ttl: Opt<String>,
    compress_min: Opt<String>,
    tag_header: Opt<String>,
    respect_origin: Opt<bool>,
    ignore_params: Opt<Vec<Spanned<String>>>,
    statuses: Opt<Vec<Spanned<i64>>>,
    key_body_max: Opt<String>,
    coalesce_wait: Opt<String>,
    key_host: Opt<bool>,
    heuristic: Opt<bool>,
    heuristic_max: Opt<String>,
    targeted_header: Opt<String>,
    cdn_cache_control: Opt<bool>,
    surrogate_control: Opt<bool>,
    honor_client_no_cache: Opt<bool>,
    alert_window: Opt<String>,
    alert_min_requests: Opt<i64>,
    refresh_ahead_hits: Opt<i64>,
    refresh_ahead_share: Opt<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    sources: Opt<Vec<Spanned<String>>>,
    secret_env: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Opt<String>,
    path: Opt<String>,
    methods: Opt<Vec<Spanned<String>>>,
    ttl: Opt<String>,
    ttl_mode: Opt<String>,
    cache_control: Opt<String>,
    per_user: Opt<bool>,
    tags: Opt<Vec<Spanned<String>>>,
    invalidate_on: Opt<Vec<Spanned<String>>>,
    invalidates: Opt<Vec<Spanned<String>>>,
    cache: Opt<bool>,
    key_body: Opt<bool>,
    allow_set_cookie: Opt<bool>,
    shared: Opt<bool>,
    key_query: Opt<Vec<Spanned<String>>>,
    version: Opt<String>,
    stale_while_revalidate: Opt<String>,
    stale_if_error: Opt<String>,
    miss_cost: Opt<f64>,
    alert_hit_ratio: Opt<f64>,
    prefetch: Opt<Vec<Spanned<String>>>,
}

/// Turns byte offsets into `file:line:col` errors.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// `offset` clamped into the text and down to a character boundary.
    fn boundary(&self, offset: usize) -> usize {
        let mut o = offset.min(self.text.len());
        while !self.text.is_char_boundary(o) {
            o -= 1;
        }
        o
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn error(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = self.line_col(offset);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        }
    }

    fn at<T>(
        &self,
        v: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(v.span().start, field, message)
    }

    /// Best effort: the dotted field path of the key at `offset`, from the table headers
    /// above it and the key on its line.
    fn field_at(&self, offset: usize) -> String {
        let offset = self.boundary(offset);
        let mut table = String::new();
        let mut rule_count: usize = 0;
        let mut key = String::new();
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        for (start, line) in line_offsets(self.text) {
            if start > line_start {
                break;
            }
            let t = line.trim();
            if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim();
                if name == "rule" {
                    table = format!("rule[{rule_count}]");
                    rule_count += 1;
                } else {
                    table = name.to_string();
                }
                key.clear();
            } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = name.trim().to_string();
                key.clear();
            } else if let Some(eq) = t.find('=') {
                let k = t[..eq].trim();
                if !k.is_empty() && !k.starts_with('#') {
                    key = k.trim_matches('"').to_string();
                }
            }
        }
        match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".into(),
            (true, false) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    text.split_inclusive('\n').map(move |line| {
        let s = start;
        start += line.len();
        (s, line)
    })
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            field: "(file)".into(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::parse_str(path, &text)
    }

    /// Validates config text; `path` is used in errors.
    pub fn parse_str(path: impl AsRef<Path>, text: &str) -> Result<Config, ConfigError> {
        let src = Source {
            file: path.as_ref(),
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().replace('\n', " ");
            src.error(offset, src.field_at(offset), message)
        })?;
        let proxy = proxy(&src, raw.proxy)?;
        let admin = admin(&src, raw.admin)?;
        let store = store(&src, raw.store)?;
        let cache = cache(&src, raw.cache)?;
        let users = users(&src, raw.users)?;
        let warm = warm(&src, raw.warm)?;
        let log = LogConfig {
            access: table_of(raw.log).access.is_none_or(Spanned::into_inner),
        };
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, r) in raw.rule.into_iter().enumerate() {
            let rule = rule(&src, i, r, &rules)?;
            rules.push(rule);
        }
        Ok(Config {
            path: path.as_ref().to_path_buf(),
            proxy,
            admin,
            store,
            cache,
            users,
            rules,
            warm,
            log,
        })
    }

    /// The rules and settings as understood, for `larder check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let c = &self.cache;
        let _ = writeln!(out, "config {} is valid", self.path.display());
        let _ = writeln!(
            out,
            "proxy: listen {}, upstream {}, timeout {}, max_body {}",
            self.proxy.listen,
            self.proxy
                .upstream
                .as_ref()
                .map_or_else(|| "(none)".to_string(), Uri::to_string),
            format_duration(self.proxy.upstream_timeout),
            format_size(self.proxy.max_body)
        );
        let _ = writeln!(
            out,
            "admin: listen {}, token from ${}",
            self.admin.listen, self.admin.token_env
        );
        let _ = writeln!(
            out,
            "store: {}, memory_max {}",
            match self.store.backend {
                Backend::Memory => "memory",
                Backend::Redis => "redis",
            },
            format_size(self.store.memory_max)
        );
        let _ = writeln!(
            out,
            "cache: name {:?}, namespace {:?}, default_ttl {}, compress_min {}, respect_origin {}",
            c.name,
            c.namespace,
            format_duration(c.default_ttl),
            format_size(c.compress_min),
            c.respect_origin
        );
        let _ = writeln!(out, "rules ({}, first match wins):", self.rules.len());
        for r in &self.rules {
            let methods: Vec<&str> = r.methods.iter().map(Method::as_str).collect();
            let mut line = format!(
                "  {:>3}. {:<20} {:<8} {}",
                r.index + 1,
                r.name,
                methods.join(","),
                r.pattern.source()
            );
            if !r.cache {
                line.push_str("  cache=false");
            } else {
                let ttl = r.ttl.map_or_else(|| "origin".to_string(), format_duration);
                let _ = write!(line, "  ttl={ttl}");
                if r.ttl.is_some() && r.ttl_mode == TtlMode::Cap {
                    line.push_str(" (cap)");
                }
            }
            if r.per_user {
                line.push_str(" per_user");
            }
            if r.key_body {
                line.push_str(" key_body");
            }
            if let Some(cc) = &r.cache_control {
                let _ = write!(line, " cache_control={:?}", cc.to_str().unwrap_or(""));
            }
            if !r.tags.is_empty() {
                let t: Vec<&str> = r.tags.iter().map(Template::source).collect();
                let _ = write!(line, " tags=[{}]", t.join(", "));
            }
            if !r.invalidate_on.is_empty() {
                let m: Vec<&str> = r.invalidate_on.iter().map(Method::as_str).collect();
                let _ = write!(line, " invalidate_on=[{}]", m.join(","));
            }
            if !r.invalidates.is_empty() {
                let t: Vec<&str> = r.invalidates.iter().map(Template::source).collect();
                let _ = write!(line, " invalidates=[{}]", t.join(", "));
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

fn opt_duration(
    src: &Source,
    v: &Opt<String>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(s.get_ref()).map_err(|m| src.at(s, field, m)),
    }
}

fn opt_size(src: &Source, v: &Opt<String>, field: &str, default: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => parse_size(s.get_ref()).map_err(|m| src.at(s, field, m)),
    }
}

fn positive(
    src: &Source,
    v: &Opt<String>,
    field: &str,
    d: Duration,
) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        let offset = v.as_ref().map_or(0, |s| s.span().start);
        return Err(src.error(offset, field, "must be greater than zero"));
    }
    Ok(d)
}

fn addr(
    src: &Source,
    v: &Opt<String>,
    field: &str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    match v {
        None => Ok(default.parse().expect("default addresses parse")),
        Some(s) => s.get_ref().parse().map_err(|_| {
            src.at(
                s,
                field,
                format!(
                    "{:?} is not a listen address; expected IP:PORT such as \"127.0.0.1:8080\"",
                    s.get_ref()
                ),
            )
        }),
    }
}

fn table_of<T: Default>(v: Opt<T>) -> T {
    v.map(Spanned::into_inner).unwrap_or_default()
}

fn proxy(src: &Source, raw: Opt<RawProxy>) -> Result<ProxyConfig, ConfigError> {
    let r = table_of(raw);
    let upstream = match &r.upstream {
        None => None,
        Some(s) => {
            let uri: Uri = s.get_ref().parse().map_err(|e| {
                src.at(
                    s,
                    "proxy.upstream",
                    format!("{:?} is not a URL: {e}", s.get_ref()),
                )
            })?;
            match uri.scheme_str() {
                Some("http") => {}
                Some("https") => {
                    return Err(src.at(
                        s,
                        "proxy.upstream",
                        "https upstreams are not supported; point larder at the upstream's plain-HTTP address",
                    ))
                }
                _ => {
                    return Err(src.at(
                        s,
                        "proxy.upstream",
                        format!("{:?} must be an absolute http:// URL such as \"http://127.0.0.1:9000\"", s.get_ref()),
                    ))
                }
            }
            if uri.authority().is_none() {
                return Err(src.at(s, "proxy.upstream", "the upstream URL needs a host"));
            }
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(src.at(
                    s,
                    "proxy.upstream",
                    "the upstream URL must not have a path or query; requests keep their own path",
                ));
            }
            Some(uri)
        }
    };
    let host = match &r.host {
        None => HostHeader::Upstream,
        Some(s) => match s.get_ref().as_str() {
            "upstream" => HostHeader::Upstream,
            "preserve" => HostHeader::Preserve,
            other => HostHeader::Fixed(HeaderValue::from_str(other).map_err(|_| {
                src.at(
                    s,
                    "proxy.host",
                    "expected \"upstream\", \"preserve\" or a host name",
                )
            })?),
        },
    };
    let upstream_timeout = opt_duration(
        src,
        &r.upstream_timeout,
        "proxy.upstream_timeout",
        Duration::from_secs(30),
    )?;
    let connect_timeout = opt_duration(
        src,
        &r.connect_timeout,
        "proxy.connect_timeout",
        Duration::from_secs(5),
    )?;
    Ok(ProxyConfig {
        listen: addr(src, &r.listen, "proxy.listen", "127.0.0.1:8080")?,
        upstream,
        upstream_timeout: positive(
            src,
            &r.upstream_timeout,
            "proxy.upstream_timeout",
            upstream_timeout,
        )?,
        connect_timeout: positive(
            src,
            &r.connect_timeout,
            "proxy.connect_timeout",
            connect_timeout,
        )?,
        max_body: opt_size(src, &r.max_body, "proxy.max_body", 8 << 20)?,
        host,
        workers: match &r.workers {
            None => None,
            Some(w) if (1..=1024).contains(w.get_ref()) => Some(*w.get_ref() as usize),
            Some(w) => return Err(src.at(w, "proxy.workers", "must be between 1 and 1024")),
        },
        shutdown_grace: opt_duration(
            src,
            &r.shutdown_grace,
            "proxy.shutdown_grace",
            Duration::from_secs(10),
        )?,
        max_header: match opt_size(src, &r.max_header, "proxy.max_header", 64 << 10)? {
            n if (1024..=(16 << 20)).contains(&n) => n,
            _ => {
                let offset = r.max_header.as_ref().map_or(0, |s| s.span().start);
                return Err(src.error(
                    offset,
                    "proxy.max_header",
                    "must be between 1KiB and 16MiB",
                ));
            }
        },
        max_headers: match &r.max_headers {
            None => 100,
            Some(n) if (8..=10_000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => return Err(src.at(n, "proxy.max_headers", "must be between 8 and 10000")),
        },
        header_read_timeout: positive(
            src,
            &r.header_read_timeout,
            "proxy.header_read_timeout",
            opt_duration(
                src,
                &r.header_read_timeout,
                "proxy.header_read_timeout",
                Duration::from_secs(10),
            )?,
        )?,
        idle_timeout: positive(
            src,
            &r.idle_timeout,
            "proxy.idle_timeout",
            opt_duration(
                src,
                &r.idle_timeout,
                "proxy.idle_timeout",
                Duration::from_secs(60),
            )?,
        )?,
        max_connections: match &r.max_connections {
            None => None,
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => Some(*n.get_ref() as usize),
            Some(n) => {
                return Err(src.at(n, "proxy.max_connections", "must be between 1 and 1000000"))
            }
        },
        trusted_proxies: match &r.trusted_proxies {
            None => Vec::new(),
            Some(list) => list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    c.get_ref()
                        .parse()
                        .map_err(|m: String| src.at(c, format!("proxy.trusted_proxies[{i}]"), m))
                })
                .collect::<Result<_, _>>()?,
        },
    })
}

fn admin(src: &Source, raw: Opt<RawAdmin>) -> Result<AdminConfig, ConfigError> {
    let r = table_of(raw);
    let token_env = match &r.token_env {
        None => "LARDER_ADMIN_TOKEN".to_string(),
        Some(s) if s.get_ref().is_empty() => {
            return Err(src.at(s, "admin.token_env", "must name an environment variable"))
        }
        Some(s) => s.get_ref().clone(),
    };
    Ok(AdminConfig {
        listen: addr(src, &r.listen, "admin.listen", "127.0.0.1:9091")?,
        token_env,
    })
}

fn store(src: &Source, raw: Opt<RawStore>) -> Result<StoreConfig, ConfigError> {
    let r = table_of(raw);
    let backend = match &r.backend {
        None => Backend::Memory,
        Some(s) => match s.get_ref().as_str() {
            "memory" => Backend::Memory,
            "redis" => Backend::Redis,
            other => {
                return Err(src.at(
                    s,
                    "store.backend",
                    format!("unknown backend {other:?}; expected \"memory\" or \"redis\""),
                ))
            }
        },
    };
    let memory_max = opt_size(src, &r.memory_max, "store.memory_max", 256 << 20)?;
    if memory_max < 64 * 1024 {
        let offset = r.memory_max.as_ref().map_or(0, |s| s.span().start);
        return Err(src.error(offset, "store.memory_max", "must be at least 64KiB"));
    }
    if let Some(s) = &r.redis_url {
        let url = s.get_ref();
        let scheme = url.split("://").next().unwrap_or("");
        if !matches!(
            scheme,
            "redis" | "rediss" | "redis-cluster" | "rediss-cluster"
        ) || !url.contains("://")
        {
            return Err(src.at(
                s,
                "store.redis_url",
                "expected redis://host:port/db, rediss://… (TLS) or redis-cluster://host:port?node=host:port",
            ));
        }
        if scheme.starts_with("rediss") && !cfg!(feature = "tls") {
            return Err(src.at(
                s,
                "store.redis_url",
                "this build has no TLS: rebuild with `--features tls` for rediss://",
            ));
        }
    }
    if backend == Backend::Redis && r.redis_url.is_none() {
        let offset = r.backend.as_ref().map_or(0, |s| s.span().start);
        return Err(src.error(
            offset,
            "store.backend",
            "backend = \"redis\" needs store.redis_url",
        ));
    }
    let redis_pool = match &r.redis_pool {
        None => 4,
        Some(n) if (1..=256).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => return Err(src.at(n, "store.redis_pool", "must be between 1 and 256")),
    };
    let redis_timeout = opt_duration(
        src,
        &r.redis_timeout,
        "store.redis_timeout",
        Duration::from_millis(250),
    )?;
    let redis_connect_timeout = opt_duration(
        src,
        &r.redis_connect_timeout,
        "store.redis_connect_timeout",
        Duration::from_secs(2),
    )?;
    let redis_lease = opt_duration(
        src,
        &r.redis_lease,
        "store.redis_lease",
        Duration::from_secs(10),
    )?;
    let l1_ttl = match &r.l1_ttl {
        None => None,
        Some(s) => Some(positive(
            src,
            &r.l1_ttl,
            "store.l1_ttl",
            parse_duration(s.get_ref()).map_err(|m| src.at(s, "store.l1_ttl", m))?,
        )?),
    };
    Ok(StoreConfig {
        backend,
        memory_max,
        redis_url: r.redis_url.map(Spanned::into_inner),
        redis_prefix: r
            .redis_prefix
            .map_or_else(|| "larder".to_string(), Spanned::into_inner),
        redis_pool,
        redis_timeout: positive(src, &r.redis_timeout, "store.redis_timeout", redis_timeout)?,
        redis_connect_timeout: positive(
            src,
            &r.redis_connect_timeout,
            "store.redis_connect_timeout",
            redis_connect_timeout,
        )?,
        redis_lease: positive(src, &r.redis_lease, "store.redis_lease", redis_lease)?,
        l1: r.l1.is_none_or(Spanned::into_inner),
        l1_ttl,
    })
}

fn cache(src: &Source, raw: Opt<RawCache>) -> Result<CacheConfig, ConfigError> {
    let r = table_of(raw);
    let name = r
        .name
        .as_ref()
        .map_or_else(|| "larder".to_string(), |s| s.get_ref().clone());
    if let Some(s) = &r.name {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
        if !token {
            return Err(src.at(
                s,
                "cache.name",
                "must be a token (letters, digits, '-', '_', '.')",
            ));
        }
    }
    let tag_header = match &r.tag_header {
        None => Some(HeaderName::from_static("surrogate-key")),
        Some(s) if s.get_ref().is_empty() => None,
        Some(s) => Some(
            HeaderName::from_bytes(s.get_ref().as_bytes())
                .map_err(|_| src.at(s, "cache.tag_header", "not a valid header name"))?,
        ),
    };
    let statuses = match &r.statuses {
        None => vec![200, 203, 204, 300, 301, 404, 410],
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.get_ref().iter().enumerate() {
                let v = *s.get_ref();
                if !(200..=599).contains(&v) || v == 206 || v == 304 {
                    return Err(src.at(
                        s,
                        format!("cache.statuses[{i}]"),
                        format!("{v} cannot be stored; expected a final status 200..599 other than 206 and 304"),
                    ));
                }
                out.push(v as u16);
            }
            out
        }
    };
    let default_ttl = opt_duration(
        src,
        &r.default_ttl,
        "cache.default_ttl",
        Duration::from_secs(300),
    )?;
    Ok(CacheConfig {
        name,
        namespace: r
            .namespace
            .map_or_else(|| "v1".to_string(), Spanned::into_inner),
        default_ttl: positive(src, &r.default_ttl, "cache.default_ttl", default_ttl)?,
        compress_min: opt_size(src, &r.compress_min, "cache.compress_min", 1024)?,
        tag_header,
        respect_origin: r.respect_origin.is_none_or(Spanned::into_inner),
        ignore_params: r
            .ignore_params
            .map(|v| {
                v.into_inner()
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect()
            })
            .unwrap_or_default(),
        statuses,
        key_body_max: opt_size(src, &r.key_body_max, "cache.key_body_max", 1 << 20)?,
        key_host: r.key_host.map(Spanned::into_inner),
        heuristic: r.heuristic.is_some_and(Spanned::into_inner),
        heuristic_max: opt_duration(
            src,
            &r.heuristic_max,
            "cache.heuristic_max",
            Duration::from_secs(86_400),
        )?,
        targeted_header: match &r.targeted_header {
            None => Some(HeaderName::from_static("larder-cache-control")),
            Some(s) if s.get_ref().is_empty() => None,
            Some(s) => {
                let name = s.get_ref().to_ascii_lowercase();
                if !name.ends_with("-cache-control") || name == "cdn-cache-control" {
                    return Err(src.at(
                        s,
                        "cache.targeted_header",
                        "expected a name like \"Larder-Cache-Control\" (RFC 9213 targeted field)",
                    ));
                }
                Some(
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        src.at(s, "cache.targeted_header", "not a valid header name")
                    })?,
                )
            }
        },
        cdn_cache_control: r.cdn_cache_control.is_none_or(Spanned::into_inner),
        surrogate_control: r.surrogate_control.is_none_or(Spanned::into_inner),
        honor_client_no_cache: r.honor_client_no_cache.is_none_or(Spanned::into_inner),
        alert_window: positive(
            src,
            &r.alert_window,
            "cache.alert_window",
            opt_duration(
                src,
                &r.alert_window,
                "cache.alert_window",
                Duration::from_secs(60),
            )?,
        )?,
        alert_min_requests: match &r.alert_min_requests {
            None => 20,
            Some(n) if *n.get_ref() >= 0 => *n.get_ref() as u64,
            Some(n) => return Err(src.at(n, "cache.alert_min_requests", "must be at least 0")),
        },
        refresh_ahead_hits: match &r.refresh_ahead_hits {
            None => 0,
            Some(n) if (0..=i64::from(u32::MAX)).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => return Err(src.at(n, "cache.refresh_ahead_hits", "must be at least 0")),
        },
        refresh_ahead_share: match &r.refresh_ahead_share {
            None => 0.1,
            Some(s) if *s.get_ref() > 0.0 && *s.get_ref() < 1.0 => *s.get_ref(),
            Some(s) => {
                return Err(src.at(
                    s,
                    "cache.refresh_ahead_share",
                    "must be between 0 and 1 (exclusive)",
                ))
            }
        },
        coalesce_wait: opt_duration(
            src,
            &r.coalesce_wait,
            "cache.coalesce_wait",
            Duration::from_secs(10),
        )?,
    })
}

fn warm(src: &Source, raw: Opt<RawWarm>) -> Result<WarmConfig, ConfigError> {
    let r = table_of(raw);
    let mut urls = Vec::new();
    for (i, u) in r
        .urls
        .as_ref()
        .map(|l| l.get_ref().as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !u.get_ref().starts_with('/') || u.get_ref().parse::<http::uri::PathAndQuery>().is_err()
        {
            return Err(src.at(
                u,
                format!("warm.urls[{i}]"),
                "expected a path such as \"/videos/1?lang=en\"",
            ));
        }
        urls.push(u.get_ref().clone());
    }
    let mut headers = Vec::new();
    for (name, value) in r.headers.iter().flat_map(|h| h.get_ref().iter()) {
        let field = format!("warm.headers.{name}");
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| src.at(value, &field, "not a valid header name"))?;
        let v = HeaderValue::from_str(value.get_ref())
            .map_err(|_| src.at(value, &field, "not a valid header value"))?;
        headers.push((n, v));
    }
    let every = match &r.every {
        None => None,
        Some(s) => Some(positive(
            src,
            &r.every,
            "warm.every",
            parse_duration(s.get_ref()).map_err(|m| src.at(s, "warm.every", m))?,
        )?),
    };
    let concurrency = match &r.concurrency {
        None => 4,
        Some(n) if (1..=256).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => return Err(src.at(n, "warm.concurrency", "must be between 1 and 256")),
    };
    Ok(WarmConfig {
        urls,
        headers,
        every,
        at_start: r.at_start.is_none_or(Spanned::into_inner),
        concurrency,
    })
}

fn users(src: &Source, raw: Opt<RawUsers>) -> Result<UsersConfig, ConfigError> {
    let r = table_of(raw);
    let sources = match &r.sources {
        None => vec![UserSource::Header(http::header::AUTHORIZATION)],
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.get_ref().iter().enumerate() {
                let field = format!("users.sources[{i}]");
                let text = s.get_ref();
                let parsed = if let Some(h) = text.strip_prefix("header:") {
                    HeaderName::from_bytes(h.as_bytes())
                        .ok()
                        .map(UserSource::Header)
                } else if let Some(c) = text.strip_prefix("cookie:") {
                    (!c.is_empty() && !c.contains([';', '=', ' ']))
                        .then(|| UserSource::Cookie(c.to_string()))
                } else {
                    None
                };
                out.push(parsed.ok_or_else(|| {
                    src.at(
                        s,
                        field,
                        format!("{text:?}: expected \"header:NAME\" or \"cookie:NAME\""),
                    )
                })?);
            }
            out
        }
    };
    Ok(UsersConfig {
        sources,
        secret_env: r
            .secret_env
            .map_or_else(|| "LARDER_USER_SECRET".to_string(), Spanned::into_inner),
    })
}

fn methods(
    src: &Source,
    v: &Opt<Vec<Spanned<String>>>,
    field: &str,
) -> Result<Option<Vec<Method>>, ConfigError> {
    let Some(list) = v else { return Ok(None) };
    let mut out = Vec::new();
    for (i, s) in list.get_ref().iter().enumerate() {
        let m = MethodSet::parse_method(s.get_ref())
            .map_err(|m| src.at(s, format!("{field}[{i}]"), m))?;
        out.push(m);
    }
    Ok(Some(out))
}

fn templates(
    src: &Source,
    v: &Opt<Vec<Spanned<String>>>,
    field: &str,
    names: &[String],
) -> Result<Vec<Template>, ConfigError> {
    let Some(list) = v else { return Ok(Vec::new()) };
    list.get_ref()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.get_ref().contains(char::is_whitespace) {
                return Err(src.at(s, format!("{field}[{i}]"), "tags cannot contain whitespace"));
            }
            Template::parse(s.get_ref(), names).map_err(|m| src.at(s, format!("{field}[{i}]"), m))
        })
        .collect()
}

fn rule(
    src: &Source,
    i: usize,
    raw: Spanned<RawRule>,
    earlier: &[Rule],
) -> Result<Rule, ConfigError> {
    let table_start = raw.span().start;
    let r = raw.into_inner();
    let f = |name: &str| format!("rule[{i}].{name}");
    let path = r
        .path
        .as_ref()
        .ok_or_else(|| src.error(table_start, format!("rule[{i}]"), "missing field `path`"))?;
    let pattern = Pattern::parse(path.get_ref()).map_err(|m| src.at(path, f("path"), m))?;
    let names = pattern.capture_names();
    let name = match &r.name {
        Some(n) if n.get_ref().is_empty() || n.get_ref().contains(char::is_whitespace) => {
            return Err(src.at(n, f("name"), "must be non-empty without whitespace"))
        }
        Some(n) => n.get_ref().clone(),
        None => format!("rule{}", i + 1),
    };
    if earlier.iter().any(|e| e.name == name) {
        let offset = r.name.as_ref().map_or(table_start, |n| n.span().start);
        return Err(src.error(
            offset,
            f("name"),
            format!("a rule named {name:?} already exists"),
        ));
    }
    let cache = r.cache.as_ref().is_none_or(|c| *c.get_ref());
    let key_body = r.key_body.as_ref().is_some_and(|c| *c.get_ref());
    let method_list =
        methods(src, &r.methods, &f("methods"))?.unwrap_or_else(|| vec![Method::GET, Method::HEAD]);
    if cache {
        for (j, m) in method_list.iter().enumerate() {
            let offset = r
                .methods
                .as_ref()
                .and_then(|l| l.get_ref().get(j))
                .map_or(table_start, |s| s.span().start);
            let ok = *m == Method::GET || *m == Method::HEAD || (*m == Method::POST && key_body);
            if !ok {
                let msg = if *m == Method::POST {
                    "POST responses are cached only with key_body = true (the body must be part of the key)".to_string()
                } else {
                    format!("{m} responses cannot be cached; use cache = false for a rule that only forwards or invalidates")
                };
                return Err(src.error(offset, format!("{}[{j}]", f("methods")), msg));
            }
        }
    }
    let ttl = match &r.ttl {
        None => None,
        Some(s) => {
            let d = parse_duration(s.get_ref()).map_err(|m| src.at(s, f("ttl"), m))?;
            if d.is_zero() {
                return Err(src.at(s, f("ttl"), "ttl must be greater than zero"));
            }
            Some(d)
        }
    };
    let ttl_mode = match &r.ttl_mode {
        None => TtlMode::Override,
        Some(s) => match s.get_ref().as_str() {
            "override" => TtlMode::Override,
            "cap" => TtlMode::Cap,
            _ => return Err(src.at(s, f("ttl_mode"), "expected \"override\" or \"cap\"")),
        },
    };
    let cache_control = match &r.cache_control {
        None => None,
        Some(s) => Some(
            HeaderValue::from_str(s.get_ref())
                .map_err(|_| src.at(s, f("cache_control"), "not a valid header value"))?,
        ),
    };
    let key_query = r.key_query.as_ref().map(|l| {
        l.get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect::<Vec<_>>()
    });
    let invalidate_on = methods(src, &r.invalidate_on, &f("invalidate_on"))?.unwrap_or_default();
    for (j, m) in invalidate_on.iter().enumerate() {
        if *m == Method::GET || *m == Method::HEAD {
            let s = &r.invalidate_on.as_ref().expect("parsed above").get_ref()[j];
            return Err(src.at(
                s,
                format!("{}[{j}]", f("invalidate_on")),
                "GET and HEAD are safe methods and cannot invalidate",
            ));
        }
    }
    let mut rule = Rule::new(&name, path.get_ref()).map_err(|m| src.at(path, f("path"), m))?;
    rule.pattern = pattern;
    rule.methods = MethodSet::from_methods(&method_list);
    rule.invalidate_on = MethodSet::from_methods(&invalidate_on);
    rule.cache = cache;
    rule.ttl = ttl;
    rule.ttl_mode = ttl_mode;
    rule.cache_control = cache_control;
    rule.per_user = r.per_user.as_ref().is_some_and(|c| *c.get_ref());
    rule.key_body = key_body;
    rule.allow_set_cookie = r.allow_set_cookie.as_ref().is_some_and(|c| *c.get_ref());
    rule.shared = match &r.shared {
        Some(s) if *s.get_ref() && rule.per_user => {
            return Err(src.at(s, f("shared"), "a rule cannot be both shared and per_user"))
        }
        s => s.as_ref().is_some_and(|s| *s.get_ref()),
    };
    rule.key_query = key_query;
    rule.version = r.version.map(Spanned::into_inner);
    rule.stale_while_revalidate = r
        .stale_while_revalidate
        .as_ref()
        .map(|v| parse_duration(v.get_ref()).map_err(|m| src.at(v, f("stale_while_revalidate"), m)))
        .transpose()?;
    rule.stale_if_error = r
        .stale_if_error
        .as_ref()
        .map(|v| parse_duration(v.get_ref()).map_err(|m| src.at(v, f("stale_if_error"), m)))
        .transpose()?;
    rule.miss_cost = match &r.miss_cost {
        Some(c) if !(c.get_ref().is_finite() && *c.get_ref() >= 0.0) => {
            return Err(src.at(c, f("miss_cost"), "must be a number at least 0"))
        }
        c => c.as_ref().map(|c| *c.get_ref()),
    };
    rule.alert_hit_ratio = match &r.alert_hit_ratio {
        Some(a) if !(0.0..=1.0).contains(a.get_ref()) => {
            return Err(src.at(a, f("alert_hit_ratio"), "must be between 0 and 1"))
        }
        a => a.as_ref().map(|a| *a.get_ref()),
    };
    if let Some(list) = &r.prefetch {
        for (j, p) in list.get_ref().iter().enumerate() {
            if !p.get_ref().starts_with('/') {
                return Err(src.at(
                    p,
                    format!("{}[{j}]", f("prefetch")),
                    "prefetch paths start with '/'",
                ));
            }
        }
    }
    rule.prefetch = templates(src, &r.prefetch, &f("prefetch"), &names)?;
    rule.tags = templates(src, &r.tags, &f("tags"), &names)?;
    rule.invalidates = templates(src, &r.invalidates, &f("invalidates"), &names)?;
    rule.index = i;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse_str("t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::parse_str("t.toml", "").unwrap();
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.cache.default_ttl, Duration::from_secs(300));
        assert_eq!(c.cache.compress_min, 1024);
        assert_eq!(c.store.backend, Backend::Memory);
    }

    #[test]
    fn errors_name_line_column_and_field() {
        assert_eq!(
            err("[proxy]\nlisten = \"nope\"\n"),
            "t.toml:2:10: proxy.listen: \"nope\" is not a listen address; expected IP:PORT such as \"127.0.0.1:8080\""
        );
        let e = err("[cache]\ndefault_tll = \"5m\"\n");
        assert!(
            e.starts_with("t.toml:2:1: cache.default_tll: unknown field `default_tll`"),
            "{e}"
        );
        let e = err(
            "[[rule]]\npath = \"/a\"\n[[rule]]\npath = \"/jobs/{id}\"\ntags = [\"job:{job}\"]\n",
        );
        assert!(
            e.starts_with("t.toml:5:9: rule[1].tags[0]: template"),
            "{e}"
        );
        let e = err("[[rule]]\npath = \"/a\"\nmethods = [\"GETT\"]\n");
        assert!(
            e.starts_with("t.toml:3:12: rule[0].methods[0]: unknown method"),
            "{e}"
        );
        let e = err("[[rule]]\npath = \"/a\"\nmethods = [\"POST\"]\n");
        assert!(e.contains("key_body"), "{e}");
        let e = err("[[rule]]\nttl = \"1s\"\n");
        assert!(
            e.starts_with("t.toml:1:1: rule[0]: missing field `path`"),
            "{e}"
        );
        let e = err("[cache]\ndefault_ttl = \"5 minutes\"\n");
        assert!(e.starts_with("t.toml:2:15: cache.default_ttl:"), "{e}");
        let e = err("[proxy]\nmax_body = 12\n");
        assert!(
            e.starts_with("t.toml:2:12: proxy.max_body: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_rule_names_rejected() {
        let e =
            err("[[rule]]\nname = \"a\"\npath = \"/a\"\n[[rule]]\nname = \"a\"\npath = \"/b\"\n");
        assert!(e.starts_with("t.toml:5:8: rule[1].name:"), "{e}");
    }
}

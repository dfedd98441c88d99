//! `[store]`: the memory tier's bound and the tiers below it (`[store.disk]`, Redis).

use std::path::PathBuf;
use std::time::Duration;

use super::table::{Key, Reload::Live, Reload::Restart, Table};
use super::{ConfigError, Setting};
use crate::store::disk::WriteMode;

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
    /// Above this share of Redis's maxmemory, `/health` is degraded.
    pub redis_memory_warn: f64,
    /// Whether the memory store serves as L1 in front of Redis.
    pub l1: bool,
    /// A shorter ttl for L1 copies than the entries' own.
    pub l1_ttl: Option<Duration>,
    /// `[store.disk]`: the persistent tier, below memory and above Redis.
    pub disk: Option<DiskConfig>,
}

/// The `[store.disk]` section.
#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// The directory the tier keeps its files in.
    pub path: PathBuf,
    /// Bound of its files in bytes.
    pub max: u64,
    /// `through`: on disk before the answer completes; `back`: within about 100 ms.
    pub write: WriteMode,
}

pub(super) const DISK_KEYS: &[Key] = &[("path", Restart), ("max", Restart), ("write", Restart)];

impl DiskConfig {
    fn read(mut t: Table<'_>) -> Result<(DiskConfig, Vec<Setting>), ConfigError> {
        let path = t.text("path")?.ok_or_else(|| {
            t.error(
                t.at,
                "path",
                "missing field `path` (the directory the disk tier keeps its files in)",
            )
        })?;
        if path.value.is_empty() {
            return Err(t.error(path.at, "path", "must not be empty"));
        }
        t.show("path", path.value.clone());
        let write = match t.text("write")? {
            None => WriteMode::Through,
            Some(w) => match w.value.as_str() {
                "through" => WriteMode::Through,
                "back" => WriteMode::Back,
                other => {
                    return Err(t.error(
                        w.at,
                        "write",
                        format!("unknown write mode {other:?}; expected \"through\" or \"back\""),
                    ))
                }
            },
        };
        t.show(
            "write",
            match write {
                WriteMode::Through => "through",
                WriteMode::Back => "back",
            },
        );
        let disk = DiskConfig {
            path: PathBuf::from(path.value),
            max: t.size("max", 1 << 30, 4 << 20..=u64::MAX)?,
            write,
        };
        Ok((disk, t.finish(DISK_KEYS)?))
    }
}

/// The keys of `[store]`: the tiers are built once, so none changes on reload.
pub(super) const KEYS: &[Key] = &[
    ("backend", Restart),
    ("memory_max", Restart),
    ("redis_url", Restart),
    ("redis_password", Restart),
    ("redis_prefix", Restart),
    ("redis_pool", Restart),
    ("redis_timeout", Restart),
    ("redis_connect_timeout", Restart),
    ("redis_lease", Restart),
    ("redis_memory_warn", Live),
    ("l1", Restart),
    ("l1_ttl", Restart),
    ("disk", Restart),
];

fn backend(text: &str) -> Result<Backend, String> {
    match text {
        "memory" => Ok(Backend::Memory),
        "redis" => Ok(Backend::Redis),
        other => Err(format!(
            "unknown backend {other:?}; expected \"memory\" or \"redis\" (the disk tier is [store.disk], beside either)"
        )),
    }
}

fn redis_url(url: &str) -> Result<String, String> {
    let scheme = url.split("://").next().unwrap_or("");
    let known = matches!(
        scheme,
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster"
    );
    if !known || !url.contains("://") {
        return Err("expected redis://host:port/db, rediss://… (TLS) or redis-cluster://host:port?node=host:port".into());
    }
    if scheme.starts_with("rediss") && !cfg!(feature = "tls") {
        return Err("this build has no TLS: rebuild with `--features tls` for rediss://".into());
    }
    Ok(url.to_string())
}

/// `url` with `password` as its password (percent-encoded; the user name, if any, kept).
///
/// ```
/// use larder::config::with_password;
/// assert_eq!(with_password("redis://h:6379/0", "p@ss"), "redis://:p%40ss@h:6379/0");
/// assert_eq!(with_password("redis://u:old@h:6379", "new"), "redis://u:new@h:6379");
/// ```
pub fn with_password(url: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or(""), host),
        None => ("", authority),
    };
    let mut encoded = String::with_capacity(password.len());
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{scheme}://{user}:{encoded}@{host}{tail}")
}

/// A URL with its password replaced by `****` (for `larder check` and logs).
///
/// ```
/// assert_eq!(larder::config::mask_password("redis://u:secret@h:6379/0"), "redis://u:****@h:6379/0");
/// assert_eq!(larder::config::mask_password("redis://:secret@h"), "redis://:****@h");
/// assert_eq!(larder::config::mask_password("redis://h:6379"), "redis://h:6379");
/// ```
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                "****".to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

impl StoreConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(StoreConfig, Vec<Setting>), ConfigError> {
        let backend_text = t.text("backend")?;
        let backend_at = backend_text.as_ref().map_or(t.at, |b| b.at);
        let backend = match &backend_text {
            None => Backend::Memory,
            Some(b) => self::backend(&b.value).map_err(|m| t.error(b.at, "backend", m))?,
        };
        t.show("backend", backend_text.map_or("memory".into(), |b| b.value));
        let password = t.text("redis_password")?.filter(|p| !p.value.is_empty());
        if password.is_some() {
            t.show("redis_password", "****");
        }
        let redis_url = match t.text("redis_url")? {
            None => None,
            Some(u) => {
                let mut url =
                    self::redis_url(&u.value).map_err(|m| t.error(u.at, "redis_url", m))?;
                if let Some(p) = &password {
                    url = with_password(&url, &p.value);
                }
                t.show("redis_url", mask_password(&url));
                Some(url)
            }
        };
        if backend == Backend::Redis && redis_url.is_none() {
            return Err(t.error(
                backend_at,
                "backend",
                "backend = \"redis\" needs store.redis_url",
            ));
        }
        let store = StoreConfig {
            backend,
            memory_max: t.size("memory_max", 256 << 20, 64 << 10..=u64::MAX)?,
            redis_url,
            redis_prefix: t.string("redis_prefix", "larder")?,
            redis_pool: t.int("redis_pool", 4, 1..=256)? as usize,
            redis_timeout: t.positive_duration("redis_timeout", "250ms")?,
            redis_connect_timeout: t.positive_duration("redis_connect_timeout", "2s")?,
            redis_lease: t.positive_duration("redis_lease", "10s")?,
            redis_memory_warn: t
                .opt_float(
                    "redis_memory_warn",
                    |x| x > 0.0 && x <= 1.0,
                    "must be above 0 and at most 1",
                )?
                .unwrap_or(0.9),
            l1: t.bool("l1", true)?,
            l1_ttl: t.opt_positive_duration("l1_ttl")?,
            disk: None,
        };
        let mut settings = Vec::new();
        let store = match t.table("disk")? {
            None => store,
            Some(d) => {
                let (disk, read) = DiskConfig::read(d)?;
                settings = read;
                StoreConfig {
                    disk: Some(disk),
                    ..store
                }
            }
        };
        settings.extend(t.finish(KEYS)?);
        Ok((store, settings))
    }
}

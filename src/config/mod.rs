//! The TOML config: one file per section, each key read once with its default and its
//! validation (see [`table`]), errors as `PATH:LINE:COL: field.path: what is wrong`.
//!
//! Unknown keys are errors (a typo must not silently disable caching). Every value is
//! checked at load: patterns compile, tag templates only name captures that exist, methods
//! are real, ttls are positive, addresses parse. Any string value may hold `${VAR}` or
//! `${VAR:-default}` from the environment.
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

mod admin;
mod cache;
mod limits;
mod llm;
mod log;
mod proxy;
mod rule;
mod source;
mod store;
pub(crate) mod table;
mod upstream;
mod users;
mod warm;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use http::Method;
use toml::de::DeTable;

pub use crate::error::ConfigError;
pub use admin::AdminConfig;
pub use cache::CacheConfig;
pub use limits::{Rate, UpstreamLimits};
pub use llm::{LlmConfig, Price};
pub use log::LogConfig;
pub use proxy::{HostHeader, ProxyConfig, TlsPair};
pub use store::{mask_password, with_password, Backend, DiskConfig, StoreConfig};
pub use table::{expand_env, Reload, Setting};
pub use upstream::UpstreamConfig;
pub use users::{UserSource, UsersConfig};
pub use warm::WarmConfig;

use crate::rules::{Rule, Template, TtlMode};
use crate::units::format_duration;
use source::Source;
use table::{Key, Reload::Live, Reload::Restart, Table};

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
    /// The upstreams: `default` (`[proxy].upstream`, when set) first, then each
    /// `[[upstream]]`.
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[rule]]`s in file order.
    pub rules: Vec<Rule>,
    /// `[warm]`.
    pub warm: WarmConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[llm]`.
    pub llm: LlmConfig,
    /// Every setting of the sections as read (defaults included), for `larder check` and
    /// for telling which changes a reload cannot apply.
    pub settings: Vec<Setting>,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_str("<default>", "").expect("the empty config is valid")
    }
}

const SECTIONS: &[Key] = &[
    ("proxy", Live),
    ("admin", Live),
    ("store", Live),
    ("cache", Live),
    ("users", Live),
    ("warm", Live),
    ("log", Live),
    ("llm", Live),
    ("upstream", Restart),
    ("rule", Live),
];

/// Reads one section into its type, with the settings it read.
type SectionReader<'a, T> = fn(Table<'a>) -> Result<(T, Vec<Setting>), ConfigError>;

/// Reads the section `name` (an absent one gives its defaults) with `read`, adding what it
/// read to `settings`.
fn section<'a, T>(
    top: &mut Table<'a>,
    src: &'a Source<'a>,
    name: &str,
    read: SectionReader<'a, T>,
    settings: &mut Vec<Setting>,
) -> Result<T, ConfigError> {
    let table = top
        .table(name)?
        .unwrap_or_else(|| Table::new(src, name, None, 0));
    let (value, read) = read(table)?;
    settings.extend(read);
    Ok(value)
}

/// Every key the loader accepts, as `section.key` (`rule.ttl`, `store.disk.path`, …):
/// the reference in `docs/configuration.md` lists each.
pub fn accepted_keys() -> Vec<String> {
    let sections: [(&str, &[Key]); 13] = [
        ("proxy", proxy::KEYS),
        ("proxy", limits::KEYS),
        ("upstream", limits::KEYS),
        ("admin", admin::KEYS),
        ("store", store::KEYS),
        ("store.disk", store::DISK_KEYS),
        ("cache", cache::KEYS),
        ("users", users::KEYS),
        ("warm", warm::KEYS),
        ("log", log::KEYS),
        ("llm", llm::KEYS),
        ("upstream", upstream::KEYS),
        ("rule", rule::KEYS),
    ];
    sections
        .iter()
        .flat_map(|(sec, keys)| keys.iter().map(move |(k, _)| format!("{sec}.{k}")))
        .collect()
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Source::unreadable(path, format!("cannot read the config file: {e}")))?;
        Config::parse_str(path, &text)
    }

    /// Validates config text; `path` is used in errors.
    pub fn parse_str(path: impl AsRef<Path>, text: &str) -> Result<Config, ConfigError> {
        let src = Source {
            file: path.as_ref(),
            text,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().replace('\n', " ");
            src.error(offset, src.field_at(offset), message)
        })?;
        let mut top = Table::new(&src, "", Some(doc.get_ref()), 0);
        let mut settings = Vec::new();
        let proxy = section(&mut top, &src, "proxy", ProxyConfig::read, &mut settings)?;
        let admin = section(&mut top, &src, "admin", AdminConfig::read, &mut settings)?;
        let store = section(&mut top, &src, "store", StoreConfig::read, &mut settings)?;
        let cache = section(&mut top, &src, "cache", CacheConfig::read, &mut settings)?;
        let users = section(&mut top, &src, "users", UsersConfig::read, &mut settings)?;
        let warm = section(&mut top, &src, "warm", WarmConfig::read, &mut settings)?;
        let log = section(&mut top, &src, "log", LogConfig::read, &mut settings)?;
        let llm = section(&mut top, &src, "llm", LlmConfig::read, &mut settings)?;
        let mut upstreams: Vec<UpstreamConfig> =
            UpstreamConfig::default_of(&proxy).into_iter().collect();
        for t in top.tables("upstream")? {
            let (u, read) = UpstreamConfig::read(t, &proxy, &upstreams)?;
            settings.extend(read);
            upstreams.push(u);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, t) in top.tables("rule")?.into_iter().enumerate() {
            let r = rule::read(t, i, &rules, &upstreams, &store)?;
            rules.push(r);
        }
        top.finish(SECTIONS)?;
        Ok(Config {
            path: path.as_ref().to_path_buf(),
            proxy,
            admin,
            store,
            cache,
            users,
            upstreams,
            rules,
            warm,
            log,
            llm,
            settings,
        })
    }

    /// The names of settings whose change a reload from `self` to `new` cannot apply.
    pub fn restart_needed(&self, new: &Config) -> Vec<String> {
        let restart_only = |key: &str| {
            self.settings
                .iter()
                .chain(new.settings.iter())
                .any(|s| s.key == key && s.reload == Reload::Restart)
        };
        let value = |c: &Config, key: &str| {
            c.settings
                .iter()
                .find(|s| s.key == key)
                .map(|s| s.shown.clone())
        };
        let mut keys: Vec<&str> = self
            .settings
            .iter()
            .chain(new.settings.iter())
            .map(|s| s.key.as_str())
            .filter(|k| restart_only(k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter(|k| {
                // An unset cache.key_host keeps how keys were made.
                !(*k == "cache.key_host" && new.cache.key_host.is_none())
            })
            .filter(|k| value(self, k) != value(new, k))
            .map(str::to_string)
            .collect()
    }

    /// The settings and rules as understood, for `larder check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "config {} is valid", self.path.display());
        let mut section = "";
        for s in &self.settings {
            let (sec, key) = s.key.split_once('.').unwrap_or(("", &s.key));
            if sec != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                let _ = write!(out, "{sec}:");
                section = sec;
            }
            let _ = write!(out, " {key}={}", s.shown);
            if !s.env.is_empty() {
                let _ = write!(out, " (env {})", s.env.join(", "));
            }
        }
        out.push('\n');
        let _ = writeln!(out, "rules ({}, first match wins):", self.rules.len());
        for r in &self.rules {
            let _ = writeln!(out, "{}", describe_rule(r, &self.upstreams));
        }
        out
    }
}

fn describe_rule(r: &Rule, upstreams: &[UpstreamConfig]) -> String {
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
    for (on, word) in [
        (r.per_user, "per_user"),
        (r.key_body, "key_body"),
        (r.shared, "shared"),
    ] {
        if on {
            let _ = write!(line, " {word}");
        }
    }
    if let Some(api) = r.llm {
        let _ = write!(line, " llm={}", api.name());
        if r.store_truncated {
            line.push_str(" store_truncated");
        }
    }
    if let Some(cc) = &r.cache_control {
        let _ = write!(line, " cache_control={:?}", cc.to_str().unwrap_or(""));
    }
    let lists: [(&str, &[Template]); 3] = [
        ("tags", &r.tags),
        ("invalidates", &r.invalidates),
        ("prefetch", &r.prefetch),
    ];
    for (name, list) in lists {
        if !list.is_empty() {
            let t: Vec<&str> = list.iter().map(Template::source).collect();
            let _ = write!(line, " {name}=[{}]", t.join(", "));
        }
    }
    if !r.invalidate_on.is_empty() {
        let m: Vec<&str> = r.invalidate_on.iter().map(Method::as_str).collect();
        let _ = write!(line, " invalidate_on=[{}]", m.join(","));
    }
    let upstream = r.upstream.as_deref().unwrap_or("default");
    match upstreams.iter().find(|u| u.name == upstream) {
        Some(u) => {
            let _ = write!(
                line,
                " upstream={upstream} ({})",
                mask_password(&u.url.to_string())
            );
        }
        None => {
            let _ = write!(line, " upstream=(none)");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let cases = [
            ("[cache]\ndefault_tll = \"5m\"\n", "t.toml:2:1: cache.default_tll: unknown field `default_tll`"),
            ("[[rule]]\npath = \"/a\"\n[[rule]]\npath = \"/jobs/{id}\"\ntags = [\"job:{job}\"]\n", "t.toml:5:9: rule[1].tags[0]: template"),
            ("[[rule]]\npath = \"/a\"\nmethods = [\"GETT\"]\n", "t.toml:3:12: rule[0].methods[0]: unknown method"),
            ("[[rule]]\npath = \"/a\"\nmethods = [\"POST\"]\n", "t.toml:3:12: rule[0].methods[0]: POST responses are cached only with key_body"),
            ("[[rule]]\nttl = \"1s\"\n", "t.toml:1:1: rule[0]: missing field `path`"),
            ("[cache]\ndefault_ttl = \"5 minutes\"\n", "t.toml:2:15: cache.default_ttl:"),
            ("[proxy]\nmax_body = 12\n", "t.toml:2:12: proxy.max_body: invalid type"),
            ("[nope]\n", "t.toml:1:2: nope: unknown field `nope`"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn duplicate_rule_names_rejected() {
        let e =
            err("[[rule]]\nname = \"a\"\npath = \"/a\"\n[[rule]]\nname = \"a\"\npath = \"/b\"\n");
        assert!(e.starts_with("t.toml:5:8: rule[1].name:"), "{e}");
    }

    #[test]
    fn environment_references_expand_and_missing_ones_are_errors() {
        std::env::set_var("LARDER_TEST_UPSTREAM_PORT", "9123");
        let c = Config::parse_str(
            "t.toml",
            "[proxy]\nupstream = \"http://127.0.0.1:${LARDER_TEST_UPSTREAM_PORT}\"\n[cache]\ndefault_ttl = \"${LARDER_TEST_TTL_UNSET:-90s}\"\n",
        )
        .unwrap();
        assert_eq!(
            c.proxy.upstream.unwrap().to_string(),
            "http://127.0.0.1:9123/"
        );
        assert_eq!(c.cache.default_ttl, Duration::from_secs(90));
        let e = err("[store]\nredis_url = \"redis://${LARDER_TEST_NOT_SET}/0\"\n");
        assert!(
            e.starts_with(
                "t.toml:2:13: store.redis_url: environment variable LARDER_TEST_NOT_SET is not set"
            ),
            "{e}"
        );
    }

    #[test]
    fn check_masks_passwords_and_reload_names_restart_only_changes() {
        let a = Config::parse_str(
            "t.toml",
            "[store]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter2@h:6379/0\"\n",
        )
        .unwrap();
        let text = a.describe();
        assert!(
            !text.contains("hunter2") && text.contains("redis://u:****@h:6379/0"),
            "{text}"
        );
        let b = Config::parse_str("t.toml", "[proxy]\nmax_body = \"1MiB\"\nlisten = \"127.0.0.1:1\"\n[cache]\ndefault_ttl = \"1m\"\n").unwrap();
        let c = Config::parse_str("t.toml", "").unwrap();
        assert_eq!(c.restart_needed(&b), vec!["proxy.listen".to_string()]);
    }
}

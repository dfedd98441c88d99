//! [`Builder`]: a [`CacheLayer`] without a config file, by-value setters over the config's
//! defaults.

use std::time::Duration;

use http::HeaderName;

use super::CacheLayer;
use crate::cache::{Cache, Settings};
use crate::config::{Config, UserSource};
use crate::key::random_secret;
use crate::ops::Tasks;
use crate::rules::{RuleBuilder, Scope};
use crate::stats::Stats;

/// Builds a [`CacheLayer`] in code; see [`CacheLayer::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    config: Config,
    rules: Vec<RuleBuilder>,
    secret: Option<Vec<u8>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults of an empty config file: memory store of 256 MiB, no rules (a plain
    /// RFC 9111 shared cache).
    pub fn new() -> Builder {
        Builder {
            config: Config::default(),
            rules: Vec::new(),
            secret: None,
        }
    }

    /// Adds a rule (rules are tried in the order added; the first match wins).
    pub fn rule(mut self, rule: RuleBuilder) -> Self {
        self.rules.push(rule);
        self
    }

    /// The memory store's bound in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.config.store.memory_max = bytes;
        self
    }

    /// The namespace every key includes (change it to drop everything at once).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.cache.namespace = namespace.to_string();
        self
    }

    /// The ttl of a rule that sets none when the origin gives no freshness either.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.cache.default_ttl = ttl;
        self
    }

    /// Where a request's user comes from: these headers, first present wins.
    pub fn user_headers<I: IntoIterator<Item = HeaderName>>(mut self, headers: I) -> Self {
        self.config.users.sources = headers.into_iter().map(UserSource::Header).collect();
        self
    }

    /// The secret that keys user hashes (default: random per process).
    pub fn user_secret(mut self, secret: &[u8]) -> Self {
        self.secret = Some(secret.to_vec());
        self
    }

    /// Builds the layer; a rule that does not validate is an error naming it.
    pub fn build(self) -> Result<CacheLayer, crate::Error> {
        let mut config = self.config;
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.into_iter().enumerate() {
            let scope = Scope {
                index: i,
                earlier: &rules,
                upstreams: None,
                disk: config.store.disk.is_some(),
                redis: config.store.backend == crate::config::Backend::Redis,
            };
            let rule = r
                .validate(&scope)
                .map_err(|e| crate::Error::Rule(format!("rule {}: {e}", i + 1)))?;
            rules.push(rule);
        }
        config.rules = rules;
        let secret = self.secret.unwrap_or_else(|| random_secret().to_vec());
        let stats = Stats::default();
        let settings = Settings::new(config, &stats, &secret)?;
        let tiers = crate::cache::tiers::open(&settings.config.store)?;
        let cache = Cache::from_parts(settings, stats, &secret, tiers);
        // The tasks hold the cache weakly and end with it.
        let _ = Tasks::start(&cache);
        Ok(CacheLayer::from_cache(cache))
    }
}

//! What a request needs from the config, compiled once per (re)load and swapped
//! atomically: rules, user identification, counters by rule, targeted fields.

use std::sync::Arc;

use http::header::HeaderName;

use crate::config::{Backend, Config, UsersConfig};
use crate::key::jwt::{JwtKeys, JwtVerifier};
use crate::key::{self, Users};
use crate::rules::RuleSet;
use crate::stats::{Counters, Stats, UNMATCHED};

/// Everything a request needs to know from the config, compiled once per (re)load.
pub struct Settings {
    /// The config these settings came from.
    pub config: Config,
    /// The compiled rules.
    pub rules: RuleSet,
    /// Counters by rule index.
    pub(crate) counters: Vec<Arc<Counters>>,
    /// Counters of requests no rule matched.
    pub(crate) unmatched: Arc<Counters>,
    /// User identification.
    pub(crate) users: Users,
    /// The `Cache-Status` header name.
    pub(crate) cache_status: HeaderName,
    /// Whether the request's host is part of keys.
    pub(crate) key_host: bool,
    /// Targeted cache-control fields this cache obeys, most specific first (RFC 9213).
    pub(crate) targeted: Vec<HeaderName>,
}

impl Settings {
    /// Compiles `config`; counters come from `stats` (kept across reloads by rule name).
    /// Fails when a `jwt:` user source has no key to verify with.
    pub(crate) fn new(
        config: Config,
        stats: &Stats,
        secret: &[u8],
    ) -> Result<Settings, crate::Error> {
        let rules = RuleSet::new(config.rules.clone());
        let counters = rules.rules().iter().map(|r| stats.rule(&r.name)).collect();
        let users = users(&config.users, secret)?;
        let c = &config.cache;
        let targeted = c
            .targeted_header
            .iter()
            .cloned()
            .chain(
                c.cdn_cache_control
                    .then(|| HeaderName::from_static("cdn-cache-control")),
            )
            .chain(
                c.surrogate_control
                    .then(|| HeaderName::from_static("surrogate-control")),
            )
            .collect();
        Ok(Settings {
            rules,
            counters,
            unmatched: stats.rule(UNMATCHED),
            users,
            cache_status: HeaderName::from_static("cache-status"),
            key_host: c.key_host.unwrap_or(true),
            targeted,
            config,
        })
    }

    /// The counters for a rule index, or the unmatched counters.
    pub(crate) fn counters(&self, rule: Option<usize>) -> &Counters {
        rule.and_then(|i| self.counters.get(i))
            .unwrap_or(&self.unmatched)
    }

    /// The rule at `index`, if any.
    pub(crate) fn rule(&self, index: Option<usize>) -> Option<&crate::rules::Rule> {
        index.and_then(|i| self.rules.rules().get(i))
    }

    /// The implicit tag of a URL, normalised the way the rule for its path keys it.
    pub(crate) fn url_tag(&self, url: &str) -> u64 {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        let path = key::normalize_percent(path);
        let rule = self.rules.find(&http::Method::GET, &path);
        key::url_tag(
            &self.config.cache.namespace,
            &path,
            query,
            &self.config.cache.ignore_params,
            rule.and_then(|r| r.key_query.as_deref()),
        )
    }
}

/// User identification, with the JWT verifier `jwt:` sources need (its HS256 key from
/// `users.jwt_secret_env`, its public key from `users.jwt_public_key`).
fn users(c: &UsersConfig, secret: &[u8]) -> Result<Users, crate::Error> {
    let users = Users::new(c.sources.clone(), secret);
    if !c.uses_jwt() {
        return Ok(users);
    }
    let env = |m: String| crate::Error::Environment(m);
    let public_pem = match &c.jwt_public_key {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            env(format!(
                "users.jwt_public_key: cannot read {}: {e}",
                path.display()
            ))
        })?),
    };
    let keys = JwtKeys {
        secret: std::env::var(&c.jwt_secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes),
        public_pem,
        issuer: c.jwt_issuer.clone(),
        audience: c.jwt_audience.clone(),
        leeway: c.jwt_leeway,
    };
    if keys.secret.is_none() && keys.public_pem.is_none() {
        return Err(env(format!(
            "users.sources has a jwt: source but no key to verify tokens: set ${} (HS256, users.jwt_secret_env) or users.jwt_public_key (RS256/ES256)",
            c.jwt_secret_env
        )));
    }
    let verifier = JwtVerifier::new(keys).map_err(|m| env(format!("users.jwt_public_key: {m}")))?;
    Ok(users.with_jwt(verifier))
}

/// The secret that keys user hashes: from `users.secret_env`, else random per process
/// (refused with per-user rules on Redis: instances must key a user alike, or they would
/// neither share that user's entries nor drop them on a per-user invalidation).
pub(crate) fn user_secret(config: &Config) -> Result<Vec<u8>, crate::Error> {
    let per_user = config.rules.iter().any(|r| r.per_user);
    match std::env::var(&config.users.secret_env) {
        Ok(s) if !s.is_empty() => Ok(s.into_bytes()),
        _ if per_user && config.store.backend == Backend::Redis => Err(crate::Error::Environment(format!(
            "per_user rules on the redis backend need the same user secret on every instance: set ${}",
            config.users.secret_env
        ))),
        _ => {
            if per_user {
                tracing::warn!(
                    env = %config.users.secret_env,
                    "no user secret set; per-user keys use a random secret and do not survive a restart"
                );
            }
            Ok(key::random_secret().to_vec())
        }
    }
}

//! `[users]`: where a request's user comes from.

use super::table::{Key, Reload::*, Table};
use super::{ConfigError, Setting};

pub use crate::key::UserSource;

/// The `[users]` section.
#[derive(Clone, Debug)]
pub struct UsersConfig {
    /// Sources tried in order; the first present wins.
    pub sources: Vec<UserSource>,
    /// The environment variable holding the secret that keys user hashes.
    pub secret_env: String,
    /// The environment variable holding the HS256 key of `jwt:` sources.
    pub jwt_secret_env: String,
    /// A PEM public key file (RSA: RS256, P-256: ES256) for `jwt:` sources.
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// The `iss` a token must carry, if any.
    pub jwt_issuer: Option<String>,
    /// The `aud` a token must carry, if any.
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub jwt_leeway: std::time::Duration,
}

impl UsersConfig {
    /// Whether a source is a `jwt:` claim.
    pub fn uses_jwt(&self) -> bool {
        self.sources.iter().any(|s| matches!(s, UserSource::Jwt(_)))
    }
}

pub(super) const KEYS: &[Key] = &[
    ("sources", Live),
    ("secret_env", Restart),
    ("jwt_secret_env", Live),
    ("jwt_public_key", Live),
    ("jwt_issuer", Live),
    ("jwt_audience", Live),
    ("jwt_leeway", Live),
];

impl UsersConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(UsersConfig, Vec<Setting>), ConfigError> {
        let mut sources: Vec<UserSource> = t.parsed_list("sources", str::parse)?;
        if sources.is_empty() {
            t.show("sources", "[header:Authorization]");
            sources.push(UserSource::Header(http::header::AUTHORIZATION));
        }
        let users = UsersConfig {
            sources,
            secret_env: t.string("secret_env", "LARDER_USER_SECRET")?,
            jwt_secret_env: t.string("jwt_secret_env", "LARDER_JWT_SECRET")?,
            jwt_public_key: t.text("jwt_public_key")?.map(|p| p.value.into()),
            jwt_issuer: t.text("jwt_issuer")?.map(|p| p.value),
            jwt_audience: t.text("jwt_audience")?.map(|p| p.value),
            jwt_leeway: t.duration("jwt_leeway", "0s")?,
        };
        Ok((users, t.finish(KEYS)?))
    }
}

//! `[users]`: where a request's user comes from.

use std::fmt;

use http::HeaderName;

use super::table::{Key, Reload::*, Table};
use super::{ConfigError, Setting};

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

impl std::str::FromStr for UserSource {
    type Err = String;

    fn from_str(text: &str) -> Result<UserSource, String> {
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
        parsed.ok_or_else(|| format!("{text:?}: expected \"header:NAME\" or \"cookie:NAME\""))
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

const KEYS: &[Key] = &[("sources", Live), ("secret_env", Restart)];

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
        };
        Ok((users, t.finish(KEYS)?))
    }
}

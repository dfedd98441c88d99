//! Where a request's user comes from (`[users] sources`).

use std::fmt;

use http::HeaderName;

/// Where a request's user comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSource {
    /// A request header, e.g. `header:Authorization`.
    Header(HeaderName),
    /// A cookie, e.g. `cookie:session`.
    Cookie(String),
    /// A claim of a verified `Authorization: Bearer` JWT, e.g. `jwt:sub`.
    Jwt(String),
}

impl fmt::Display for UserSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSource::Header(h) => write!(f, "header:{h}"),
            UserSource::Cookie(c) => write!(f, "cookie:{c}"),
            UserSource::Jwt(c) => write!(f, "jwt:{c}"),
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
        } else if let Some(c) = text.strip_prefix("jwt:") {
            (!c.is_empty() && !c.contains(char::is_whitespace))
                .then(|| UserSource::Jwt(c.to_string()))
        } else {
            None
        };
        parsed.ok_or_else(|| {
            format!("{text:?}: expected \"header:NAME\", \"cookie:NAME\" or \"jwt:CLAIM\"")
        })
    }
}

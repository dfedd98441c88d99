//! Who a request is for: the first configured source present, as a keyed hash.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderMap, AUTHORIZATION, COOKIE};

use super::hex;
use super::jwt::{bearer, JwtVerifier};
use super::UserSource;

/// A user's identity as a keyed hash (never the raw credential).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub [u8; 16]);

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", hex(&self.0))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0[..8]))
    }
}

/// Finds a request's user and hashes it with the deployment's secret.
///
/// ```
/// use larder::config::UserSource;
/// use larder::key::Users;
/// let users = Users::new(vec![UserSource::Header(http::header::AUTHORIZATION)], b"secret");
/// let mut headers = http::HeaderMap::new();
/// assert!(users.identify(&headers).is_none());
/// headers.insert("authorization", "Bearer abc".parse().unwrap());
/// let id = users.identify(&headers).unwrap();
/// assert_eq!(users.hash_identity("Bearer abc"), vec![id]);
/// ```
#[derive(Clone)]
pub struct Users {
    sources: Vec<UserSource>,
    key: [u8; 32],
    jwt: Option<Arc<JwtVerifier>>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Sources tried in order; `secret` keys the hash (derive it per deployment).
    pub fn new(sources: Vec<UserSource>, secret: &[u8]) -> Users {
        Users {
            sources,
            key: blake3::derive_key("larder 2026 user identity key", secret),
            jwt: None,
        }
    }

    /// Verifies the tokens of `jwt:` sources with `verifier` (without one, a `jwt:` source
    /// finds no user).
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Users {
        self.jwt = Some(Arc::new(verifier));
        self
    }

    fn hash(&self, source: usize, value: &[u8]) -> UserId {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(source as u64).to_le_bytes());
        h.update(value);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        UserId(out)
    }

    /// The hashed identity of the request's user: the first source present wins. A Bearer
    /// token that does not verify is no user (the sources after it are not tried: a forged
    /// token must not let another header choose the user).
    pub fn identify(&self, headers: &HeaderMap) -> Option<UserId> {
        for (i, source) in self.sources.iter().enumerate() {
            match source {
                UserSource::Jwt(claim) => {
                    let Some(token) = headers
                        .get(AUTHORIZATION)
                        .and_then(|v| bearer(v.as_bytes()))
                    else {
                        continue;
                    };
                    let value = self.jwt.as_ref()?.claim(token, claim)?;
                    return Some(self.hash(i, value.as_bytes()));
                }
                UserSource::Header(name) => {
                    if let Some(v) = headers.get(name) {
                        let v = trim(v.as_bytes());
                        if !v.is_empty() {
                            return Some(self.hash(i, v));
                        }
                    }
                }
                UserSource::Cookie(name) => {
                    for header in headers.get_all(COOKIE) {
                        if let Some(v) = cookie_value(header.as_bytes(), name.as_bytes()) {
                            if !v.is_empty() {
                                return Some(self.hash(i, v));
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The tenant of an API request (for LLM rules): the configured user when one is
    /// present, else the keyed hash of the first API credential it carries
    /// (`Authorization`, `x-api-key`, `x-goog-api-key`). Two credentials are two tenants.
    pub fn tenant(&self, headers: &HeaderMap) -> Option<UserId> {
        if let Some(user) = self.identify(headers) {
            return Some(user);
        }
        const CREDENTIALS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];
        CREDENTIALS.iter().enumerate().find_map(|(i, name)| {
            let v = trim(headers.get(*name)?.as_bytes());
            (!v.is_empty()).then(|| self.hash(1000 + i, v))
        })
    }

    /// The request headers that carry a user identity (the configured sources), to send
    /// along with requests made on the user's behalf (prefetch).
    pub fn identity_headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        for source in &self.sources {
            let name = match source {
                UserSource::Header(name) => name,
                UserSource::Cookie(_) => &COOKIE,
                UserSource::Jwt(_) => &AUTHORIZATION,
            };
            if out.contains_key(name) {
                continue;
            }
            for v in headers.get_all(name) {
                out.append(name.clone(), v.clone());
            }
        }
        out
    }

    /// Whether the request carries any of the configured user identities.
    pub fn present(&self, headers: &HeaderMap) -> bool {
        self.sources.iter().any(|source| match source {
            UserSource::Header(name) => headers.contains_key(name),
            UserSource::Jwt(_) => headers
                .get(AUTHORIZATION)
                .is_some_and(|v| bearer(v.as_bytes()).is_some()),
            UserSource::Cookie(name) => headers
                .get_all(COOKIE)
                .iter()
                .any(|h| cookie_value(h.as_bytes(), name.as_bytes()).is_some()),
        })
    }

    /// The hashes an admin-given identity has under each source (for invalidation by user):
    /// the value of a `header:` or `cookie:` source, or the claim of a `jwt:` source.
    pub fn hash_identity(&self, identity: &str) -> Vec<UserId> {
        let v = trim(identity.as_bytes());
        (0..self.sources.len()).map(|i| self.hash(i, v)).collect()
    }
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
    })
}
/// 32 random bytes (from the OS; a hash of the time and pid if it has none).
pub fn random_secret() -> [u8; 32] {
    let mut buf = [0u8; 32];
    if getrandom::fill(&mut buf).is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        buf.copy_from_slice(blake3::hash(seed.as_bytes()).as_bytes());
    }
    buf
}

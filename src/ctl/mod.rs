//! `larder ctl`: the admin API from the command line, as `varnishadm` is to Varnish —
//! stats, invalidation, purge, warming and reload against a running larder.
//!
//! ```no_run
//! # async fn demo() -> Result<(), larder::ctl::CtlError> {
//! use larder::ctl::{Action, Admin};
//! let admin = Admin::new("http://127.0.0.1:9091", Some("token".into()))?;
//! let scope = larder::ctl::Scope { tags: vec!["job:7".into()], ..Default::default() };
//! let answer = admin.run(&Action::Invalidate(scope)).await?;
//! println!("{answer}");
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// How long one call to the admin API may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The most of an answer `larder ctl` reads: far more than any answer of the admin API,
/// far less than an endless one from a hostile or mistaken `--admin` URL can take.
pub const MAX_ANSWER: usize = 16 << 20;

/// What an invalidation drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Tags to drop.
    pub tags: Vec<String>,
    /// URLs (`/path?query`) to drop.
    pub urls: Vec<String>,
    /// A URL prefix to drop.
    pub prefix: Option<String>,
    /// A user whose entries to drop (a header value or a JWT claim).
    pub user_id: Option<String>,
    /// A path glob (`*` one segment, `**` any number).
    pub pattern: Option<String>,
    /// A tag prefix (ending in `:`, `/`, `.`, `-`, `_` or `=`).
    pub tag_prefix: Option<String>,
    /// Drop only what every scope given matches (`"match": "all"`).
    pub all_of: bool,
    /// Answer once every live instance applied it (`?wait=all`), naming those that did not.
    pub wait: bool,
    /// Mark stale instead of removing.
    pub soft: bool,
    /// Yes, even a scope that matches every entry (an empty prefix, say).
    pub confirm_all: bool,
}

impl Scope {
    fn body(&self) -> Value {
        let mut body = json!({});
        if !self.tags.is_empty() {
            body["tags"] = json!(self.tags);
        }
        if !self.urls.is_empty() {
            body["urls"] = json!(self.urls);
        }
        if let Some(p) = &self.prefix {
            body["prefix"] = json!(p);
        }
        if let Some(u) = &self.user_id {
            body["user_id"] = json!(u);
        }
        if let Some(p) = &self.pattern {
            body["pattern"] = json!(p);
        }
        if let Some(p) = &self.tag_prefix {
            body["tag_prefix"] = json!(p);
        }
        if self.all_of {
            body["match"] = json!("all");
        }
        if self.soft {
            body["soft"] = json!(true);
        }
        if self.confirm_all {
            body["confirm"] = json!("PURGE_ALL");
        }
        body
    }
}

/// What to ask the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `GET /health` (no token needed): succeeds while larder answers, `ok` or `degraded`.
    Health,
    /// `GET /admin/stats`.
    Stats,
    /// `POST /admin/invalidate`.
    Invalidate(Scope),
    /// `POST /admin/purge` (everything).
    Purge,
    /// `POST /admin/warm`.
    Warm {
        /// Paths to fetch through the cache.
        urls: Vec<String>,
    },
    /// `POST /admin/reload`.
    Reload,
    /// `GET /admin/entry`: one URL's entries in every tier.
    Inspect {
        /// The URL (`/path?query`).
        url: String,
        /// The user, for a `per_user` rule.
        user_id: Option<String>,
        /// The method (GET by default).
        method: Option<String>,
    },
    /// `GET /admin/keys`: what is cached (one page at a time).
    Keys {
        /// Only URLs starting with this.
        prefix: Option<String>,
        /// Only this rule's entries.
        rule: Option<String>,
        /// Rows per page.
        limit: Option<usize>,
        /// Where the page begins (the `cursor` of the previous one).
        cursor: Option<String>,
    },
    /// `GET /admin/invalidations`: who dropped what, and when.
    History {
        /// Events at or after this (RFC 3339 or ms since the epoch).
        since: Option<String>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// `GET /admin/recommendations`.
    Advise,
    /// `GET /admin/config`.
    Config,
}

/// `name=value&…`, percent-encoded, of the parameters given.
fn query(params: &[(&str, Option<String>)]) -> String {
    let enc = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let pairs: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

impl Action {
    fn request(&self) -> (Method, String, Option<Value>) {
        let (method, path, body) = match self {
            Action::Health => (Method::GET, "/health", None),
            Action::Stats => (Method::GET, "/admin/stats", None),
            Action::Invalidate(scope) if scope.wait => (
                Method::POST,
                "/admin/invalidate?wait=all",
                Some(scope.body()),
            ),
            Action::Invalidate(scope) => (Method::POST, "/admin/invalidate", Some(scope.body())),
            Action::Purge => (
                Method::POST,
                "/admin/purge",
                Some(json!({"confirm": "PURGE_ALL"})),
            ),
            Action::Warm { urls } => (Method::POST, "/admin/warm", Some(json!({ "urls": urls }))),
            Action::Reload => (Method::POST, "/admin/reload", None),
            Action::Inspect {
                url,
                user_id,
                method,
            } => {
                let q = query(&[
                    ("url", Some(url.clone())),
                    ("user_id", user_id.clone()),
                    ("method", method.clone()),
                ]);
                return (Method::GET, format!("/admin/entry{q}"), None);
            }
            Action::Keys {
                prefix,
                rule,
                limit,
                cursor,
            } => {
                let q = query(&[
                    ("prefix", prefix.clone()),
                    ("rule", rule.clone()),
                    ("limit", limit.map(|n| n.to_string())),
                    ("cursor", cursor.clone()),
                ]);
                return (Method::GET, format!("/admin/keys{q}"), None);
            }
            Action::History { since, limit } => {
                let q = query(&[
                    ("since", since.clone()),
                    ("limit", limit.map(|n| n.to_string())),
                ]);
                return (Method::GET, format!("/admin/invalidations{q}"), None);
            }
            Action::Advise => (Method::GET, "/admin/recommendations", None),
            Action::Config => (Method::GET, "/admin/config", None),
        };
        (method, path.to_string(), body)
    }
}

/// `/admin/config` as `larder check` prints it, then when it was reloaded and what waits
/// for a restart.
fn config_text(v: &Value) -> String {
    let mut out = v["config"].as_str().unwrap_or("").trim_end().to_string();
    out.push_str(&format!(
        "\nreloaded at: {}\n",
        v["reloaded_at"].as_str().unwrap_or("never (as started)")
    ));
    let pending: Vec<&str> = v["restart_needed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if pending.is_empty() {
        out.push_str("restart needed for: nothing\n");
    } else {
        out.push_str(&format!("restart needed for: {}\n", pending.join(", ")));
    }
    out
}

/// Why a call failed.
#[derive(Debug)]
pub enum CtlError {
    /// The admin URL is not one.
    BadUrl(String),
    /// The admin API could not be reached.
    Unreachable {
        /// The admin URL.
        url: String,
        /// Why.
        why: String,
    },
    /// `$LARDER_ADMIN_TOKEN` cannot be sent in a header.
    BadToken,
    /// The admin API refused the token (or none was given).
    Unauthorized {
        /// Whether a token was sent.
        had_token: bool,
    },
    /// The admin API answered with an error.
    Refused {
        /// The status.
        status: StatusCode,
        /// Its message.
        message: String,
    },
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::BadUrl(u) => write!(f, "--admin {u:?} is not an http:// or https:// URL"),
            CtlError::Unreachable { url, why } => write!(
                f,
                "cannot reach the admin API at {url}: {why} (is larder running? set --admin or $LARDER_ADMIN_URL to its [admin] listen address)"
            ),
            CtlError::BadToken => f.write_str(
                "$LARDER_ADMIN_TOKEN holds characters a header cannot carry",
            ),
            CtlError::Unauthorized { had_token: false } => f.write_str(
                "the admin API wants a token: set $LARDER_ADMIN_TOKEN to the token larder was started with",
            ),
            CtlError::Unauthorized { had_token: true } => f.write_str(
                "the admin API refused the token in $LARDER_ADMIN_TOKEN",
            ),
            CtlError::Refused { status, message } => {
                write!(f, "the admin API answered {status}: {message}")
            }
        }
    }
}

impl std::error::Error for CtlError {}

/// A client of one larder's admin API.
pub struct Admin {
    base: Uri,
    token: Option<String>,
    ca_file: Option<std::path::PathBuf>,
}

impl Admin {
    /// A client for the admin API at `url`, sending `token` as a Bearer token.
    pub fn new(url: &str, token: Option<String>) -> Result<Admin, CtlError> {
        let base: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| CtlError::BadUrl(url.into()))?;
        if !matches!(base.scheme_str(), Some("http" | "https")) || base.authority().is_none() {
            return Err(CtlError::BadUrl(url.into()));
        }
        let token = token.filter(|t| !t.is_empty());
        if let Some(t) = &token {
            http::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| CtlError::BadToken)?;
        }
        Ok(Admin {
            base,
            token,
            ca_file: None,
        })
    }

    /// Trusts the PEM roots in `ca_file` too, for an https:// admin API.
    pub fn with_ca_file(self, ca_file: Option<std::path::PathBuf>) -> Admin {
        Admin { ca_file, ..self }
    }

    /// Runs `action`; the admin API's JSON answer (pretty-printed for stats), with every
    /// control character escaped: what it prints cannot drive the terminal.
    pub async fn run(&self, action: &Action) -> Result<String, CtlError> {
        self.run_raw(action)
            .await
            .map(|t| terminal_safe(&t))
            .map_err(|e| match e {
                CtlError::Refused { status, message } => CtlError::Refused {
                    status,
                    message: terminal_safe(&message),
                },
                e => e,
            })
    }

    async fn run_raw(&self, action: &Action) -> Result<String, CtlError> {
        let (method, path, body) = action.request();
        let (status, bytes) = self.call(method, &path, body).await?;
        let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
        match status {
            s if s.is_success() => Ok(match action {
                Action::Config => serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .map(|v| config_text(&v))
                    .unwrap_or(text),
                Action::Stats
                | Action::Inspect { .. }
                | Action::Keys { .. }
                | Action::History { .. }
                | Action::Advise => serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or(text),
                _ => text,
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(CtlError::Unauthorized {
                had_token: self.token.is_some(),
            }),
            status => Err(CtlError::Refused {
                status,
                message: serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text),
            }),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), CtlError> {
        let url = format!("{}{path}", self.base.to_string().trim_end_matches('/'));
        let unreachable = |why: String| CtlError::Unreachable {
            url: self.base.to_string(),
            why,
        };
        // The system's roots and `--cacert`, as for upstreams (none is fine for http://).
        let tls = crate::tls::client_config(self.ca_file.as_deref()).map_err(unreachable)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        if !payload.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| CtlError::BadUrl(e.to_string()))?;
        let call = async {
            let resp = client.request(req).await.map_err(|e| {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why = s.to_string();
                    source = s.source();
                }
                unreachable(why)
            })?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    unreachable(format!("{e} (answers are read up to {MAX_ANSWER} bytes)"))
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| unreachable(format!("no answer in {TIMEOUT:?}")))?
    }
}

/// `text` with every control character but newline and tab written as an escape
/// (`\u{1b}`), so an answer cannot move the cursor, retitle the window or hide lines.
///
/// ```
/// assert_eq!(larder::ctl::terminal_safe("ok\u{1b}[2J\n"), "ok\\u{1b}[2J\n");
/// ```
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_become_the_admin_api_s_requests() {
        let (m, p, b) = Action::Invalidate(Scope {
            tags: vec!["a".into()],
            prefix: Some("/x/".into()),
            user_id: Some("42".into()),
            ..Scope::default()
        })
        .request();
        assert_eq!((m, p.as_str()), (Method::POST, "/admin/invalidate"));
        assert_eq!(
            b.unwrap(),
            json!({"tags": ["a"], "prefix": "/x/", "user_id": "42"})
        );
        assert_eq!(Action::Purge.request().2.unwrap()["confirm"], "PURGE_ALL");
        assert!(Admin::new("localhost:9091", None).is_err());
        assert!(Admin::new("http://127.0.0.1:9091/", None).is_ok());
    }
}

//! Looking inside from the admin API: one URL's entries in each tier (`/admin/entry`),
//! pages of keys (`/admin/keys`), the invalidation history (`/admin/invalidations`), the
//! running config (`/admin/config`) and advice (`/admin/recommendations`).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::{error, json_response, Admin};

/// The value of `name` in a query string, percent-decoded (`+` is a space).
pub(super) fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A number parameter, bounded.
fn number(query: &str, name: &str, default: u64, max: u64) -> Result<u64, String> {
    match param(query, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map(|n| n.min(max))
            .map_err(|_| format!("{name} {v:?} is not a number")),
    }
}

impl Admin {
    /// `GET /admin/entry?url=U[&method=M][&user_id=ID]`.
    pub(super) async fn entry(&self, query: &str) -> Response<Full<Bytes>> {
        let Some(url) = param(query, "url").filter(|u| u.starts_with('/')) else {
            return error(
                StatusCode::BAD_REQUEST,
                "give url=/path?query (URL-encoded)",
            );
        };
        let method = match param(query, "method") {
            None => Method::GET,
            Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    return error(StatusCode::BAD_REQUEST, format!("method {m:?} is not one"))
                }
            },
        };
        let user = param(query, "user_id");
        match self.cache.inspect(&url, &method, user.as_deref()).await {
            Ok(Some(found)) => json_response(StatusCode::OK, found),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("{url} is cached nowhere")),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }

    /// `GET /admin/keys?prefix=P[&rule=R][&limit=N][&cursor=C]`.
    pub(super) async fn keys(&self, query: &str) -> Response<Full<Bytes>> {
        let limit = match number(query, "limit", 100, 1000) {
            Ok(n) => n.max(1) as usize,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let prefix = param(query, "prefix").unwrap_or_default();
        let rule = param(query, "rule");
        let cursor = param(query, "cursor").filter(|c| !c.is_empty());
        let (rows, next) = self
            .cache
            .keys(&prefix, rule.as_deref(), limit, cursor.as_deref())
            .await;
        json_response(StatusCode::OK, json!({ "entries": rows, "cursor": next }))
    }

    /// `GET /admin/invalidations[?since=T][&limit=N]` (`since`: RFC 3339 or ms since the
    /// epoch).
    pub(super) fn invalidations(&self, query: &str) -> Response<Full<Bytes>> {
        let limit = match number(query, "limit", 100, crate::cache::history::KEEP as u64) {
            Ok(n) => n as usize,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let since = match param(query, "since") {
            None => 0,
            Some(t) => match t
                .parse::<u64>()
                .ok()
                .or_else(|| crate::time::parse_rfc3339(&t))
            {
                Some(ms) => ms,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("since {t:?}: give RFC 3339 or ms since the epoch"),
                    )
                }
            },
        };
        let events = self.cache.history(since, limit);
        json_response(StatusCode::OK, json!({ "events": events }))
    }

    /// `GET /admin/config`: the config in force as `larder check` prints it (secrets
    /// masked), when it was last reloaded, and what waits for a restart.
    pub(super) fn config(&self) -> Response<Full<Bytes>> {
        let settings = self.cache.settings();
        json_response(
            StatusCode::OK,
            json!({
                "path": settings.config.path.display().to_string(),
                "config": settings.config.describe(),
                "reloaded_at": self.cache.reloaded_at().map(crate::time::rfc3339),
                "restart_needed": self.cache.restart_pending(),
            }),
        )
    }

    /// `GET /admin/recommendations`.
    pub(super) fn recommendations(&self) -> Response<Full<Bytes>> {
        let advice = crate::ops::advice::recommend(&self.cache);
        json_response(StatusCode::OK, json!({ "recommendations": advice }))
    }
}

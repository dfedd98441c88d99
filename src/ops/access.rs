//! The access log: one structured `tracing` line per request (target `larder::access`),
//! written off the request path by the non-blocking writer the binary installs. The user
//! appears only as the prefix of its keyed hash.

use std::time::Instant;

use http::{Method, Request, Response};
use http_body::Body;

use crate::cache::Settings;
use crate::status::X_CACHE;

/// What the line needs from the request, taken before it is handed on.
pub(crate) struct Access {
    method: Method,
    path: String,
    rule: String,
    user: Option<String>,
    started: Instant,
}

impl Access {
    /// Starts a line for `req`, or `None` when the access log is off (config or filter).
    pub(crate) fn begin<B>(settings: &Settings, req: &Request<B>) -> Option<Access> {
        if !settings.config.log.access
            || !tracing::enabled!(target: "larder::access", tracing::Level::INFO)
        {
            return None;
        }
        let path = req.uri().path();
        let rule = settings.rules.find(req.method(), path);
        let user = rule
            .filter(|r| r.per_user)
            .and_then(|_| settings.users.identify(req.headers()))
            .map(|u| u.to_string());
        Some(Access {
            method: req.method().clone(),
            path: path.to_string(),
            rule: rule.map_or_else(|| crate::stats::UNMATCHED.to_string(), |r| r.name.clone()),
            user,
            started: Instant::now(),
        })
    }

    /// Writes the line for `resp`.
    pub(crate) fn log<B: Body>(&self, resp: &Response<B>) {
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let cache_status = resp
            .headers()
            .get_all("cache-status")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let tier = match cache_status.rsplit_once("detail=") {
            Some((_, t @ ("l1" | "l2" | "disk"))) => t,
            _ => "-",
        };
        tracing::info!(
            target: "larder::access",
            method = %self.method,
            path = %self.path,
            rule = %self.rule,
            outcome = %header(X_CACHE.as_str()),
            tier = %tier,
            status = resp.status().as_u16(),
            latency_us = self.started.elapsed().as_micros() as u64,
            bytes = resp.body().size_hint().exact().unwrap_or_else(|| resp.body().size_hint().lower()),
            user = %self.user.as_deref().unwrap_or("-"),
            "request"
        );
    }
}

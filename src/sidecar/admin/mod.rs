//! The admin API: health, stats, invalidation and purge (and, on the same listener,
//! Prometheus metrics). Everything under `/admin/` needs `Authorization: Bearer <token>`
//! with the token from the environment variable `admin.token_env` names; without a
//! configured token those endpoints answer 401 (like a wrong token) and say how to set one.

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::json;

use crate::cache::Cache;

mod inspect;
mod invalidate;
use crate::config::{Backend, Config};

/// The largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// Serves the admin endpoints for one cache.
pub struct Admin {
    cache: Cache,
    backend: Backend,
}

/// The tokens `admin.token_env` holds (comma-separated, so one can be rotated in before
/// the other goes), as hashes; read from the config in force, so a reload that names
/// another variable takes effect.
fn tokens(env: &str) -> Vec<blake3::Hash> {
    std::env::var(env)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| blake3::hash(t.as_bytes()))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    confirm: String,
}

/// `POST /admin/clock` `{"advance_ms": N}`: moves the manual clock; the new time.
fn advance_clock(body: &[u8]) -> Response<Full<Bytes>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Advance {
        advance_ms: u64,
    }
    match parse::<Advance>(body, "{\"advance_ms\": N}") {
        Ok(a) => {
            let now = crate::time::advance(std::time::Duration::from_millis(a.advance_ms));
            json_response(StatusCode::OK, json!({ "now_ms": now }))
        }
        Err(resp) => *resp,
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// `n` from a query string like `n=10`.
fn req_query_n(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
}

/// The dashboard: one page, every asset in it, built into the binary.
fn dashboard() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(
        include_str!("dashboard.html").as_bytes(),
    )));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// A JSON request body, or a `400` saying what was `expected`.
fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, Box<Response<Full<Bytes>>>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("expected {expected}: {e}"),
        ))
    })
}

/// URLs as the admin API takes them: paths starting with `/`.
fn paths_only(urls: &[String]) -> Result<(), Box<Response<Full<Bytes>>>> {
    match urls.iter().find(|u| !u.starts_with('/')) {
        Some(bad) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("urls must be paths starting with '/': {bad:?}"),
        ))),
        None => Ok(()),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": message.into() }))
}

impl Admin {
    /// Admin for `cache`, reading the token from the environment now.
    pub fn new(cache: Cache, config: &Config) -> Admin {
        if tokens(&config.admin.token_env).is_empty() {
            tracing::warn!(env = %config.admin.token_env, "no admin token set; /admin/* answers 401 until one is");
        }
        Admin {
            cache,
            backend: config.store.backend,
        }
    }

    /// Checks the bearer token against each configured one, in constant time (comparing
    /// hashes, every one of them).
    fn authorize<B>(&self, req: &Request<B>) -> Result<(), Box<Response<Full<Bytes>>>> {
        let env = self.cache.settings().config.admin.token_env.clone();
        let expected = tokens(&env);
        // No token configured: no token can be right (401, as for a wrong one), and the
        // answer says how to set one.
        if expected.is_empty() {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                format!("the admin API is disabled: set the environment variable {env} to a token (several: comma-separated) and restart"),
            )));
        }
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| blake3::hash(t.trim().as_bytes()));
        // blake3::Hash equality is constant-time; every token is compared.
        let right = given.is_some_and(|g| expected.iter().fold(false, |ok, t| ok | (*t == g)));
        if right {
            Ok(())
        } else {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"larder\""),
            );
            Err(Box::new(resp))
        }
    }

    /// Answers one admin request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::body::BoxError>,
    {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        if let Some(open) = self.open(&method, &path) {
            return open;
        }
        if let Err(resp) = self.authorize(&req) {
            return *resp;
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )
            }
        };
        self.route(method, &path, &query, &body).await
    }

    /// What is answered without a token: `/health`, `/metrics`, the dashboard page (it
    /// holds no data: it asks for the token and sends it with every call), and 404 outside
    /// `/admin/`.
    fn open(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        match (method.clone(), path) {
            (Method::GET, "/health") => Some(json_response(StatusCode::OK, self.health())),
            (Method::GET, "/metrics") => Some(self.metrics()),
            (Method::GET, "/admin/") => Some(dashboard()),
            _ if !path.starts_with("/admin/") => Some(error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {path}"),
            )),
            _ => None,
        }
    }

    /// An authorized request to the admin API.
    async fn route(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        match (method, path) {
            (Method::GET, "/admin/stats") => json_response(StatusCode::OK, self.stats_json()),
            (Method::POST, "/admin/stats/reset") => {
                self.cache.reset_stats();
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            (Method::POST, "/admin/invalidate") => self.invalidate(query, body).await,
            (Method::GET, "/admin/top") => self.top(query),
            (Method::POST, "/admin/warm") => self.warm(body).await,
            (Method::POST, "/admin/reload") => {
                match self.cache.reload_file_checked(super::servable) {
                    Ok(restart) => json_response(
                        StatusCode::OK,
                        json!({ "reloaded": true, "restart_needed": restart }),
                    ),
                    Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
            (Method::POST, "/admin/purge") => self.purge(body).await,
            (Method::GET, "/admin/entry") => self.entry(query).await,
            (Method::GET, "/admin/keys") => self.keys(query).await,
            (Method::GET, "/admin/invalidations") => self.invalidations(query),
            (Method::GET, "/admin/recommendations") => self.recommendations(),
            (Method::GET, "/admin/config") => self.config(),
            // Tests move a manual clock instead of sleeping (`LARDER_MANUAL_CLOCK=1` only).
            (Method::POST, "/admin/clock") if crate::time::is_manual() => advance_clock(body),
            (
                _,
                "/admin/stats"
                | "/admin/stats/reset"
                | "/admin/invalidate"
                | "/admin/purge"
                | "/admin/top"
                | "/admin/warm"
                | "/admin/reload"
                | "/admin/entry"
                | "/admin/keys"
                | "/admin/invalidations"
                | "/admin/recommendations"
                | "/admin/config",
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
        }
    }

    /// `/admin/top`: the most hit entries and the hot list (paths only: a query could
    /// carry something private).
    fn top(&self, query: &str) -> Response<Full<Bytes>> {
        let n = req_query_n(query).unwrap_or(20).min(1000);
        let path_of = |url: &str| url.split('?').next().unwrap_or("").to_string();
        let keys: Vec<_> = self
            .cache
            .top_entries(n)
            .into_iter()
            .map(
                |(url, hits, bytes)| json!({ "path": path_of(&url), "hits": hits, "bytes": bytes }),
            )
            .collect();
        let hot: Vec<_> = self
            .cache
            .hot(n)
            .into_iter()
            .map(|h| json!({ "path": path_of(&h.url), "rule": h.rule, "score": h.score }))
            .collect();
        json_response(StatusCode::OK, json!({ "keys": keys, "hot": hot }))
    }

    /// `/admin/purge`: everything, with the confirmation; answered once the hottest
    /// entries are back (or after a few seconds, while they finish in the background).
    async fn purge(&self, body: &[u8]) -> Response<Full<Bytes>> {
        match serde_json::from_slice::<PurgeRequest>(body) {
            Ok(p) if p.confirm == "PURGE_ALL" => {
                // What was hot before the purge is fetched again right after it.
                self.cache.sample_hot();
                let purged = self.cache.purge().await;
                let cache = self.cache.clone();
                let warming = tokio::spawn(async move { cache.warm_top().await });
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), warming).await;
                json_response(StatusCode::OK, json!({ "purged": purged }))
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "send {\"confirm\":\"PURGE_ALL\"} to purge everything",
            ),
        }
    }

    /// `/health`: `ok`, or `degraded` with the reasons while a tier is unreachable, its
    /// breaker open or it is disabled, while half of an upstream's recent trips (at
    /// least ten in the last 30 to 60 s) failed, or while an upstream backs off, has spent
    /// its budget, or counts its limits on a local share because Redis is away. Always 200: the proxy keeps serving.
    fn health(&self) -> serde_json::Value {
        let mut body = json!({ "status": "ok", "store": self.backend_name() });
        for tier in self.cache.tiers().lower() {
            body[tier.section()] = json!(tier.report().status);
        }
        let reasons = crate::ops::health::reasons(&self.cache);
        if !reasons.is_empty() {
            body["status"] = json!("degraded");
            body["reasons"] = json!(reasons);
        }
        body
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        }
    }

    async fn warm(&self, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WarmRequest {
            urls: Vec<String>,
            #[serde(default)]
            headers: std::collections::BTreeMap<String, String>,
            concurrency: Option<usize>,
        }
        let req: WarmRequest = match parse(body, "{\"urls\":[..], \"headers\":{..}}") {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        if let Err(resp) = paths_only(&req.urls) {
            return *resp;
        }
        let mut headers = http::HeaderMap::new();
        for (k, v) in &req.headers {
            let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return error(StatusCode::BAD_REQUEST, format!("invalid header {k:?}"));
            };
            headers.append(n, v);
        }
        match self
            .cache
            .warm(
                &req.urls,
                &headers,
                req.concurrency.unwrap_or(4).clamp(1, 256),
            )
            .await
        {
            Ok(w) => json_response(
                StatusCode::OK,
                json!({ "warmed": w.warmed, "failed": w.failed }),
            ),
            Err(e) => error(StatusCode::NOT_IMPLEMENTED, e.to_string()),
        }
    }

    fn stats_json(&self) -> serde_json::Value {
        serde_json::to_value(crate::ops::report::stats(&self.cache)).unwrap_or_else(|_| json!({}))
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let text = crate::metrics::render(&self.cache);
        let mut resp = Response::new(Full::new(Bytes::from(text)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

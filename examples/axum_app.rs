//! The `api-middleware` recipe as a Tower layer: a small jobs API in axum with larder's
//! `CacheLayer` mounted from `config/examples/api-middleware.toml` — the same file the
//! sidecar runs with.
//!
//! ```text
//! cargo run --example axum_app -- 127.0.0.1:3000 config/examples/api-middleware.toml
//! curl -i http://127.0.0.1:3000/health
//! curl -i -H 'Authorization: Bearer alice' http://127.0.0.1:3000/jobs
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;

/// The API behind the cache: jobs per user, counting every call it answers.
#[derive(Default)]
pub struct Api {
    calls: Mutex<HashMap<&'static str, u64>>,
    states: Mutex<HashMap<String, String>>,
}

impl Api {
    fn count(&self, route: &'static str) {
        *self.calls.lock().entry(route).or_insert(0) += 1;
    }

    /// Calls answered per route.
    pub fn calls(&self, route: &str) -> u64 {
        self.calls.lock().get(route).copied().unwrap_or(0)
    }

    /// Calls answered in all.
    pub fn total(&self) -> u64 {
        self.calls.lock().values().sum()
    }
}

fn user(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .trim_start_matches("Bearer ")
        .to_string()
}

fn json(body: String) -> impl IntoResponse {
    ([("content-type", "application/json")], body)
}

async fn health(State(api): State<Arc<Api>>) -> impl IntoResponse {
    api.count("health");
    json(r#"{"status":"ok"}"#.to_string())
}

async fn version(State(api): State<Arc<Api>>) -> impl IntoResponse {
    api.count("version");
    json(r#"{"version":"1.4.2","commit":"3f2a9c1"}"#.to_string())
}

async fn jobs(State(api): State<Arc<Api>>, headers: HeaderMap) -> impl IntoResponse {
    api.count("jobs");
    let owner = user(&headers);
    // Over 1 KiB, so it is stored compressed.
    let items: Vec<String> = (0..25)
        .map(|i| format!(r#"{{"id":"{owner}-{i}","owner":"{owner}","state":"done","title":"nightly export number {i}"}}"#))
        .collect();
    json(format!(
        r#"{{"owner":"{owner}","jobs":[{}]}}"#,
        items.join(",")
    ))
}

async fn job(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    api.count("job");
    let state = api
        .states
        .lock()
        .get(&id)
        .cloned()
        .unwrap_or_else(|| "running".into());
    json(format!(
        r#"{{"id":"{id}","owner":"{}","state":"{state}"}}"#,
        user(&headers)
    ))
}

async fn update_job(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: String,
) -> impl IntoResponse {
    api.count("update_job");
    let state = if body.is_empty() {
        "updated".to_string()
    } else {
        body
    };
    api.states.lock().insert(id.clone(), state.clone());
    json(format!(r#"{{"id":"{id}","state":"{state}"}}"#))
}

async fn download(State(api): State<Arc<Api>>, Path(id): Path<String>) -> impl IntoResponse {
    api.count("download");
    let row = format!("{id},2026-11-22,ok,0123456789abcdef\n");
    (
        StatusCode::OK,
        [("content-type", "text/csv")],
        row.repeat(600),
    )
}

/// The API alone (what the sidecar sits in front of).
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/jobs", get(jobs))
        .route("/jobs/{job_id}", get(job).put(update_job))
        .route("/jobs/{job_id}/download", get(download))
        .with_state(api)
}

/// The API with larder's cache layer in front, configured by `config`.
pub fn app(
    config: &larder::Config,
    api: Arc<Api>,
) -> Result<(Router, larder::Cache), larder::Error> {
    let layer = larder::CacheLayer::from_config(config)?;
    let cache = layer.cache().clone();
    Ok((routes(api).layer(layer), cache))
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let path = args
        .next()
        .unwrap_or_else(|| "config/examples/api-middleware.toml".into());
    let config = larder::Config::load(&path)?;
    let (app, _cache) = app(&config, Arc::new(Api::default()))?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "axum app with larder's layer on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

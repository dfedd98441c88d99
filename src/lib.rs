//! larder: a response-caching reverse proxy and Tower layer.
//!
//! Put [`CacheLayer`] in front of any `tower::Service` whose response body is an
//! `http_body::Body<Data = Bytes>` — an axum `Router`, or larder's own upstream client
//! in the `larder serve` sidecar. Endpoint rules (from TOML) say what is cached, for how
//! long, per user or shared, with which tags, and which requests invalidate what.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = larder::Config::parse_str("larder.toml", r#"
//!     [[rule]]
//!     name = "job"
//!     path = "/jobs/{job_id}"
//!     ttl = "30s"
//!     tags = ["job:{job_id}"]
//! "#).unwrap();
//! let layer = larder::CacheLayer::from_config(&config).unwrap();
//! let cache = layer.cache().clone();
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<_>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"state\":\"done\"}"))))
//! });
//! let resp = svc.clone().oneshot(Request::get("/jobs/7").body(Full::new(Bytes::new())).unwrap()).await.unwrap();
//! assert_eq!(resp.headers()["cache-status"], "larder; fwd=miss; stored");
//! assert_eq!(cache.invalidate_tags(&["job:7"]).await, 1);
//! # });
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod access;
pub mod admin;
pub mod body;
pub mod cache;
pub mod coalesce;
pub mod compress;
pub mod config;
pub mod entry;
mod fetch;
pub mod key;
pub mod layer;
mod listener;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod rules;
pub mod semantics;
mod serve;
pub mod server;
pub mod stats;
pub mod status;
pub mod store;
pub mod units;

pub use body::CacheBody;
pub use cache::Cache;
pub use config::{Config, ConfigError};
pub use layer::{CacheLayer, CacheService};
pub use rules::Rule;

/// Errors from building a cache.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

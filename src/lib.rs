//! larder: a response-caching reverse proxy and Tower layer.
//!
//! Put [`CacheLayer`] in front of any `tower::Service` whose response body is an
//! `http_body::Body<Data = Bytes>` — an axum `Router`, or larder's own upstream client
//! in the `larder serve` sidecar. Endpoint rules (from TOML, or built in code) say what is
//! cached, for how long, per user or shared, with which tags, and which requests
//! invalidate what.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = larder::CacheLayer::builder()
//!     .rule(larder::Rule::get("/jobs/{job_id}").ttl(Duration::from_secs(30)).tags(["job:{job_id}"]))
//!     .build()
//!     .unwrap();
//! let cache = layer.cache().clone();
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<_>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"state\":\"done\"}"))))
//! });
//! let resp = svc.clone().oneshot(Request::get("/jobs/7").body(Full::new(Bytes::new())).unwrap()).await.unwrap();
//! assert_eq!(resp.headers()["cache-status"], "larder; fwd=miss; stored");
//! assert_eq!(cache.invalidate_tags(&["job:7"]).await, 1);
//! # });
//! ```
//!
//! The crate, by folder, in the order a request meets it: [`layer`] (the Tower middleware)
//! → `flow` (route, lookup, fill, admit, store, respond) → [`policy`]
//! (RFC 9111 decisions), [`key`], [`rules`], [`semantics`] (RFC 9110 helpers) → [`store`]
//! (memory and the tiers below it) → [`entry`] (the stored record). [`config`] reads the
//! TOML, [`ops`] counts and reports, [`sidecar`] is the `larder serve` binary's server.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod body;
pub mod budget;
pub mod cache;
pub mod coalesce;
pub mod compress;
pub mod config;
pub mod ctl;
pub mod entry;
mod error;
mod flow;
pub mod key;
pub mod layer;
pub mod llm;
pub mod ops;
pub mod policy;
pub mod rules;
pub mod semantics;
pub mod sidecar;
pub mod stats;
pub mod status;
pub mod store;
pub mod time;
pub mod tls;
pub mod units;

pub use cache::{Cache, Target};
pub use config::{Config, ConfigError};
pub use error::Error;
pub use layer::{CacheBody, CacheLayer, CacheService, ClientAddr};
pub use ops::metrics;
pub use rules::{Rule, RuleBuilder};

//! The Tower layer: [`CacheLayer`] wraps any service into a [`CacheService`], in the
//! tower-http shape (`Layer`, `Service`, a named `ResponseFuture`, a body type, a by-value
//! builder).
//!
//! A hit in memory never allocates a future: [`ResponseFuture`] is ready. A layer can be
//! built in code, without a config file:
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use larder::{CacheLayer, Rule};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = CacheLayer::builder()
//!     .rule(Rule::get("/reports/{id}").ttl(Duration::from_secs(60)).tags(["report:{id}"]))
//!     .memory(256 << 20)
//!     .build()
//!     .unwrap();
//! let cache = layer.cache().clone();
//! let mut svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<_>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"total\":3}"))))
//! });
//! let req = || Request::get("/reports/7").body(Full::new(Bytes::new())).unwrap();
//! let first = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(first.headers()["x-cache"], "MISS");
//! let second = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(second.headers()["x-cache"], "HIT");
//! assert_eq!(second.into_body().collect().await.unwrap().to_bytes(), "{\"total\":3}");
//! assert_eq!(cache.invalidate_tags(&["report:7"]).await, 1);
//! # });
//! ```

mod builder;
mod future;
mod service;

use tower::Layer;

pub use crate::body::{buffer, buffer_within, BoxError, Buffered, CacheBody, Inner, PassBody};
pub use crate::flow::{Background, RouteTo};
pub use builder::Builder;
pub use future::ResponseFuture;
pub use service::CacheService;

use crate::cache::Cache;
use crate::config::Config;
use crate::ops::Tasks;

/// The address of the client that sent a request. The sidecar puts it in each request's
/// extensions; the layer trusts forwarding fields only from peers listed in
/// `proxy.trusted_proxies` (a layer user can insert it for their own listener).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Marks a request that arrived over TLS: the upstream is told `X-Forwarded-Proto: https`.
#[derive(Clone, Copy, Debug)]
pub struct ClientTls;

/// Mounts a [`Cache`] in front of a service.
#[derive(Clone, Debug)]
pub struct CacheLayer {
    cache: Cache,
}

impl CacheLayer {
    /// A layer built in code; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A layer with its own cache for `config` (its background tasks started when there
    /// is a Tokio runtime).
    ///
    /// Fails for a Redis backend without a Tokio runtime or with a URL the client rejects.
    pub fn from_config(config: &Config) -> Result<CacheLayer, crate::Error> {
        let cache = Cache::new(config.clone())?;
        // The tasks hold the cache weakly and end with it.
        let _ = Tasks::start(&cache);
        Ok(CacheLayer::from_cache(cache))
    }

    /// A layer serving through an existing cache (so the admin API can share it).
    pub fn from_cache(cache: Cache) -> CacheLayer {
        CacheLayer { cache }
    }

    /// The cache behind the layer.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService::new(inner, self.cache.clone())
    }
}

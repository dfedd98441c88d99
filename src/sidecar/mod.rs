//! The sidecar (`larder serve`): the proxy listener (HTTP/1.1 and h2, over TLS where
//! `tls_cert` is set, h2c otherwise) running the cache
//! layer in front of the upstream client, the admin listener, and the background tasks.
//! Both listeners stop gracefully: no new connections, in-flight requests finish (bounded
//! by `proxy.shutdown_grace`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = larder::Config::load("config/larder.toml")?;
//! let running = larder::sidecar::start(config).await?;
//! println!("proxy on {}", running.proxy_addr);
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod listener;
pub(crate) mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::Admin;
pub use listener::{default_max_connections, Limits};
pub use upstream::{Counted, UpstreamBody, Upstreams};

use crate::body::CacheBody;
use crate::cache::{Cache, Warm};
use crate::config::{Config, HostHeader};
use crate::layer::{CacheService, ClientAddr};
use crate::ops::Tasks;

/// A started server.
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub proxy_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The cache both serve.
    pub cache: Cache,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    tasks: Tasks,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), stops the background
    /// tasks, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.listeners {
            let _ = t.await;
        }
        self.tasks.shutdown();
        // What is hot now is warmed first at the next start.
        self.cache.sample_hot();
        self.cache.keep_hot().await;
        // The invalidation history is there after the restart.
        self.cache.keep_history().await;
        // Write-back entries still queued reach the disk.
        self.cache.tiers().flush().await;
    }

    /// Waits until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: no new connections, waiting for in-flight requests");
        self.shutdown().await;
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Listen { addr, what, source })
}

fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, crate::Error> {
    listener
        .local_addr()
        .map_err(|source| crate::Error::Listen { addr, what, source })
}

/// What `larder serve` refuses to run with, beyond what the config loader checks: no
/// upstream, a CA file that does not load, per-user keys on Redis without a shared user
/// secret. Start and every reload (SIGHUP, `POST /admin/reload`) run these same checks,
/// so a reload is as strict as a start.
pub fn servable(config: &Config) -> Result<(), crate::Error> {
    crate::cache::user_secret(config)?;
    Upstreams::new(&config.upstreams, Default::default())?;
    Ok(())
}

/// Gives each tier below memory a moment to answer (serving starts at once if one is
/// away: from memory or the upstream). The tier's URL is not logged: it may hold a
/// password.
async fn wait_for_tiers(cache: &Cache, limit: std::time::Duration) {
    for tier in cache.tiers().lower() {
        if !tier.wait_ready(limit).await {
            tracing::warn!(
                tier = tier.section(),
                "a tier is not answering yet: serving without it until it does"
            );
        }
    }
}

/// `name=url` of every upstream, passwords masked (for the log).
fn upstream_names(config: &Config) -> String {
    let names: Vec<String> = config
        .upstreams
        .iter()
        .map(|u| {
            format!(
                "{}={}",
                u.name,
                crate::config::mask_password(&u.url.to_string())
            )
        })
        .collect();
    names.join(",")
}

/// TLS for the listener whose pair `pick` chooses (`field` names it in an error).
fn terminator(
    cache: &Cache,
    pick: listener::PickPair,
    field: &'static str,
) -> Result<Arc<listener::Terminator>, crate::Error> {
    listener::Terminator::new(cache.clone(), pick)
        .map(Arc::new)
        .map_err(|message| crate::Error::Tls { field, message })
}

/// Binds both listeners and starts serving `config`.
pub async fn start(mut config: Config) -> Result<Running, crate::Error> {
    servable(&config)?;
    if crate::time::manual_from_env() {
        tracing::warn!(
            "the clock is manual ({}): POST /admin/clock moves it",
            crate::time::MANUAL_ENV
        );
    }
    // The upstream only sees the client's Host with `host = "preserve"`; otherwise keying
    // by it would split the cache for nothing.
    if config.cache.key_host.is_none() {
        config.cache.key_host = Some(config.proxy.host == HostHeader::Preserve);
    }
    let cache = Cache::new(config.clone())?;
    let upstreams = Upstreams::new(&config.upstreams, cache.counters().upstream_errors.clone())?;
    wait_for_tiers(&cache, config.store.redis_connect_timeout).await;
    let admin = Arc::new(Admin::new(cache.clone(), &config));
    let proxy_listener = bind(config.proxy.listen, "proxy.listen").await?;
    let admin_listener = bind(config.admin.listen, "admin.listen").await?;
    let proxy_addr = local_addr(&proxy_listener, config.proxy.listen, "proxy.listen")?;
    let admin_addr = local_addr(&admin_listener, config.admin.listen, "admin.listen")?;
    let (stop, stopped) = watch::channel(false);

    let service = Arc::new(CacheService::new(upstreams, cache.clone()));
    // Warming and prefetch go through the cache like any client, on the same upstream
    // client and pool.
    cache.set_warmer(Arc::new(Through(service.clone())));
    let mut tasks = Tasks::start(&cache);
    tasks.start_sidecar(&cache, servable);
    let limits = Limits::of(&config.proxy);
    let proxy_tls = terminator(&cache, |c| c.proxy.tls.as_ref(), "proxy.tls_cert")?;
    let admin_tls = terminator(&cache, |c| c.admin.tls.as_ref(), "admin.tls_cert")?;
    let proxy = tokio::spawn(listener::serve(
        (proxy_listener, proxy_tls),
        stopped.clone(),
        limits,
        move |addr| {
            let service = service.clone();
            service_fn(move |mut req: Request<Incoming>| {
                let service = service.clone();
                async move {
                    if let Some(refusal) = malformed(&req) {
                        return Ok(refusal);
                    }
                    req.extensions_mut().insert(ClientAddr(addr));
                    service.handle(req).await
                }
            })
        },
    ));
    let admin_limits = Limits {
        max_connections: 256,
        ..limits
    };
    let admin = tokio::spawn(listener::serve(
        (admin_listener, admin_tls),
        stopped,
        admin_limits,
        move |_addr| {
            let admin = admin.clone();
            service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            })
        },
    ));
    let names = upstream_names(&config);
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, upstreams = %names, "larder listening");
    Ok(Running {
        proxy_addr,
        admin_addr,
        cache,
        stop,
        listeners: vec![proxy, admin],
        tasks,
    })
}

/// Sends warming and prefetch requests through the cache layer and the upstream client.
struct Through(Arc<CacheService<Upstreams>>);

impl Warm for Through {
    fn get(
        &self,
        path_and_query: String,
        headers: HeaderMap,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
        let service = self.0.clone();
        Box::pin(async move {
            let mut req = Request::get(path_and_query.as_str())
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("bad path: {e}"))?;
            *req.headers_mut() = headers;
            req.extensions_mut().insert(crate::layer::Background);
            let Ok(resp) = service.handle(req).await;
            let status = resp.status().as_u16();
            // Read the body whole: a fill stores what it streams through.
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok(status)
        })
    }
}

/// A request no proxy should pass on (RFC 9112 §3.2, RFC 9110 §9.3.6, §9.3.8): an
/// HTTP/1.1 request without `Host` or with two, `CONNECT` (larder is no tunnel) and `TRACE`
/// (it would echo credentials back).
fn malformed<B>(req: &Request<Incoming>) -> Option<hyper::Response<CacheBody<B>>> {
    let hosts = req.headers().get_all(http::header::HOST).iter().count();
    let (status, message) = if hosts > 1 {
        (StatusCode::BAD_REQUEST, "more than one Host header\n")
    } else if hosts == 0
        && req.version() == http::Version::HTTP_11
        && req.uri().authority().is_none()
    {
        (
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header\n",
        )
    } else if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    } else {
        return None;
    };
    Some(crate::flow::error_response(status, message))
}

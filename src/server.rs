//! The sidecar: the proxy listener (HTTP/1.1 and h2c) running the cache layer in front of
//! the upstream client, and the admin listener. Both stop gracefully: no new
//! connections, in-flight requests finish (bounded by `proxy.shutdown_grace`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = larder::Config::load("config/larder.toml")?;
//! let running = larder::server::start(config).await?;
//! println!("proxy on {}", running.proxy_addr);
//! running.shutdown().await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::body::CacheBody;
use crate::cache::{Cache, Warm};
use crate::config::Config;
use crate::layer::CacheService;
use crate::listener::{self, Limits};
use crate::proxy::{ClientAddr, Upstream};

/// A started server.
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub proxy_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The cache both serve.
    pub cache: Cache,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: no new connections, waiting for in-flight requests");
        self.shutdown().await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error(format!("cannot listen on {addr} ({what}): {e}")))
}

/// Binds both listeners and starts serving `config`.
pub async fn start(mut config: Config) -> Result<Running, crate::Error> {
    // The upstream only sees the client's Host with `host = "preserve"`; otherwise keying
    // by it would split the cache for nothing.
    if config.cache.key_host.is_none() {
        config.cache.key_host = Some(config.proxy.host == crate::config::HostHeader::Preserve);
    }
    let upstream: Upstream<CacheBody<Incoming>> = Upstream::new(&config.proxy)?;
    let cache = Cache::new(config.clone())?;
    if let Some(redis) = cache.redis() {
        // Serve at once if Redis is away (from L1 or the upstream), but give it a moment.
        if !redis
            .wait_connected(config.store.redis_connect_timeout)
            .await
        {
            // (The URL is not logged: it may hold a password.)
            tracing::warn!("redis is not answering yet: serving without it until it does");
        }
    }
    let admin = Arc::new(Admin::new(cache.clone(), &config));
    let proxy_listener = bind(config.proxy.listen, "proxy.listen").await?;
    let admin_listener = bind(config.admin.listen, "admin.listen").await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|e| crate::Error(e.to_string()))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| crate::Error(e.to_string()))?;
    let (stop, stopped) = watch::channel(false);
    let grace = config.proxy.shutdown_grace;

    let service = Arc::new(CacheService::new(upstream, cache.clone()));
    // Warming and prefetch go through the cache like any client, on their own upstream
    // client (their requests have no body).
    let warm_upstream: Upstream<CacheBody<Empty<Bytes>>> = Upstream::new(&config.proxy)?;
    cache.set_warmer(Arc::new(Through(Arc::new(CacheService::new(
        warm_upstream,
        cache.clone(),
    )))));
    spawn_warming(cache.clone());
    spawn_reload_on_hangup(cache.clone());
    let limits = Limits {
        header_read_timeout: config.proxy.header_read_timeout,
        idle_timeout: config.proxy.idle_timeout,
        max_connections: config
            .proxy
            .max_connections
            .unwrap_or_else(listener::default_max_connections),
        max_header: config.proxy.max_header as usize,
        max_headers: config.proxy.max_headers,
        shutdown_grace: grace,
    };
    let proxy_task = tokio::spawn(listener::serve(
        proxy_listener,
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
    let admin_task = tokio::spawn(listener::serve(
        admin_listener,
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
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, upstream = ?config.proxy.upstream.as_ref().map(|u| u.to_string()), "larder listening");
    Ok(Running {
        proxy_addr,
        admin_addr,
        cache,
        stop,
        tasks: vec![proxy_task, admin_task],
    })
}

/// Sends warming and prefetch requests through the cache layer and the upstream client.
struct Through(Arc<CacheService<Upstream<CacheBody<Empty<Bytes>>>>>);

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

/// Warms `[warm].urls` at start-up and every `[warm].every` (read afresh each time, so a
/// reload applies).
fn spawn_warming(cache: Cache) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let warm = cache.settings().config.warm.clone();
            if (!first || warm.at_start) && !warm.urls.is_empty() {
                let mut headers = HeaderMap::new();
                for (n, v) in &warm.headers {
                    headers.append(n.clone(), v.clone());
                }
                match cache.warm(&warm.urls, &headers, warm.concurrency).await {
                    Ok(w) if w.failed.is_empty() => tracing::info!(warmed = w.warmed, "warmed"),
                    Ok(w) => {
                        tracing::warn!(warmed = w.warmed, failed = ?w.failed, "warming: some URLs failed")
                    }
                    Err(e) => tracing::warn!(error = %e, "warming failed"),
                }
            }
            first = false;
            match warm.every {
                Some(every) => tokio::time::sleep(every).await,
                // Look again later in case a reload adds a schedule.
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        }
    });
}

/// SIGHUP re-reads the config file (see [`Cache::reload_file`]).
fn spawn_reload_on_hangup(cache: Cache) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome (and any error, as file:line:col) is logged by reload_file.
            let _ = cache.reload_file();
        }
    });
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
    Some(crate::serve::error_response(status, message))
}

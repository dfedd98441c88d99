//! Accepting client connections with limits, so that silent or slow clients cannot take
//! the server away from everyone else.
//!
//! - **Header-read timeout**: a request head must arrive whole within
//!   `proxy.header_read_timeout`, counted from its first byte (or from accept, for a
//!   connection that sends nothing), so neither silence nor a trickle holds a connection.
//! - **Idle timeout**: a connection with no request in flight and no bytes moving for
//!   `proxy.idle_timeout` is closed.
//! - **Connection cap**: at `proxy.max_connections` the connection idle the longest (no
//!   request in flight) is closed to make room; if every connection is busy, the new one
//!   is closed at once. Running out of file descriptors does the same eviction and backs
//!   off briefly instead of spinning.
//! - **Head size**: request heads over `proxy.max_header` or with more than
//!   `proxy.max_headers` fields are answered `431` (HTTP/1.1) or refused by the HTTP/2
//!   header-list limit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::body::PassBody;

mod conn;
mod interim;
mod tls;

use conn::{ActivityIo, ConnState, Registry, Tracked};
pub use interim::InterimSink;
pub use tls::{PickPair, Terminator};

/// The limits a listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to the first complete request head (and between HTTP/1.1 requests).
    pub header_read_timeout: Duration,
    /// Time a connection may sit with nothing in flight and no bytes moving.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// The largest request head in bytes.
    pub max_header: usize,
    /// The most request header fields.
    pub max_headers: usize,
    /// Longest wait for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits `[proxy]` sets.
    pub fn of(proxy: &crate::config::ProxyConfig) -> Limits {
        Limits {
            header_read_timeout: proxy.header_read_timeout,
            idle_timeout: proxy.idle_timeout,
            max_connections: proxy
                .max_connections
                .unwrap_or_else(default_max_connections),
            max_header: proxy.max_header as usize,
            max_headers: proxy.max_headers,
            shutdown_grace: proxy.shutdown_grace,
        }
    }
}

/// The default connection cap: half of what the file-descriptor limit leaves after a
/// reserve (the other half is for upstream and Redis connections), read from
/// `/proc/self/limits`; 10,000 where that cannot be read.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        });
    match soft {
        Some(n) => (n.saturating_sub(64) / 2).clamp(16, 100_000),
        None => 10_000,
    }
}

/// What a listener serves each connection with: a service answering hyper's requests
/// with bodies the listener can track.
pub trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = hyper::Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S, B> ConnService<B> for S
where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
}

/// Serves every connection `listener` accepts (over TLS while `tls` has a certificate)
/// with the service `make_service` builds for the peer, within `limits`, until `stopped`
/// turns true; then stops accepting and gives in-flight requests `limits.shutdown_grace`
/// to finish.
pub async fn serve<F, S, B>(
    (listener, tls): (TcpListener, Arc<Terminator>),
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
    make_service: F,
) where
    F: Fn(SocketAddr) -> S,
    S: ConnService<B>,
    B: PassBody,
{
    let builder = Arc::new(http_builder(&limits));
    let registry = Arc::new(Registry {
        started: Instant::now(),
        clock: AtomicU64::new(0),
        live: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let mut connections = JoinSet::new();
    let mut sweep = sweeper(&limits);
    let (closing, _) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: make room and back off
                        // briefly rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        registry.evict_idlest();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if let Some((id, state, io)) = open_connection(&registry, &limits, stream) {
                    let service = Tracked { inner: make_service(addr), state: state.clone() };
                    let shared = (builder.clone(), registry.clone(), tls.clone());
                    connections.spawn(serve_one(shared, (id, state), io, service, closing.subscribe()));
                }
            }
            _ = sweep.tick() => {
                registry.sweep(&limits);
                while connections.try_join_next().is_some() {}
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    closing.send_replace(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "in-flight requests did not finish in time");
    }
}

/// The HTTP/1.1 and HTTP/2 server for `limits`. Heads are timed by the sweeper (a hyper
/// timer would arm a `Sleep` per request).
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(limits.max_header.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// How often the sweeper checks heads and idleness: a quarter of the shorter timeout,
/// between 50 ms and a second.
fn sweeper(limits: &Limits) -> tokio::time::Interval {
    let quarter = limits
        .header_read_timeout
        .min(limits.idle_timeout)
        .as_millis() as u64
        / 4;
    let mut sweep = tokio::time::interval(Duration::from_millis(quarter.clamp(50, 1_000)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep
}

/// Registers an accepted connection (closing the idlest one at the cap; refusing this
/// one if every connection is busy): its id, its state and its watched socket.
fn open_connection(
    registry: &Arc<Registry>,
    limits: &Limits,
    stream: tokio::net::TcpStream,
) -> Option<(u64, Arc<ConnState>, ActivityIo)> {
    if registry.live.lock().len() >= limits.max_connections && !registry.evict_idlest() {
        tracing::warn!(
            max_connections = limits.max_connections,
            "connection cap reached and none idle: refusing a connection"
        );
        return None;
    }
    let _ = stream.set_nodelay(true);
    registry.tick();
    let state = Arc::new(ConnState {
        last_active: AtomicU64::new(registry.now_ms()),
        in_flight: AtomicU32::new(0),
        served: AtomicBool::new(false),
        head_since: AtomicU64::new(0),
        h2: AtomicBool::new(false),
        tls: AtomicBool::new(false),
        interim: Arc::default(),
        close: Notify::new(),
    });
    let id = registry.next.fetch_add(1, Relaxed);
    registry.live.lock().insert(id, state.clone());
    let io = ActivityIo {
        inner: stream,
        state: state.clone(),
        registry: registry.clone(),
    };
    Some((id, state, io))
}

type Shared = (
    Arc<auto::Builder<TokioExecutor>>,
    Arc<Registry>,
    Arc<Terminator>,
);

/// Serves one connection (after the TLS handshake, where the listener speaks TLS) until it
/// ends, then forgets it.
async fn serve_one<S, B>(
    (builder, registry, tls): Shared,
    (id, state): (u64, Arc<ConnState>),
    io: ActivityIo,
    service: Tracked<S>,
    closing: watch::Receiver<bool>,
) where
    S: ConnService<B>,
    B: PassBody,
{
    match tls.current() {
        None => serve_http(&builder, &state, io, service, closing).await,
        Some(config) => {
            // A handshake is bounded like a request head: the sweeper closes it when late.
            let stream = tokio::select! {
                stream = tls::accept(io, config) => stream,
                _ = state.close.notified() => None,
            };
            if let Some(stream) = stream {
                state.tls.store(true, Relaxed);
                serve_http(&builder, &state, stream, service, closing).await;
            }
        }
    }
    registry.live.lock().remove(&id);
}

/// Serves HTTP on one connection until it ends; drops it when it is idle, evicted or its
/// head is late, and closes it gracefully (what is in flight finishes) when the server
/// stops.
async fn serve_http<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    state: &ConnState,
    io: I,
    service: Tracked<S>,
    mut closing: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: ConnService<B>,
    B: PassBody,
{
    let io = interim::InterimIo {
        inner: io,
        interim: state.interim.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut shutting = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            // Idle, evicted, or a head that did not arrive in time: nothing is in flight,
            // so the connection is dropped at once (a graceful close would wait for the
            // head).
            _ = state.close.notified() => break,
            _ = closing.changed(), if !shutting => {
                shutting = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

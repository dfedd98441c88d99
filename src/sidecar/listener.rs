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
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::body::BoxError;

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

/// One connection as the limits see it.
struct ConnState {
    /// Milliseconds since the listener started, at the last byte read or written.
    last_active: AtomicU64,
    /// Requests whose response (body included) has not finished.
    in_flight: AtomicU32,
    /// Whether a request has been received on it.
    served: AtomicBool,
    /// When the first byte of a request head not yet dispatched arrived (0: none pending).
    head_since: AtomicU64,
    /// HTTP/2: frames move between requests, so heads are not timed (streams are).
    h2: AtomicBool,
    close: Notify,
}

/// The open connections of one listener.
struct Registry {
    started: Instant,
    /// Milliseconds since `started`, as of the last sweep (a clock that costs the I/O path
    /// no system call).
    clock: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.clock.load(Relaxed)
    }

    fn tick(&self) {
        self.clock
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    /// Closes the connection idle the longest (nothing in flight); false if none is idle.
    fn evict_idlest(&self) -> bool {
        let live = self.live.lock();
        let victim = live
            .values()
            .filter(|c| c.in_flight.load(Relaxed) == 0)
            .min_by_key(|c| c.last_active.load(Relaxed));
        match victim {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes connections that waited too long for a first request, or sat idle too long.
    fn sweep(&self, limits: &Limits) {
        self.tick();
        let now = self.now_ms();
        let head_limit = limits.header_read_timeout.as_millis() as u64;
        for c in self.live.lock().values() {
            let head_since = c.head_since.load(Relaxed);
            if head_since != 0 && now.saturating_sub(head_since) >= head_limit {
                c.close.notify_one();
                continue;
            }
            if c.in_flight.load(Relaxed) > 0 {
                continue;
            }
            let limit = if c.served.load(Relaxed) {
                limits.idle_timeout
            } else {
                limits.header_read_timeout
            };
            if now.saturating_sub(c.last_active.load(Relaxed)) >= limit.as_millis() as u64 {
                c.close.notify_one();
            }
        }
    }
}

pin_project! {
    /// The socket, noting when bytes last moved.
    struct ActivityIo {
        #[pin]
        inner: TcpStream,
        state: Arc<ConnState>,
        registry: Arc<Registry>,
    }
}

impl ActivityIo {
    fn touch(state: &ConnState, registry: &Registry) {
        state.last_active.store(registry.now_ms(), Relaxed);
    }

    /// Bytes arrived: with nothing in flight they start a request head.
    fn received(state: &ConnState, registry: &Registry) {
        let now = registry.now_ms();
        state.last_active.store(now, Relaxed);
        if state.in_flight.load(Relaxed) == 0
            && state.head_since.load(Relaxed) == 0
            && !state.h2.load(Relaxed)
        {
            // (0 means none pending: a head starting at the very first tick counts from 1.)
            state.head_since.store(now.max(1), Relaxed);
        }
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            ActivityIo::received(this.state, this.registry);
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            ActivityIo::touch(this.state, this.registry);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            ActivityIo::touch(this.state, this.registry);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Counts a request in flight until its response body is done (or dropped).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: &Arc<ConnState>, h2: bool) -> InFlight {
        state.in_flight.fetch_add(1, Relaxed);
        state.head_since.store(0, Relaxed);
        if !state.served.load(Relaxed) {
            state.served.store(true, Relaxed);
            state.h2.store(h2, Relaxed);
        }
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

pin_project! {
    /// A response body that keeps its request counted in flight.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: InFlight,
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves every connection `listener` accepts with the service `make_service` builds for
/// the peer, within `limits`, until `stopped` turns true; then stops accepting and gives
/// in-flight requests `limits.shutdown_grace` to finish.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
    make_service: F,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Heads are timed by the sweeper (a hyper timer would arm a Sleep per request).
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
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry {
        started: Instant::now(),
        clock: AtomicU64::new(0),
        live: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let mut connections = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_millis(
        (limits
            .header_read_timeout
            .min(limits.idle_timeout)
            .as_millis() as u64
            / 4)
        .clamp(50, 1_000),
    ));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                if registry.live.lock().len() >= limits.max_connections && !registry.evict_idlest() {
                    tracing::warn!(max_connections = limits.max_connections, "connection cap reached and none idle: refusing a connection");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                registry.tick();
                let state = Arc::new(ConnState {
                    last_active: AtomicU64::new(registry.now_ms()),
                    in_flight: AtomicU32::new(0),
                    served: AtomicBool::new(false),
                    head_since: AtomicU64::new(0),
                    h2: AtomicBool::new(false),
                    close: Notify::new(),
                });
                let id = registry.next.fetch_add(1, Relaxed);
                registry.live.lock().insert(id, state.clone());
                let service = Tracked { inner: make_service(addr), state: state.clone() };
                let io = ActivityIo { inner: stream, state: state.clone(), registry: registry.clone() };
                connections.spawn(serve_one(builder.clone(), registry.clone(), (id, state), io, service, closing.subscribe()));
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

/// Serves one connection until it ends; drops it when it is idle, evicted or its head is
/// late, and closes it gracefully (what is in flight finishes) when the server stops.
async fn serve_one<S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    registry: Arc<Registry>,
    (id, state): (u64, Arc<ConnState>),
    io: ActivityIo,
    service: Tracked<S>,
    mut closing: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
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
    registry.live.lock().remove(&id);
}

/// The per-connection service: counts each request in flight until its body is done.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<
        Request<Incoming>,
        Response = hyper::Response<B>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = Some(InFlight::new(
            &self.state,
            req.version() == http::Version::HTTP_2,
        ));
        TrackedFuture {
            inner: self.inner.call(req),
            guard,
        }
    }
}

pin_project! {
    /// The response future of [`Tracked`].
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<hyper::Response<B>, Infallible>>,
{
    type Output = Result<hyper::Response<TrackedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(resp)) => {
                let guard = this
                    .guard
                    .take()
                    .expect("TrackedFuture polled after completion");
                Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, guard })))
            }
            Poll::Ready(Err(never)) => match never {},
        }
    }
}

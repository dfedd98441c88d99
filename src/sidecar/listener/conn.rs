//! One connection as the listener's limits see it: when bytes last moved, what is in
//! flight, when a request head began; the registry of open connections with its coarse
//! clock; and the wrappers that keep those facts (around the socket, the service, the body).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::Request;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::Limits;

/// One connection as the limits see it.
pub(super) struct ConnState {
    /// Milliseconds since the listener started, at the last byte read or written.
    pub(super) last_active: AtomicU64,
    /// Requests whose response (body included) has not finished.
    pub(super) in_flight: AtomicU32,
    /// Whether a request has been received on it.
    pub(super) served: AtomicBool,
    /// When the first byte of a request head not yet dispatched arrived (0: none pending).
    pub(super) head_since: AtomicU64,
    /// HTTP/2: frames move between requests, so heads are not timed (streams are).
    pub(super) h2: AtomicBool,
    /// Whether the connection completed a TLS handshake.
    pub(super) tls: AtomicBool,
    /// Interim responses waiting to be written ahead of the final answer.
    pub(super) interim: Arc<super::interim::Interim>,
    pub(super) close: Notify,
}

/// The open connections of one listener.
pub(super) struct Registry {
    pub(super) started: Instant,
    /// Milliseconds since `started`, as of the last sweep (a clock that costs the I/O path
    /// no system call).
    pub(super) clock: AtomicU64,
    pub(super) live: Mutex<HashMap<u64, Arc<ConnState>>>,
    pub(super) next: AtomicU64,
}

impl Registry {
    pub(super) fn now_ms(&self) -> u64 {
        self.clock.load(Relaxed)
    }

    pub(super) fn tick(&self) {
        self.clock
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    /// Closes the connection idle the longest (nothing in flight); false if none is idle.
    pub(super) fn evict_idlest(&self) -> bool {
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
    pub(super) fn sweep(&self, limits: &Limits) {
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
    pub(super) struct ActivityIo {
        #[pin]
        pub(super) inner: TcpStream,
        pub(super) state: Arc<ConnState>,
        pub(super) registry: Arc<Registry>,
    }
}

impl ActivityIo {
    pub(super) fn touch(state: &ConnState, registry: &Registry) {
        state.last_active.store(registry.now_ms(), Relaxed);
    }

    /// Bytes arrived: with nothing in flight they start a request head.
    pub(super) fn received(state: &ConnState, registry: &Registry) {
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
pub(super) struct InFlight(Arc<ConnState>);

impl InFlight {
    pub(super) fn new(state: &Arc<ConnState>, h2: bool) -> InFlight {
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

/// The per-connection service: counts each request in flight until its body is done.
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) state: Arc<ConnState>,
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

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if self.state.tls.load(Relaxed) {
            req.extensions_mut().insert(crate::layer::ClientTls);
        }
        // HTTP/1.0 clients are never sent a 1xx (RFC 9110 §15.2); hyper's HTTP/2 server
        // has no way to send one.
        if req.version() == http::Version::HTTP_11 {
            let sink = self.state.interim.begin();
            req.extensions_mut().insert(sink);
        }
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
                guard.0.interim.answered();
                Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, guard })))
            }
            Poll::Ready(Err(never)) => match never {},
        }
    }
}

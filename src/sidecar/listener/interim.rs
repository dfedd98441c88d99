//! Interim responses (`102 Processing`, `103 Early Hints`, RFC 9110 §15.2) passed from the
//! upstream to an HTTP/1.1 client while its final answer is on its way. hyper's server
//! cannot send them, so the connection's writer puts them on the wire ahead of the
//! response hyper writes. They are never stored and never reused: only the client whose
//! request went upstream sees them, and only before its final answer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One connection's interim responses waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Interim {
    pending: Mutex<Pending>,
    waiting: AtomicBool,
    /// The connection's task, woken to write them.
    writer: AtomicWaker,
    /// The request in flight (counted from 1).
    request: AtomicU64,
}

/// The bytes waiting, and whether the final answer is ready (then nothing more may be
/// added: hyper writes the answer next). One lock for both, so an interim response is
/// either queued before the answer is ready (and written ahead of it) or dropped.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    answered: bool,
}

impl Interim {
    /// A new request is in flight: the handle its upstream request carries.
    pub(super) fn begin(self: &Arc<Self>) -> InterimSink {
        let request = self.request.fetch_add(1, SeqCst) + 1;
        self.pending.lock().answered = false;
        InterimSink {
            conn: self.clone(),
            request,
        }
    }

    /// The final answer is ready: nothing interim may follow it.
    pub(super) fn answered(&self) {
        self.pending.lock().answered = true;
    }
}

/// What a request carries so that its upstream's interim responses reach its client.
#[derive(Clone, Debug)]
pub struct InterimSink {
    conn: Arc<Interim>,
    request: u64,
}

impl InterimSink {
    /// Passes on an interim response (not `100`, which the server side answers itself,
    /// nor `101`), unless the final answer has begun.
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) {
        let code = status.as_u16();
        if !(102..200).contains(&code) || self.conn.request.load(SeqCst) != self.request {
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {code} {}\r\n",
            status.canonical_reason().unwrap_or("Interim")
        )
        .into_bytes();
        let mut headers = headers.clone();
        crate::semantics::hygiene::strip_hop_by_hop(&mut headers);
        for (name, value) in &headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        {
            let mut pending = self.conn.pending.lock();
            if pending.answered || self.conn.request.load(SeqCst) != self.request {
                return;
            }
            pending.bytes.extend_from_slice(&head);
            self.conn.waiting.store(true, SeqCst);
        }
        self.conn.writer.wake();
    }
}

pin_project! {
    /// A connection's stream (TLS or not) that writes waiting interim responses before
    /// anything else.
    pub(super) struct InterimIo<I> {
        #[pin]
        pub(super) inner: I,
        pub(super) interim: Arc<Interim>,
    }
}

impl<I: AsyncWrite> InterimIo<I> {
    /// Writes what is waiting; `Ready` once nothing is.
    fn drain(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if !this.interim.waiting.load(SeqCst) {
            return Poll::Ready(Ok(()));
        }
        let mut pending = this.interim.pending.lock();
        while !pending.bytes.is_empty() {
            match this.inner.as_mut().poll_write(cx, &pending.bytes)? {
                Poll::Ready(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(n) => drop(pending.bytes.drain(..n)),
                Poll::Pending => return Poll::Pending,
            }
        }
        this.interim.waiting.store(false, SeqCst);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead> AsyncRead for InterimIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        this.interim.writer.register(cx.waker());
        this.inner.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for InterimIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.interim.writer.register(cx.waker());
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

//! A fill in progress, shared: the bytes received so far, read by every client of the fill
//! — the one that caused it and those that joined — each at its own pace.
//!
//! While the entry may still be stored, every chunk is kept (up to the store's bound); once
//! it may not (it grew too large), chunks every reader has passed are let go and the
//! producer waits while the slowest reader is more than [`WINDOW`] behind, so memory stays
//! bounded. A fill that fails reaches every reader as an error, never as a clean end.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::BodyExt;
//! use larder::coalesce::stream::FillStream;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use larder::coalesce::stream::Audience;
//! let fill = FillStream::new(http::StatusCode::OK, http::HeaderMap::new(), Audience::Everyone);
//! let early = fill.reader();
//! fill.push(Bytes::from_static(b"data: 1\n\n"));
//! let late = fill.reader(); // joins after the first event: gets it at once
//! fill.push(Bytes::from_static(b"data: 2\n\n"));
//! fill.finish();
//! assert_eq!(early.collect().await.unwrap().to_bytes(), "data: 1\n\ndata: 2\n\n");
//! assert_eq!(late.collect().await.unwrap().to_bytes(), "data: 1\n\ndata: 2\n\n");
//! # });
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

use crate::key::CacheKey;

/// How far (in bytes) the slowest reader may fall behind a fill that is no longer stored
/// before the producer waits for it.
pub const WINDOW: usize = 1 << 20;

/// How a fill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Running.
    Open,
    /// The body completed.
    Complete,
    /// The upstream cut or failed the body.
    Failed,
}

struct State {
    /// Chunks kept, the first being chunk number `base`.
    chunks: VecDeque<Bytes>,
    base: usize,
    /// Bytes in `chunks`.
    held: usize,
    /// Bytes received in all.
    received: usize,
    /// Whether every chunk is kept for the entry.
    keeping: bool,
    end: End,
    /// Each live reader's next chunk number (by reader id).
    positions: Vec<(u64, usize)>,
    next_reader: u64,
    readers_waiting: Vec<Waker>,
    producer_waiting: Option<Waker>,
}

/// Who may take a fill's answer: what a request for the same key would be served from
/// the entry once it is stored (its `Vary` variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The answer does not vary: every request for the key.
    Everyone,
    /// The answer varies on these request headers: only requests whose variant of them is
    /// this key (the variant the fill stores).
    Variant(Vec<HeaderName>, CacheKey),
}

impl Audience {
    /// Whether a request for `primary` with `headers` would be served this answer.
    pub fn includes(&self, primary: &CacheKey, headers: &HeaderMap) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Variant(names, variant) => primary.variant(names, headers) == *variant,
        }
    }
}

/// A fill's shared state; see the module docs.
pub struct FillStream {
    status: StatusCode,
    headers: HeaderMap,
    audience: Audience,
    state: Mutex<State>,
}

impl std::fmt::Debug for FillStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("FillStream")
            .field("received", &s.received)
            .field("keeping", &s.keeping)
            .finish()
    }
}

impl FillStream {
    /// A fill whose answer has this status and these headers (as clients other than the
    /// one that caused it see them, before each one's `Cache-Status`), for `audience`.
    pub fn new(status: StatusCode, headers: HeaderMap, audience: Audience) -> Arc<FillStream> {
        Arc::new(FillStream {
            status,
            headers,
            audience,
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                base: 0,
                held: 0,
                received: 0,
                keeping: true,
                end: End::Open,
                positions: Vec::new(),
                next_reader: 0,
                readers_waiting: Vec::new(),
                producer_waiting: None,
            }),
        })
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        let mut s = self.state.lock();
        let id = s.next_reader;
        s.next_reader += 1;
        let start = if s.keeping { 0 } else { s.base };
        s.positions.push((id, start));
        FillReader {
            stream: self.clone(),
            id,
            next: start,
        }
    }

    /// Who may take the answer.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// Whether the answer is an event stream (`text/event-stream`).
    pub fn is_event_stream(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| crate::semantics::media::media_type(ct) == "text/event-stream")
    }

    /// Whether a client can take the body as it comes (gzip only if it accepts gzip).
    pub fn servable_to(&self, accepts_gzip: bool) -> bool {
        let gzip = self
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        !gzip || accepts_gzip
    }

    /// Whether a reader joining now would get every byte (nothing has been let go).
    pub fn joinable(&self) -> bool {
        let s = self.state.lock();
        s.keeping && s.end != End::Failed
    }

    /// Adds a chunk and wakes the readers.
    pub fn push(&self, chunk: Bytes) {
        let mut s = self.state.lock();
        s.received += chunk.len();
        s.held += chunk.len();
        s.chunks.push_back(chunk);
        wake_all(&mut s.readers_waiting);
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.state.lock().received
    }

    /// Stops keeping the whole body (it will not be stored): chunks every reader has
    /// passed are let go from now on.
    pub fn stop_keeping(&self) {
        let mut s = self.state.lock();
        s.keeping = false;
        trim(&mut s);
    }

    /// The whole body, if every chunk was kept.
    pub fn body(&self) -> Option<Bytes> {
        let s = self.state.lock();
        if !s.keeping || s.base != 0 {
            return None;
        }
        Some(match s.chunks.len() {
            0 => Bytes::new(),
            1 => s.chunks[0].clone(),
            _ => {
                let mut all = BytesMut::with_capacity(s.held);
                for c in &s.chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        })
    }

    /// The body completed: readers end cleanly after the last chunk.
    pub fn finish(&self) {
        self.end(End::Complete);
    }

    /// The body failed: readers get an error after what they have.
    pub fn fail(&self) {
        self.end(End::Failed);
    }

    fn end(&self, end: End) {
        let mut s = self.state.lock();
        s.end = end;
        wake_all(&mut s.readers_waiting);
    }

    /// Ready when the producer may read on: the fill is kept whole, or the slowest reader
    /// is within [`WINDOW`]. Also ready (returning false) when no reader is left and the
    /// fill is not kept: nobody wants the rest.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.state.lock();
        if s.keeping {
            return Poll::Ready(true);
        }
        if s.positions.is_empty() {
            return Poll::Ready(false);
        }
        trim(&mut s);
        if s.held <= WINDOW {
            return Poll::Ready(true);
        }
        s.producer_waiting = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for w in wakers.drain(..) {
        w.wake();
    }
}

/// Lets go of chunks every reader has passed (only once the body is not kept).
fn trim(s: &mut State) {
    if s.keeping {
        return;
    }
    let slowest = s
        .positions
        .iter()
        .map(|(_, p)| *p)
        .min()
        .unwrap_or(s.base + s.chunks.len());
    while s.base < slowest {
        match s.chunks.pop_front() {
            Some(c) => {
                s.held -= c.len();
                s.base += 1;
            }
            None => break,
        }
    }
}

/// One client's view of a fill: a body that yields the fill's chunks as they arrive.
pub struct FillReader {
    stream: Arc<FillStream>,
    id: u64,
    next: usize,
}

impl FillReader {
    /// The fill it reads.
    pub fn stream(&self) -> &Arc<FillStream> {
        &self.stream
    }
}

impl Drop for FillReader {
    fn drop(&mut self) {
        let mut s = self.stream.state.lock();
        s.positions.retain(|(id, _)| *id != self.id);
        if let Some(w) = s.producer_waiting.take() {
            w.wake();
        }
    }
}

/// Why a reader's body ended in error: the fill failed.
#[derive(Debug)]
pub struct FillFailed;

impl std::fmt::Display for FillFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream body failed during the fill")
    }
}

impl std::error::Error for FillFailed {}

impl Body for FillReader {
    type Data = Bytes;
    type Error = FillFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, FillFailed>>> {
        let this = self.get_mut();
        let mut s = this.stream.state.lock();
        let next = this.next.max(s.base);
        if let Some(chunk) = s.chunks.get(next - s.base).cloned() {
            this.next = next + 1;
            if let Some(p) = s.positions.iter_mut().find(|(id, _)| *id == this.id) {
                p.1 = this.next;
            }
            if !s.keeping {
                if let Some(w) = s.producer_waiting.take() {
                    w.wake();
                }
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match s.end {
            End::Complete => Poll::Ready(None),
            End::Failed => Poll::Ready(Some(Err(FillFailed))),
            End::Open => {
                s.readers_waiting.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.stream.state.lock();
        s.end == End::Complete && self.next >= s.base + s.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_failed_fill_is_an_error_for_every_reader() {
        let fill = FillStream::new(StatusCode::OK, HeaderMap::new(), Audience::Everyone);
        let r = fill.reader();
        fill.push(Bytes::from_static(b"part"));
        fill.fail();
        assert!(r.collect().await.is_err());
        assert!(!fill.joinable());
    }

    #[test]
    fn memory_is_let_go_once_the_fill_is_not_kept() {
        let fill = FillStream::new(StatusCode::OK, HeaderMap::new(), Audience::Everyone);
        let mut r = fill.reader();
        for _ in 0..10 {
            fill.push(Bytes::from(vec![0u8; 1000]));
        }
        fill.stop_keeping();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..6 {
            assert!(matches!(
                Pin::new(&mut r).poll_frame(&mut cx),
                Poll::Ready(Some(Ok(_)))
            ));
        }
        assert_eq!(fill.poll_room(&mut cx), Poll::Ready(true));
        assert_eq!(fill.state.lock().held, 4000);
        assert!(fill.body().is_none());
        drop(r);
        assert_eq!(
            fill.poll_room(&mut cx),
            Poll::Ready(false),
            "no reader left"
        );
    }
}

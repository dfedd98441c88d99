//! The bodies the cache passes on: a stored body served from memory, the inner body
//! streamed through untouched, a buffered prefix followed by the rest of a stream, or a
//! fill followed as it arrives; and what the cache asks of the bodies and services it
//! wraps ([`PassBody`], [`Inner`]).
//!
//! ```
//! use http_body_util::BodyExt;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let body: larder::CacheBody<http_body_util::Empty<bytes::Bytes>> =
//!     larder::CacheBody::full(bytes::Bytes::from_static(b"cached"));
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "cached");
//! # });
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use http::{Request, Response};
use tower::Service;

use crate::coalesce::stream::FillReader;
use crate::llm::DropUsage;

/// A boxed error, as tower-http uses for wrapped bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A request or response body passed through the cache layer: bytes held in memory,
    /// the inner body streamed as it comes, or frames read ahead followed by the rest.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = Proj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: B },
        Prefixed { prefix: VecDeque<Bytes>, #[pin] inner: Pin<Box<B>> },
        Fill { #[pin] reader: FillReader },
        FillWithout { #[pin] reader: FillReader, filter: DropUsage, ended: bool },
    }
}

impl<B> CacheBody<B> {
    /// A body of these bytes.
    pub fn full(data: Bytes) -> Self {
        CacheBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        CacheBody {
            kind: Kind::Full { data: None },
        }
    }

    /// A fill in progress, followed as it arrives.
    pub fn fill(reader: FillReader) -> Self {
        CacheBody {
            kind: Kind::Fill { reader },
        }
    }

    /// A fill followed as it arrives, without the OpenAI chat usage chunk (for a client
    /// that did not ask for it).
    pub fn fill_without_usage(reader: FillReader) -> Self {
        CacheBody {
            kind: Kind::FillWithout {
                reader,
                filter: DropUsage::default(),
                ended: false,
            },
        }
    }

    /// `prefix` (read already), then the rest of `inner`.
    pub fn prefixed(prefix: VecDeque<Bytes>, inner: Pin<Box<B>>) -> Self {
        CacheBody {
            kind: Kind::Prefixed { prefix, inner },
        }
    }

    /// The inner body, untouched.
    pub fn stream(inner: B) -> Self {
        CacheBody {
            kind: Kind::Stream { inner },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            Proj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Proj::Stream { inner } => inner.poll_frame(cx).map_err(Into::into),
            Proj::Prefixed { prefix, inner } => match prefix.pop_front() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => inner.poll_frame(cx).map_err(Into::into),
            },
            Proj::Fill { reader } => reader.poll_frame(cx).map_err(Into::into),
            Proj::FillWithout {
                mut reader,
                filter,
                ended,
            } => loop {
                if *ended {
                    return Poll::Ready(None);
                }
                match reader.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let out = filter.feed(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Poll::Ready(None) => {
                        *ended = true;
                        let rest = filter.finish();
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Stream { inner } => inner.is_end_stream(),
            Kind::Prefixed { prefix, inner } => prefix.is_empty() && inner.is_end_stream(),
            Kind::Fill { reader } => reader.is_end_stream(),
            Kind::FillWithout { ended, .. } => *ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { inner } => inner.size_hint(),
            Kind::Fill { reader } | Kind::FillWithout { reader, .. } => reader.size_hint(),
            Kind::Prefixed { prefix, inner } => {
                let p: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let h = inner.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + p);
                if let Some(u) = h.upper() {
                    out.set_upper(u + p);
                }
                out
            }
        }
    }
}

/// A body the layer takes in or hands on: bytes, an error it can box, sendable.
pub trait PassBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<T> PassBody for T
where
    T: Body<Data = Bytes> + Send + 'static,
    T::Error: Into<BoxError>,
{
}

/// What the layer wraps: a cloneable service that answers requests carrying a
/// [`CacheBody`] with responses whose body the layer can hand on (an axum `Router`, the
/// sidecar's upstream client).
pub trait Inner<B, ResB>:
    Service<
        Request<CacheBody<B>>,
        Response = Response<ResB>,
        Future: Send + 'static,
        Error: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B, ResB> Inner<B, ResB> for S
where
    S: Service<Request<CacheBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
}

/// The result of reading a body up to a limit.
pub enum Buffered<B> {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Over the limit: what was read, and the rest.
    TooLarge(CacheBody<B>),
    /// Reading failed.
    Failed(BoxError),
    /// The whole body did not arrive within the time allowed.
    TimedOut,
}

/// Reads `body` whole if it fits in `limit` bytes; otherwise hands back a body that
/// replays what was read and streams the rest. Trailers are dropped from complete bodies.
pub async fn buffer<B>(body: B, limit: usize) -> Buffered<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    let mut total = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Buffered::Failed(e.into()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    frames.push_back(data);
                    if total > limit {
                        return Buffered::TooLarge(CacheBody {
                            kind: Kind::Prefixed {
                                prefix: frames,
                                inner: body,
                            },
                        });
                    }
                }
            }
        }
    }
    Buffered::Complete(concat(frames, total))
}

/// `frames` (`total` bytes in all) as one buffer; a single frame is not copied.
pub fn concat(mut frames: VecDeque<Bytes>, total: usize) -> Bytes {
    match frames.len() {
        0 => Bytes::new(),
        1 => frames.pop_front().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(total);
            for f in frames {
                all.extend_from_slice(&f);
            }
            all.freeze()
        }
    }
}

/// [`buffer`], giving up when the whole body has not arrived within `within`.
pub async fn buffer_within<B>(body: B, limit: usize, within: std::time::Duration) -> Buffered<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    tokio::time::timeout(within, buffer(body, limit))
        .await
        .unwrap_or(Buffered::TimedOut)
}

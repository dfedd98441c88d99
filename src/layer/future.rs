//! [`ResponseFuture`]: ready at once for a memory hit, boxed for everything that awaits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use super::CacheBody;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The response future of [`crate::CacheService`]: ready for hits, boxed for trips to a
/// lower tier or upstream.
pub struct ResponseFuture<B, E> {
    kind: Kind<B, E>,
}

enum Kind<B, E> {
    Ready(Option<Result<Response<CacheBody<B>>, E>>),
    Boxed(BoxFuture<Result<Response<CacheBody<B>>, E>>),
}

// The ready value is never pinned (it is only moved out), and the boxed future is Unpin.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(v) => {
                Poll::Ready(v.take().expect("ResponseFuture polled after completion"))
            }
            Kind::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

impl<B, E> ResponseFuture<B, E> {
    /// Runs `f` on the response once there is one (at once for a ready hit).
    pub(crate) fn inspect(self, f: impl FnOnce(&Response<CacheBody<B>>) + Send + 'static) -> Self
    where
        B: Send + 'static,
        E: Send + 'static,
    {
        match self.kind {
            Kind::Ready(Some(Ok(resp))) => {
                f(&resp);
                ResponseFuture::ready(resp)
            }
            Kind::Ready(other) => ResponseFuture {
                kind: Kind::Ready(other),
            },
            Kind::Boxed(fut) => ResponseFuture::boxed(async move {
                let result = fut.await;
                if let Ok(resp) = &result {
                    f(resp);
                }
                result
            }),
        }
    }

    /// An answer available now.
    pub(crate) fn ready(resp: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(Ok(resp))),
        }
    }

    /// An answer that needs awaiting.
    pub(crate) fn boxed(
        f: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Boxed(Box::pin(f)),
        }
    }
}

//! What the benches share: JSON-like bodies, an origin that answers at once with a fixed
//! body, and polling a hit (a ready future) without a runtime.
#![allow(dead_code)] // each bench uses its own part

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

/// `n` bytes of JSON-like text (compresses like a real API answer).
pub fn json(n: usize) -> Bytes {
    let mut s = String::with_capacity(n + 64);
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}},"
        ));
        i += 1;
    }
    s.truncate(n);
    Bytes::from(s)
}

/// Polls `f` once: a hit completes on its first poll.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hit must be ready at once"),
    }
}

/// An origin answering every request with `body` as JSON, plus `headers`.
#[derive(Clone)]
pub struct FixedOrigin {
    pub body: Bytes,
    pub headers: &'static [(&'static str, &'static str)],
}

impl FixedOrigin {
    pub fn new(body: Bytes) -> FixedOrigin {
        FixedOrigin { body, headers: &[] }
    }
}

impl<B> tower::Service<Request<B>> for FixedOrigin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let mut resp = Response::builder().header("content-type", "application/json");
        for (name, value) in self.headers {
            resp = resp.header(*name, *value);
        }
        std::future::ready(Ok(resp.body(Full::new(self.body.clone())).unwrap()))
    }
}

/// A GET for `path` with an empty body.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

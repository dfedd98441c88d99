//! The upstream client: a Tower service that sends requests to the origin over pooled
//! keep-alive connections, with proxy header hygiene. Failures become short, clear
//! answers: unreachable → 502, too slow → 504. It never returns an error, so the cache
//! layer above it can count on a response.
//!
//! One client (one connection pool) serves every request to an upstream, whatever sent it:
//! the proxy, warming, prefetch and refresh-ahead.
//!
//! ```no_run
//! use larder::sidecar::Upstream;
//! # fn demo() {
//! let config = larder::Config::parse_str("c.toml", "[proxy]\nupstream = \"http://127.0.0.1:9000\"").unwrap();
//! let upstream = Upstream::new(&config.proxy).unwrap();
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST, VIA};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use crate::config::{HostHeader, ProxyConfig};
use crate::layer::{BoxError, ClientAddr};
use crate::semantics::hygiene::strip_hop_by_hop;

/// The body of an upstream answer: the origin's stream, or larder's own short error.
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// A request body of any kind, as the one client per upstream sends it.
type AnyBody = WatchedBody<UnsyncBoxBody<Bytes, BoxError>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

pin_project_lite::pin_project! {
    /// A request body that notes whether reading it failed.
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        failed: Arc<AtomicBool>,
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &r {
            this.failed.store(true, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
const VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 larder");

/// Sends requests to the configured upstream.
pub struct Upstream {
    client: Client<HttpConnector, AnyBody>,
    scheme: Scheme,
    authority: Authority,
    host: HostHeader,
    timeout: Duration,
}

impl Clone for Upstream {
    fn clone(&self) -> Self {
        Upstream {
            client: self.client.clone(),
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            host: self.host.clone(),
            timeout: self.timeout,
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .finish()
    }
}

impl Upstream {
    /// A client for `[proxy]`; fails if no upstream is configured.
    pub fn new(cfg: &ProxyConfig) -> Result<Upstream, crate::Error> {
        let uri = cfg.upstream.as_ref().ok_or_else(|| {
            crate::Error::Upstream(
                "proxy.upstream is not set; larder needs an upstream to serve".into(),
            )
        })?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| crate::Error::Upstream("proxy.upstream has no host".into()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstream {
            client,
            scheme: uri.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority,
            host: cfg.host.clone(),
            timeout: cfg.upstream_timeout,
        })
    }
}

fn short(status: StatusCode, text: &'static str) -> Response<UpstreamBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

impl<B> Service<Request<B>> for Upstream
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let Ok(uri) = uri else {
            return Box::pin(async { Ok(short(StatusCode::BAD_REQUEST, "bad request target\n")) });
        };
        let client_host = parts.headers.get(HOST).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        match &self.host {
            HostHeader::Upstream => {
                if let Ok(v) = HeaderValue::from_str(self.authority.as_str()) {
                    parts.headers.insert(HOST, v);
                }
            }
            HostHeader::Preserve => {
                if let Some(h) = client_host {
                    parts.headers.insert(HOST, h);
                }
            }
            HostHeader::Fixed(v) => {
                parts.headers.insert(HOST, v.clone());
            }
        }
        parts.headers.append(VIA, VIA_VALUE);
        if let Some(ClientAddr(addr)) = parts.extensions.get::<ClientAddr>().copied() {
            let ip = addr.ip().to_string();
            let value = match parts
                .headers
                .get(X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                parts.headers.insert(X_FORWARDED_FOR, v);
            }
        }
        if !parts.headers.contains_key(X_FORWARDED_PROTO) {
            parts
                .headers
                .insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        let failed = Arc::new(AtomicBool::new(false));
        let body = WatchedBody {
            inner: body.map_err(Into::into).boxed_unsync(),
            failed: failed.clone(),
        };
        let fut = self.client.request(Request::from_parts(parts, body));
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Err(_) => {
                    tracing::warn!(timeout = ?timeout, "upstream timed out");
                    Ok(short(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"))
                }
                Ok(Err(_)) if failed.load(Ordering::Relaxed) => {
                    // The client's own body was malformed or cut: its fault, not the
                    // upstream's.
                    Ok(short(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read\n",
                    ))
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upstream unreachable");
                    Ok(short(StatusCode::BAD_GATEWAY, "upstream unreachable\n"))
                }
                Ok(Ok(resp)) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    parts.headers.append(VIA, VIA_VALUE);
                    Ok(Response::from_parts(parts, Either::Left(body)))
                }
            }
        })
    }
}

//! The upstream clients: one Tower service ([`Upstreams`]) that sends each request to the
//! upstream its rule names (`rule.upstream`; `[proxy].upstream` otherwise) over that
//! upstream's pooled keep-alive connections — plain HTTP, or HTTPS through rustls with
//! HTTP/2 when the upstream offers it — with proxy header hygiene.
//!
//! One client (one pool) per upstream serves every request to it, whatever sent it: the
//! proxy, warming, prefetch and refresh-ahead. Failures become short, clear answers and are
//! counted (`larder_upstream_errors_total{upstream,kind}`): unreachable → 502, a TLS failure
//! → 502 saying why ("upstream certificate not trusted"), too slow → 504. It never returns
//! an error, so the cache layer above it can count on a response.
//!
//! ```no_run
//! use larder::sidecar::Upstreams;
//! # fn demo() {
//! let config = larder::Config::parse_str("c.toml", "[proxy]\nupstream = \"https://api.example.com\"").unwrap();
//! let upstreams = Upstreams::new(&config.upstreams, Default::default()).unwrap();
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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use crate::body::BoxError;
use crate::config::{HostHeader, UpstreamConfig};
use crate::flow::RouteTo;
use crate::layer::ClientAddr;
use crate::semantics::hygiene::strip_hop_by_hop;
use crate::stats::{UpstreamError, UpstreamErrors};

/// The body of an upstream answer: the origin's stream (its failures counted), or larder's
/// own short error.
pub type UpstreamBody = Either<Counted<Incoming>, Full<Bytes>>;

/// A request body of any kind, as one client per upstream sends it.
type AnyBody = WatchedBody<UnsyncBoxBody<Bytes, BoxError>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 larder");

pin_project_lite::pin_project! {
    /// A body that reports its failure to `N` as it passes through.
    pub struct Noted<B, N> {
        #[pin]
        inner: B,
        note: N,
    }
}

/// What a [`Noted`] body does when reading it fails.
pub trait OnFailure {
    /// The body failed.
    fn failed(&self);
}

impl OnFailure for Arc<AtomicBool> {
    fn failed(&self) {
        self.store(true, Ordering::Relaxed);
    }
}

/// An upstream's failures, counted (`kind="body"`).
#[derive(Clone, Debug)]
pub struct CountedFailure {
    upstream: Arc<str>,
    errors: UpstreamErrors,
}

impl OnFailure for CountedFailure {
    fn failed(&self) {
        self.errors.record(&self.upstream, UpstreamError::Body);
    }
}

/// A request body that notes whether reading it failed.
pub type WatchedBody<B> = Noted<B, Arc<AtomicBool>>;

/// An upstream's response body whose failure is counted.
pub type Counted<B> = Noted<B, CountedFailure>;

impl<B: Body<Data = Bytes>, N: OnFailure> Body for Noted<B, N> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &r {
            this.note.failed();
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

/// One upstream and its pool.
struct Upstream {
    name: Arc<str>,
    client: Client<HttpsConnector<HttpConnector>, AnyBody>,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path, prefixed to every request's (no trailing '/').
    base_path: String,
    strip_prefix: Option<String>,
    host: HostHeader,
    timeout: Duration,
    /// Retries of an idempotent, bodiless request whose connection could not be made.
    connect_retries: u8,
}

impl Upstream {
    fn new(c: &UpstreamConfig) -> Result<Upstream, crate::Error> {
        let fail = |m: String| crate::Error::Upstream(format!("upstream {:?}: {m}", c.name));
        let authority = c
            .url
            .authority()
            .cloned()
            .ok_or_else(|| fail("the URL has no host".into()))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(c.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        // Plain-HTTP upstreams never use the TLS config; they skip reading the roots.
        let tls = if c.is_https() {
            crate::tls::client_config(c.ca_file.as_deref()).map_err(fail)?
        } else {
            crate::tls::client_config(None).map_err(fail)?
        };
        // A `Host` other than its own cannot travel as HTTP/2's `:authority` on a
        // connection to it: such upstreams are spoken to in HTTP/1.1.
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1();
        let connector = if c.host == HostHeader::Upstream {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(c.max_idle)
            .build(connector);
        Ok(Upstream {
            name: c.name.as_str().into(),
            client,
            scheme: c.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority,
            base_path: c.url.path().trim_end_matches('/').to_string(),
            strip_prefix: c.strip_prefix.clone(),
            host: c.host.clone(),
            timeout: c.timeout,
            connect_retries: c.limits.connect_retries,
        })
    }

    /// The URI a request for `target` is sent to: the prefix stripped, the base path put
    /// in front.
    fn uri(&self, target: Option<&PathAndQuery>) -> Option<Uri> {
        let target = target.map_or("/", PathAndQuery::as_str);
        let target = match &self.strip_prefix {
            Some(p) => match target.strip_prefix(p.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => rest,
                _ => target,
            },
            None => target,
        };
        let path = match (self.base_path.is_empty(), target.starts_with('/')) {
            (true, _) => target.to_string(),
            (false, true) => format!("{}{target}", self.base_path),
            (false, false) => format!("{}/{target}", self.base_path),
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .ok()
    }

    /// The `Host` the upstream sees. Its own authority is left to the client: HTTP/1.1
    /// gets it as `Host` from the URI, HTTP/2 as `:authority` (an HTTP/2 server may refuse
    /// a `host` field beside it as a duplicate).
    fn set_host(&self, headers: &mut http::HeaderMap, client_host: Option<HeaderValue>) {
        let value = match &self.host {
            HostHeader::Upstream => None,
            HostHeader::Preserve => client_host,
            HostHeader::Fixed(v) => Some(v.clone()),
        };
        match value {
            Some(v) => {
                headers.insert(HOST, v);
            }
            None => {
                headers.remove(HOST);
            }
        }
    }
}

/// Every upstream of the sidecar, as one service.
#[derive(Clone)]
pub struct Upstreams {
    list: Arc<[Upstream]>,
    errors: UpstreamErrors,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|u| &*u.name))
            .finish()
    }
}

impl Upstreams {
    /// Clients for `upstreams` (the first named `default` is used when a request names
    /// none); fails when there is none, or a CA file does not load.
    pub fn new(
        upstreams: &[UpstreamConfig],
        errors: UpstreamErrors,
    ) -> Result<Upstreams, crate::Error> {
        if upstreams.is_empty() {
            return Err(crate::Error::Upstream(
                "proxy.upstream is not set; larder needs an upstream to serve".into(),
            ));
        }
        let list = upstreams
            .iter()
            .map(Upstream::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstreams {
            list: list.into(),
            errors,
        })
    }

    fn pick(&self, route: Option<&RouteTo>) -> &Upstream {
        let name = route.map_or("default", |r| &*r.0);
        self.list
            .iter()
            .find(|u| &*u.name == name)
            .unwrap_or(&self.list[0])
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

/// Adds what larder knows of the hop: `Via`, the client's address to `X-Forwarded-For`
/// (after a trusted proxy's chain), and `X-Forwarded-Proto`.
fn forwarding_fields(parts: &mut http::request::Parts) {
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
        let proto = match parts.extensions.get::<crate::layer::ClientTls>() {
            Some(_) => "https",
            None => "http",
        };
        parts
            .headers
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
}

/// Why a request failed, by kind, with the 502 body saying so.
fn failure(e: &hyper_util::client::legacy::Error) -> (UpstreamError, &'static str) {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return (UpstreamError::Tls, crate::tls::reason(t));
        }
        // An io::Error's own `source` skips the error it wraps: descend into it.
        at = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    (UpstreamError::Connect, "upstream unreachable\n")
}

impl<B> Service<Request<B>> for Upstreams
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
        let upstream = self.pick(parts.extensions.get::<RouteTo>());
        let Some(uri) = upstream.uri(parts.uri.path_and_query()) else {
            return Box::pin(async { Ok(short(StatusCode::BAD_REQUEST, "bad request target\n")) });
        };
        let client_host = parts.headers.get(HOST).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        upstream.set_host(&mut parts.headers, client_host);
        forwarding_fields(&mut parts);
        let sink = parts.extensions.remove::<super::listener::InterimSink>();
        let failed = Arc::new(AtomicBool::new(false));
        let again = Again::of(&parts, &body, upstream.connect_retries);
        let body = WatchedBody {
            inner: body.map_err(Into::into).boxed_unsync(),
            note: failed.clone(),
        };
        let mut req = Request::from_parts(parts, body);
        if let Some(sink) = sink {
            // The upstream's 102 and 103 reach the client ahead of the final answer.
            hyper::ext::on_informational(&mut req, move |res| {
                sink.send(res.status(), res.headers())
            });
        }
        let fut = upstream.client.request(req);
        let (timeout, name, errors) =
            (upstream.timeout, upstream.name.clone(), self.errors.clone());
        let retry = again
            .as_ref()
            .map(|_| (upstream.client.clone(), name.clone()));
        Box::pin(async move {
            let tries = async move {
                let mut result = fut.await;
                for _ in 0..again.as_ref().map_or(0, |a| a.retries) {
                    let (Err(e), Some(a), Some((client, quoted))) = (&result, &again, &retry)
                    else {
                        break;
                    };
                    if !e.is_connect() {
                        break;
                    }
                    tracing::info!(upstream = %quoted, error = %e, "connecting failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    result = client.request(a.request()).await;
                }
                result
            };
            let result = tokio::time::timeout(timeout, tries).await;
            Ok(answer(result, timeout, &name, &errors, &failed))
        })
    }
}

/// The pause before a connect retry.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// What it takes to send a request again after its connection failed: only an idempotent
/// request without a body (nothing of it was sent, and sending it twice changes nothing).
struct Again {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    retries: u8,
}

impl Again {
    fn of<B: Body>(parts: &http::request::Parts, body: &B, retries: u8) -> Option<Again> {
        let idempotent = parts.method.is_idempotent();
        (retries > 0 && idempotent && body.is_end_stream()).then(|| Again {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            retries,
        })
    }

    fn request(&self) -> Request<AnyBody> {
        let mut req = Request::new(WatchedBody {
            inner: http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
            note: Arc::new(AtomicBool::new(false)),
        });
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The answer for what the upstream did: its response (hop-by-hop fields removed, `Via`
/// added), or larder's own short error, counted.
fn answer(
    result: Result<
        Result<Response<Incoming>, hyper_util::client::legacy::Error>,
        tokio::time::error::Elapsed,
    >,
    timeout: Duration,
    name: &Arc<str>,
    errors: &UpstreamErrors,
    request_body_failed: &AtomicBool,
) -> Response<UpstreamBody> {
    match result {
        Err(_) => {
            tracing::warn!(upstream = %name, timeout = ?timeout, "upstream timed out");
            errors.record(name, UpstreamError::Timeout);
            errors.record_trip(name, true);
            short(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
        }
        // The client's own body was malformed or cut: its fault, not the upstream's.
        Ok(Err(_)) if request_body_failed.load(Ordering::Relaxed) => short(
            StatusCode::BAD_REQUEST,
            "the request body could not be read\n",
        ),
        Ok(Err(e)) => {
            let (kind, text) = failure(&e);
            tracing::warn!(upstream = %name, error = %e, reason = text.trim_end(), "upstream request failed");
            errors.record(name, kind);
            errors.record_trip(name, true);
            short(StatusCode::BAD_GATEWAY, text)
        }
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            if parts.status.is_server_error() {
                errors.record(name, UpstreamError::Status5xx);
            }
            errors.record_trip(name, parts.status.is_server_error());
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.append(VIA, VIA_VALUE);
            let body = Counted {
                inner: body,
                note: CountedFailure {
                    upstream: name.clone(),
                    errors: errors.clone(),
                },
            };
            Response::from_parts(parts, Either::Left(body))
        }
    }
}

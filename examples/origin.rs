//! A small example origin for trying larder: slow on purpose, counting its calls.
//!
//! ```text
//! cargo run --example origin -- 127.0.0.1:9000
//! ```
//!
//! Endpoints: `GET /health`, `GET /jobs/{id}` (per-user: answers with the caller's
//! `Authorization`), `POST /jobs/{id}/approve`, `GET /videos/{id}` (1.5 KiB of JSON),
//! `GET /items/{id}` (exactly 1 KiB of JSON), `POST /v1/summarize`, `GET /v1/stream/{id}`
//! (eight server-sent events 250 ms apart, as an LLM streams a completion), `GET /calls`
//! (how many requests it answered).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[derive(Default)]
struct State {
    calls: AtomicU64,
    approved: Mutex<HashMap<String, bool>>,
}

fn json(status: StatusCode, body: String, cache_control: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", cache_control)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

type AnyBody = UnsyncBoxBody<Bytes, Infallible>;

/// Eight server-sent events, 250 ms apart: the first at once.
fn event_stream(id: &str) -> Response<AnyBody> {
    let id = id.to_string();
    let events = futures_util::stream::unfold(0u32, move |i| {
        let id = id.clone();
        async move {
            if i == 8 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let event = format!("data: {{\"stream\":\"{id}\",\"token\":{i}}}\n\n");
            Some((Ok(hyper::body::Frame::data(Bytes::from(event))), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "max-age=3600")
        .body(StreamBody::new(events).boxed_unsync())
        .expect("static headers are valid")
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<AnyBody>, Infallible> {
    if let Some(id) = req.uri().path().strip_prefix("/v1/stream/") {
        state.calls.fetch_add(1, Ordering::Relaxed);
        return Ok(event_stream(id));
    }
    Ok(answer(state, req).await.map(BodyExt::boxed_unsync))
}

async fn answer(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = state.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Pretend to be a slow API.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = match (method, parts.as_slice()) {
        (Method::GET, ["health"]) => json(StatusCode::OK, r#"{"status":"ok"}"#.into(), "no-cache"),
        (Method::GET, ["calls"]) => json(
            StatusCode::OK,
            format!(r#"{{"calls":{}}}"#, n - 1),
            "no-store",
        ),
        (Method::GET, ["jobs", id]) => {
            let approved = state
                .approved
                .lock()
                .map(|m| m.get(*id).copied().unwrap_or(false))
                .unwrap_or(false);
            let status = if approved { "approved" } else { "pending" };
            json(
                StatusCode::OK,
                format!(r#"{{"job":"{id}","state":"{status}","owner":"{user}","call":{n}}}"#),
                "private, max-age=0",
            )
        }
        (Method::POST, ["jobs", id, "approve"]) => {
            if let Ok(mut m) = state.approved.lock() {
                m.insert(id.to_string(), true);
            }
            json(
                StatusCode::OK,
                format!(r#"{{"job":"{id}","state":"approved"}}"#),
                "no-store",
            )
        }
        (Method::GET, ["videos", id]) => {
            let comments: Vec<String> = (0..30)
                .map(|i| format!(r#"{{"id":{i},"text":"comment number {i} on video {id}"}}"#))
                .collect();
            json(
                StatusCode::OK,
                format!(
                    r#"{{"video":"{id}","call":{n},"comments":[{}]}}"#,
                    comments.join(",")
                ),
                "public, max-age=300",
            )
        }
        (Method::GET, ["items", id]) => {
            // Exactly 1 KiB of JSON.
            let head = format!(r#"{{"item":"{id}","call":{n},"pad":""#);
            let pad = "x".repeat(1024usize.saturating_sub(head.len() + 2));
            json(
                StatusCode::OK,
                format!("{head}{pad}\"}}"),
                "public, max-age=300",
            )
        }
        (Method::POST, ["v1", "summarize"]) => json(
            StatusCode::OK,
            format!(
                r#"{{"summary":"{} bytes summarised","call":{n}}}"#,
                body.len()
            ),
            "no-cache",
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found"}"#.into(),
            "max-age=60",
        ),
    };
    resp
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "example origin listening on http://{}",
        listener.local_addr()?
    );
    let state = Arc::new(State::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

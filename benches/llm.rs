//! LLM hits in-process: a plain JSON hit against a replayed stream (the same shape, served
//! as stored) and against the conversions (a stream made from a stored JSON answer, and
//! JSON folded from a stored stream). The body is whole when the head is ready, so the
//! time per hit is also the time to the first byte.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use larder::{CacheLayer, Rule};
use tower::Layer;

/// An API that answers 40 words, as a chat completion or as its stream.
#[derive(Clone)]
struct Api;

fn words() -> Vec<String> {
    (0..40).map(|i| format!("word{i} ")).collect()
}

fn completion() -> String {
    serde_json::json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": words().concat()}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70}}).to_string()
}

fn stream() -> String {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
        )
    };
    let mut s = chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    );
    for w in words() {
        s += &chunk(serde_json::json!({"content": w}), serde_json::Value::Null);
    }
    s += &chunk(serde_json::json!({}), serde_json::json!("stop"));
    s += "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":40,\"total_tokens\":70}}\n\n";
    s + "data: [DONE]\n\n"
}

impl tower::Service<Request<larder::CacheBody<Full<Bytes>>>> for Api {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<larder::CacheBody<Full<Bytes>>>) -> Self::Future {
        Box::pin(async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let streaming = String::from_utf8_lossy(&body).contains("\"stream\":true");
            let (ct, text) = if streaming {
                ("text/event-stream", stream())
            } else {
                ("application/json", completion())
            };
            Ok(Response::builder()
                .header("content-type", ct)
                .body(Full::new(Bytes::from(text)))
                .unwrap())
        })
    }
}

fn request(prompt: &str, stream: bool) -> Request<Full<Bytes>> {
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
        "stream": stream, "stream_options": {"include_usage": true}});
    Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn bench_llm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let layer = CacheLayer::builder()
        .rule(
            Rule::get("/v1/chat/completions")
                .llm("openai-chat")
                .ttl(std::time::Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let svc = layer.layer(Api);
    // Fill: one prompt as JSON, one as a stream.
    for (prompt, stream) in [("json-filled", false), ("stream-filled", true)] {
        rt.block_on(async {
            svc.handle(request(prompt, stream))
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
        });
    }
    let mut group = c.benchmark_group("llm_hit");
    group.throughput(Throughput::Elements(1));
    for (label, prompt, stream) in [
        ("json_from_json", "json-filled", false),
        ("stream_from_stream", "stream-filled", true),
        ("stream_from_json", "json-filled", true),
        ("json_from_stream", "stream-filled", false),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = svc.handle(request(prompt, stream)).await.unwrap();
                    assert_eq!(resp.headers()["x-cache"], "HIT");
                    resp.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_llm);
criterion_main!(benches);

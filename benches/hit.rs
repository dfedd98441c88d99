//! The layer's hit path in-process: 1 KiB and 16 KiB bodies, gzip-accepting and identity
//! clients. A hit is a ready future, so one poll completes it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Full;
use larder::{Cache, CacheService, Config};

fn body(n: usize) -> Bytes {
    // JSON-ish text that compresses like real API answers.
    let mut s = String::with_capacity(n);
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

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hit must be ready at once"),
    }
}

fn bench_hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let config = Config::parse_str(
        "bench.toml",
        "[[rule]]\nname = \"item\"\npath = \"/items/{id}\"\nttl = \"1h\"\ntags = [\"item:{id}\"]\n",
    )
    .unwrap();
    let mut group = c.benchmark_group("layer_hit");
    for size in [1024usize, 16 * 1024] {
        let payload = body(size);
        let cache = Cache::new(config.clone()).unwrap();
        let p = payload.clone();
        let inner = tower::service_fn(move |_req: Request<larder::CacheBody<Full<Bytes>>>| {
            let p = p.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .header("etag", "\"v1\"")
                        .body(Full::new(p))
                        .unwrap(),
                )
            }
        });
        let svc = CacheService::new(inner, cache);
        let path = format!("/items/{size}");
        // Fill the entry once.
        rt.block_on(svc.handle(Request::get(&path).body(Full::new(Bytes::new())).unwrap()))
            .unwrap();
        group.throughput(Throughput::Elements(1));
        for (label, accept) in [("gzip", Some("gzip, deflate, br")), ("identity", None)] {
            group.bench_function(format!("{size}B_{label}"), |b| {
                b.iter_batched(
                    || {
                        let mut r = Request::get(&path).header("user-agent", "bench/1.0");
                        if let Some(a) = accept {
                            r = r.header("accept-encoding", a);
                        }
                        r.body(Full::new(Bytes::new())).unwrap()
                    },
                    |req| {
                        let resp = ready(svc.handle(req)).unwrap();
                        assert_eq!(resp.headers()["x-cache"], "HIT");
                        resp
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_hits);
criterion_main!(benches);

//! The layer's hit path in-process: 1 KiB and 16 KiB bodies, gzip-accepting and identity
//! clients. A hit is a ready future, so one poll completes it.

mod support;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::Request;
use http_body_util::Full;
use larder::{Cache, CacheService, Config};
use support::{get, json, ready, FixedOrigin};

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
        let origin = FixedOrigin {
            body: json(size),
            headers: &[("etag", "\"v1\"")],
        };
        let svc = CacheService::new(origin, Cache::new(config.clone()).unwrap());
        let path = format!("/items/{size}");
        // Fill the entry once.
        rt.block_on(svc.handle(get(&path))).unwrap();
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

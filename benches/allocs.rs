//! Counts, with a counting global allocator: heap allocations per cache hit (in-process,
//! through the layer), and heap bytes per stored entry beyond its body and key with 1 M
//! small entries. Prints the figures; run with `cargo bench --bench allocs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use larder::entry::{Entry, NewEntry, StoredBody};
use larder::key::CacheKey;
use larder::policy::{now_ms, Freshness};
use larder::store::MemoryStore;
use larder::{Cache, CacheService, Config};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hit must be ready at once"),
    }
}

fn allocations_per_hit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let config = Config::parse_str(
        "bench.toml",
        "[[rule]]\npath = \"/items/{id}\"\nttl = \"1h\"\n",
    )
    .unwrap();
    for (size, accept) in [
        (1024usize, Some("gzip")),
        (1024, None),
        (16 * 1024, Some("gzip")),
        (100, None),
    ] {
        let payload = Bytes::from("{\"k\":\"v\"},".repeat(size / 10 + 1)).slice(..size);
        let cache = Cache::new(config.clone()).unwrap();
        let inner = tower::service_fn(move |_req: Request<larder::CacheBody<Full<Bytes>>>| {
            let p = payload.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(p))
                        .unwrap(),
                )
            }
        });
        let svc = CacheService::new(inner, cache);
        let req = || {
            let mut r = Request::get("/items/1");
            if let Some(a) = accept {
                r = r.header("accept-encoding", a);
            }
            r.body(Full::new(Bytes::new())).unwrap()
        };
        rt.block_on(svc.handle(req())).unwrap();
        let n = 10_000;
        let reqs: Vec<_> = (0..n).map(|_| req()).collect();
        let mut resps = Vec::with_capacity(n);
        let before = ALLOCS.load(Relaxed);
        for r in reqs {
            resps.push(ready(svc.handle(r)).unwrap());
        }
        let per_hit = (ALLOCS.load(Relaxed) - before) as f64 / n as f64;
        assert!(resps.iter().all(|r| r.headers()["x-cache"] == "HIT"));
        println!(
            "allocations per hit: {per_hit:.2} ({size} B body, {} client)",
            accept.unwrap_or("identity")
        );
    }
}

fn bytes_per_entry() {
    let n: u64 = 1_000_000;
    let body = b"{\"ok\":true}";
    let url_len = "/items/1000000".len() as i64;
    for with_header in [false, true] {
        let mut headers = HeaderMap::new();
        if with_header {
            headers.insert("content-type", "application/json".parse().unwrap());
        }
        let before = LIVE.load(Relaxed);
        let store = MemoryStore::new(8 << 30);
        let now = now_ms();
        for i in 0..n {
            let url = format!("/items/{i}");
            let entry = Arc::new(Entry::encode(&NewEntry {
                status: http::StatusCode::OK,
                headers: &headers,
                body: StoredBody::Identity(body),
                url: &url,
                tags: &[larder::key::tag_id(&url)],
                freshness: Freshness {
                    lifetime_ms: 3_600_000,
                    ..Freshness::default()
                },
                response_time: now,
                vary: None,
            }));
            let k = blake3::hash(url.as_bytes());
            let mut key = [0u8; 16];
            key.copy_from_slice(&k.as_bytes()[..16]);
            assert!(store.insert(CacheKey(key), entry, store.begin_fill()));
        }
        let total = LIVE.load(Relaxed) - before;
        let per = total as f64 / n as f64;
        let beyond = per - body.len() as f64 - 16.0 - url_len as f64;
        println!(
            "heap per entry with 1M entries: {per:.0} B; beyond body ({} B), key (16 B) and URL (≤{url_len} B): {beyond:.0} B ({})",
            body.len(),
            if with_header { "content-type header stored" } else { "no headers" }
        );
        drop(store);
    }
}

fn main() {
    allocations_per_hit();
    bytes_per_entry();
}

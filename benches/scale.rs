//! Scaling with the work: hit latency against the number of entries (10 k vs 1 M) and of
//! rules (10 vs 1000); the cost of invalidating a tag against the size of the store; and a
//! hot key's latency while a flood of unique keys churns the store at its bound.
//!
//! `cargo bench --bench scale` prints a table; every figure is a median (or the stated
//! percentile) of many timed runs, in nanoseconds.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Full;
use larder::entry::{Entry, NewEntry, StoredBody};
use larder::key::{tag_id, CacheKey};
use larder::policy::{now_ms, Freshness};
use larder::rules::{Rule, RuleSet};
use larder::store::{Invalidation, MemoryStore};
use larder::{Cache, CacheService, Config};

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hit must be ready at once"),
    }
}

fn percentile(samples: &mut [u64], p: f64) -> u64 {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn entry(url: &str, tags: &[u64]) -> Arc<Entry> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    Arc::new(Entry::encode(&NewEntry {
        status: http::StatusCode::OK,
        headers: &headers,
        body: StoredBody::Identity(b"{\"ok\":true,\"filler\":\"0123456789\"}"),
        url,
        tags,
        freshness: Freshness {
            lifetime_ms: 3_600_000,
            ..Freshness::default()
        },
        response_time: now_ms(),
        vary: None,
    }))
}

fn key(i: u64) -> CacheKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
    CacheKey(k)
}

/// Median time of a full in-process hit through the layer, with `entries` other entries
/// stored and `rules` rules configured.
fn layer_hit_ns(entries: u64, rules: usize) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut text = String::new();
    for i in 0..rules.saturating_sub(1) {
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\npath = \"/svc{i}/{{id}}/items\"\nttl = \"1h\"\n"
        ));
    }
    text.push_str("[[rule]]\nname = \"hot\"\npath = \"/hot/{id}\"\nttl = \"1h\"\n[store]\nmemory_max = \"4GiB\"\n");
    let config = Config::parse_str("scale.toml", &text).unwrap();
    let cache = Cache::new(config).unwrap();
    let inner = tower::service_fn(|_req: Request<larder::CacheBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"hot\":true}")))
                .unwrap(),
        )
    });
    let svc = CacheService::new(inner, cache.clone());
    // The hot entry through the layer; the others straight into the store, for speed.
    rt.block_on(
        svc.handle(
            Request::get("/hot/1")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .unwrap();
    for i in 0..entries {
        let url = format!("/other/{i}");
        cache_insert(&cache, key(i), entry(&url, &[tag_id(&url)]));
    }
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let req = Request::get("/hot/1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let t = Instant::now();
        let resp = ready(svc.handle(req)).unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
        assert_eq!(resp.headers()["x-cache"], "HIT");
        black_box(resp);
    }
    percentile(&mut samples, 0.5)
}

fn cache_insert(cache: &Cache, key: CacheKey, entry: Arc<Entry>) {
    let store = cache.memory_store();
    assert!(store.insert(key, entry, store.begin_fill()));
}

/// Median time to find the rule of a path with `n` rules, matching the last one.
fn rule_match_ns(n: usize) -> u64 {
    let mut list: Vec<Rule> = (0..n)
        .map(|i| Rule::new(&format!("r{i}"), &format!("/svc{i}/{{id}}/items")).unwrap())
        .collect();
    list.push(Rule::new("tail", "/{rest*}").unwrap());
    let set = RuleSet::new(list);
    let path = format!("/svc{}/7/items", n - 1);
    let mut samples = Vec::with_capacity(50_000);
    for _ in 0..50_000 {
        let t = Instant::now();
        black_box(set.find(&Method::GET, black_box(&path)));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    percentile(&mut samples, 0.5)
}

/// Time to invalidate one tag carried by 10 entries, in a store of `size` entries.
fn invalidate_tag_ns(size: u64) -> u64 {
    let store = MemoryStore::new(8 << 30);
    for i in 0..size {
        let url = format!("/e/{i}");
        let tags = if i % (size / 10) == 0 {
            vec![tag_id("target"), tag_id(&url)]
        } else {
            vec![tag_id(&url)]
        };
        store.insert(key(i), entry(&url, &tags), store.begin_fill());
    }
    let t = Instant::now();
    let n = store.invalidate(&Invalidation::Tags(vec![tag_id("target")]));
    let took = t.elapsed().as_nanos() as u64;
    assert_eq!(n, 10);
    took
}

/// A hot key's get latency (p50, p99, max) while unique keys flood a 64 MiB store.
fn hot_key_under_flood() -> (u64, u64, u64, u64) {
    let store = MemoryStore::new(64 << 20);
    let hot = key(u64::MAX);
    store.insert(hot, entry("/hot", &[]), store.begin_fill());
    let mut samples = Vec::with_capacity(500_000);
    for i in 0..500_000u64 {
        let url = format!("/flood/{i}");
        store.insert(key(i), entry(&url, &[tag_id(&url)]), store.begin_fill());
        let t = Instant::now();
        assert!(store.get(&hot, now_ms()).is_some(), "hot key evicted");
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let max = *samples.iter().max().unwrap();
    let evictions = store.stats().evictions;
    assert!(store.stats().bytes <= 64 << 20);
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
        max,
        evictions,
    )
}

fn main() {
    println!("| measure | small | large |");
    println!("|---|---|---|");
    println!(
        "| layer hit, 10 k vs 1 M entries (ns, median) | {} | {} |",
        layer_hit_ns(10_000, 10),
        layer_hit_ns(1_000_000, 10)
    );
    println!(
        "| layer hit, 10 vs 1000 rules (ns, median) | {} | {} |",
        layer_hit_ns(10_000, 10),
        layer_hit_ns(10_000, 1000)
    );
    println!(
        "| rule match, 10 vs 1000 rules (ns, median) | {} | {} |",
        rule_match_ns(10),
        rule_match_ns(1000)
    );
    println!(
        "| invalidate a 10-entry tag, store of 10 k vs 1 M (ns) | {} | {} |",
        invalidate_tag_ns(10_000),
        invalidate_tag_ns(1_000_000)
    );
    let (p50, p99, max, evictions) = hot_key_under_flood();
    println!("| hot-key get during a 500 k unique-key flood, 64 MiB bound (ns) | p50 {p50}, p99 {p99} | max {max} ({evictions} evictions) |");
}

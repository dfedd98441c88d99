//! The pieces: rule matching with 10, 100 and 1000 rules; key derivation with and without
//! user and body hash; gzip of 16 KiB; the miss path's store step.

mod support;

use std::sync::Arc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};
use larder::config::UserSource;
use larder::entry::{Entry, NewEntry, StoredBody};
use larder::key::{BodyHash, CacheKey, KeyInput, Users};
use larder::policy::{now_ms, Freshness};
use larder::rules::{Rule, RuleSet};
use larder::store::MemoryStore;
use support::json;

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_match");
    for n in [10usize, 100, 1000] {
        let mut list: Vec<Rule> = (0..n)
            .map(|i| {
                Rule::new(
                    &format!("r{i}"),
                    &format!("/api/svc{i}/{{id}}/items/{{item}}"),
                )
                .unwrap()
            })
            .collect();
        list.push(Rule::new("tail", "/{rest*}").unwrap());
        let set = RuleSet::new(list);
        let last = format!("/api/svc{}/42/items/7", n - 1);
        g.bench_function(format!("{n}_rules_last"), |b| {
            b.iter(|| black_box(set.find(&Method::GET, black_box(&last))).map(|r| r.index))
        });
        g.bench_function(format!("{n}_rules_fallthrough"), |b| {
            b.iter(|| {
                black_box(set.find(&Method::GET, black_box("/nothing/here/at/all")))
                    .map(|r| r.index)
            })
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("key");
    let ignore = vec!["utm_*".to_string()];
    let users = Users::new(
        vec![UserSource::Header(http::header::AUTHORIZATION)],
        b"bench secret",
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature"
            .parse()
            .unwrap(),
    );
    let body = json(2048);
    g.bench_function("plain", |b| {
        b.iter(|| {
            CacheKey::primary(
                &KeyInput {
                    query: Some("page=2&sort=name&utm_source=x"),
                    ..KeyInput::new("v1", &Method::GET, black_box("/api/items"))
                },
                &ignore,
            )
        })
    });
    g.bench_function("with_user", |b| {
        b.iter(|| {
            let user = users.identify(black_box(&headers));
            CacheKey::primary(
                &KeyInput {
                    user,
                    ..KeyInput::new("v1", &Method::GET, black_box("/jobs/42"))
                },
                &ignore,
            )
        })
    });
    g.bench_function("with_user_and_2KiB_json_body", |b| {
        b.iter(|| {
            let user = users.identify(&headers);
            let body = BodyHash::of(Some("application/json"), black_box(&body)).ok();
            CacheKey::primary(
                &KeyInput {
                    user,
                    body,
                    ..KeyInput::new("v1", &Method::POST, "/v1/summarize")
                },
                &ignore,
            )
        })
    });
    g.finish();
}

fn gzip(c: &mut Criterion) {
    let mut g = c.benchmark_group("gzip_16KiB");
    let input = json(16 * 1024);
    let compressed = larder::compress::gzip_if_smaller(&input).unwrap();
    g.bench_function("compress", |b| {
        b.iter(|| larder::compress::gzip_if_smaller(black_box(&input)))
    });
    g.bench_function("decompress", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(input.len());
            larder::compress::gunzip_into(black_box(&compressed), &mut out, 1 << 20).unwrap();
            out
        })
    });
    g.finish();
}

fn store_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_step");
    let store = MemoryStore::new(256 << 20);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("etag", "\"abc\"".parse().unwrap());
    for size in [1024usize, 16 * 1024] {
        let body = json(size);
        let mut i = 0u64;
        g.bench_function(format!("encode_compress_insert_{size}B"), |b| {
            b.iter(|| {
                i += 1;
                let gz = larder::compress::gzip_if_smaller(&body);
                let stored = match &gz {
                    Some(d) => StoredBody::Gzip {
                        data: d,
                        identity_len: body.len() as u32,
                        from_origin: false,
                    },
                    None => StoredBody::Identity(&body),
                };
                let entry = Arc::new(Entry::encode(&NewEntry {
                    status: http::StatusCode::OK,
                    headers: &headers,
                    body: stored,
                    url: "/api/items?page=2",
                    tags: &[1, 2, 3],
                    freshness: Freshness {
                        lifetime_ms: 3_600_000,
                        ..Freshness::default()
                    },
                    response_time: now_ms(),
                    vary: None,
                }));
                // Real keys are blake3 outputs; sequential ones would not spread alike.
                let mut k = [0u8; 16];
                k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
                store.insert(CacheKey(k), entry, store.begin_fill())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, rules, keys, gzip, store_step);
criterion_main!(benches);

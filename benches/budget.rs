//! What an upstream budget adds to a miss, in-process: the same miss (a new key, a 1 KiB
//! answer, stored) with no limits, with limits counted locally, and — against a
//! `redis-server` this bench starts — with no limits and with limits checked and spent by
//! the fleet's script (one round trip). The limits are never reached: this is the cost of
//! asking, not of waiting.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use larder::{Cache, CacheService, Config};
use support::{get, json, FixedOrigin};

const RULE: &str = "[[rule]]\nname = \"m\"\npath = \"/m/{id}\"\nttl = \"1h\"\n";
const LIMITS: &str = "max_concurrent = 64\nrate = \"1000000/s\"\nbudget = \"1000000000/day\"\n";

/// A throwaway `redis-server` on a free port, if one is installed.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis(child, port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service(rt: &tokio::runtime::Runtime, text: &str) -> CacheService<FixedOrigin> {
    let config = Config::parse_str("bench.toml", text).expect("bench config");
    let cache = Cache::new(config).expect("cache");
    // Redis connects in the background: wait until it answers.
    for _ in 0..500 {
        if cache.tiers().lower().iter().all(|t| t.report().is_up()) {
            break;
        }
        rt.block_on(tokio::time::sleep(Duration::from_millis(10)));
    }
    CacheService::new(FixedOrigin::new(json(1024)), cache)
}

fn bench_budget(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let redis = Redis::start();
    let mut setups = vec![
        ("memory_no_limits", RULE.to_string()),
        ("memory_local_limits", format!("[proxy]\n{LIMITS}\n{RULE}")),
    ];
    match &redis {
        Some(r) => {
            let store = format!(
                "[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{}\"\n",
                r.1
            );
            setups.push(("redis_no_limits", format!("{store}\n{RULE}")));
            setups.push((
                "redis_fleet_limits",
                format!("[proxy]\n{LIMITS}\n{store}\n{RULE}"),
            ));
        }
        None => eprintln!("redis-server not found: the Redis cases are skipped"),
    }
    // The first thousands of misses of a process pay for its allocator's growth: pay it
    // before any case is measured.
    let warm = service(&rt, RULE);
    for i in 0..50_000 {
        let _ = rt.block_on(warm.handle(get(&format!("/m/w{i}"))));
    }
    drop(warm);
    let mut group = c.benchmark_group("miss_budget");
    group.throughput(Throughput::Elements(1));
    let seq = AtomicU64::new(0);
    for (label, text) in &setups {
        let svc = service(&rt, text);
        group.bench_function(*label, |b| {
            b.iter(|| {
                let path = format!("/m/{}", seq.fetch_add(1, Ordering::Relaxed));
                let resp = rt.block_on(svc.handle(get(&path))).unwrap();
                assert_eq!(resp.headers()["x-cache"], "MISS");
                resp
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_budget);
criterion_main!(benches);

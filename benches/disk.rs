//! The disk tier's engine on the workload the candidate engines were measured with
//! (foyer, fjall, redb): N entries of 16 KiB (half random, half zeros), made durable every
//! 1000; single durable inserts; N random reads, each checked; reopen time; disk space
//! after the load and after overwriting every second key; the directory's memory per entry.
//!
//! `cargo bench --bench disk` (N = 100 000 by default; `LARDER_BENCH_N`, and
//! `LARDER_BENCH_DIR` for where the files go, default the system temp directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use larder::entry::{Entry, NewEntry, StoredBody};
use larder::key::CacheKey;
use larder::policy::{now_ms, Freshness};
use larder::store::disk::{DiskSettings, DiskTier, WriteMode};
use larder::store::{LowerTier, Write};

const VAL: usize = 16 * 1024;

fn key(i: u64) -> CacheKey {
    let h = blake3::hash(&i.to_le_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.as_bytes()[..16]);
    CacheKey(k)
}

/// The value of key `i` at version `ver`: 8 KiB of pseudo-random bytes, then zeros.
fn value(i: u64, ver: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ver.wrapping_add(1);
    let mut v = vec![0u8; VAL];
    for chunk in v[..VAL / 2].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

fn entry(i: u64, ver: u64) -> Arc<Entry> {
    let body = value(i, ver);
    let url = format!("/bench/{i}");
    Arc::new(Entry::encode(&NewEntry {
        status: StatusCode::OK,
        headers: &HeaderMap::new(),
        body: StoredBody::Identity(&body),
        url: &url,
        tags: &[i % 1000],
        freshness: Freshness {
            lifetime_ms: 3_600_000,
            ..Freshness::default()
        },
        response_time: now_ms(),
        vary: None,
    }))
}

fn open(dir: &std::path::Path, write: WriteMode) -> DiskTier {
    DiskTier::open(DiskSettings {
        path: dir.to_path_buf(),
        max: 64 << 30,
        write,
        fleet: None,
    })
    .expect("open the disk tier")
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

async fn check(tier: &DiskTier, i: u64, ver: u64) -> bool {
    match tier.get(&key(i)).await {
        Some(e) => e.body().as_ref() == value(i, ver).as_slice(),
        None => false,
    }
}

fn main() {
    if let Ok(dir) = std::env::var("LARDER_BENCH_OPEN") {
        // In a fresh process, so the allocator holds nothing from earlier phases.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _enter = rt.enter();
        let before = rss_kib();
        let tier = open(std::path::Path::new(&dir), WriteMode::Back);
        let after = rss_kib();
        println!(
            "index memory: {:.0} bytes per entry (RSS {before} KiB -> {after} KiB, {} entries)",
            ((after - before) * 1024) as f64 / tier.len() as f64,
            tier.len()
        );
        return;
    }
    // `cargo test --all-targets` runs this without `--bench`: a small smoke run then.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("LARDER_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|_| benching)
        .unwrap_or(if benching { 100_000 } else { 300 });
    let base = std::env::var("LARDER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("larder-disk-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, &dir));
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run(n: u64, dir: &std::path::Path) {
    println!("larder disk tier, N = {n} x 16 KiB, {}", dir.display());
    // a) Durable every 1000.
    let tier = open(dir, WriteMode::Back);
    let started = Instant::now();
    let mut built = Duration::ZERO;
    for batch in 0..n.div_ceil(1000) {
        let t = Instant::now();
        let entries: Vec<_> = (batch * 1000..((batch + 1) * 1000).min(n))
            .map(|i| (i, entry(i, 0)))
            .collect();
        built += t.elapsed();
        for (i, e) in &entries {
            let k = key(*i);
            assert!(
                tier.put(Write {
                    key: &k,
                    entry: e,
                    epoch: 0,
                    fleet: None,
                    durable: false
                })
                .await
            );
        }
        tier.flush().await;
    }
    let took = started.elapsed() - built;
    println!(
        "a_write: {:.2}s  {:.0} entries/s  {:.1} MB/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        (n * VAL as u64) as f64 / took.as_secs_f64() / 1e6
    );
    drop(tier);

    // b) Single durable inserts (write-through: on disk, synced, before `put` returns).
    let tier = open(dir, WriteMode::Through);
    let mut single = Vec::new();
    for i in n..n + 200 {
        let e = entry(i, 0);
        let t = Instant::now();
        let k = key(i);
        assert!(
            tier.put(Write {
                key: &k,
                entry: &e,
                epoch: 0,
                fleet: None,
                durable: false
            })
            .await
        );
        single.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "b_single_durable_us: p50 {:.0}  p99 {:.0}",
        pct(&mut single, 0.5),
        pct(&mut single, 0.99)
    );

    // c) Random reads, each checked.
    let mut reads = Vec::with_capacity(n as usize);
    let (mut misses, mut x) = (0, 0x2545_f491_4f6c_dd1du64);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % n;
        let t = Instant::now();
        let got = tier.get(&key(i)).await;
        reads.push(t.elapsed().as_secs_f64() * 1e6);
        match got {
            Some(e) if e.body().as_ref() == value(i, 0).as_slice() => {}
            _ => misses += 1,
        }
    }
    println!(
        "c_read_us: p50 {:.1}  p99 {:.1}  wrong or missing {misses}",
        pct(&mut reads, 0.5),
        pct(&mut reads, 0.99)
    );
    let logical = (n + 200) * VAL as u64;
    println!(
        "e_space: {} bytes ({:.2}x)",
        du(dir),
        du(dir) as f64 / logical as f64
    );
    drop(tier);

    let fresh = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LARDER_BENCH_OPEN", dir)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&fresh.stdout));

    // d) Reopen: the directory rebuilt from the segments.
    let t = Instant::now();
    let tier = open(dir, WriteMode::Back);
    let opened = t.elapsed();
    let found = check(&tier, 7, 0).await;
    println!(
        "d_recovery: open {:.1} ms, open->first get {:.1} ms (found={found}), {} entries",
        opened.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3,
        tier.len()
    );

    // e) Churn: every second key overwritten, durable at the end.
    let t = Instant::now();
    for i in (0..n).step_by(2) {
        let (k, e) = (key(i), entry(i, 1));
        assert!(
            tier.put(Write {
                key: &k,
                entry: &e,
                epoch: 0,
                fleet: None,
                durable: false
            })
            .await
        );
        if i % 2000 == 0 {
            tier.flush().await;
        }
    }
    tier.flush().await;
    println!(
        "e_churn: {} overwrites in {:.2}s; space {} bytes ({:.2}x)",
        n / 2,
        t.elapsed().as_secs_f64(),
        du(dir),
        du(dir) as f64 / logical as f64
    );
    drop(tier);
    let tier = open(dir, WriteMode::Back);
    let mut wrong = 0;
    for i in 0..n {
        if !check(&tier, i, i.is_multiple_of(2) as u64).await {
            wrong += 1;
        }
    }
    println!("e_after_reopen_all_keys: wrong, stale or missing {wrong}");
}

//! A tag purge at scale across two instances sharing Redis (`benches/purge.sh` runs it):
//! fills N entries under one tag through instance A, reads them all through instance B (so
//! B holds them in memory too), purges the tag on A, and reports how long A took to
//! acknowledge and how long until B served none of a sample of them
//! (`Cache-Control: only-if-cached`, so probing never refills).
//!
//! ```text
//! cargo run --release --example purge_bench -- A_PROXY B_PROXY A_ADMIN TOKEN PATH_PREFIX TAG N
//! {"entries":100000,"fill_s":9.1,"ack_ms":812.4,"consistent_ms":830.1}
//! ```

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

struct Args {
    a: String,
    b: String,
    admin: String,
    token: String,
    prefix: String,
    tag: String,
    n: usize,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: purge_bench A_PROXY B_PROXY A_ADMIN TOKEN PATH_PREFIX TAG N";
    let at = |i: usize| a.get(i).cloned().ok_or_else(|| usage.to_string());
    Ok(Args {
        a: at(0)?,
        b: at(1)?,
        admin: at(2)?,
        token: at(3)?,
        prefix: at(4)?,
        tag: at(5)?,
        n: at(6)?.parse().map_err(|_| usage.to_string())?,
    })
}

/// GETs every path through `base`, 64 at a time; how many were answered 200.
async fn get_all(client: &reqwest::Client, base: &str, paths: &[String]) -> usize {
    stream::iter(paths)
        .map(|p| async move {
            let r = client.get(format!("{base}{p}")).send().await;
            match r {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                _ => false,
            }
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}

/// How many of `sample` B still answers from its cache.
async fn still_cached(client: &reqwest::Client, base: &str, sample: &[String]) -> usize {
    stream::iter(sample)
        .map(|p| async move {
            let r = client
                .get(format!("{base}{p}"))
                .header("cache-control", "only-if-cached")
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == 200)
        })
        .buffer_unordered(64)
        .filter(|hit| std::future::ready(*hit))
        .count()
        .await
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = args()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let paths: Vec<String> = (0..a.n).map(|i| format!("{}{i}", a.prefix)).collect();
    let started = Instant::now();
    let filled = get_all(&client, &a.a, &paths).await;
    let fill_s = started.elapsed().as_secs_f64();
    let read = get_all(&client, &a.b, &paths).await;
    let step = (a.n / 500).max(1);
    let sample: Vec<String> = paths.iter().step_by(step).cloned().collect();
    let before = still_cached(&client, &a.b, &sample).await;
    if filled < a.n || read < a.n || before < sample.len() {
        return Err(format!(
            "setup: {filled} filled, {read} read through B, {before}/{} cached on B",
            sample.len()
        ));
    }
    let body = format!("{{\"tags\":[\"{}\"]}}", a.tag);
    let purge = Instant::now();
    let r = client
        .post(format!("{}/admin/invalidate", a.admin))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ack = purge.elapsed();
    if r.status() != 200 {
        return Err(format!("purge answered {}", r.status()));
    }
    while still_cached(&client, &a.b, &sample).await > 0 {
        if purge.elapsed() > Duration::from_secs(120) {
            return Err("B still serves purged entries after 120 s".into());
        }
    }
    let consistent = purge.elapsed();
    println!(
        "{{\"entries\":{},\"fill_s\":{:.1},\"ack_ms\":{:.1},\"consistent_ms\":{:.1}}}",
        a.n,
        fill_s,
        ack.as_secs_f64() * 1e3,
        consistent.as_secs_f64() * 1e3
    );
    Ok(())
}

//! Redis as the shared tier, against real `redis-server` processes started here: sharing
//! between instances, invalidation across them, the fill/invalidate race, outages,
//! restarts, a 3-master cluster and fleet-wide single flight.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;

fn redis_config(origin: SocketAddr, url: &str) -> String {
    config(
        origin,
        "",
        &format!(
            r#"
[store]
backend = "redis"
redis_url = "{url}"
redis_timeout = "200ms"
redis_connect_timeout = "3s"

[[rule]]
name = "video"
path = "/v/{{id}}"
ttl = "60s"
tags = ["v:{{id}}"]
"#
        ),
    )
}

/// An origin that counts calls per path and answers with the call number.
async fn counting_origin(delay: Duration) -> Origin {
    let n = Arc::new(AtomicU64::new(0));
    Origin::start(move |req| {
        let call = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(delay).await;
            ok(
                &[("content-type", "application/json")],
                format!("{{\"path\":\"{}\",\"call\":{call}}}", req.uri.path()),
            )
        }
    })
    .await
}

/// Asks `larder` for `path` until `cond` holds (bounded), returning how long it took.
async fn until(
    larder: &Larder,
    path: &str,
    limit: Duration,
    cond: impl Fn(&Got) -> bool,
) -> Duration {
    let started = Instant::now();
    let url = larder.url(path);
    let held = eventually(limit, || async { cond(&get(&url).await) }).await;
    let elapsed = started.elapsed();
    assert!(
        held,
        "{path}: still {} after {limit:?}",
        get(&url).await.header("cache-status")
    );
    elapsed
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_share_entries_and_invalidations() {
    let redis = Redis::start();
    let origin = counting_origin(Duration::ZERO).await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    let b = Larder::start(&redis_config(origin.addr, &redis.url()));
    let c = client();

    assert_eq!(
        get(&a.url("/v/1")).await.header("cache-status"),
        "larder; fwd=miss; stored"
    );
    let from_l2 = get(&b.url("/v/1")).await;
    assert!(
        from_l2
            .header("cache-status")
            .starts_with("larder; hit; ttl="),
        "{}",
        from_l2.header("cache-status")
    );
    assert!(from_l2.header("cache-status").ends_with("detail=l2"));
    assert!(
        get(&b.url("/v/1"))
            .await
            .header("cache-status")
            .ends_with("detail=l1"),
        "L2 hits refill L1"
    );
    assert!(get(&a.url("/v/1"))
        .await
        .header("cache-status")
        .ends_with("detail=l1"));
    assert_eq!(origin.total(), 1);

    // Invalidation on B reaches A's L1 through Redis pub/sub.
    let r =
        send(admin(&c, &b, Method::POST, "/admin/invalidate").body(r#"{"tags":["v:1"]}"#)).await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    let took = until(&a, "/v/1", Duration::from_secs(2), |g| {
        g.x_cache() == "MISS"
    })
    .await;
    assert!(
        took < Duration::from_millis(500),
        "A's L1 copy was evicted after {took:?}"
    );

    // Stats and health say which tier served and that Redis is up.
    let stats = send(admin(&c, &b, Method::GET, "/admin/stats")).await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert!(v["tiers"]["l2"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["redis"]["status"], "up");
    let health = get(&a.admin_url("/health")).await;
    assert_eq!(
        health.text(),
        r#"{"redis":"up","status":"ok","store":"redis"}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_racing_an_invalidation_does_not_resurrect_old_data() {
    let redis = Redis::start();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (a2, r2) = (arrived.clone(), release.clone());
    let n = Arc::new(AtomicU64::new(0));
    let origin = Origin::start(move |_| {
        let (arrived, release) = (a2.clone(), r2.clone());
        let call = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call == 1 {
                arrived.notify_one();
                release.notified().await;
                return ok(&[], "old state");
            }
            ok(&[], "new state")
        }
    })
    .await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    let b = Larder::start(&redis_config(origin.addr, &redis.url()));
    let url = a.url("/v/9");
    let slow_fill = tokio::spawn(async move { get(&url).await });
    arrived.notified().await;
    // The data changes while A's fill is in flight; B invalidates.
    let c = client();
    send(admin(&c, &b, Method::POST, "/admin/invalidate").body(r#"{"tags":["v:9"]}"#)).await;
    release.notify_one();
    let old = slow_fill.await.unwrap();
    assert_eq!(old.text(), "old state");
    assert_eq!(
        old.header("cache-status"),
        "larder; fwd=miss; detail=invalidated"
    );
    assert_eq!(get(&b.url("/v/9")).await.text(), "new state", "not in L2");
    assert_eq!(
        get(&a.url("/v/9")).await.text(),
        "new state",
        "not in A's L1 either"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_under_load_fails_no_request() {
    let mut redis = Redis::start();
    let origin = counting_origin(Duration::from_millis(2)).await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    let url = a.url("");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let (mut statuses, mut slowest, mut i) = (Vec::new(), Duration::ZERO, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    // Half of the keys repeat (L1 hits), half are new (trips to Redis).
                    let path = if i % 2 == 0 {
                        format!("/v/{}", (i * 8 + w) % 40)
                    } else {
                        format!("/v/new-{w}-{i}")
                    };
                    let g = send(c.get(format!("{url}{path}"))).await;
                    slowest = slowest.max(t.elapsed());
                    statuses.push(g.status);
                    i += 1;
                }
                (statuses, slowest)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        let (statuses, slowest) = w.await.unwrap();
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed: {statuses:?}"
        );
        assert!(
            slowest < Duration::from_secs(2),
            "a request waited {slowest:?}"
        );
    }
    assert!(total > 100, "only {total} requests ran");
    let health = get(&a.admin_url("/health")).await;
    assert!(
        health.text().contains(r#""redis":"down""#),
        "{}",
        health.text()
    );
    let metrics = get(&a.admin_url("/metrics")).await.text();
    assert!(metrics.contains("larder_redis_up 0"), "{metrics}");
    assert!(
        !metrics.contains("larder_redis_errors_total 0\n"),
        "errors are counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_costs_requests_at_most_the_command_timeout() {
    let redis = Redis::start();
    let origin = counting_origin(Duration::ZERO).await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    redis.pause();
    let c = client();
    for i in 0..10 {
        let t = Instant::now();
        let g = send(c.get(a.url(&format!("/v/h{i}")))).await;
        assert_eq!(g.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "request {i} took {:?}",
            t.elapsed()
        );
    }
    redis.resume();
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_come_back_after_redis_restarts() {
    let mut redis = Redis::start();
    let origin = counting_origin(Duration::ZERO).await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    let b = Larder::start(&redis_config(origin.addr, &redis.url()));
    get(&a.url("/v/1")).await;
    assert!(get(&a.url("/v/1"))
        .await
        .header("cache-status")
        .ends_with("detail=l1"));
    redis.restart();
    // Once both reconnect, a fill on A is again a hit from L2 on B.
    let k = std::sync::atomic::AtomicU64::new(0);
    let shared_again = eventually(Duration::from_secs(15), || async {
        let path = format!("/v/after-{}", k.fetch_add(1, Ordering::SeqCst) + 1);
        get(&a.url(&path)).await;
        get(&b.url(&path))
            .await
            .header("cache-status")
            .ends_with("detail=l2")
    })
    .await;
    assert!(shared_again, "no L2 hit after the restart");
    let k = k.load(Ordering::SeqCst);
    // Invalidation across instances works again (the subscription came back).
    let c = client();
    let path = format!("/v/after-{k}");
    send(
        admin(&c, &a, Method::POST, "/admin/invalidate")
            .body(format!(r#"{{"tags":["v:after-{k}"]}}"#)),
    )
    .await;
    until(&b, &path, Duration::from_secs(2), |g| g.x_cache() == "MISS").await;
    // A's subscription dropped with Redis, so it may have missed invalidations: it clears
    // its L1 when the subscription comes back.
    until(&a, "/v/1", Duration::from_secs(2), |g| g.x_cache() != "HIT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn works_against_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    let origin = counting_origin(Duration::ZERO).await;
    let a = Larder::start(&redis_config(origin.addr, &cluster.url()));
    let b = Larder::start(&redis_config(origin.addr, &cluster.url()));
    let c = client();
    for i in 0..12 {
        get(&a.url(&format!("/v/{i}"))).await;
    }
    for i in 0..12 {
        let g = get(&b.url(&format!("/v/{i}"))).await;
        assert!(
            g.header("cache-status").ends_with("detail=l2"),
            "{i}: {}",
            g.header("cache-status")
        );
    }
    // The entries spread over the masters.
    let per_node: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["dbsize"]).parse().unwrap())
        .collect();
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "{per_node:?}"
    );
    let r =
        send(admin(&c, &b, Method::POST, "/admin/invalidate").body(r#"{"tags":["v:3"]}"#)).await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    until(&a, "/v/3", Duration::from_secs(2), |g| {
        g.x_cache() == "MISS"
    })
    .await;
    let r =
        send(admin(&c, &a, Method::POST, "/admin/invalidate").body(r#"{"prefix":"/v/1"}"#)).await;
    assert_eq!(
        r.text(),
        r#"{"invalidated":3}"#,
        "/v/1, /v/10, /v/11 across the masters"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stampede_on_three_instances_makes_one_upstream_request() {
    let redis = Redis::start();
    let origin = counting_origin(Duration::from_millis(500)).await;
    let instances: Vec<Larder> = (0..3)
        .map(|_| Larder::start(&redis_config(origin.addr, &redis.url())))
        .collect();
    let mut tasks = Vec::new();
    for larder in &instances {
        for _ in 0..50 {
            let url = larder.url("/v/hot");
            tasks.push(tokio::spawn(async move { get(&url).await }));
        }
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!(g.status, 200);
        bodies.push(g.text());
    }
    assert_eq!(
        origin.total(),
        1,
        "one upstream request for 150 concurrent misses on 3 instances"
    );
    assert!(bodies.iter().all(|b| b == &bodies[0]));
}

/// Publishes `count` "filled" notices from a made-up instance, as a busy fleet would.
fn flood_events(redis: &Redis, count: usize) {
    use std::io::Write;
    let mut resp = Vec::new();
    for i in 0..count {
        let event = format!("flood fill {i:032x}");
        write!(
            resp,
            "*3\r\n$7\r\nPUBLISH\r\n$13\r\nlarder:events\r\n${}\r\n{event}\r\n",
            event.len()
        )
        .unwrap();
    }
    let mut cli = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli is installed");
    cli.stdin.take().unwrap().write_all(&resp).unwrap();
    assert!(cli.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_buried_in_events_still_drops_invalidated_copies() {
    let redis = Redis::start();
    let origin = counting_origin(Duration::ZERO).await;
    let a = Larder::start(&redis_config(origin.addr, &redis.url()));
    let b = Larder::start(&redis_config(origin.addr, &redis.url()));
    let c = client();
    let old = get(&a.url("/v/1")).await.text();
    get(&b.url("/v/1")).await;
    assert!(get(&b.url("/v/1"))
        .await
        .header("cache-status")
        .ends_with("detail=l1"));

    // B stops reading while events pile up for it, one invalidation among them: more than
    // it can queue, so some are lost to it.
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &b.pid().to_string()])
            .status()
            .unwrap()
    };
    signal("-STOP");
    flood_events(&redis, 20_000);
    let r =
        send(admin(&c, &a, Method::POST, "/admin/invalidate").body(r#"{"tags":["v:1"]}"#)).await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    flood_events(&redis, 20_000);
    signal("-CONT");

    // Whether B applied the invalidation or, having missed events, cleared its L1: it no
    // longer serves the old copy.
    until(&b, "/v/1", Duration::from_secs(5), |g| g.text() != old).await;
}

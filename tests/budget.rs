//! Upstream budgets against the real binary: a metered upstream that records when requests
//! arrive and how many it holds at once, limits per upstream (in flight, rate, a daily
//! budget of units), the over-budget answers (stale within `stale_if_budget`, else `429`
//! with `Retry-After`), an upstream's own `Retry-After` backing it off, the fleet sharing
//! it all through one `redis-server`, and warming yielding to clients.

mod common;

use std::time::Duration;

use common::metered::Metered;
use common::*;
use serde_json::Value;

async fn stats(larder: &Larder) -> Value {
    let r = send(admin(&client(), larder, http::Method::GET, "/admin/stats")).await;
    serde_json::from_slice(&r.body).expect("stats json")
}

async fn health(larder: &Larder) -> Value {
    serde_json::from_slice(&get(&larder.admin_url("/health")).await.body).expect("health json")
}

async fn metrics(larder: &Larder) -> String {
    get(&larder.admin_url("/metrics")).await.text()
}

fn retry_after(g: &Got) -> u64 {
    g.header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After in {:?}", g.headers))
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_and_the_rate_bound_what_reaches_the_upstream() {
    let metered = Metered::start(Duration::from_millis(150)).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "max_concurrent = 2\nrate = \"20/s\"\nqueue = \"20s\"",
        "[[rule]]\nname = \"items\"\npath = \"/items/{id}\"\nttl = \"1m\"\n",
    ));
    // Twelve different keys at once: nothing coalesces them.
    let c = client();
    let asks = (0..12).map(|i| send(c.get(larder.url(&format!("/items/{i}")))));
    for g in futures_util::future::join_all(asks).await {
        assert_eq!(g.status, 200, "{}", g.text());
        assert_eq!(g.x_cache(), "MISS");
    }
    assert_eq!(metered.count(), 12);
    assert_eq!(metered.most_in_flight(), 2, "max_concurrent = 2");
    // 20/s: one every 50 ms, never a burst.
    for gap in metered.gaps() {
        assert!(
            gap >= Duration::from_millis(45),
            "arrivals {:?} apart",
            metered.gaps()
        );
    }
    let s = stats(&larder).await;
    assert_eq!(s["upstreams"]["default"]["max_concurrent"], 2, "{s}");
    assert_eq!(s["upstreams"]["default"]["rate"], "20/s", "{s}");
    assert_eq!(s["upstreams"]["default"]["in_flight"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_slot_in_time_a_stale_entry_is_served_or_a_429_with_retry_after() {
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "rate = \"1/m\"\nqueue = \"0s\"",
        "[[rule]]\nname = \"kept\"\npath = \"/kept/{id}\"\nttl = \"1s\"\nstale_if_budget = \"1h\"\n\n\
         [[rule]]\nname = \"plain\"\npath = \"/plain/{id}\"\nttl = \"1s\"\n",
    ));
    assert_eq!(get(&larder.url("/kept/1")).await.x_cache(), "MISS");
    // The rate is spent for a minute: a new key gets 429 at once (queue = 0s).
    let refused = get(&larder.url("/plain/1")).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(
        (1..=60).contains(&retry_after(&refused)),
        "{:?}",
        refused.headers
    );
    assert!(
        refused.header("cache-status").contains("detail=rate"),
        "{:?}",
        refused.headers
    );
    assert_eq!(metered.count(), 1);
    // Past its ttl, the entry within stale_if_budget stands in.
    larder.advance(Duration::from_secs(5)).await;
    let stale = get(&larder.url("/kept/1")).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.text(), "body of /kept/1");
    assert!(
        stale.header("cache-status").contains("detail=rate"),
        "{:?}",
        stale.headers
    );
    assert_eq!(metered.count(), 1, "nothing more reached the upstream");
    let text = metrics(&larder).await;
    assert!(
        text.contains("larder_upstream_throttled_total{upstream=\"default\",reason=\"rate\"} 2"),
        "{text}"
    );
    assert_eq!(
        stats(&larder).await["upstreams"]["default"]["throttled"]["rate"],
        2
    );
    // Once the rate allows it, traffic resumes.
    larder.advance(Duration::from_secs(60)).await;
    assert_eq!(get(&larder.url("/plain/1")).await.status, 200);
    assert_eq!(metered.count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_budget_spends_each_rules_cost_and_comes_back_at_utc_midnight() {
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "budget = \"250/day\"",
        "[[rule]]\nname = \"search\"\npath = \"/search/{q}\"\nttl = \"1h\"\ncost = 100\n",
    ));
    assert_eq!(get(&larder.url("/search/a")).await.status, 200);
    assert_eq!(get(&larder.url("/search/b")).await.status, 200);
    // A hit spends nothing.
    assert_eq!(get(&larder.url("/search/a")).await.x_cache(), "HIT");
    let over = get(&larder.url("/search/c")).await;
    assert_eq!(over.status, 429);
    assert!(
        over.header("cache-status").contains("detail=budget"),
        "{:?}",
        over.headers
    );
    let to_midnight = retry_after(&over);
    assert!((1..=86_400).contains(&to_midnight), "{to_midnight}");
    assert_eq!(metered.count(), 2);
    let s = stats(&larder).await;
    assert_eq!(s["upstreams"]["default"]["budget"], 250, "{s}");
    assert_eq!(s["upstreams"]["default"]["budget_remaining"], 50, "{s}");
    assert!(metrics(&larder)
        .await
        .contains("larder_upstream_budget_remaining{upstream=\"default\"} 50"));
    let h = health(&larder).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("budget"), "{h}");
    // The next UTC day brings a new budget.
    larder.advance(Duration::from_secs(to_midnight + 1)).await;
    assert_eq!(get(&larder.url("/search/c")).await.status, 200);
    assert_eq!(health(&larder).await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_own_retry_after_backs_it_off_until_then() {
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "",
        "[[rule]]\nname = \"videos\"\npath = \"/videos/{id}\"\nttl = \"1s\"\nstale_if_budget = \"1h\"\n",
    ));
    assert_eq!(get(&larder.url("/videos/1")).await.status, 200);
    metered.refuse(429, "30");
    let theirs = get(&larder.url("/videos/2")).await;
    assert_eq!(theirs.status, 429, "the upstream's own answer is passed on");
    assert_eq!(metered.count(), 2);
    // Backing off: new misses are answered here, without reaching the upstream.
    let ours = get(&larder.url("/videos/3")).await;
    assert_eq!(ours.status, 429);
    assert!((1..=30).contains(&retry_after(&ours)), "{:?}", ours.headers);
    assert!(
        ours.header("cache-status").contains("detail=backoff"),
        "{:?}",
        ours.headers
    );
    larder.advance(Duration::from_secs(5)).await;
    let stale = get(&larder.url("/videos/1")).await;
    assert_eq!((stale.status, stale.x_cache()), (200, "STALE"));
    assert!(stale.header("cache-status").contains("detail=backoff"));
    assert_eq!(metered.count(), 2);
    let h = health(&larder).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("backing off"), "{h}");
    // After the back-off, traffic resumes.
    metered.answer();
    larder.advance(Duration::from_secs(30)).await;
    assert_eq!(get(&larder.url("/videos/3")).await.status, 200);
    assert_eq!(metered.count(), 3);
    // A 503 with Retry-After backs off too, and is what new misses get meanwhile.
    metered.refuse(503, "10");
    assert_eq!(get(&larder.url("/videos/4")).await.status, 503);
    let ours = get(&larder.url("/videos/5")).await;
    assert_eq!(ours.status, 503);
    assert!(ours.header("cache-status").contains("detail=backoff"));
    assert_eq!(metered.count(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_counts_as_a_failure_for_stale_if_error() {
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "",
        "[[rule]]\nname = \"jobs\"\npath = \"/jobs/{id}\"\nttl = \"1s\"\nstale_if_error = \"1h\"\n",
    ));
    assert_eq!(get(&larder.url("/jobs/1")).await.status, 200);
    metered.refuse(429, "");
    larder.advance(Duration::from_secs(5)).await;
    let stale = get(&larder.url("/jobs/1")).await;
    assert_eq!((stale.status, stale.x_cache()), (200, "STALE"));
    assert!(
        stale.header("cache-status").contains("fwd-status=429"),
        "{:?}",
        stale.headers
    );
    assert_eq!(stale.text(), "body of /jobs/1");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_redis_share_the_budget_and_the_back_off() {
    let redis = Redis::start();
    let metered = Metered::start(Duration::ZERO).await;
    let other = Metered::start(Duration::ZERO).await;
    let paced = Metered::start(Duration::ZERO).await;
    let conf = config(
        metered.origin.addr,
        "budget = \"3/day\"",
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n\
             [[upstream]]\nname = \"other\"\nurl = \"{}\"\n\n\
             [[upstream]]\nname = \"paced\"\nurl = \"{}\"\nrate = \"1/m\"\nqueue = \"0s\"\n\n\
             [[rule]]\nname = \"p\"\npath = \"/p/{{id}}\"\nttl = \"1h\"\nupstream = \"paced\"\n\n\
             [[rule]]\nname = \"k\"\npath = \"/k/{{id}}\"\nttl = \"1h\"\n\n\
             [[rule]]\nname = \"o\"\npath = \"/o/{{id}}\"\nttl = \"1h\"\nupstream = \"other\"\n",
            redis.url(),
            other.origin.url(),
            paced.origin.url()
        ),
    );
    let (a, b) = (Larder::start(&conf), Larder::start(&conf));
    assert_eq!(get(&a.url("/k/1")).await.status, 200);
    assert_eq!(get(&a.url("/k/2")).await.status, 200);
    assert_eq!(get(&b.url("/k/3")).await.status, 200);
    let over = get(&b.url("/k/4")).await;
    assert_eq!(over.status, 429, "the fleet's budget of 3 is spent");
    assert!(over.header("cache-status").contains("detail=budget"));
    assert_eq!(get(&a.url("/k/5")).await.status, 429);
    assert_eq!(metered.count(), 3);
    assert_eq!(stats(&b).await["upstreams"]["default"]["counted"], "fleet");
    // One request a minute across the fleet.
    assert_eq!(get(&a.url("/p/1")).await.status, 200);
    let paced_b = get(&b.url("/p/2")).await;
    assert_eq!(paced_b.status, 429);
    assert!(
        paced_b.header("cache-status").contains("detail=rate"),
        "{:?}",
        paced_b.headers
    );
    assert_eq!(paced.count(), 1);
    // One instance hears the upstream's Retry-After; the other leaves it alone too.
    other.refuse(429, "60");
    assert_eq!(get(&a.url("/o/1")).await.status, 429);
    let from_b = get(&b.url("/o/2")).await;
    assert_eq!(from_b.status, 429);
    assert!(
        from_b.header("cache-status").contains("detail=backoff"),
        "{:?}",
        from_b.headers
    );
    assert_eq!(other.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_an_instance_spends_only_its_local_share_and_says_so() {
    let mut redis = Redis::start();
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "budget = \"8/day\"\nlocal_share = 0.25",
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n[[rule]]\nname = \"h\"\npath = \"/h/{{id}}\"\nttl = \"1h\"\n",
            redis.url()
        ),
    ));
    assert_eq!(get(&larder.url("/h/0")).await.status, 200);
    redis.kill();
    // A quarter of 8: two units while Redis is away, never unbounded.
    assert_eq!(get(&larder.url("/h/1")).await.status, 200);
    assert_eq!(get(&larder.url("/h/2")).await.status, 200);
    let over = get(&larder.url("/h/3")).await;
    assert_eq!(over.status, 429, "{}", over.text());
    assert!(over.header("cache-status").contains("detail=budget"));
    assert_eq!(metered.count(), 3);
    let h = health(&larder).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("share"), "{h}");
    assert_eq!(
        stats(&larder).await["upstreams"]["default"]["counted"],
        "local-share"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn warming_yields_the_last_of_the_budget_to_clients() {
    let metered = Metered::start(Duration::ZERO).await;
    let larder = Larder::start(&config(
        metered.origin.addr,
        "budget = \"10/day\"",
        "[[rule]]\nname = \"w\"\npath = \"/w/{id}\"\nttl = \"1h\"\n",
    ));
    let urls: Vec<String> = (0..20).map(|i| format!("/w/{i}")).collect();
    let warmed = send(
        admin(&client(), &larder, http::Method::POST, "/admin/warm")
            .body(serde_json::json!({ "urls": urls, "concurrency": 1 }).to_string()),
    )
    .await;
    assert_eq!(warmed.status, 200, "{}", warmed.text());
    let w: Value = serde_json::from_slice(&warmed.body).unwrap();
    assert_eq!(w["warmed"], 9, "warming leaves a tenth of the budget: {w}");
    let failed = w["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 11, "{w}");
    assert!(failed.iter().all(|f| f.to_string().contains("429")), "{w}");
    assert_eq!(metered.count(), 9);
    // A client's miss still gets the last unit.
    let mine = get(&larder.url("/w/19")).await;
    assert_eq!((mine.status, mine.x_cache()), (200, "MISS"));
    assert_eq!(get(&larder.url("/w/18")).await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_whose_connection_failed_is_retried_once_a_post_never() {
    let ca = TestCa::new();
    let origin = Origin::start_tls(
        ca.server_config(&["localhost"], &[b"http/1.1"]),
        |s| async move {
            ok(
                &[("cache-control", "no-store")],
                format!("{} {}", s.method, s.uri.path()),
            )
        },
    )
    .await;
    // In front of it: a hop that drops each odd connection before its handshake.
    let hop = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hop.local_addr().unwrap().port();
    let target = origin.addr;
    let dropper = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let Ok((mut inbound, _)) = hop.accept().await else {
                return;
            };
            n += 1;
            if n % 2 == 1 {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let conf = |retries: u8| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[upstream]]\nname = \"flaky\"\nurl = \"https://localhost:{port}\"\nca_file = \"{}\"\n\
             connect_retries = {retries}\nmax_idle = 0\n\n\
             [[rule]]\nname = \"all\"\npath = \"/{{p}}\"\nupstream = \"flaky\"\nttl = \"1m\"\ninvalidate_on = [\"POST\"]\n",
            origin.addr,
            ca.pem_path.display()
        )
    };
    let larder = Larder::start(&conf(1));
    let got = get(&larder.url("/a")).await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "GET /a"),
        "retried on a new connection"
    );
    // A POST's connection failing is its answer: it is never sent twice.
    let c = client();
    let posted = send(c.post(larder.url("/b")).body("x")).await;
    let again = send(c.post(larder.url("/b")).body("x")).await;
    assert_eq!(
        [posted.status, again.status]
            .iter()
            .filter(|s| **s == 502)
            .count(),
        1,
        "one of two POSTs met the dropped connection"
    );
    drop(larder);
    let without = Larder::start(&conf(0));
    let first = get(&without.url("/c")).await;
    let second = get(&without.url("/c")).await;
    assert_eq!(
        [first.status, second.status]
            .iter()
            .filter(|s| **s == 502)
            .count(),
        1,
        "connect_retries = 0: no retry"
    );
    dropper.abort();
}

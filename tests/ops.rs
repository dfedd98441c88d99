//! Operating larder: Prometheus metrics, savings stats, hit-ratio alerts, warming,
//! refresh-ahead, related prefetch, hot reload and the access log — against the real
//! binary and real origins.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;

/// An origin answering `{"path":..,"call":n}` after `delay`, `no-store` for `/uncached/*`.
async fn origin(delay: Duration) -> Origin {
    let n = Arc::new(AtomicU64::new(0));
    Origin::start(move |req| {
        let call = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(delay).await;
            let cc = if req.uri.path().starts_with("/uncached/") {
                "no-store"
            } else {
                "max-age=3600"
            };
            ok(
                &[("content-type", "application/json"), ("cache-control", cc)],
                format!("{{\"path\":\"{}\",\"call\":{call}}}", req.uri.path()),
            )
        }
    })
    .await
}

/// Parses Prometheus text: `name{labels}` → value. Panics on a malformed line.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("larder_"), "{line}");
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        out.insert(series.to_string(), value);
    }
    out
}

async fn metrics(larder: &Larder) -> HashMap<String, f64> {
    parse_metrics(&get(&larder.admin_url("/metrics")).await.text())
}

async fn stats(larder: &Larder) -> serde_json::Value {
    let g = send(admin(&client(), larder, Method::GET, "/admin/stats")).await;
    serde_json::from_slice(&g.body).unwrap()
}

const RULES: &str = r#"
[[rule]]
name = "video"
path = "/v/{id}"
ttl = "1h"
miss_cost = 0.002
tags = ["v:{id}"]

[[rule]]
name = "uncached"
path = "/uncached/{id}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_what_happened() {
    let origin = origin(Duration::ZERO).await;
    let larder = Larder::start(&config(origin.addr, "", RULES));
    for _ in 0..4 {
        get(&larder.url("/v/1")).await;
    }
    get(&larder.url("/uncached/1")).await;
    let m = metrics(&larder).await;
    assert_eq!(
        m[r#"larder_requests_total{rule="video",outcome="hit"}"#],
        3.0
    );
    assert_eq!(
        m[r#"larder_requests_total{rule="video",outcome="miss"}"#],
        1.0
    );
    assert_eq!(
        m[r#"larder_requests_total{rule="uncached",outcome="miss"}"#],
        1.0
    );
    assert_eq!(m[r#"larder_hits_total{tier="l1"}"#], 3.0);
    assert_eq!(m["larder_store_entries"], 1.0);
    assert!(m["larder_store_bytes"] > 0.0);
    assert_eq!(m[r#"larder_hit_duration_seconds_count{tier="l1"}"#], 3.0);
    assert_eq!(
        m[r#"larder_hit_duration_seconds_bucket{tier="l1",le="+Inf"}"#],
        3.0
    );
    assert_eq!(
        m[r#"larder_upstream_duration_seconds_count{rule="video"}"#],
        1.0
    );
    assert_eq!(m[r#"larder_requests_avoided_total{rule="video"}"#], 3.0);
    // Buckets are cumulative.
    let mut last = 0.0;
    for le in [
        "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
        "0.05",
    ] {
        let v = m[&format!(r#"larder_hit_duration_seconds_bucket{{tier="l1",le="{le}"}}"#)];
        assert!(v >= last, "{le}");
        last = v;
    }
    // More traffic moves the counters.
    get(&larder.url("/v/1")).await;
    assert_eq!(
        metrics(&larder).await[r#"larder_requests_total{rule="video",outcome="hit"}"#],
        4.0
    );
    // One access log line per request, the user never in clear. (Lines are written off
    // the request path: wait for the sixth.)
    let started = Instant::now();
    let logs = loop {
        let logs = larder.logs();
        if logs
            .lines()
            .filter(|l| l.contains("larder::access"))
            .count()
            >= 6
            || started.elapsed() > Duration::from_secs(5)
        {
            break logs;
        }
        tokio::task::yield_now().await;
    };
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("larder::access"))
        .collect();
    assert_eq!(lines.len(), 6, "{logs}");
    assert!(
        lines[0].contains("method=GET")
            && lines[0].contains("path=/v/1")
            && lines[0].contains("rule=video")
    );
    assert!(
        lines[0].contains("outcome=MISS")
            && lines[0].contains("status=200")
            && lines[0].contains("latency_us="),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("outcome=HIT") && lines[1].contains("tier=l1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_figures_follow_a_scripted_workload() {
    let origin = origin(Duration::from_millis(100)).await;
    let larder = Larder::start(&config(origin.addr, "", RULES));
    let first = get(&larder.url("/v/7")).await;
    for _ in 0..9 {
        get(&larder.url("/v/7")).await;
    }
    let s = stats(&larder).await;
    let saved = &s["saved"];
    assert_eq!(saved["requests_avoided"], 9);
    assert_eq!(saved["bytes_not_fetched"], 9 * first.body.len() as u64);
    let seconds = saved["upstream_seconds_saved"].as_f64().unwrap();
    assert!(
        (0.9..2.0).contains(&seconds),
        "9 hits x ~0.1 s miss latency: {seconds}"
    );
    assert_eq!(saved["cost_saved"], 0.018);
    assert_eq!(saved["per_rule"]["video"]["requests_avoided"], 9);
    let reset = send(admin(
        &client(),
        &larder,
        Method::POST,
        "/admin/stats/reset",
    ))
    .await;
    assert_eq!(reset.status, 204);
    let s = stats(&larder).await;
    assert_eq!(
        (s["hits"].as_u64(), s["saved"]["requests_avoided"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["entries"], 1, "entries stay");
}

#[tokio::test(flavor = "multi_thread")]
async fn hit_ratio_alert_fires_below_the_threshold_and_not_above() {
    let origin = origin(Duration::ZERO).await;
    let rules = r#"
[cache]
alert_window = "300ms"
alert_min_requests = 5

[[rule]]
name = "good"
path = "/v/{id}"
ttl = "1h"
alert_hit_ratio = 0.7

[[rule]]
name = "bad"
path = "/uncached/{id}"
alert_hit_ratio = 0.7
"#;
    let larder = Larder::start(&config(origin.addr, "", rules));
    let started = Instant::now();
    loop {
        for _ in 0..10 {
            get(&larder.url("/v/1")).await;
            get(&larder.url("/uncached/1")).await;
        }
        let m = metrics(&larder).await;
        if m[r#"larder_hit_ratio_alert{rule="bad"}"#] == 1.0 {
            assert_eq!(m[r#"larder_hit_ratio_alert{rule="good"}"#], 0.0);
            assert!(m[r#"larder_hit_ratio_window{rule="good"}"#] > 0.7);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no alert raised"
        );
    }
    let logs = larder.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("hit ratio below the alert threshold"))
        .collect();
    assert!(!warnings.is_empty());
    assert!(
        warnings.iter().all(|l| l.contains("rule=bad")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn warming_fills_the_cache() {
    let origin = origin(Duration::ZERO).await;
    let rules = format!(
        "{RULES}\n[[rule]]\nname = \"mine\"\npath = \"/me/{{id}}\"\nttl = \"1h\"\nper_user = true\n\n[warm]\nurls = [\"/v/boot\"]\n"
    );
    let larder = Larder::start(&config(origin.addr, "", &rules));
    let c = client();
    // Start-up warming.
    let warmed = eventually(Duration::from_secs(5), || async {
        stats(&larder).await["warm"]["runs"] != 0
    })
    .await;
    assert!(warmed, "no start-up warming");
    assert_eq!(get(&larder.url("/v/boot")).await.x_cache(), "HIT");
    // On demand; with headers for per-user entries.
    let r = send(
        admin(&c, &larder, Method::POST, "/admin/warm")
            .body(r#"{"urls":["/v/1","/v/2"],"concurrency":2}"#),
    )
    .await;
    assert_eq!(r.text(), r#"{"failed":[],"warmed":2}"#);
    let r = send(
        admin(&c, &larder, Method::POST, "/admin/warm")
            .body(r#"{"urls":["/me/1"],"headers":{"authorization":"Bearer alice"}}"#),
    )
    .await;
    assert_eq!(r.text(), r#"{"failed":[],"warmed":1}"#);
    assert_eq!(get(&larder.url("/v/2")).await.x_cache(), "HIT");
    assert_eq!(
        send(
            c.get(larder.url("/me/1"))
                .header("authorization", "Bearer alice")
        )
        .await
        .x_cache(),
        "HIT"
    );
    assert_eq!(
        send(
            c.get(larder.url("/me/1"))
                .header("authorization", "Bearer bob")
        )
        .await
        .x_cache(),
        "MISS"
    );
    let m = metrics(&larder).await;
    assert_eq!(m["larder_warm_runs_total"], 3.0);
    assert_eq!(m[r#"larder_warm_urls_total{result="ok"}"#], 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_ahead_keeps_a_hot_key_hitting_across_its_expiry() {
    let origin = origin(Duration::from_millis(20)).await;
    let rules = r#"
[cache]
refresh_ahead_hits = 3
refresh_ahead_share = 0.5

[[rule]]
name = "hot"
path = "/v/{id}"
ttl = "1s"
"#;
    let larder = Larder::start(&config(origin.addr, "", rules));
    assert_eq!(get(&larder.url("/v/hot")).await.x_cache(), "MISS");
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_millis(3500) {
        let g = get(&larder.url("/v/hot")).await;
        seen.push(g.header("cache-status").to_string());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        seen.iter().all(|s| s.starts_with("larder; hit")),
        "a miss: {:?}",
        seen.iter().find(|s| !s.starts_with("larder; hit"))
    );
    assert!(
        origin.total() >= 3,
        "refreshed in the background across 3 lifetimes: {}",
        origin.total()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_prefetches_related_paths() {
    let origin = origin(Duration::ZERO).await;
    let rules = r#"
[[rule]]
name = "transcript"
path = "/videos/{id}/transcript"
ttl = "1h"
prefetch = ["/videos/{id}/summary-options"]

[[rule]]
name = "options"
path = "/videos/{id}/summary-options"
ttl = "1h"
"#;
    let larder = Larder::start(&config(origin.addr, "", rules));
    get(&larder.url("/videos/5/transcript")).await;
    let prefetched = eventually(Duration::from_secs(5), || async {
        origin.calls("/videos/5/summary-options") > 0
    })
    .await;
    assert!(prefetched, "no prefetch");
    let started = Instant::now();
    loop {
        let g = get(&larder.url("/videos/5/summary-options")).await;
        if g.x_cache() == "HIT" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            g.header("cache-status")
        );
    }
    assert_eq!(origin.calls("/videos/5/summary-options"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_a_ttl_under_load_and_refuses_a_broken_file() {
    let origin = origin(Duration::ZERO).await;
    let rules =
        |ttl: &str| format!("[[rule]]\nname = \"video\"\npath = \"/v/{{id}}\"\nttl = \"{ttl}\"\n");
    let larder = Larder::start(&config(origin.addr, "", &rules("1h")));
    let path = larder.config_path.clone();
    let url = larder.url("");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let mut statuses = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    statuses.push(send(c.get(format!("{url}/v/{}", (i + w) % 7))).await.status);
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    let ttl_of_new_entry = |k: &'static str| {
        let url = larder.url(&format!("/v/new-{k}"));
        async move {
            let g = get(&url).await;
            let g2 = get(&url).await;
            assert_eq!(g.x_cache(), "MISS");
            g2.header("cache-status")
                .split("ttl=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        }
    };
    assert!(ttl_of_new_entry("a").await > 3000);

    // SIGHUP with a new ttl.
    std::fs::write(&path, config(origin.addr, "", &rules("30s"))).unwrap();
    larder.hangup();
    let started = Instant::now();
    while ttl_of_new_entry_sync(&larder, started.elapsed().as_nanos()).await > 30 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the reload did not apply"
        );
    }

    // /admin/reload with another ttl.
    std::fs::write(&path, config(origin.addr, "", &rules("10m"))).unwrap();
    let r = send(admin(&client(), &larder, Method::POST, "/admin/reload")).await;
    assert_eq!(r.text(), r#"{"reloaded":true,"restart_needed":[]}"#);
    assert!((590..=600).contains(&ttl_of_new_entry("b").await));

    // A broken file is refused with file:line:col, and the running config stays.
    std::fs::write(
        &path,
        format!("{}\nttl_typo = 1\n", config(origin.addr, "", &rules("5s"))),
    )
    .unwrap();
    let r = send(admin(&client(), &larder, Method::POST, "/admin/reload")).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains(&format!("{}:", path.display()))
            && r.text().contains("unknown field `ttl_typo`"),
        "{}",
        r.text()
    );
    assert!((590..=600).contains(&ttl_of_new_entry("c").await));
    // A listener change needs a restart, and says so.
    std::fs::write(
        &path,
        config(origin.addr, "", &rules("10m"))
            .replace("127.0.0.1:0\"\nupstream", "127.0.0.1:1\"\nupstream"),
    )
    .unwrap();
    let r = send(admin(&client(), &larder, Method::POST, "/admin/reload")).await;
    assert_eq!(
        r.text(),
        r#"{"reloaded":true,"restart_needed":["proxy.listen"]}"#
    );

    stop.store(true, Ordering::SeqCst);
    let mut n = 0;
    for l in load {
        let statuses = l.await.unwrap();
        n += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed during the reloads"
        );
    }
    assert!(n > 50);
}

/// The ttl a new entry gets now (a fresh key per call).
async fn ttl_of_new_entry_sync(larder: &Larder, salt: u128) -> i64 {
    let url = larder.url(&format!("/v/probe-{salt}"));
    get(&url).await;
    let g = get(&url).await;
    g.header("cache-status")
        .split("ttl=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_refuses_whatever_serve_refuses_and_keeps_the_running_config() {
    let origin = origin(Duration::ZERO).await;
    let rules = "[[rule]]\nname = \"video\"\npath = \"/v/{id}\"\nttl = \"1h\"\n";
    let mut larder = Larder::start(&config(origin.addr, "", rules));
    let path = larder.config_path.clone();
    assert_eq!(get(&larder.url("/v/1")).await.x_cache(), "MISS");
    let refused = [
        // An empty file: `larder serve` refuses it (no upstream).
        String::new(),
        // Per-user keys on Redis without a shared user secret.
        config(origin.addr, "", rules)
            + "[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n"
            + "[[rule]]\nname = \"me\"\npath = \"/me\"\nper_user = true\n",
    ];
    for text in &refused {
        std::fs::write(&path, text).unwrap();
        let r = send(admin(&client(), &larder, Method::POST, "/admin/reload")).await;
        assert_eq!(r.status, 400, "{text:?}: {}", r.text());
        // SIGHUP too.
        larder.hangup();
        let r = send(admin(&client(), &larder, Method::POST, "/admin/reload")).await;
        assert_eq!(r.status, 400);
        // The rules in force still serve their entries.
        let g = get(&larder.url("/v/1")).await;
        assert_eq!(g.x_cache(), "HIT", "{text:?}: {}", g.header("cache-status"));
    }
    assert_eq!(larder.terminate().code(), Some(0));
}

//! What operators watch, against the real binary: `/health` degraded (and still 200) while
//! Redis is down or an upstream keeps failing, failed trips counted by upstream and kind
//! and as a per-rule error rate, and answers not stored counted by rule and reason.

mod common;

use std::time::Duration;

use common::*;
use http::Method;

async fn health(larder: &Larder) -> (u16, serde_json::Value) {
    let g = get(&larder.admin_url("/health")).await;
    (g.status, serde_json::from_slice(&g.body).unwrap())
}

async fn metrics(larder: &Larder) -> String {
    get(&larder.admin_url("/metrics")).await.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_degraded_while_redis_is_down_and_ok_again_after() {
    let mut redis = Redis::start();
    let origin = Origin::start(|_| async { ok(&[], "x") }).await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"100ms\"\n\n[[rule]]\npath = \"/a/{{id}}\"\nttl = \"1m\"\n",
            redis.url()
        ),
    ));
    assert_eq!(health(&larder).await.1["status"], "ok");
    redis.kill();
    let degraded = eventually(Duration::from_secs(10), || async {
        // Traffic makes the breaker notice.
        let g = get(&larder.url("/a/1")).await;
        assert_eq!(g.status, 200, "a dead Redis never fails a request");
        let (code, h) = health(&larder).await;
        assert_eq!(code, 200);
        h["status"] == "degraded"
    })
    .await;
    let h = health(&larder).await.1;
    assert!(degraded, "still {h}");
    assert_eq!(h["redis"], "down", "{h}");
    assert!(h["reasons"].to_string().contains("redis"), "{h}");
    redis.restart();
    let ok_again = eventually(Duration::from_secs(15), || async {
        get(&larder.url("/a/2")).await;
        health(&larder).await.1["status"] == "ok"
    })
    .await;
    assert!(ok_again, "not ok again: {}", health(&larder).await.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_counted_and_degrades_health() {
    // A port nothing listens on.
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let larder = Larder::start(&config(
        dead,
        "",
        "[[rule]]\nname = \"items\"\npath = \"/items/{id}\"\nttl = \"1m\"\n",
    ));
    for i in 0..12 {
        let g = get(&larder.url(&format!("/items/{i}"))).await;
        assert_eq!(g.status, 502);
    }
    let text = metrics(&larder).await;
    assert!(
        text.contains("larder_upstream_errors_total{upstream=\"default\",kind=\"connect\"} 12"),
        "{text}"
    );
    assert!(text.contains("larder_rule_upstream_errors_total{rule=\"items\"} 12"));
    let c = client();
    let stats: serde_json::Value = serde_json::from_slice(
        &send(admin(&c, &larder, Method::GET, "/admin/stats"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(stats["per_rule"]["items"]["upstream_errors"], 12);
    assert_eq!(stats["per_rule"]["items"]["error_rate"], 1.0);
    let (code, h) = health(&larder).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["reasons"][0]
            .as_str()
            .unwrap()
            .contains("upstream default: 12 of 12 trips failed"),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_not_stored_are_counted_by_rule_and_reason() {
    let origin = Origin::start(|req| async move {
        match req.uri.path() {
            "/p/cookie" => ok(&[("set-cookie", "s=1")], "c"),
            "/p/nostore" => ok(&[("cache-control", "no-store")], "n"),
            _ => response(500, &[], full("boom")),
        }
    })
    .await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        "[[rule]]\nname = \"p\"\npath = \"/p/{x}\"\nttl = \"1m\"\n",
    ));
    for path in ["/p/cookie", "/p/cookie", "/p/nostore", "/p/boom"] {
        get(&larder.url(path)).await;
    }
    let text = metrics(&larder).await;
    for line in [
        "larder_not_stored_total{rule=\"p\",reason=\"set-cookie\"} 2",
        "larder_not_stored_total{rule=\"p\",reason=\"no-store\"} 1",
        "larder_not_stored_total{rule=\"p\",reason=\"status\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let c = client();
    let stats: serde_json::Value = serde_json::from_slice(
        &send(admin(&c, &larder, Method::GET, "/admin/stats"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        stats["per_rule"]["p"]["not_stored"]["set-cookie"], 2,
        "{stats}"
    );
    assert_eq!(stats["per_rule"]["p"]["error_rate"], 0.25);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alert_rules_use_is_exported() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("larder-alerts-{}", std::process::id()));
    let origin = Origin::start(|_| async { ok(&[], "x") }).await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n[store.disk]\npath = \"{}\"\n\n[[rule]]\nname = \"a\"\npath = \"/a/{{id}}\"\nttl = \"1m\"\nalert_hit_ratio = 0.5\n",
            redis.url(),
            dir.display()
        ),
    ));
    get(&larder.url("/a/1")).await;
    get(&larder.url("/a/1")).await;
    let text = metrics(&larder).await;
    // The alert rules and the Grafana dashboard.
    let alerts = [
        "/config/prometheus-alerts.yml",
        "/config/grafana-dashboard.json",
    ]
    .map(|f| std::fs::read_to_string(format!("{}{f}", env!("CARGO_MANIFEST_DIR"))).unwrap())
    .join("\n");
    let names = regex::Regex::new(r"larder_[a-z0-9_]+").unwrap();
    let mut checked = 0;
    for name in names.find_iter(&alerts).map(|m| m.as_str()) {
        // A histogram's series are its family's.
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(text.contains(family), "{name} is not in /metrics");
        checked += 1;
    }
    assert!(checked >= 10);
    drop(larder);
    let _ = std::fs::remove_dir_all(&dir);
}

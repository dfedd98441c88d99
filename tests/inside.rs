//! Seeing inside against the real binary: one URL's entries in every tier
//! (`/admin/entry`, `larder ctl inspect`), pages of keys by cursor (`/admin/keys`, memory,
//! disk and Redis), the invalidation history surviving a restart (`/admin/invalidations`,
//! `larder_invalidations_total{source}`), Redis's memory watched, per-rule entries and
//! bytes, advice with its evidence, the running config, and rotated admin tokens.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const RULES: &str = r#"
[users]
sources = ["header:Authorization"]

[[rule]]
name = "items"
path = "/items/{id}"
ttl = "1h"
tags = ["item:{id}", "items"]
invalidate_on = ["POST"]

[[rule]]
name = "mine"
path = "/me/{what}"
ttl = "1h"
per_user = true

[[rule]]
name = "cookies"
path = "/cookies/{id}"
ttl = "1h"

[[rule]]
name = "search"
path = "/search"
ttl = "1h"
"#;

async fn origin() -> Origin {
    Origin::start(|req| async move {
        if req.uri.path().starts_with("/cookies/") {
            return ok(&[("set-cookie", "session=abc")], "with a cookie");
        }
        ok(
            &[("content-type", "text/plain")],
            format!("body of {}", req.uri),
        )
    })
    .await
}

fn start(origin: &Origin, rest: &str, token: &str) -> Larder {
    Larder::start_with_env(
        &config(origin.addr, "", &format!("{rest}\n{RULES}")),
        &[
            ("LARDER_ADMIN_TOKEN", token),
            ("LARDER_USER_SECRET", "a-secret-for-tests"),
        ],
    )
}

async fn admin_get(larder: &Larder, path: &str) -> (u16, Value) {
    let r = send(admin(&client(), larder, http::Method::GET, path)).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn ctl(larder: &Larder, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(larder_bin())
        .args(["ctl", "--admin", &format!("http://{}", larder.admin)])
        .args(args)
        .env("LARDER_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run larder ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_is_shown_in_every_tier_without_a_credential() {
    let origin = origin().await;
    let dir = TempDir::new("inside-entry");
    let larder = start(
        &origin,
        &format!("[store.disk]\npath = \"{}\"\n", dir.0.display()),
        TOKEN,
    );
    get(&larder.url("/items/1")).await;
    let (status, e) = admin_get(&larder, "/admin/entry?url=%2Fitems%2F1").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["rule"], "items");
    for tier in ["memory", "disk"] {
        let t = &e["tiers"][tier];
        assert_eq!(t["present"], true, "{tier}: {e}");
        assert!(t["ttl"].as_i64().is_some_and(|s| s > 3500), "{e}");
        assert!(t["size"].as_u64().is_some_and(|n| n > 0), "{e}");
        assert_eq!(t["encoding"], "identity");
        assert_eq!(t["tags"], json!(["item:1", "items"]), "{e}");
        assert_eq!(t["variants"], 1);
    }
    assert_eq!(
        admin_get(&larder, "/admin/entry?url=/items/999").await.0,
        404
    );
    // A per-user entry: asked for by user; the credential is nowhere in the answer.
    let me = send(
        client()
            .get(larder.url("/me/plan"))
            .header("authorization", "Bearer tok-ALICE"),
    )
    .await;
    assert_eq!(me.x_cache(), "MISS");
    assert_eq!(admin_get(&larder, "/admin/entry?url=/me/plan").await.0, 400);
    let (status, e) = admin_get(
        &larder,
        "/admin/entry?url=/me/plan&user_id=Bearer%20tok-ALICE",
    )
    .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["tiers"]["memory"]["present"], true, "{e}");
    assert!(!e.to_string().contains("ALICE"), "{e}");
    assert_eq!(
        admin_get(
            &larder,
            "/admin/entry?url=/me/plan&user_id=Bearer%20tok-BOB"
        )
        .await
        .0,
        404
    );
    let (ok, text) = ctl(&larder, &["inspect", "/items/1"]);
    assert!(ok && text.contains("\"present\": true"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_listed_page_by_page_in_every_tier() {
    let origin = origin().await;
    let dir = TempDir::new("inside-keys");
    let redis = Redis::start();
    let larder = start(
        &origin,
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n[store.disk]\npath = \"{}\"\n",
            redis.url(),
            dir.0.display()
        ),
        TOKEN,
    );
    for i in 0..5 {
        get(&larder.url(&format!("/items/{i}"))).await;
    }
    get(&larder.url("/search?q=x")).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..50 {
        let path = format!("/admin/keys?prefix=/items/&limit=2&cursor={cursor}");
        let (status, page) = admin_get(&larder, &path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["entries"].as_array().unwrap() {
            assert_eq!(e["rule"], "items", "{e}");
            assert!(e["size"].as_u64().unwrap() > 0 && e["ttl"].as_i64().unwrap() > 3500);
            seen.push((
                e["tier"].as_str().unwrap().to_string(),
                e["url"].as_str().unwrap().to_string(),
            ));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let tiers: HashSet<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tiers,
        HashSet::from(["memory", "disk", "redis"]),
        "{seen:?}"
    );
    for tier in ["memory", "disk", "redis"] {
        let urls: HashSet<&str> = seen
            .iter()
            .filter(|(t, _)| t == tier)
            .map(|(_, u)| u.as_str())
            .collect();
        assert_eq!(urls.len(), 5, "{tier}: {seen:?}");
    }
    let (_, page) = admin_get(&larder, "/admin/keys?rule=search&limit=100").await;
    let urls: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.iter().all(|u| *u == "/search?q=x") && !urls.is_empty(),
        "{page}"
    );
    let (ok, text) = ctl(&larder, &["keys", "--prefix", "/items/", "--limit", "3"]);
    assert!(ok && text.contains("\"cursor\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_invalidation_history_names_who_dropped_what_and_survives_a_restart() {
    let origin = origin().await;
    let dir = TempDir::new("inside-history");
    let store = format!("[store.disk]\npath = \"{}\"\n", dir.0.display());
    let mut larder = start(&origin, &store, TOKEN);
    get(&larder.url("/items/1")).await;
    get(&larder.url("/items/2")).await;
    let c = client();
    let r = send(
        admin(&c, &larder, http::Method::POST, "/admin/invalidate").body(r#"{"tags":["item:1"]}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    // A mutation drops its URL's entries.
    assert_eq!(
        send(c.post(larder.url("/items/2")).body("x")).await.status,
        200
    );
    let r = send(
        admin(&c, &larder, http::Method::POST, "/admin/purge").body(r#"{"confirm":"PURGE_ALL"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let (_, h) = admin_get(&larder, "/admin/invalidations").await;
    let events = h["events"].as_array().expect("events");
    let sources: Vec<&str> = events
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["purge", "mutation", "admin"], "{h}");
    assert_eq!(events[2]["target"], "tags item:1");
    assert_eq!(events[2]["dropped"]["memory"], 1, "{h}");
    assert_eq!(events[2]["dropped"]["disk"], 1, "{h}");
    assert!(
        events[1]["by"].as_str().unwrap().contains("POST /items/2"),
        "{h}"
    );
    let metrics = get(&larder.admin_url("/metrics")).await.text();
    for source in ["admin", "mutation", "purge"] {
        let line = format!("larder_invalidations_total{{source=\"{source}\"}} 1");
        assert!(metrics.contains(&line), "{line}");
    }
    // After a restart (a clean stop keeps it), the history is still there.
    larder.terminate();
    let larder = start(&origin, &store, TOKEN);
    let back = eventually(Duration::from_secs(10), || async {
        admin_get(&larder, "/admin/invalidations?limit=10").await.1["events"]
            .as_array()
            .is_some_and(|e| e.len() == 3)
    })
    .await;
    assert!(
        back,
        "{}",
        admin_get(&larder, "/admin/invalidations").await.1
    );
    let (ok, text) = ctl(&larder, &["history"]);
    assert!(ok && text.contains("purge"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_memory_is_watched_and_near_its_bound_health_says_so() {
    let redis = Redis::start_with(
        free_port(),
        &["--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let origin = origin().await;
    let larder = start(
        &origin,
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_memory_warn = 0.05\n",
            redis.url()
        ),
        TOKEN,
    );
    get(&larder.url("/items/1")).await;
    let polled = eventually(Duration::from_secs(10), || async {
        get(&larder.admin_url("/metrics"))
            .await
            .text()
            .contains("larder_redis_max_bytes 10485760")
    })
    .await;
    assert!(
        polled,
        "{}",
        get(&larder.admin_url("/metrics")).await.text()
    );
    let (_, stats) = admin_get(&larder, "/admin/stats").await;
    assert_eq!(stats["redis"]["max_bytes"], 10485760, "{stats}");
    assert!(
        stats["redis"]["used_bytes"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["redis"]["evicted_keys"], 0, "{stats}");
    let health: Value =
        serde_json::from_slice(&get(&larder.admin_url("/health")).await.body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"].to_string().contains("maxmemory"),
        "{health}"
    );
    // A Redis without maxmemory is warned about at start.
    let unbounded = Redis::start();
    let other = start(
        &origin,
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            unbounded.url()
        ),
        TOKEN,
    );
    let warned = eventually(Duration::from_secs(10), || async {
        other.logs().contains("redis has no maxmemory")
    })
    .await;
    assert!(warned);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_show_what_they_hold_and_advice_comes_with_evidence() {
    let origin = origin().await;
    let larder = start(&origin, "", TOKEN);
    for i in 0..3 {
        get(&larder.url(&format!("/items/{i}"))).await;
    }
    for i in 0..25 {
        get(&larder.url(&format!("/cookies/{i}"))).await;
        get(&larder.url(&format!("/search?q=same&session={i}x{i}"))).await;
    }
    let (_, stats) = admin_get(&larder, "/admin/stats").await;
    assert_eq!(stats["per_rule"]["items"]["entries"], 3, "{stats}");
    assert!(stats["per_rule"]["items"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["per_rule"]["items"]["held"]["memory"]["entries"], 3);
    let metrics = get(&larder.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("larder_rule_entries{rule=\"items\",tier=\"memory\"} 3"),
        "{metrics}"
    );
    let (status, advice) = admin_get(&larder, "/admin/recommendations").await;
    assert_eq!(status, 200);
    let list = advice["recommendations"].as_array().expect("list");
    let about = |rule: &str, word: &str| {
        list.iter().any(|a| {
            a["rule"] == rule
                && a["advice"].as_str().unwrap().contains(word)
                && !a["evidence"].as_str().unwrap().is_empty()
        })
    };
    assert!(about("cookies", "Set-Cookie"), "{advice}");
    assert!(about("search", "session"), "{advice}");
    let (ok, text) = ctl(&larder, &["advise"]);
    assert!(ok && text.contains("Set-Cookie"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_config_is_shown_masked_with_what_waits_for_a_restart() {
    let origin = origin().await;
    let text = config(
        origin.addr,
        "",
        &format!("[store]\nredis_url = \"redis://:hunter2@127.0.0.1:1/0\"\nbackend = \"memory\"\n{RULES}"),
    );
    let larder = Larder::start_with_env(
        &text,
        &[("LARDER_ADMIN_TOKEN", TOKEN), ("LARDER_USER_SECRET", "s")],
    );
    let (status, c) = admin_get(&larder, "/admin/config").await;
    assert_eq!(status, 200, "{c}");
    let shown = c["config"].as_str().unwrap();
    assert!(shown.contains("rules (4, first match wins)"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(c["reloaded_at"], Value::Null);
    // A reload that changes a restart-only key says so.
    let changed = text.replace(
        "listen = \"127.0.0.1:0\"\nupstream",
        "listen = \"127.0.0.1:1\"\nupstream",
    );
    std::fs::write(&larder.config_path, changed).unwrap();
    let r = send(admin(
        &client(),
        &larder,
        http::Method::POST,
        "/admin/reload",
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, c) = admin_get(&larder, "/admin/config").await;
    assert!(c["reloaded_at"].as_str().is_some(), "{c}");
    assert_eq!(c["restart_needed"], json!(["proxy.listen"]), "{c}");
    let (ok, out) = ctl(&larder, &["config"]);
    assert!(
        ok && out.contains("restart needed for: proxy.listen"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_comma_separated_token_is_accepted() {
    let origin = origin().await;
    let larder = start(&origin, "", "old-token, new-token");
    let c = client();
    let with = |t: &str| c.get(larder.admin_url("/admin/stats")).bearer_auth(t);
    assert_eq!(send(with("old-token")).await.status, 200);
    assert_eq!(send(with("new-token")).await.status, 200);
    assert_eq!(send(with("other")).await.status, 401);
    assert_eq!(send(with("old-token, new-token")).await.status, 401);
}

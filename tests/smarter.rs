//! Smarter fills against the real binary: a poll right after a mutation is a hit with the
//! new state (for the mutating user only), what a POST creates is warm, the hottest
//! entries come back after a purge and across a restart, summaries keyed on chosen body
//! fields, and a dry run that forwards everything while reporting what it would have hit.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use http::Method;

/// A job API: `GET /jobs/{id}` answers the job's state and who asked; `POST
/// /jobs/{id}/approve` changes it; `POST /jobs` creates job 99 (`201`, `Location`).
async fn job_origin() -> Origin {
    let approved: Arc<Mutex<Vec<String>>> = Arc::default();
    Origin::start(move |req| {
        let approved = approved.clone();
        async move {
            let path = req.uri.path().to_string();
            let who = req
                .headers
                .get("x-user-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match (req.method.as_str(), parts.as_slice()) {
                ("GET", ["jobs", id]) => {
                    let state = if approved.lock().unwrap().iter().any(|a| a == id) {
                        "approved"
                    } else {
                        "pending"
                    };
                    ok(&[], format!("job {id} {state} for {who}"))
                }
                ("POST", ["jobs", id, "approve"]) => {
                    approved.lock().unwrap().push(id.to_string());
                    ok(&[], "approved")
                }
                ("POST", ["jobs"]) => response(201, &[("location", "/jobs/99")], full("created")),
                ("GET", ["videos", id]) => ok(&[], format!("video {id}")),
                _ => response(404, &[], full("no")),
            }
        }
    })
    .await
}

fn job_config(origin: std::net::SocketAddr, extra: &str) -> String {
    config(
        origin,
        "",
        &format!(
            r#"
[users]
sources = ["header:X-User-Id"]

{extra}

[[rule]]
name = "job"
path = "/jobs/{{id}}"
ttl = "1h"
per_user = true
tags = ["job:{{id}}"]
rewarm_on_invalidate = true

[[rule]]
name = "approve"
path = "/jobs/{{id}}/approve"
cache = false
invalidate_on = ["POST"]
invalidates = ["job:{{id}}"]

[[rule]]
name = "create"
path = "/jobs"
cache = false
invalidate_on = ["POST"]
warm_created = true

[[rule]]
name = "video"
path = "/videos/{{id}}"
ttl = "1h"
"#
        ),
    )
}

async fn as_user(larder: &Larder, method: Method, path: &str, user: &str) -> Got {
    send(
        client()
            .request(method, larder.url(path))
            .header("x-user-id", user),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poll_right_after_a_mutation_is_a_hit_with_the_new_state_for_that_user() {
    let origin = job_origin().await;
    let larder = Larder::start(&job_config(origin.addr, ""));
    for user in ["alice", "bob"] {
        assert_eq!(
            as_user(&larder, Method::GET, "/jobs/7", user)
                .await
                .x_cache(),
            "MISS"
        );
        assert_eq!(
            as_user(&larder, Method::GET, "/jobs/7", user)
                .await
                .x_cache(),
            "HIT"
        );
    }
    let r = as_user(&larder, Method::POST, "/jobs/7/approve", "alice").await;
    assert_eq!(r.status, 200);
    let alice = as_user(&larder, Method::GET, "/jobs/7", "alice").await;
    assert_eq!(alice.x_cache(), "HIT", "{}", alice.header("cache-status"));
    assert_eq!(alice.text(), "job 7 approved for alice");
    // Bob's copy was dropped, not refilled with alice's identity.
    let bob = as_user(&larder, Method::GET, "/jobs/7", "bob").await;
    assert_eq!(bob.x_cache(), "MISS");
    assert_eq!(bob.text(), "job 7 approved for bob");
    // Two polls each before, the re-warm and bob's miss after.
    assert_eq!(origin.calls("/jobs/7"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_post_creates_is_warm() {
    let origin = job_origin().await;
    let larder = Larder::start(&job_config(origin.addr, ""));
    let r = as_user(&larder, Method::POST, "/jobs", "alice").await;
    assert_eq!(r.status, 201);
    let got = as_user(&larder, Method::GET, "/jobs/99", "alice").await;
    assert_eq!(got.x_cache(), "HIT", "{}", got.header("cache-status"));
    assert_eq!(got.text(), "job 99 pending for alice");
}

async fn warm_stats(larder: &Larder) -> serde_json::Value {
    let c = client();
    let r = send(admin(&c, larder, Method::GET, "/admin/stats")).await;
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["warm"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hottest_entries_come_back_after_a_purge_and_a_restart() {
    let origin = job_origin().await;
    let dir = std::env::temp_dir().join(format!("larder-hot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = job_config(
        origin.addr,
        &format!(
            "[warm]\ntop = 2\n\n[store.disk]\npath = \"{}\"\n",
            dir.display()
        ),
    );
    let mut larder = Larder::start(&config);
    for (video, n) in [("1", 6), ("2", 4), ("3", 1)] {
        for _ in 0..n {
            get(&larder.url(&format!("/videos/{video}"))).await;
        }
    }
    let c = client();
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/purge").body(r#"{"confirm":"PURGE_ALL"}"#))
            .await;
    assert_eq!(r.status, 200);
    // The purge is answered once the top two are fetched again.
    assert_eq!(warm_stats(&larder).await["warmed"], 2);
    let before = origin.total();
    assert_eq!(get(&larder.url("/videos/1")).await.x_cache(), "HIT");
    assert_eq!(get(&larder.url("/videos/2")).await.x_cache(), "HIT");
    assert_eq!(get(&larder.url("/videos/3")).await.x_cache(), "MISS");
    assert_eq!(origin.total(), before + 1);
    let top = send(admin(&c, &larder, Method::GET, "/admin/top")).await;
    let top: serde_json::Value = serde_json::from_slice(&top.body).unwrap();
    assert_eq!(top["hot"][0]["path"], "/videos/1", "{top}");

    // The list outlives the process (kept in the disk tier's directory).
    assert_eq!(larder.terminate().code(), Some(0));
    let larder = Larder::start(&config);
    let top = send(admin(&c, &larder, Method::GET, "/admin/top")).await;
    let top: serde_json::Value = serde_json::from_slice(&top.body).unwrap();
    assert_eq!(top["hot"][0]["path"], "/videos/1", "{top}");
    drop(larder);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_are_keyed_on_the_chosen_body_fields() {
    let origin = Origin::start(|_| async { ok(&[], "a summary") }).await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        r#"
[[rule]]
name = "summary"
path = "/summaries"
methods = ["POST"]
ttl = "1h"
key_body_fields = ["/transcript", "/options/length"]
"#,
    ));
    let post = |body: &'static str| {
        send(
            client()
                .post(larder.url("/summaries"))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let first = post(r#"{"transcript":"t1","options":{"length":"short"},"request_id":"a1"}"#).await;
    assert_eq!(first.x_cache(), "MISS");
    // Only request_id (and key order) differs: the same answer.
    let second =
        post(r#"{"request_id":"b2","options":{"length":"short"},"transcript":"t1","ts":17}"#).await;
    assert_eq!(second.x_cache(), "HIT", "{}", second.header("cache-status"));
    // A chosen field differs, or is absent: another entry.
    assert_eq!(
        post(r#"{"transcript":"t1","options":{"length":"long"}}"#)
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(post(r#"{"transcript":"t1"}"#).await.x_cache(), "MISS");
    assert_eq!(post(r#"{"transcript":"t1","x":1}"#).await.x_cache(), "HIT");
    // Not JSON: forwarded, and said why.
    let raw = post("transcript=t1").await;
    assert_eq!(raw.x_cache(), "BYPASS");
    assert!(raw.header("cache-status").contains("detail=body-not-json"));
    assert_eq!(origin.calls("/summaries"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_forwards_everything_and_reports_what_it_would_have_hit() {
    let origin = job_origin().await;
    let larder = Larder::start(&job_config(origin.addr, "[cache]\ndry_run = true\n"));
    for _ in 0..4 {
        let g = get(&larder.url("/videos/5")).await;
        assert_eq!(g.status, 200);
        assert_eq!(
            g.header("cache-status"),
            "larder; fwd=bypass; detail=dry-run"
        );
        assert_eq!(g.x_cache(), "BYPASS");
    }
    assert_eq!(origin.calls("/videos/5"), 4, "every request went upstream");
    let c = client();
    let stats: serde_json::Value = serde_json::from_slice(
        &send(admin(&c, &larder, Method::GET, "/admin/stats"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(stats["dry_run"], true);
    assert_eq!(stats["per_rule"]["video"]["would_hit"], 3, "{stats}");
    assert_eq!(stats["per_rule"]["video"]["would_hit_ratio"], 0.75);
    let metrics = get(&larder.admin_url("/metrics")).await.text();
    assert!(metrics.contains("larder_dry_run_requests_total{rule=\"video\",outcome=\"hit\"} 3"));

    // Switched on with a reload: what the dry run stored is served at once.
    let text = std::fs::read_to_string(&larder.config_path)
        .unwrap()
        .replace("dry_run = true", "dry_run = false");
    std::fs::write(&larder.config_path, text).unwrap();
    let r = send(admin(&c, &larder, Method::POST, "/admin/reload")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&larder.url("/videos/5")).await.x_cache(), "HIT");
    assert_eq!(origin.calls("/videos/5"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_warm_never_fetches_another_users_url_with_the_mutating_users_identity() {
    let origin = Origin::start(|req| async move { ok(&[], req.uri.path().to_string()) }).await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        r#"
[users]
sources = ["header:X-User-Id"]

[[rule]]
name = "inbox"
path = "/inbox/{owner}"
ttl = "1h"
per_user = true
tags = ["inboxes"]
rewarm_on_invalidate = true

[[rule]]
name = "send"
path = "/send"
cache = false
invalidate_on = ["POST"]
invalidates = ["inboxes"]
"#,
    ));
    as_user(&larder, Method::GET, "/inbox/alice", "alice").await;
    as_user(&larder, Method::GET, "/inbox/bob", "bob").await;
    let r = as_user(&larder, Method::POST, "/send", "alice").await;
    assert_eq!(r.status, 200);
    let seen: Vec<(String, String)> = origin
        .seen()
        .iter()
        .map(|s| {
            let who = s
                .headers
                .get("x-user-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            (s.uri.path().to_string(), who)
        })
        .collect();
    assert!(
        !seen.contains(&("/inbox/bob".to_string(), "alice".to_string())),
        "{seen:?}"
    );
    // Alice's own inbox was re-warmed for her.
    assert_eq!(
        as_user(&larder, Method::GET, "/inbox/alice", "alice")
            .await
            .x_cache(),
        "HIT"
    );
}

//! Invalidation scopes and acknowledgements against the real binary: `"match": "all"`,
//! path patterns, tag prefixes, a URL prefix found through its directory, `?wait=all`
//! across two instances on one `redis-server` (naming an instance that did not apply it),
//! the apply histogram, `larder ctl invalidate` with the new flags, and a soft purge that
//! marks disk copies stale instead of dropping them (a restart serves them revalidated).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn origin() -> Origin {
    Origin::start(|req| async move {
        let etag = "\"v1\"";
        if req.headers.get("if-none-match").is_some_and(|v| v == etag) {
            return response(304, &[("etag", etag)], full(""));
        }
        ok(&[("etag", etag)], format!("body of {}", req.uri.path()))
    })
    .await
}

const RULES: &str = r#"
[users]
sources = ["header:X-User-Id"]

[[rule]]
name = "reports"
path = "/reports/{id}"
ttl = "1h"
per_user = true
tags = ["analysis", "report:{id}"]

[[rule]]
name = "videos"
path = "/videos/{rest*}"
ttl = "1h"

[[rule]]
name = "jobs"
path = "/jobs/{id}"
ttl = "1h"
tags = ["job:{id}:status"]

[[rule]]
name = "other"
path = "/other/{id}"
ttl = "1h"
tags = ["jobless"]

[[rule]]
name = "items"
path = "/items/{id}"
ttl = "1h"
tags = ["items"]
"#;

fn start(origin: &Origin, rest: &str) -> Larder {
    Larder::start_with_env(
        &config(origin.addr, "", &format!("{rest}\n{RULES}")),
        &[
            ("LARDER_ADMIN_TOKEN", TOKEN),
            ("LARDER_USER_SECRET", "s3cret-for-tests"),
        ],
    )
}

async fn as_user(larder: &Larder, path: &str, user: &str) -> Got {
    send(client().get(larder.url(path)).header("x-user-id", user)).await
}

async fn invalidate(larder: &Larder, query: &str, body: Value) -> (u16, Value) {
    let path = format!("/admin/invalidate{query}");
    let r = send(admin(&client(), larder, http::Method::POST, &path).body(body.to_string())).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn match_all_drops_only_what_every_scope_matches() {
    let origin = origin().await;
    let larder = start(&origin, "");
    for user in ["42", "7"] {
        assert_eq!(as_user(&larder, "/reports/1", user).await.x_cache(), "MISS");
    }
    let (status, answer) = invalidate(
        &larder,
        "",
        json!({"match": "all", "user_id": "42", "tags": ["analysis"]}),
    )
    .await;
    assert_eq!(
        (status, &answer["invalidated"]),
        (200, &json!(1)),
        "{answer}"
    );
    assert_eq!(as_user(&larder, "/reports/1", "42").await.x_cache(), "MISS");
    assert_eq!(as_user(&larder, "/reports/1", "7").await.x_cache(), "HIT");
    // Without "match", several scopes still mean any of them.
    let (_, answer) = invalidate(&larder, "", json!({"user_id": "42", "tags": ["analysis"]})).await;
    assert_eq!(answer["invalidated"], 2, "{answer}");
    assert_eq!(as_user(&larder, "/reports/1", "7").await.x_cache(), "MISS");
    let (status, _) = invalidate(&larder, "", json!({"match": "some", "tags": ["analysis"]})).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pattern_a_tag_prefix_and_a_url_prefix_drop_what_they_name() {
    let origin = origin().await;
    let larder = start(&origin, "");
    let paths = [
        "/videos/1/comments",
        "/videos/2/comments?page=2",
        "/videos/1/likes",
        "/videos/1/comments/3",
        "/jobs/1",
        "/jobs/2",
        "/other/1",
    ];
    for p in paths {
        assert_eq!(get(&larder.url(p)).await.x_cache(), "MISS", "{p}");
    }
    let (_, answer) = invalidate(&larder, "", json!({"pattern": "/videos/*/comments"})).await;
    assert_eq!(answer["invalidated"], 2, "{answer}");
    let x = |p: &'static str| {
        let url = larder.url(p);
        async move { get(&url).await.x_cache().to_string() }
    };
    assert_eq!(x("/videos/1/comments").await, "MISS");
    assert_eq!(x("/videos/2/comments?page=2").await, "MISS");
    assert_eq!(x("/videos/1/likes").await, "HIT");
    assert_eq!(x("/videos/1/comments/3").await, "HIT");
    let (_, answer) = invalidate(&larder, "", json!({"pattern": "/videos/**/comments/*"})).await;
    assert_eq!(answer["invalidated"], 1, "{answer}");
    // Every tag starting with "job:" — and not "jobless".
    let (_, answer) = invalidate(&larder, "", json!({"tag_prefix": "job:"})).await;
    assert_eq!(answer["invalidated"], 2, "{answer}");
    assert_eq!(x("/jobs/1").await, "MISS");
    assert_eq!(x("/other/1").await, "HIT");
    let (status, answer) = invalidate(&larder, "", json!({"tag_prefix": "jo"})).await;
    assert_eq!(status, 400, "{answer}");
    // A URL prefix finds its entries through their directory.
    let (_, answer) = invalidate(&larder, "", json!({"prefix": "/videos/1/"})).await;
    assert_eq!(answer["invalidated"], 2, "{answer}");
    assert_eq!(x("/videos/1/likes").await, "MISS");
    assert_eq!(x("/videos/2/comments?page=2").await, "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_all_answers_once_every_live_instance_applied_it_and_names_the_others() {
    let redis = Redis::start();
    let origin = origin().await;
    let store = redis_store(&redis);
    let a = start(&origin, &store);
    let mut b = start(&origin, &store);
    let c = start(&origin, &store);
    // Every instance has said it is alive.
    let live = eventually(Duration::from_secs(10), || async {
        let (_, answer) =
            invalidate(&a, "?wait=all&wait_ms=2000", json!({"tags": ["nothing"]})).await;
        answer["applied"].as_array().is_some_and(|x| x.len() == 3)
    })
    .await;
    assert!(live, "all three instances acknowledged");
    assert_eq!(get(&b.url("/videos/9/comments")).await.x_cache(), "MISS");
    assert_eq!(get(&c.url("/videos/9/comments")).await.x_cache(), "HIT");
    let (status, answer) =
        invalidate(&a, "?wait=all", json!({"pattern": "/videos/*/comments"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["applied"].as_array().map(Vec::len),
        Some(3),
        "{answer}"
    );
    assert_eq!(answer["missing"], json!([]), "{answer}");
    // Acknowledged means consistent: the others serve none of it.
    assert_eq!(get(&b.url("/videos/9/comments")).await.x_cache(), "MISS");
    assert_eq!(get(&c.url("/videos/9/comments")).await.x_cache(), "HIT");
    // An instance that stopped answering is named.
    b.kill9();
    let (_, answer) = invalidate(&a, "?wait=all&wait_ms=300", json!({"tags": ["analysis"]})).await;
    assert_eq!(
        answer["applied"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(
        answer["missing"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let text = get(&c.admin_url("/metrics")).await.text();
    let count = text
        .lines()
        .find(|l| l.starts_with("larder_invalidation_apply_seconds_count{instance="))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        count >= 2,
        "the other instances' invalidations are timed here:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn larder_ctl_invalidate_takes_the_new_scopes() {
    let origin = origin().await;
    let larder = start(&origin, "");
    for user in ["42", "7"] {
        as_user(&larder, "/reports/3", user).await;
    }
    get(&larder.url("/jobs/5")).await;
    let ctl = |args: &[&str]| {
        std::process::Command::new(larder_bin())
            .args([
                "ctl",
                "--admin",
                &format!("http://{}", larder.admin),
                "invalidate",
            ])
            .args(args)
            .env("LARDER_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("run larder ctl")
    };
    let out = ctl(&["--all-of", "--user-id", "42", "--tag", "report:3", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["invalidated"], 1, "{answer}");
    assert_eq!(answer["missing"], json!([]), "{answer}");
    assert_eq!(as_user(&larder, "/reports/3", "7").await.x_cache(), "HIT");
    let out = ctl(&["--tag-prefix", "job:"]);
    assert!(out.status.success());
    assert_eq!(get(&larder.url("/jobs/5")).await.x_cache(), "MISS");
    let out = ctl(&["--pattern", "/reports/*"]);
    assert!(out.status.success());
    assert_eq!(as_user(&larder, "/reports/3", "7").await.x_cache(), "MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_purge_marks_disk_copies_stale_instead_of_dropping_them() {
    let origin = origin().await;
    let dir = TempDir::new("soft");
    let store = format!("[store.disk]\npath = \"{}\"\n", dir.0.display());
    let mut larder = start(&origin, &store);
    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "MISS");
    let (_, answer) =
        invalidate(&larder, "", json!({"tags": ["job:1:status"], "soft": true})).await;
    assert_eq!(answer["invalidated"], 1, "{answer}");
    larder.kill9();
    let larder = start(&origin, &store);
    // After a restart the disk copy is there, stale: revalidated with a 304, not refetched.
    let after = get(&larder.url("/jobs/1")).await;
    assert_eq!(after.x_cache(), "STALE", "{:?}", after.headers);
    assert!(
        after.header("cache-status").contains("fwd-status=304"),
        "{:?}",
        after.headers
    );
    assert_eq!(after.text(), "body of /jobs/1");
    assert_eq!(origin.calls("/jobs/1"), 2);
}

/// A tag purge on Redis sets the tag's members aside in one step and sweeps them in the
/// background; until then no instance serves one of them (asked in the order the sweep
/// reaches last first), an instance that was down during the purge serves none after its
/// restart, and entries filled after the purge are served.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_purge_is_one_step_and_nothing_set_aside_is_served_meanwhile() {
    const N: usize = 2000;
    let redis = Redis::start();
    let origin = origin().await;
    let store = redis_store(&redis);
    let a = start(&origin, &store);
    let mut b = start(&origin, &store);
    let mut c = start(&origin, &store);
    let paths: Vec<String> = (0..N).map(|i| format!("/items/{i}")).collect();
    for chunk in paths.chunks(100) {
        let gets = chunk.iter().map(|p| get_ok(&a, p));
        futures_util::future::join_all(gets).await;
    }
    assert_eq!(origin.total(), N as u64);
    let cached = |l: &Larder, p: &str| {
        let url = l.url(p);
        async move {
            let r = send(client().get(url).header("cache-control", "only-if-cached")).await;
            r.status == 200
        }
    };
    assert!(
        cached(&b, &paths[N - 1]).await,
        "B reads A's entries from Redis"
    );
    // C is down during the purge.
    c.kill9();
    let (status, answer) = invalidate(&a, "", json!({"tags": ["items"]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["invalidated"], N as u64, "{answer}");
    // The sweep pops the earliest-expiring first: ask for the last filled first.
    for p in paths.iter().rev() {
        assert!(
            !cached(&b, p).await,
            "B served {p} after its tag was purged"
        );
        assert!(
            !cached(&a, p).await,
            "A served {p} after its tag was purged"
        );
    }
    c = start(&origin, &store);
    for p in paths.iter().rev().take(200) {
        assert!(!cached(&c, p).await, "C served {p} after restarting");
    }
    // Filled after the purge: served, to the other instances too, once swept through.
    let fresh = get(&a.url("/items/7")).await;
    assert_eq!(fresh.x_cache(), "MISS");
    let served = eventually(Duration::from_secs(10), || cached(&b, "/items/7")).await;
    assert!(served, "an entry filled after the purge is served");
    drop(c);
    b.kill9();
}

async fn get_ok(larder: &Larder, path: &str) {
    assert_eq!(get(&larder.url(path)).await.status, 200);
}

fn redis_store(redis: &Redis) -> String {
    format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    )
}

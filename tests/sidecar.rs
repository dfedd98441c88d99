//! The sidecar end to end: the real `larder` binary between a real HTTP client and a real
//! origin on loopback.

mod common;

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;

const JSON: (&str, &str) = ("content-type", "application/json");

fn job_rules() -> &'static str {
    r#"
[users]
sources = ["header:Authorization"]

[[rule]]
name = "health"
path = "/health"
ttl = "60s"
cache_control = "public, max-age=60"

[[rule]]
name = "job"
path = "/jobs/{job_id}"
ttl = "60s"
cache_control = "private, max-age=60"
per_user = true
tags = ["jobs", "job:{job_id}"]
invalidate_on = ["POST", "PUT", "PATCH", "DELETE"]

[[rule]]
name = "job-approve"
path = "/jobs/{job_id}/approve"
methods = ["POST"]
cache = false
invalidates = ["job:{job_id}"]

[[rule]]
name = "video"
path = "/videos/{id}"
ttl = "60s"
tags = ["video:{id}"]

[[rule]]
name = "short"
path = "/short"
ttl = "1s"

[[rule]]
name = "summaries"
path = "/v1/summarize"
methods = ["POST"]
key_body = true
ttl = "72h"
"#
}

/// An origin that echoes who asked and counts its calls per path.
async fn echo_origin() -> Origin {
    Origin::start(|req| async move {
        let user = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody")
            .to_string();
        let path = req.uri.path().to_string();
        if path.starts_with("/videos/") {
            let body = format!(
                "{{\"path\":\"{path}\",\"filler\":\"{}\"}}",
                "lorem ipsum dolor sit amet ".repeat(200)
            );
            return ok(&[JSON], body);
        }
        if path == "/v1/summarize" {
            return ok(&[JSON], format!("{{\"summary_of\":{}}}", req.body.len()));
        }
        ok(
            &[JSON],
            format!("{{\"path\":\"{path}\",\"user\":\"{user}\"}}"),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn miss_then_hit_with_status_headers() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let first = get(&larder.url("/health")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("cache-status"), "larder; fwd=miss; stored");
    let second = get(&larder.url("/health")).await;
    assert_eq!(second.x_cache(), "HIT");
    assert!(
        second
            .header("cache-status")
            .starts_with("larder; hit; ttl="),
        "{}",
        second.header("cache-status")
    );
    assert_eq!(second.header("age"), "0");
    assert_eq!(
        second.header("cache-control"),
        "public, max-age=60",
        "the rule's cache_control replaces the origin's"
    );
    assert_eq!(second.body, first.body);
    assert_eq!(origin.calls("/health"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_user_entries_never_cross_users() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let a1 = send(
        c.get(larder.url("/jobs/1"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    let b1 = send(
        c.get(larder.url("/jobs/1"))
            .header("authorization", "Bearer bob"),
    )
    .await;
    let a2 = send(
        c.get(larder.url("/jobs/1"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    let b2 = send(
        c.get(larder.url("/jobs/1"))
            .header("authorization", "Bearer bob"),
    )
    .await;
    assert!(a1.text().contains("Bearer alice") && b1.text().contains("Bearer bob"));
    assert_eq!((a1.x_cache(), b1.x_cache()), ("MISS", "MISS"));
    assert_eq!((a2.x_cache(), b2.x_cache()), ("HIT", "HIT"));
    assert!(
        a2.text().contains("Bearer alice"),
        "alice got {}",
        a2.text()
    );
    assert!(b2.text().contains("Bearer bob"), "bob got {}", b2.text());
    assert_eq!(origin.calls("/jobs/1"), 2);

    // No user on a per_user rule: bypass, and nothing is stored.
    let entries_before = send(admin(&c, &larder, Method::GET, "/admin/stats")).await;
    let anon1 = get(&larder.url("/jobs/1")).await;
    let anon2 = get(&larder.url("/jobs/1")).await;
    assert_eq!((anon1.x_cache(), anon2.x_cache()), ("BYPASS", "BYPASS"));
    assert_eq!(
        anon1.header("cache-status"),
        "larder; fwd=bypass; detail=no-user"
    );
    assert!(anon2.text().contains("nobody"));
    assert_eq!(origin.calls("/jobs/1"), 4);
    let entries_after = send(admin(&c, &larder, Method::GET, "/admin/stats")).await;
    let n = |g: &Got| {
        serde_json::from_slice::<serde_json::Value>(&g.body).unwrap()["entries"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(n(&entries_before), n(&entries_after));

    // The raw credential never reaches the logs.
    assert!(!larder.logs().contains("alice"), "{}", larder.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn public_rule_is_shared_across_users() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    // A request with Authorization is not shared unless the response allows it.
    let a = send(
        c.get(larder.url("/videos/7"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    assert_eq!(
        a.header("cache-status"),
        "larder; fwd=miss; detail=authorization"
    );
    let b = send(
        c.get(larder.url("/videos/7"))
            .header("authorization", "Bearer bob"),
    )
    .await;
    assert_eq!(b.x_cache(), "MISS");
    let origin2 = Origin::start(|_| async {
        ok(
            &[JSON, ("cache-control", "public, max-age=60")],
            "{\"v\":1}",
        )
    })
    .await;
    let larder2 = Larder::start(&config(origin2.addr, "", job_rules()));
    let a = send(
        c.get(larder2.url("/videos/7"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    let b = send(
        c.get(larder2.url("/videos/7"))
            .header("authorization", "Bearer bob"),
    )
    .await;
    let anon = get(&larder2.url("/videos/7")).await;
    assert_eq!(
        (a.x_cache(), b.x_cache(), anon.x_cache()),
        ("MISS", "HIT", "HIT")
    );
    assert_eq!(origin2.calls("/videos/7"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_identity_clients_get_the_same_bytes() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let identity = send(c.get(larder.url("/videos/3"))).await;
    let gz = send(
        c.get(larder.url("/videos/3"))
            .header("accept-encoding", "gzip"),
    )
    .await;
    let identity2 = send(
        c.get(larder.url("/videos/3"))
            .header("accept-encoding", "br"),
    )
    .await;
    assert_eq!(identity.x_cache(), "MISS");
    assert_eq!((gz.x_cache(), identity2.x_cache()), ("HIT", "HIT"));
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(identity2.header("content-encoding"), "");
    assert!(gz
        .header("vary")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    assert!(
        gz.body.len() < identity.body.len() / 3,
        "stored compressed: {} vs {}",
        gz.body.len(),
        identity.body.len()
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, identity.body);
    assert_eq!(identity2.body, identity.body);
    // The origin is asked for the one coding larder can decode, or for identity when the
    // client cannot take gzip (so an uncacheable answer reaches it readable).
    assert_eq!(origin.seen()[0].headers["accept-encoding"], "identity");
    assert_eq!(origin.calls("/videos/3"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_body_hits_with_reordered_json() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let post = |body: &'static str| {
        c.post(larder.url("/v1/summarize"))
            .header("content-type", "application/json")
            .body(body)
    };
    let a = send(post(
        r#"{"video":"v1","options":{"length":"short","focus":["a","b"]}}"#,
    ))
    .await;
    let b = send(post(
        r#"{ "options": {"focus":["a","b"], "length":"short"}, "video":"v1" }"#,
    ))
    .await;
    let other = send(post(
        r#"{"video":"v2","options":{"length":"short","focus":["a","b"]}}"#,
    ))
    .await;
    assert_eq!(
        (a.x_cache(), b.x_cache(), other.x_cache()),
        ("MISS", "HIT", "MISS")
    );
    assert_eq!(a.body, b.body);
    assert_eq!(origin.calls("/v1/summarize"), 2);
    // The origin received the body on the miss.
    assert!(origin.seen()[0].body.starts_with(b"{\"video\":\"v1\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_after_their_ttl() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    assert_eq!(get(&larder.url("/short")).await.x_cache(), "MISS");
    assert_eq!(get(&larder.url("/short")).await.x_cache(), "HIT");
    larder.advance(Duration::from_millis(1100)).await;
    let after = get(&larder.url("/short")).await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(origin.calls("/short"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutations_invalidate_tags() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let job = |id: &str| {
        c.get(larder.url(&format!("/jobs/{id}")))
            .header("authorization", "Bearer alice")
    };
    assert_eq!(send(job("1")).await.x_cache(), "MISS");
    assert_eq!(send(job("2")).await.x_cache(), "MISS");
    assert_eq!(send(job("1")).await.x_cache(), "HIT");

    // invalidate_on: a POST to the job's own path drops the rule's tags (incl. "jobs").
    let post = send(
        c.post(larder.url("/jobs/1"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    assert_eq!(post.x_cache(), "BYPASS");
    assert_eq!(send(job("1")).await.x_cache(), "MISS");
    assert_eq!(
        send(job("2")).await.x_cache(),
        "MISS",
        "the shared \"jobs\" tag dropped job 2 too"
    );

    // invalidates: the approve endpoint drops job:2 only.
    assert_eq!(send(job("1")).await.x_cache(), "HIT");
    let approve = send(
        c.post(larder.url("/jobs/2/approve"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    assert_eq!(approve.status, 200);
    assert_eq!(send(job("2")).await.x_cache(), "MISS");
    assert_eq!(send(job("1")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_mutations_do_not_invalidate() {
    let origin = Origin::start(|req| async move {
        if req.method == Method::POST {
            return response(409, &[], full("conflict"));
        }
        ok(&[JSON], "{}")
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let job = || {
        c.get(larder.url("/jobs/1"))
            .header("authorization", "Bearer alice")
    };
    assert_eq!(send(job()).await.x_cache(), "MISS");
    assert_eq!(
        send(
            c.post(larder.url("/jobs/1/approve"))
                .header("authorization", "Bearer alice")
        )
        .await
        .status,
        409
    );
    assert_eq!(send(job()).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_needs_the_token_and_invalidates() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let alice = || {
        c.get(larder.url("/jobs/9"))
            .header("authorization", "Bearer alice")
    };
    for path in ["/health", "/videos/1", "/videos/2"] {
        get(&larder.url(path)).await;
    }
    send(alice()).await;

    // Without or with a wrong token: 401, nothing changes.
    let no_token = send(
        c.post(larder.admin_url("/admin/purge"))
            .body(r#"{"confirm":"PURGE_ALL"}"#),
    )
    .await;
    assert_eq!(no_token.status, 401);
    let wrong = send(
        c.post(larder.admin_url("/admin/invalidate"))
            .bearer_auth("nope")
            .body(r#"{"tags":["video:1"]}"#),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(get(&larder.url("/videos/1")).await.x_cache(), "HIT");
    // /health needs no token.
    let health = get(&larder.admin_url("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&health.body).unwrap(),
        serde_json::json!({"status":"ok","store":"memory"})
    );

    let inv =
        |body: &'static str| send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(body));
    let r = inv(r#"{"tags":["video:1"]}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    assert_eq!(get(&larder.url("/videos/1")).await.x_cache(), "MISS");
    assert_eq!(
        inv(r#"{"urls":["/videos/2"]}"#).await.text(),
        r#"{"invalidated":1}"#
    );
    assert_eq!(get(&larder.url("/videos/2")).await.x_cache(), "MISS");
    assert_eq!(
        inv(r#"{"prefix":"/videos/"}"#).await.text(),
        r#"{"invalidated":2}"#
    );
    assert_eq!(
        inv(r#"{"user":"Bearer alice"}"#).await.text(),
        r#"{"invalidated":1}"#
    );
    assert_eq!(send(alice()).await.x_cache(), "MISS");
    assert_eq!(inv(r#"{"tagz":["x"]}"#).await.status, 400);

    let refuse =
        send(admin(&c, &larder, Method::POST, "/admin/purge").body(r#"{"confirm":"yes"}"#)).await;
    assert_eq!(refuse.status, 400);
    let purge =
        send(admin(&c, &larder, Method::POST, "/admin/purge").body(r#"{"confirm":"PURGE_ALL"}"#))
            .await;
    assert_eq!(purge.text(), r#"{"purged":2}"#);
    assert_eq!(get(&larder.url("/health")).await.x_cache(), "MISS");

    let stats = send(admin(&c, &larder, Method::GET, "/admin/stats")).await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    for field in [
        "hits",
        "misses",
        "bypass",
        "hit_ratio",
        "entries",
        "bytes",
        "evictions",
        "per_rule",
    ] {
        assert!(v.get(field).is_some(), "stats lack {field}: {v}");
    }
    assert!(v["per_rule"]["video"]["misses"].as_u64().unwrap() >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_without_a_configured_token_refuses_every_token() {
    let origin = echo_origin().await;
    let larder = Larder::start_with_env(&config(origin.addr, "", job_rules()), &[]);
    let r = send(
        client()
            .get(larder.admin_url("/admin/stats"))
            .bearer_auth("anything"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("LARDER_ADMIN_TOKEN"), "{}", r.text());
    // The proxy and /health keep working.
    assert_eq!(get(&larder.url("/health")).await.status, 200);
    assert_eq!(get(&larder.admin_url("/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let larder = Larder::start(&config(dead, "", job_rules()));
    let r = get(&larder.url("/health")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "upstream unreachable\n");

    let slow = Origin::start(|_| async {
        // Never answers: only the upstream timeout ends the wait.
        std::future::pending::<()>().await;
        ok(&[], "late")
    })
    .await;
    let larder = Larder::start(&config(
        slow.addr,
        "upstream_timeout = \"300ms\"",
        job_rules(),
    ));
    let started = std::time::Instant::now();
    let r = get(&larder.url("/health")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream timed out\n");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Errors are not cached.
    assert_eq!(get(&larder.url("/health")).await.status, 504);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_max_body_stream_whole_and_are_not_stored() {
    let big: Bytes = (0..300_000u32)
        .map(|i| b"abcdefghij"[(i % 10) as usize])
        .collect::<Vec<u8>>()
        .into();
    let big2 = big.clone();
    let origin = Origin::start(move |req| {
        let big = big2.clone();
        async move {
            match req.uri.path() {
                "/videos/known" => ok(&[("content-type", "text/plain")], big),
                _ => response(
                    200,
                    &[("content-type", "text/plain")],
                    chunked(big.chunks(10_000).map(Bytes::copy_from_slice).collect()),
                ),
            }
        }
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "max_body = \"100KiB\"", job_rules()));
    for path in ["/videos/known", "/videos/chunked"] {
        let a = get(&larder.url(path)).await;
        let b = get(&larder.url(path)).await;
        assert_eq!(a.body, big, "{path} arrives whole");
        assert_eq!(b.body, big);
        if path == "/videos/known" {
            // Known too large from its Content-Length: passed on from the start.
            assert_eq!(
                a.header("cache-status"),
                "larder; fwd=miss; detail=too-large"
            );
        }
        // A chunked body may have begun streaming into a fill before it grew past the
        // bound; either way it is not stored.
        assert_eq!(b.x_cache(), "MISS");
        assert_eq!(origin.calls(path), 2);
    }
    // A chunked body within the bound is stored.
    let small = Origin::start(|_| async {
        response(
            200,
            &[("content-type", "text/plain")],
            chunked(vec![Bytes::from("a"), Bytes::from("b")]),
        )
    })
    .await;
    let larder = Larder::start(&config(small.addr, "", job_rules()));
    assert_eq!(get(&larder.url("/videos/c")).await.text(), "ab");
    let hit = get(&larder.url("/videos/c")).await;
    assert_eq!((hit.x_cache(), hit.text().as_str()), ("HIT", "ab"));
}

#[tokio::test(flavor = "multi_thread")]
async fn head_is_answered_from_the_get_entry() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let head = send(c.head(larder.url("/videos/5"))).await;
    assert_eq!(head.x_cache(), "MISS");
    assert!(head.body.is_empty());
    let get_resp = send(c.get(larder.url("/videos/5"))).await;
    assert_eq!(get_resp.x_cache(), "HIT");
    let head2 = send(c.head(larder.url("/videos/5"))).await;
    assert_eq!(head2.x_cache(), "HIT");
    assert_eq!(
        head2.header("content-length"),
        get_resp.body.len().to_string()
    );
    assert_eq!(origin.calls("/videos/5"), 1);
    assert_eq!(origin.seen()[0].method, Method::GET);
}

#[tokio::test(flavor = "multi_thread")]
async fn speaks_h2c_and_adds_proxy_headers() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let a = send(h2.get(larder.url("/health"))).await;
    let b = send(h2.get(larder.url("/health"))).await;
    assert_eq!((a.status, b.x_cache()), (200, "HIT"));
    let seen = &origin.seen()[0];
    assert_eq!(seen.headers["via"], "1.1 larder");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["host"], origin.addr.to_string());
    assert_eq!(a.header("via"), "1.1 larder");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_header_tags_entries_and_is_stripped() {
    let origin = Origin::start(|req| async move {
        let tag = format!("product-{}", &req.uri.path()[10..]);
        ok(
            &[
                JSON,
                ("surrogate-key", &format!("catalog {tag}")),
                ("cache-control", "max-age=60"),
            ],
            "{}",
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let a = get(&larder.url("/products/1")).await;
    assert_eq!(a.header("surrogate-key"), "");
    get(&larder.url("/products/2")).await;
    let r = send(
        admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["product-1"]}"#),
    )
    .await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    assert_eq!(get(&larder.url("/products/2")).await.x_cache(), "HIT");
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["catalog"]}"#))
            .await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (arrived2, release2) = (arrived.clone(), release.clone());
    let origin = Origin::start(move |_| {
        let (arrived, release) = (arrived2.clone(), release2.clone());
        async move {
            arrived.notify_one();
            let _ = release.acquire().await;
            ok(&[], "slow but complete")
        }
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let url = larder.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Once the request has reached the origin, stop larder; the origin answers only once
    // larder is shutting down.
    arrived.notified().await;
    larder.signal("TERM");
    let stopping = eventually(Duration::from_secs(5), || async {
        larder.logs().contains("shutting down")
    })
    .await;
    assert!(stopping, "no shutdown begun");
    release.add_permits(1);
    let mut larder = larder;
    let status = tokio::task::spawn_blocking(move || {
        let s = larder.wait();
        (s, larder)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    let got = in_flight.await.unwrap();
    assert_eq!(got.text(), "slow but complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ok(&[JSON], "{\"expensive\":true}")
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let url = larder.url("/videos/slow");
    let answers = futures_join_all((0..100).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { send(c.get(url)).await })
    }))
    .await;
    assert_eq!(origin.calls("/videos/slow"), 1);
    let collapsed = answers
        .iter()
        .filter(|g| g.header("cache-status").contains("collapsed"))
        .count();
    assert!(answers
        .iter()
        .all(|g| g.status == 200 && g.text() == "{\"expensive\":true}"));
    assert_eq!(answers.iter().filter(|g| g.x_cache() == "MISS").count(), 1);
    assert!(collapsed >= 90, "{collapsed} collapsed");
}

async fn futures_join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn uncacheable_answers_are_not_shared_with_waiters() {
    let origin = Origin::start(|req| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let user = req
            .headers
            .get("x-n")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        ok(
            &[JSON, ("cache-control", "no-store")],
            format!("{{\"for\":\"{user}\"}}"),
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let c = client();
    let answers = futures_join_all((0..10).map(|i| {
        let (c, url) = (c.clone(), larder.url("/videos/private"));
        tokio::spawn(async move { (i, send(c.get(url).header("x-n", i.to_string())).await) })
    }))
    .await;
    for (i, g) in &answers {
        assert_eq!(
            g.text(),
            format!("{{\"for\":\"{i}\"}}"),
            "each waiter went upstream with its own request"
        );
        assert!(g.header("cache-status").contains("detail=no-store"));
    }
    assert_eq!(origin.calls("/videos/private"), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_responses_are_not_stored_unless_allowed() {
    let origin =
        Origin::start(|_| async { ok(&[JSON, ("set-cookie", "session=s3cr3t")], "{}") }).await;
    let rules = r#"
[[rule]]
name = "plain"
path = "/plain"
ttl = "60s"

[[rule]]
name = "allowed"
path = "/allowed"
ttl = "60s"
allow_set_cookie = true
"#;
    let larder = Larder::start(&config(origin.addr, "", rules));
    let a = get(&larder.url("/plain")).await;
    assert_eq!(
        a.header("cache-status"),
        "larder; fwd=miss; detail=set-cookie"
    );
    assert_eq!(a.header("set-cookie"), "session=s3cr3t");
    assert_eq!(get(&larder.url("/plain")).await.x_cache(), "MISS");
    let first = get(&larder.url("/allowed")).await;
    assert_eq!(first.x_cache(), "MISS");
    let hit = get(&larder.url("/allowed")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(
        hit.header("set-cookie"),
        "",
        "a stored copy never hands out someone's cookie"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_body_requests_over_the_bound_bypass() {
    let origin =
        Origin::start(|req| async move { ok(&[JSON], format!("{{\"len\":{}}}", req.body.len())) })
            .await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        &format!("[cache]\nkey_body_max = \"1KiB\"\n{}", job_rules()),
    ));
    let c = client();
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(5000));
    let a = send(c.post(larder.url("/v1/summarize")).body(big.clone())).await;
    let b = send(c.post(larder.url("/v1/summarize")).body(big.clone())).await;
    assert_eq!(
        a.text(),
        format!("{{\"len\":{}}}", big.len()),
        "the whole body reached the origin"
    );
    assert_eq!(
        a.header("cache-status"),
        "larder; fwd=bypass; detail=body-too-large"
    );
    assert_eq!(b.x_cache(), "BYPASS");
    assert_eq!(origin.calls("/v1/summarize"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_stores_one_entry_per_variant() {
    let origin = Origin::start(|req| async move {
        let lang = req
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        ok(
            &[
                JSON,
                ("vary", "Accept-Language"),
                ("cache-control", "max-age=60"),
            ],
            format!("{{\"lang\":\"{lang}\"}}"),
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let ask = |lang: &'static str| send(c.get(larder.url("/page")).header("accept-language", lang));
    let en = ask("en").await;
    let fr = ask("fr").await;
    assert_eq!((en.x_cache(), fr.x_cache()), ("MISS", "MISS"));
    assert_eq!(fr.header("cache-status"), "larder; fwd=vary-miss; stored");
    let en2 = ask("EN").await;
    assert_eq!(en2.x_cache(), "HIT");
    assert_eq!(en2.text(), "{\"lang\":\"en\"}");
    assert_eq!(ask("fr").await.text(), "{\"lang\":\"fr\"}");
    assert_eq!(origin.calls("/page"), 2);
    // Invalidating the URL removes every variant.
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"urls":["/page"]}"#))
            .await;
    assert_eq!(r.text(), r#"{"invalidated":3}"#);
    assert_eq!(ask("en").await.x_cache(), "MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn escaped_paths_share_the_entry_and_reach_the_origin_normalised() {
    let origin = echo_origin().await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    assert_eq!(get(&larder.url("/videos/42")).await.x_cache(), "MISS");
    let escaped = get(&larder.url("/%76ideos/4%32")).await;
    assert_eq!(escaped.x_cache(), "HIT");
    assert_eq!(get(&larder.url("/%76ideos/43")).await.x_cache(), "MISS");
    let paths: Vec<String> = origin
        .seen()
        .iter()
        .map(|s| s.uri.path().to_string())
        .collect();
    assert_eq!(paths, vec!["/videos/42", "/videos/43"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn preserved_host_is_part_of_the_key() {
    let origin = Origin::start(|req| async move {
        let host = req.headers["host"].to_str().unwrap().to_string();
        ok(&[("cache-control", "max-age=60")], format!("site {host}"))
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "host = \"preserve\"", ""));
    let c = client();
    let a = send(c.get(larder.url("/")).header("host", "a.example")).await;
    let b = send(c.get(larder.url("/")).header("host", "b.example")).await;
    let a2 = send(c.get(larder.url("/")).header("host", "A.EXAMPLE")).await;
    assert_eq!(
        (a.text().as_str(), b.text().as_str()),
        ("site a.example", "site b.example")
    );
    assert_eq!(
        (a2.x_cache(), a2.text().as_str()),
        ("HIT", "site a.example")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uncacheable_answers_reach_identity_clients_decoded() {
    // An origin that compresses whenever it is allowed to.
    let origin = Origin::start(|req| async move {
        let gz = req
            .headers
            .get("accept-encoding")
            .is_some_and(|v| v.to_str().unwrap().contains("gzip"));
        let body = "private data ".repeat(200);
        if gz {
            let compressed = larder::compress::gzip_if_smaller(body.as_bytes()).unwrap();
            ok(
                &[("cache-control", "private"), ("content-encoding", "gzip")],
                compressed,
            )
        } else {
            ok(&[("cache-control", "private")], body)
        }
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", job_rules()));
    let plain = get(&larder.url("/videos/1")).await;
    assert_eq!(plain.header("content-encoding"), "");
    assert!(plain.text().starts_with("private data"));
    let gz = send(
        client()
            .get(larder.url("/videos/1"))
            .header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(gz.header("content-encoding"), "gzip");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_preconditions_are_evaluated_on_the_stored_entry() {
    let origin = Origin::start(|req| async move {
        if req.uri.path() == "/missing" {
            return response(
                404,
                &[("etag", "\"gone\""), ("cache-control", "max-age=60")],
                full("no"),
            );
        }
        ok(
            &[("etag", "\"v1\""), ("cache-control", "max-age=60")],
            "body",
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    assert_eq!(get(&larder.url("/doc")).await.status, 200);
    let inm = send(
        c.get(larder.url("/doc"))
            .header("if-none-match", "W/\"v1\""),
    )
    .await;
    assert_eq!((inm.status, inm.body.len()), (304, 0));
    assert_eq!(inm.header("etag"), "\"v1\"");
    let if_match = send(c.get(larder.url("/doc")).header("if-match", "\"v0\"")).await;
    assert_eq!(if_match.status, 412);
    let if_match_ok = send(c.get(larder.url("/doc")).header("if-match", "\"v1\"")).await;
    assert_eq!(if_match_ok.status, 200);
    // A conditional miss is filled unconditionally, then answered from the entry.
    let cond_miss = send(c.get(larder.url("/doc2")).header("if-none-match", "\"v1\"")).await;
    assert_eq!(cond_miss.status, 304);
    assert!(origin
        .seen()
        .iter()
        .all(|s| !s.headers.contains_key("if-none-match")));
    assert_eq!(get(&larder.url("/doc2")).await.x_cache(), "HIT");
    // Preconditions do not turn a stored 404 into a 304.
    get(&larder.url("/missing")).await;
    let missing = send(c.get(larder.url("/missing")).header("if-none-match", "*")).await;
    assert_eq!((missing.status, missing.x_cache()), (404, "HIT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_with_user_credentials_are_not_shared_without_a_rule() {
    let origin =
        Origin::start(|_| async { ok(&[("cache-control", "max-age=60")], "someone's page") }).await;
    let rules = "[users]\nsources = [\"header:Authorization\", \"cookie:session\"]\n";
    let larder = Larder::start(&config(origin.addr, "", rules));
    let c = client();
    let with_cookie = send(
        c.get(larder.url("/jobs/42/"))
            .header("cookie", "session=alice"),
    )
    .await;
    assert_eq!(
        with_cookie.header("cache-status"),
        "larder; fwd=miss; detail=authorization"
    );
    let anon = get(&larder.url("/jobs/42/")).await;
    assert_eq!(anon.x_cache(), "MISS", "nothing of alice's was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_is_weak_only_on_transformed_bytes() {
    let body = "compressible text ".repeat(200);
    let b2 = body.clone();
    let origin = Origin::start(move |req| {
        let body = b2.clone();
        async move {
            if req.uri.path() == "/gz" {
                let gz = larder::compress::gzip_if_smaller(body.as_bytes()).unwrap();
                return ok(
                    &[
                        ("etag", "\"g1\""),
                        ("content-encoding", "gzip"),
                        ("cache-control", "max-age=60"),
                    ],
                    gz,
                );
            }
            ok(&[("etag", "\"v1\""), ("cache-control", "max-age=60")], body)
        }
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let gz = |p: &str| send(c.get(larder.url(p)).header("accept-encoding", "gzip"));
    let plain = |p: &str| send(c.get(larder.url(p)));
    // larder compressed this one: the gzip bytes are its own, the decoded ones the origin's.
    assert_eq!(plain("/id").await.header("etag"), "\"v1\"");
    assert_eq!(gz("/id").await.header("etag"), "W/\"v1\"");
    assert_eq!(plain("/id").await.header("etag"), "\"v1\"");
    // The origin compressed this one: its gzip bytes keep the strong tag.
    assert_eq!(gz("/gz").await.header("etag"), "\"g1\"");
    let decoded = plain("/gz").await;
    assert_eq!((decoded.header("etag"), decoded.text()), ("W/\"g1\"", body));
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_purge_marks_stale_and_keeps_serving_on_error() {
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = failing.clone();
    let origin = Origin::start(move |_| {
        let failing = f2.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            if failing {
                return response(503, &[], full("down"));
            }
            ok(
                &[JSON, ("cache-control", "max-age=600, stale-if-error=600")],
                "{\"v\":1}",
            )
        }
    })
    .await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        "[[rule]]\nname = \"p\"\npath = \"/p/{id}\"\ntags = [\"p:{id}\"]\n",
    ));
    let c = client();
    get(&larder.url("/p/1")).await;
    assert_eq!(get(&larder.url("/p/1")).await.x_cache(), "HIT");
    let r = send(
        admin(&c, &larder, Method::POST, "/admin/invalidate")
            .body(r#"{"tags":["p:1"],"soft":true}"#),
    )
    .await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let during_outage = get(&larder.url("/p/1")).await;
    assert_eq!(
        (during_outage.status, during_outage.x_cache()),
        (200, "STALE")
    );
    assert!(
        during_outage
            .header("cache-status")
            .contains("fwd-status=503"),
        "{:?}",
        during_outage.headers
    );
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        get(&larder.url("/p/1")).await.header("cache-status"),
        "larder; fwd=stale; stored"
    );
    assert_eq!(get(&larder.url("/p/1")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_workers_sets_the_worker_threads() {
    // Counted before any request: blocking-pool threads (which share the name) start
    // only on demand.
    let workers = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "larder-worker")
            .count()
    };
    let origin = echo_origin().await;
    for n in [1, 3] {
        let larder = Larder::start(&config(origin.addr, &format!("workers = {n}"), ""));
        assert_eq!(workers(larder.pid()), n);
        assert_eq!(get(&larder.url("/any")).await.status, 200);
    }
}

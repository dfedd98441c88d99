//! HTTP caching conformance: one test per rule, each citing the section it checks
//! (RFC 9111 HTTP Caching, RFC 9110 HTTP Semantics, RFC 5861 stale content, RFC 9211
//! Cache-Status, RFC 9213 targeted cache control), against a real origin on loopback and
//! the real `larder` binary. No rule matches these requests unless a test adds one, so
//! larder acts as a plain shared cache.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::Method;

/// An origin answering every request with these headers and a body naming the call.
async fn fixed(headers: &'static [(&'static str, &'static str)]) -> Origin {
    let n = Arc::new(AtomicU64::new(0));
    Origin::start(move |_| {
        let call = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move { ok(headers, format!("call {call}")) }
    })
    .await
}

fn plain(origin: &Origin) -> Larder {
    Larder::start(&config(origin.addr, "", ""))
}

fn ttl_of(g: &Got) -> i64 {
    let cs = g.header("cache-status");
    let t = cs
        .split("ttl=")
        .nth(1)
        .unwrap_or_else(|| panic!("no ttl in {cs:?}"));
    t.split(';').next().unwrap().trim().parse().unwrap()
}

/// RFC 9111 §4.2.1: a shared cache uses `s-maxage` over `max-age` over `Expires − Date`.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_2_1_freshness_lifetime_order() {
    let origin = Origin::start(|req| async move {
        match req.uri.path() {
            "/s" => ok(&[("cache-control", "max-age=100, s-maxage=50")], "s"),
            "/m" => ok(
                &[
                    ("cache-control", "max-age=100"),
                    ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                ],
                "m",
            ),
            _ => {
                let date = httpdate::fmt_http_date(std::time::SystemTime::now());
                let exp =
                    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
                let mut r = ok(&[], "e");
                r.headers_mut().insert("date", date.parse().unwrap());
                r.headers_mut().insert("expires", exp.parse().unwrap());
                r
            }
        }
    })
    .await;
    let larder = plain(&origin);
    for (path, want) in [("/s", 50), ("/m", 100), ("/e", 30)] {
        get(&larder.url(path)).await;
        let hit = get(&larder.url(path)).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}");
        assert!(
            (want - 2..=want).contains(&ttl_of(&hit)),
            "{path}: {}",
            hit.header("cache-status")
        );
    }
}

/// RFC 9111 §4.2.3: the upstream's `Age` counts against freshness, and `Age` is sent.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_2_3_upstream_age_counts() {
    let origin = fixed(&[("cache-control", "max-age=100"), ("age", "40")]).await;
    let larder = plain(&origin);
    get(&larder.url("/a")).await;
    let hit = get(&larder.url("/a")).await;
    assert!(
        (58..=60).contains(&ttl_of(&hit)),
        "{}",
        hit.header("cache-status")
    );
    assert!(hit.header("age").parse::<u64>().unwrap() >= 40);
}

/// RFC 9111 §3 and §5.2.2.5: `no-store` is never stored.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_5_2_2_5_no_store_is_not_stored() {
    let origin = fixed(&[("cache-control", "no-store, max-age=60")]).await;
    let larder = plain(&origin);
    assert_eq!(
        get(&larder.url("/a")).await.header("cache-status"),
        "larder; fwd=miss; detail=no-store"
    );
    assert_eq!(get(&larder.url("/a")).await.text(), "call 2");
}

/// RFC 9111 §5.2.2.7: `private` is not stored by a shared cache.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_5_2_2_7_private_is_not_shared() {
    let origin = fixed(&[("cache-control", "private, max-age=60")]).await;
    let larder = plain(&origin);
    get(&larder.url("/a")).await;
    assert_eq!(get(&larder.url("/a")).await.text(), "call 2");
}

/// RFC 9111 §5.2.2.4: `no-cache` is stored but revalidated on every use.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_5_2_2_4_no_cache_revalidates_every_use() {
    let origin = Origin::start(|req| async move {
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            return response(
                304,
                &[("etag", "\"v1\""), ("cache-control", "no-cache")],
                full(""),
            );
        }
        ok(
            &[("etag", "\"v1\""), ("cache-control", "no-cache")],
            "the body",
        )
    })
    .await;
    let larder = plain(&origin);
    assert_eq!(
        get(&larder.url("/a")).await.header("cache-status"),
        "larder; fwd=miss; stored"
    );
    for _ in 0..2 {
        let again = get(&larder.url("/a")).await;
        assert_eq!(
            again.header("cache-status"),
            "larder; fwd=stale; fwd-status=304; stored"
        );
        assert_eq!(again.text(), "the body");
    }
    assert_eq!(origin.total(), 3);
    assert!(origin.seen()[1..]
        .iter()
        .all(|s| s.headers["if-none-match"] == "\"v1\""));
}

/// RFC 9111 §4.3.1, §4.3.3, §4.3.4; RFC 9211 §2.4: a stale entry with a validator is
/// revalidated; a `304` refreshes its freshness and headers and it is answered from the
/// cache with `fwd=stale; fwd-status=304`.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_3_4_304_refreshes_the_stored_entry() {
    let origin = Origin::start(|req| async move {
        if req.headers.get("if-none-match").is_some() {
            return response(
                304,
                &[
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=60"),
                    ("x-version", "2"),
                ],
                full(""),
            );
        }
        // Stale on arrival: max-age=1, already 1 s old.
        ok(
            &[
                ("etag", "\"v1\""),
                ("cache-control", "max-age=1"),
                ("age", "1"),
                ("x-version", "1"),
            ],
            "stored body",
        )
    })
    .await;
    let larder = plain(&origin);
    assert_eq!(get(&larder.url("/a")).await.x_cache(), "MISS");
    let revalidated = get(&larder.url("/a")).await;
    assert_eq!(
        revalidated.header("cache-status"),
        "larder; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.x_cache(), "STALE");
    assert_eq!(
        (revalidated.status, revalidated.text().as_str()),
        (200, "stored body")
    );
    assert_eq!(
        revalidated.header("x-version"),
        "2",
        "headers updated from the 304"
    );
    let hit = get(&larder.url("/a")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(ttl_of(&hit) > 50);
    assert_eq!(origin.total(), 2);
    // A 200 to the conditional request replaces the entry.
}

/// RFC 9111 §4.3.2; RFC 9110 §13.1.2, §8.8.3.2: a client's conditional request is answered
/// `304` from the cache when its validators match (weak comparison for If-None-Match).
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_3_2_client_conditionals_answered_from_cache() {
    let origin = fixed(&[
        ("etag", "\"v1\""),
        ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("cache-control", "max-age=60"),
    ])
    .await;
    let larder = plain(&origin);
    let c = client();
    get(&larder.url("/a")).await;
    let inm = send(
        c.get(larder.url("/a"))
            .header("if-none-match", "\"x\", W/\"v1\""),
    )
    .await;
    assert_eq!((inm.status, inm.x_cache()), (304, "HIT"));
    let other = send(c.get(larder.url("/a")).header("if-none-match", "\"v2\"")).await;
    assert_eq!(other.status, 200);
    let ims = send(
        c.get(larder.url("/a"))
            .header("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT"),
    )
    .await;
    assert_eq!(ims.status, 304);
    let older = send(
        c.get(larder.url("/a"))
            .header("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT"),
    )
    .await;
    assert_eq!(older.status, 200);
    assert_eq!(origin.total(), 1);
}

/// RFC 9111 §4.2.4: `must-revalidate` forbids serving stale, even when the upstream fails.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_2_4_must_revalidate_forbids_stale() {
    let n = Arc::new(AtomicU64::new(0));
    let origin = Origin::start(move |_| {
        let call = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if call == 0 {
                ok(
                    &[
                        (
                            "cache-control",
                            "max-age=1, must-revalidate, stale-if-error=600",
                        ),
                        ("age", "1"),
                        ("etag", "\"v\""),
                    ],
                    "old",
                )
            } else {
                response(503, &[], full("down"))
            }
        }
    })
    .await;
    let larder = plain(&origin);
    get(&larder.url("/a")).await;
    let after = get(&larder.url("/a")).await;
    assert_eq!(after.status, 503, "{}", after.header("cache-status"));
}

/// RFC 5861 §4: `stale-if-error` serves the stale entry when the upstream fails (5xx,
/// unreachable), with the failure in `fwd-status`.
#[tokio::test(flavor = "multi_thread")]
async fn rfc5861_4_stale_if_error() {
    let n = Arc::new(AtomicU64::new(0));
    let origin = Origin::start(move |_| {
        let call = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if call == 0 {
                ok(
                    &[
                        ("cache-control", "max-age=1, stale-if-error=600"),
                        ("age", "1"),
                    ],
                    "last good",
                )
            } else {
                response(500, &[], full("boom"))
            }
        }
    })
    .await;
    let larder = plain(&origin);
    get(&larder.url("/a")).await;
    let stale = get(&larder.url("/a")).await;
    assert_eq!((stale.status, stale.text().as_str()), (200, "last good"));
    assert_eq!(stale.x_cache(), "STALE");
    assert!(
        stale
            .header("cache-status")
            .starts_with("larder; fwd=stale; fwd-status=500; ttl="),
        "{}",
        stale.header("cache-status")
    );
    assert!(stale
        .header("cache-status")
        .ends_with("detail=stale-if-error"));
}

/// RFC 5861 §4 with a rule's `stale_if_error`, and the upstream down entirely (502).
#[tokio::test(flavor = "multi_thread")]
async fn rfc5861_4_rule_stale_if_error_when_upstream_is_gone() {
    let origin = fixed(&[("cache-control", "max-age=1"), ("age", "1")]).await;
    let addr = origin.addr;
    let rules = "[[rule]]\nname = \"r\"\npath = \"/{x}\"\nttl = \"1s\"\nstale_if_error = \"10m\"\n";
    let larder = Larder::start(&config(addr, "", rules));
    get(&larder.url("/a")).await;
    drop(origin);
    // The entry goes stale (its ttl is 1 s).
    larder.advance(Duration::from_millis(1100)).await;
    let stale = get(&larder.url("/a")).await;
    assert_eq!((stale.status, stale.text().as_str()), (200, "call 1"));
    assert!(
        stale.header("cache-status").contains("fwd-status=502"),
        "{}",
        stale.header("cache-status")
    );
}

/// RFC 5861 §3: `stale-while-revalidate` serves the stale entry at once and refreshes it
/// with one background request.
#[tokio::test(flavor = "multi_thread")]
async fn rfc5861_3_stale_while_revalidate() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let n = Arc::new(AtomicU64::new(0));
    let (a2, r2, n2) = (arrived.clone(), release.clone(), n.clone());
    let origin = Origin::start(move |_| {
        let call = n2.fetch_add(1, Ordering::SeqCst) + 1;
        let (arrived, release) = (a2.clone(), r2.clone());
        async move {
            if call > 1 {
                // The refresh is held until the stale answers are in.
                arrived.notify_one();
                let _ = release.acquire().await;
                return ok(&[("cache-control", "max-age=60")], format!("call {call}"));
            }
            ok(
                &[
                    ("cache-control", "max-age=1, stale-while-revalidate=60"),
                    ("age", "1"),
                ],
                format!("call {call}"),
            )
        }
    })
    .await;
    let larder = plain(&origin);
    get(&larder.url("/a")).await;
    // While the refresh is held upstream, five requests are answered (a larder that
    // waited for the refresh would never answer them).
    let answers: Vec<Got> = tokio::time::timeout(Duration::from_secs(10), async {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(get(&larder.url("/a")).await);
        }
        v
    })
    .await
    .expect("served without waiting for the refresh");
    for a in &answers {
        assert_eq!((a.text().as_str(), a.x_cache()), ("call 1", "STALE"));
        assert!(
            a.header("cache-status")
                .contains("detail=stale-while-revalidate"),
            "{}",
            a.header("cache-status")
        );
    }
    arrived.notified().await;
    release.add_permits(1);
    // The refresh lands; then the entry is fresh again.
    let url = larder.url("/a");
    let mut fresh = get(&url).await;
    let landed = eventually(Duration::from_secs(5), || {
        let url = url.clone();
        async move { get(&url).await.x_cache() == "HIT" }
    })
    .await;
    if landed {
        fresh = get(&url).await;
    }
    assert_eq!((fresh.x_cache(), fresh.text().as_str()), ("HIT", "call 2"));
    assert_eq!(
        origin.total(),
        2,
        "one background refresh for five stale answers"
    );
}

/// RFC 9111 §3.5: a request with `Authorization` is stored only when the response allows
/// it (`public`, `s-maxage`, `must-revalidate`).
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_3_5_authorization() {
    let origin = Origin::start(|req| async move {
        match req.uri.path() {
            "/public" => ok(&[("cache-control", "public, max-age=60")], "p"),
            "/smax" => ok(&[("cache-control", "s-maxage=60")], "s"),
            _ => ok(&[("cache-control", "max-age=60")], "m"),
        }
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    let auth = |p: &str| send(c.get(larder.url(p)).header("authorization", "Bearer a"));
    for p in ["/public", "/smax"] {
        auth(p).await;
        assert_eq!(auth(p).await.x_cache(), "HIT", "{p}");
    }
    assert_eq!(
        auth("/max").await.header("cache-status"),
        "larder; fwd=miss; detail=authorization"
    );
}

/// RFC 9111 §4.2.2: heuristic freshness only for heuristically cacheable statuses and only
/// when enabled.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_2_2_heuristic_freshness_when_enabled() {
    let origin = Origin::start(|req| async move {
        let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
        if req.uri.path() == "/teapot" {
            return response(418, &[("last-modified", lm)], full("t"));
        }
        ok(&[("last-modified", lm)], "h")
    })
    .await;
    let off = plain(&origin);
    get(&off.url("/a")).await;
    assert_ne!(
        get(&off.url("/a")).await.x_cache(),
        "HIT",
        "disabled by default"
    );
    let on = Larder::start(&config(
        origin.addr,
        "",
        "[cache]\nheuristic = true\nheuristic_max = \"1h\"\n",
    ));
    get(&on.url("/a")).await;
    let hit = get(&on.url("/a")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(
        (3590..=3600).contains(&ttl_of(&hit)),
        "capped at 1h: {}",
        hit.header("cache-status")
    );
    get(&on.url("/teapot")).await;
    assert_eq!(
        get(&on.url("/teapot")).await.x_cache(),
        "MISS",
        "418 is not heuristically cacheable"
    );
}

/// RFC 9213 §2.1: `CDN-Cache-Control` and `Larder-Cache-Control` override `Cache-Control`
/// (and `Expires`) for this cache, most specific first; an invalid value is ignored. Our
/// own field is removed; `CDN-Cache-Control` is passed on for the CDNs in front (§3).
#[tokio::test(flavor = "multi_thread")]
async fn rfc9213_2_1_targeted_fields_take_precedence_and_cdn_cache_control_is_forwarded() {
    let origin = Origin::start(|req| async move {
        match req.uri.path() {
            "/cdn" => ok(
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=30"),
                ],
                "cdn",
            ),
            "/ours" => ok(
                &[
                    ("cdn-cache-control", "max-age=30"),
                    ("larder-cache-control", "max-age=90"),
                ],
                "ours",
            ),
            "/invalid" => ok(
                &[
                    ("cache-control", "max-age=20"),
                    ("cdn-cache-control", "max-age=30, Invalid"),
                ],
                "i",
            ),
            _ => ok(
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store"),
                ],
                "off",
            ),
        }
    })
    .await;
    let larder = plain(&origin);
    for (path, ttl) in [("/cdn", 30), ("/ours", 90), ("/invalid", 20)] {
        let first = get(&larder.url(path)).await;
        assert!(first.header("cdn-cache-control").starts_with("max-age=30"));
        assert_eq!(first.header("larder-cache-control"), "");
        let hit = get(&larder.url(path)).await;
        assert!(hit.header("cdn-cache-control").starts_with("max-age=30"));
        assert_eq!(hit.header("larder-cache-control"), "");
        assert!(
            (ttl - 2..=ttl).contains(&ttl_of(&hit)),
            "{path}: {}",
            hit.header("cache-status")
        );
    }
    assert_eq!(
        get(&larder.url("/off")).await.header("cache-status"),
        "larder; fwd=miss; detail=no-store"
    );
    // Clients still see the Cache-Control meant for them.
    assert_eq!(
        get(&larder.url("/cdn")).await.header("cache-control"),
        "no-store"
    );
}

/// RFC 9111 §4.3.5: a `200` to a HEAD sent for a stale GET entry updates its headers and
/// freshness; one whose validator changed drops it. A HEAD with nothing stored is fetched as
/// GET and fills the entry.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_3_5_a_head_response_updates_the_stored_get() {
    let origin = Origin::start(|req| async move {
        let head = req.method == Method::HEAD;
        let etag = match (req.uri.path(), head) {
            ("/changed", true) => "\"v2\"",
            _ => "\"v1\"",
        };
        let (age, version) = if head {
            ("max-age=1000", "2")
        } else {
            ("max-age=1", "1")
        };
        let headers = [
            ("cache-control", age),
            ("etag", etag),
            ("x-version", version),
        ];
        ok(&headers, if head { "" } else { "body" })
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    for path in ["/same", "/changed"] {
        assert_eq!(send(c.head(larder.url(path))).await.x_cache(), "MISS");
    }
    assert!(
        origin.seen().iter().all(|s| s.method == Method::GET),
        "a cold HEAD fills the GET entry"
    );
    larder.advance(Duration::from_millis(1100)).await;
    for path in ["/same", "/changed"] {
        let head = send(c.head(larder.url(path))).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-version"), "2");
    }
    let heads = origin
        .seen()
        .iter()
        .filter(|s| s.method == Method::HEAD)
        .count();
    assert_eq!(heads, 2, "a stale entry is brought up to date with a HEAD");
    let same = get(&larder.url("/same")).await;
    assert_eq!((same.x_cache(), same.text().as_str()), ("HIT", "body"));
    assert_eq!(same.header("x-version"), "2");
    assert!(ttl_of(&same) > 990, "{}", same.header("cache-status"));
    let changed = get(&larder.url("/changed")).await;
    assert_eq!(
        changed.x_cache(),
        "MISS",
        "{}",
        changed.header("cache-status")
    );
    assert_eq!(origin.calls("/same"), 2);
}

/// RFC 9111 §3.3–3.4: a range of a representation too large to keep whole goes upstream as
/// that range; the `206` is kept as a part that answers later ranges it holds, and parts
/// that meet with the same strong `ETag` are combined.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_3_3_partial_content_is_kept_reused_and_combined() {
    const VIDEO: &[u8] = b"0123456789abcdefghijABCDEFGHIJklmnopqrstKLMNOPQRST!@#$%^&*()0123456789abcdefghijABCDEFGHIJklmnopqrst";
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let origin = Origin::start(move |req| {
        let range = req
            .headers
            .get("range")
            .map(|v| v.to_str().unwrap().to_string());
        seen.lock().unwrap().push(range.clone());
        async move {
            let common = [
                ("cache-control", "max-age=600"),
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
            ];
            let Some(range) = range else {
                return ok(&common, VIDEO);
            };
            let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            let content_range = format!("bytes {a}-{b}/{}", VIDEO.len());
            let mut headers = common.to_vec();
            headers.push(("content-range", &content_range));
            response(206, &headers, full(&VIDEO[a..=b]))
        }
    })
    .await;
    // 100 bytes do not fit in max_body; 60 do.
    let larder = Larder::start(&config(origin.addr, "max_body = \"64B\"", ""));
    let c = client();
    let ask = |r: &'static str| send(c.get(larder.url("/video")).header("range", r));
    let first = ask("bytes=0-29").await;
    assert_eq!(
        (first.status, first.header("content-range")),
        (206, "bytes 0-29/100")
    );
    assert_eq!(&first.body[..], &VIDEO[..30]);
    assert_eq!(first.header("cache-status"), "larder; fwd=miss; stored");
    let inside = ask("bytes=10-19").await;
    assert_eq!(
        (inside.status, inside.x_cache()),
        (206, "HIT"),
        "{}",
        inside.header("cache-status")
    );
    assert_eq!(inside.header("content-range"), "bytes 10-19/100");
    assert_eq!(&inside.body[..], &VIDEO[10..20]);
    let next = ask("bytes=30-59").await;
    assert_eq!(
        (next.status, next.x_cache(), &next.body[..]),
        (206, "MISS", &VIDEO[30..60])
    );
    // The two parts are one now: a range across both is a hit.
    let across = ask("bytes=20-49").await;
    assert_eq!(
        (across.status, across.x_cache()),
        (206, "HIT"),
        "{}",
        across.header("cache-status")
    );
    assert_eq!(&across.body[..], &VIDEO[20..50]);
    let asked: Vec<Option<String>> = ranges.lock().unwrap().clone();
    let want = [None, Some("bytes=0-29"), Some("bytes=30-59")].map(|r| r.map(String::from));
    assert_eq!(
        asked, want,
        "the whole once (too large), then only the ranges"
    );
}

/// A raw origin that answers each request with `interim` first, then waits for `go` before
/// its final answer (a hyper server cannot send a 1xx). Counts requests.
async fn interim_origin(
    interim: &'static str,
    go: Arc<tokio::sync::Notify>,
) -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (go, counted) = (go.clone(), counted.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(interim.as_bytes()).await;
                go.notified().await;
                let last = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfinal";
                let _ = s.write_all(last.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

/// RFC 9110 §15.2: interim responses (`103 Early Hints`, `102 Processing`) reach the
/// HTTP/1.1 client as they come, ahead of the final answer; they are never stored, so a
/// hit carries none.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9110_15_2_interim_responses_are_forwarded_never_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = Arc::new(tokio::sync::Notify::new());
    let hints = "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload; as=style\r\n\r\n";
    let (origin, count) = interim_origin(hints, go.clone()).await;
    let larder = Larder::start(&config(origin, "", ""));
    let mut client = tokio::net::TcpStream::connect(larder.proxy).await.unwrap();
    client
        .write_all(b"GET /page HTTP/1.1\r\nhost: example.test\r\n\r\n")
        .await
        .unwrap();
    // The hints arrive while the origin still holds its final answer back.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("rel=preload") {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut chunk))
            .await
            .expect("the interim responses arrive before the final one")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    let early = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        early.starts_with("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n"),
        "{early}"
    );
    go.notify_one();
    while !String::from_utf8_lossy(&seen).ends_with("final") {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("HTTP/1.1 200 OK"));
    let hit = raw(
        larder.proxy,
        b"GET /page HTTP/1.1\r\nhost: example.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        hit.starts_with("HTTP/1.1 200 OK"),
        "a hit has no interim responses: {hit}"
    );
    assert!(hit.contains("x-cache: HIT"), "{hit}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// RFC 9213 §2.1: a cache that uses `CDN-Cache-Control` implements its own `private`
/// (never stored, whatever `Cache-Control` allows) and `no-cache` (stored, validated on
/// every use); members are Structured Fields (`?0` is false, parameters are ignored).
#[tokio::test(flavor = "multi_thread")]
async fn rfc9213_2_1_cdn_cache_control_private_no_cache_and_structured_values() {
    let n = Arc::new(AtomicU64::new(0));
    let origin = Origin::start(move |req| {
        let call = n.fetch_add(1, Ordering::SeqCst);
        async move {
            let fresh = ("cache-control", "max-age=10000");
            match req.uri.path() {
                "/private" => ok(&[fresh, ("cdn-cache-control", "private")], "p"),
                "/no-cache" if req.headers.contains_key("if-none-match") => {
                    response(304, &[("etag", "\"v1\"")], full(""))
                }
                "/no-cache" => ok(
                    &[fresh, ("cdn-cache-control", "no-cache"), ("etag", "\"v1\"")],
                    format!("n{call}"),
                ),
                "/false" => ok(
                    &[
                        ("cache-control", "no-store"),
                        ("cdn-cache-control", "max-age=60, no-store=?0"),
                    ],
                    "f",
                ),
                _ => ok(
                    &[("cdn-cache-control", "max-age=60;source=origin")],
                    "params",
                ),
            }
        }
    })
    .await;
    let larder = plain(&origin);
    assert_eq!(
        get(&larder.url("/private")).await.header("cache-status"),
        "larder; fwd=miss; detail=private"
    );
    assert_eq!(get(&larder.url("/private")).await.x_cache(), "MISS");
    assert_eq!(get(&larder.url("/no-cache")).await.x_cache(), "MISS");
    let again = get(&larder.url("/no-cache")).await;
    assert_eq!(again.x_cache(), "STALE", "{}", again.header("cache-status"));
    assert!(again.header("cache-status").contains("fwd-status=304"));
    assert_eq!(origin.calls("/no-cache"), 2, "validated on every use");
    for path in ["/false", "/params"] {
        get(&larder.url(path)).await;
        let hit = get(&larder.url(path)).await;
        assert_eq!(
            hit.x_cache(),
            "HIT",
            "{path}: {}",
            hit.header("cache-status")
        );
        assert!((58..=60).contains(&ttl_of(&hit)), "{path}");
    }
}

/// RFC 9111 §4.1: `Vary` stores one response per variant; `Vary: *` is never served from
/// the cache; RFC 9211 `fwd=vary-miss`.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_1_vary() {
    let origin = Origin::start(|req| async move {
        if req.uri.path() == "/star" {
            return ok(&[("cache-control", "max-age=60"), ("vary", "*")], "star");
        }
        let fmt = req
            .headers
            .get("accept")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        ok(
            &[("cache-control", "max-age=60"), ("vary", "Accept")],
            format!("for {fmt}"),
        )
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    let ask = |a: &'static str| send(c.get(larder.url("/v")).header("accept", a));
    assert_eq!(ask("text/html").await.x_cache(), "MISS");
    let json = ask("application/json").await;
    assert_eq!(json.header("cache-status"), "larder; fwd=vary-miss; stored");
    let html = ask("Text/HTML").await;
    assert_eq!(
        (html.x_cache(), html.text().as_str()),
        ("HIT", "for text/html")
    );
    get(&larder.url("/star")).await;
    assert_eq!(
        get(&larder.url("/star")).await.header("cache-status"),
        "larder; fwd=miss; detail=vary-star"
    );
}

/// RFC 9111 §4.4: a successful unsafe request invalidates the target URI and the
/// same-origin `Location` / `Content-Location` URIs.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_4_4_unsafe_methods_invalidate() {
    let origin = Origin::start(|req| async move {
        if req.method == Method::POST {
            return response(
                201,
                &[
                    ("location", "/items/2"),
                    ("content-location", "http://elsewhere.example/items/3"),
                ],
                full(""),
            );
        }
        if req.method == Method::PUT {
            return response(500, &[], full("failed"));
        }
        ok(
            &[("cache-control", "max-age=60")],
            req.uri.path().to_string(),
        )
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    for p in ["/items/1", "/items/2", "/items/3"] {
        get(&larder.url(p)).await;
        assert_eq!(get(&larder.url(p)).await.x_cache(), "HIT");
    }
    // An error does not invalidate.
    assert_eq!(send(c.put(larder.url("/items/1"))).await.status, 500);
    assert_eq!(get(&larder.url("/items/1")).await.x_cache(), "HIT");
    assert_eq!(send(c.post(larder.url("/items/1"))).await.status, 201);
    assert_eq!(
        get(&larder.url("/items/1")).await.x_cache(),
        "MISS",
        "target URI"
    );
    assert_eq!(
        get(&larder.url("/items/2")).await.x_cache(),
        "MISS",
        "Location"
    );
    assert_eq!(
        get(&larder.url("/items/3")).await.x_cache(),
        "HIT",
        "another origin's Content-Location"
    );
    // Every method is forwarded, PUT included.
    assert!(origin.seen().iter().any(|s| s.method == Method::PUT));
}

/// RFC 9111 §5.2.1: request directives — `no-cache` goes upstream, `no-store` does not
/// store, `only-if-cached` answers 504 on a miss, `max-stale` and `min-fresh` are honoured.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_5_2_1_request_directives() {
    let origin = fixed(&[("cache-control", "max-age=60")]).await;
    let larder = plain(&origin);
    let c = client();
    let with = |path: &'static str, cc: &'static str| {
        send(c.get(larder.url(path)).header("cache-control", cc))
    };
    let oic = with("/never", "only-if-cached").await;
    assert_eq!(oic.status, 504);
    assert_eq!(origin.total(), 0);
    let ns = with("/ns", "no-store").await;
    assert_eq!(
        ns.header("cache-status"),
        "larder; fwd=miss; detail=request-no-store"
    );
    assert_eq!(get(&larder.url("/ns")).await.x_cache(), "MISS");
    get(&larder.url("/a")).await;
    assert_eq!(
        with("/a", "no-cache").await.header("cache-status"),
        "larder; fwd=request; stored"
    );
    assert_eq!(with("/a", "min-fresh=3600").await.x_cache(), "MISS");
    assert_eq!(with("/a", "max-age=3600").await.x_cache(), "HIT");
    let pragma = send(c.get(larder.url("/a")).header("pragma", "no-cache")).await;
    assert_eq!(pragma.header("cache-status"), "larder; fwd=request; stored");

    // max-stale lets a stale entry through.
    let stale_origin = fixed(&[("cache-control", "max-age=1"), ("age", "2")]).await;
    let larder2 = Larder::start(&config(
        stale_origin.addr,
        "",
        "[[rule]]\npath = \"/{x}\"\nttl = \"1s\"\n",
    ));
    get(&larder2.url("/s")).await;
    larder2.advance(Duration::from_millis(1100)).await;
    let c2 = client();
    let ms = send(
        c2.get(larder2.url("/s"))
            .header("cache-control", "max-stale=60"),
    )
    .await;
    assert_eq!(
        (ms.x_cache(), ms.text().as_str()),
        ("STALE", "call 1"),
        "{}",
        ms.header("cache-status")
    );
    assert!(ms.header("cache-status").ends_with("detail=max-stale"));
}

/// `honor_client_no_cache = false`: clients' reload storms do not reach the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn client_no_cache_can_be_ignored() {
    let origin = fixed(&[("cache-control", "max-age=60")]).await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        "[cache]\nhonor_client_no_cache = false\n",
    ));
    get(&larder.url("/a")).await;
    for cc in ["no-cache", "max-age=0"] {
        let r = send(client().get(larder.url("/a")).header("cache-control", cc)).await;
        assert_eq!(r.x_cache(), "HIT", "{cc}");
    }
    assert_eq!(origin.total(), 1);
}

/// RFC 9110 §14.2, §15.3.7, §15.5.17: a single range of a cached response is answered
/// `206` from the cache; an unsatisfiable one `416`; several ranges pass through.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9110_14_ranges_from_the_cache() {
    let origin = Origin::start(|req| async move {
        if req.headers.contains_key("range") {
            return response(206, &[("content-range", "bytes 0-0/26")], full("a"));
        }
        ok(
            &[("cache-control", "max-age=60"), ("etag", "\"abc\"")],
            "abcdefghijklmnopqrstuvwxyz",
        )
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    let range = |r: &'static str| send(c.get(larder.url("/r")).header("range", r));
    let first = range("bytes=0-3").await;
    assert_eq!((first.status, first.text().as_str()), (206, "abcd"));
    assert_eq!(first.header("content-range"), "bytes 0-3/26");
    assert!(
        !origin.seen()[0].headers.contains_key("range"),
        "the fill fetched the whole"
    );
    let suffix = range("bytes=-2").await;
    assert_eq!(
        (suffix.status, suffix.text().as_str(), suffix.x_cache()),
        (206, "yz", "HIT")
    );
    let open = range("bytes=24-").await;
    assert_eq!(open.text(), "yz");
    let unsat = range("bytes=30-40").await;
    assert_eq!(
        (unsat.status, unsat.header("content-range")),
        (416, "bytes */26")
    );
    let if_range_old = send(
        c.get(larder.url("/r"))
            .header("range", "bytes=0-1")
            .header("if-range", "\"old\""),
    )
    .await;
    assert_eq!(if_range_old.status, 200);
    let multi = range("bytes=0-1,4-5").await;
    assert_eq!((multi.status, multi.x_cache()), (206, "BYPASS"));
    assert_eq!(origin.total(), 2);
}

/// RFC 9111 §3.1, §4, §5.1; RFC 9211 §2: hop-by-hop and `Connection`-named fields are not
/// stored; `Age` is recomputed on every hit; `Date` is kept; the `Cache-Status` of caches in
/// front is preserved and larder's appended.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9111_3_1_header_hygiene() {
    let origin = Origin::start(|_| async {
        let mut r = ok(
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("cache-status", "upstream-cache; hit"),
            ],
            "a",
        );
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(2));
        r.headers_mut().insert("date", date.parse().unwrap());
        r
    })
    .await;
    let larder = plain(&origin);
    let first = get(&larder.url("/a")).await;
    let hit = get(&larder.url("/a")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-hop"), "");
    assert_eq!(hit.header("keep-alive"), "");
    assert_eq!(
        hit.header("date"),
        first.header("date"),
        "the origin's Date is kept"
    );
    assert!(
        hit.header("age").parse::<u64>().unwrap() >= 2,
        "apparent age from Date counts"
    );
    let statuses: Vec<&str> = hit
        .headers
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"upstream-cache; hit"));
    assert!(statuses.last().unwrap().starts_with("larder; hit"));
    larder.advance(Duration::from_millis(1100)).await;
    assert!(
        get(&larder.url("/a"))
            .await
            .header("age")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

/// Key safety: crafted paths, queries and headers cannot land on another entry's key.
#[tokio::test(flavor = "multi_thread")]
async fn crafted_requests_do_not_collide() {
    let origin = Origin::start(|req| async move {
        let q = req.uri.query().unwrap_or("").to_string();
        ok(
            &[("cache-control", "max-age=60"), ("vary", "X-A, X-B")],
            format!("{}?{q}", req.uri.path()),
        )
    })
    .await;
    let larder = plain(&origin);
    let c = client();
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/a?b=c".into(), vec![]),
        ("/a%3Fb=c".into(), vec![]),
        ("/a?b=c&d".into(), vec![]),
        ("/a?b=c%26d".into(), vec![]),
        ("/a?b".into(), vec![]),
        ("/a?b=".into(), vec![]),
        ("/a".into(), vec![("x-a", "1,2")]),
        ("/a".into(), vec![("x-a", "1"), ("x-b", "2")]),
        ("/a".into(), vec![("x-a", "2,1")]),
    ];
    let mut bodies = Vec::new();
    for (path, headers) in &cases {
        let mut rb = c.get(larder.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let g = send(rb).await;
        assert_ne!(
            g.x_cache(),
            "HIT",
            "{path} {headers:?} hit another request's entry"
        );
        bodies.push(g.text());
    }
    assert_eq!(
        origin.total() as usize,
        cases.len(),
        "every crafted request went upstream"
    );
}

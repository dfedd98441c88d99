//! larder tried as an attacker would: the real binary between raw sockets, h2c clients and
//! real origins (one of them reading HTTP/1.1 the careless way many origins do). Every test
//! here failed on the code before the hardening issue and must keep passing.

mod common;

use std::time::Duration;

use common::*;

/// Long enough for any answer on loopback; a test that waits this long has failed.
const WAIT: Duration = Duration::from_secs(10);

fn key_body_config(origin: &Origin) -> String {
    config(
        origin.addr,
        "",
        r#"
[[rule]]
name = "summaries"
path = "/v1/summarize"
methods = ["POST"]
key_body = true
ttl = "72h"
"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_json_is_forwarded_uncached_and_larder_lives() {
    let origin = Origin::start(|s| async move {
        ok(
            &[("cache-control", "max-age=60")],
            format!("{} bytes", s.body.len()),
        )
    })
    .await;
    let larder = Larder::start(&key_body_config(&origin));
    let c = client();
    for depth in [10_000usize, 50_000] {
        let body = "[".repeat(depth) + &"]".repeat(depth);
        let g = send(
            c.post(larder.url("/v1/summarize"))
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await;
        assert_eq!(g.status, 200, "{depth}: {}", g.text());
        assert_eq!(g.text(), format!("{} bytes", body.len()));
        assert_eq!(
            g.header("cache-status"),
            "larder; fwd=bypass; detail=body-too-deep"
        );
    }
    // Still alive, and still caching bodies it can read.
    let small = || {
        c.post(larder.url("/v1/summarize"))
            .header("content-type", "application/json")
            .body(r#"{"b":[1,2],"a":1}"#)
    };
    assert_eq!(send(small()).await.x_cache(), "MISS");
    assert_eq!(send(small()).await.x_cache(), "HIT");
    assert_eq!(origin.calls("/v1/summarize"), 3);
}

fn naive_config(origin: &NaiveOrigin, proxy_extra: &str) -> String {
    config(
        origin.addr,
        proxy_extra,
        r#"
[[rule]]
name = "jobs"
path = "/jobs/{id}"
ttl = "60s"

[[rule]]
name = "short"
path = "/short/{id}"
ttl = "60s"
"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_body_never_reaches_the_origin_as_another_request() {
    let origin = NaiveOrigin::start().await;
    let larder = Larder::start(&naive_config(&origin, ""));
    // Mallory's GET carries a second request as its body.
    let smuggled = "GET /jobs/slowT HTTP/1.1\r\nhost: x\r\n\r\n";
    let body = format!("{smuggled:<64}");
    let attack = format!(
        "GET /short/T HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(larder.proxy, attack.as_bytes(), WAIT).await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    // The same over a chunked body.
    let chunked = format!(
        "GET /short/U HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    assert_eq!(
        raw_status(&raw(larder.proxy, chunked.as_bytes(), WAIT).await),
        400
    );
    // Alice's next request gets her own job, from the origin, and then from the cache.
    for expect in ["MISS", "HIT"] {
        let g = get(&larder.url("/jobs/vT")).await;
        assert_eq!(g.x_cache(), expect);
        assert!(g.text().starts_with("/jobs/vT "), "{}", g.text());
    }
    let seen = origin.seen();
    assert!(
        seen.iter()
            .all(|s| !s.starts_with("/jobs/slowT") && !s.starts_with("/short/")),
        "the origin was asked {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_body_over_h2c_is_refused_and_never_stored() {
    let origin = NaiveOrigin::start().await;
    let larder = Larder::start(&naive_config(&origin, ""));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let fat = send(
        h2.get(larder.url("/jobs/fat"))
            .body("GET /jobs/other HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await;
    assert_eq!(fat.status, 400);
    // The fat GET filled nothing: the plain GET is a miss.
    let plain = send(h2.get(larder.url("/jobs/fat"))).await;
    assert_eq!(plain.x_cache(), "MISS");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("/jobs/fat "), "{seen:?}");
    assert_eq!(origin.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_preserved_host_the_target_authority_is_keyed_and_forwarded() {
    let origin = NaiveOrigin::start().await;
    let larder = Larder::start(&naive_config(&origin, "host = \"preserve\""));
    let attack =
        "GET http://victim.test/jobs/x HTTP/1.1\r\nhost: evil.test\r\nconnection: close\r\n\r\n";
    let answer = raw(larder.proxy, attack.as_bytes(), WAIT).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.ends_with("/jobs/x victim.test"), "{answer}");
    assert_eq!(origin.seen(), vec!["/jobs/x victim.test".to_string()]);
    // victim.test's next client is served what victim.test answered.
    let normal = "GET /jobs/x HTTP/1.1\r\nhost: victim.test\r\nconnection: close\r\n\r\n";
    let answer = raw(larder.proxy, normal.as_bytes(), WAIT).await;
    assert!(answer.contains("x-cache: HIT"), "{answer}");
    assert!(answer.ends_with("/jobs/x victim.test"), "{answer}");
    // evil.test has its own entry, filled by its own request.
    let evil = "GET /jobs/x HTTP/1.1\r\nhost: evil.test\r\nconnection: close\r\n\r\n";
    let answer = raw(larder.proxy, evil.as_bytes(), WAIT).await;
    assert!(answer.contains("x-cache: MISS"), "{answer}");
    assert!(answer.ends_with("/jobs/x evil.test"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_host_disagreeing_with_authority_is_refused() {
    let origin = NaiveOrigin::start().await;
    let larder = Larder::start(&naive_config(&origin, "host = \"preserve\""));
    let tcp = tokio::net::TcpStream::connect(larder.proxy)
        .await
        .expect("connect");
    let (mut h2, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("http://victim.test/jobs/y")
        .header("host", "evil.test")
        .body(())
        .expect("request");
    let (resp, _) = h2.send_request(req, true).expect("send");
    let resp = resp.await.expect("response");
    assert_eq!(resp.status(), 400);
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

fn identity_config(origin: &Origin) -> String {
    config(
        origin.addr,
        "",
        r#"
[users]
sources = ["header:X-User-Id", "cookie:session"]

[[rule]]
name = "static"
path = "/u/{rest*}"
ttl = "60s"
"#,
    )
}

/// An origin that resolves paths loosely and answers per user, without marking the answer
/// private (the mistake cache deception feeds on).
async fn loose_origin() -> Origin {
    Origin::start(|s| async move {
        let user = s
            .headers
            .get("x-user-id")
            .or(s.headers.get("cookie"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_string();
        let public = s.uri.path().ends_with("/public.css");
        let cc = if public {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        ok(&[("cache-control", cc)], format!("secret of {user}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_with_an_identity_are_never_shared_by_a_plain_rule() {
    let origin = loose_origin().await;
    let larder = Larder::start(&identity_config(&origin));
    let c = client();
    for path in [
        "/u/jobs/1/x.css",
        "/u/static/..%2fjobs/1",
        "/u/static/..;/jobs/1",
        "/u/static/%2e%2e/jobs/1",
    ] {
        for (name, value) in [("x-user-id", "alice"), ("cookie", "session=alice")] {
            let alice = send(c.get(larder.url(path)).header(name, value)).await;
            assert!(alice.text().contains("alice"), "{path}");
            assert_eq!(
                alice.header("cache-status"),
                "larder; fwd=miss; detail=authorization",
                "{path} {name}"
            );
        }
        let bob = send(c.get(larder.url(path)).header("x-user-id", "bob")).await;
        assert_eq!(bob.text(), "secret of bob", "{path}");
        let anonymous = get(&larder.url(path)).await;
        assert_eq!(anonymous.text(), "secret of anonymous", "{path}");
    }
    // What the origin marks public is shared, identity or not.
    let first = send(
        c.get(larder.url("/u/public.css"))
            .header("x-user-id", "alice"),
    )
    .await;
    assert_eq!(first.header("cache-status"), "larder; fwd=miss; stored");
    assert_eq!(get(&larder.url("/u/public.css")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_half_sent_connections_are_closed() {
    let origin = Origin::start(|_| async { ok(&[], "ok") }).await;
    let larder = Larder::start(&config(
        origin.addr,
        "header_read_timeout = \"1s\"\nidle_timeout = \"2s\"",
        "",
    ));
    // Nothing sent, half a head, and a keep-alive connection after its response: each is
    // closed by larder well before WAIT.
    for bytes in [
        &b""[..],
        b"GET / HTTP/1.1\r\nHost",
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    ] {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(larder.proxy)
            .await
            .expect("connect");
        s.write_all(bytes).await.expect("write");
        assert!(
            closed_within(&mut s, WAIT).await,
            "connection after {bytes:?} was not closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_beyond_the_descriptor_limit_do_not_lock_clients_out() {
    let origin = Origin::start(|_| async { ok(&[], "ok") }).await;
    let larder = Larder::start_with_nofile(&config(origin.addr, "", ""), 256);
    // More silent connections than the process may have descriptors.
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(larder.proxy).await {
            silent.push(s);
        }
    }
    // A real client still gets its answer (the idlest silent connections make room).
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("client");
    for _ in 0..5 {
        let g = send(c.get(larder.url("/x"))).await;
        assert_eq!(g.status, 200);
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_and_rewriting_fields_from_clients_are_dropped() {
    let origin = Origin::start(|s| async move {
        let h = |n: &str| {
            s.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        ok(
            &[("cache-control", "max-age=60")],
            format!(
                "host={} proto={}",
                h("x-forwarded-host"),
                h("x-forwarded-proto")
            ),
        )
    })
    .await;
    let sent = [
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "gopher"),
        ("forwarded", "host=evil.test"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
    ];
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let mut req = c.get(larder.url("/page"));
    for (n, v) in sent {
        req = req.header(n, v);
    }
    let g = send(req).await;
    assert_eq!(g.text(), "host=- proto=http");
    let seen = &origin.seen()[0];
    for (n, _) in sent {
        let got = seen.headers.get(n).map(|v| v.to_str().unwrap_or(""));
        match n {
            "x-forwarded-for" => assert_eq!(got, Some("127.0.0.1")),
            "x-forwarded-proto" => assert_eq!(got, Some("http")),
            _ => assert_eq!(got, None, "{n} reached the origin"),
        }
    }
    // From a configured proxy they pass, and answers are keyed by them.
    let larder = Larder::start(&config(
        origin.addr,
        "trusted_proxies = [\"127.0.0.1\"]",
        "",
    ));
    let a = send(
        c.get(larder.url("/page2"))
            .header("x-forwarded-host", "a.test"),
    )
    .await;
    assert_eq!(a.text(), "host=a.test proto=http");
    let b = send(
        c.get(larder.url("/page2"))
            .header("x-forwarded-host", "b.test"),
    )
    .await;
    assert_eq!(b.text(), "host=b.test proto=http");
    assert_eq!(b.x_cache(), "MISS");
    let a2 = send(
        c.get(larder.url("/page2"))
            .header("x-forwarded-host", "a.test"),
    )
    .await;
    assert_eq!(
        (a2.x_cache(), a2.text().as_str()),
        ("HIT", "host=a.test proto=http")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_named_by_connection_do_not_pick_the_variant() {
    let origin = Origin::start(|s| async move {
        let lang = s
            .headers
            .get("x-lang")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("null")
            .to_string();
        ok(
            &[("cache-control", "max-age=60"), ("vary", "X-Lang")],
            format!("lang: {lang}"),
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let hop = send(
        c.get(larder.url("/greeting"))
            .header("x-lang", "fr")
            .header("connection", "X-Lang"),
    )
    .await;
    assert_eq!(hop.text(), "lang: null");
    let french = send(c.get(larder.url("/greeting")).header("x-lang", "fr")).await;
    assert_eq!(french.text(), "lang: fr");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_bytes_key_variants_and_targets_keep_their_escapes() {
    let origin = Origin::start(|s| async move {
        let tag = s
            .headers
            .get("x-tag")
            .map(|v| format!("{:?}", v.as_bytes()))
            .unwrap_or_default();
        ok(
            &[("cache-control", "max-age=60"), ("vary", "X-Tag")],
            format!("{} {tag}", s.uri),
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let mut bodies = Vec::new();
    for value in [&b"\xff"[..], b"\xfe", "\u{fffd}".as_bytes()] {
        let v = http::HeaderValue::from_bytes(value).expect("value");
        let g = send(c.get(larder.url("/tagged")).header("x-tag", v)).await;
        assert_eq!(g.x_cache(), "MISS", "{value:?}");
        bodies.push(g.text());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 3);
    let g = get(&larder.url("/%%361dmin")).await;
    assert!(g.text().starts_with("/%2561dmin "), "{}", g.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_4xx() {
    let origin = Origin::start(|_| async { ok(&[], "ok") }).await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let cases: Vec<(String, u16)> = vec![
        (
            "POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\nnot hex\r\n0\r\n\r\n".into(),
            400,
        ),
        ("GET /p HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n".into(), 400),
        ("GET /p HTTP/1.1\r\nconnection: close\r\n\r\n".into(), 400),
        (
            format!("GET /p HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(200_000)),
            431,
        ),
        (
            format!(
                "GET /p HTTP/1.1\r\nhost: x\r\n{}\r\n",
                (0..200).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
            ),
            431,
        ),
        ("CONNECT x:443 HTTP/1.1\r\nhost: x:443\r\n\r\n".into(), 405),
        ("TRACE / HTTP/1.1\r\nhost: x\r\n\r\n".into(), 405),
    ];
    for (request, status) in cases {
        let answer = raw(larder.proxy, request.as_bytes(), WAIT).await;
        assert_eq!(
            raw_status(&answer),
            status,
            "{}",
            &request[..request.len().min(60)]
        );
    }
    // An HTTP/1.0 request needs no Host.
    let answer = raw(larder.proxy, b"GET /p HTTP/1.0\r\n\r\n", WAIT).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    // The origin saw only that one.
    assert_eq!(origin.total(), 1);
}

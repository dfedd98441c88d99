//! A request gets only what it would have been served alone: the real binary between real
//! clients and origins, tried as an attacker would. Every test here failed on the build
//! before the third hardening round (`LARDER_TEST_BIN=<old larder> cargo test --test
//! sharing` shows it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use tokio::sync::watch;

/// Long enough for any answer on loopback; a test that waits this long has failed.
const WAIT: Duration = Duration::from_secs(10);

fn stream_config(origin: &Origin) -> String {
    config(
        origin.addr,
        "",
        r#"
[[rule]]
name = "streams"
path = "/v1/stream/{id}"
ttl = "1h"
allow_set_cookie = true
"#,
    )
}

/// An origin that streams an answer naming the request's `header` value: the first event
/// at once, the rest once `go` turns true. The answer varies on `header`.
async fn varying_origin(header: &'static str, go: watch::Receiver<bool>) -> Origin {
    Origin::start(move |seen| {
        let mut go = go.clone();
        async move {
            let who = seen
                .headers
                .get(header)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nobody")
                .to_string();
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Bytes::from(format!("data: for {who}\n\n"))))
                    .await;
                let _ = go.wait_for(|g| *g).await;
                for i in 0..3 {
                    let _ = tx
                        .send(Ok(Bytes::from(format!("data: {who} {i}\n\n"))))
                        .await;
                }
            });
            response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("cache-control", "public, max-age=60"),
                    ("vary", header),
                ],
                body,
            )
        }
    })
    .await
}

/// The whole answer each value of `header` should get.
fn answer_for(who: &str) -> String {
    let mut s = format!("data: for {who}\n\n");
    for i in 0..3 {
        s.push_str(&format!("data: {who} {i}\n\n"));
    }
    s
}

/// Starts one request per value of `header` on `path` while the first one's fill streams,
/// and checks that each got the answer for its own value.
async fn one_fill_many_variants(
    larder: &Larder,
    (header, path): (&str, &str),
    values: &[String],
    go: &watch::Sender<bool>,
) {
    let c = client();
    let req = |v: &str| c.get(larder.url(path)).header(header, v);
    // The first request's fill is streaming (and open to followers) once its head is here.
    let first = req(&values[0]).send().await.expect("first");
    let mut rest = Vec::new();
    for v in &values[1..] {
        rest.push(tokio::spawn(req(v).send()));
    }
    let mut heads = Vec::new();
    for r in rest {
        heads.push(r.await.expect("task").expect("head"));
    }
    let mut all = vec![first];
    all.extend(heads);
    go.send_replace(true);
    for (resp, v) in all.into_iter().zip(values) {
        let status = resp
            .headers()
            .get("cache-status")
            .and_then(|s| s.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = tokio::time::timeout(WAIT, resp.bytes())
            .await
            .expect("body in time")
            .expect("body");
        assert_eq!(
            String::from_utf8_lossy(&body),
            answer_for(v),
            "{header}: {v} was served another variant ({status})"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_streaming_fill_is_followed_only_by_requests_of_its_variant() {
    for header in ["authorization", "x-lang"] {
        let (go, gone) = watch::channel(false);
        let origin = varying_origin(header, gone).await;
        let larder = Larder::start(&stream_config(&origin));
        let at = (header, "/v1/stream/a");
        // A first miss: nothing is stored for the URL yet. Twelve values, twelve answers.
        let values: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
        one_fill_many_variants(&larder, at, &values, &go).await;
        // A variant miss: the URL's Vary marker is stored, a new variant streams, and
        // another new one arrives meanwhile.
        go.send_replace(false);
        let values: Vec<String> = ["alice", "bob", "alice"].map(String::from).into();
        one_fill_many_variants(&larder, at, &values, &go).await;
        // Each variant is stored and served as its own.
        for v in ["user-3", "bob"] {
            let g = send(client().get(larder.url("/v1/stream/a")).header(header, v)).await;
            assert_eq!(g.x_cache(), "HIT", "{header}: {v}");
            assert_eq!(g.text(), answer_for(v));
        }
    }
}

fn override_config(origin: &Origin) -> String {
    config(
        origin.addr,
        "",
        r#"
[[rule]]
name = "profile"
path = "/profile/{id}"
ttl = "1h"
shared = true
allow_set_cookie = true
"#,
    )
}

const QUALIFIED: &str = r#"max-age=0, no-cache="x-csrf-token", private="x-account""#;

#[tokio::test(flavor = "multi_thread")]
async fn fields_a_qualified_directive_names_are_never_replayed_under_an_overriding_rule() {
    let origin = Origin::start(|seen| async move {
        let who = seen
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // /profile/1: no-cache names the fields; /profile/2: private does too.
        let cc = if seen.uri.path().ends_with('1') {
            r#"max-age=0, no-cache="x-csrf-token, x-account, set-cookie""#
        } else {
            QUALIFIED
        };
        ok(
            &[
                ("cache-control", cc),
                ("x-csrf-token", &format!("csrf-of-{who}")),
                ("x-account", &format!("account-of-{who}")),
                ("set-cookie", &format!("session={who}")),
                ("x-shared", "kept"),
            ],
            "profile page",
        )
    })
    .await;
    let larder = Larder::start(&override_config(&origin));
    let c = client();
    for path in ["/profile/1", "/profile/2"] {
        let as_user = |who: &str| {
            c.get(larder.url(path))
                .header("authorization", format!("Bearer {who}"))
        };
        let alice = send(as_user("alice")).await;
        assert_eq!(alice.x_cache(), "MISS");
        // Alice's own fields reach Alice.
        assert_eq!(alice.header("x-account"), "account-of-Bearer alice");
        assert_eq!(alice.header("set-cookie"), "session=Bearer alice");
        let bob = send(as_user("bob")).await;
        assert_eq!(
            bob.x_cache(),
            "HIT",
            "{path}: the rule stores it for everyone"
        );
        assert_eq!(bob.header("x-shared"), "kept");
        for field in ["x-csrf-token", "x-account", "set-cookie"] {
            assert!(
                bob.headers.get(field).is_none(),
                "{path}: bob got alice's {field}: {:?}",
                bob.headers.get(field)
            );
        }
    }
    assert_eq!(origin.total(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_streaming_follower_never_gets_the_fields_a_qualified_directive_names() {
    let (go_tx, go) = watch::channel(false);
    let origin = Origin::start(move |_| {
        let mut go = go.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from_static(b"data: 1\n\n"))).await;
                let _ = go.wait_for(|g| *g).await;
                let _ = tx.send(Ok(Bytes::from_static(b"data: 2\n\n"))).await;
            });
            response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("cache-control", QUALIFIED),
                    ("x-account", "account-of-alice"),
                    ("set-cookie", "session=alice"),
                ],
                body,
            )
        }
    })
    .await;
    let larder = Larder::start(&stream_config(&origin));
    let c = client();
    let alice = c
        .get(larder.url("/v1/stream/q"))
        .send()
        .await
        .expect("alice");
    assert_eq!(alice.headers()["x-account"], "account-of-alice");
    let bob = c.get(larder.url("/v1/stream/q")).send().await.expect("bob");
    go_tx.send_replace(true);
    let status = bob.headers()["cache-status"].to_str().unwrap().to_string();
    assert!(status.contains("collapsed"), "{status}");
    for field in ["x-account", "set-cookie"] {
        assert!(bob.headers().get(field).is_none(), "bob got {field}");
    }
    assert_eq!(bob.bytes().await.unwrap(), "data: 1\n\ndata: 2\n\n");
    assert_eq!(alice.bytes().await.unwrap(), "data: 1\n\ndata: 2\n\n");
}

/// An origin that reads queries the careless way: `;` separates parameters too, and the
/// last of two with one name wins.
async fn careless_query_origin() -> Origin {
    Origin::start(|seen| async move {
        let mut id = "none".to_string();
        for part in seen.uri.query().unwrap_or("").split(['&', ';']) {
            if let Some(v) = part.strip_prefix("id=") {
                id = v.to_string();
            }
        }
        ok(
            &[("cache-control", "max-age=300")],
            format!("item {id} (asked {})", seen.uri),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_origin_sees_the_query_as_it_was_keyed() {
    let origin = careless_query_origin().await;
    let larder = Larder::start(&config(
        origin.addr,
        "",
        r#"
[cache]
ignore_params = ["utm_*"]

[[rule]]
name = "items"
path = "/items"
ttl = "5m"

[[rule]]
name = "search"
path = "/search"
ttl = "5m"
key_query = ["id"]
"#,
    ));
    let c = client();
    // Mallory hides a second id in a parameter the key ignores.
    for (path, attack) in [
        ("/items", "/items?id=1&utm_source=x;id=666"),
        ("/search", "/search?id=1&page=2;id=666"),
    ] {
        let m = send(c.get(larder.url(attack))).await;
        assert!(m.text().starts_with("item 1 "), "{attack}: {}", m.text());
        let victim = send(c.get(larder.url(&format!("{path}?id=1")))).await;
        assert_eq!(victim.x_cache(), "HIT", "{path}");
        assert!(
            victim.text().starts_with("item 1 "),
            "{path}: {}",
            victim.text()
        );
    }
    // Parameters the key keeps reach the origin as they came.
    let g = send(c.get(larder.url("/items?b=2&id=3"))).await;
    assert_eq!(g.text(), "item 3 (asked /items?b=2&id=3)");
}

/// A raw origin that answers with both `Transfer-Encoding: chunked` and a smaller
/// `Content-Length`: the first chunk at once, the rest when `go` is notified (so the
/// answer streams).
async fn double_framed_origin(
    cache_control: &'static str,
    go: Arc<tokio::sync::Notify>,
) -> (std::net::SocketAddr, Arc<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let alive = Arc::new(());
    let weak = Arc::downgrade(&alive);
    tokio::spawn(async move {
        while weak.upgrade().is_some() {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let go = go.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let start = format!(
                    "HTTP/1.1 200 OK\r\ncache-control: {cache_control}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n"
                );
                let _ = s.write_all(start.as_bytes()).await;
                go.notified().await;
                let _ = s.write_all(b"4\r\nWXYZ\r\n0\r\n\r\n").await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    (addr, alive)
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_encoding_wins_over_content_length_on_the_way_out() {
    for cc in ["max-age=60", "no-store"] {
        let go = Arc::new(tokio::sync::Notify::new());
        let (addr, _alive) = double_framed_origin(cc, go.clone()).await;
        let larder = Larder::start(&config(
            addr,
            "",
            "[[rule]]\nname = \"all\"\npath = \"/{rest*}\"\n",
        ));
        // The head is here while the body is still coming; then the rest.
        let resp = client().get(larder.url("/export")).send().await.unwrap();
        go.notify_one();
        let g = Got {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap(),
        };
        assert_eq!(g.text(), "0123456789abcdefWXYZ", "{cc}: a cut body");
        let length = g.header("content-length");
        assert!(length.is_empty() || length == "20", "{cc}: {length}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coding_the_client_never_accepted_is_not_served_from_the_cache() {
    let origin = Origin::start(|_| async move {
        // An upstream that ignores the Accept-Encoding it was sent.
        ok(
            &[("cache-control", "max-age=60"), ("content-encoding", "br")],
            Bytes::from_static(b"\x0b\x02\x80brotli"),
        )
    })
    .await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    let first = send(c.get(larder.url("/asset")).header("accept-encoding", "br")).await;
    assert_eq!(first.header("content-encoding"), "br");
    let plain = send(
        c.get(larder.url("/asset"))
            .header("accept-encoding", "identity"),
    )
    .await;
    assert_ne!(
        plain.x_cache(),
        "HIT",
        "a br body served to an identity client"
    );
    assert_eq!(
        plain.header("cache-status"),
        "larder; fwd=miss; detail=coding"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_that_matches_everything_needs_the_purge_confirmation() {
    let origin = Origin::start(|_| async { ok(&[("cache-control", "max-age=60")], "x") }).await;
    let larder = Larder::start(&config(origin.addr, "", ""));
    let c = client();
    assert_eq!(get(&larder.url("/a")).await.x_cache(), "MISS");
    for prefix in ["", "/"] {
        let r = send(
            admin(&c, &larder, Method::POST, "/admin/invalidate")
                .body(serde_json::json!({ "prefix": prefix }).to_string()),
        )
        .await;
        assert_eq!(r.status, 400, "{prefix:?}: {}", r.text());
        assert!(r.text().contains("PURGE_ALL"), "{}", r.text());
        assert_eq!(get(&larder.url("/a")).await.x_cache(), "HIT");
    }
    let r = send(
        admin(&c, &larder, Method::POST, "/admin/invalidate")
            .body(serde_json::json!({ "prefix": "", "confirm": "PURGE_ALL" }).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&larder.url("/a")).await.x_cache(), "MISS");
}

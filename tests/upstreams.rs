//! Upstreams as real APIs have them: HTTPS origins on loopback with a CA made at test time,
//! an origin no CA vouches for, HTTP/2 over TLS, two upstreams routed by rules, and
//! connections kept alive (handshakes counted by the origin).

mod common;

use common::*;

async fn tls_origin(ca: &TestCa, alpn: &[&[u8]]) -> Origin {
    Origin::start_tls(
        ca.server_config(&["localhost", "127.0.0.1"], alpn),
        |s| async move {
            ok(
                &[("cache-control", "max-age=60")],
                format!(
                    "{:?} {}",
                    s.version,
                    s.uri.path_and_query().map_or("/", |p| p.as_str())
                ),
            )
        },
    )
    .await
}

fn https_config(origin: &Origin, ca: &TestCa, rest: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"https://localhost:{}\"\nca_file = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{rest}\n",
        origin.addr.port(),
        ca.pem_path.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_is_cached_and_its_connections_kept_alive() {
    let ca = TestCa::new();
    let origin = tls_origin(&ca, &[b"http/1.1"]).await;
    let larder = Larder::start(&https_config(&origin, &ca, ""));
    let first = get(&larder.url("/items/1")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "HTTP/1.1 /items/1");
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(get(&larder.url("/items/1")).await.x_cache(), "HIT");
    // 100 sequential misses reuse a handful of connections.
    let c = client();
    for i in 0..100 {
        let g = send(c.get(larder.url(&format!("/misses/{i}")))).await;
        assert_eq!(g.x_cache(), "MISS");
    }
    assert_eq!(origin.total(), 101);
    assert!(
        origin.handshakes() <= 4,
        "{} handshakes for 101 requests",
        origin.handshakes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_a_502_saying_so_and_nothing_is_fetched() {
    let ca = TestCa::new();
    let impostor = Origin::start_tls(self_signed_config(&["localhost"]), |_| async {
        ok(&[("cache-control", "max-age=60")], "secret")
    })
    .await;
    let larder = Larder::start(&https_config(&impostor, &ca, ""));
    let g = get(&larder.url("/items/1")).await;
    assert_eq!(g.status, 502);
    assert_eq!(
        g.text(),
        "upstream certificate not trusted\n",
        "{}",
        larder.logs()
    );
    assert_eq!(impostor.total(), 0, "a request reached the untrusted peer");
    let metrics = get(&larder.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(r#"larder_upstream_errors_total{upstream="default",kind="tls"} 1"#),
        "{metrics}"
    );
    // A certificate for another name is refused the same way.
    let elsewhere = Origin::start_tls(
        ca.server_config(&["elsewhere.test"], &[b"http/1.1"]),
        |_| async { ok(&[], "secret") },
    )
    .await;
    let larder = Larder::start(&https_config(&elsewhere, &ca, ""));
    let g = get(&larder.url("/items/1")).await;
    assert_eq!(g.status, 502);
    assert_eq!(g.text(), "upstream certificate does not match its name\n");
    assert_eq!(elsewhere.total(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_used_when_the_upstream_picks_it() {
    let ca = TestCa::new();
    let origin = tls_origin(&ca, &[b"h2", b"http/1.1"]).await;
    let larder = Larder::start(&https_config(&origin, &ca, ""));
    let g = get(&larder.url("/h2")).await;
    assert_eq!(g.text(), "HTTP/2.0 /h2");
    assert_eq!(get(&larder.url("/h2")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_route_to_named_upstreams_and_prefixes_are_mounted() {
    let ca = TestCa::new();
    let llm = tls_origin(&ca, &[b"http/1.1"]).await;
    let videos = Origin::start(|s| async move {
        ok(
            &[("cache-control", "max-age=60")],
            format!("videos {}", s.uri),
        )
    })
    .await;
    let config = format!(
        r#"[proxy]
listen = "127.0.0.1:0"
upstream = "http://{videos}"

[admin]
listen = "127.0.0.1:0"

[[upstream]]
name = "llm"
url = "https://localhost:{llm_port}/v1"
ca_file = "{ca}"
strip_prefix = "/llm"

[[rule]]
name = "summaries"
path = "/llm/{{rest*}}"
upstream = "llm"
ttl = "1h"

[[rule]]
name = "videos"
path = "/videos/{{id}}"
ttl = "1m"
"#,
        videos = videos.addr,
        llm_port = llm.addr.port(),
        ca = ca.pem_path.display(),
    );
    let larder = Larder::start(&config);
    let g = get(&larder.url("/llm/summarize?model=small")).await;
    assert_eq!(g.text(), "HTTP/1.1 /v1/summarize?model=small");
    let g = get(&larder.url("/videos/7")).await;
    assert_eq!(g.text(), "videos /videos/7");
    assert_eq!(
        get(&larder.url("/llm/summarize?model=small"))
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!((llm.total(), videos.total()), (1, 1));
    // `larder check` says which upstream each rule uses.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["check", "--config"])
        .arg(&larder.config_path)
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("summaries") && text.contains("upstream=llm (https://localhost:"),
        "{text}"
    );
    assert!(
        text.contains("upstream=default (http://127.0.0.1:"),
        "{text}"
    );
}

#[test]
fn an_unknown_upstream_is_a_config_error_with_its_place() {
    let path = write_config(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\n\n[[rule]]\npath = \"/a\"\nupstream = \"lmm\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:6:12: rule[0].upstream: unknown upstream \"lmm\"; the upstreams are: default",
        path.display()
    );
    assert!(err.starts_with(&want), "{err}");
}

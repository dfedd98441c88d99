//! The edge: HTTPS on the proxy and admin listeners (a chain from a CA made at test time,
//! h2 and http/1.1 by ALPN, TLS 1.2 and later, resumption, plaintext refused, a renewed
//! certificate picked up by reload), checked with curl, `larder ctl` and a rustls client.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_rustls::client::TlsStream;

/// Runs curl against larder's TLS port as `localhost`; stdout (with `-w`), or the exit code.
fn curl(addr: SocketAddr, ca: &Path, args: &[&str], path: &str) -> Result<String, i32> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .args(args)
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .output()
        .expect("curl runs");
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        code => Err(code.unwrap_or(-1)),
    }
}

fn tls_config(origin: SocketAddr, cert: &Path, key: &Path) -> String {
    let pair = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display(),
        key.display()
    );
    config(
        origin,
        &pair,
        "[[rule]]\npath = \"/v/{id}\"\nttl = \"60s\"\n",
    )
    .replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{pair}"),
    )
}

async fn counting_origin() -> Origin {
    Origin::start(|_req| async move { ok(&[("cache-control", "max-age=60")], "fresh from origin") })
        .await
}

/// A TLS connection to larder as `localhost`, with `config` (whose session cache lets a
/// second connection resume).
async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// One HTTP/1.1 GET on an open connection; the status.
async fn get_on(stream: &mut TlsStream<tokio::net::TcpStream>, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains("fresh from origin") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn leaf_of(stream: &TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates");
    certs[0].as_ref().to_vec()
}

fn remove(paths: &[&PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_listener_speaks_h2_and_http11_over_tls12_and_later_with_a_chain() {
    let ca = TestCa::new();
    let (cert, key) = ca.chain_files(&["localhost"]);
    let origin = counting_origin().await;
    let larder = Larder::start(&tls_config(origin.addr, &cert, &key));

    let h2 = curl(
        larder.proxy,
        &ca.pem_path,
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ],
        "/v/1",
    );
    assert_eq!(h2.as_deref(), Ok("2 200"));
    let h1 = curl(
        larder.proxy,
        &ca.pem_path,
        &["--http1.1", "-D", "-", "-o", "/dev/null"],
        "/v/1",
    )
    .expect("curl");
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert!(
        h1.to_ascii_lowercase()
            .contains("cache-status: larder; hit"),
        "the second is a hit: {h1}"
    );
    assert_eq!(origin.calls("/v/1"), 1);
    assert_eq!(origin.seen()[0].headers["x-forwarded-proto"], "https");
    // TLS 1.1 is refused; TLS 1.2 alone is served.
    assert!(curl(
        larder.proxy,
        &ca.pem_path,
        &["--tlsv1.1", "--tls-max", "1.1"],
        "/v/1"
    )
    .is_err());
    let tls12 = curl(
        larder.proxy,
        &ca.pem_path,
        &[
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ],
        "/v/1",
    );
    assert_eq!(tls12.as_deref(), Ok("200"));

    // Plaintext on the TLS port: a 400 that says what to do, then the connection closes.
    let plain = raw(
        larder.proxy,
        b"GET /v/1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&plain), 400, "{plain}");
    assert!(plain.contains("HTTPS"), "{plain}");

    // The admin API speaks TLS too; `larder ctl --cacert` trusts the test CA.
    let out = Command::new(larder_bin())
        .args([
            "ctl",
            "--admin",
            &format!("https://localhost:{}", larder.admin.port()),
        ])
        .arg("--cacert")
        .arg(&ca.pem_path)
        .arg("stats")
        .env("LARDER_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("ctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"hits\""));
    remove(&[&cert, &key]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_gives_new_connections_the_renewed_certificate_and_sessions_resume() {
    let ca = TestCa::new();
    let (cert, key) = ca.chain_files(&["localhost"]);
    let origin = counting_origin().await;
    let larder = Larder::start(&tls_config(origin.addr, &cert, &key));
    let client = Arc::new(ca.client_config(&[b"http/1.1"]));

    let mut before = connect(larder.proxy, client.clone()).await;
    assert!(get_on(&mut before, "/v/1").await.contains("200"));
    let old_leaf = leaf_of(&before);
    // A second connection with the same client resumes the session.
    let resumed = connect(larder.proxy, client.clone()).await;
    assert_eq!(
        resumed.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    // The certificate is renewed in place and the config reloaded.
    let (new_cert, new_key) = ca.chain_files(&["localhost"]);
    std::fs::copy(&new_cert, &cert).expect("renew cert");
    std::fs::copy(&new_key, &key).expect("renew key");
    let (status, body) = admin_call(&larder, &ca, "POST", "/admin/reload");
    assert_eq!(status, 200, "{body}");

    let fresh = Arc::new(ca.client_config(&[b"http/1.1"]));
    let mut after = connect(larder.proxy, fresh).await;
    assert_ne!(
        leaf_of(&after),
        old_leaf,
        "a new connection gets the renewed certificate"
    );
    assert!(get_on(&mut after, "/v/1").await.contains("200"));
    // The connection opened before the reload keeps its certificate and keeps serving.
    assert!(get_on(&mut before, "/v/1").await.contains("200"));
    assert_eq!(leaf_of(&before), old_leaf);

    // A pair that no longer loads refuses the reload; the running certificate stays.
    std::fs::write(&key, "not a key").expect("break key");
    let (status, body) = admin_call(&larder, &ca, "POST", "/admin/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tls_cert"), "{body}");
    let fresh = Arc::new(ca.client_config(&[b"http/1.1"]));
    let mut still = connect(larder.proxy, fresh).await;
    assert!(get_on(&mut still, "/v/1").await.contains("200"));
    remove(&[&cert, &key, &new_cert, &new_key]);
}

/// An admin call to the TLS admin listener, made with curl: the status and the body.
fn admin_call(larder: &Larder, ca: &TestCa, method: &str, path: &str) -> (u16, String) {
    let auth = format!("authorization: Bearer {TOKEN}");
    let args = ["-X", method, "-H", &auth, "-w", "\n%{http_code}"];
    let out = curl(larder.admin, &ca.pem_path, &args, path).expect("curl");
    let (body, status) = out.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_string())
}

#[test]
fn a_listener_pair_must_be_whole_and_load() {
    let ca = TestCa::new();
    let (cert, key) = ca.chain_files(&["localhost"]);
    let check = |text: &str| {
        let path = write_config(text);
        let out = Command::new(larder_bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("check runs");
        let _ = std::fs::remove_file(&path);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = check(&format!(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\ntls_cert = {:?}\n",
        cert.display()
    ));
    assert!(!ok);
    assert!(
        err.contains(":3:12: proxy.tls_key: tls_cert is set, so tls_key must be too"),
        "{err}"
    );
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let (ok, err) = check(&format!(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\n\n[admin]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display(),
        key.display()
    ));
    assert!(!ok);
    assert!(err.contains(":5:12: admin.tls_cert:"), "{err}");
    remove(&[&cert, &key]);
}

/// RFC 9110 §15.2 over TLS: an upstream's 103 reaches an HTTPS (HTTP/1.1) client ahead of
/// the final answer, which the origin holds back until the client has read the hints.
#[tokio::test(flavor = "multi_thread")]
async fn rfc9110_15_2_interim_responses_reach_https_clients_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    let release = go.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let hints = "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n";
        let _ = s.write_all(hints.as_bytes()).await;
        release.notified().await;
        let last = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 17\r\n\r\nfresh from origin";
        let _ = s.write_all(last.as_bytes()).await;
    });
    let ca = TestCa::new();
    let (cert, key) = ca.chain_files(&["localhost"]);
    let larder = Larder::start(&tls_config(origin_addr, &cert, &key));
    let mut tls = connect(larder.proxy, Arc::new(ca.client_config(&[b"http/1.1"]))).await;
    tls.write_all(b"GET /v/1 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("rel=preload") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .expect("the hints arrive before the final answer")
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 103 Early Hints\r\n"));
    go.notify_one();
    while !String::from_utf8_lossy(&seen).ends_with("fresh from origin") {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let (hints, last) = text.split_once("\r\n\r\n").expect("two heads");
    assert!(hints.contains("link: </app.css>"), "{text}");
    assert!(last.starts_with("HTTP/1.1 200 OK"), "{text}");
    remove(&[&cert, &key]);
}

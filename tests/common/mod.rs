//! Test harness: real origins on loopback ports, the real `larder` binary as a child
//! process, a real HTTP client. Everything started here is stopped on drop.
#![allow(dead_code)]

pub mod metered;
pub mod provider;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

pub type OriginBody = BoxBody<Bytes, Cut>;

/// A request as the origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

/// A response body of these bytes.
pub fn full(b: impl Into<Bytes>) -> OriginBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A chunked body (no Content-Length) of these chunks.
pub fn chunked(chunks: Vec<Bytes>) -> OriginBody {
    Chunks(chunks.into()).map_err(|e| match e {}).boxed()
}

/// A body of unknown length, one frame per chunk.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A response with a status, headers and body.
pub fn response(status: u16, headers: &[(&str, &str)], body: OriginBody) -> Response<OriginBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("valid test response")
}

/// A 200 with these headers and body.
pub fn ok(headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<OriginBody> {
    response(200, headers, full(body))
}

/// An origin server on a loopback port that counts what it is asked.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    total: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
}

impl Origin {
    /// Starts an origin answering with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Origin
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        Origin::serve(listener, handler)
    }

    /// Starts an origin on a given listener.
    pub fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F) -> Origin
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        Origin::serve_with(listener, None, handler)
    }

    /// Starts an HTTPS origin (HTTP/2 when the client asks for it through ALPN).
    pub async fn start_tls<F, Fut>(config: rustls::ServerConfig, handler: F) -> Origin
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Origin::serve_with(listener, Some(acceptor), handler)
    }

    fn serve_with<F, Fut>(
        listener: tokio::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: F,
    ) -> Origin
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let total = Arc::new(AtomicU64::new(0));
        let handshakes = Arc::new(AtomicU64::new(0));
        let handler = Arc::new(handler);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (seen2, total2, handshakes2) = (seen.clone(), total.clone(), handshakes.clone());
        tokio::spawn(async move {
            // Connections live in this set: stopping the origin drops them all, so a
            // stopped origin really is gone, keep-alive connections included.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (handler, seen, total) = (handler.clone(), seen2.clone(), total2.clone());
                        let (tls, handshakes) = (tls.clone(), handshakes2.clone());
                        connections.spawn(async move {
                            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                                let (handler, seen, total) = (handler.clone(), seen.clone(), total.clone());
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                    let s = Seen { method: parts.method, uri: parts.uri, headers: parts.headers, body, version: parts.version };
                                    total.fetch_add(1, Ordering::SeqCst);
                                    seen.lock().unwrap().push(s.clone());
                                    Ok::<_, Infallible>(handler(s).await)
                                }
                            });
                            let builder = auto::Builder::new(TokioExecutor::new());
                            match tls {
                                None => {
                                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                }
                                Some(acceptor) => {
                                    let Ok(stream) = acceptor.accept(stream).await else { return };
                                    handshakes.fetch_add(1, Ordering::SeqCst);
                                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                }
                            }
                        });
                    }
                    _ = &mut stopped => return,
                }
            }
        });
        Origin {
            addr,
            seen,
            total,
            handshakes,
            stop: Some(stop),
        }
    }

    /// TLS handshakes completed (an HTTPS origin).
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// Requests seen for `path` (any query).
    pub fn calls(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.uri.path() == path)
            .count()
    }

    /// Every request seen.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A config for a larder in front of `upstream`, on ephemeral ports.
pub fn config(upstream: SocketAddr, proxy_extra: &str, rest: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n{proxy_extra}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{rest}\n"
    )
}

pub const TOKEN: &str = "test-admin-token";

static CONFIG_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes a config file for a test and returns its path.
pub fn write_config(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!(
        "larder-{}.toml",
        CONFIG_SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).expect("write config");
    path
}

/// The binary under test: this build's, or `$LARDER_TEST_BIN` (to show that a test fails
/// on an earlier build).
pub fn larder_bin() -> String {
    std::env::var("LARDER_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_larder").to_string())
}

/// The `larder` binary under test, running `serve`.
pub struct Larder {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub config_path: PathBuf,
}

impl Larder {
    /// Starts `larder serve` with the admin token set.
    pub fn start(config: &str) -> Larder {
        Larder::start_with_env(config, &[("LARDER_ADMIN_TOKEN", TOKEN)])
    }

    /// Starts `larder serve` with these environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Larder {
        Larder::spawn(config, env, None)
    }

    fn spawn(config: &str, env: &[(&str, &str)], limit: Option<&str>) -> Larder {
        let config_path = write_config(config);
        let mut cmd = match limit {
            None => Command::new(larder_bin()),
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{limit} && exec \"$0\" \"$@\""))
                    .arg(larder_bin());
                c
            }
        };
        cmd.arg("serve").arg("--config").arg(&config_path);
        cmd.env_remove("LARDER_ADMIN_TOKEN")
            .env_remove("LARDER_USER_SECRET")
            .env_remove("LARDER_CONFIG");
        cmd.env("RUST_LOG", "info,larder=debug");
        // Tests move the clock (`Larder::advance`) instead of sleeping.
        cmd.env("LARDER_MANUAL_CLOCK", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn larder");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let logs2 = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("larder listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                logs2.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "larder did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!("{name}=")).expect("address in log") + name.len() + 1;
            let rest = &line[start..];
            let end = rest.find(' ').unwrap_or(rest.len());
            rest[..end].parse().expect("socket address")
        };
        Larder {
            proxy: field("proxy"),
            admin: field("admin"),
            child,
            logs,
            config_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// Moves larder's clock forward by `by` (its manual clock, through the admin API): what
    /// was fresh goes stale, ages grow, windows pass — without waiting.
    pub async fn advance(&self, by: Duration) {
        let r = send(
            client()
                .post(self.admin_url("/admin/clock"))
                .bearer_auth(TOKEN)
                .body(format!("{{\"advance_ms\":{}}}", by.as_millis())),
        )
        .await;
        assert_eq!(r.status, 200, "advancing the clock: {}", r.text());
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for larder")
    }

    /// Kills the process outright (SIGKILL: no shutdown, no flush) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGHUP.
    /// Sends a signal (`TERM`, `HUP`) without waiting.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for larder")
    }

    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Larder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that neither follows redirects nor decompresses, and uses no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(32)
        .build()
        .expect("client")
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    Got {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    send(client().get(url)).await
}

pub fn admin(
    c: &reqwest::Client,
    larder: &Larder,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    c.request(method, larder.admin_url(path)).bearer_auth(TOKEN)
}

/// Counts by path, for assertions about upstream traffic.
pub fn by_path(seen: &[Seen]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in seen {
        *m.entry(s.uri.path().to_string()).or_insert(0) += 1;
    }
    m
}

/// Waits until `check` holds (polled every few milliseconds, at most `within`); whether
/// it did. For what larder does off the request path (a background refresh landing, a
/// log line written, a tier coming back).
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `redis-server` process on a loopback port, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// Starts a fresh Redis on a free port.
    pub fn start() -> Redis {
        Redis::start_with(free_port(), &[])
    }

    /// Starts Redis on `port` with extra arguments; waits until it accepts connections.
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        let dir = std::env::temp_dir().join(format!("larder-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = Redis {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("redis-server did not start");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it accepts nothing and answers nothing, like a hung
    /// Redis.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-STOP")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs `redis-cli` against it and returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three Redis masters in a cluster (no replicas), created with `redis-cli --cluster`.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                let port = free_port();
                Redis::start_with(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // The slots are assigned; wait until every node agrees the cluster is up.
        for _ in 0..200 {
            if nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
            {
                return RedisCluster { nodes };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the redis cluster did not come up");
    }

    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", n.port));
        }
        url
    }
}

impl Larder {
    /// Starts `larder serve` with the admin token set and at most `nofile` open files (as
    /// `ulimit -n` would set), to see what running out of descriptors does.
    pub fn start_with_nofile(config: &str, nofile: u64) -> Larder {
        Larder::spawn(
            config,
            &[("LARDER_ADMIN_TOKEN", TOKEN)],
            Some(&format!("ulimit -n {nofile}")),
        )
    }

    /// Starts `larder serve` under a shell `ulimit` (e.g. `ulimit -f 64`: no file may
    /// grow past 64 blocks, as on a full disk).
    pub fn start_with_ulimit(config: &str, limit: &str) -> Larder {
        Larder::spawn(config, &[("LARDER_ADMIN_TOKEN", TOKEN)], Some(limit))
    }
}

/// Sends raw bytes on a fresh connection and reads one response (to its
/// `Content-Length`), or until the server closes the connection, or `wait` passes; returns
/// what came back.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|n| n.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|n| out.len() >= end + 4 + n) {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from a connection until the server closes it; false if `wait` passed first.
pub async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An origin that reads HTTP/1.1 the careless way many do: it parses each request head,
/// ignores any body (even with a Content-Length), and answers every request on a
/// keep-alive connection in turn with `Cache-Control: max-age=60` and the request's path
/// and Host as the body. What it was asked is recorded as "PATH HOST" lines.
pub struct NaiveOrigin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NaiveOrigin {
    pub async fn start() -> NaiveOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                            let host = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("host:")
                                        .map(|h| h.trim().to_string())
                                })
                                .unwrap_or_default();
                            seen.lock().unwrap().push(format!("{path} {host}"));
                            let body = format!("{path} {host}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncache-control: max-age=60\r\ncontent-type: text/plain\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        NaiveOrigin { addr, seen, task }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for NaiveOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A directory for one test (a disk tier's, say), empty at the start and removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("larder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority made at test time, and server certificates it signs.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate as a PEM file (for `ca_file`), removed on drop.
    pub pem_path: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "larder test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA");
        let pem_path = write_config(&issuer.pem()).with_extension("pem");
        std::fs::write(&pem_path, issuer.pem()).expect("write CA");
        TestCa { issuer, pem_path }
    }

    /// A server config with a certificate for `names`, offering `alpn`.
    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> rustls::ServerConfig {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        server_config(cert.der().clone(), key, alpn)
    }

    /// PEM files for a listener: a chain (a leaf for `names`, then an intermediate this CA
    /// signed) and the leaf's key. The caller removes them.
    pub fn chain_files(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "larder test intermediate");
        let middle_key = rcgen::KeyPair::generate().expect("key");
        let middle =
            rcgen::CertifiedIssuer::signed_by(params, middle_key, &self.issuer).expect("sign");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let leaf = params.signed_by(&key, &middle).expect("sign");
        let base = write_config("");
        let (cert_path, key_path) = (base.with_extension("crt"), base.with_extension("key"));
        let _ = std::fs::remove_file(&base);
        std::fs::write(&cert_path, format!("{}{}", leaf.pem(), middle.pem())).expect("cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("key");
        (cert_path, key_path)
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("root");
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_path);
    }
}

/// A server config with a self-signed certificate no CA vouches for.
pub fn self_signed_config(names: &[&str]) -> rustls::ServerConfig {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    server_config(cert.der().clone(), key, &[b"http/1.1"])
}

fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rcgen::KeyPair,
    alpn: &[&[u8]],
) -> rustls::ServerConfig {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A response body fed through a channel: `Ok` chunks are sent as they come, an `Err`
/// fails the body (the origin cuts it).
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Result<Bytes, String>>, OriginBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    (tx, ChannelBody(rx).boxed())
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, String>>);

#[derive(Debug)]
pub struct Cut(String);

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cut {}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Cut>>> {
        // An error makes the origin's server abort the response mid-body, as a crashed or
        // cut upstream does.
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data).map_err(Cut)))
    }
}

/// The resident and peak resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

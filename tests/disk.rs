//! The disk tier against the real binary: answered misses survive `kill -9` and are served
//! after a restart without the upstream, invalidations and purges survive it too, expiry and
//! `Age` carry on across it, damaged files are misses (never a wrong answer or a 5xx), a full
//! disk disables the tier while the proxy keeps serving, and an instance that was down while
//! the fleet invalidated through Redis applies that before its disk serves anything.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use http::Method;

/// A directory for one test's disk tier, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("larder-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        segs
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The origin's body for `path`: 16 KiB of letters that gzip cannot shrink much under
/// `/big/`, small otherwise; the same every time (so a test can tell a right answer from a
/// wrong one).
fn body_of(path: &str) -> String {
    let len = if path.starts_with("/big/") {
        16 * 1024
    } else {
        120
    };
    let mut x = path.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut body = format!("{path} ");
    while body.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(char::from(b'a' + (x % 26) as u8));
    }
    body
}

async fn origin() -> Origin {
    Origin::start(
        |req| async move { ok(&[("content-type", "text/plain")], body_of(req.uri.path())) },
    )
    .await
}

fn disk_config(origin: SocketAddr, dir: &Dir, write: &str, store_extra: &str) -> String {
    config(
        origin,
        "",
        &format!(
            r#"
[store]
{store_extra}

[store.disk]
path = "{}"
max = "64MiB"
write = "{write}"

[[rule]]
name = "items"
path = "/items/{{id}}"
ttl = "1h"
tags = ["item:{{id}}"]

[[rule]]
name = "big"
path = "/big/{{id}}"
ttl = "1h"

[[rule]]
name = "short"
path = "/short/{{id}}"
ttl = "3s"

[[rule]]
name = "quota"
path = "/quota/{{id}}"
ttl = "1h"
tiers = ["memory"]
"#,
            dir.path().display()
        ),
    )
}

/// Asks for `path` and checks the answer is the origin's; returns its `Cache-Status`.
async fn fetch(larder: &Larder, path: &str) -> String {
    let g = get(&larder.url(path)).await;
    assert_eq!(g.status, 200, "{path}: {}", g.header("cache-status"));
    assert_eq!(g.text(), body_of(path), "{path}: a wrong body");
    g.header("cache-status").to_string()
}

async fn stats(larder: &Larder) -> serde_json::Value {
    let c = client();
    let r = send(admin(&c, larder, Method::GET, "/admin/stats")).await;
    serde_json::from_slice(&r.body).unwrap()
}

/// Polls `/admin/stats` until `cond` holds (bounded).
async fn stats_until(larder: &Larder, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let held = eventually(Duration::from_secs(10), || async {
        cond(&stats(larder).await)
    })
    .await;
    assert!(held, "{what}: {}", stats(larder).await);
}

async fn metric(larder: &Larder, name: &str) -> f64 {
    let text = get(&larder.admin_url("/metrics")).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn write_through_entries_survive_kill_9_and_are_served_without_the_upstream() {
    let dir = Dir::new("through");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let mut larder = Larder::start(&config);
    let paths: Vec<String> = (1..=5)
        .flat_map(|i| [format!("/items/{i}"), format!("/big/{i}")])
        .collect();
    for p in &paths {
        assert_eq!(fetch(&larder, p).await, "larder; fwd=miss; stored");
    }
    assert_eq!(fetch(&larder, "/quota/1").await, "larder; fwd=miss; stored");
    larder.kill9();

    let larder = Larder::start(&config);
    for p in &paths {
        let status = fetch(&larder, p).await;
        assert!(
            status.starts_with("larder; hit;") && status.ends_with("detail=disk"),
            "{p}: {status}"
        );
    }
    assert_eq!(
        origin.total(),
        paths.len() as u64 + 1,
        "no upstream call after the restart"
    );
    // A disk hit is promoted to memory.
    let status = fetch(&larder, "/items/1").await;
    assert!(status.ends_with("detail=l1"), "/items/1: {status}");
    // A memory-only rule's entries did not outlive the process.
    assert_eq!(fetch(&larder, "/quota/1").await, "larder; fwd=miss; stored");

    let v = stats(&larder).await;
    assert_eq!(v["disk"]["status"], "up", "{v}");
    assert!(v["disk"]["entries"].as_u64().unwrap() >= 10, "{v}");
    assert!(v["tiers"]["disk"].as_u64().unwrap() >= 10, "{v}");
    let health: serde_json::Value =
        serde_json::from_slice(&get(&larder.admin_url("/health")).await.body).unwrap();
    assert_eq!(
        (&health["status"], &health["disk"]),
        (&"ok".into(), &"up".into())
    );
    assert!(metric(&larder, "larder_disk_entries").await >= 10.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_never_share_a_directory() {
    let dir = Dir::new("shared");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let _first = Larder::start(&config);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["serve", "--config"])
        .arg(write_config(&config))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another larder process"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn write_back_entries_survive_kill_9_once_written() {
    let dir = Dir::new("back");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "back", "");
    let mut larder = Larder::start(&config);
    for i in 1..=10 {
        fetch(&larder, &format!("/big/{i}")).await;
    }
    // Written in the background, within about 100 ms.
    stats_until(&larder, "ten records written", |v| {
        v["disk"]["writes"].as_u64() >= Some(10)
    })
    .await;
    larder.kill9();

    let larder = Larder::start(&config);
    for i in 1..=10 {
        let status = fetch(&larder, &format!("/big/{i}")).await;
        assert!(status.ends_with("detail=disk"), "{status}");
    }
    assert_eq!(origin.total(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidations_and_purges_survive_kill_9() {
    let dir = Dir::new("invalidate");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let c = client();
    let mut larder = Larder::start(&config);
    for p in ["/items/1", "/items/2", "/items/3", "/big/1", "/big/2"] {
        fetch(&larder, p).await;
    }
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:1"]}"#))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"prefix":"/big/"}"#))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    larder.kill9();

    let mut larder = Larder::start(&config);
    assert_eq!(fetch(&larder, "/items/1").await, "larder; fwd=miss; stored");
    assert_eq!(fetch(&larder, "/big/1").await, "larder; fwd=miss; stored");
    let status = fetch(&larder, "/items/2").await;
    assert!(status.ends_with("detail=disk"), "/items/2: {status}");
    let status = fetch(&larder, "/items/3").await;
    assert!(status.ends_with("detail=disk"), "/items/3: {status}");
    // Filled again after the invalidation: that copy stays.
    larder.kill9();
    let mut larder = Larder::start(&config);
    let status = fetch(&larder, "/items/1").await;
    assert!(status.ends_with("detail=disk"), "/items/1: {status}");

    let r =
        send(admin(&c, &larder, Method::POST, "/admin/purge").body(r#"{"confirm":"PURGE_ALL"}"#))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    larder.kill9();
    let larder = Larder::start(&config);
    for p in ["/items/1", "/items/2", "/items/3", "/big/1"] {
        assert_eq!(fetch(&larder, p).await, "larder; fwd=miss; stored", "{p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_and_age_carry_on_across_a_restart() {
    let dir = Dir::new("expiry");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let mut larder = Larder::start(&config);
    fetch(&larder, "/short/1").await;
    larder.kill9();

    // Restarted as if 2 s later (its clock starts that far ahead).
    let env = [
        ("LARDER_ADMIN_TOKEN", TOKEN),
        ("LARDER_MANUAL_CLOCK", "2000"),
    ];
    let larder = Larder::start_with_env(&config, &env);
    let g = get(&larder.url("/short/1")).await;
    assert!(g.header("cache-status").ends_with("detail=disk"));
    let age: u64 = g.header("age").parse().unwrap();
    assert!(age >= 2, "Age {age} counts from the store time");
    // The stored ttl (3 s) counts from the store time too, not from the restart: 3.1 s
    // after the store (1.1 s after the restart) it has expired.
    larder.advance(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&larder.url("/short/1")).await.x_cache(),
        "MISS",
        "not expired 3.1 s after it was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_are_misses_never_wrong_answers() {
    let dir = Dir::new("damage");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let mut larder = Larder::start(&config);
    let paths: Vec<String> = (1..=8).map(|i| format!("/big/{i}")).collect();
    for p in &paths {
        fetch(&larder, p).await;
    }
    // Something to journal: an invalidation of an entry nobody asks for again.
    fetch(&larder, "/items/9").await;
    let c = client();
    send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:9"]}"#))
        .await;
    larder.kill9();

    // Bytes scribbled over the bodies of three records, and a torn record at the end.
    let seg = dir.segments().pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    for at in [len / 8 + 3000, len / 2 + 5000, len - 4000] {
        file.write_all_at(&[0x5a; 48], at).unwrap();
    }
    file.write_all_at(b"LDSK\x01\x01\x00\x00\xff\xff\x00\x00", len)
        .unwrap();
    drop(file);

    let larder = Larder::start(&config);
    let mut from_disk = 0;
    for p in &paths {
        if fetch(&larder, p).await.ends_with("detail=disk") {
            from_disk += 1;
        }
    }
    assert!((4..8).contains(&from_disk), "{from_disk} of 8 from disk");
    assert!(metric(&larder, "larder_disk_corrupt_total").await >= 1.0);
    let mut larder = larder;
    larder.kill9();

    // A damaged journal: what it said is unknown, so the tier starts empty.
    let journal = dir.path().join("journal.log");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.write_all_at(&[0xff; 8], 20).unwrap();
    drop(file);
    let larder = Larder::start(&config);
    for p in &paths {
        assert_eq!(fetch(&larder, p).await, "larder; fwd=miss; stored", "{p}");
    }
    assert!(metric(&larder, "larder_disk_corrupt_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_disables_the_tier_and_the_proxy_keeps_serving() {
    let dir = Dir::new("full");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    // No file may grow past 64 blocks (32 or 64 KiB, by the shell): the segment fills up
    // after a few 16 KiB entries, as on a full disk.
    let larder = Larder::start_with_ulimit(&config, "ulimit -f 64");
    let paths: Vec<String> = (1..=12).map(|i| format!("/big/{i}")).collect();
    for p in &paths {
        assert!(fetch(&larder, p).await.starts_with("larder; fwd=miss"));
    }
    let health: serde_json::Value =
        serde_json::from_slice(&get(&larder.admin_url("/health")).await.body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["disk"], "down", "{health}");
    assert_eq!(metric(&larder, "larder_disk_up").await, 0.0);
    // Memory still serves what it holds; nothing failed.
    for p in &paths {
        assert!(fetch(&larder, p).await.starts_with("larder; hit"));
    }
    assert!(larder
        .logs()
        .contains("disabled until the disk takes writes again"));
}

fn fleet_config(origin: SocketAddr, dir: Option<&Dir>, redis: &str) -> String {
    match dir {
        Some(dir) => disk_config(
            origin,
            dir,
            "through",
            &format!(
                "backend = \"redis\"\nredis_url = \"{redis}\"\nredis_connect_timeout = \"3s\""
            ),
        ),
        None => config(
            origin,
            "",
            &format!(
                r#"
[store]
backend = "redis"
redis_url = "{redis}"

[[rule]]
name = "items"
path = "/items/{{id}}"
ttl = "1h"
tags = ["item:{{id}}"]
"#
            ),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_down_during_a_fleet_invalidation_applies_it_before_its_disk_serves() {
    let redis = Redis::start();
    let dir = Dir::new("fleet");
    let origin = origin().await;
    let with_disk = fleet_config(origin.addr, Some(&dir), &redis.url());
    let mut a = Larder::start(&with_disk);
    let b = Larder::start(&fleet_config(origin.addr, None, &redis.url()));
    for p in ["/items/1", "/items/2", "/items/3"] {
        fetch(&a, p).await;
    }
    // While A runs, B's invalidation reaches A's memory and disk at once.
    let c = client();
    send(admin(&c, &b, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:3"]}"#)).await;
    let url = a.url("/items/3");
    let dropped = eventually(Duration::from_secs(2), || {
        let url = url.clone();
        async move { get(&url).await.x_cache() == "MISS" }
    })
    .await;
    assert!(dropped, "A still serves /items/3");
    a.kill9();

    // While A is down, B invalidates /items/1.
    send(admin(&c, &b, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:1"]}"#)).await;

    let mut a = Larder::start(&with_disk);
    assert_eq!(fetch(&a, "/items/1").await, "larder; fwd=miss; stored");
    let status = fetch(&a, "/items/2").await;
    assert!(status.ends_with("detail=disk"), "/items/2: {status}");
    assert_eq!(origin.calls("/items/1"), 2);
    a.kill9();

    // Redis loses everything while A is down, and its new log counts past A's watermark:
    // the new log's /items/2 invalidation must not be taken for one A has applied.
    redis.cli(&["FLUSHALL"]);
    for tag in ["item:2", "item:7", "item:8", "item:9"] {
        let body = format!(r#"{{"tags":["{tag}"]}}"#);
        send(admin(&c, &b, Method::POST, "/admin/invalidate").body(body)).await;
    }
    let a = Larder::start(&with_disk);
    assert_eq!(fetch(&a, "/items/2").await, "larder; fwd=miss; stored");
}

/// One entry record as it lies in a segment.
struct Found {
    header: larder::store::disk::record::Header,
    payload: Vec<u8>,
}

impl Found {
    fn url(&self) -> String {
        larder::entry::Entry::peek(&self.payload).unwrap().url
    }

    fn body(&self) -> String {
        let entry = larder::entry::Entry::decode(bytes::Bytes::from(self.payload.clone())).unwrap();
        String::from_utf8_lossy(&entry.body()).into_owned()
    }
}

/// Every entry record in the tier's segments.
fn records(dir: &Dir) -> Vec<Found> {
    use larder::store::disk::record::{Kind, Record, HEADER};
    let mut out = Vec::new();
    for seg in dir.segments() {
        let bytes = std::fs::read(seg).unwrap();
        let mut at = 0;
        while let Ok(h) = Record::verify(&bytes[at..]) {
            if h.kind == Kind::Entry {
                let payload = bytes[at + HEADER..at + h.total()].to_vec();
                out.push(Found { header: h, payload });
            }
            at += h.total();
        }
    }
    out
}

/// Appends records to the newest segment, as anyone who can write the directory could.
fn plant(dir: &Dir, records: &[(u64, [u8; 16], &[u8])]) {
    use larder::store::disk::record::{Kind, Record};
    let seg = dir.segments().pop().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(seg).unwrap();
    for (seq, key, payload) in records {
        let bytes = Record::encode(Kind::Entry, *seq, 0, key, payload);
        std::io::Write::write_all(&mut file, &bytes).unwrap();
    }
}

fn trust_config(origin: SocketAddr, dir: &Dir) -> String {
    disk_config(origin, dir, "through", "")
        + r#"
[users]
sources = ["header:X-User-Id"]

[[rule]]
name = "me"
path = "/me"
ttl = "1h"
per_user = true
"#
}

/// An origin whose answers name the path and, for `/me`, the user.
async fn user_origin() -> Origin {
    Origin::start(|req| async move {
        let user = req
            .headers
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let body = if req.uri.path() == "/me" {
            format!("the account of {user}")
        } else {
            body_of(req.uri.path())
        };
        ok(&[("content-type", "text/plain")], body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_planted_under_another_key_is_damage_never_an_answer() {
    let dir = Dir::new("planted");
    let origin = user_origin().await;
    let config = trust_config(origin.addr, &dir);
    let env = [
        ("LARDER_ADMIN_TOKEN", TOKEN),
        ("LARDER_USER_SECRET", "s3cret"),
    ];
    let mut larder = Larder::start_with_env(&config, &env);
    let c = client();
    fetch(&larder, "/items/1").await;
    fetch(&larder, "/items/2").await;
    for who in ["alice", "bob"] {
        let g = send(c.get(larder.url("/me")).header("x-user-id", who)).await;
        assert_eq!(g.text(), format!("the account of {who}"));
    }
    larder.kill9();

    // Someone with write access to the directory copies /items/1 over /items/2's key, and
    // alice's account over bob's, with valid checksums and newer sequence numbers.
    let found = records(&dir);
    let by = |f: &dyn Fn(&Found) -> bool| found.iter().find(|r| f(r)).unwrap();
    let one = by(&|r| r.url() == "/items/1");
    let two = by(&|r| r.url() == "/items/2");
    let alice = by(&|r| r.url() == "/me" && r.body().contains("alice"));
    let bob = by(&|r| r.url() == "/me" && r.body().contains("bob"));
    let seq = found.iter().map(|r| r.header.seq).max().unwrap();
    plant(
        &dir,
        &[
            (seq + 1, two.header.key, &one.payload),
            (seq + 2, bob.header.key, &alice.payload),
        ],
    );

    let larder = Larder::start_with_env(&config, &env);
    assert_eq!(fetch(&larder, "/items/2").await, "larder; fwd=miss; stored");
    let g = send(c.get(larder.url("/me")).header("x-user-id", "bob")).await;
    assert_eq!(
        g.text(),
        "the account of bob",
        "{}",
        g.header("cache-status")
    );
    assert!(metric(&larder, "larder_disk_corrupt_total").await >= 2.0);
    // What was not tampered with is still served from disk.
    assert!(fetch(&larder, "/items/1").await.ends_with("detail=disk"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_claiming_an_absurd_sequence_number_cannot_outlive_an_invalidation() {
    let dir = Dir::new("seq");
    let origin = origin().await;
    let config = disk_config(origin.addr, &dir, "through", "");
    let mut larder = Larder::start(&config);
    fetch(&larder, "/items/1").await;
    larder.kill9();
    let found = records(&dir);
    let one = found.iter().find(|r| r.url() == "/items/1").unwrap();
    plant(&dir, &[(u64::MAX, one.header.key, &one.payload)]);

    let mut larder = Larder::start(&config);
    let c = client();
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:1"]}"#))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    larder.kill9();
    let larder = Larder::start(&config);
    assert_eq!(
        fetch(&larder, "/items/1").await,
        "larder; fwd=miss; stored",
        "an invalidated entry came back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_journal_beside_entries_starts_the_tier_empty() {
    for lose in ["truncate", "delete"] {
        let dir = Dir::new(&format!("journal-{lose}"));
        let origin = origin().await;
        let config = disk_config(origin.addr, &dir, "through", "");
        let mut larder = Larder::start(&config);
        fetch(&larder, "/items/1").await;
        fetch(&larder, "/items/2").await;
        let c = client();
        let r = send(
            admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["item:1"]}"#),
        )
        .await;
        assert_eq!(r.status, 200);
        larder.kill9();
        // logrotate's copytruncate, or an operator clearing *.log.
        let journal = dir.path().join("journal.log");
        match lose {
            "truncate" => std::fs::File::create(&journal).map(drop).unwrap(),
            _ => std::fs::remove_file(&journal).unwrap(),
        }
        let larder = Larder::start(&config);
        assert_eq!(
            fetch(&larder, "/items/1").await,
            "larder; fwd=miss; stored",
            "{lose}: an invalidated entry came back"
        );
        assert_eq!(fetch(&larder, "/items/2").await, "larder; fwd=miss; stored");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_reads_no_more_than_the_tier_s_bound() {
    use larder::entry::{Entry, NewEntry, StoredBody};
    let origin = origin().await;
    // A fresh tier: the process's memory before anything is planted.
    let empty = Dir::new("bound-empty");
    let small = |dir: &Dir| {
        disk_config(origin.addr, dir, "through", "").replace("max = \"64MiB\"", "max = \"4MiB\"")
    };
    let mut larder = Larder::start(&small(&empty));
    let baseline = rss_kib(larder.pid()).0;
    larder.kill9();

    let dir = Dir::new("bound");
    let mut larder = Larder::start(&small(&dir));
    fetch(&larder, "/items/1").await;
    larder.kill9();
    // 48 MiB of well-formed records beside a 4 MiB tier, each naming 2,000 tags (what the
    // directory keeps in memory per entry).
    let tags: Vec<u64> = (0..2000).collect();
    let headers = http::HeaderMap::new();
    let last = dir.segments().len() as u32;
    let mut seq = 1_000u64;
    for s in 1..=6u32 {
        let mut bytes = Vec::new();
        while bytes.len() < 8 << 20 {
            seq += 1;
            let url = format!("/planted/{seq}");
            let entry = Entry::encode(&NewEntry {
                status: http::StatusCode::OK,
                headers: &headers,
                body: StoredBody::Identity(b"x"),
                url: &url,
                tags: &tags,
                freshness: larder::policy::Freshness {
                    lifetime_ms: 3_600_000,
                    ..Default::default()
                },
                response_time: larder::policy::now_ms(),
                vary: None,
            });
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&seq.to_le_bytes());
            larder::store::disk::record::Record::encode_into(
                &mut bytes,
                larder::store::disk::record::Kind::Entry,
                seq,
                0,
                &key,
                entry.bytes(),
            );
        }
        std::fs::write(dir.path().join(format!("{:08}.seg", last + s)), bytes).unwrap();
    }
    let larder = Larder::start(&small(&dir));
    let rss = rss_kib(larder.pid()).0;
    assert!(
        rss < baseline + 12 * 1024,
        "start-up took {} KiB more than an empty tier",
        rss.saturating_sub(baseline)
    );
    let on_disk: u64 = dir
        .segments()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 4 << 20, "{on_disk} bytes of segments kept");
    get(&larder.url("/items/2")).await;
}

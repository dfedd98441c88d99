//! Streaming fills against the real binary: an event stream reaches its client as the
//! origin sends it (the origin holds its later events until the test has seen the first,
//! so a buffering larder would never get there), a second client joins it live, a cut body
//! is an error and is not stored, and a body past `max_body` streams whole in bounded
//! memory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::sync::{mpsc, Notify};

/// Long enough for any answer on loopback; a test that waits this long has failed.
const WAIT: Duration = Duration::from_secs(10);

const EVENTS: usize = 8;

fn event(i: usize) -> Bytes {
    Bytes::from(format!("data: {{\"token\":{i}}}\n\n"))
}

fn sse_config(origin: &Origin, proxy_extra: &str) -> String {
    config(
        origin.addr,
        proxy_extra,
        r#"
[[rule]]
name = "completions"
path = "/v1/stream/{id}"
ttl = "1h"
"#,
    )
}

/// An origin that streams `EVENTS` server-sent events: the first at once, the rest once
/// `go` is notified; with `cut_after`, it fails the body after that many events.
async fn sse_origin(go: Arc<Notify>, cut_after: Option<usize>) -> Origin {
    Origin::start(move |_| {
        let go = go.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Ok(event(0))).await;
                go.notified().await;
                for i in 1..EVENTS {
                    if cut_after == Some(i) {
                        let _ = tx.send(Err("cut".into())).await;
                        return;
                    }
                    let _ = tx.send(Ok(event(i))).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("cache-control", "max-age=60"),
                ],
                body,
            )
        }
    })
    .await
}

fn all_events() -> Bytes {
    (0..EVENTS)
        .flat_map(|i| event(i).to_vec())
        .collect::<Vec<u8>>()
        .into()
}

/// Reads a response to its end; the body, or the error that ended it.
async fn read_rest(
    mut resp: reqwest::Response,
    mut got: Vec<u8>,
) -> Result<Vec<u8>, reqwest::Error> {
    while let Some(chunk) = resp.chunk().await? {
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

async fn first_chunk(resp: &mut reqwest::Response) -> Bytes {
    tokio::time::timeout(WAIT, resp.chunk())
        .await
        .expect("the first event arrived while the origin held the rest")
        .expect("body")
        .expect("a chunk")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_streams_and_a_second_client_joins_it_live() {
    let go = Arc::new(Notify::new());
    let origin = sse_origin(go.clone(), None).await;
    let larder = Larder::start(&sse_config(&origin, ""));
    let c = client();
    let mut first = c
        .get(larder.url("/v1/stream/1"))
        .send()
        .await
        .expect("first");
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first_chunk(&mut first).await, event(0));
    // Joins while the origin still holds the rest: gets what arrived at once.
    let mut second = c
        .get(larder.url("/v1/stream/1"))
        .send()
        .await
        .expect("second");
    assert_eq!(
        second.headers()["cache-status"],
        "larder; hit; collapsed; ttl=0; detail=l1"
    );
    assert_eq!(first_chunk(&mut second).await, event(0));
    go.notify_one();
    let a = read_rest(first, event(0).to_vec())
        .await
        .expect("first body");
    let b = read_rest(second, event(0).to_vec())
        .await
        .expect("second body");
    assert_eq!(a, all_events());
    assert_eq!(b, all_events());
    assert_eq!(origin.calls("/v1/stream/1"), 1);
    // Stored whole once complete: replayed on a hit.
    let hit = get(&larder.url("/v1/stream/1")).await;
    assert_eq!((hit.x_cache(), hit.body.clone()), ("HIT", all_events()));
    assert_eq!(hit.header("content-type"), "text/event-stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_body_is_an_error_for_its_clients_and_is_not_stored() {
    let go = Arc::new(Notify::new());
    let origin = sse_origin(go.clone(), Some(3)).await;
    let larder = Larder::start(&sse_config(&origin, ""));
    let c = client();
    let mut first = c
        .get(larder.url("/v1/stream/2"))
        .send()
        .await
        .expect("first");
    first_chunk(&mut first).await;
    let mut joined = c
        .get(larder.url("/v1/stream/2"))
        .send()
        .await
        .expect("joined");
    first_chunk(&mut joined).await;
    go.notify_one();
    assert!(
        read_rest(first, Vec::new()).await.is_err(),
        "a cut body ended cleanly"
    );
    assert!(
        read_rest(joined, Vec::new()).await.is_err(),
        "a joined reader ended cleanly"
    );
    // Nothing was stored: the next request goes upstream.
    let next = c
        .get(larder.url("/v1/stream/2"))
        .send()
        .await
        .expect("next");
    assert_eq!(next.headers()["x-cache"], "MISS");
    assert_eq!(origin.calls("/v1/stream/2"), 2);
    go.notify_one();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_past_max_body_streams_whole_in_bounded_memory() {
    const MIB: usize = 1 << 20;
    let origin = Origin::start(|_| async {
        let (tx, body): (mpsc::Sender<Result<Bytes, String>>, _) = channel_body();
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            for _ in 0..(64 * MIB / chunk.len()) {
                if tx.send(Ok(chunk.clone())).await.is_err() {
                    return;
                }
            }
        });
        response(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
    })
    .await;
    let larder = Larder::start(&config(
        origin.addr,
        "max_body = \"8MiB\"",
        "[store]\nmemory_max = \"256MiB\"\n\n[[rule]]\nname = \"exports\"\npath = \"/exports/{id}\"\nttl = \"1h\"\n",
    ));
    // Settle the process (first request, allocator warm) before measuring.
    let _ = get(&larder.url("/warmup")).await;
    let (before, _) = rss_kib(larder.pid());
    let resp = client()
        .get(larder.url("/exports/big"))
        .send()
        .await
        .expect("export");
    let mut n = 0usize;
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.expect("body") {
        assert!(chunk.iter().all(|b| *b == b'x'));
        n += chunk.len();
    }
    assert_eq!(n, 64 * MIB, "streamed whole");
    let (_, peak) = rss_kib(larder.pid());
    assert!(
        peak.saturating_sub(before) < 24 * 1024,
        "resident memory grew by {} KiB",
        peak.saturating_sub(before)
    );
    // Not stored.
    let again = client()
        .get(larder.url("/exports/big"))
        .send()
        .await
        .expect("again");
    assert_eq!(again.headers()["x-cache"], "MISS");
}

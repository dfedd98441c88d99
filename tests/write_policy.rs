//! A write policy per rule (`write = "through" | "back" | "around"`), against the real
//! binary with a disk tier, a real `redis-server`, `kill -9` and `/admin/entry`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const RULES: &str =
    "[[rule]]\nname = \"through\"\npath = \"/through/{id}\"\nttl = \"1h\"\nwrite = \"through\"\n\n\
[[rule]]\nname = \"back\"\npath = \"/back/{id}\"\nttl = \"1h\"\nwrite = \"back\"\n\n\
[[rule]]\nname = \"around\"\npath = \"/around/{id}\"\nttl = \"1h\"\nwrite = \"around\"\n";

async fn origin() -> Origin {
    Origin::start(|req| async move {
        ok(
            &[("cache-control", "max-age=3600")],
            format!("made for {}", req.uri.path()),
        )
    })
    .await
}

async fn status_of(larder: &Larder, path: &str) -> String {
    let got = get(&larder.url(path)).await;
    assert_eq!(got.status, 200);
    got.header("cache-status").to_string()
}

/// Which tiers hold `path` now, by `/admin/entry`.
async fn held(larder: &Larder, path: &str) -> Vec<String> {
    let r = send(admin(
        &client(),
        larder,
        http::Method::GET,
        &format!("/admin/entry?url={path}"),
    ))
    .await;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    ["memory", "disk", "redis"]
        .into_iter()
        .filter(|t| v["tiers"][t]["present"] == true)
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn through_is_on_disk_when_the_answer_completes_even_with_a_write_back_disk() {
    let origin = origin().await;
    let dir = TempDir::new("write-through");
    let store = format!(
        "[store.disk]\npath = \"{}\"\nwrite = \"back\"\n\n{RULES}",
        dir.0.display()
    );
    let text = config(origin.addr, "", &store);
    let mut larder = Larder::start(&text);
    assert_eq!(
        status_of(&larder, "/through/1").await,
        "larder; fwd=miss; stored"
    );
    // Killed the moment the answer is complete: the entry was already durable.
    larder.kill9();
    let larder = Larder::start(&text);
    let status = status_of(&larder, "/through/1").await;
    assert!(status.ends_with("detail=disk"), "{status}");
    assert_eq!(origin.calls("/through/1"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn back_answers_while_redis_is_stalled_and_the_write_follows() {
    let redis = Redis::start();
    let pid = redis.pid().expect("redis runs").to_string();
    // The origin stalls Redis as it answers: larder has looked Redis up already, and now
    // has only the write left to do there.
    let origin = Origin::start(move |req| {
        let pid = pid.clone();
        async move {
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &pid])
                .status();
            ok(
                &[("cache-control", "max-age=3600")],
                format!("made for {}", req.uri.path()),
            )
        }
    })
    .await;
    let store = format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"60s\"\n\n{RULES}",
        redis.url()
    );
    let larder = Larder::start(&config(origin.addr, "", &store));
    // A `back` miss is answered while Redis is stalled (a `through` one would wait for
    // Redis), and memory serves the next request at once.
    let answered = tokio::time::timeout(Duration::from_secs(20), status_of(&larder, "/back/1"))
        .await
        .expect("a back rule answers while Redis is stalled");
    assert_eq!(answered, "larder; fwd=miss; stored");
    let second = status_of(&larder, "/back/1").await;
    assert!(second.ends_with("detail=l1"), "{second}");
    redis.resume();
    let followed = eventually(Duration::from_secs(10), || async {
        held(&larder, "/back/1")
            .await
            .contains(&"redis".to_string())
    })
    .await;
    assert!(followed, "the Redis write follows the answer");
    assert_eq!(origin.calls("/back/1"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn around_writes_only_below_memory_and_memory_fills_on_the_first_read() {
    let redis = Redis::start();
    let origin = origin().await;
    let store = format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n{RULES}",
        redis.url()
    );
    let larder = Larder::start(&config(origin.addr, "", &store));
    assert_eq!(
        status_of(&larder, "/around/1").await,
        "larder; fwd=miss; stored"
    );
    assert_eq!(held(&larder, "/around/1").await, ["redis"]);
    let from_redis = status_of(&larder, "/around/1").await;
    assert!(from_redis.ends_with("detail=l2"), "{from_redis}");
    assert_eq!(held(&larder, "/around/1").await, ["memory", "redis"]);
    let from_memory = status_of(&larder, "/around/1").await;
    assert!(from_memory.ends_with("detail=l1"), "{from_memory}");
    // `through` holds every tier when its answer completes.
    status_of(&larder, "/through/1").await;
    assert_eq!(held(&larder, "/through/1").await, ["memory", "redis"]);
    assert_eq!(origin.calls("/around/1"), 1);
}

#[test]
fn around_without_a_tier_below_memory_is_a_config_error() {
    let path = write_config("[[rule]]\npath = \"/a\"\nwrite = \"around\"\n");
    let out = std::process::Command::new(larder_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check runs");
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(":3:9: rule[0].write: \"around\" writes only the tiers below memory"),
        "{err}"
    );
}

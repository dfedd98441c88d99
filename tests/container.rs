//! The container as shipped, where no container runtime is at hand: the binary runs with
//! `config/docker.toml` and the environment `compose.yaml` gives the `larder` service, next
//! to a `redis-server` started with the arguments compose gives the `redis` service. It
//! serves, shares its cache through that Redis, and finds the Redis settings right (a
//! bound, an LRU policy, persistence: no warning at start).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The lines of one service in `compose.yaml` (two-space indented name, deeper body).
fn service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if !l.is_empty() && !l.starts_with("    ") && !l.trim_start().starts_with('#') {
            break;
        }
        out.push(l);
    }
    out
}

/// The indented items under `key:` in a service body.
fn section<'a>(body: &[&'a str], key: &str) -> Vec<&'a str> {
    let header = format!("    {key}:");
    body.iter()
        .skip_while(|l| **l != header)
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(|l| l.trim())
        .collect()
}

/// A compose value with `${VAR:-default}` taken at its default (the variables are unset).
fn defaulted(value: &str) -> String {
    let value = value.trim().trim_matches('"');
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(inner) => inner.split_once(":-").map_or("", |(_, d)| d).to_string(),
        None => value.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_config_and_compose_environment_serve_through_a_well_set_redis() {
    let root = env!("CARGO_MANIFEST_DIR");
    let compose = std::fs::read_to_string(format!("{root}/compose.yaml")).expect("compose.yaml");
    let docker_toml =
        std::fs::read_to_string(format!("{root}/config/docker.toml")).expect("docker.toml");

    // Redis as compose starts it (its image's `redis-server` and arguments).
    let args: Vec<String> = section(&service(&compose, "redis"), "command")
        .iter()
        .map(|l| defaulted(l.trim_start_matches("- ")))
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("redis-server"));
    let extra: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let redis = Redis::start_with(free_port(), &extra);

    let origin =
        Origin::start(
            |_req| async move { ok(&[("cache-control", "max-age=60")], "from the origin") },
        )
        .await;
    // larder's environment from compose; the service names resolve here to loopback.
    let mut env: Vec<(String, String)> = section(&service(&compose, "larder"), "environment")
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), defaulted(v)))
        .collect();
    for (k, v) in env.iter_mut() {
        match k.as_str() {
            "LARDER_UPSTREAM" => *v = format!("http://{}", origin.addr),
            "REDIS_URL" => *v = redis.url(),
            _ => {}
        }
    }
    env.push(("LARDER_LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("LARDER_ADMIN_LISTEN".into(), "127.0.0.1:0".into()));
    let token = env
        .iter()
        .find(|(k, _)| k == "LARDER_ADMIN_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("compose sets an admin token");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let larder = Larder::start_with_env(&docker_toml, &pairs);

    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "MISS");
    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "HIT");
    assert!(
        redis.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap_or(0) > 0,
        "entries live in Redis"
    );
    assert_eq!(
        redis
            .cli(&["CONFIG", "GET", "maxmemory-policy"])
            .lines()
            .last(),
        Some("allkeys-lru")
    );
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "appendonly"]).lines().last(),
        Some("yes")
    );

    let stats = || async {
        let r = client()
            .get(larder.admin_url("/admin/stats"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("admin answers");
        assert_eq!(r.status(), 200, "the token compose sets is accepted");
        let body = r.bytes().await.unwrap_or_default();
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)
    };
    let polled = eventually(Duration::from_secs(10), || async {
        stats().await["redis"]["max_bytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    })
    .await;
    assert!(polled, "Redis memory polled: {}", stats().await);
    assert_eq!(stats().await["redis"]["max_bytes"], 512 * 1024 * 1024);
    let logs = larder.logs();
    assert!(
        !logs.contains("redis has no maxmemory") && !logs.contains("noeviction"),
        "{logs}"
    );
    let health = send(client().get(larder.admin_url("/health"))).await;
    let health: Value = serde_json::from_slice(&health.body).unwrap_or(Value::Null);
    assert_eq!(health["status"], "ok", "{health}");
}

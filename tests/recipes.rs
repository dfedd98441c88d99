//! The five deployments larder was made for: each recipe's config from
//! `config/examples/`, an origin imitating that API (slow, counting its calls), and a
//! replayed request mix asserting what the deployment needs. Time is compressed by scaling
//! the config's durations; each test prints its upstream calls with and without larder.

mod common;

#[path = "../examples/axum_app.rs"]
#[allow(dead_code)]
mod axum_app;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use parking_lot::Mutex;

/// A recipe's config for a test: loopback ports, the given upstream, durations divided by
/// `speedup` (an hour in seconds, say).
fn recipe(name: &str, upstream: SocketAddr, speedup: u64) -> String {
    let path = format!("{}/config/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("recipe config");
    // It must be valid as shipped.
    larder::Config::parse_str(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let text = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9091", "127.0.0.1:0")
        .replace("http://127.0.0.1:9000", &format!("http://{upstream}"))
        // The APIs the recipes front are HTTPS in real life; here the test origin plays both.
        .replace(
            "${VIDEO_API_URL:-https://video-api.example.com}",
            &format!("http://{upstream}"),
        )
        .replace(
            "${LLM_API_URL:-https://llm.example.com}",
            &format!("http://{upstream}"),
        )
        .replace(
            "${LARDER_DISK_PATH:-/var/cache/larder}",
            &recipe_disk(name).display().to_string(),
        );
    let re = regex::Regex::new(r#"(?m)^(ttl|every|alert_window) = "([0-9a-z]+)""#).unwrap();
    re.replace_all(&text, |c: &regex::Captures| {
        let d = larder::units::parse_duration(&c[2]).unwrap();
        format!(
            "{} = \"{}ms\"",
            &c[1],
            (d.as_millis() as u64 / speedup).max(1)
        )
    })
    .into_owned()
}

/// A fresh directory for a recipe's disk tier (emptied here; removed by [`DiskDir`]).
fn recipe_disk(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-recipe-{}-{name}", std::process::id()));
    dir
}

/// Removes a recipe's disk tier directory when the test ends.
struct DiskDir(std::path::PathBuf);

impl Drop for DiskDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny deterministic generator, so every run replays the same mix.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Skewed towards small values, like real popularity.
    fn popular(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

fn report(name: &str, with: u64, without: u64, requests: u64) {
    eprintln!(
        "RECIPE {name}: {requests} requests; upstream calls with larder {with}, without {without}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. AI video summaries

async fn ai_origin() -> Origin {
    Origin::start(|req| async move {
        let path = req.uri.path().to_string();
        if req.method == Method::POST && path == "/summaries" {
            tokio::time::sleep(Duration::from_millis(40)).await; // an LLM call
            let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let body = format!(
                r#"{{"summary":"{} summary focusing on {}","model":"{}"}}"#,
                v["options"]["length"].as_str().unwrap_or("?"),
                v["options"]["focus_areas"],
                v["model"].as_str().unwrap_or("?")
            );
            return ok(&[("content-type", "application/json")], body);
        }
        if path.ends_with("/transcript") {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let lang = req.uri.query().unwrap_or("").to_string();
            return ok(
                &[("content-type", "application/json")],
                format!(r#"{{"path":"{path}","{lang}":"{}"}}"#, "words ".repeat(300)),
            );
        }
        if path.ends_with("/summary-options") {
            return ok(
                &[("content-type", "application/json")],
                r#"{"lengths":["short","long"],"focus":["pacing","tone"]}"#,
            );
        }
        response(404, &[], full("no"))
    })
    .await
}

/// The summary request for a transcript, with the JSON keys in a varying order (as
/// different client libraries write them).
fn summary_body(video: u64, lang: &str, length: &str, model: &str, shuffle: bool) -> String {
    static REQUEST: AtomicU64 = AtomicU64::new(0);
    // Every request carries its own id, as client libraries add: not part of the key.
    let id = REQUEST.fetch_add(1, Ordering::SeqCst);
    let transcript = format!("transcript of video {video} in {lang}");
    if shuffle {
        format!(
            r#"{{ "model": "{model}", "request_id": "r{id}", "options": {{ "focus_areas": ["pacing"], "length": "{length}" }}, "transcript": "{transcript}" }}"#
        )
    } else {
        format!(
            r#"{{"transcript":"{transcript}","options":{{"length":"{length}","focus_areas":["pacing"]}},"model":"{model}","request_id":"r{id}"}}"#
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_ai_video_summaries() {
    let origin = ai_origin().await;
    let _disk = DiskDir(recipe_disk("ai-summaries"));
    let config = recipe("ai-summaries", origin.addr, 1);
    let mut larder = Larder::start(&config);
    let c = client();
    // Popular videos are warmed at start-up.
    let started = Instant::now();
    while origin.calls("/videos/popular-3/transcript") == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "not warmed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let warm = get(&larder.url("/videos/popular-1/transcript?lang=en")).await;
    assert_eq!(warm.x_cache(), "HIT", "warmed before anyone asked");

    let mut rng = Rng(7);
    let (mut requests, mut transcripts, mut summaries) = (0u64, HashSet::new(), HashSet::new());
    let mut summary_requests = 0u64;
    for popular in 1..=3 {
        transcripts.insert(format!("popular-{popular}/en"));
    }
    for i in 0..240 {
        if i == 120 {
            // A deploy in the middle: what was bought before it is not bought again.
            assert_eq!(larder.terminate().code(), Some(0));
            larder = Larder::start(&config);
            let seen = transcripts.iter().find(|t| t.starts_with('v')).unwrap();
            let (id, lang) = seen.split_once('/').unwrap();
            let again = get(&larder.url(&format!("/videos/{id}/transcript?lang={lang}"))).await;
            assert!(
                again.header("cache-status").ends_with("detail=disk"),
                "{}",
                again.header("cache-status")
            );
        }
        let video = rng.popular(12);
        let lang = ["en", "de"][rng.below(2) as usize];
        let id = if video < 3 {
            format!("popular-{}", video + 1)
        } else {
            format!("v{video}")
        };
        let g = send(c.get(larder.url(&format!(
            "/videos/{id}/transcript?lang={lang}&utm_source=app"
        ))))
        .await;
        assert_eq!(g.status, 200);
        transcripts.insert(format!("{id}/{lang}"));
        requests += 1;
        if rng.below(3) == 0 {
            let length = ["short", "long"][rng.below(2) as usize];
            let body = summary_body(video, lang, length, "m1", rng.below(2) == 0);
            let s = send(
                c.post(larder.url("/summaries"))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
            assert_eq!(s.status, 200);
            summaries.insert(format!("{video}/{lang}/{length}"));
            requests += 1;
            summary_requests += 1;
        }
    }
    let transcript_calls = origin
        .seen()
        .iter()
        .filter(|s| s.uri.path().ends_with("/transcript"))
        .count();
    let summary_calls = origin.calls("/summaries");
    assert_eq!(
        transcript_calls,
        transcripts.len(),
        "one upstream call per video and language"
    );
    assert_eq!(
        summary_calls,
        summaries.len(),
        "one LLM call per transcript and options, whatever the key order"
    );
    // After transcript misses, the summary options were prefetched.
    assert!(origin
        .seen()
        .iter()
        .any(|s| s.uri.path().ends_with("/summary-options")));

    // Money saved is reported.
    let stats: serde_json::Value = serde_json::from_slice(
        &send(admin(&c, &larder, Method::GET, "/admin/stats"))
            .await
            .body,
    )
    .unwrap();
    let avoided = stats["saved"]["per_rule"]["summary"]["requests_avoided"]
        .as_u64()
        .unwrap();
    assert!(avoided > 0);
    assert_eq!(
        stats["saved"]["per_rule"]["summary"]["cost_saved"]
            .as_f64()
            .unwrap(),
        (avoided as f64 * 0.05 * 1000.0).round() / 1000.0
    );

    // A new model or prompt version makes old summaries unreachable, without a purge.
    let body = summary_body(0, "en", "short", "m1", false);
    let post = || {
        send(
            c.post(larder.url("/summaries"))
                .header("content-type", "application/json")
                .body(body.clone()),
        )
    };
    post().await;
    assert_eq!(post().await.x_cache(), "HIT");
    let text = std::fs::read_to_string(&larder.config_path)
        .unwrap()
        .replace("prompt-v3", "prompt-v4");
    std::fs::write(&larder.config_path, text).unwrap();
    let r = send(admin(&c, &larder, Method::POST, "/admin/reload")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(post().await.x_cache(), "MISS");
    assert_eq!(post().await.x_cache(), "HIT");

    let with = (transcript_calls + summary_calls) as u64;
    report("ai-summaries", with, requests, requests);
    // Keyed on the whole body, every summary request (each with its own request_id) would
    // have been an LLM call.
    eprintln!(
        "RECIPE ai-summaries: {summary_requests} summary requests; LLM calls with key_body_fields {summary_calls}, with whole-body keys {summary_requests}"
    );
}

/// One larder on the memory store, or two sharing a Redis (the recipe behind a load
/// balancer); requests are spread over the instances.
struct Fleet {
    larders: Vec<Larder>,
    _redis: Option<Redis>,
}

impl Fleet {
    fn start(config: &str, on_redis: bool) -> Fleet {
        if !on_redis {
            return Fleet {
                larders: vec![Larder::start(config)],
                _redis: None,
            };
        }
        let redis = Redis::start();
        let store = format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        );
        let config = if config.contains("[store]\n") {
            config.replacen("[store]\n", &store, 1)
        } else {
            format!("{config}\n{store}")
        };
        // Every instance keys users with the same secret.
        let env = [
            ("LARDER_ADMIN_TOKEN", TOKEN),
            ("LARDER_USER_SECRET", "recipe-fleet-secret"),
        ];
        let larders = vec![
            Larder::start_with_env(&config, &env),
            Larder::start_with_env(&config, &env),
        ];
        Fleet {
            larders,
            _redis: Some(redis),
        }
    }

    /// The instance the `n`th request goes to.
    fn at(&self, n: u64) -> &Larder {
        &self.larders[n as usize % self.larders.len()]
    }

    fn describe(&self) -> &'static str {
        if self.larders.len() > 1 {
            "two instances on Redis"
        } else {
            "memory store"
        }
    }
}

/// Asks `url` until the answer satisfies `cond`: at once on the instance that saw the
/// change, within `limit` on the others (Redis pub/sub carries it there). Returns the wait.
async fn settles(
    c: &reqwest::Client,
    url: &str,
    auth: &str,
    limit: Duration,
    cond: impl Fn(&Got) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let g = send(c.get(url).header("authorization", auth)).await;
        if cond(&g) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{url} for {auth}: still {:?} ({}) after {limit:?}",
            g.text(),
            g.header("cache-status")
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 2. Comment analysis

async fn comments_origin() -> Origin {
    let calls = Arc::new(AtomicU64::new(0));
    Origin::start(move |req| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let path = req.uri.path().to_string();
            let user = req
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = if path == "/users/me/quota" {
                format!(r#"{{"user":"{user}","remaining":42,"call":{call}}}"#)
            } else {
                format!(
                    r#"{{"path":"{path}","query":"{}","call":{call}}}"#,
                    req.uri.query().unwrap_or("")
                )
            };
            ok(&[("content-type", "application/json")], body)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_comment_analysis() {
    comment_analysis(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_comment_analysis_on_two_instances_sharing_redis() {
    comment_analysis(true).await;
}

async fn comment_analysis(on_redis: bool) {
    // An hour in 6 s: 30 min is 3 s, 5 min is 500 ms.
    let speedup = 600;
    let origin = comments_origin().await;
    let fleet = Fleet::start(&recipe("comment-analysis", origin.addr, speedup), on_redis);
    let c = client();
    let run = Duration::from_secs(6);
    let mut rng = Rng(11);
    let (mut requests, started) = (0u64, Instant::now());
    let mut keys: HashSet<String> = HashSet::new();
    while started.elapsed() < run {
        let video = rng.popular(20);
        let user = rng.below(30);
        let path = match rng.below(5) {
            0 => format!("/analysis/{video}"),
            1 => {
                let max = [20, 50][rng.below(2) as usize];
                let order = ["top", "new"][rng.below(2) as usize];
                keys.insert(format!("/videos/{video}/comments?max={max}&order={order}"));
                // Tracking parameters and cache busters do not make new keys.
                format!(
                    "/videos/{video}/comments?order={order}&max={max}&utm_source=feed&_={}",
                    rng.next() % 1000
                )
            }
            2 => format!("/videos/{video}/transcript"),
            3 => format!("/videos/{video}"),
            _ => "/users/me/quota".to_string(),
        };
        if !path.contains("comments") {
            keys.insert(if path == "/users/me/quota" {
                format!("{path}#{user}")
            } else {
                path.clone()
            });
        }
        let g = send(
            c.get(fleet.at(requests).url(&path))
                .header("authorization", format!("Bearer u{user}")),
        )
        .await;
        assert_eq!(g.status, 200);
        requests += 1;
    }
    let with = origin.total();
    let elapsed = started.elapsed();
    // Each key costs at most one call per ttl over the run (plus the first), whichever
    // instance is asked.
    let bound: u64 = keys
        .iter()
        .map(|k| {
            let ttl = if k.starts_with("/analysis")
                || (k.starts_with("/videos/") && k.matches('/').count() == 2)
            {
                3_600_000
            } else if k.contains("comments") {
                1_800_000
            } else if k.contains("transcript") {
                7_200_000
            } else {
                300_000
            } / speedup;
            elapsed.as_millis() as u64 / ttl + 1
        })
        .sum();
    assert!(
        with >= keys.len() as u64 - 5,
        "{with} calls for {} keys",
        keys.len()
    );
    assert!(
        with <= bound,
        "{with} upstream calls, more than the {bound} the ttls allow"
    );
    assert!(
        with * 3 < requests,
        "{with} upstream calls for {requests} requests"
    );

    // Everything of one video goes with one tag, on every instance.
    let (first, other) = (fleet.at(0), fleet.at(1));
    let video3 = [
        "/analysis/3",
        "/videos/3",
        "/videos/3/transcript",
        "/videos/3/comments?max=20&order=top",
    ];
    let mut before = Vec::new();
    for p in video3 {
        let one = send(c.get(first.url(p)).header("authorization", "Bearer u1")).await;
        let again = send(c.get(other.url(p)).header("authorization", "Bearer u2")).await;
        assert_eq!(again.x_cache(), "HIT", "{p} is shared between callers");
        assert_eq!(again.text(), one.text());
        before.push(one.text());
    }
    let r =
        send(admin(&c, first, Method::POST, "/admin/invalidate").body(r#"{"tags":["video:3"]}"#))
            .await;
    let dropped: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    // The four above, and whatever other comment variants the run left.
    assert!(dropped["invalidated"].as_u64().unwrap() >= 4, "{dropped}");
    for (p, old) in video3.iter().zip(&before) {
        let after = send(c.get(first.url(p)).header("authorization", "Bearer u1")).await;
        assert_eq!(
            after.x_cache(),
            "MISS",
            "{p} after its video's tag was invalidated"
        );
        settles(
            &c,
            &other.url(p),
            "Bearer u2",
            Duration::from_secs(1),
            |g| g.text() != *old,
        )
        .await;
    }

    // One user's entries go with their identity; everyone else's stay.
    let quota =
        |l: &Larder, u: &str| send(c.get(l.url("/users/me/quota")).header("authorization", u));
    let u1 = quota(first, "Bearer u1").await.text();
    let u2 = quota(first, "Bearer u2").await.text();
    assert_eq!(quota(other, "Bearer u1").await.text(), u1);
    let r =
        send(admin(&c, first, Method::POST, "/admin/invalidate").body(r#"{"user":"Bearer u1"}"#))
            .await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);
    assert_eq!(quota(first, "Bearer u1").await.x_cache(), "MISS");
    settles(
        &c,
        &other.url("/users/me/quota"),
        "Bearer u1",
        Duration::from_secs(1),
        |g| g.text() != u1,
    )
    .await;
    for l in [first, other] {
        let g = quota(l, "Bearer u2").await;
        assert_eq!(
            (g.x_cache(), g.text()),
            ("HIT", u2.clone()),
            "another user's entry stays"
        );
    }

    report(
        &format!("comment-analysis, {} (an hour in 6 s)", fleet.describe()),
        with,
        requests,
        requests,
    );
}

// ---------------------------------------------------------------------------------------
// 3. Job progress polling

#[tokio::test(flavor = "multi_thread")]
async fn recipe_job_polling() {
    job_polling(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_job_polling_on_two_instances_sharing_redis() {
    job_polling(true).await;
}

async fn job_polling(on_redis: bool) {
    // 2 minutes in 6 s: polls every 100-150 ms (2-3 s), the 30 s ttl is 1.5 s, a state
    // change every second (20 s).
    let speedup = 20;
    let states: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0; 10]));
    let gets = Arc::new(AtomicU64::new(0));
    let (s2, g2) = (states.clone(), gets.clone());
    let origin = Origin::start(move |req| {
        let (states, gets) = (s2.clone(), g2.clone());
        async move {
            let parts: Vec<&str> = req.uri.path().trim_start_matches('/').split('/').collect();
            let job: usize = parts.get(3).and_then(|j| j.parse().ok()).unwrap_or(0) % 10;
            if req.method == Method::POST {
                states.lock()[job] += 1;
                return ok(&[], "changed");
            }
            gets.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let v = states.lock()[job];
            ok(
                &[("content-type", "application/json")],
                format!(r#"{{"job":{job},"version":{v}}}"#),
            )
        }
    })
    .await;
    let fleet = Fleet::start(&recipe("job-polling", origin.addr, speedup), on_redis);
    let urls: Vec<String> = fleet.larders.iter().map(|l| l.url("")).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    // 100 users, 10 on each of 10 jobs; a load balancer alternates their polls.
    let users = 100u64;
    let polling_since = Instant::now();
    let clients: Vec<_> = (0..users)
        .map(|i| {
            let (urls, stop, polls) = (urls.clone(), stop.clone(), polls.clone());
            tokio::spawn(async move {
                let c = client();
                let mut rng = Rng(1000 + i);
                let mut n = i as usize;
                while !stop.load(Ordering::SeqCst) {
                    let url = &urls[n % urls.len()];
                    n += 1;
                    let g = send(
                        c.get(format!("{url}/api/v2/jobs/{}", i % 10))
                            .header("authorization", format!("Bearer user{i}")),
                    )
                    .await;
                    assert_eq!(g.status, 200);
                    polls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100 + rng.below(50))).await;
                }
            })
        })
        .collect();
    // State changes during the run: right after one, polls see the new state (on another
    // instance, once pub/sub has carried the invalidation there).
    let c = client();
    let started = Instant::now();
    let mut mutations = 0u64;
    let mut rewarmed_hits = 0u64;
    let mut slowest_elsewhere = Duration::ZERO;
    let run = Duration::from_secs(6);
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let job = mutations % 10;
        let action = if mutations.is_multiple_of(2) {
            "approve"
        } else {
            "render"
        };
        let here = fleet.at(mutations);
        let r = send(
            c.post(here.url(&format!("/api/v2/jobs/{job}/{action}")))
                .header("authorization", format!("Bearer user{job}")),
        )
        .await;
        assert_eq!(r.status, 200);
        let expected = format!(
            r#"{{"job":{job},"version":{}}}"#,
            states.lock()[job as usize]
        );
        for viewer in [job, job + 10, job + 50] {
            let auth = format!("Bearer user{viewer}");
            let path = format!("/api/v2/jobs/{job}");
            let g = send(c.get(here.url(&path)).header("authorization", &auth)).await;
            assert_eq!(g.text(), expected, "a stale status after the {action}");
            if viewer == job {
                // The user who made the change: re-warmed with their identity.
                rewarmed_hits += u64::from(g.x_cache() == "HIT");
            }
            let elsewhere = fleet.at(mutations + 1);
            let took = settles(
                &c,
                &elsewhere.url(&path),
                &auth,
                Duration::from_secs(1),
                |g| g.text() == expected,
            )
            .await;
            slowest_elsewhere = slowest_elsewhere.max(took);
        }
        mutations += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let polled_for = polling_since.elapsed();
    let (polls, upstream) = (polls.load(Ordering::SeqCst), gets.load(Ordering::SeqCst));
    assert!(polls > 2_000, "{polls} polls");
    // Each user's view costs at most one call per ttl, plus one after each change to its job.
    let ttl_ms = 30_000 / speedup;
    let bound = users * (polled_for.as_millis() as u64 / ttl_ms + 1) + mutations * (users / 10);
    assert!(
        upstream <= bound,
        "{upstream} upstream calls for {polls} polls: more than {bound}"
    );
    assert!(
        upstream * 100 <= polls * 15,
        "{upstream} upstream calls for {polls} polls: more than 15%"
    );
    if on_redis {
        eprintln!(
            "RECIPE job-polling: a change reached the other instance within {slowest_elsewhere:?}"
        );
    }
    // Without rewarm_on_invalidate each of these polls was a miss.
    assert_eq!(rewarmed_hits, mutations, "the changer's next poll is a hit");
    eprintln!(
        "RECIPE job-polling: the changer's poll right after each of {mutations} changes: {rewarmed_hits} hits with rewarm_on_invalidate (0 without)"
    );
    report(
        &format!("job-polling, {} (2 min in 6 s)", fleet.describe()),
        upstream,
        polls,
        polls,
    );
}

// ---------------------------------------------------------------------------------------
// 4. Project dashboards

#[tokio::test(flavor = "multi_thread")]
async fn recipe_project_dashboards() {
    let origin = Origin::start(|req| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if req.method != Method::GET {
            return ok(&[], "updated");
        }
        let user = req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        ok(
            &[("content-type", "application/json")],
            format!(r#"{{"path":"{}","user":"{user}"}}"#, req.uri),
        )
    })
    .await;
    let larder = Larder::start(&recipe("project-dashboards", origin.addr, 1));
    let c = client();
    let as_user = |path: &str, user: &str| {
        send(
            c.get(larder.url(path))
                .header("authorization", format!("Bearer {user}")),
        )
    };
    // The analyst's active dashboards were warmed with their credentials.
    let started = Instant::now();
    while origin.calls("/projects/p2/dashboard") == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "not warmed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        as_user("/projects/p1/dashboard", "analyst-1")
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(
        as_user("/projects/p1/dashboard", "analyst-2")
            .await
            .x_cache(),
        "MISS",
        "per user"
    );

    let pages = ["", "/dashboard", "/export", "/stats"];
    let mut requests = 0;
    for round in 0..5 {
        for p in ["p1", "p2", "p3"] {
            for page in pages {
                for user in ["analyst-1", "analyst-2"] {
                    as_user(&format!("/projects/{p}{page}"), user).await;
                    requests += 1;
                }
            }
        }
        as_user("/projects", "analyst-1").await;
        as_user(&format!("/search?q=term{}&page=1", round % 2), "analyst-1").await;
        requests += 2;
    }
    let before = origin.total();
    // A classification update drops only that project's dashboard and export.
    let r = send(
        c.post(larder.url("/projects/p1/classifications"))
            .header("authorization", "Bearer analyst-1")
            .body("{}"),
    )
    .await;
    assert_eq!(r.status, 200);
    for (page, expect) in [
        ("/dashboard", "MISS"),
        ("/export", "MISS"),
        ("", "HIT"),
        ("/stats", "HIT"),
    ] {
        assert_eq!(
            as_user(&format!("/projects/p1{page}"), "analyst-2")
                .await
                .x_cache(),
            expect,
            "p1{page}"
        );
    }
    assert_eq!(
        as_user("/projects/p2/dashboard", "analyst-2")
            .await
            .x_cache(),
        "HIT"
    );
    // A project update drops everything of that project (and the lists).
    let r = send(
        c.put(larder.url("/projects/p2"))
            .header("authorization", "Bearer analyst-1")
            .body("{}"),
    )
    .await;
    assert_eq!(r.status, 200);
    for page in pages {
        assert_eq!(
            as_user(&format!("/projects/p2{page}"), "analyst-1")
                .await
                .x_cache(),
            "MISS",
            "p2{page}"
        );
    }
    assert_eq!(
        as_user("/projects/p3/export", "analyst-1").await.x_cache(),
        "HIT"
    );
    assert_eq!(
        as_user("/projects", "analyst-1").await.x_cache(),
        "MISS",
        "the list carries the project's change"
    );
    report("project-dashboards", before, requests, requests);
}

// ---------------------------------------------------------------------------------------
// 5. API response middleware: the same config as a sidecar and as a Tower layer

/// The scenario, against any base URL; `calls` reads the API's counters.
async fn api_scenario(base: &str, api: &axum_app::Api) -> u64 {
    let c = client();
    let url = |p: &str| format!("{base}{p}");
    for _ in 0..3 {
        let h = send(c.get(url("/health"))).await;
        assert_eq!(h.header("cache-control"), "public, max-age=60");
    }
    assert_eq!(api.calls("health"), 1);
    let v = send(c.get(url("/version"))).await;
    assert_eq!(v.header("cache-control"), "public, max-age=3600");

    // Per-user lists: never one user's answer for another.
    let alice = send(c.get(url("/jobs")).header("authorization", "Bearer alice")).await;
    let bob = send(c.get(url("/jobs")).header("authorization", "Bearer bob")).await;
    let alice2 = send(c.get(url("/jobs")).header("authorization", "Bearer alice")).await;
    assert!(alice.text().contains(r#""owner":"alice""#) && bob.text().contains(r#""owner":"bob""#));
    assert_eq!(
        (alice2.x_cache(), alice2.body.clone()),
        ("HIT", alice.body.clone())
    );
    assert_eq!(alice.header("cache-control"), "private, max-age=120");
    assert_eq!(api.calls("jobs"), 2);
    let anonymous = send(c.get(url("/jobs"))).await;
    assert_eq!(anonymous.x_cache(), "BYPASS");

    // A job, changed: the next read sees the change.
    let job = || {
        send(
            c.get(url("/jobs/7"))
                .header("authorization", "Bearer alice"),
        )
    };
    assert!(job().await.text().contains("running"));
    assert_eq!(job().await.x_cache(), "HIT");
    let put = send(
        c.put(url("/jobs/7"))
            .header("authorization", "Bearer alice")
            .body("approved"),
    )
    .await;
    assert_eq!(put.status, 200);
    let after = job().await;
    assert_eq!(after.x_cache(), "MISS");
    assert!(after.text().contains(r#""state":"approved""#));

    // Large bodies are stored compressed and served to both kinds of client.
    let plain = send(
        c.get(url("/jobs/7/download"))
            .header("authorization", "Bearer alice"),
    )
    .await;
    let gz = send(
        c.get(url("/jobs/7/download"))
            .header("authorization", "Bearer alice")
            .header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(
        (gz.x_cache(), gz.header("content-encoding")),
        ("HIT", "gzip")
    );
    assert!(gz.body.len() * 4 < plain.body.len());
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.body[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, plain.body);
    assert_eq!(plain.header("cache-control"), "private, max-age=300");
    assert_eq!(api.calls("download"), 1);
    // Requests made above.
    14
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_api_middleware_as_sidecar_and_as_layer() {
    // As a sidecar: the API alone on a port, larder in front.
    let api = Arc::new(axum_app::Api::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let routes = axum_app::routes(api.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    let larder = Larder::start(&recipe("api-middleware", api_addr, 1));
    let requests = api_scenario(&larder.url(""), &api).await;
    let sidecar_calls = api.total();

    // As a layer: the example app, configured by the same file.
    let api = Arc::new(axum_app::Api::default());
    let path = format!(
        "{}/config/examples/api-middleware.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let config = larder::Config::load(&path).unwrap();
    assert_eq!(config.store.memory_max, 100 << 20);
    let (app, _cache) = axum_app::app(&config, api.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    api_scenario(&format!("http://{addr}"), &api).await;
    assert_eq!(
        api.total(),
        sidecar_calls,
        "the same upstream calls either way"
    );
    report("api-middleware", sidecar_calls, requests, requests);
}

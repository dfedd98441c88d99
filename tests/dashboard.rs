//! The dashboard in a real browser: headless Chromium loads `/admin/`, signs in with the
//! admin token, and shows live numbers after traffic. A screenshot is kept in
//! `target/artifacts/dashboard.png`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use http::Method;

fn chromium(args: &[&str], profile: &std::path::Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text inside the element with this id in a dumped DOM.
/// The page at `url` as headless Chromium renders it within `budget_ms` of virtual time.
async fn dump_dom(url: &str, profile: &std::path::Path, budget_ms: u32) -> String {
    let (url, profile) = (url.to_string(), profile.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let budget = format!("--virtual-time-budget={budget_ms}");
        chromium(&[&budget, "--dump-dom", &url], &profile)
    })
    .await
    .unwrap()
}

fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    &rest[open..open + close]
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_signs_in_and_shows_live_numbers() {
    let origin =
        Origin::start(|_| async { ok(&[("cache-control", "max-age=600")], "x".repeat(2000)) })
            .await;
    let rules =
        "[[rule]]\nname = \"video\"\npath = \"/v/{id}\"\ntags = [\"v:{id}\"]\nmiss_cost = 0.01\n";
    let larder = Larder::start(&config(origin.addr, "", rules));
    for i in 0..5 {
        for _ in 0..4 {
            get(&larder.url(&format!("/v/{i}"))).await;
        }
    }
    // The page itself needs no token; the data does.
    let page = get(&larder.admin_url("/admin/")).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.text().contains("id=\"login-form\""));
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "no external assets"
    );
    assert_eq!(
        send(client().get(larder.admin_url("/admin/stats")))
            .await
            .status,
        401
    );

    let profile = std::env::temp_dir().join(format!("larder-chromium-{}", std::process::id()));
    let url = format!("{}#token={TOKEN}", larder.admin_url("/admin/"));
    let dom = dump_dom(&url, &profile, 5000).await;
    assert!(
        dom.contains("data-state=\"live\""),
        "the page did not sign in and load:\n{dom}"
    );
    assert_eq!(text_of(&dom, "hits"), "15");
    assert_eq!(text_of(&dom, "misses"), "5");
    assert_eq!(text_of(&dom, "hit-ratio"), "75.0%");
    assert_eq!(text_of(&dom, "requests-avoided"), "15");
    assert_eq!(text_of(&dom, "cost-saved"), "0.150");
    assert!(dom.contains("<td>/v/0</td>"), "top keys by path");
    assert!(!dom.contains(TOKEN), "the token does not stay in the page");

    // A wrong token lands back on the sign-in form with the reason.
    let wrong = format!("{}#token=nope", larder.admin_url("/admin/"));
    let dom = dump_dom(&wrong, &profile, 3000).await;
    assert!(
        text_of(&dom, "login-error").contains("bearer token"),
        "{dom}"
    );

    // The invalidate form works through the same API.
    let r = send(
        admin(&client(), &larder, Method::POST, "/admin/invalidate").body(r#"{"tags":["v:0"]}"#),
    )
    .await;
    assert_eq!(r.text(), r#"{"invalidated":1}"#);

    // Keep a screenshot as an artifact.
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            chromium(
                &[
                    "--virtual-time-budget=5000",
                    "--window-size=1280,1000",
                    &format!("--screenshot={}", shot.display()),
                    &url,
                ],
                &profile,
            );
            let _ = std::fs::remove_dir_all(&profile);
        }
    })
    .await
    .unwrap();
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "screenshot missing or empty ({size} bytes)");
}

/// The element with this id, with everything inside it, in a dumped DOM.
fn element_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let end = rest.find("</div>").unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_health_errors_not_stored_tiers_and_budgets() {
    let redis = Redis::start_with(
        free_port(),
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let dir = std::env::temp_dir().join(format!("larder-dash-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let origin = Origin::start(|req| async move {
        if req.uri.path().starts_with("/c/") {
            return ok(&[("set-cookie", "s=1")], "cookie");
        }
        ok(&[("cache-control", "max-age=600")], "x".repeat(2000))
    })
    .await;
    let dead = free_port();
    let rest = format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n\n[store.disk]\npath = \"{}\"\n\n\
         [[upstream]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{dead}\"\nconnect_retries = 0\n\n\
         [[rule]]\nname = \"video\"\npath = \"/v/{{id}}\"\n\n\
         [[rule]]\nname = \"cookies\"\npath = \"/c/{{id}}\"\nttl = \"1h\"\n\n\
         [[rule]]\nname = \"gone\"\npath = \"/gone/{{id}}\"\nupstream = \"dead\"\n",
        redis.url(),
        dir.display()
    );
    let larder = Larder::start(&config(origin.addr, "budget = \"1000/day\"", &rest));
    for i in 0..12 {
        get(&larder.url(&format!("/v/{i}"))).await;
        get(&larder.url(&format!("/c/{i}"))).await;
        get(&larder.url(&format!("/gone/{i}"))).await;
    }
    let polled = eventually(std::time::Duration::from_secs(10), || async {
        let s = send(admin(&client(), &larder, Method::GET, "/admin/stats")).await;
        s.text().contains("\"used_bytes\"")
    })
    .await;
    assert!(polled, "redis memory was polled");
    let profile =
        std::env::temp_dir().join(format!("larder-chromium-panels-{}", std::process::id()));
    let url = format!("{}#token={TOKEN}", larder.admin_url("/admin/"));
    let dom = dump_dom(&url, &profile, 5000).await;
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(dom.contains("data-state=\"live\""), "{dom}");
    assert_eq!(text_of(&dom, "health-status"), "degraded", "{dom}");
    assert!(
        element_of(&dom, "health-reasons").contains("upstream dead"),
        "{dom}"
    );
    assert!(
        dom.contains("<td>dead</td><td>connect</td><td class=\"n\">12</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td>cookies</td><td>set-cookie</td><td class=\"n\">12</td>"),
        "{dom}"
    );
    assert!(text_of(&dom, "disk-bytes").contains(" / "), "{dom}");
    assert!(
        text_of(&dom, "redis-memory").contains("/ 64.0 MiB"),
        "{dom}"
    );
    assert!(
        element_of(&dom, "upstreams").contains("<td>default</td>"),
        "{dom}"
    );
}

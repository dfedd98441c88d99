//! `larder ctl` against a running larder: stats, invalidation by tag, URL, prefix and user,
//! purge (only with `--yes`), warm and reload; and clear errors when the admin API is
//! unreachable or refuses the token.

mod common;

use std::process::Command;

use common::*;

/// Runs `larder ctl --admin <admin> args…` with `token` in the environment; exit code,
/// stdout, stderr.
async fn ctl(admin: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(larder_bin());
    cmd.arg("ctl").arg("--admin").arg(admin).args(args);
    cmd.env_remove("LARDER_ADMIN_TOKEN")
        .env_remove("LARDER_ADMIN_URL");
    if let Some(t) = token {
        cmd.env("LARDER_ADMIN_TOKEN", t);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run larder ctl"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rules() -> &'static str {
    r#"
[users]
sources = ["header:X-User-Id"]

[[rule]]
name = "jobs"
path = "/jobs/{id}"
ttl = "1h"
tags = ["job:{id}"]

[[rule]]
name = "me"
path = "/me/{what}"
ttl = "1h"
per_user = true
"#
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_drives_a_running_larder() {
    let origin = Origin::start(|req| async move { ok(&[], req.uri.path().to_string()) }).await;
    let larder = Larder::start(&config(origin.addr, "", rules()));
    let admin = format!("http://{}", larder.admin);
    let t = Some(TOKEN);
    for p in ["/jobs/1", "/jobs/2", "/jobs/3", "/jobs/4"] {
        get(&larder.url(p)).await;
    }
    send(client().get(larder.url("/me/a")).header("x-user-id", "42")).await;

    let (code, out, _) = ctl(&admin, None, &["health"]).await;
    assert_eq!(
        (code, out.trim()),
        (0, r#"{"status":"ok","store":"memory"}"#)
    );
    let (code, out, err) = ctl(&admin, t, &["stats"]).await;
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["misses"], 5, "{out}");

    let (code, out, _) = ctl(&admin, t, &["invalidate", "--tag", "job:1"]).await;
    assert_eq!((code, out.trim()), (0, r#"{"invalidated":1}"#));
    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "MISS");
    let (_, out, _) = ctl(&admin, t, &["invalidate", "--url", "/jobs/2"]).await;
    assert_eq!(out.trim(), r#"{"invalidated":1}"#);
    let (_, out, _) = ctl(&admin, t, &["invalidate", "--user-id", "42"]).await;
    assert_eq!(out.trim(), r#"{"invalidated":1}"#);
    let (_, out, _) = ctl(&admin, t, &["invalidate", "--prefix", "/jobs/"]).await;
    assert_eq!(out.trim(), r#"{"invalidated":3}"#);

    // Nothing to invalidate is a usage error; purge wants --yes.
    let (code, _, _) = ctl(&admin, t, &["invalidate"]).await;
    assert_eq!(code, 2);
    get(&larder.url("/jobs/9")).await;
    let (code, _, err) = ctl(&admin, t, &["purge"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(get(&larder.url("/jobs/9")).await.x_cache(), "HIT");
    let (code, out, _) = ctl(&admin, t, &["purge", "--yes"]).await;
    assert_eq!((code, out.trim()), (0, r#"{"purged":1}"#));

    let (code, out, _) = ctl(&admin, t, &["warm", "/jobs/7", "/jobs/8"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(r#""warmed":2"#), "{out}");
    assert_eq!(get(&larder.url("/jobs/7")).await.x_cache(), "HIT");

    // --admin may also follow the subcommand.
    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_larder"))
                .args(["ctl", "stats", "--admin", &admin])
                .env("LARDER_ADMIN_TOKEN", TOKEN)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, out, _) = ctl(&admin, t, &["reload"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(r#""reloaded":true"#), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_says_why_it_cannot_do_it() {
    let origin = Origin::start(|_| async { ok(&[], "x") }).await;
    let larder = Larder::start(&config(origin.addr, "", rules()));
    let admin = format!("http://{}", larder.admin);

    let (code, _, err) = ctl(&admin, None, &["stats"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("LARDER_ADMIN_TOKEN"), "{err}");
    let (code, _, err) = ctl(&admin, Some("wrong"), &["stats"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("refused the token"), "{err}");

    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = ctl(&closed, Some(TOKEN), &["stats"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    let (code, _, err) = ctl("localhost", Some(TOKEN), &["stats"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not an http"), "{err}");
    // The admin API's own refusal is passed on.
    let (code, _, err) = ctl(&admin, Some(TOKEN), &["warm", "no-slash"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("400"), "{err}");
}

/// A fake admin API (what a hostile or mistaken `--admin` URL may reach): answers every
/// request with `head`, then `body` forever (`endless`) or once.
async fn fake_admin(head: &'static str, body: &'static [u8], endless: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(head.as_bytes()).await;
                loop {
                    if s.write_all(body).await.is_err() || !endless {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_reads_a_bounded_answer_and_never_prints_terminal_controls() {
    // An endless answer: ctl stops at its bound, says so, and exits 1.
    static MIB: [u8; 1 << 20] = [b'a'; 1 << 20];
    let endless = fake_admin("HTTP/1.1 200 OK\r\n\r\n", &MIB, true).await;
    let started = std::time::Instant::now();
    let (code, _, err) = ctl(&endless, Some(TOKEN), &["stats"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("read up to"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // An answer carrying escape sequences (clear the screen, retitle the window).
    let hostile = fake_admin(
        "HTTP/1.1 200 OK\r\ncontent-length: 26\r\n\r\n",
        b"ok\x1b[2J\x1b]0;pwned\x07 done.....",
        false,
    )
    .await;
    let (code, out, _) = ctl(&hostile, None, &["health"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("\\u{1b}[2J"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_needs_yes_for_a_scope_that_matches_everything() {
    let origin = Origin::start(|req| async move { ok(&[], req.uri.path().to_string()) }).await;
    let larder = Larder::start(&config(origin.addr, "", rules()));
    let admin = format!("http://{}", larder.admin);
    get(&larder.url("/jobs/1")).await;
    // An unset shell variable: `larder ctl invalidate --prefix "$DIR"`.
    let (code, _, err) = ctl(&admin, Some(TOKEN), &["invalidate", "--prefix", ""]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "HIT");
    let (code, out, err) = ctl(
        &admin,
        Some(TOKEN),
        &["invalidate", "--prefix", "", "--yes"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"invalidated\":1"), "{out}");
    assert_eq!(get(&larder.url("/jobs/1")).await.x_cache(), "MISS");
}

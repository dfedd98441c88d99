//! Users from verified JWTs (`jwt:CLAIM`) against the real binary: HS256, RS256 and ES256
//! tokens verified, forged and expired ones are no user (never another user's entry, and no
//! falling through to a header a forger can set), `{"user_id": …}` invalidation for JWT and
//! header users, and `{user_id}` in tags so a mutation drops one user's entries.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;
use http::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "jwt-test-secret";

/// An origin that answers with who asked (the raw credentials), so a test sees at once if
/// one user's answer reached another.
async fn origin() -> Origin {
    Origin::start(|req| async move {
        let h = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        ok(
            &[("content-type", "text/plain")],
            format!(
                "{} for auth={} uid={}",
                req.uri.path(),
                h("authorization"),
                h("x-user-id")
            ),
        )
    })
    .await
}

fn users_config(origin: SocketAddr, users: &str) -> String {
    config(
        origin,
        "",
        &format!(
            r#"
[users]
sources = ["jwt:sub", "header:X-User-Id"]
{users}

[[rule]]
name = "me"
path = "/me/{{what}}"
ttl = "1h"
per_user = true

[[rule]]
name = "quota"
path = "/quota"
ttl = "1h"
per_user = true
tags = ["quota:{{user_id}}"]

[[rule]]
name = "plan"
path = "/plan"
cache = false
invalidate_on = ["POST"]
invalidates = ["quota:{{user_id}}"]
"#
        ),
    )
}

fn start(origin: SocketAddr) -> Larder {
    Larder::start_with_env(
        &users_config(origin, ""),
        &[
            ("LARDER_ADMIN_TOKEN", TOKEN),
            ("LARDER_JWT_SECRET", SECRET),
            ("LARDER_USER_SECRET", "user-secret"),
        ],
    )
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256(claims: serde_json::Value, key: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn as_user(larder: &Larder, path: &str, token: Option<&str>, uid: Option<&str>) -> Got {
    let mut req = client().get(larder.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(u) = uid {
        req = req.header("x-user-id", u);
    }
    send(req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_tokens_are_users_and_forged_or_expired_ones_are_nobody() {
    let origin = origin().await;
    let larder = start(origin.addr);
    let alice = hs256(json!({"sub": "alice", "exp": now() + 3600}), SECRET);
    let first = as_user(&larder, "/me/profile", Some(&alice), None).await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(
        as_user(&larder, "/me/profile", Some(&alice), None)
            .await
            .x_cache(),
        "HIT"
    );
    // Another token for the same subject is the same user.
    let alice_again = hs256(
        json!({"sub": "alice", "exp": now() + 7200, "iat": now()}),
        SECRET,
    );
    let again = as_user(&larder, "/me/profile", Some(&alice_again), None).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.text(), first.text());

    // A token signed with another key, an expired one, one not valid yet, one with a
    // string where `exp` must be a number: nobody. The request passes through, and never
    // gets alice's entry.
    let forged = hs256(json!({"sub": "alice", "exp": now() + 3600}), "guessed");
    let expired = hs256(json!({"sub": "alice", "exp": now() - 120}), SECRET);
    let early = hs256(
        json!({"sub": "alice", "exp": now() + 3600, "nbf": now() + 600}),
        SECRET,
    );
    let typed = hs256(json!({"sub": "alice", "exp": "tomorrow"}), SECRET);
    for bad in [&forged, &expired, &early, &typed] {
        let g = as_user(&larder, "/me/profile", Some(bad), None).await;
        assert_eq!(g.x_cache(), "BYPASS", "{}", g.header("cache-status"));
        assert_eq!(g.text(), format!("/me/profile for auth=Bearer {bad} uid=-"));
        // A header the forger also sets does not choose the user either.
        let g = as_user(&larder, "/me/profile", Some(bad), Some("alice")).await;
        assert_eq!(g.x_cache(), "BYPASS");
    }
    // Without a token, the next source is used.
    let bob = as_user(&larder, "/me/profile", None, Some("bob")).await;
    assert_eq!(bob.x_cache(), "MISS");
    assert_eq!(bob.text(), "/me/profile for auth=- uid=bob");
    assert_eq!(origin.calls("/me/profile"), 2 + 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_id_invalidation_drops_one_users_entries_for_jwt_and_header_users() {
    let origin = origin().await;
    let larder = start(origin.addr);
    let c = client();
    let alice = hs256(json!({"sub": "alice", "exp": now() + 3600}), SECRET);
    let carol = hs256(json!({"sub": "carol", "exp": now() + 3600}), SECRET);
    for path in ["/me/a", "/me/b"] {
        as_user(&larder, path, Some(&alice), None).await;
        as_user(&larder, path, Some(&carol), None).await;
        as_user(&larder, path, None, Some("42")).await;
    }
    let r =
        send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"user_id":"alice"}"#))
            .await;
    assert_eq!(r.text(), r#"{"invalidated":2}"#);
    let r = send(admin(&c, &larder, Method::POST, "/admin/invalidate").body(r#"{"user_id":"42"}"#))
        .await;
    assert_eq!(r.text(), r#"{"invalidated":2}"#);
    for path in ["/me/a", "/me/b"] {
        assert_eq!(
            as_user(&larder, path, Some(&alice), None).await.x_cache(),
            "MISS"
        );
        assert_eq!(
            as_user(&larder, path, None, Some("42")).await.x_cache(),
            "MISS"
        );
        assert_eq!(
            as_user(&larder, path, Some(&carol), None).await.x_cache(),
            "HIT"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mutation_drops_only_its_users_tagged_entries() {
    let origin = origin().await;
    let larder = start(origin.addr);
    let alice = hs256(json!({"sub": "alice", "exp": now() + 3600}), SECRET);
    let carol = hs256(json!({"sub": "carol", "exp": now() + 3600}), SECRET);
    for t in [&alice, &carol] {
        assert_eq!(
            as_user(&larder, "/quota", Some(t), None).await.x_cache(),
            "MISS"
        );
        assert_eq!(
            as_user(&larder, "/quota", Some(t), None).await.x_cache(),
            "HIT"
        );
    }
    // Alice changes plan: her quota is dropped, carol's stays.
    let r = send(client().post(larder.url("/plan")).bearer_auth(&alice)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        as_user(&larder, "/quota", Some(&alice), None)
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        as_user(&larder, "/quota", Some(&carol), None)
            .await
            .x_cache(),
        "HIT"
    );
}

/// Runs `openssl` with `args`; whether it succeeded.
fn openssl(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_and_es256_tokens_verify_with_a_pem_public_key() {
    let dir = std::env::temp_dir().join(format!("larder-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    for (alg, gen) in [
        (
            "rs",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        (
            "es",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
    ] {
        let private = path(&format!("{alg}.key"));
        let public = path(&format!("{alg}.pub"));
        let mut args = gen.clone();
        args.extend(["-out", &private]);
        assert!(openssl(&args), "openssl genpkey");
        assert!(openssl(&[
            "pkey", "-in", &private, "-pubout", "-out", &public
        ]));
    }
    let origin = origin().await;
    type KeyOf = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let kinds: [(&str, Algorithm, KeyOf); 2] = [
        ("rs", Algorithm::RS256, EncodingKey::from_rsa_pem),
        ("es", Algorithm::ES256, EncodingKey::from_ec_pem),
    ];
    for (alg, algorithm, key_of) in kinds {
        let larder = Larder::start(&users_config(
            origin.addr,
            &format!("jwt_public_key = \"{}\"", path(&format!("{alg}.pub"))),
        ));
        let pem = std::fs::read(path(&format!("{alg}.key"))).unwrap();
        let key: EncodingKey = key_of(&pem).unwrap();
        let claims = json!({"sub": format!("{alg}-user"), "exp": now() + 600});
        let token = encode(&Header::new(algorithm), &claims, &key).unwrap();
        assert_eq!(
            as_user(&larder, "/me/x", Some(&token), None)
                .await
                .x_cache(),
            "MISS"
        );
        assert_eq!(
            as_user(&larder, "/me/x", Some(&token), None)
                .await
                .x_cache(),
            "HIT"
        );
        // The same claims as HS256, keyed with the public key's bytes: refused (the
        // algorithm must be the key's).
        let confused = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(&std::fs::read(path(&format!("{alg}.pub"))).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            as_user(&larder, "/me/x", Some(&confused), None)
                .await
                .x_cache(),
            "BYPASS"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_jwt_source_without_a_key_is_refused_at_start() {
    let config = write_config(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\n[users]\nsources = [\"jwt:sub\"]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("LARDER_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LARDER_JWT_SECRET") && err.contains("jwt_public_key"),
        "{err}"
    );
}

//! The command line: `larder check` and `larder serve` on good and bad configs.

mod common;

use std::process::Command;

fn larder(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(args)
        .env_remove("LARDER_CONFIG")
        .env_remove("LARDER_USER_SECRET")
        .output()
        .expect("run larder");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_rules_of_the_example_config() {
    let (code, out, _) = larder(&["check", "--config", "config/larder.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("config config/larder.toml is valid"), "{out}");
    assert!(
        out.contains("job") && out.contains("/jobs/{job_id}") && out.contains("per_user"),
        "{out}"
    );
    assert!(out.contains("tags=[jobs, job:{job_id}]"), "{out}");
}

#[test]
fn config_errors_name_file_line_column_and_field() {
    let cases: &[(&str, &str)] = &[
        ("[proxy]\nlisten = \"localhost\"\n", ":2:10: proxy.listen: \"localhost\" is not a listen address"),
        ("[cache]\ndefault_tll = \"5m\"\n", ":2:1: cache.default_tll: unknown field `default_tll`"),
        ("[[rule]]\npath = \"/jobs/{id}\"\ntags = [\"job:{job_id}\"]\n", ":3:9: rule[0].tags[0]: template \"job:{job_id}\" names {job_id}, which the path pattern does not capture (captures: id)"),
        ("[[rule]]\npath = \"/a\"\nttl = \"0s\"\n", ":3:7: rule[0].ttl: ttl must be greater than zero"),
        ("[[rule]]\npath = \"/a\"\nmethods = [\"FETCH\"]\n", ":3:12: rule[0].methods[0]: unknown method \"FETCH\""),
        ("[store.disk]\nmax = \"1GiB\"\n", ":1:1: store.disk.path: missing field `path`"),
        ("[store.disk]\npath = \"/tmp/x\"\nwrite = \"sometimes\"\n", ":3:9: store.disk.write: unknown write mode \"sometimes\"; expected \"through\" or \"back\""),
        ("[store.disk]\npath = \"/tmp/x\"\nmax = \"1MiB\"\n", ":3:7: store.disk.max: must be at least 4MiB"),
        ("[[rule]]\npath = \"/a\"\ntiers = [\"disk\"]\n", ":3:10: rule[0].tiers[0]: the disk tier needs [store.disk]"),
        ("[[rule]]\npath = \"/a\"\ntiers = [\"memory\", \"redis\"]\n", ":3:20: rule[0].tiers[1]: the redis tier needs store.backend = \"redis\""),
        ("[[rule]]\npath = \"/a\"\ntiers = []\n", ":3:9: rule[0].tiers: needs at least one tier"),
        ("[[rule]]\npath = \"/a/{x\"\n", ":2:8: rule[0].path:"),
        ("[[rule]]\npath = \"regex:(\"\n", ":2:8: rule[0].path: invalid regex"),
        ("[cache]\ncompress_min = \"1 kilobyte\"\n", ":2:16: cache.compress_min: unknown unit"),
        ("[store]\nbackend = \"disk\"\n", ":2:11: store.backend: unknown backend \"disk\""),
        ("[cache\n", ":1:7: cache:"),
    ];
    for (text, expected) in cases {
        let path = common::write_config(text);
        let (code, _, err) = larder(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{text}");
        let want = format!("{}{expected}", path.display());
        assert!(
            err.starts_with(&want),
            "for {text:?}\n got: {err}\nwant: {want}"
        );
        // serve refuses with the same message.
        let (code, _, serve_err) = larder(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(serve_err.contains(&want), "{serve_err}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, err) = larder(&["check", "--config", "/nonexistent/larder.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("/nonexistent/larder.toml:1:1: (file): cannot read the config file"),
        "{err}"
    );
}

#[test]
fn serve_on_redis_with_per_user_rules_needs_the_user_secret() {
    // Instances with their own random secrets would neither share a user's entries nor
    // drop them all when that user is invalidated; larder refuses before listening.
    let port = common::free_port();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\n\n[[rule]]\npath = \"/me\"\nttl = \"5s\"\nper_user = true\n"
    );
    let path = common::write_config(&text);
    let (code, _, err) = larder(&["serve", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("per_user rules on the redis backend need the same user secret on every instance: set $LARDER_USER_SECRET"),
        "{err}"
    );
}

#[test]
fn environment_variables_fill_any_string_and_a_missing_one_is_named() {
    let path = common::write_config(
        "[proxy]\nupstream = \"${LARDER_TEST_UPSTREAM}\"\n\n[cache]\ndefault_ttl = \"${LARDER_TEST_TTL:-90s}\"\n",
    );
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_larder"));
        cmd.args(["check", "--config", path.to_str().unwrap()])
            .env_remove("LARDER_TEST_UPSTREAM")
            .env_remove("LARDER_TEST_TTL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&[("LARDER_TEST_UPSTREAM", "http://10.0.0.7:9000")]);
    assert_eq!(code, 0);
    assert!(out.contains("upstream=http://10.0.0.7:9000"), "{out}");
    assert!(out.contains("default_ttl=90s"), "{out}");
    let (_, out, _) = run(&[
        ("LARDER_TEST_UPSTREAM", "http://u"),
        ("LARDER_TEST_TTL", "2m"),
    ]);
    assert!(out.contains("default_ttl=2m"), "{out}");
    let (code, _, err) = run(&[]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{}:2:12: proxy.upstream: environment variable LARDER_TEST_UPSTREAM is not set",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn the_image_config_listens_everywhere_reads_the_environment_and_masks_secrets() {
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    for needed in [
        "COPY config/docker.toml /etc/larder/larder.toml",
        "ca-certificates",
        "HEALTHCHECK",
        "\"ctl\", \"health\"",
        "USER larder",
    ] {
        assert!(dockerfile.contains(needed), "Dockerfile lacks {needed}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["check", "--config", "config/docker.toml"])
        .env("LARDER_UPSTREAM", "https://api.example.com")
        .env("LARDER_BACKEND", "redis")
        .env("REDIS_URL", "redis://cache:6379/2")
        .env("REDIS_PASSWORD", "hunter2")
        .env("LARDER_DEFAULT_TTL", "42s")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("listen=0.0.0.0:8080"), "{out}");
    assert!(out.contains("admin: listen=0.0.0.0:9091"), "{out}");
    assert!(out.contains("upstream=https://api.example.com"), "{out}");
    assert!(out.contains("backend=redis"), "{out}");
    assert!(
        out.contains("redis_url=redis://:****@cache:6379/2"),
        "{out}"
    );
    assert!(out.contains("default_ttl=42s"), "{out}");
    assert!(!out.contains("hunter2"), "a secret was printed: {out}");
}

#[test]
fn the_loader_and_the_builder_refuse_a_rule_in_the_same_words() {
    use larder::Rule;
    use std::time::Duration;
    let cases: Vec<(&str, larder::RuleBuilder)> = vec![
        ("ttl = \"0s\"\n", Rule::get("/a").ttl(Duration::ZERO)),
        (
            "methods = [\"DELETE\"]\n",
            Rule::get("/a").methods([http::Method::DELETE]),
        ),
        (
            "shared = true\nper_user = true\n",
            Rule::get("/a").shared().per_user(),
        ),
        ("tags = [\"a b\"]\n", Rule::get("/a").tags(["a b"])),
        (
            "key_body_fields = [\"nope\"]\n",
            Rule::get("/a").key_body_fields(["nope"]),
        ),
        ("prefetch = [\"x\"]\n", Rule::get("/a").prefetch(["x"])),
        (
            "alert_hit_ratio = 2.0\n",
            Rule::get("/a").alert_hit_ratio(2.0),
        ),
    ];
    for (extra, built) in cases {
        let text =
            format!("[proxy]\nupstream = \"http://127.0.0.1:1\"\n[[rule]]\npath = \"/a\"\n{extra}");
        let loaded = larder::Config::parse_str("x.toml", &text).unwrap_err();
        let from_builder = larder::CacheLayer::builder()
            .rule(built)
            .build()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        // The loader says `x.toml:L:C: rule[0].FIELD: MESSAGE`; the builder `rule 1: FIELD: MESSAGE`.
        let words = format!(
            "{}: {}",
            loaded.field.trim_start_matches("rule[0]."),
            loaded.message
        );
        assert_eq!(from_builder, format!("rule 1: {words}"), "{extra}");
    }
}

#[test]
fn every_scalar_may_come_from_the_environment_typed_after_expansion() {
    let text = "[proxy]\nupstream = \"http://127.0.0.1:9\"\n\n[store]\nredis_pool = \"${LARDER_TEST_POOL:-8}\"\n\n[cache]\ndry_run = \"${LARDER_TEST_DRY_RUN:-false}\"\nalert_min_requests = \"${LARDER_TEST_MIN}\"\n\n[[rule]]\npath = \"/a\"\nshared = \"${LARDER_TEST_SHARED:-true}\"\nmiss_cost = \"${LARDER_TEST_COST:-0.5}\"\n";
    let path = common::write_config(text);
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_larder"));
        cmd.args(["check", "--config", path.to_str().unwrap()]);
        for v in [
            "LARDER_TEST_POOL",
            "LARDER_TEST_DRY_RUN",
            "LARDER_TEST_MIN",
            "LARDER_TEST_SHARED",
            "LARDER_TEST_COST",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[("LARDER_TEST_DRY_RUN", "true"), ("LARDER_TEST_MIN", "7")]);
    assert_eq!(code, 0, "{err}");
    // Typed, and marked as coming from the environment.
    assert!(
        out.contains("dry_run=true (env LARDER_TEST_DRY_RUN)"),
        "{out}"
    );
    assert!(out.contains("redis_pool=8 (env LARDER_TEST_POOL)"), "{out}");
    assert!(
        out.contains("alert_min_requests=7 (env LARDER_TEST_MIN)"),
        "{out}"
    );
    assert!(out.contains(" shared"), "{out}");
    // A wrong type names the variable, the field and where it is.
    let (code, _, err) = run(&[("LARDER_TEST_DRY_RUN", "yes"), ("LARDER_TEST_MIN", "7")]);
    assert_eq!(code, 2);
    let want = format!(
        "{}:8:11: cache.dry_run: environment variable LARDER_TEST_DRY_RUN gives \"yes\", expected a boolean",
        path.display()
    );
    assert!(err.starts_with(&want), "{err}\nwant {want}");
    let (code, _, err) = run(&[("LARDER_TEST_MIN", "many")]);
    assert_eq!(code, 2);
    assert!(err.contains("cache.alert_min_requests: environment variable LARDER_TEST_MIN gives \"many\", expected an integer"), "{err}");
    // Durations, sizes and list items name the variable too.
    let text = "[proxy]\nupstream = \"http://127.0.0.1:9\"\nmax_header = \"${LARDER_TEST_HEAD:-32KiB}\"\ntrusted_proxies = [\"127.0.0.1\", \"${LARDER_TEST_PEER:-10.0.0.0/8}\"]\n\n[[rule]]\npath = \"/a\"\nttl = \"${LARDER_TEST_TTL:-5m}\"\n";
    let typed = common::write_config(text);
    let check = |k: &str, v: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_larder"))
            .args(["check", "--config", typed.to_str().unwrap()])
            .env(k, v)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (var, value, want) in [
        ("LARDER_TEST_HEAD", "lots", ":3:14: proxy.max_header: environment variable LARDER_TEST_HEAD gives \"lots\": invalid size"),
        ("LARDER_TEST_PEER", "nowhere", ":4:33: proxy.trusted_proxies[1]: environment variable LARDER_TEST_PEER gives \"nowhere\":"),
        ("LARDER_TEST_TTL", "soon", ":8:7: rule[0].ttl: environment variable LARDER_TEST_TTL gives \"soon\": invalid duration"),
    ] {
        let (code, err) = check(var, value);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(want), "{err}\nwant {want}");
    }
    // A literal string where a boolean belongs is still a type error.
    let bad = common::write_config("[cache]\ndry_run = \"no\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("invalid type: string \"no\", expected a boolean"));
}

//! The official LLM SDKs (`openai`, `anthropic` from PyPI) as clients of larder: every
//! replay — same shape or converted — must parse in them (`tests/sdk/llm_sdk.py`).
//!
//! `scripts/test` installs the SDKs into `target/sdk-venv` and sets
//! `LARDER_REQUIRE_SDK=1`, so under it this test fails when they cannot run. Run alone
//! without the venv, it says so and passes.

mod common;

use std::process::Command;

use common::provider::Provider;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_official_sdks_parse_every_replay() {
    let python = std::env::var("LARDER_SDK_PYTHON")
        .unwrap_or_else(|_| format!("{}/target/sdk-venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let required = std::env::var("LARDER_REQUIRE_SDK").is_ok_and(|v| v == "1");
    if !std::path::Path::new(&python).exists() {
        assert!(!required, "LARDER_REQUIRE_SDK=1 but {python} is missing");
        eprintln!("no SDK venv at {python}: run scripts/test (it installs openai and anthropic)");
        return;
    }
    let provider = Provider::start().await;
    let larder = Larder::start(&config(
        provider.origin.addr,
        "",
        r#"
[[rule]]
name = "chat"
path = "/v1/chat/completions"
llm = "openai-chat"
ttl = "1h"

[[rule]]
name = "responses"
path = "/v1/responses"
llm = "openai-responses"
ttl = "1h"

[[rule]]
name = "messages"
path = "/v1/messages"
llm = "anthropic-messages"
ttl = "1h"
"#,
    ));
    let url = larder.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("tests/sdk/llm_sdk.py")
            .env("LARDER_URL", url)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_BASE_URL")
            .output()
            .expect("run the SDK script")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");
    // Every converted or replayed answer came from the cache: one call per meaning.
    assert_eq!(provider.calls(), 6, "{stdout}");
}

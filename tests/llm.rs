//! LLM APIs against the real binary and a provider stand-in that speaks OpenAI Chat
//! Completions, OpenAI Responses and Anthropic Messages, as JSON and as streams.

mod common;

use common::provider::Provider;
use common::*;
use serde_json::{json, Value};

fn llm_config(origin: &Origin, extra_rule: &str) -> String {
    config(
        origin.addr,
        "",
        &format!(
            r#"
[llm.prices]
"gpt-4o-mini" = {{ input = 0.15, output = 0.60 }}

[[rule]]
name = "chat"
path = "/v1/chat/completions"
llm = "openai-chat"
ttl = "1h"
{extra_rule}

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
"#
        ),
    )
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "temperature": 0.2,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(larder: &Larder, path: &str, key: &str, body: &Value) -> Got {
    send(
        client()
            .post(larder.url(path))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

/// The data of each event of a stream.
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn noise_does_not_change_the_key_and_either_shape_answers_from_one_call() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    // A stream fills the entry.
    let s = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("hello", json!({"stream": true, "user": "u1"})),
    )
    .await;
    assert_eq!(s.x_cache(), "MISS");
    assert!(s.header("content-type").starts_with("text/event-stream"));
    let text = s.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The client did not ask for usage: it gets no usage chunk (larder asked upstream).
    assert!(!text.contains("prompt_tokens"), "{text}");
    assert_eq!(
        provider.bodies()[0]["stream_options"]["include_usage"],
        true
    );
    // The same meaning as JSON, with other noise and member order: a hit, the JSON object.
    let mut j = chat(
        "hello",
        json!({"user": "u2", "metadata": {"trace": "x"}, "store": false}),
    );
    j["messages"][1] = json!({"content": "hello", "role": "user"});
    let g = post(&larder, "/v1/chat/completions", "sk-a", &j).await;
    assert_eq!(g.x_cache(), "HIT", "{}", g.header("cache-status"));
    assert_eq!(g.header("content-type"), "application/json");
    let v: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    // A stream asking for usage gets the stored bytes, usage chunk included.
    let u = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat(
            "hello",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(u.x_cache(), "HIT");
    assert!(u.text().contains("\"prompt_tokens\":12"));
    // Another meaning (a temperature) is another call.
    let t = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("hello", json!({"temperature": 0.9})),
    )
    .await;
    assert_eq!(t.x_cache(), "MISS");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_fill_answers_a_stream_and_tenants_stay_apart() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    let j = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("hi there", json!({})),
    )
    .await;
    assert_eq!(j.x_cache(), "MISS");
    // Per-call fields reach the caller, never a hit.
    assert!(j.header("x-request-id").starts_with("req_"));
    assert!(j.header("set-cookie").starts_with("__cf_bm="));
    let s = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat(
            "hi there",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(s.x_cache(), "HIT");
    for h in [
        "x-request-id",
        "set-cookie",
        "openai-processing-ms",
        "x-ratelimit-remaining-requests",
    ] {
        assert!(s.headers.get(h).is_none(), "a hit replayed {h}");
    }
    let evs = events(&s.text());
    assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
    let said: String = evs
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, "Echo: hi there");
    assert_eq!(
        evs.iter()
            .filter(|e| e["choices"][0]["finish_reason"] == "stop")
            .count(),
        1
    );
    assert_eq!(evs.last().unwrap()["usage"]["completion_tokens"], 4);
    assert!(s.text().ends_with("data: [DONE]\n\n"));
    // Another credential is another tenant.
    let other = post(
        &larder,
        "/v1/chat/completions",
        "sk-b",
        &chat("hi there", json!({})),
    )
    .await;
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_rules_share_across_credentials() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, "shared = true"));
    post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("same", json!({})),
    )
    .await;
    let b = post(
        &larder,
        "/v1/chat/completions",
        "sk-b",
        &chat("same", json!({})),
    )
    .await;
    assert_eq!(b.x_cache(), "HIT");
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_failed_or_truncated_answers_are_never_stored() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    let cases = [
        ("cut here", true),
        ("unfinished one", true),
        ("long one", true),
        ("long two", false),
        ("fail now", false),
    ];
    for (prompt, stream) in cases {
        for _ in 0..2 {
            // A cut stream is an error for its reader: only the head matters here.
            let r = client()
                .post(larder.url("/v1/chat/completions"))
                .header("authorization", "Bearer sk-a")
                .body(chat(prompt, json!({"stream": stream})).to_string())
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            let status = format!("{code} {:?}", r.headers().get("cache-status"));
            let whole = r.bytes().await.is_ok();
            assert!(!status.contains("hit"), "{prompt}: {status}");
            if prompt == "cut here" {
                assert!(
                    !whole || code == 502,
                    "a cut stream reached its client as whole: {status}"
                );
            }
        }
    }
    assert_eq!(provider.calls(), 10);
    let not_stored = &get_json(&larder, "/admin/stats").await["per_rule"]["chat"]["not_stored"];
    assert_eq!(not_stored["upstream-body"], 2, "{not_stored}");
    assert_eq!(not_stored["incomplete"], 2, "{not_stored}");
    assert_eq!(not_stored["truncated"], 4, "{not_stored}");
    assert_eq!(not_stored["status"], 2, "{not_stored}");
    // With store_truncated, an answer cut by its length is kept.
    let larder = Larder::start(&llm_config(&provider.origin, "store_truncated = true"));
    post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("long three", json!({})),
    )
    .await;
    let again = post(
        &larder,
        "/v1/chat/completions",
        "sk-a",
        &chat("long three", json!({})),
    )
    .await;
    assert_eq!(again.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_request_arriving_while_a_stream_fills_follows_it() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    let c = client();
    let stream = c
        .post(larder.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-a")
        .body(chat("slow answer", json!({"stream": true})).to_string())
        .send()
        .await
        .unwrap();
    // The stream is filling (its first event is out); a JSON request for the same meaning
    // and a second stream arrive.
    let url = larder.url("/v1/chat/completions");
    let json_req = tokio::spawn(send(
        c.post(url.clone())
            .header("authorization", "Bearer sk-a")
            .body(chat("slow answer", json!({})).to_string()),
    ));
    let second = tokio::spawn(send(
        c.post(url)
            .header("authorization", "Bearer sk-a")
            .body(chat("slow answer", json!({"stream": true})).to_string()),
    ));
    let arrived = eventually(std::time::Duration::from_secs(5), || async {
        let s = get_json(&larder, "/admin/stats").await;
        s["per_rule"]["chat"]["collapsed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(arrived, "the second stream did not join");
    provider.release();
    let first = stream.text().await.unwrap();
    let json_answer = json_req.await.unwrap();
    let second = second.await.unwrap();
    assert_eq!(provider.calls(), 1, "one upstream call for three askers");
    let v: Value = serde_json::from_slice(&json_answer.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: slow answer");
    assert_eq!(second.text(), first, "the follower got the same stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_and_messages_answer_in_either_shape() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    // Responses: stream first, then JSON.
    let body = |stream: bool| json!({"model": "gpt-4o-mini", "input": "tell me", "stream": stream});
    let s = post(&larder, "/v1/responses", "sk-a", &body(true)).await;
    assert!(s.text().contains("event: response.completed"));
    let j = post(&larder, "/v1/responses", "sk-a", &body(false)).await;
    assert_eq!(j.x_cache(), "HIT");
    let v: Value = serde_json::from_slice(&j.body).unwrap();
    assert_eq!(
        (v["object"].as_str(), v["status"].as_str()),
        (Some("response"), Some("completed"))
    );
    assert_eq!(v["output"][0]["content"][0]["text"], "Echo: tell me");
    // Messages: JSON first, then a stream.
    let body = |stream: bool| {
        json!({"model": "claude-3-5-haiku", "max_tokens": 64, "stream": stream,
        "metadata": {"user_id": "x"}, "messages": [{"role": "user", "content": "hola"}]})
    };
    let j = send(
        client()
            .post(larder.url("/v1/messages"))
            .header("x-api-key", "ak-1")
            .body(body(false).to_string()),
    )
    .await;
    assert_eq!(j.x_cache(), "MISS");
    let s = send(
        client()
            .post(larder.url("/v1/messages"))
            .header("x-api-key", "ak-1")
            .body(body(true).to_string()),
    )
    .await;
    assert_eq!(s.x_cache(), "HIT");
    let text = s.text();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("data: {\"type\":\"message_stop\"}"),
        "{text}"
    );
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_count_the_tokens_and_dollars_they_saved() {
    let provider = Provider::start().await;
    let larder = Larder::start(&llm_config(&provider.origin, ""));
    for _ in 0..3 {
        post(
            &larder,
            "/v1/chat/completions",
            "sk-a",
            &chat("count me", json!({})),
        )
        .await;
    }
    let m = get(&larder.admin_url("/metrics")).await.text();
    let line = |name: &str| {
        m.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    // The answer's dated model is priced by its base entry: 2 hits × (12 × 0.15 + 4 × 0.60) / 1e6.
    assert_eq!(line(r#"larder_llm_tokens_saved_total{rule="chat",model="gpt-4o-mini-2024-07-18",kind="input"}"#).as_deref(), Some("24"));
    assert_eq!(line(r#"larder_llm_tokens_saved_total{rule="chat",model="gpt-4o-mini-2024-07-18",kind="output"}"#).as_deref(), Some("8"));
    let usd: f64 =
        line(r#"larder_llm_usd_saved_total{rule="chat",model="gpt-4o-mini-2024-07-18"}"#)
            .unwrap()
            .parse()
            .unwrap();
    assert!(
        (usd - 2.0 * (12.0 * 0.15 + 4.0 * 0.60) / 1e6).abs() < 1e-12,
        "{usd}"
    );
    let stats = get_json(&larder, "/admin/stats").await;
    assert_eq!(stats["llm"]["gpt-4o-mini-2024-07-18"]["hits"], 2, "{stats}");
}

async fn get_json(larder: &Larder, path: &str) -> Value {
    let r = send(admin(&client(), larder, http::Method::GET, path)).await;
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_recipe_serves_from_the_cache() {
    let provider = Provider::start().await;
    let path = format!("{}/config/examples/openai.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9091", "127.0.0.1:0");
    let origin = format!("http://{}", provider.origin.addr);
    let env = [
        ("LARDER_ADMIN_TOKEN", TOKEN),
        ("OPENAI_API_URL", origin.as_str()),
        ("ANTHROPIC_API_URL", origin.as_str()),
    ];
    let larder = Larder::start_with_env(&text, &env);
    for expect in ["MISS", "HIT"] {
        let g = post(
            &larder,
            "/v1/chat/completions",
            "sk-a",
            &chat("recipe", json!({})),
        )
        .await;
        assert_eq!(g.x_cache(), expect);
    }
    let m = send(client().post(larder.url("/v1/messages")).header("x-api-key", "ak")
        .body(json!({"model": "claude-3-5-haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}).to_string())).await;
    assert_eq!(m.x_cache(), "MISS");
    assert_eq!(provider.calls(), 2);
    let usd = get(&larder.admin_url("/metrics")).await.text();
    assert!(
        usd.contains(
            r#"larder_llm_usd_saved_total{rule="chat",model="gpt-4o-mini-2024-07-18"} 0.0000042"#
        ),
        "{usd}"
    );
}

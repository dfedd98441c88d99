//! A stand-in for the LLM providers, written from their API references: OpenAI Chat
//! Completions and Responses, Anthropic Messages, each as a JSON object or as a stream,
//! with the response headers real answers carry (request ids, rate limits, a
//! bot-management cookie). What it answers depends on the last user message:
//! - `cut …`: the stream stops before its terminal event (the connection is cut);
//! - `unfinished …`: the stream ends cleanly, but without its terminal event;
//! - `long …`: the answer ends for its length (`length` / `max_tokens` / `incomplete`);
//! - `fail …`: a 500 with an error object;
//! - `slow …`: the stream waits for `Provider::release` after its first event;
//! - anything else: `Echo: <message>` with usage 12 in / 4 out.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{channel_body, full, response, Origin, OriginBody, Seen};

/// The stand-in and what it was asked.
pub struct Provider {
    pub origin: Origin,
    calls: Arc<AtomicU64>,
    bodies: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Semaphore>,
}

impl Provider {
    pub async fn start() -> Provider {
        let calls = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (c, b, g) = (calls.clone(), bodies.clone(), gate.clone());
        let origin = Origin::start(move |seen| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
            b.lock().unwrap().push(body.clone());
            answer(seen, body, n, g.clone())
        })
        .await;
        Provider {
            origin,
            calls,
            bodies,
            gate,
        }
    }

    /// Calls it answered.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The request bodies it received.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Lets a held (`slow …`) stream go on.
    pub fn release(&self) {
        self.gate.add_permits(1000);
    }
}

fn prompt(body: &Value) -> String {
    let from_messages =
        body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                other => other[0]["text"].as_str().unwrap_or("").to_string(),
            });
    let from_input = match &body["input"] {
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    from_messages.or(from_input).unwrap_or_default()
}

fn per_call_headers(path: &str, n: u64) -> Vec<(String, String)> {
    if path.starts_with("/v1/messages") {
        vec![
            ("request-id".into(), format!("req_{n:06}")),
            (
                "anthropic-ratelimit-requests-remaining".into(),
                format!("{}", 1000 - n),
            ),
        ]
    } else {
        vec![
            ("x-request-id".into(), format!("req_{n:06}")),
            ("openai-processing-ms".into(), format!("{}", 100 + n)),
            (
                "x-ratelimit-remaining-requests".into(),
                format!("{}", 1000 - n),
            ),
            (
                "set-cookie".into(),
                format!("__cf_bm=call{n}; path=/; HttpOnly"),
            ),
        ]
    }
}

async fn answer(
    seen: Seen,
    body: Value,
    n: u64,
    gate: Arc<Semaphore>,
) -> http::Response<OriginBody> {
    let path = seen.uri.path().to_string();
    let p = prompt(&body);
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
    let stream = body["stream"] == Value::Bool(true);
    let mut headers = per_call_headers(&path, n);
    if p.starts_with("fail") {
        headers.push(("content-type".into(), "application/json".into()));
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        return response(
            500,
            &h,
            full(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
        );
    }
    let text = format!("Echo: {p}");
    let events: Vec<(Option<&'static str>, String)> = if path.starts_with("/v1/messages") {
        anthropic_events(&model, &text, &p)
    } else if path.starts_with("/v1/responses") {
        responses_events(&model, &text, &p)
    } else {
        chat_events(&model, &text, &p, &body)
    };
    if !stream {
        headers.push(("content-type".into(), "application/json".into()));
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let object = if path.starts_with("/v1/messages") {
            anthropic_object(&model, &text, &p)
        } else if path.starts_with("/v1/responses") {
            responses_object(&model, &text, &p)
        } else {
            chat_object(&model, &text, &p)
        };
        return response(200, &h, full(object.to_string()));
    }
    headers.push((
        "content-type".into(),
        "text/event-stream; charset=utf-8".into(),
    ));
    let (tx, out) = channel_body();
    let cut = p.starts_with("cut");
    let unfinished = p.starts_with("unfinished");
    let slow = p.starts_with("slow");
    tokio::spawn(async move {
        let last = events.len();
        for (i, (name, data)) in events.into_iter().enumerate() {
            if cut && i + 2 >= last {
                let _ = tx.send(Err("cut".into())).await;
                return;
            }
            if unfinished && i + 2 >= last {
                return;
            }
            let mut e = String::new();
            if let Some(n) = name {
                e.push_str(&format!("event: {n}\n"));
            }
            e.push_str(&format!("data: {data}\n\n"));
            let _ = tx.send(Ok(Bytes::from(e))).await;
            if slow && i == 0 {
                let _ = gate.acquire().await;
            }
        }
    });
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    response(200, &h, out)
}

const USAGE_IN: u64 = 12;
const USAGE_OUT: u64 = 4;

fn chat_object(model: &str, text: &str, p: &str) -> Value {
    let finish = if p.starts_with("long") {
        "length"
    } else {
        "stop"
    };
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": format!("{model}-2024-07-18"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT},
        "system_fingerprint": "fp_1"})
}

fn chat_events(
    model: &str,
    text: &str,
    p: &str,
    body: &Value,
) -> Vec<(Option<&'static str>, String)> {
    let usage = body["stream_options"]["include_usage"] == Value::Bool(true);
    let model = format!("{model}-2024-07-18");
    let chunk = |choices: Value| {
        let mut c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "system_fingerprint": "fp_1", "choices": choices});
        if usage {
            c["usage"] = Value::Null;
        }
        (None, c.to_string())
    };
    let mut out = vec![chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
    )];
    for word in text.split_inclusive(' ') {
        out.push(chunk(json!([{"index": 0, "delta": {"content": word}, "logprobs": null, "finish_reason": null}])));
    }
    let finish = if p.starts_with("long") {
        "length"
    } else {
        "stop"
    };
    out.push(chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
    ));
    if usage {
        out.push((None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "system_fingerprint": "fp_1", "choices": [],
            "usage": {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT}}).to_string()));
    }
    out.push((None, "[DONE]".into()));
    out
}

fn responses_object(model: &str, text: &str, p: &str) -> Value {
    let status = if p.starts_with("long") {
        "incomplete"
    } else {
        "completed"
    };
    json!({"id": "resp_1", "object": "response", "created_at": 1_700_000_000, "status": status, "model": format!("{model}-2024-07-18"),
        "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT},
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null, "incomplete_details": null})
}

fn responses_events(model: &str, text: &str, p: &str) -> Vec<(Option<&'static str>, String)> {
    let done = responses_object(model, text, p);
    let mut start = done.clone();
    start["status"] = json!("in_progress");
    start["output"] = json!([]);
    let item = &done["output"][0];
    let mut seq = 0;
    let mut ev = |name: &'static str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        (Some(name), v.to_string())
    };
    let mut out = vec![
        ev("response.created", json!({"response": start})),
        ev("response.in_progress", json!({"response": start})),
        ev(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
        ),
        ev(
            "response.content_part.added",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for word in text.split_inclusive(' ') {
        out.push(ev("response.output_text.delta", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": word, "logprobs": []})));
    }
    out.push(ev("response.output_text.done", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text, "logprobs": []})));
    out.push(ev("response.content_part.done", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": item["content"][0]})));
    out.push(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    ));
    let last = if p.starts_with("long") {
        "response.incomplete"
    } else {
        "response.completed"
    };
    out.push(ev(last, json!({"response": done})));
    out
}

fn anthropic_object(model: &str, text: &str, p: &str) -> Value {
    let stop = if p.starts_with("long") {
        "max_tokens"
    } else {
        "end_turn"
    };
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": format!("{model}-20241022"),
        "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT}})
}

fn anthropic_events(model: &str, text: &str, p: &str) -> Vec<(Option<&'static str>, String)> {
    let done = anthropic_object(model, text, p);
    let mut start = done.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut out = vec![
        (Some("message_start"), json!({"type": "message_start", "message": start}).to_string()),
        (Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
        (Some("ping"), json!({"type": "ping"}).to_string()),
    ];
    for word in text.split_inclusive(' ') {
        out.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}).to_string()));
    }
    out.push((
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}).to_string(),
    ));
    out.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": done["stop_reason"], "stop_sequence": null}, "usage": {"output_tokens": USAGE_OUT}}).to_string()));
    out.push((
        Some("message_stop"),
        json!({"type": "message_stop"}).to_string(),
    ));
    out
}

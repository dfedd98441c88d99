//! OpenAI Chat Completions: a `chat.completion` object, or `chat.completion.chunk` events
//! (`data: {…}`) ending with `data: [DONE]`; the first chunk of a choice carries
//! `delta.role`, a later one its `finish_reason`; with `stream_options.include_usage` a
//! last chunk has `choices: []` and the usage.

use serde_json::{json, Map, Value};

use super::{count, pieces, sse, text, Shape, Usage, Verdict, PIECE};

fn usage_of(answer: &Value) -> Usage {
    let u = &answer["usage"];
    Usage {
        model: text(answer, "model").to_string(),
        input: count(u, "prompt_tokens"),
        output: count(u, "completion_tokens"),
    }
}

fn truncated(answer: &Value) -> bool {
    answer["choices"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| matches!(text(c, "finish_reason"), "length" | "content_filter"))
    })
}

/// Whether an answer may be stored.
pub(super) fn judge(shape: Shape, body: &[u8]) -> Verdict {
    let answer = match shape {
        Shape::Json => serde_json::from_slice::<Value>(body).ok(),
        Shape::Stream if ends_done(body) => {
            to_json(body).and_then(|j| serde_json::from_slice(&j).ok())
        }
        Shape::Stream => None,
    };
    let Some(answer) =
        answer.filter(|a| a["object"] == "chat.completion" && a["choices"].is_array())
    else {
        return Verdict::Incomplete;
    };
    if truncated(&answer) {
        Verdict::Truncated(usage_of(&answer))
    } else {
        Verdict::Complete(usage_of(&answer))
    }
}

/// Whether the stream's last event is `[DONE]`.
fn ends_done(body: &[u8]) -> bool {
    let (events, _) = sse::events(body);
    events.last().is_some_and(|e| e.data.trim() == "[DONE]")
}

/// The chunks of a stream, in order (an error object, or a chunk that is not JSON, makes
/// the stream worthless: `None`).
fn chunks(body: &[u8]) -> Option<Vec<Value>> {
    let (events, _) = sse::events(body);
    let mut out = Vec::new();
    for e in events {
        if e.data.trim() == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&e.data).ok()?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return None;
        }
        out.push(v);
    }
    Some(out)
}

/// Folds one chunk's delta into its choice's message: string members append (`content`,
/// `refusal`, `reasoning_content`, …), tool calls merge by index.
fn fold_delta(message: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (k, v) in delta {
        match (k.as_str(), v) {
            ("role", Value::String(r)) => {
                message.insert("role".into(), Value::String(r.clone()));
            }
            ("tool_calls", Value::Array(calls)) => fold_tool_calls(message, calls),
            (_, Value::String(s)) => {
                let slot = message
                    .entry(k.clone())
                    .or_insert(Value::String(String::new()));
                match slot {
                    Value::String(acc) => acc.push_str(s),
                    other => *other = Value::String(s.clone()),
                }
            }
            (_, Value::Null) => {
                message.entry(k.clone()).or_insert(Value::Null);
            }
            _ => {
                message.insert(k.clone(), v.clone());
            }
        }
    }
}

fn fold_tool_calls(message: &mut Map<String, Value>, calls: &[Value]) {
    let list = message
        .entry("tool_calls")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else { return };
    for call in calls {
        let i = call["index"].as_u64().unwrap_or(0) as usize;
        while list.len() <= i {
            list.push(
                json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}),
            );
        }
        let slot = &mut list[i];
        for key in ["id", "type"] {
            if let Some(v) = call.get(key).and_then(Value::as_str) {
                slot[key] = Value::String(v.to_string());
            }
        }
        for key in ["name", "arguments"] {
            if let Some(v) = call["function"].get(key).and_then(Value::as_str) {
                let acc = slot["function"][key].as_str().unwrap_or("").to_string() + v;
                slot["function"][key] = Value::String(acc);
            }
        }
    }
}

/// The stream as the `chat.completion` object a JSON request gets.
pub(super) fn to_json(body: &[u8]) -> Option<Vec<u8>> {
    let chunks = chunks(body)?;
    let first = chunks.first()?;
    let mut choices: Vec<(Map<String, Value>, Value, Value)> = Vec::new();
    let mut usage = Value::Null;
    for c in &chunks {
        if !c["usage"].is_null() {
            usage = c["usage"].clone();
        }
        for choice in c["choices"].as_array().into_iter().flatten() {
            let i = choice["index"].as_u64().unwrap_or(0) as usize;
            while choices.len() <= i {
                choices.push((Map::new(), Value::Null, Value::Null));
            }
            if let Some(delta) = choice["delta"].as_object() {
                fold_delta(&mut choices[i].0, delta);
            }
            if !choice["finish_reason"].is_null() {
                choices[i].1 = choice["finish_reason"].clone();
            }
            if !choice["logprobs"].is_null() {
                choices[i].2 = choice["logprobs"].clone();
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, (mut message, finish, logprobs))| {
            message
                .entry("role")
                .or_insert(Value::String("assistant".into()));
            message.entry("content").or_insert(Value::Null);
            message.entry("refusal").or_insert(Value::Null);
            json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish})
        })
        .collect();
    let mut answer = json!({
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "choices": choices,
        "usage": usage,
    });
    for extra in ["system_fingerprint", "service_tier"] {
        if let Some(v) = first.get(extra).filter(|v| !v.is_null()) {
            answer[extra] = v.clone();
        }
    }
    serde_json::to_vec(&answer).ok()
}

/// A chunk of the stream made from `answer`.
fn chunk(answer: &Value, choices: Value, include_usage: bool) -> String {
    let mut c = json!({
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": answer["created"],
        "model": answer["model"],
        "choices": choices,
    });
    if let Some(fp) = answer.get("system_fingerprint").filter(|v| !v.is_null()) {
        c["system_fingerprint"] = fp.clone();
    }
    if include_usage {
        c["usage"] = Value::Null;
    }
    c.to_string()
}

/// The deltas of one choice's message, in the order the model would have sent them.
fn deltas(message: &Value) -> Vec<Value> {
    let role = text(message, "role");
    let mut out = vec![
        json!({"role": if role.is_empty() { "assistant" } else { role }, "content": "", "refusal": null}),
    ];
    if let Some(m) = message.as_object() {
        for (k, v) in m {
            match (k.as_str(), v) {
                ("role", _) => {}
                ("tool_calls", Value::Array(calls)) => out.extend(tool_call_deltas(calls)),
                (_, Value::String(s)) => {
                    out.extend(pieces(s, PIECE).into_iter().map(|p| json!({ k: p })));
                }
                _ => {}
            }
        }
    }
    out
}

fn tool_call_deltas(calls: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let f = &call["function"];
        out.push(
            json!({"tool_calls": [{"index": i, "id": call["id"], "type": call["type"],
            "function": {"name": f["name"], "arguments": ""}}]}),
        );
        for p in pieces(text(f, "arguments"), PIECE) {
            out.push(json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}));
        }
    }
    out
}

/// The `chat.completion` object as the stream a streaming request gets: per choice its
/// role, its text in pieces, its finish reason; the usage chunk when asked; `[DONE]`.
pub(super) fn to_stream(body: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::new();
    for choice in answer["choices"].as_array()? {
        let index = &choice["index"];
        for delta in deltas(&choice["message"]) {
            let choices =
                json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]);
            sse::write(&mut out, None, &chunk(&answer, choices, include_usage));
        }
        let choices = json!([{"index": index, "delta": {}, "logprobs": choice["logprobs"], "finish_reason": choice["finish_reason"]}]);
        sse::write(&mut out, None, &chunk(&answer, choices, include_usage));
    }
    if include_usage {
        let mut last: Value = serde_json::from_str(&chunk(&answer, json!([]), true)).ok()?;
        last["usage"] = answer["usage"].clone();
        sse::write(&mut out, None, &last.to_string());
    }
    sse::write(&mut out, None, "[DONE]");
    Some(out)
}

/// Whether an event is the usage chunk (`choices: []` and a usage).
pub(super) fn is_usage_chunk(data: &str) -> bool {
    data.contains("\"usage\"")
        && serde_json::from_str::<Value>(data).is_ok_and(|v| {
            v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object()
        })
}

/// The stream without its usage chunk (for a client that did not ask for it).
pub(super) fn without_usage(body: &[u8]) -> Vec<u8> {
    let (events, used) = sse::events(body);
    let mut out = Vec::with_capacity(body.len());
    for e in events.iter().filter(|e| !is_usage_chunk(&e.data)) {
        out.extend_from_slice(e.raw);
    }
    out.extend_from_slice(&body[used..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn a_stream_folds_into_the_object_and_back() {
        let json = to_json(STREAM.as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 2);
        let Verdict::Complete(u) = judge(Shape::Stream, STREAM.as_bytes()) else {
            panic!("complete")
        };
        assert_eq!((u.input, u.output), (9, 2));
        let again = to_stream(&json, false).unwrap();
        assert_eq!(
            to_json(&again)
                .map(|j| serde_json::from_slice::<Value>(&j).unwrap()["choices"].clone()),
            Some(v["choices"].clone())
        );
        assert!(!String::from_utf8_lossy(&again).contains("prompt_tokens"));
        let cut = &STREAM.as_bytes()[..STREAM.len() - 14];
        assert_eq!(judge(Shape::Stream, cut), Verdict::Incomplete);
        assert!(
            !String::from_utf8_lossy(&without_usage(STREAM.as_bytes())).contains("prompt_tokens")
        );
    }
}

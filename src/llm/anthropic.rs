//! Anthropic Messages: a `message` object, or named events — `message_start`, per content
//! block `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`,
//! `thinking_delta`, `signature_delta`), `content_block_stop`, then `message_delta`
//! (stop reason, output tokens) and `message_stop`; `ping` any time, `error` on failure.

use serde_json::{json, Map, Value};

use super::{count, pieces, sse, text, Shape, Usage, Verdict, PIECE};

fn usage_of(answer: &Value) -> Usage {
    let u = &answer["usage"];
    Usage {
        model: text(answer, "model").to_string(),
        input: count(u, "input_tokens")
            + count(u, "cache_creation_input_tokens")
            + count(u, "cache_read_input_tokens"),
        output: count(u, "output_tokens"),
    }
}

/// Whether an answer may be stored.
pub(super) fn judge(shape: Shape, body: &[u8]) -> Verdict {
    let answer = match shape {
        Shape::Json => serde_json::from_slice::<Value>(body).ok(),
        Shape::Stream => folded(body),
    };
    let Some(answer) = answer.filter(|a| a["type"] == "message") else {
        return Verdict::Incomplete;
    };
    match text(&answer, "stop_reason") {
        "max_tokens" | "refusal" | "model_context_window_exceeded" => {
            Verdict::Truncated(usage_of(&answer))
        }
        "" => Verdict::Incomplete,
        _ => Verdict::Complete(usage_of(&answer)),
    }
}

/// The stream folded into the `message` it describes; `None` without `message_stop`, or
/// after an `error` event.
fn folded(body: &[u8]) -> Option<Value> {
    let (events, _) = sse::events(body);
    let mut message: Option<Value> = None;
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    let mut stopped = false;
    for e in events {
        let v: Value = serde_json::from_str(&e.data).ok()?;
        match text(&v, "type") {
            "message_start" => message = Some(v["message"].clone()),
            "content_block_start" => {
                blocks.push(v["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let i = v["index"].as_u64()? as usize;
                fold_delta(blocks.get_mut(i)?, json_parts.get_mut(i)?, &v["delta"]);
            }
            "content_block_stop" => {
                let i = v["index"].as_u64()? as usize;
                if blocks.get(i)?["type"] == "tool_use" && !json_parts[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&json_parts[i]).ok()?;
                }
            }
            "message_delta" => {
                let m = message.as_mut()?;
                for (k, d) in v["delta"].as_object().into_iter().flatten() {
                    m[k] = d.clone();
                }
                for (k, u) in v["usage"].as_object().into_iter().flatten() {
                    m["usage"][k] = u.clone();
                }
            }
            "message_stop" => stopped = true,
            "error" => return None,
            _ => {}
        }
    }
    let mut message = message.filter(|_| stopped)?;
    message["content"] = Value::Array(blocks);
    Some(message)
}

fn fold_delta(block: &mut Value, partial_json: &mut String, delta: &Value) {
    let append = |block: &mut Value, field: &str, add: &str| {
        let acc = text(block, field).to_string() + add;
        block[field] = Value::String(acc);
    };
    match text(delta, "type") {
        "text_delta" => append(block, "text", text(delta, "text")),
        "thinking_delta" => append(block, "thinking", text(delta, "thinking")),
        "signature_delta" => append(block, "signature", text(delta, "signature")),
        "citations_delta" => {
            let list = block
                .as_object_mut()
                .map(|b| b.entry("citations").or_insert_with(|| json!([])));
            if let Some(Value::Array(list)) = list {
                list.push(delta["citation"].clone());
            }
        }
        "input_json_delta" => partial_json.push_str(text(delta, "partial_json")),
        _ => {}
    }
}

/// The stream as the `message` object a JSON request gets.
pub(super) fn to_json(body: &[u8]) -> Option<Vec<u8>> {
    serde_json::to_vec(&folded(body)?).ok()
}

/// One block's events: start (with its text empty), deltas, stop.
fn block_events(i: usize, block: &Value) -> Vec<(&'static str, Value)> {
    let mut start = block.clone();
    let mut deltas: Vec<Value> = Vec::new();
    match text(block, "type") {
        "text" => {
            start["text"] = json!("");
            if let Some(m) = start.as_object_mut() {
                m.remove("citations");
            }
            for c in block["citations"].as_array().into_iter().flatten() {
                deltas.push(json!({"type": "citations_delta", "citation": c}));
            }
            deltas.extend(
                pieces(text(block, "text"), PIECE)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p})),
            );
        }
        "thinking" => {
            start["thinking"] = json!("");
            start["signature"] = json!("");
            deltas.extend(
                pieces(text(block, "thinking"), PIECE)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p})),
            );
            if !text(block, "signature").is_empty() {
                deltas.push(json!({"type": "signature_delta", "signature": block["signature"]}));
            }
        }
        "tool_use" | "server_tool_use" => {
            start["input"] = json!({});
            let input = block["input"].to_string();
            deltas.extend(
                pieces(&input, PIECE)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p})),
            );
        }
        _ => {}
    }
    let mut out = vec![(
        "content_block_start",
        json!({"type": "content_block_start", "index": i, "content_block": start}),
    )];
    out.extend(deltas.into_iter().map(|d| {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": d}),
        )
    }));
    out.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": i}),
    ));
    out
}

/// The `message` object as the events a streaming request gets.
pub(super) fn to_stream(body: &[u8]) -> Option<Vec<u8>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    if answer["type"] != "message" {
        return None;
    }
    let mut start = answer.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    let mut usage: Map<String, Value> = answer["usage"].as_object().cloned().unwrap_or_default();
    usage.insert("output_tokens".into(), json!(1));
    start["usage"] = Value::Object(usage);
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": start}),
    )];
    for (i, block) in answer["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        events.extend(block_events(i, block));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]},
        "usage": {"output_tokens": answer["usage"]["output_tokens"]}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let mut out = Vec::new();
    for (name, e) in events {
        sse::write(&mut out, Some(name), &e.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_makes_a_stream_that_folds_back_into_it() {
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
                {"type": "text", "text": "Hello, world"},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris"}}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 6}});
        let stream = to_stream(&serde_json::to_vec(&answer).unwrap()).unwrap();
        let back: Value = serde_json::from_slice(&to_json(&stream).unwrap()).unwrap();
        assert_eq!(back, answer);
        let Verdict::Complete(u) = judge(Shape::Stream, &stream) else {
            panic!()
        };
        assert_eq!((u.input, u.output), (10, 6));
        let cut = &stream[..stream.len() - 40];
        assert_eq!(judge(Shape::Stream, cut), Verdict::Incomplete);
    }
}

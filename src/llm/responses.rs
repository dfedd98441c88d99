//! OpenAI Responses: a `response` object, or named events (`response.created`, …,
//! `response.output_text.delta`, …) ending with `response.completed` (whose `response` is
//! the whole object), `response.incomplete` or `response.failed`.

use serde_json::{json, Value};

use super::{count, pieces, sse, text, Shape, Usage, Verdict, PIECE};

fn usage_of(answer: &Value) -> Usage {
    let u = &answer["usage"];
    Usage {
        model: text(answer, "model").to_string(),
        input: count(u, "input_tokens"),
        output: count(u, "output_tokens"),
    }
}

/// Whether an answer may be stored.
pub(super) fn judge(shape: Shape, body: &[u8]) -> Verdict {
    let answer = match shape {
        Shape::Json => serde_json::from_slice::<Value>(body).ok(),
        Shape::Stream => last_response(body),
    };
    let Some(answer) = answer.filter(|a| a["object"] == "response") else {
        return Verdict::Incomplete;
    };
    match text(&answer, "status") {
        "completed" => Verdict::Complete(usage_of(&answer)),
        "incomplete" => Verdict::Truncated(usage_of(&answer)),
        _ => Verdict::Incomplete,
    }
}

/// The `response` of the stream's terminal event (`response.completed` or
/// `response.incomplete`); `None` if it never came or an error came.
fn last_response(body: &[u8]) -> Option<Value> {
    let (events, _) = sse::events(body);
    let mut terminal = None;
    for e in events {
        let v: Value = serde_json::from_str(&e.data).ok()?;
        match text(&v, "type") {
            "error" | "response.failed" => return None,
            "response.completed" | "response.incomplete" => terminal = Some(v["response"].clone()),
            _ => {}
        }
    }
    terminal
}

/// The stream as the `response` object a JSON request gets.
pub(super) fn to_json(body: &[u8]) -> Option<Vec<u8>> {
    serde_json::to_vec(&last_response(body)?).ok()
}

/// The events a stream of `answer` would have carried, in order.
fn events_of(answer: &Value) -> Vec<Value> {
    let mut start = answer.clone();
    start["status"] = json!("in_progress");
    start["output"] = json!([]);
    start["usage"] = Value::Null;
    let mut out = vec![
        json!({"type": "response.created", "response": start}),
        json!({"type": "response.in_progress", "response": start}),
    ];
    for (i, item) in answer["output"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.extend(item_events(i, item));
    }
    let last = if text(answer, "status") == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    out.push(json!({"type": last, "response": answer}));
    out
}

/// One output item: added, its content (text deltas, or call arguments), done.
fn item_events(i: usize, item: &Value) -> Vec<Value> {
    let id = &item["id"];
    let mut opening = item.clone();
    if opening.get("content").is_some() {
        opening["content"] = json!([]);
    }
    if opening.get("arguments").is_some() {
        opening["arguments"] = json!("");
    }
    opening["status"] = json!("in_progress");
    let mut out =
        vec![json!({"type": "response.output_item.added", "output_index": i, "item": opening})];
    for (c, part) in item["content"].as_array().into_iter().flatten().enumerate() {
        let mut empty = part.clone();
        if empty.get("text").is_some() {
            empty["text"] = json!("");
        }
        let at = |t: &str| json!({"type": t, "item_id": id, "output_index": i, "content_index": c});
        let mut added = at("response.content_part.added");
        added["part"] = empty;
        out.push(added);
        if part["type"] == "output_text" {
            for p in pieces(text(part, "text"), PIECE) {
                let mut d = at("response.output_text.delta");
                d["delta"] = json!(p);
                d["logprobs"] = json!([]);
                out.push(d);
            }
            let mut done = at("response.output_text.done");
            done["text"] = part["text"].clone();
            done["logprobs"] = json!([]);
            out.push(done);
        }
        let mut done = at("response.content_part.done");
        done["part"] = part.clone();
        out.push(done);
    }
    if item["type"] == "function_call" {
        for p in pieces(text(item, "arguments"), PIECE) {
            out.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": i, "delta": p}));
        }
        out.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": i, "arguments": item["arguments"]}));
    }
    out.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    out
}

/// The `response` object as the named events a streaming request gets.
pub(super) fn to_stream(body: &[u8]) -> Option<Vec<u8>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    if answer["object"] != "response" {
        return None;
    }
    let mut out = Vec::new();
    for (n, mut e) in events_of(&answer).into_iter().enumerate() {
        e["sequence_number"] = json!(n);
        let name = text(&e, "type").to_string();
        sse::write(&mut out, Some(&name), &e.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_makes_a_stream_that_folds_back_into_it() {
        let answer = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "model": "gpt-4o-mini", "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "Hello there", "annotations": []}]}],
            "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}});
        let body = serde_json::to_vec(&answer).unwrap();
        let stream = to_stream(&body).unwrap();
        let text = String::from_utf8_lossy(&stream).to_string();
        assert!(text.starts_with("event: response.created\n"), "{text}");
        assert!(text.contains("response.output_text.delta"));
        let back: Value = serde_json::from_slice(&to_json(&stream).unwrap()).unwrap();
        assert_eq!(back, answer);
        let Verdict::Complete(u) = judge(Shape::Stream, &stream) else {
            panic!()
        };
        assert_eq!((u.input, u.output), (5, 2));
    }
}

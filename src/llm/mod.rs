//! LLM APIs (OpenAI Chat Completions and Responses, Anthropic Messages): what a request
//! means (the key leaves out per-request noise such as `stream`, `user`, `metadata`), what
//! an answer holds (complete or not, its usage), and the same answer in either shape — a
//! JSON object or the provider's server-sent events — so one stored answer serves both.
//!
//! ```
//! use larder::llm::{Provider, Shape};
//! let a = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"user":"u1"}"#;
//! let b = br#"{"user":"u2","messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}"#;
//! let (ka, ask_a) = Provider::OpenAiChat.meaning(a).unwrap();
//! let (kb, ask_b) = Provider::OpenAiChat.meaning(b).unwrap();
//! assert_eq!(ka, kb); // one meaning, two shapes
//! assert_eq!((ask_a.shape, ask_b.shape), (Shape::Stream, Shape::Json));
//! ```

mod anthropic;
mod chat;
mod responses;
pub mod sse;

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

/// Which API a rule caches (`llm = "…"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI `POST /v1/chat/completions` (and compatible APIs).
    OpenAiChat,
    /// OpenAI `POST /v1/responses`.
    OpenAiResponses,
    /// Anthropic `POST /v1/messages`.
    AnthropicMessages,
}

/// The shape a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One JSON object.
    Json,
    /// Server-sent events.
    Stream,
}

/// What a request asks of the answer's form (not of its meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    /// JSON or a stream (`"stream": true`).
    pub shape: Shape,
    /// The OpenAI chat usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Why a request body has no meaning to key: not a JSON object, or ambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotJson;

/// What a complete answer holds for accounting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The model that answered.
    pub model: String,
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

/// Whether an answer may be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Complete: store it.
    Complete(Usage),
    /// Complete but cut by the model's limits or a filter (`length`, `content_filter`,
    /// `max_tokens`): stored only with `store_truncated`.
    Truncated(Usage),
    /// A stream that ended without its terminal event, an error event, or no answer.
    Incomplete,
}

/// Response fields that belong to one call and are never replayed from the cache: request
/// ids, rate-limit counters, processing times, bot-management cookies.
pub fn is_per_call_header(name: &str) -> bool {
    matches!(
        name,
        "set-cookie"
            | "x-request-id"
            | "request-id"
            | "openai-processing-ms"
            | "openai-organization"
            | "openai-project"
            | "openai-version"
            | "cf-ray"
            | "retry-after"
            | "anthropic-organization-id"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

impl Provider {
    /// The rule's `llm` value.
    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "openai-chat" => Some(Provider::OpenAiChat),
            "openai-responses" => Some(Provider::OpenAiResponses),
            "anthropic-messages" => Some(Provider::AnthropicMessages),
            _ => None,
        }
    }

    /// Its name in config and stats.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAiChat => "openai-chat",
            Provider::OpenAiResponses => "openai-responses",
            Provider::AnthropicMessages => "anthropic-messages",
        }
    }

    /// Whether a top-level request member does not change the answer (the API
    /// references' per-request options). Everything else, unknown members included, is
    /// meaning.
    fn is_noise(self, member: &str) -> bool {
        const OPENAI: [&str; 8] = [
            "stream",
            "stream_options",
            "user",
            "metadata",
            "store",
            "service_tier",
            "prompt_cache_key",
            "safety_identifier",
        ];
        match self {
            Provider::OpenAiChat => OPENAI.contains(&member),
            Provider::OpenAiResponses => OPENAI.contains(&member) || member == "background",
            Provider::AnthropicMessages => {
                matches!(member, "stream" | "metadata" | "service_tier")
            }
        }
    }

    /// The request's meaning (canonical JSON of every member but the noise: keys sorted,
    /// exact number text, no duplicate members) and what it asks of the answer's form.
    pub fn meaning(self, body: &[u8]) -> Result<(Vec<u8>, Ask), NotJson> {
        let crate::semantics::json::Canonical::Json(canonical) =
            crate::semantics::json::canonicalize(body)
        else {
            return Err(NotJson);
        };
        let members: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(&canonical).map_err(|_| NotJson)?;
        let ask = Ask {
            shape: if members.get("stream").is_some_and(|v| v.get() == "true") {
                Shape::Stream
            } else {
                Shape::Json
            },
            include_usage: members
                .get("stream_options")
                .and_then(|v| serde_json::from_str::<Value>(v.get()).ok())
                .is_some_and(|v| v["include_usage"] == Value::Bool(true)),
        };
        let mut out = Vec::with_capacity(canonical.len());
        out.push(b'{');
        for (k, v) in members.iter().filter(|(k, _)| !self.is_noise(k)) {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(serde_json::to_string(k).map_err(|_| NotJson)?.as_bytes());
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Ok((out, ask))
    }

    /// The body to send upstream: a streaming OpenAI chat request always asks for the
    /// usage chunk (the cache must know what an answer cost); `None` when it is sent as
    /// it came.
    pub fn forwarded(self, body: &[u8], ask: Ask) -> Option<Vec<u8>> {
        if self != Provider::OpenAiChat || ask.shape != Shape::Stream || ask.include_usage {
            return None;
        }
        let mut members: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
        let options = members
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if !options.is_object() {
            *options = Value::Object(Default::default());
        }
        options["include_usage"] = Value::Bool(true);
        serde_json::to_vec(&members).ok()
    }

    /// Whether a complete answer may be stored, and its usage.
    pub fn judge(self, shape: Shape, body: &[u8]) -> Verdict {
        match self {
            Provider::OpenAiChat => chat::judge(shape, body),
            Provider::OpenAiResponses => responses::judge(shape, body),
            Provider::AnthropicMessages => anthropic::judge(shape, body),
        }
    }

    /// The answer `body` (stored as `stored`) in the shape `ask` wants; `None` when it is
    /// to be served as stored. An OpenAI chat stream loses its usage chunk for a client
    /// that did not ask for it.
    pub fn reshape(self, stored: Shape, body: &[u8], ask: Ask) -> Option<Vec<u8>> {
        match (stored, ask.shape) {
            (Shape::Json, Shape::Json) => None,
            (Shape::Stream, Shape::Stream) => match self {
                Provider::OpenAiChat if !ask.include_usage => Some(chat::without_usage(body)),
                _ => None,
            },
            (Shape::Stream, Shape::Json) => match self {
                Provider::OpenAiChat => chat::to_json(body),
                Provider::OpenAiResponses => responses::to_json(body),
                Provider::AnthropicMessages => anthropic::to_json(body),
            },
            (Shape::Json, Shape::Stream) => match self {
                Provider::OpenAiChat => chat::to_stream(body, ask.include_usage),
                Provider::OpenAiResponses => responses::to_stream(body),
                Provider::AnthropicMessages => anthropic::to_stream(body),
            },
        }
    }

    /// The headers a reshaped answer is sent with.
    pub fn content_type(shape: Shape) -> &'static str {
        match shape {
            Shape::Json => "application/json",
            Shape::Stream => "text/event-stream; charset=utf-8",
        }
    }
}

/// Drops the OpenAI chat usage chunk from a stream as it passes, for a client that did not
/// ask for it (larder always asks upstream).
///
/// ```
/// let mut f = larder::llm::DropUsage::default();
/// let a = f.feed(b"data: {\"choices\":[{\"index\":0}]}\n\ndata: {\"choices\":[],\"usa");
/// let b = f.feed(b"ge\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n");
/// assert_eq!([a, b].concat(), b"data: {\"choices\":[{\"index\":0}]}\n\ndata: [DONE]\n\n");
/// ```
#[derive(Debug, Default)]
pub struct DropUsage {
    pending: Vec<u8>,
}

impl DropUsage {
    /// The events completed by `chunk`, the usage chunk left out.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let (events, used) = sse::events(&self.pending);
        let mut out = Vec::with_capacity(used);
        for e in events.iter().filter(|e| !chat::is_usage_chunk(&e.data)) {
            out.extend_from_slice(e.raw);
        }
        self.pending.drain(..used);
        out
    }

    /// What is left at the end (an unfinished event, passed on as it is).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The shape of a stored answer, from its `Content-Type`.
pub fn shape_of(content_type: Option<&str>) -> Shape {
    match content_type {
        Some(ct) if crate::semantics::media::media_type(ct) == "text/event-stream" => Shape::Stream,
        _ => Shape::Json,
    }
}

/// The price-list name of `model`: as given, or without a date suffix
/// (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`, `claude-3-5-haiku-20241022` →
/// `claude-3-5-haiku`) when the list has no entry for it.
///
/// ```
/// let prices = |m: &str| m == "gpt-4o-mini";
/// assert_eq!(larder::llm::priced_as("gpt-4o-mini-2024-07-18", prices), Some("gpt-4o-mini"));
/// assert_eq!(larder::llm::priced_as("gpt-4o", prices), None);
/// ```
pub fn priced_as(model: &str, has: impl Fn(&str) -> bool) -> Option<&str> {
    if has(model) {
        return Some(model);
    }
    let dated = |tail: &str, len: usize| {
        tail.len() == len
            && tail
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (len == 10 && (i == 4 || i == 7) && b == b'-'))
    };
    let base = match model.rsplit_once('-') {
        Some((head, tail)) if dated(tail, 8) => head,
        _ if model.len() > 11 && dated(&model[model.len() - 10..], 10) => {
            model[..model.len() - 10].strip_suffix('-')?
        }
        _ => return None,
    };
    has(base).then_some(base)
}

/// A JSON value's string field, or "".
fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value's number field, or 0.
fn count(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// `s` in pieces of at most `n` bytes, cut at character boundaries (a stream made of a
/// stored text reads like one the model sent).
fn pieces(s: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut cut = rest.len().min(n);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// The piece size of synthesized streams.
const PIECE: usize = 48;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_left_out_and_unknown_members_stay() {
        let p = Provider::AnthropicMessages;
        let (a, _) = p
            .meaning(br#"{"model":"m","max_tokens":5,"messages":[],"metadata":{"user_id":"x"}}"#)
            .unwrap();
        let (b, _) = p
            .meaning(br#"{"max_tokens":5,"messages":[],"model":"m","brand_new":1}"#)
            .unwrap();
        assert_ne!(a, b, "an unknown member is part of the meaning");
        assert_eq!(a, br#"{"max_tokens":5,"messages":[],"model":"m"}"#);
        assert!(p.meaning(br#"{"model":"a","model":"b"}"#).is_err());
    }

    #[test]
    fn a_streaming_chat_request_asks_for_usage_upstream() {
        let body = br#"{"model":"m","stream":true,"messages":[]}"#;
        let (_, ask) = Provider::OpenAiChat.meaning(body).unwrap();
        let sent = Provider::OpenAiChat.forwarded(body, ask).unwrap();
        let v: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let asked = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let (_, ask) = Provider::OpenAiChat.meaning(asked).unwrap();
        assert!(Provider::OpenAiChat.forwarded(asked, ask).is_none());
    }

    #[test]
    fn pieces_cut_at_character_boundaries() {
        assert_eq!(pieces("héllo", 2), vec!["h", "é", "ll", "o"]);
        assert_eq!(pieces("", 4), Vec::<&str>::new());
    }
}

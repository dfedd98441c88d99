//! Canonical JSON (for body keys, LLM request meanings): object members sorted by key, insignificant whitespace
//! removed, strings re-escaped the one way, numbers kept exactly as written.
//!
//! The parser is iterative (an explicit stack, never the call stack) and bounded in depth:
//! a body nested deeper than [`MAX_DEPTH`] is refused as [`Canonical::TooDeep`] rather than
//! canonicalised, so no request can exhaust the stack or cost more than one pass.
//!
//! ```
//! use larder::semantics::json::{canonicalize, Canonical};
//! assert_eq!(
//!     canonicalize(br#"{ "b": [1, 2.50], "a": "\u0041" }"#),
//!     Canonical::Json(br#"{"a":"A","b":[1,2.50]}"#.to_vec())
//! );
//! let deep = "[".repeat(10_000) + &"]".repeat(10_000);
//! assert_eq!(canonicalize(deep.as_bytes()), Canonical::TooDeep);
//! assert_eq!(canonicalize(br#"{"q":1,"q":2}"#), Canonical::Ambiguous);
//! assert_eq!(canonicalize(b"not json"), Canonical::NotJson);
//! ```

/// Nesting deeper than this is refused (serde_json's own default limit).
pub const MAX_DEPTH: usize = 128;

/// The outcome of canonicalising a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Canonical {
    /// The canonical text.
    Json(Vec<u8>),
    /// Not JSON (RFC 8259), or not UTF-8.
    NotJson,
    /// An object with a key twice: parsers disagree on which value wins, so it has no
    /// single canonical form.
    Ambiguous,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// One parsed value in the arena.
enum Node {
    /// A number or literal: its exact bytes in the input.
    Raw(usize, usize),
    /// A string, decoded.
    Str(String),
    Array(Vec<usize>),
    /// Members as (decoded key, value node).
    Object(Vec<(String, usize)>),
}

/// A container being filled.
enum Open {
    Array(Vec<usize>),
    Object(Vec<(String, usize)>, Option<String>),
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

#[derive(Debug)]
enum Fail {
    NotJson,
    TooDeep,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.input.get(self.at).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), Fail> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(Fail::NotJson)
        }
    }

    fn literal(&mut self) -> Result<(usize, usize), Fail> {
        let start = self.at;
        for word in [&b"true"[..], b"false", b"null"] {
            if self.input[start..].starts_with(word) {
                self.at += word.len();
                return Ok((start, self.at));
            }
        }
        Err(Fail::NotJson)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(usize, usize), Fail> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.input.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        if self.input.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.input.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(Fail::NotJson),
        }
        if self.input.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(Fail::NotJson);
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.input.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(Fail::NotJson);
            }
        }
        Ok((start, self.at))
    }

    fn hex4(&mut self) -> Result<u32, Fail> {
        let text = self.input.get(self.at..self.at + 4).ok_or(Fail::NotJson)?;
        let mut n = 0u32;
        for &c in text {
            n = n * 16 + (c as char).to_digit(16).ok_or(Fail::NotJson)?;
        }
        self.at += 4;
        Ok(n)
    }

    /// A string starting at the opening quote, decoded.
    fn string(&mut self) -> Result<String, Fail> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let run_start = self.at;
            while let Some(&c) = self.input.get(self.at) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.extend_from_slice(&self.input[run_start..self.at]);
            match self.input.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| Fail::NotJson);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let esc = *self.input.get(self.at).ok_or(Fail::NotJson)?;
                    self.at += 1;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.input.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return Err(Fail::NotJson);
                                }
                                self.at += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Fail::NotJson);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or(Fail::NotJson)?
                        }
                        _ => return Err(Fail::NotJson),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                // A control character or the end of the input inside a string.
                _ => return Err(Fail::NotJson),
            }
        }
    }

    /// Parses the whole input into `nodes`; returns the root.
    fn document(&mut self, nodes: &mut Vec<Node>) -> Result<usize, Fail> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            // A value starts here: a scalar or an empty container is whole at once.
            let Some(value) = self.value(nodes, &mut stack)? else {
                continue;
            };
            if let Some(root) = self.hand_up(nodes, &mut stack, value)? {
                return Ok(root);
            }
        }
    }

    /// Reads the value that starts here: `Some(node)` when it is whole, `None` when it
    /// opened a container (pushed on `stack`, its first value next).
    fn value(
        &mut self,
        nodes: &mut Vec<Node>,
        stack: &mut Vec<Open>,
    ) -> Result<Option<usize>, Fail> {
        let node = match self.peek().ok_or(Fail::NotJson)? {
            open @ (b'[' | b'{') => {
                self.at += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(Fail::TooDeep);
                }
                let array = open == b'[';
                if self.peek() == Some(if array { b']' } else { b'}' }) {
                    self.at += 1;
                    return Ok(Some(push(
                        nodes,
                        if array {
                            Node::Array(Vec::new())
                        } else {
                            Node::Object(Vec::new())
                        },
                    )));
                }
                stack.push(if array {
                    Open::Array(Vec::new())
                } else {
                    let key = self.string()?;
                    self.expect(b':')?;
                    Open::Object(Vec::new(), Some(key))
                });
                return Ok(None);
            }
            b'"' => Node::Str(self.string()?),
            b'-' | b'0'..=b'9' => {
                let (a, b) = self.number()?;
                Node::Raw(a, b)
            }
            _ => {
                let (a, b) = self.literal()?;
                Node::Raw(a, b)
            }
        };
        Ok(Some(push(nodes, node)))
    }

    /// Hands a whole value to its container, closing containers as they end: `Some(root)`
    /// once the document is whole, `None` when the next value is due.
    fn hand_up(
        &mut self,
        nodes: &mut Vec<Node>,
        stack: &mut Vec<Open>,
        mut value: usize,
    ) -> Result<Option<usize>, Fail> {
        loop {
            let Some(top) = stack.last_mut() else {
                self.skip_ws();
                return if self.at == self.input.len() {
                    Ok(Some(value))
                } else {
                    Err(Fail::NotJson)
                };
            };
            let closes = match top {
                Open::Array(items) => {
                    items.push(value);
                    b']'
                }
                Open::Object(members, key) => {
                    let k = key.take().ok_or(Fail::NotJson)?;
                    members.push((k, value));
                    b'}'
                }
            };
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    if let Open::Object(_, key) = top {
                        let k = self.string()?;
                        self.expect(b':')?;
                        *key = Some(k);
                    }
                    return Ok(None);
                }
                Some(c) if c == closes => {
                    self.at += 1;
                    value = match stack.pop() {
                        Some(Open::Array(items)) => push(nodes, Node::Array(items)),
                        Some(Open::Object(members, _)) => push(nodes, Node::Object(members)),
                        None => return Err(Fail::NotJson),
                    };
                }
                _ => return Err(Fail::NotJson),
            }
        }
    }
}

fn push(nodes: &mut Vec<Node>, node: Node) -> usize {
    nodes.push(node);
    nodes.len() - 1
}

/// Writes a string with the one escaping canonical JSON uses.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Writes the canonical form of `node` (depth is bounded by [`MAX_DEPTH`], so the
/// recursion is too). Returns false on a duplicate key.
fn emit(input: &[u8], nodes: &mut [Node], node: usize, out: &mut Vec<u8>) -> bool {
    match std::mem::replace(&mut nodes[node], Node::Raw(0, 0)) {
        Node::Raw(a, b) => out.extend_from_slice(&input[a..b]),
        Node::Str(s) => write_str(out, &s),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !emit(input, nodes, item, out) {
                    return false;
                }
            }
            out.push(b']');
        }
        Node::Object(mut members) => {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            if members.windows(2).any(|w| w[0].0 == w[1].0) {
                return false;
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, &k);
                out.push(b':');
                if !emit(input, nodes, v, out) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

/// Canonicalises a JSON document (see the module docs).
pub fn canonicalize(input: &[u8]) -> Canonical {
    let mut nodes = Vec::new();
    let root = match (Parser { input, at: 0 }).document(&mut nodes) {
        Ok(r) => r,
        Err(Fail::NotJson) => return Canonical::NotJson,
        Err(Fail::TooDeep) => return Canonical::TooDeep,
    };
    let mut out = Vec::with_capacity(input.len());
    if emit(input, &mut nodes, root, &mut out) {
        Canonical::Json(out)
    } else {
        Canonical::Ambiguous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Vec<u8> {
        match canonicalize(s.as_bytes()) {
            Canonical::Json(v) => v,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(json(" 1 "), b"1");
        assert_eq!(json("[ ]"), b"[]");
        assert_eq!(json("{ }"), b"{}");
        assert_eq!(
            json(r#"{"b":{"d":1,"c":2},"a":[true,false,null]}"#),
            br#"{"a":[true,false,null],"b":{"c":2,"d":1}}"#
        );
        assert_eq!(json(r#""\u00e9\/\ud83d\ude00""#), "\"é/😀\"".as_bytes());
        assert_eq!(json(r#"["\u0001"]"#), br#"["\u0001"]"#);
        // Keys that spell the same string are the same key.
        assert_eq!(canonicalize(br#"{"a":1,"\u0061":2}"#), Canonical::Ambiguous);
        assert_eq!(json("-0.5e+10"), b"-0.5e+10");
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for bad in [
            "",
            " ",
            "[",
            "]",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "{,}",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "\"abc",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "tru",
            "nulls",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "\"a\u{1}b\"",
            "1 2",
            "{1:2}",
        ] {
            assert_eq!(canonicalize(bad.as_bytes()), Canonical::NotJson, "{bad:?}");
        }
        assert_eq!(canonicalize(b"\"\xff\""), Canonical::NotJson);
    }

    #[test]
    fn depth_is_bounded_on_both_kinds_of_container() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(matches!(canonicalize(ok.as_bytes()), Canonical::Json(_)));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(canonicalize(deep.as_bytes()), Canonical::TooDeep);
        let objects = "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000);
        assert_eq!(canonicalize(objects.as_bytes()), Canonical::TooDeep);
        // Deep but unterminated: refused without building anything deep.
        assert_eq!(
            canonicalize("[".repeat(1_000_000).as_bytes()),
            Canonical::TooDeep
        );
    }
}

//! Server-sent events (the WHATWG `text/event-stream` format) as the LLM APIs send them:
//! events separated by a blank line, each with an optional `event:` name and `data:` lines.

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// Its `event:` name, if any.
    pub name: Option<&'a str>,
    /// Its `data:` lines joined by `\n`.
    pub data: String,
    /// The event's bytes as received (separator included).
    pub raw: &'a [u8],
}

/// The complete events at the start of `bytes`, and how many bytes they took (a trailing
/// event not yet ended by a blank line is left).
pub fn events(bytes: &[u8]) -> (Vec<Event<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(end) = event_end(&bytes[at..]) {
        let raw = &bytes[at..at + end];
        if let Some(e) = parse(raw) {
            out.push(e);
        }
        at += end;
    }
    (out, at)
}

/// Where the event starting at `bytes` ends (after its blank line).
fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn parse(raw: &[u8]) -> Option<Event<'_>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if name.is_none() && data.is_empty() {
        return None;
    }
    Some(Event {
        name,
        data: data.join("\n"),
        raw,
    })
}

/// Writes one event (`event:` when named, one `data:` line).
pub fn write(out: &mut Vec<u8>, name: Option<&str>, data: &str) {
    if let Some(n) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_and_a_partial_one_waits() {
        let bytes = b"event: a\ndata: 1\n\ndata: {\"x\":2}\n\ndata: par";
        let (evs, used) = events(bytes);
        assert_eq!(evs.len(), 2);
        assert_eq!((evs[0].name, evs[0].data.as_str()), (Some("a"), "1"));
        assert_eq!(evs[1].data, "{\"x\":2}");
        assert_eq!(&bytes[used..], b"data: par");
    }
}

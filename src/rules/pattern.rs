//! Path patterns: templates (`/jobs/{id}`, `/files/{rest*}`) and raw regexes.

use regex::Regex;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// A compiled path pattern.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Literal segments, `{name}` (one non-empty segment) and a final `{name*}` (the rest).
    Template {
        /// The source text.
        source: String,
        /// Segments after the leading `/`.
        segments: Vec<TemplateSegment>,
        /// Capture names in order.
        names: Vec<String>,
    },
    /// A raw regex on the path; named groups are captures.
    Regex {
        /// The compiled regex.
        regex: Regex,
        /// Named groups in order.
        names: Vec<String>,
    },
}

/// One segment of a template pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSegment(pub(crate) Segment);

/// Values captured from a path, by capture index (see [`Pattern::capture_names`]).
pub type Captures = Vec<String>;

impl Pattern {
    /// Parses a pattern; errors say what is wrong in words.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if let Some(re) = text.strip_prefix("regex:") {
            let regex = Regex::new(re).map_err(|e| format!("invalid regex: {e}"))?;
            let names = regex.capture_names().flatten().map(String::from).collect();
            return Ok(Pattern::Regex { regex, names });
        }
        if !text.starts_with('/') {
            return Err(format!(
                "path pattern {text:?} must start with '/' (or with \"regex:\" for a raw regex)"
            ));
        }
        let raw: Vec<&str> = text[1..].split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<String> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (name, rest) = match inner.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || name.starts_with(|c: char| c.is_ascii_digit())
                {
                    return Err(format!(
                        "capture name {name:?} in {text:?} must be letters, digits and '_'"
                    ));
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!("capture {{{name}}} appears twice in {text:?}"));
                }
                if rest && i + 1 != raw.len() {
                    return Err(format!(
                        "{{{name}*}} in {text:?} takes the rest of the path, so it must be the last segment"
                    ));
                }
                names.push(name.to_string());
                segments.push(TemplateSegment(if rest {
                    Segment::Rest
                } else {
                    Segment::Param
                }));
            } else if seg.contains('{') || seg.contains('}') {
                return Err(format!(
                    "segment {seg:?} of {text:?}: a capture must be a whole segment like {{name}}"
                ));
            } else {
                segments.push(TemplateSegment(Segment::Literal(seg.to_string())));
            }
        }
        Ok(Pattern::Template {
            source: text.to_string(),
            segments,
            names,
        })
    }

    /// The capture names in index order.
    pub fn capture_names(&self) -> Vec<String> {
        match self {
            Pattern::Template { names, .. } | Pattern::Regex { names, .. } => names.clone(),
        }
    }

    /// The pattern as written in the config.
    pub fn source(&self) -> String {
        match self {
            Pattern::Template { source, .. } => source.clone(),
            Pattern::Regex { regex, .. } => format!("regex:{}", regex.as_str()),
        }
    }

    /// Matches `path` and returns its captures, or `None` if it does not match.
    pub fn captures(&self, path: &str) -> Option<Captures> {
        match self {
            Pattern::Regex { regex, names } => {
                let caps = regex.captures(path)?;
                Some(
                    names
                        .iter()
                        .map(|n| caps.name(n).map_or("", |m| m.as_str()).to_string())
                        .collect(),
                )
            }
            Pattern::Template { segments, .. } => {
                let mut out = Vec::new();
                let mut parts = path.strip_prefix('/')?.split('/');
                let mut consumed = 0usize; // bytes of `path` after the leading '/'
                let body = &path[1..];
                for seg in segments {
                    match &seg.0 {
                        Segment::Rest => {
                            let rest = body.get(consumed..).unwrap_or("");
                            out.push(rest.to_string());
                            return Some(out);
                        }
                        Segment::Literal(lit) => {
                            let part = parts.next()?;
                            if part != lit {
                                return None;
                            }
                            consumed += part.len() + 1;
                        }
                        Segment::Param => {
                            let part = parts.next()?;
                            if part.is_empty() {
                                return None;
                            }
                            out.push(part.to_string());
                            consumed += part.len() + 1;
                        }
                    }
                }
                if parts.next().is_some() {
                    return None;
                }
                Some(out)
            }
        }
    }
}

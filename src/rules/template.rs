//! Tag and path templates such as `job:{job_id}`, filled from a rule's captures.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Capture(usize),
}

/// A tag template such as `job:{job_id}`, filled from a rule's captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; every `{name}` must be one of `names`.
    pub fn parse(text: &str, names: &[String]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in template {text:?}"))?;
            let name = &after[..close];
            let idx = names.iter().position(|n| n == name).ok_or_else(|| {
                if names.is_empty() {
                    format!("template {text:?} names {{{name}}} but the path pattern has no captures")
                } else {
                    format!(
                        "template {text:?} names {{{name}}}, which the path pattern does not capture (captures: {})",
                        names.join(", ")
                    )
                }
            })?;
            pieces.push(Piece::Capture(idx));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in template {text:?}"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        if text.is_empty() {
            return Err("empty template".into());
        }
        Ok(Template {
            source: text.to_string(),
            pieces,
        })
    }

    /// Whether the template needs no captures.
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// Fills the template from captures.
    pub fn render(&self, captures: &[String]) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Capture(i) => out.push_str(captures.get(*i).map_or("", String::as_str)),
            }
        }
        out
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

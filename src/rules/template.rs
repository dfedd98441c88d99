//! Tag and path templates such as `job:{job_id}`, filled from a rule's captures, and
//! `quota:{user_id}`, filled with the request's user (its keyed hash, never the raw
//! credential) so that a mutation can drop one user's entries.

use crate::key::{hex, UserId};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Capture(usize),
    User,
}

/// The name that stands for the request's user in a template (unless the path captures a
/// segment of that name).
pub const USER_ID: &str = "user_id";

/// A tag template such as `job:{job_id}`, filled from a rule's captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; every `{name}` must be one of `names`, or `{user_id}`.
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
            if name == USER_ID && !names.iter().any(|n| n == name) {
                pieces.push(Piece::User);
                rest = &after[close + 1..];
                continue;
            }
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

    /// Whether it names the request's user (`{user_id}`).
    pub fn uses_user(&self) -> bool {
        self.pieces.contains(&Piece::User)
    }

    /// Fills the template from captures (a template naming the user needs
    /// [`Template::render_for`]).
    pub fn render(&self, captures: &[String]) -> String {
        self.render_for(captures, None).unwrap_or_default()
    }

    /// Fills the template from captures and the request's user; `None` when it names the
    /// user and there is none.
    ///
    /// ```
    /// use larder::key::UserId;
    /// use larder::rules::Template;
    /// let t = Template::parse("quota:{user_id}", &[]).unwrap();
    /// assert_eq!(t.render_for(&[], None), None);
    /// let tag = t.render_for(&[], Some(&UserId([7; 16]))).unwrap();
    /// assert_eq!(tag, format!("quota:{}", "07".repeat(16)));
    /// ```
    pub fn render_for(&self, captures: &[String], user: Option<&UserId>) -> Option<String> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Capture(i) => out.push_str(captures.get(*i).map_or("", String::as_str)),
                Piece::User => out.push_str(&hex(&user?.0)),
            }
        }
        Some(out)
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

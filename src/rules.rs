//! Endpoint rules: path patterns compiled once, matched first-in-file-order.
//!
//! A pattern is a path template (`/jobs/{job_id}`, `/files/{rest*}`) or a raw regex
//! (`regex:^/v\d+/items/(?P<id>\d+)$`). Templates are indexed in a segment trie and regex
//! patterns in one [`regex::RegexSet`], so matching costs the depth of the path, not the
//! number of rules. Captures are extracted only when needed (tags, invalidation).
//!
//! ```
//! use larder::rules::{Pattern, Template};
//! let p = Pattern::parse("/jobs/{job_id}").unwrap();
//! let caps = p.captures("/jobs/42").unwrap();
//! let t = Template::parse("job:{job_id}", &p.capture_names()).unwrap();
//! assert_eq!(t.render(&caps), "job:42");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Method};
use regex::{Regex, RegexSet};

/// A set of HTTP methods as a bit mask.
///
/// ```
/// use larder::rules::MethodSet;
/// let set = MethodSet::from_methods(&[http::Method::GET]);
/// assert!(set.contains(&http::Method::GET));
/// assert!(!set.contains(&http::Method::POST));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

impl MethodSet {
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);

    fn bit(method: &Method) -> u16 {
        // Compare the common methods first; the list is tiny.
        METHODS
            .iter()
            .position(|m| m == method)
            .map_or(0, |i| 1 << i)
    }

    /// Builds a set from a list of methods.
    pub fn from_methods(methods: &[Method]) -> Self {
        MethodSet(methods.iter().fold(0, |acc, m| acc | Self::bit(m)))
    }

    /// Whether `method` is in the set.
    pub fn contains(&self, method: &Method) -> bool {
        self.0 & Self::bit(method) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    /// The methods in the set, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Method> + '_ {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, m)| m)
    }

    /// Parses one method name, accepting only the standard methods.
    pub fn parse_method(name: &str) -> Result<Method, String> {
        METHODS
            .iter()
            .find(|m| m.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "unknown method {name:?}; expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT"
                )
            })
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(Method::as_str))
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
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
pub struct TemplateSegment(Segment);

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

/// How a rule's ttl combines with the origin's freshness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TtlMode {
    /// The rule's ttl replaces the origin's freshness (`max-age`, `Expires`, `no-cache`).
    #[default]
    Override,
    /// The origin's freshness applies, capped at the rule's ttl.
    Cap,
}

/// One compiled endpoint rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Position in the config file (0-based); also the match priority.
    pub index: usize,
    /// Name used in stats, metrics and logs.
    pub name: String,
    /// The compiled path pattern.
    pub pattern: Pattern,
    /// Methods whose responses this rule caches (HEAD follows GET).
    pub methods: MethodSet,
    /// Methods that, on a matching path, drop this rule's tags after a 2xx.
    pub invalidate_on: MethodSet,
    /// `cache = false` rules only forward (and invalidate).
    pub cache: bool,
    /// Freshness lifetime; `None` means the origin's, then `default_ttl`.
    pub ttl: Option<Duration>,
    /// How `ttl` combines with the origin's freshness.
    pub ttl_mode: TtlMode,
    /// What clients are told (replaces the upstream's `Cache-Control`).
    pub cache_control: Option<HeaderValue>,
    /// Key per user; a request without a user bypasses the cache.
    pub per_user: bool,
    /// Key by the hash of the request body.
    pub key_body: bool,
    /// Store responses that set cookies (the stored copy never carries `Set-Cookie`).
    pub allow_set_cookie: bool,
    /// The answers are the same for every caller: store them even when the request carries
    /// `Authorization` (an API token on every call, say) and the origin does not mark them
    /// shareable.
    pub shared: bool,
    /// Only these query parameters are part of the key (`None`: all but the ignored).
    pub key_query: Option<Vec<String>>,
    /// A version string mixed into the key: bump it to make old entries unreachable.
    pub version: Option<String>,
    /// Tags attached to stored entries.
    pub tags: Vec<Template>,
    /// Tags dropped after a 2xx answer to a request matching this rule.
    pub invalidates: Vec<Template>,
    /// How long a stale entry may be served while it is refreshed (RFC 5861); the
    /// origin's `stale-while-revalidate` when unset.
    pub stale_while_revalidate: Option<Duration>,
    /// How long a stale entry may be served when the upstream fails (RFC 5861); the
    /// origin's `stale-if-error` when unset.
    pub stale_if_error: Option<Duration>,
    /// What one trip upstream costs (unit-free), for the `saved` stats.
    pub miss_cost: Option<f64>,
    /// Below this hit ratio over a window, a warning is logged and a gauge set.
    pub alert_hit_ratio: Option<f64>,
    /// Related paths fetched in the background after a miss on this rule.
    pub prefetch: Vec<Template>,
}

impl Rule {
    /// A rule with the defaults of the config file, for tests and builders.
    ///
    /// ```
    /// let rule = larder::rules::Rule::new("job", "/jobs/{id}").unwrap();
    /// assert!(rule.pattern.captures("/jobs/7").is_some());
    /// ```
    pub fn new(name: &str, path: &str) -> Result<Rule, String> {
        Ok(Rule {
            index: 0,
            name: name.to_string(),
            pattern: Pattern::parse(path)?,
            methods: MethodSet::from_methods(&[Method::GET, Method::HEAD]),
            invalidate_on: MethodSet::EMPTY,
            cache: true,
            ttl: None,
            ttl_mode: TtlMode::Override,
            cache_control: None,
            per_user: false,
            key_body: false,
            allow_set_cookie: false,
            shared: false,
            key_query: None,
            version: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            miss_cost: None,
            alert_hit_ratio: None,
            prefetch: Vec::new(),
            tags: Vec::new(),
            invalidates: Vec::new(),
        })
    }

    /// Whether a request with `method` is governed by this rule.
    pub fn applies_to(&self, method: &Method) -> bool {
        let m = if method == Method::HEAD && self.methods.contains(&Method::GET) {
            &Method::GET
        } else {
            method
        };
        self.methods.contains(m) || self.invalidate_on.contains(method)
    }

    /// Whether responses to `method` are cached under this rule.
    pub fn caches(&self, method: &Method) -> bool {
        self.cache
            && (self.methods.contains(method)
                || (method == Method::HEAD && self.methods.contains(&Method::GET)))
    }
}

#[derive(Default)]
struct Node {
    literals: HashMap<Box<str>, usize>,
    param: Option<usize>,
    /// Rules whose pattern ends at this node.
    terminal: Vec<usize>,
    /// Rules whose pattern ends with `{x*}` after this node.
    rest: Vec<usize>,
    /// Smallest rule index anywhere in this subtree (for pruning).
    min_rule: usize,
}

/// All rules of a config, indexed for matching.
pub struct RuleSet {
    rules: Vec<Rule>,
    nodes: Vec<Node>,
    regex_set: Option<RegexSet>,
    regex_rules: Vec<usize>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.name))
            .finish()
    }
}

impl RuleSet {
    /// Indexes `rules`; their `index` fields are set to their position.
    ///
    /// ```
    /// use larder::rules::{Rule, RuleSet};
    /// let set = RuleSet::new(vec![
    ///     Rule::new("one", "/jobs/{id}").unwrap(),
    ///     Rule::new("all", "/{rest*}").unwrap(),
    /// ]);
    /// assert_eq!(set.find(&http::Method::GET, "/jobs/1").unwrap().name, "one");
    /// assert_eq!(set.find(&http::Method::GET, "/other").unwrap().name, "all");
    /// assert!(set.find(&http::Method::POST, "/jobs/1").is_none());
    /// ```
    pub fn new(mut rules: Vec<Rule>) -> RuleSet {
        let mut nodes = vec![Node {
            min_rule: usize::MAX,
            ..Node::default()
        }];
        let mut regex_sources = Vec::new();
        let mut regex_rules = Vec::new();
        for (i, rule) in rules.iter_mut().enumerate() {
            rule.index = i;
            match &rule.pattern {
                Pattern::Regex { regex, .. } => {
                    regex_sources.push(regex.as_str().to_string());
                    regex_rules.push(i);
                }
                Pattern::Template { segments, .. } => {
                    let mut node = 0;
                    nodes[node].min_rule = nodes[node].min_rule.min(i);
                    for seg in segments {
                        match &seg.0 {
                            Segment::Rest => {
                                nodes[node].rest.push(i);
                                break;
                            }
                            Segment::Literal(lit) => {
                                node = match nodes[node].literals.get(lit.as_str()) {
                                    Some(&n) => n,
                                    None => {
                                        nodes.push(Node {
                                            min_rule: usize::MAX,
                                            ..Node::default()
                                        });
                                        let n = nodes.len() - 1;
                                        nodes[node].literals.insert(lit.as_str().into(), n);
                                        n
                                    }
                                };
                            }
                            Segment::Param => {
                                node = match nodes[node].param {
                                    Some(n) => n,
                                    None => {
                                        nodes.push(Node {
                                            min_rule: usize::MAX,
                                            ..Node::default()
                                        });
                                        let n = nodes.len() - 1;
                                        nodes[node].param = Some(n);
                                        n
                                    }
                                };
                            }
                        }
                        nodes[node].min_rule = nodes[node].min_rule.min(i);
                    }
                    if !matches!(segments.last().map(|s| &s.0), Some(Segment::Rest)) {
                        nodes[node].terminal.push(i);
                    }
                }
            }
        }
        // The sources compiled individually above, so the set compiles too; if it ever
        // does not (size limits), fall back to testing each regex rule on its own.
        let regex_set = if regex_sources.is_empty() {
            None
        } else {
            RegexSet::new(&regex_sources).ok()
        };
        RuleSet {
            rules,
            nodes,
            regex_set,
            regex_rules,
        }
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule (in file order) whose pattern matches `path` and that applies to
    /// `method`.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Rule> {
        let mut best = usize::MAX;
        if let Some(body) = path.strip_prefix('/') {
            self.walk(method, body, &mut best);
        }
        if !self.regex_rules.is_empty() && self.regex_rules[0] < best {
            match &self.regex_set {
                Some(set) => {
                    for j in set.matches(path).iter() {
                        let i = self.regex_rules[j];
                        if i >= best {
                            break;
                        }
                        if self.rules[i].applies_to(method) {
                            best = i;
                            break;
                        }
                    }
                }
                None => {
                    for &i in &self.regex_rules {
                        if i >= best {
                            break;
                        }
                        if let Pattern::Regex { regex, .. } = &self.rules[i].pattern {
                            if regex.is_match(path) && self.rules[i].applies_to(method) {
                                best = i;
                                break;
                            }
                        }
                    }
                }
            }
        }
        self.rules.get(best)
    }

    fn consider(&self, list: &[usize], method: &Method, best: &mut usize) {
        for &i in list {
            if i >= *best {
                return;
            }
            if self.rules[i].applies_to(method) {
                *best = i;
                return;
            }
        }
    }

    fn walk(&self, method: &Method, body: &str, best: &mut usize) {
        // Depth-first over (node, remaining path). Each step pushes at most one more frame
        // than it pops, so the stack is as deep as the path: on the stack for real paths.
        let mut stack = Stack::new();
        stack.push((0, body, false));
        while let Some((n, rest, done)) = stack.pop() {
            let node = &self.nodes[n];
            if node.min_rule >= *best {
                continue;
            }
            self.consider(&node.rest, method, best);
            if done {
                self.consider(&node.terminal, method, best);
                continue;
            }
            let (seg, tail, last) = match rest.find('/') {
                Some(p) => (&rest[..p], &rest[p + 1..], false),
                None => (rest, "", true),
            };
            // Push the param branch first so the literal branch is explored first.
            if let Some(p) = node.param {
                if !seg.is_empty() {
                    stack.push((p, tail, last));
                }
            }
            if let Some(&l) = node.literals.get(seg) {
                stack.push((l, tail, last));
            }
        }
    }
}

type Frame<'p> = (usize, &'p str, bool);

/// A stack held inline for the usual depths, spilling to the heap for deep paths.
struct Stack<'p> {
    inline: [Frame<'p>; 24],
    len: usize,
    spill: Vec<Frame<'p>>,
}

impl<'p> Stack<'p> {
    fn new() -> Self {
        Stack {
            inline: [(0, "", false); 24],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, f: Frame<'p>) {
        if self.len < self.inline.len() {
            self.inline[self.len] = f;
            self.len += 1;
        } else {
            self.spill.push(f);
        }
    }

    fn pop(&mut self) -> Option<Frame<'p>> {
        if let Some(f) = self.spill.pop() {
            return Some(f);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.inline[self.len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, path: &str) -> Rule {
        Rule::new(name, path).unwrap()
    }

    #[test]
    fn templates_capture() {
        let p = Pattern::parse("/videos/{id}/comments").unwrap();
        assert_eq!(p.captures("/videos/9/comments"), Some(vec!["9".into()]));
        assert_eq!(p.captures("/videos//comments"), None);
        assert_eq!(p.captures("/videos/9/comments/x"), None);
        let r = Pattern::parse("/files/{rest*}").unwrap();
        assert_eq!(r.captures("/files/a/b"), Some(vec!["a/b".into()]));
        assert_eq!(r.captures("/files"), Some(vec!["".into()]));
        assert!(Pattern::parse("jobs").is_err());
        assert!(Pattern::parse("/a/{x*}/b").is_err());
        assert!(Pattern::parse("/a/v{x}").is_err());
        assert!(Pattern::parse("/a/{x}/{x}").is_err());
        assert!(Pattern::parse("regex:(").is_err());
    }

    #[test]
    fn template_rendering_and_validation() {
        let names = vec!["job_id".to_string()];
        assert_eq!(
            Template::parse("job:{job_id}", &names)
                .unwrap()
                .render(&["7".into()]),
            "job:7"
        );
        assert!(Template::parse("job:{nope}", &names).is_err());
        assert!(Template::parse("job:{job_id", &names).is_err());
    }

    #[test]
    fn first_match_in_file_order() {
        let set = RuleSet::new(vec![
            rule("specific", "/jobs/special"),
            rule("job", "/jobs/{id}"),
            rule("re", "regex:^/jobs/"),
            rule("rest", "/{rest*}"),
        ]);
        let get = Method::GET;
        assert_eq!(set.find(&get, "/jobs/special").unwrap().name, "specific");
        assert_eq!(set.find(&get, "/jobs/1").unwrap().name, "job");
        assert_eq!(set.find(&get, "/jobs/1/x").unwrap().name, "re");
        assert_eq!(set.find(&get, "/other").unwrap().name, "rest");
        // Regex before a template wins when it comes first.
        let set = RuleSet::new(vec![rule("re", "regex:^/a/"), rule("t", "/a/{x}")]);
        assert_eq!(set.find(&get, "/a/b").unwrap().name, "re");
    }

    #[test]
    fn methods_filter_matches() {
        let mut post = rule("summ", "/v1/summarize");
        post.methods = MethodSet::from_methods(&[Method::POST]);
        let mut job = rule("job", "/jobs/{id}");
        job.invalidate_on = MethodSet::from_methods(&[Method::DELETE]);
        let set = RuleSet::new(vec![post, job, rule("any", "/{rest*}")]);
        assert_eq!(
            set.find(&Method::POST, "/v1/summarize").unwrap().name,
            "summ"
        );
        assert_eq!(set.find(&Method::GET, "/v1/summarize").unwrap().name, "any");
        assert_eq!(set.find(&Method::HEAD, "/jobs/1").unwrap().name, "job");
        assert_eq!(set.find(&Method::DELETE, "/jobs/1").unwrap().name, "job");
        assert!(set.find(&Method::PUT, "/jobs/1").is_none());
    }

    #[test]
    fn many_rules_still_first_match() {
        let mut rules: Vec<Rule> = (0..1000)
            .map(|i| rule(&format!("r{i}"), &format!("/svc{i}/{{id}}/items")))
            .collect();
        rules.push(rule("tail", "/{rest*}"));
        let set = RuleSet::new(rules);
        assert_eq!(
            set.find(&Method::GET, "/svc999/5/items").unwrap().name,
            "r999"
        );
        assert_eq!(
            set.find(&Method::GET, "/svc999/5/other").unwrap().name,
            "tail"
        );
    }
}

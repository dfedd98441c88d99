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

use http::Method;
use regex::RegexSet;

mod builder;
mod methods;
mod pattern;
mod rule;
mod spec;
mod template;

pub use builder::RuleBuilder;
pub use methods::MethodSet;
use pattern::Segment;
pub use pattern::{Captures, Pattern, TemplateSegment};
pub use rule::{Rule, TtlMode};
pub use spec::{RuleError, RuleSpec, Scope};
pub use template::Template;

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

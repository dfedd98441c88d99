//! Rules built in code, for [`crate::CacheLayer::builder`]: the same rule a `[[rule]]`
//! table makes, validated the same way when the layer is built.
//!
//! ```
//! use std::time::Duration;
//! use larder::Rule;
//! let rule = Rule::get("/reports/{id}")
//!     .name("report")
//!     .ttl(Duration::from_secs(60))
//!     .tags(["report:{id}"])
//!     .build(0)
//!     .unwrap();
//! assert_eq!(rule.name, "report");
//! assert!(Rule::get("/reports/{id}").tags(["report:{nope}"]).build(0).is_err());
//! ```

use std::time::Duration;

use http::{HeaderValue, Method};

use super::{MethodSet, Pattern, Rule, Template, TtlMode};

/// A rule being built; see [`Rule::get`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RuleBuilder {
    path: String,
    name: Option<String>,
    methods: Vec<Method>,
    ttl: Option<Duration>,
    ttl_mode: TtlMode,
    cache_control: Option<String>,
    per_user: bool,
    shared: bool,
    key_body: bool,
    cache: bool,
    tags: Vec<String>,
    invalidates: Vec<String>,
    invalidate_on: Vec<Method>,
}

impl Rule {
    /// A rule caching `GET` (and `HEAD`) answers for paths matching `pattern`.
    pub fn get(pattern: &str) -> RuleBuilder {
        RuleBuilder {
            path: pattern.to_string(),
            name: None,
            methods: vec![Method::GET, Method::HEAD],
            ttl: None,
            ttl_mode: TtlMode::Override,
            cache_control: None,
            per_user: false,
            shared: false,
            key_body: false,
            cache: true,
            tags: Vec::new(),
            invalidates: Vec::new(),
            invalidate_on: Vec::new(),
        }
    }

    /// A rule caching `POST` answers keyed by their (canonicalised JSON) body.
    pub fn post_by_body(pattern: &str) -> RuleBuilder {
        RuleBuilder {
            methods: vec![Method::POST],
            key_body: true,
            ..Rule::get(pattern)
        }
    }

    /// A rule that caches nothing: it forwards `methods` and, after a 2xx, drops the tags
    /// of [`RuleBuilder::invalidates`].
    pub fn forward(pattern: &str, methods: impl IntoIterator<Item = Method>) -> RuleBuilder {
        RuleBuilder {
            methods: methods.into_iter().collect(),
            cache: false,
            ..Rule::get(pattern)
        }
    }
}

impl RuleBuilder {
    /// The rule's name in stats and metrics (default `ruleN`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// How long answers stay fresh (replacing the origin's freshness).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The origin's freshness, capped at `ttl`.
    pub fn ttl_cap(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self.ttl_mode = TtlMode::Cap;
        self
    }

    /// What clients are told (replaces the upstream's `Cache-Control`).
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_string());
        self
    }

    /// Keyed per user; a request without a user bypasses the cache.
    pub fn per_user(mut self) -> Self {
        self.per_user = true;
        self
    }

    /// The same for every caller: stored even when requests carry credentials.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Tag templates (`{capture}` filled from the path) attached to stored entries.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Tag templates dropped after a 2xx answer to a request matching this rule.
    pub fn invalidates<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.invalidates = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Methods that, on a matching path, drop this rule's tags after a 2xx.
    pub fn invalidate_on(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.invalidate_on = methods.into_iter().collect();
        self
    }

    /// The rule, validated as a `[[rule]]` table would be; `index` is its place.
    pub fn build(self, index: usize) -> Result<Rule, String> {
        let pattern = Pattern::parse(&self.path)?;
        let names = pattern.capture_names();
        let mut rule = Rule::new(
            self.name
                .as_deref()
                .unwrap_or(&format!("rule{}", index + 1)),
            &self.path,
        )?;
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err("ttl must be greater than zero".into());
        }
        if self.cache {
            for m in &self.methods {
                let ok = *m == Method::GET
                    || *m == Method::HEAD
                    || (*m == Method::POST && self.key_body);
                if !ok {
                    return Err(format!("{m} responses cannot be cached"));
                }
            }
        }
        if self.per_user && self.shared {
            return Err("a rule cannot be both shared and per_user".into());
        }
        let templates = |list: &[String]| -> Result<Vec<Template>, String> {
            list.iter().map(|t| Template::parse(t, &names)).collect()
        };
        rule.pattern = pattern;
        rule.methods = MethodSet::from_methods(&self.methods);
        rule.invalidate_on = MethodSet::from_methods(&self.invalidate_on);
        rule.cache = self.cache;
        rule.ttl = self.ttl;
        rule.ttl_mode = self.ttl_mode;
        rule.cache_control = match &self.cache_control {
            Some(v) => Some(
                HeaderValue::from_str(v)
                    .map_err(|_| format!("{v:?} is not a valid header value"))?,
            ),
            None => None,
        };
        rule.per_user = self.per_user;
        rule.shared = self.shared;
        rule.key_body = self.key_body;
        rule.tags = templates(&self.tags)?;
        rule.invalidates = templates(&self.invalidates)?;
        rule.index = index;
        Ok(rule)
    }
}

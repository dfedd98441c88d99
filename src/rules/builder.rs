//! Rules built in code, for [`crate::CacheLayer::builder`]: the same rule a `[[rule]]`
//! table makes, checked by the same validator ([`RuleSpec::validate`]) when the layer is
//! built. Every field a table can set has a setter.
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

use http::Method;

use super::spec::{RuleError, RuleSpec, Scope};
use super::{Rule, TtlMode};

/// A rule being built; see [`Rule::get`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RuleBuilder {
    spec: RuleSpec,
}

fn names(methods: impl IntoIterator<Item = Method>) -> Vec<String> {
    methods
        .into_iter()
        .map(|m| m.as_str().to_string())
        .collect()
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(list: I) -> Vec<String> {
    list.into_iter().map(Into::into).collect()
}

impl Rule {
    /// A rule caching `GET` (and `HEAD`) answers for paths matching `pattern`.
    pub fn get(pattern: &str) -> RuleBuilder {
        RuleBuilder {
            spec: RuleSpec::new(pattern),
        }
    }

    /// A rule caching `POST` answers keyed by their (canonicalised JSON) body.
    pub fn post_by_body(pattern: &str) -> RuleBuilder {
        Rule::get(pattern).methods([Method::POST]).key_body()
    }

    /// A rule that caches nothing: it forwards `methods` and, after a 2xx, drops the tags
    /// of [`RuleBuilder::invalidates`].
    pub fn forward(pattern: &str, methods: impl IntoIterator<Item = Method>) -> RuleBuilder {
        let mut b = Rule::get(pattern).methods(methods);
        b.spec.cache = false;
        b
    }
}

impl RuleBuilder {
    /// The rule's name in stats and metrics (default `ruleN`).
    pub fn name(mut self, name: &str) -> Self {
        self.spec.name = Some(name.to_string());
        self
    }

    /// The methods whose answers it caches (GET and HEAD by default).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.spec.methods = Some(names(methods));
        self
    }

    /// How long answers stay fresh (replacing the origin's freshness).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.spec.ttl = Some(ttl);
        self
    }

    /// The origin's freshness, capped at `ttl`.
    pub fn ttl_cap(mut self, ttl: Duration) -> Self {
        self.spec.ttl = Some(ttl);
        self.spec.ttl_mode = TtlMode::Cap;
        self
    }

    /// What clients are told (replaces the upstream's `Cache-Control`).
    pub fn cache_control(mut self, value: &str) -> Self {
        self.spec.cache_control = Some(value.to_string());
        self
    }

    /// Keyed per user; a request without a user bypasses the cache.
    pub fn per_user(mut self) -> Self {
        self.spec.per_user = true;
        self
    }

    /// The same for every caller: stored even when requests carry credentials.
    pub fn shared(mut self) -> Self {
        self.spec.shared = true;
        self
    }

    /// Keyed by the request body (canonical JSON).
    pub fn key_body(mut self) -> Self {
        self.spec.key_body = true;
        self
    }

    /// Keyed only by these fields of a JSON body (JSON pointers; implies `key_body`).
    pub fn key_body_fields<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        fields: I,
    ) -> Self {
        self.spec.key_body_fields = Some(strings(fields));
        self
    }

    /// Stores answers that set cookies (the stored copy never carries them).
    pub fn allow_set_cookie(mut self) -> Self {
        self.spec.allow_set_cookie = true;
        self
    }

    /// Only these query parameters are part of the key.
    pub fn key_query<I: IntoIterator<Item = S>, S: Into<String>>(mut self, params: I) -> Self {
        self.spec.key_query = Some(strings(params));
        self
    }

    /// A version mixed into the key: bump it to make old entries unreachable.
    pub fn version(mut self, version: &str) -> Self {
        self.spec.version = Some(version.to_string());
        self
    }

    /// How long a stale entry is served while it is refreshed (RFC 5861).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.spec.stale_while_revalidate = Some(window);
        self
    }

    /// How long a stale entry is served when the upstream fails (RFC 5861).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.spec.stale_if_error = Some(window);
        self
    }

    /// What one trip upstream costs, for the `saved` stats.
    pub fn miss_cost(mut self, cost: f64) -> Self {
        self.spec.miss_cost = Some(cost);
        self
    }

    /// Below this hit ratio over a window, a warning and a gauge.
    pub fn alert_hit_ratio(mut self, ratio: f64) -> Self {
        self.spec.alert_hit_ratio = Some(ratio);
        self
    }

    /// Related paths fetched in the background after a miss.
    pub fn prefetch<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.spec.prefetch = strings(paths);
        self
    }

    /// The upstream its requests go to, by name.
    pub fn upstream(mut self, name: &str) -> Self {
        self.spec.upstream = Some(name.to_string());
        self
    }

    /// The tiers its entries may live in (`memory`, `disk`, `redis`).
    pub fn tiers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tiers: I) -> Self {
        self.spec.tiers = Some(strings(tiers));
        self
    }

    /// Refill what a 2xx mutation drops.
    pub fn rewarm_on_invalidate(mut self) -> Self {
        self.spec.rewarm_on_invalidate = true;
        self
    }

    /// Warm the `Location` of a 2xx `POST`.
    pub fn warm_created(mut self) -> Self {
        self.spec.warm_created = true;
        self
    }

    /// Caches an LLM API (`openai-chat`, `openai-responses`, `anthropic-messages`): keyed
    /// by the request's meaning and tenant, answered in either shape.
    pub fn llm(mut self, api: &str) -> Self {
        self.spec.llm = Some(api.to_string());
        self
    }

    /// The budget units one forwarded request spends.
    pub fn cost(mut self, units: u64) -> Self {
        self.spec.cost = units;
        self
    }

    /// Serve this far past freshness while the upstream is over its limits.
    pub fn stale_if_budget(mut self, window: Duration) -> Self {
        self.spec.stale_if_budget = Some(window);
        self
    }

    /// When its entries reach the tiers (`through`, `back`, `around`).
    pub fn write(mut self, policy: crate::status::WritePolicy) -> Self {
        self.spec.write = Some(policy);
        self
    }

    /// Stores LLM answers cut by their length or a filter.
    pub fn store_truncated(mut self) -> Self {
        self.spec.store_truncated = true;
        self
    }

    /// Tag templates (`{capture}` filled from the path) attached to stored entries.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.spec.tags = strings(tags);
        self
    }

    /// Tag templates dropped after a 2xx answer to a request matching this rule.
    pub fn invalidates<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.spec.invalidates = strings(tags);
        self
    }

    /// Methods that, on a matching path, drop this rule's tags after a 2xx.
    pub fn invalidate_on(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.spec.invalidate_on = names(methods);
        self
    }

    /// The rule, validated as a `[[rule]]` table would be, in `scope`.
    pub fn validate(self, scope: &Scope<'_>) -> Result<Rule, RuleError> {
        self.spec.validate(scope)
    }

    /// The rule, validated as a `[[rule]]` table would be; `index` is its place.
    pub fn build(self, index: usize) -> Result<Rule, String> {
        let scope = Scope {
            index,
            ..Scope::default()
        };
        self.validate(&scope).map_err(|e| e.to_string())
    }
}

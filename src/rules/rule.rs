//! One compiled endpoint rule.

use std::time::Duration;

use http::{HeaderValue, Method};

use super::{MethodSet, Pattern, Template};

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
    /// Key only by these fields of a JSON body (JSON pointers; implies `key_body`).
    pub key_body_fields: Option<Vec<String>>,
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
    /// The upstream its requests go to (`None`: the default, `[proxy].upstream`).
    pub upstream: Option<std::sync::Arc<str>>,
    /// The tiers its entries may live in (all by default).
    pub tiers: crate::status::TierSet,
    /// After a 2xx mutation drops this rule's entries, fetch them again in the background
    /// (with the mutating request's identity, for `per_user` rules).
    pub rewarm_on_invalidate: bool,
    /// After a 2xx `POST`, fetch its `Location` (on this rule, or on the rule the
    /// `Location` matches).
    pub warm_created: bool,
    /// The LLM API it caches: keyed by the request's meaning and its tenant, answered in
    /// either shape (JSON or a stream), never storing a partial answer.
    pub llm: Option<crate::llm::Provider>,
    /// Store LLM answers that ended for their length or a filter.
    pub store_truncated: bool,
    /// The budget units one forwarded request spends (its upstream's `budget`).
    pub cost: u64,
    /// How far past its freshness an entry may be served while its upstream is over
    /// budget, rate or concurrency, or backing off.
    pub stale_if_budget: Option<Duration>,
    /// When its entries reach the tiers (`None`: memory at once, then each lower tier as
    /// it is configured: the disk tier's `write`, Redis awaited).
    pub write: Option<crate::status::WritePolicy>,
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
            key_body_fields: None,
            allow_set_cookie: false,
            shared: false,
            key_query: None,
            version: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            miss_cost: None,
            alert_hit_ratio: None,
            prefetch: Vec::new(),
            upstream: None,
            tiers: crate::status::TierSet::ALL,
            rewarm_on_invalidate: false,
            warm_created: false,
            llm: None,
            store_truncated: false,
            cost: 1,
            stale_if_budget: None,
            write: None,
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

//! A rule as written, and the one validator that turns it into a [`Rule`]: a `[[rule]]`
//! table and a [`crate::RuleBuilder`] both say what they want in a [`RuleSpec`], and both
//! get the same checks and the same messages from [`RuleSpec::validate`].
//!
//! ```
//! use larder::rules::{RuleSpec, Scope};
//! let mut spec = RuleSpec::new("/jobs/{id}");
//! spec.tags = vec!["job:{id}".into()];
//! let rule = spec.clone().validate(&Scope::default()).unwrap();
//! assert_eq!(rule.name, "rule1");
//! spec.methods = Some(vec!["DELETE".into()]);
//! let e = spec.validate(&Scope::default()).unwrap_err();
//! assert_eq!(e.field, "methods[0]");
//! ```

use std::time::Duration;

use http::{HeaderValue, Method};

use super::{MethodSet, Pattern, Rule, Template, TtlMode};
use crate::status::{Tier, TierSet};

/// What a rule says, unchecked: every field of [`Rule`] that a config or a builder sets,
/// by its config name, in alphabetical order.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    /// The hit ratio below which it alerts.
    pub alert_hit_ratio: Option<f64>,
    /// Stores answers that set cookies.
    pub allow_set_cookie: bool,
    /// Whether it caches at all.
    pub cache: bool,
    /// What clients are told.
    pub cache_control: Option<String>,
    /// Budget units per forwarded request.
    pub cost: u64,
    /// Methods that drop its tags.
    pub invalidate_on: Vec<String>,
    /// Tags a 2xx drops.
    pub invalidates: Vec<String>,
    /// Serve this far past freshness while the upstream is over its limits.
    pub stale_if_budget: Option<Duration>,
    /// When its entries reach the tiers.
    pub write: Option<crate::status::WritePolicy>,
    /// Store LLM answers cut by their length or a filter.
    pub store_truncated: bool,
    /// Keyed by the body.
    pub key_body: bool,
    /// Keyed by these JSON pointers of the body (implies `key_body`).
    pub key_body_fields: Option<Vec<String>>,
    /// The LLM API it caches (`openai-chat`, `openai-responses`, `anthropic-messages`).
    pub llm: Option<String>,
    /// Only these query parameters key.
    pub key_query: Option<Vec<String>>,
    /// The methods it caches (default GET and HEAD).
    pub methods: Option<Vec<String>>,
    /// What one miss costs.
    pub miss_cost: Option<f64>,
    /// Its name (default `ruleN`).
    pub name: Option<String>,
    /// Its path pattern.
    pub path: String,
    /// Keyed per user.
    pub per_user: bool,
    /// Related paths fetched after a miss.
    pub prefetch: Vec<String>,
    /// Refill after a mutation.
    pub rewarm_on_invalidate: bool,
    /// The same answer for every caller.
    pub shared: bool,
    /// RFC 5861 windows.
    pub stale_if_error: Option<Duration>,
    /// RFC 5861 windows.
    pub stale_while_revalidate: Option<Duration>,
    /// Tag templates.
    pub tags: Vec<String>,
    /// The tiers its entries may live in (by config name).
    pub tiers: Option<Vec<String>>,
    /// Freshness it gives answers.
    pub ttl: Option<Duration>,
    /// How `ttl` combines with the origin's.
    pub ttl_mode: TtlMode,
    /// The upstream by name.
    pub upstream: Option<String>,
    /// Mixed into the key.
    pub version: Option<String>,
    /// Warm a created `Location`.
    pub warm_created: bool,
}

/// Where a rule is checked: its place, the rules before it, and what the rest of the
/// config offers it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// Its place (0-based).
    pub index: usize,
    /// The rules before it (names are unique).
    pub earlier: &'a [Rule],
    /// The upstreams it may name (`None`: any; a layer's inner service reads the name
    /// from the request's [`crate::layer::RouteTo`] itself).
    pub upstreams: Option<&'a [&'a str]>,
    /// Whether a disk tier is configured.
    pub disk: bool,
    /// Whether Redis is configured.
    pub redis: bool,
}

/// What is wrong with a rule: the field (`ttl`, `methods[2]`) and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The field, as the config names it.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError {
        field: field.into(),
        message: message.into(),
    })
}

impl RuleSpec {
    /// A rule for `path` with every default.
    pub fn new(path: &str) -> RuleSpec {
        RuleSpec {
            alert_hit_ratio: None,
            allow_set_cookie: false,
            cache: true,
            cache_control: None,
            cost: 1,
            invalidate_on: Vec::new(),
            invalidates: Vec::new(),
            key_body: false,
            key_body_fields: None,
            key_query: None,
            llm: None,
            methods: None,
            miss_cost: None,
            name: None,
            path: path.to_string(),
            per_user: false,
            prefetch: Vec::new(),
            rewarm_on_invalidate: false,
            shared: false,
            stale_if_error: None,
            stale_while_revalidate: None,
            stale_if_budget: None,
            write: None,
            store_truncated: false,
            tags: Vec::new(),
            tiers: None,
            ttl: None,
            ttl_mode: TtlMode::Override,
            upstream: None,
            version: None,
            warm_created: false,
        }
    }

    /// Checks the rule and compiles it.
    pub fn validate(self, scope: &Scope<'_>) -> Result<Rule, RuleError> {
        let pattern = Pattern::parse(&self.path).or_else(|m| fail("path", m))?;
        let names = pattern.capture_names();
        let mut rule =
            Rule::new(&self.checked_name(scope)?, &self.path).or_else(|m| fail("path", m))?;
        let key_body_fields = self.checked_fields()?;
        rule.llm = self.checked_llm()?;
        rule.store_truncated = self.store_truncated;
        rule.cost = self.cost;
        rule.stale_if_budget = self.stale_if_budget;
        rule.key_body = self.key_body || key_body_fields.is_some() || rule.llm.is_some();
        rule.methods = MethodSet::from_methods(&self.cached_methods(rule.key_body)?);
        rule.invalidate_on = MethodSet::from_methods(&self.invalidating_methods()?);
        rule.key_body_fields = key_body_fields;
        rule.pattern = pattern;
        rule.cache = self.cache;
        rule.ttl = match self.ttl {
            Some(t) if t.is_zero() => return fail("ttl", "ttl must be greater than zero"),
            t => t,
        };
        rule.ttl_mode = self.ttl_mode;
        rule.cache_control = match &self.cache_control {
            None => None,
            Some(v) => Some(
                HeaderValue::from_str(v)
                    .or_else(|_| fail("cache_control", "not a valid header value"))?,
            ),
        };
        if self.shared && self.per_user {
            return fail("shared", "a rule cannot be both shared and per_user");
        }
        rule.per_user = self.per_user;
        rule.shared = self.shared;
        rule.allow_set_cookie = self.allow_set_cookie;
        rule.key_query = self.key_query.clone();
        rule.version = self.version.clone();
        rule.stale_while_revalidate = self.stale_while_revalidate;
        rule.stale_if_error = self.stale_if_error;
        rule.miss_cost = self.checked_number("miss_cost", self.miss_cost, 0.0..=f64::MAX)?;
        rule.alert_hit_ratio =
            self.checked_number("alert_hit_ratio", self.alert_hit_ratio, 0.0..=1.0)?;
        rule.prefetch = self.checked_prefetch(&names)?;
        rule.tags = templates("tags", &self.tags, &names)?;
        rule.invalidates = templates("invalidates", &self.invalidates, &names)?;
        rule.upstream = self.checked_upstream(scope)?;
        rule.tiers = self.checked_tiers(scope)?;
        rule.write = self.checked_write(scope, rule.tiers)?;
        rule.rewarm_on_invalidate = self.rewarm_on_invalidate;
        rule.warm_created = self.warm_created;
        rule.index = scope.index;
        Ok(rule)
    }

    /// The name: given (unique, no whitespace) or `ruleN`.
    fn checked_name(&self, scope: &Scope<'_>) -> Result<String, RuleError> {
        match &self.name {
            Some(n) if n.is_empty() || n.contains(char::is_whitespace) => {
                fail("name", "must be non-empty without whitespace")
            }
            Some(n) if scope.earlier.iter().any(|e| &e.name == n) => {
                fail("name", format!("a rule named {n:?} already exists"))
            }
            Some(n) => Ok(n.clone()),
            None => Ok(format!("rule{}", scope.index + 1)),
        }
    }

    /// `llm`: a known API; its meaning keys the entry, so chosen body fields do not apply.
    fn checked_llm(&self) -> Result<Option<crate::llm::Provider>, RuleError> {
        let Some(name) = &self.llm else {
            return Ok(None);
        };
        let Some(p) = crate::llm::Provider::parse(name) else {
            return fail(
                "llm",
                format!("unknown API {name:?}; expected \"openai-chat\", \"openai-responses\" or \"anthropic-messages\""),
            );
        };
        if self.key_body_fields.is_some() {
            return fail(
                "key_body_fields",
                "an llm rule keys on the request's meaning (every field but the per-request noise); key_body_fields does not apply",
            );
        }
        Ok(Some(p))
    }

    /// `key_body_fields`: JSON pointers, at least one.
    fn checked_fields(&self) -> Result<Option<Vec<String>>, RuleError> {
        let Some(list) = &self.key_body_fields else {
            return Ok(None);
        };
        if list.is_empty() {
            return fail("key_body_fields", "needs at least one JSON pointer");
        }
        if let Some((i, bad)) = list
            .iter()
            .enumerate()
            .find(|(_, p)| !crate::key::is_json_pointer(p))
        {
            return fail(
                format!("key_body_fields[{i}]"),
                format!("{bad:?} is not a JSON pointer (RFC 6901: \"/field\", \"/a/0/b\")"),
            );
        }
        Ok(Some(list.clone()))
    }

    /// The methods a rule applies to (GET and HEAD by default); a caching rule may only
    /// cache GET and HEAD, and POST when keyed by the body.
    fn cached_methods(&self, key_body: bool) -> Result<Vec<Method>, RuleError> {
        let Some(texts) = &self.methods else {
            // An LLM API is asked with POST.
            return Ok(if self.llm.is_some() {
                vec![Method::POST]
            } else {
                vec![Method::GET, Method::HEAD]
            });
        };
        let list = methods("methods", texts)?;
        for (j, m) in list.iter().enumerate().filter(|_| self.cache) {
            let ok = *m == Method::GET || *m == Method::HEAD || (*m == Method::POST && key_body);
            if !ok {
                let msg = if *m == Method::POST {
                    "POST responses are cached only with key_body = true (the body must be part of the key)".to_string()
                } else {
                    format!("{m} responses cannot be cached; use cache = false for a rule that only forwards or invalidates")
                };
                return fail(format!("methods[{j}]"), msg);
            }
        }
        Ok(list)
    }

    /// `invalidate_on`: unsafe methods only.
    fn invalidating_methods(&self) -> Result<Vec<Method>, RuleError> {
        let list = methods("invalidate_on", &self.invalidate_on)?;
        if let Some(j) = list
            .iter()
            .position(|m| *m == Method::GET || *m == Method::HEAD)
        {
            return fail(
                format!("invalidate_on[{j}]"),
                "GET and HEAD are safe methods and cannot invalidate",
            );
        }
        Ok(list)
    }

    fn checked_number(
        &self,
        field: &str,
        value: Option<f64>,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, RuleError> {
        match value {
            Some(x) if !x.is_finite() || !range.contains(&x) => {
                let message = if *range.end() == f64::MAX {
                    "must be a number at least 0"
                } else {
                    "must be between 0 and 1"
                };
                fail(field, message)
            }
            v => Ok(v),
        }
    }

    /// `prefetch`: paths (`/…`) whose captures come from this rule's path, never a user.
    fn checked_prefetch(&self, names: &[String]) -> Result<Vec<Template>, RuleError> {
        if let Some(j) = self.prefetch.iter().position(|p| !p.starts_with('/')) {
            return fail(format!("prefetch[{j}]"), "prefetch paths start with '/'");
        }
        let list = templates("prefetch", &self.prefetch, names)?;
        if let Some(i) = list.iter().position(|p| p.uses_user()) {
            return fail(
                format!("prefetch[{i}]"),
                "{user_id} belongs in tags and invalidates, not in a path",
            );
        }
        Ok(list)
    }

    /// `upstream`: one the config names.
    fn checked_upstream(
        &self,
        scope: &Scope<'_>,
    ) -> Result<Option<std::sync::Arc<str>>, RuleError> {
        match (&self.upstream, scope.upstreams) {
            (None, _) => Ok(None),
            (Some(u), None) => Ok(Some(u.as_str().into())),
            (Some(u), Some(known)) if known.contains(&u.as_str()) => Ok(Some(u.as_str().into())),
            (Some(u), Some(known)) => {
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                fail(
                    "upstream",
                    format!("unknown upstream {u:?}; the upstreams are: {known}"),
                )
            }
        }
    }

    /// `write`: `around` needs a tier below memory to write.
    fn checked_write(
        &self,
        scope: &Scope<'_>,
        tiers: TierSet,
    ) -> Result<Option<crate::status::WritePolicy>, RuleError> {
        let below =
            (scope.disk && tiers.contains(Tier::DISK)) || (scope.redis && tiers.contains(Tier::L2));
        match self.write {
            Some(crate::status::WritePolicy::Around) if !below => fail(
                "write",
                "\"around\" writes only the tiers below memory, and this rule has none ([store.disk] or Redis)",
            ),
            w => Ok(w),
        }
    }

    /// `tiers`: configured tiers, at least one.
    fn checked_tiers(&self, scope: &Scope<'_>) -> Result<TierSet, RuleError> {
        let Some(list) = &self.tiers else {
            return Ok(TierSet::ALL);
        };
        if list.is_empty() {
            return fail(
                "tiers",
                "needs at least one tier (a rule that stores nothing says `cache = false`)",
            );
        }
        let mut chosen = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let field = format!("tiers[{i}]");
            let Some(tier) = Tier::from_config_name(name) else {
                return fail(
                    field,
                    format!("unknown tier {name:?}; expected \"memory\", \"disk\" or \"redis\""),
                );
            };
            match tier {
                Tier::DISK if !scope.disk => {
                    return fail(field, "the disk tier needs [store.disk]")
                }
                Tier::L2 if !scope.redis => {
                    return fail(field, "the redis tier needs store.backend = \"redis\"")
                }
                _ => chosen.push(tier),
            }
        }
        Ok(TierSet::of(&chosen))
    }
}

fn methods(key: &str, list: &[String]) -> Result<Vec<Method>, RuleError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| MethodSet::parse_method(s).or_else(|m| fail(format!("{key}[{i}]"), m)))
        .collect()
}

fn templates(key: &str, list: &[String], names: &[String]) -> Result<Vec<Template>, RuleError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("{key}[{i}]");
            if s.contains(char::is_whitespace) {
                return fail(field, "tags cannot contain whitespace");
            }
            Template::parse(s, names).or_else(|m| fail(field, m))
        })
        .collect()
}

//! `[[rule]]`: one endpoint rule, validated into a [`Rule`].

use http::{HeaderValue, Method};

use super::table::{Table, Text};
use super::ConfigError;
use crate::rules::{MethodSet, Pattern, Rule, Template, TtlMode};
use crate::units::parse_duration;

const KEYS: &[&str] = &[
    "name",
    "path",
    "methods",
    "ttl",
    "ttl_mode",
    "cache_control",
    "per_user",
    "tags",
    "invalidate_on",
    "invalidates",
    "cache",
    "key_body",
    "allow_set_cookie",
    "shared",
    "key_query",
    "version",
    "stale_while_revalidate",
    "stale_if_error",
    "miss_cost",
    "alert_hit_ratio",
    "prefetch",
];

fn methods(t: &Table<'_>, key: &str, list: &[Text]) -> Result<Vec<Method>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            MethodSet::parse_method(&s.value).map_err(|m| t.error(s.at, &format!("{key}[{i}]"), m))
        })
        .collect()
}

fn templates(
    t: &Table<'_>,
    key: &str,
    list: &[Text],
    names: &[String],
) -> Result<Vec<Template>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("{key}[{i}]");
            if s.value.contains(char::is_whitespace) {
                return Err(t.error(s.at, &field, "tags cannot contain whitespace"));
            }
            Template::parse(&s.value, names).map_err(|m| t.error(s.at, &field, m))
        })
        .collect()
}

/// Reads rule number `i`; `earlier` are the rules before it (names must be unique).
pub(super) fn read(mut t: Table<'_>, i: usize, earlier: &[Rule]) -> Result<Rule, ConfigError> {
    let path = t
        .text("path")?
        .ok_or_else(|| t.error_at(t.at, t.path.clone(), "missing field `path`"))?;
    let pattern = Pattern::parse(&path.value).map_err(|m| t.error(path.at, "path", m))?;
    let names = pattern.capture_names();
    let name = match t.text("name")? {
        Some(n) if n.value.is_empty() || n.value.contains(char::is_whitespace) => {
            return Err(t.error(n.at, "name", "must be non-empty without whitespace"))
        }
        Some(n) => {
            if earlier.iter().any(|e| e.name == n.value) {
                return Err(t.error(
                    n.at,
                    "name",
                    format!("a rule named {:?} already exists", n.value),
                ));
            }
            n.value
        }
        None => format!("rule{}", i + 1),
    };
    let cache = t.bool("cache", true)?;
    let key_body = t.bool("key_body", false)?;
    let method_texts = t.strings("methods")?;
    let method_list = match &method_texts {
        Some(list) => methods(&t, "methods", list)?,
        None => vec![Method::GET, Method::HEAD],
    };
    if cache {
        for (j, m) in method_list.iter().enumerate() {
            let at = method_texts
                .as_ref()
                .and_then(|l| l.get(j))
                .map_or(t.at, |s| s.at);
            let ok = *m == Method::GET || *m == Method::HEAD || (*m == Method::POST && key_body);
            if !ok {
                let msg = if *m == Method::POST {
                    "POST responses are cached only with key_body = true (the body must be part of the key)".to_string()
                } else {
                    format!("{m} responses cannot be cached; use cache = false for a rule that only forwards or invalidates")
                };
                return Err(t.error(at, &format!("methods[{j}]"), msg));
            }
        }
    }
    let ttl = match t.text("ttl")? {
        None => None,
        Some(s) => {
            let d = parse_duration(&s.value).map_err(|m| t.error(s.at, "ttl", m))?;
            if d.is_zero() {
                return Err(t.error(s.at, "ttl", "ttl must be greater than zero"));
            }
            Some(d)
        }
    };
    let ttl_mode = t
        .parsed("ttl_mode", Some("override"), |s| match s {
            "override" => Ok(TtlMode::Override),
            "cap" => Ok(TtlMode::Cap),
            _ => Err("expected \"override\" or \"cap\"".to_string()),
        })?
        .unwrap_or_default();
    let cache_control = t.parsed("cache_control", None, |s| {
        HeaderValue::from_str(s).map_err(|_| "not a valid header value".to_string())
    })?;
    let invalidate_texts = t.strings("invalidate_on")?.unwrap_or_default();
    let invalidate_on = methods(&t, "invalidate_on", &invalidate_texts)?;
    for (j, m) in invalidate_on.iter().enumerate() {
        if *m == Method::GET || *m == Method::HEAD {
            return Err(t.error(
                invalidate_texts[j].at,
                &format!("invalidate_on[{j}]"),
                "GET and HEAD are safe methods and cannot invalidate",
            ));
        }
    }
    let mut rule = Rule::new(&name, &path.value).map_err(|m| t.error(path.at, "path", m))?;
    rule.pattern = pattern;
    rule.methods = MethodSet::from_methods(&method_list);
    rule.invalidate_on = MethodSet::from_methods(&invalidate_on);
    rule.cache = cache;
    rule.ttl = ttl;
    rule.ttl_mode = ttl_mode;
    rule.cache_control = cache_control;
    rule.per_user = t.bool("per_user", false)?;
    rule.key_body = key_body;
    rule.allow_set_cookie = t.bool("allow_set_cookie", false)?;
    let shared_at = t.raw("shared").map(|v| v.span().start);
    rule.shared = t.bool("shared", false)?;
    if rule.shared && rule.per_user {
        return Err(t.error(
            shared_at.unwrap_or(t.at),
            "shared",
            "a rule cannot be both shared and per_user",
        ));
    }
    rule.key_query = t
        .strings("key_query")?
        .map(|l| l.into_iter().map(|s| s.value).collect());
    rule.version = t.text("version")?.map(|v| v.value);
    rule.stale_while_revalidate = t.parsed("stale_while_revalidate", None, parse_duration)?;
    rule.stale_if_error = t.parsed("stale_if_error", None, parse_duration)?;
    rule.miss_cost = t.opt_float(
        "miss_cost",
        |c| c.is_finite() && c >= 0.0,
        "must be a number at least 0",
    )?;
    rule.alert_hit_ratio = t.opt_float(
        "alert_hit_ratio",
        |a| (0.0..=1.0).contains(&a),
        "must be between 0 and 1",
    )?;
    let prefetch = t.strings("prefetch")?.unwrap_or_default();
    for (j, p) in prefetch.iter().enumerate() {
        if !p.value.starts_with('/') {
            return Err(t.error(
                p.at,
                &format!("prefetch[{j}]"),
                "prefetch paths start with '/'",
            ));
        }
    }
    rule.prefetch = templates(&t, "prefetch", &prefetch, &names)?;
    let tags = t.strings("tags")?.unwrap_or_default();
    rule.tags = templates(&t, "tags", &tags, &names)?;
    let invalidates = t.strings("invalidates")?.unwrap_or_default();
    rule.invalidates = templates(&t, "invalidates", &invalidates, &names)?;
    rule.index = i;
    t.finish(KEYS)?;
    Ok(rule)
}

//! `[[rule]]`: one endpoint rule, validated into a [`Rule`].

use http::{HeaderValue, Method};

use super::table::{Key, Reload::Live, Table, Text};
use super::{Backend, ConfigError, StoreConfig, UpstreamConfig};
use crate::rules::{MethodSet, Pattern, Rule, Template, TtlMode};
use crate::status::{Tier, TierSet};
use crate::units::parse_duration;

const KEYS: &[Key] = &[
    ("name", Live),
    ("path", Live),
    ("methods", Live),
    ("ttl", Live),
    ("ttl_mode", Live),
    ("cache_control", Live),
    ("per_user", Live),
    ("tags", Live),
    ("invalidate_on", Live),
    ("invalidates", Live),
    ("cache", Live),
    ("key_body", Live),
    ("key_body_fields", Live),
    ("allow_set_cookie", Live),
    ("shared", Live),
    ("key_query", Live),
    ("version", Live),
    ("stale_while_revalidate", Live),
    ("stale_if_error", Live),
    ("miss_cost", Live),
    ("alert_hit_ratio", Live),
    ("prefetch", Live),
    ("upstream", Live),
    ("tiers", Live),
    ("rewarm_on_invalidate", Live),
    ("warm_created", Live),
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

/// The rule's name: given (unique, no whitespace) or `ruleN`.
fn rule_name(t: &mut Table<'_>, i: usize, earlier: &[Rule]) -> Result<String, ConfigError> {
    match t.text("name")? {
        Some(n) if n.value.is_empty() || n.value.contains(char::is_whitespace) => {
            Err(t.error(n.at, "name", "must be non-empty without whitespace"))
        }
        Some(n) if earlier.iter().any(|e| e.name == n.value) => Err(t.error(
            n.at,
            "name",
            format!("a rule named {:?} already exists", n.value),
        )),
        Some(n) => Ok(n.value),
        None => Ok(format!("rule{}", i + 1)),
    }
}

/// The methods a rule applies to (GET and HEAD by default); a caching rule may only
/// cache GET and HEAD, and POST when keyed by the body.
fn cached_methods(
    t: &mut Table<'_>,
    cache: bool,
    key_body: bool,
) -> Result<Vec<Method>, ConfigError> {
    let Some(texts) = t.strings("methods")? else {
        return Ok(vec![Method::GET, Method::HEAD]);
    };
    let list = methods(t, "methods", &texts)?;
    for (j, m) in list.iter().enumerate().filter(|_| cache) {
        let ok = *m == Method::GET || *m == Method::HEAD || (*m == Method::POST && key_body);
        if !ok {
            let msg = if *m == Method::POST {
                "POST responses are cached only with key_body = true (the body must be part of the key)".to_string()
            } else {
                format!("{m} responses cannot be cached; use cache = false for a rule that only forwards or invalidates")
            };
            return Err(t.error(texts[j].at, &format!("methods[{j}]"), msg));
        }
    }
    Ok(list)
}

/// Reads rule number `i`; `earlier` are the rules before it (names must be unique).
pub(super) fn read(
    mut t: Table<'_>,
    i: usize,
    earlier: &[Rule],
    upstreams: &[UpstreamConfig],
    store: &StoreConfig,
) -> Result<Rule, ConfigError> {
    let path = t
        .text("path")?
        .ok_or_else(|| t.error(t.at, "", "missing field `path`"))?;
    let pattern = Pattern::parse(&path.value).map_err(|m| t.error(path.at, "path", m))?;
    let names = pattern.capture_names();
    let name = rule_name(&mut t, i, earlier)?;
    let cache = t.bool("cache", true)?;
    let key_body_fields = match t.strings("key_body_fields")? {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(t.error(t.at, "key_body_fields", "needs at least one JSON pointer"));
            }
            if let Some((i, bad)) = list
                .iter()
                .enumerate()
                .find(|(_, p)| !crate::key::is_json_pointer(&p.value))
            {
                return Err(t.error(
                    bad.at,
                    &format!("key_body_fields[{i}]"),
                    format!(
                        "{:?} is not a JSON pointer (RFC 6901: \"/field\", \"/a/0/b\")",
                        bad.value
                    ),
                ));
            }
            Some(list.into_iter().map(|p| p.value).collect::<Vec<_>>())
        }
    };
    // Chosen body fields key the entry: the body is part of the key.
    let key_body = t.bool("key_body", false)? || key_body_fields.is_some();
    let method_list = cached_methods(&mut t, cache, key_body)?;
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
    rule.key_body_fields = key_body_fields;
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
    if let Some(i) = rule.prefetch.iter().position(|p| p.uses_user()) {
        return Err(t.error(
            prefetch[i].at,
            &format!("prefetch[{i}]"),
            "{user_id} belongs in tags and invalidates, not in a path",
        ));
    }
    let tags = t.strings("tags")?.unwrap_or_default();
    rule.tags = templates(&t, "tags", &tags, &names)?;
    let invalidates = t.strings("invalidates")?.unwrap_or_default();
    rule.invalidates = templates(&t, "invalidates", &invalidates, &names)?;
    rule.upstream = match t.text("upstream")? {
        None => None,
        Some(u) if upstreams.iter().any(|x| x.name == u.value) => Some(u.value.as_str().into()),
        Some(u) => {
            let known: Vec<&str> = upstreams.iter().map(|x| x.name.as_str()).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            return Err(t.error(
                u.at,
                "upstream",
                format!("unknown upstream {:?}; the upstreams are: {known}", u.value),
            ));
        }
    };
    let tiers_at = t.raw("tiers").map_or(t.at, |v| v.span().start);
    if let Some(list) = t.strings("tiers")? {
        rule.tiers = tiers(&t, tiers_at, &list, store)?;
    }
    rule.rewarm_on_invalidate = t.bool("rewarm_on_invalidate", false)?;
    rule.warm_created = t.bool("warm_created", false)?;
    rule.index = i;
    t.finish(KEYS)?;
    Ok(rule)
}

/// A rule's `tiers`: configured tiers, at least one.
fn tiers(
    t: &Table<'_>,
    at: usize,
    list: &[Text],
    store: &StoreConfig,
) -> Result<TierSet, ConfigError> {
    if list.is_empty() {
        return Err(t.error(
            at,
            "tiers",
            "needs at least one tier (a rule that stores nothing says `cache = false`)",
        ));
    }
    let mut chosen = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let field = format!("tiers[{i}]");
        let tier = Tier::from_config_name(&s.value).ok_or_else(|| {
            t.error(
                s.at,
                &field,
                format!(
                    "unknown tier {:?}; expected \"memory\", \"disk\" or \"redis\"",
                    s.value
                ),
            )
        })?;
        let missing = match tier {
            Tier::DISK if store.disk.is_none() => Some("the disk tier needs [store.disk]"),
            Tier::L2 if store.backend != Backend::Redis => {
                Some("the redis tier needs store.backend = \"redis\"")
            }
            _ => None,
        };
        if let Some(m) = missing {
            return Err(t.error(s.at, &field, m));
        }
        chosen.push(tier);
    }
    Ok(TierSet::of(&chosen))
}

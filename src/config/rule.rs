//! `[[rule]]`: one endpoint rule, validated into a [`Rule`].

use super::table::{Key, Reload::Live, Table, Text};
use super::{Backend, ConfigError, StoreConfig, UpstreamConfig};
use crate::rules::{Rule, RuleSpec, Scope, TtlMode};
use crate::units::parse_duration;

pub(super) const KEYS: &[Key] = &[
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
    ("llm", Live),
    ("store_truncated", Live),
    ("cost", Live),
    ("stale_if_budget", Live),
    ("write", Live),
];

/// Where each field of the rule sits in the file (`methods[2]` for a list item), so a
/// validation error points at it.
#[derive(Default)]
struct Spans(Vec<(String, usize)>);

impl Spans {
    fn text(&mut self, key: &str, t: &Option<Text>) -> Option<String> {
        t.as_ref().map(|t| {
            self.0.push((key.to_string(), t.at));
            t.value.clone()
        })
    }

    fn list(&mut self, key: &str, at: usize, list: Option<Vec<Text>>) -> Option<Vec<String>> {
        list.map(|items| {
            self.0.push((key.to_string(), at));
            items
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    self.0.push((format!("{key}[{i}]"), t.at));
                    t.value
                })
                .collect()
        })
    }

    fn at(&self, field: &str, table: usize) -> usize {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map_or(table, |(_, at)| *at)
    }
}

/// The start of `key`'s value, or of the table.
fn value_at(t: &mut Table<'_>, key: &str) -> usize {
    t.raw(key).map_or(t.at, |v| v.span().start)
}

/// A list of strings with where each is.
fn strings(
    t: &mut Table<'_>,
    spans: &mut Spans,
    key: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let at = value_at(t, key);
    let list = t.strings(key)?;
    Ok(spans.list(key, at, list))
}

/// Reads rule number `i` into what it says, then validates it ([`RuleSpec::validate`], as
/// the builder does); `earlier` are the rules before it (names must be unique).
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
    let mut spans = Spans::default();
    spans.0.push(("path".into(), path.at));
    let mut spec = RuleSpec::new(&path.value);
    let name = t.text("name")?;
    spec.name = spans.text("name", &name);
    spec.cache = t.bool("cache", true)?;
    spec.key_body_fields = strings(&mut t, &mut spans, "key_body_fields")?;
    spec.key_body = t.bool("key_body", false)?;
    spec.methods = strings(&mut t, &mut spans, "methods")?;
    let ttl = t.text("ttl")?;
    spec.ttl = match (spans.text("ttl", &ttl), &ttl) {
        (Some(s), Some(text)) => {
            Some(parse_duration(&s).map_err(|m| t.error(text.at, "ttl", text.why(m)))?)
        }
        _ => None,
    };
    spec.ttl_mode = t
        .parsed("ttl_mode", Some("override"), |s| match s {
            "override" => Ok(TtlMode::Override),
            "cap" => Ok(TtlMode::Cap),
            _ => Err("expected \"override\" or \"cap\"".to_string()),
        })?
        .unwrap_or_default();
    let cache_control = t.text("cache_control")?;
    spec.cache_control = spans.text("cache_control", &cache_control);
    if let Some(cc) = &spec.cache_control {
        t.show("cache_control", cc.clone());
    }
    spec.invalidate_on = strings(&mut t, &mut spans, "invalidate_on")?.unwrap_or_default();
    spec.per_user = t.bool("per_user", false)?;
    spec.allow_set_cookie = t.bool("allow_set_cookie", false)?;
    spans.0.push(("shared".into(), value_at(&mut t, "shared")));
    spec.shared = t.bool("shared", false)?;
    spec.key_query = strings(&mut t, &mut spans, "key_query")?;
    spec.version = t.text("version")?.map(|v| v.value);
    spec.stale_while_revalidate = t.parsed("stale_while_revalidate", None, parse_duration)?;
    spec.stale_if_error = t.parsed("stale_if_error", None, parse_duration)?;
    for key in ["miss_cost", "alert_hit_ratio", "write"] {
        spans.0.push((key.into(), value_at(&mut t, key)));
    }
    spec.miss_cost = t.opt_float("miss_cost", |_| true, "")?;
    spec.alert_hit_ratio = t.opt_float("alert_hit_ratio", |_| true, "")?;
    spec.prefetch = strings(&mut t, &mut spans, "prefetch")?.unwrap_or_default();
    spec.tags = strings(&mut t, &mut spans, "tags")?.unwrap_or_default();
    spec.invalidates = strings(&mut t, &mut spans, "invalidates")?.unwrap_or_default();
    let upstream = t.text("upstream")?;
    spec.upstream = spans.text("upstream", &upstream);
    spec.tiers = strings(&mut t, &mut spans, "tiers")?;
    spec.rewarm_on_invalidate = t.bool("rewarm_on_invalidate", false)?;
    spec.warm_created = t.bool("warm_created", false)?;
    let llm = t.text("llm")?;
    spec.llm = spans.text("llm", &llm);
    spec.store_truncated = t.bool("store_truncated", false)?;
    spec.cost = t.int("cost", 1, 0..=1_000_000_000)? as u64;
    spec.stale_if_budget = t.parsed("stale_if_budget", None, parse_duration)?;
    spec.write = t.parsed("write", None, crate::status::WritePolicy::parse)?;
    let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let scope = Scope {
        index: i,
        earlier,
        upstreams: Some(&names),
        disk: store.disk.is_some(),
        redis: store.backend == Backend::Redis,
    };
    let rule = spec
        .validate(&scope)
        .map_err(|e| t.error(spans.at(&e.field, t.at), &e.field, e.message))?;
    t.finish(KEYS)?;
    Ok(rule)
}

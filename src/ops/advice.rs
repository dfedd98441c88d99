//! Advice (`/admin/recommendations`, `larder ctl advise`): a few plain sentences, each
//! with the figure behind it, from what the counters saw — answers the origin keeps from
//! being stored, entries asked for again just after their ttl, a memory tier that evicts
//! what it stores, a query parameter that splits keys, bodies that never repeat, Redis near
//! its bound, a budget spent day after day.

use serde::Serialize;

use crate::cache::Cache;
use crate::status::NoCacheReason;

/// One piece of advice.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Advice {
    /// The rule it is about (`*` for the whole cache, `upstream NAME`, `redis`).
    pub rule: String,
    /// What to change, in a sentence.
    pub advice: String,
    /// The figure behind it.
    pub evidence: String,
}

/// Fewer misses than this say nothing.
const ENOUGH: u64 = 20;

fn advise(rule: &str, advice: &str, evidence: String) -> Advice {
    Advice {
        rule: rule.to_string(),
        advice: advice.to_string(),
        evidence,
    }
}

/// What the counters suggest changing.
pub fn recommend(cache: &Cache) -> Vec<Advice> {
    let mut out = Vec::new();
    let settings = cache.settings();
    for (name, counters) in cache.counters().rules() {
        let c = counters.snapshot();
        let rule = settings.rules.rules().iter().find(|r| r.name == name);
        per_rule(&name, rule, &counters, &c, &mut out);
    }
    let store = cache.store_stats();
    let stored: u64 = cache
        .counters()
        .rules()
        .iter()
        .map(|(_, c)| c.snapshot().stored)
        .sum();
    if stored >= 100 && store.evictions * 2 >= stored {
        out.push(advise(
            "*",
            "Memory evicts most of what it stores: raise store.memory_max, shorten ttls, or add the disk tier.",
            format!("{} evictions for {stored} answers stored", store.evictions),
        ));
    }
    if let Some(m) = cache.tiers().redis().and_then(|r| r.memory()) {
        if m.max_bytes == 0 {
            out.push(advise("redis", "Redis has no maxmemory: set one and an LRU policy (allkeys-lru) so it evicts instead of growing.", format!("used_memory {} bytes, maxmemory 0", m.used_bytes)));
        } else if m.used_bytes * 10 >= m.max_bytes * 8 {
            out.push(advise(
                "redis",
                "Redis is near maxmemory: raise it, shorten ttls, or keep large entries off Redis (rule tiers).",
                format!("used {} of {} bytes ({:.0}%)", m.used_bytes, m.max_bytes, m.used_bytes as f64 * 100.0 / m.max_bytes as f64),
            ));
        }
    }
    for g in cache.gates().all() {
        let r = g.report();
        if r.days_spent >= 2 {
            out.push(advise(
                &format!("upstream {}", g.name()),
                "Its budget runs out day after day: raise it, lengthen ttls or stale_if_budget, or lower the rules' cost.",
                format!("spent on {} days", r.days_spent),
            ));
        }
    }
    out
}

fn per_rule(
    name: &str,
    rule: Option<&crate::rules::Rule>,
    counters: &crate::stats::Counters,
    c: &crate::stats::CountersSnapshot,
    out: &mut Vec<Advice>,
) {
    let misses = c.misses;
    if misses < ENOUGH {
        return;
    }
    let not = |reason: NoCacheReason| {
        c.not_stored
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    };
    let cookie = not(NoCacheReason::SetCookie);
    if cookie * 2 >= misses {
        out.push(advise(name, "Set-Cookie keeps most misses from being stored: set allow_set_cookie = true if the cookie is not per user, or have the origin set it only where it is needed.", format!("{cookie} of {misses} misses not stored: set-cookie")));
    }
    let fresh = not(NoCacheReason::NoFreshness);
    if fresh * 2 >= misses {
        out.push(advise(
            name,
            "Most answers come without freshness: give the rule a ttl.",
            format!("{fresh} of {misses} misses not stored: no-freshness"),
        ));
    }
    let expired = counters.after_expiry();
    if expired * 2 >= misses {
        out.push(advise(name, "Most misses ask again for an entry just after its ttl: lengthen the ttl, or add stale_while_revalidate so it is refreshed in the background.", format!("{expired} of {misses} misses found their entry expired")));
    }
    if let Some((param, seen, distinct, sketched)) = counters.query_spread() {
        if sketched >= ENOUGH && seen * 10 >= sketched * 8 && distinct * 10 >= seen.min(64) * 8 {
            out.push(advise(name, &format!("The query parameter {param} differs on most misses: if it does not change the answer, add it to cache.ignore_params (or list the ones that do in the rule's key_query)."), format!("{param} had {distinct} distinct values in {seen} of {sketched} misses")));
        }
    }
    if rule.is_some_and(|r| r.key_body && r.key_body_fields.is_none()) && c.hits + c.stale == 0 {
        out.push(advise(name, "Every request body is distinct: key only the fields that decide the answer with key_body_fields.", format!("0 hits in {misses} requests keyed by their whole body")));
    }
}

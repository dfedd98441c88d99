//! The invalidation history (`/admin/invalidations`): who dropped what, and when — the
//! admin API, a mutation (its rule, method and path), another instance (by name), a purge
//! or a soft purge — with what each tier dropped. The last thousand events are kept in
//! memory and, every couple of seconds, in the tiers below (the disk tier's directory,
//! Redis), so they survive a restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::Cache;
use crate::store::{HeardEvent, Invalidation};
use crate::time::now_ms;

/// How many events are kept.
pub const KEEP: usize = 1000;

/// The name of the kept record in the tiers below memory.
const KEPT: &str = "history";

/// Where an invalidation came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `POST /admin/invalidate` (or the library's `invalidate`).
    Admin,
    /// A mutation answered 2xx/3xx.
    Mutation,
    /// Another instance, through Redis.
    Fleet,
    /// A purge of everything.
    Purge,
    /// A soft purge (marked stale).
    SoftPurge,
}

impl Source {
    /// The `source` label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Admin => "admin",
            Source::Mutation => "mutation",
            Source::Fleet => "fleet",
            Source::Purge => "purge",
            Source::SoftPurge => "soft-purge",
        }
    }

    /// Every source (for metrics).
    pub const ALL: [Source; 5] = [
        Source::Admin,
        Source::Mutation,
        Source::Fleet,
        Source::Purge,
        Source::SoftPurge,
    ];
}

/// One invalidation, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When (RFC 3339).
    pub at: String,
    /// When (ms since the epoch), for `since`.
    pub at_ms: u64,
    /// Where it came from.
    pub source: Source,
    /// Who: a mutation's `rule METHOD /path`, another instance's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// What it named: tags, URLs, a prefix, a pattern, a user (a short hash), everything.
    pub target: String,
    /// Entries dropped (or marked stale), per tier.
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// The kept events, newest last.
#[derive(Default)]
pub(crate) struct History {
    events: parking_lot::Mutex<VecDeque<HistoryEvent>>,
    changed: AtomicBool,
}

impl History {
    fn push(&self, e: HistoryEvent) {
        let mut q = self.events.lock();
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back(e);
        self.changed.store(true, Relaxed);
    }
}

/// How an invalidation is described in the history: tag ids in hex (names are not kept),
/// URL prefixes and patterns as given, users as a short hash.
pub fn describe(what: &Invalidation) -> String {
    match what {
        Invalidation::Tags(ts) => {
            let ids: Vec<String> = ts
                .iter()
                .take(20)
                .map(|t| format!("{:08x}", t >> 32))
                .collect();
            format!("tag ids {}", ids.join(" "))
        }
        Invalidation::Prefix(p) => format!("prefix {p}"),
        Invalidation::Pattern(g) => format!("pattern {g}"),
        Invalidation::Every(parts) => {
            let each: Vec<String> = parts.iter().map(describe).collect();
            format!("all of ({})", each.join("; "))
        }
        Invalidation::Any(parts) => {
            let each: Vec<String> = parts.iter().map(describe).collect();
            format!("any of ({})", each.join("; "))
        }
        Invalidation::All => "everything".to_string(),
    }
}

impl Cache {
    /// Records an invalidation in the history (and counts it by source).
    pub fn record_invalidation(
        &self,
        source: Source,
        by: Option<String>,
        target: String,
        dropped: &[(&'static str, u64)],
    ) {
        self.inner.stats.record_invalidation_source(source.as_str());
        let at_ms = now_ms();
        self.inner.history.push(HistoryEvent {
            at: crate::time::rfc3339(at_ms),
            at_ms,
            source,
            by,
            target,
            dropped: dropped.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        });
    }

    /// Takes other instances' invalidations heard since the last look into the history.
    fn take_heard(&self) {
        for HeardEvent {
            at,
            from,
            what,
            soft,
            dropped,
        } in self.tiers().heard()
        {
            self.inner
                .stats
                .record_invalidation_source(Source::Fleet.as_str());
            let target = if soft {
                format!("{} (soft)", describe(&what))
            } else {
                describe(&what)
            };
            self.inner.history.push(HistoryEvent {
                at: crate::time::rfc3339(at),
                at_ms: at,
                source: Source::Fleet,
                by: Some(from),
                target,
                dropped: dropped.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            });
        }
    }

    /// Up to `limit` events at or after `since` (ms since the epoch), newest first.
    pub fn history(&self, since: u64, limit: usize) -> Vec<HistoryEvent> {
        self.take_heard();
        self.inner
            .history
            .events
            .lock()
            .iter()
            .rev()
            .filter(|e| e.at_ms >= since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Keeps the history in the tiers below memory, if it changed.
    pub async fn keep_history(&self) {
        self.take_heard();
        if !self.inner.history.changed.swap(false, Relaxed) {
            return;
        }
        let events: Vec<HistoryEvent> = self.inner.history.events.lock().iter().cloned().collect();
        let Ok(bytes) = serde_json::to_vec(&events) else {
            return;
        };
        for tier in self.tiers().lower() {
            tier.keep(KEPT, bytes.clone()).await;
        }
    }

    /// Loads the history kept by an earlier run (from the first tier below memory that has
    /// one); what happened since this start stays after it.
    pub async fn restore_history(&self) {
        for tier in self.tiers().lower() {
            let Some(bytes) = tier.kept(KEPT).await else {
                continue;
            };
            let Ok(old) = serde_json::from_slice::<Vec<HistoryEvent>>(&bytes) else {
                continue;
            };
            let mut q = self.inner.history.events.lock();
            let now: Vec<HistoryEvent> = q.drain(..).collect();
            q.extend(old.into_iter().rev().take(KEEP).rev());
            for e in now {
                if q.len() >= KEEP {
                    q.pop_front();
                }
                q.push_back(e);
            }
            return;
        }
    }
}

//! What an upstream may be asked, on `[proxy]` (the default upstream) and on each
//! `[[upstream]]`: requests in flight, a rate, a daily budget of units, how long a miss
//! waits for a slot, the share an instance keeps while Redis is away, and retries.
//!
//! ```toml
//! [[upstream]]
//! name = "youtube"
//! url = "https://www.googleapis.com"
//! max_concurrent = 8
//! rate = "5/s"
//! budget = "10000/day"
//! queue = "2s"
//! ```

use std::time::Duration;

use super::table::{Key, Reload::Restart, Table};
use super::ConfigError;

/// A number of requests per period (`"5/s"`, `"300/m"`, `"1000/h"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests…
    pub n: u64,
    /// …per this period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m` (or `/min`), `N/h`, `N/day`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected a rate such as \"5/s\""))?;
        let n: u64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{text:?}: the count must be a whole number above 0"))?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            other => return Err(format!("{other:?}: expected s, m, h or day")),
        };
        Ok(Rate {
            n,
            per: Duration::from_secs(secs),
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.n)
    }
}

/// The limits of one upstream (none by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpstreamLimits {
    /// Requests in flight at once, per instance.
    pub max_concurrent: Option<u32>,
    /// Requests per period, fleet-wide where Redis is configured.
    pub rate: Option<Rate>,
    /// Units per UTC day (a rule's `cost` per forwarded request), fleet-wide with Redis.
    pub budget: Option<u64>,
    /// How long a miss may wait for a slot before the over-budget answer.
    pub queue: Duration,
    /// The share of `rate` and `budget` one instance may spend on its own while Redis is
    /// away (never unbounded).
    pub local_share: f64,
    /// Retries of an idempotent request whose connection failed (before any byte was sent).
    pub connect_retries: u8,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            max_concurrent: None,
            rate: None,
            budget: None,
            queue: Duration::from_secs(2),
            local_share: 0.25,
            connect_retries: 1,
        }
    }
}

/// The keys of the limits, in `[proxy]` and `[[upstream]]` alike.
pub(super) const KEYS: &[Key] = &[
    ("max_concurrent", Restart),
    ("rate", Restart),
    ("budget", Restart),
    ("queue", Restart),
    ("local_share", Restart),
    ("connect_retries", Restart),
];

impl UpstreamLimits {
    /// Reads the limits from `t`; `inherit` gives the defaults (an `[[upstream]]` has its
    /// own limits; none are inherited from `[proxy]` but `queue`, `local_share` and
    /// `connect_retries`).
    pub(super) fn read(
        t: &mut Table<'_>,
        inherit: &UpstreamLimits,
    ) -> Result<UpstreamLimits, ConfigError> {
        let budget = t.parsed("budget", None, |s| {
            let r = Rate::parse(s)?;
            if r.per != Duration::from_secs(86_400) {
                return Err(format!(
                    "{s:?}: a budget is units per UTC day, such as \"10000/day\""
                ));
            }
            Ok(r.n)
        })?;
        Ok(UpstreamLimits {
            max_concurrent: t.opt_int("max_concurrent", 1..=100_000)?.map(|n| n as u32),
            rate: t.parsed("rate", None, Rate::parse)?,
            budget,
            queue: t.duration("queue", &crate::units::format_duration(inherit.queue))?,
            local_share: t
                .opt_float(
                    "local_share",
                    |x| (0.0..=1.0).contains(&x),
                    "must be between 0 and 1",
                )?
                .unwrap_or(inherit.local_share),
            connect_retries: t.int("connect_retries", i64::from(inherit.connect_retries), 0..=3)?
                as u8,
        })
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_concurrent.is_some() || self.rate.is_some() || self.budget.is_some()
    }
}

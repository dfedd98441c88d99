//! `[warm]`: URLs fetched through the cache at start-up and on a schedule.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::table::{Key, Reload::Live, Table};
use super::{ConfigError, Setting};

/// The `[warm]` section.
#[derive(Clone, Debug, Default)]
pub struct WarmConfig {
    /// Paths (with query) to warm.
    pub urls: Vec<String>,
    /// Request headers sent with them (e.g. a user's credentials for per-user entries).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Warm again this often (none: only at start-up).
    pub every: Option<Duration>,
    /// Warm at start-up.
    pub at_start: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How many of the hottest shared entries to fetch again at start-up and after a purge
    /// (0: none).
    pub top: usize,
    /// Warming requests per second at most, per upstream (below client traffic).
    pub rate: f64,
}

pub(super) const KEYS: &[Key] = &[
    ("urls", Live),
    ("headers", Live),
    ("every", Live),
    ("at_start", Live),
    ("concurrency", Live),
    ("top", Live),
    ("rate", Live),
];

impl WarmConfig {
    pub(super) fn read(mut t: Table<'_>) -> Result<(WarmConfig, Vec<Setting>), ConfigError> {
        let mut urls = Vec::new();
        for (i, u) in t
            .strings("urls")?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if !u.value.starts_with('/') || u.value.parse::<http::uri::PathAndQuery>().is_err() {
                return Err(t.error(
                    u.at,
                    &format!("urls[{i}]"),
                    "expected a path such as \"/videos/1?lang=en\"",
                ));
            }
            urls.push(u.value);
        }
        let mut headers = Vec::new();
        if let Some(mut h) = t.table("headers")? {
            for (name, value, _) in h.keys() {
                let text = h.value_text(&name, value)?;
                let at = value.span().start;
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| h.error(at, &name, "not a valid header name"))?;
                let v = HeaderValue::from_str(&text)
                    .map_err(|_| h.error(at, &name, "not a valid header value"))?;
                headers.push((n, v));
            }
            // Header values may be credentials: shown by name only.
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            t.show("headers", format!("[{}]", names.join(", ")));
        }
        let warm = WarmConfig {
            urls,
            headers,
            every: t.opt_positive_duration("every")?,
            at_start: t.bool("at_start", true)?,
            concurrency: t.int("concurrency", 4, 1..=256)? as usize,
            top: t.int("top", 0, 0..=crate::store::hot::CAPACITY as i64)? as usize,
            rate: t
                .opt_float(
                    "rate",
                    |x| (0.01..=100_000.0).contains(&x),
                    "must be between 0.01 and 100000",
                )?
                .unwrap_or(20.0),
        };
        Ok((warm, t.finish(KEYS)?))
    }
}

//! Hit-ratio alerts: once per window, each rule with `alert_hit_ratio` is compared with
//! the ratio it reached; below it (with enough requests), a warning and a gauge.

use std::collections::HashMap;

use crate::cache::Cache;

/// Compares each alerting rule's hit ratio over the window that just ended with its
/// `alert_hit_ratio`: below it (with enough requests), one warning and the gauge set.
pub(crate) fn check_hit_ratios(cache: &Cache, previous: &mut HashMap<String, (u64, u64)>) {
    let settings = cache.settings();
    let min = settings.config.cache.alert_min_requests;
    for rule in settings.rules.rules() {
        let counters = settings.counters(Some(rule.index));
        let s = counters.snapshot();
        let now = (s.hits + s.stale, s.misses);
        let before = previous.insert(rule.name.clone(), now).unwrap_or((0, 0));
        let Some(threshold) = rule.alert_hit_ratio else {
            continue;
        };
        let served = now.0.saturating_sub(before.0);
        let total = served + now.1.saturating_sub(before.1);
        if total == 0 || total < min {
            counters.set_alert(false, 0.0);
            continue;
        }
        let ratio = served as f64 / total as f64;
        let alerting = ratio < threshold;
        if alerting {
            tracing::warn!(
                rule = %rule.name,
                hit_ratio = format!("{ratio:.3}"),
                alert_hit_ratio = threshold,
                requests = total,
                "hit ratio below the alert threshold over the last window"
            );
        }
        counters.set_alert(alerting, ratio);
    }
}

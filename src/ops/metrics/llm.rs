//! What LLM hits saved, as metrics.

use std::fmt::Write;

use super::label;
use crate::cache::Cache;

/// What LLM hits saved, by rule and model.
pub(super) fn render_llm(cache: &Cache, out: &mut String) {
    let saved = cache.counters().llm.snapshot();
    let _ = writeln!(out, "# HELP larder_llm_tokens_saved_total LLM tokens not paid for again, by rule, model and kind.\n# TYPE larder_llm_tokens_saved_total counter");
    for ((rule, model), s) in &saved {
        let (rule, model) = (label(rule), label(model));
        for (kind, n) in [("input", s.input_tokens), ("output", s.output_tokens)] {
            let _ = writeln!(out, "larder_llm_tokens_saved_total{{rule=\"{rule}\",model=\"{model}\",kind=\"{kind}\"}} {n}");
        }
    }
    let _ = writeln!(out, "# HELP larder_llm_usd_saved_total USD not paid for again ([llm.prices]), by rule and model.\n# TYPE larder_llm_usd_saved_total counter");
    for ((rule, model), s) in &saved {
        let _ = writeln!(
            out,
            "larder_llm_usd_saved_total{{rule=\"{}\",model=\"{}\"}} {}",
            label(rule),
            label(model),
            s.usd
        );
    }
    let _ = writeln!(out, "# HELP larder_llm_hits_total LLM answers served from the cache, by rule and model.\n# TYPE larder_llm_hits_total counter");
    for ((rule, model), s) in &saved {
        let _ = writeln!(
            out,
            "larder_llm_hits_total{{rule=\"{}\",model=\"{}\"}} {}",
            label(rule),
            label(model),
            s.hits
        );
    }
}

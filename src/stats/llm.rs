//! What LLM hits saved: tokens and dollars, per rule and model.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;

/// What one model's hits under one rule saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LlmSaved {
    /// Hits.
    pub hits: u64,
    /// Input tokens not paid for again.
    pub input_tokens: u64,
    /// Output tokens not paid for again.
    pub output_tokens: u64,
    /// USD not paid for again (from `[llm.prices]`; 0 for a model without a price).
    pub usd: f64,
}

/// LLM savings by (rule, model). Only LLM hits touch it.
#[derive(Debug, Default)]
pub struct LlmSavings(Mutex<BTreeMap<(String, String), LlmSaved>>);

impl LlmSavings {
    /// Counts one hit of `model` under `rule` that saved these tokens and dollars.
    pub fn record(&self, rule: &str, model: &str, (input, output): (u64, u64), usd: f64) {
        let mut all = self.0.lock();
        let s = all
            .entry((rule.to_string(), model.to_string()))
            .or_default();
        s.hits += 1;
        s.input_tokens += input;
        s.output_tokens += output;
        s.usd += usd;
    }

    /// Every (rule, model) and what it saved.
    pub fn snapshot(&self) -> Vec<((String, String), LlmSaved)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Forgets everything.
    pub fn reset(&self) {
        self.0.lock().clear();
    }
}
